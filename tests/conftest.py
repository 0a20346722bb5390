"""Shared test settings.

One OpenMP thread per process: the suite runs tiny models, spawns DataLoader workers and DDP
processes, and on a 2-core machine two threads per process oversubscribe the cores (every small
op then waits at a barrier for a descheduled thread). Each test also starts with one torch thread
and gets the count back afterwards: the CLI's train, predict, serve and demo set their own.
"""

import os

os.environ["OMP_NUM_THREADS"] = "1"
os.environ.setdefault("MPLBACKEND", "Agg")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
