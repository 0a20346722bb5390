"""Shared test settings.

One OpenMP thread per process: the suite runs tiny models, spawns DataLoader workers and DDP
processes, and on a 2-core machine two threads per process oversubscribe the cores (every small
op then waits at a barrier for a descheduled thread).
"""

import os

os.environ["OMP_NUM_THREADS"] = "1"
os.environ.setdefault("MPLBACKEND", "Agg")

import torch  # noqa: E402

torch.set_num_threads(1)
