"""AdamW with a learning-rate schedule over the run's budget, whatever its unit.

The schedule reads one number, the share of the budget used (0..1, from
:class:`seglab.engine.callbacks.Budget`: steps, epochs or minutes), so ``--minutes 5`` warms up
and anneals exactly as ``--max-steps 2000`` does.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

SCHEDULES = ("onecycle", "cosine", "constant")


def lr_factor(progress: float, *, schedule: str, warmup: float) -> float:
    """Multiplier of the peak learning rate at ``progress`` (clipped to [0, 1]).

    ``onecycle``: linear warm-up from 0.1 over the first ``warmup`` share, then cosine to 0.02.
    ``cosine``: cosine from 1 to 0.02.  ``constant``: 1.
    """
    t = min(max(float(progress), 0.0), 1.0)
    if schedule == "constant":
        return 1.0
    if schedule == "onecycle" and t < warmup:
        return 0.1 + 0.9 * t / warmup
    if schedule == "onecycle":
        t = (t - warmup) / max(1e-8, 1.0 - warmup)
    return 0.02 + 0.98 * 0.5 * (1.0 + math.cos(math.pi * t))


def budget_optimizer(
    model: torch.nn.Module, *, lr: float, weight_decay: float, schedule: str, warmup: float,
    progress: Callable[[], float],
) -> dict[str, Any]:
    """Lightning's ``configure_optimizers`` answer: AdamW (no decay on biases and norms) + schedule.

    Args:
        progress: called at every step for the share of the budget used.
    """
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW(groups, lr=lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda _step: lr_factor(progress(), schedule=schedule, warmup=warmup)
    )
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
