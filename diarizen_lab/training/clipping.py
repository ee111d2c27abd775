"""Gradient clipping on the global L2 norm: fixed, adaptive (a percentile of recent norms), or none."""

from __future__ import annotations

import collections
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
from torch import nn

from diarizen_lab.training.settings import ClippingSettings


class GradientClipper:
    """Measures the global gradient norm and clips it to the current threshold.

    In ``adaptive`` mode the threshold is the ``percentile``-th percentile of the last ``history`` finite norms
    measured before this update (so a sudden spike is clipped to what recent updates looked like); with no
    history yet, nothing is clipped. The history is part of :meth:`state_dict`, so a resumed run clips exactly
    as the uninterrupted one would.
    """

    def __init__(self, settings: ClippingSettings) -> None:
        self.settings = settings
        self.norms: collections.deque[float] = collections.deque(maxlen=settings.history)

    def threshold(self) -> float | None:
        """The norm gradients are clipped to in the next update (``None``: no clipping)."""
        if self.settings.mode == "fixed":
            return self.settings.max_norm
        if self.settings.mode == "adaptive" and self.norms:
            return float(np.percentile(np.fromiter(self.norms, dtype=np.float64), self.settings.percentile))
        return None

    @staticmethod
    def total_norm(parameters: Iterable[nn.Parameter]) -> torch.Tensor:
        """Global L2 norm of the gradients (a 0-dim tensor on the gradients' device; no host sync)."""
        gradients = [p.grad for p in parameters if p.grad is not None]
        if not gradients:
            return torch.zeros(())
        return torch.nn.utils.get_total_norm(gradients, norm_type=2.0)

    def clip(self, parameters: Iterable[nn.Parameter], total_norm: torch.Tensor) -> None:
        """Scale the gradients in place so that their norm is at most :meth:`threshold`."""
        threshold = self.threshold()
        if threshold is not None:
            torch.nn.utils.clip_grads_with_norm_(parameters, threshold, total_norm)

    def observe(self, norm: float) -> None:
        """Record the (unclipped, finite) norm of an applied update."""
        self.norms.append(norm)

    def state_dict(self) -> dict[str, Any]:
        return {"norms": list(self.norms)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.norms = collections.deque(state["norms"], maxlen=self.settings.history)
