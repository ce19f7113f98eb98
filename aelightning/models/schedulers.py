"""Learning-rate schedules as factories ``(optimizer, total_steps) -> LRScheduler``.

Configs give them with ``_partial_: true``; the module passes the optimizer and the
trainer's estimated number of optimizer steps, so schedules follow max_epochs and
limit_train_batches without manual bookkeeping.
"""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR, LRScheduler, StepLR

from aelightning.errors import check


def warmup_cosine(
    optimizer: Optimizer,
    total_steps: int,
    warmup_steps: int | None = None,
    warmup_fraction: float = 0.05,
    min_lr_ratio: float = 0.0,
) -> LRScheduler:
    """Linear warm-up from ~0 to the base LR, then cosine decay to ``min_lr_ratio`` x base."""
    check(
        0.0 <= warmup_fraction < 1.0,
        f"model.scheduler.warmup_fraction must be in [0, 1), got {warmup_fraction}.",
    )
    check(
        0.0 <= min_lr_ratio <= 1.0,
        f"model.scheduler.min_lr_ratio must be in [0, 1], got {min_lr_ratio}.",
    )
    total = max(1, int(total_steps))
    warmup = int(warmup_steps) if warmup_steps is not None else int(warmup_fraction * total)
    check(
        0 <= warmup <= total, f"model.scheduler.warmup_steps must be in [0, {total}], got {warmup}."
    )

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return LambdaLR(optimizer, factor)


def step_decay(
    optimizer: Optimizer, total_steps: int, num_decays: int = 3, gamma: float = 0.1
) -> LRScheduler:
    """Multiply the LR by ``gamma`` ``num_decays`` times, evenly spaced over training."""
    check(num_decays >= 1, f"model.scheduler.num_decays must be >= 1, got {num_decays}.")
    check(0.0 < gamma <= 1.0, f"model.scheduler.gamma must be in (0, 1], got {gamma}.")
    step_size = max(1, int(total_steps) // (num_decays + 1))
    return StepLR(optimizer, step_size=step_size, gamma=gamma)


def no_schedule(optimizer: Optimizer, total_steps: int) -> None:
    """``model/scheduler=none``: no scheduler, the optimiser keeps its base LR.

    Nothing to step after every batch (a constant scheduler would cost Lightning's
    scheduler update each step); the LR monitor still logs the optimiser's LR.
    """
    return None
