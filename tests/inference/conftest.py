"""One torch thread for the inference tests: tiny tensors gain nothing from more, and on a shared
CPU an oversubscribed OpenMP barrier makes each small op wait for a descheduled thread (5x slower)."""

import pytest
import torch


@pytest.fixture(autouse=True)
def one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
