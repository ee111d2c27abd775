"""Non-finite weights, refused at load (metric values: :func:`diarizen_lab.training.run_dir.is_selectable`)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import torch

from diarizen_lab.errors import InputError


def require_finite_weights(state_dict: Mapping[str, Any], path: str | os.PathLike) -> None:
    """Refuse a state dict with a NaN or infinite value, naming the first such tensor and how many it holds.

    A model with such a weight outputs NaN for every frame: a diarization of empty RTTMs, a training whose
    every update is skipped.
    """
    for name, tensor in state_dict.items():
        if isinstance(tensor, torch.Tensor) and tensor.is_floating_point():
            bad = int((~torch.isfinite(tensor)).sum())
            if bad:
                raise InputError(
                    f"weight {name!r} holds {bad} NaN or infinite value(s) of {tensor.numel()}",
                    path=path,
                    fix="the model diverged or the file is damaged: use an earlier checkpoint",
                )
