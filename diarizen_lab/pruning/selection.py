"""Choosing and averaging distill-prune checkpoints from ``metrics.jsonl``.

While the sparsity target warms up, the distillation loss rises (the student loses capacity), peaks, then
falls as the student adapts to its final size. Checkpoints before the peak describe larger, unfinished
architectures, so the candidates are the epochs *after* the peak of the validation loss; among them, the ``n``
with the lowest loss are averaged — weights and gate ``log_alpha`` alike, so the averaged gates decide the
final architecture.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from diarizen_lab.errors import DiarizenLabError
from diarizen_lab.evaluation.average import (
    EpochScore,
    average_state_dicts,
    checkpoint_path,
    read_metric,
)
from diarizen_lab.models.io import FORMAT, load_checkpoint
from diarizen_lab.utils.atomic import atomic_path

__all__ = ["select_after_peak", "average_after_peak"]


def select_after_peak(scores: list[EpochScore], n: int) -> list[EpochScore]:
    """The ``n`` lowest-loss epochs after the (last) epoch with the highest loss; sorted by epoch."""
    if n < 1:
        raise DiarizenLabError(f"the number of epochs to average must be >= 1, got {n}")
    if not scores:
        raise DiarizenLabError("no validated epoch has the metric")
    peak = max(scores, key=lambda s: (s.value, s.epoch))
    candidates = [s for s in scores if s.epoch > peak.epoch]
    if len(candidates) < n:
        raise DiarizenLabError(
            f"only {len(candidates)} validated epoch(s) after the loss peak at epoch {peak.epoch}, {n} requested: "
            "train longer after the target sparsity is reached, or average fewer epochs (-n)"
        )
    best = sorted(candidates, key=lambda s: (s.value, -s.epoch))[:n]
    return sorted(best, key=lambda s: s.epoch)


def average_after_peak(
    exp_dir: str | os.PathLike, output: str | os.PathLike, *, metric: str = "val/loss", n: int = 5
) -> dict[str, Any]:
    """Average the checkpoints chosen by :func:`select_after_peak` into ``output`` (a model.pt, written
    atomically); return the record stored in its ``meta["averaging"]``."""
    exp_dir = Path(exp_dir)
    selected = select_after_peak(read_metric(exp_dir, metric), n)
    paths = [checkpoint_path(exp_dir, score.epoch) for score in selected]
    absent = [str(score.epoch) for score, path in zip(selected, paths) if not path.is_file()]
    if absent:
        raise DiarizenLabError(
            f"no checkpoint for selected epoch(s) {', '.join(absent)} in {exp_dir / 'checkpoints'}: keep more "
            "checkpoints when training ([checkpoint] keep_last_n = 0) or average fewer epochs (-n)"
        )
    checkpoints = [load_checkpoint(path) for path in paths]
    newest = checkpoints[-1]
    if any(checkpoint["model"] != newest["model"] for checkpoint in checkpoints):
        raise DiarizenLabError(f"the selected checkpoints of {exp_dir} have different architectures")
    record = {
        "metric": metric,
        "metric_mode": "min",
        "mode": "after_peak",
        "epochs": [score.epoch for score in selected],
        "values": [score.value for score in selected],
        "checkpoints": [str(path) for path in paths],
    }
    averaged = {
        "format": FORMAT,
        "model": newest["model"],
        "state_dict": average_state_dicts([c["state_dict"] for c in checkpoints], [str(p) for p in paths]),
        "meta": {**newest.get("meta", {}), "averaging": record},
    }
    with atomic_path(output) as tmp:
        torch.save(averaged, tmp)
    return record
