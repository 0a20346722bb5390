"""AdamW with a learning-rate schedule over the run's budget, whatever its unit.

The schedule reads one number, the share of the budget used (0..1, from
:class:`seglab.engine.callbacks.Budget`: steps, epochs or minutes), so ``--minutes 5`` warms up
and anneals exactly as ``--max-steps 2000`` does. A pretrained encoder may learn at a fraction of
the rate (``encoder_lr_scale``): its parameter groups follow the same schedule at that fraction.
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
    progress: Callable[[], float], encoder_lr_scale: float = 1.0,
) -> dict[str, Any]:
    """Lightning's ``configure_optimizers`` answer: AdamW (no decay on biases and norms) + schedule.

    Args:
        progress: called at every step for the share of the budget used.
        encoder_lr_scale: the parameters of ``model.encoder`` learn at ``lr * encoder_lr_scale``
            (groups ``encoder_decay`` and ``encoder_no_decay``; the schedule scales every group alike).
            Parameters that do not require a gradient (a frozen encoder) are left out.
    """
    encoder = getattr(model, "encoder", None) if encoder_lr_scale != 1.0 else None
    in_encoder = {id(p) for p in encoder.parameters()} if encoder is not None else set()
    names = ("decay", "no_decay", "encoder_decay", "encoder_no_decay")
    params: dict[str, list[torch.nn.Parameter]] = {name: [] for name in names}
    for p in model.parameters():
        if p.requires_grad:
            prefix = "encoder_" if id(p) in in_encoder else ""
            params[prefix + ("no_decay" if p.ndim <= 1 else "decay")].append(p)
    groups = [
        {
            "name": name,
            "params": params[name],
            "weight_decay": 0.0 if name.endswith("no_decay") else weight_decay,
            "lr": lr * (encoder_lr_scale if name.startswith("encoder") else 1.0),
        }
        for name in names
        if not name.startswith("encoder") or params[name]  # the first two as always (resume)
    ]
    optimizer = torch.optim.AdamW(groups, lr=lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda _step: lr_factor(progress(), schedule=schedule, warmup=warmup)
    )
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
