"""Learning-rate schedules, stepped once per optimizer update.

Each schedule is a picklable multiplier of the optimizer's base learning rate, driven by a
:class:`torch.optim.lr_scheduler.LambdaLR`; its ``state_dict`` (step counter and schedule settings) goes into
every checkpoint.
"""

from __future__ import annotations

import dataclasses
import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

from diarizen_lab.training.settings import ScheduleSettings


@dataclasses.dataclass
class LRMultiplier:
    """Multiplier of the base learning rate after ``step`` updates.

    Warm-up rises linearly from ``1 / (warmup_steps + 1)`` to 1 (the first update never uses a zero rate);
    decay then goes from 1 at the end of warm-up to ``min_lr_ratio`` at ``total_steps`` (held afterwards).
    """

    kind: str
    warmup_steps: int
    total_steps: int
    min_lr_ratio: float = 0.0

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / (self.warmup_steps + 1)
        if self.kind in ("constant", "linear_warmup"):
            return 1.0
        decay_steps = max(1, self.total_steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / decay_steps)
        if self.kind == "warmup_cosine":
            shape = 0.5 * (1.0 + math.cos(math.pi * progress))
        else:  # warmup_linear
            shape = 1.0 - progress
        return self.min_lr_ratio + (1.0 - self.min_lr_ratio) * shape


def build_scheduler(optimizer: Optimizer, settings: ScheduleSettings, total_steps: int) -> LambdaLR:
    """A scheduler for ``optimizer`` over a run of ``total_steps`` optimizer updates."""
    multiplier = LRMultiplier(
        kind=settings.kind,
        warmup_steps=settings.warmup_steps,
        total_steps=total_steps,
        min_lr_ratio=settings.min_lr_ratio,
    )
    return LambdaLR(optimizer, lr_lambda=multiplier)
