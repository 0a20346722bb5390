"""Process-wide settings for training commands: torch threads, Lightning's console noise.

The only place seglab changes process-wide state (STYLE: library functions never do). The CLI's
``train`` and ``demo`` call :func:`configure_training` before training; a Python program calling
:func:`seglab.engine.trainer.train` may call it too, or choose its own settings.
"""

from __future__ import annotations

import logging
import os
import warnings

# Lightning messages that say nothing to a seglab user (seglab prints its own progress lines)
LIGHTNING_NOISE = (
    ".*exists and is not empty.*", ".*LeafSpec.*", ".*does not have many workers.*", ".*litlogger.*",
    ".*torch.utils._pytree.*", ".*smaller than the logging interval.*", ".*dataloader is not resumable.*",
)


def configure_training(*, workers: int, devices: int = 1, accelerator: str = "auto") -> None:
    """Set torch's CPU threads and quiet Lightning's banners and tips.

    On CPU, each DataLoader worker keeps a core: ``threads = (cores - workers) / devices``, at
    least one. Oversubscribed OpenMP threads wait at every barrier for a descheduled peer, which
    made training 5-7x slower on a 2-core machine. ``OMP_NUM_THREADS`` set by the user wins.
    """
    import lightning.pytorch  # noqa: F401  (its import sets its loggers' levels: ours must come after)
    import torch

    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for pattern in LIGHTNING_NOISE:
        warnings.filterwarnings("ignore", message=pattern)
    on_cpu = accelerator == "cpu" or (accelerator == "auto" and not torch.cuda.is_available())
    if not on_cpu or "OMP_NUM_THREADS" in os.environ:
        return
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    torch.set_num_threads(max(1, (cores - workers) // max(1, devices)))
