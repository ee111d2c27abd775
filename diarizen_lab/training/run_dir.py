"""The experiment directory of a training run: its metrics, its checkpoints, and choosing and averaging epochs.

Layout of ``<exp_dir>/<name>/``::

    config.toml                          the resolved config
    metrics.jsonl                        one JSON row per validation (see :mod:`~diarizen_lab.training.run_log`)
    checkpoints/epoch_0007/model.pt      one directory per epoch (see :mod:`~diarizen_lab.training.checkpoint`)
    checkpoints/best -> epoch_0005

This module is the one reader of ``metrics.jsonl`` and the one place where epochs are chosen, so that
checkpoint retention keeps exactly the epochs that averaging asks for. Rules shared by every caller:

- the last row of an epoch counts (an epoch validated twice, e.g. before and after a resume);
- epoch 0 (``validate_at_start``: the untrained model) has no checkpoint and is never chosen;
- a non-finite value (a diverged validation) is never chosen; averaging reports the epochs it skipped;
- a last line cut short by a crash is ignored; an unreadable line elsewhere is an error naming it;
- on ties, the more recent epoch wins.

Selection modes (:data:`MODES`):

- ``best``: the ``n`` epochs with the best values;
- ``last``: the ``n`` most recent epochs;
- ``window``: the ``n`` consecutive epochs with the best mean value;
- ``after_peak``: the ``n`` best epochs after the (last) epoch with the worst value. While a distill-prune run
  warms up its sparsity target, the loss rises, peaks, then falls as the student adapts to its final size;
  epochs before the peak describe larger, unfinished architectures.

Averaging: floating-point tensors are averaged in float64 and cast back to their dtype; integer and boolean
buffers (e.g. BatchNorm's ``num_batches_tracked``) are taken from the newest selected epoch, as is the
architecture (gate ``log_alpha`` of a pruning student are averaged like any weight).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import torch

from diarizen_lab.errors import DiarizenLabError, InputError
from diarizen_lab.models.io import FORMAT, MODEL_FILE, load_checkpoint
from diarizen_lab.utils.atomic import atomic_path

__all__ = [
    "CHECKPOINTS",
    "METRICS_FILE",
    "MODES",
    "EpochScore",
    "average_checkpoints",
    "average_state_dicts",
    "checkpoint_dir",
    "epoch_dir_name",
    "infer_metric_mode",
    "model_path",
    "rank_epochs",
    "read_metric",
    "read_metrics",
    "saved_epochs",
    "select_epochs",
]

Mode = Literal["best", "last", "window", "after_peak"]
MetricMode = Literal["min", "max"]
MODES: tuple[str, ...] = ("best", "last", "window", "after_peak")
METRICS_FILE = "metrics.jsonl"
CHECKPOINTS = "checkpoints"
LOWER_IS_BETTER = ("der", "loss", "error", "wer", "eer", "jer")
HIGHER_IS_BETTER = ("acc", "f1", "precision", "recall", "auc")
_EPOCH_DIR = re.compile(r"^epoch_(\d{4,})$")


@dataclasses.dataclass(frozen=True)
class EpochScore:
    """The value of one metric at one validated epoch."""

    epoch: int
    value: float

    @property
    def finite(self) -> bool:
        return math.isfinite(self.value)


# ---------------------------------------------------------------------------------------------------------
# Checkpoint paths


def epoch_dir_name(epoch: int) -> str:
    """``epoch_NNNN``: the directory name of an epoch's checkpoint."""
    return f"epoch_{epoch:04d}"


def checkpoint_dir(run_dir: str | os.PathLike, epoch: int) -> Path:
    """``run_dir/checkpoints/epoch_NNNN``."""
    return Path(run_dir) / CHECKPOINTS / epoch_dir_name(epoch)


def model_path(run_dir: str | os.PathLike, epoch: int) -> Path:
    """``run_dir/checkpoints/epoch_NNNN/model.pt``."""
    return checkpoint_dir(run_dir, epoch) / MODEL_FILE


def saved_epochs(checkpoints: Path) -> list[tuple[int, Path]]:
    """The complete ``epoch_NNNN`` directories under ``checkpoints`` as ``(epoch, path)``, oldest first."""
    if not checkpoints.is_dir():
        return []
    found = []
    for path in checkpoints.iterdir():
        match = _EPOCH_DIR.match(path.name)
        if match and path.is_dir() and not path.is_symlink():
            found.append((int(match.group(1)), path))
    return sorted(found)


# ---------------------------------------------------------------------------------------------------------
# metrics.jsonl


def _numbered_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line number, row)`` of a ``metrics.jsonl``; a last line cut short by a crash is ignored."""
    lines = path.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            if number == len(lines):
                return
            raise InputError(
                f"not a JSON object ({error.msg})", path=path, line=number, fix="repair or delete the line"
            ) from None
        if not isinstance(row, dict):
            raise InputError("not a JSON object", path=path, line=number, fix="repair or delete the line")
        yield number, row


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """Rows of a ``metrics.jsonl`` file (none when it does not exist)."""
    return [row for _, row in _numbered_rows(path)] if path.is_file() else []


def read_metric(run_dir: str | os.PathLike, metric: str) -> list[EpochScore]:
    """The value of ``metric`` at each validated epoch (>= 1) of ``run_dir/metrics.jsonl``, sorted by epoch.

    Rows without the metric are skipped; the last row of an epoch counts. Non-finite values are kept (the
    selection functions skip them); a value that is not a number is an error naming the line.
    """
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        raise InputError(
            "no metrics.jsonl in this experiment directory", path=path.parent,
            fix="pass the exp/<name> directory of a training run that has validated at least once",
        )
    values: dict[int, float] = {}
    for number, row in _numbered_rows(path):
        if row.get(metric) is None:
            continue
        epoch, value = row.get("epoch"), row[metric]
        if not isinstance(epoch, int) or isinstance(epoch, bool):
            raise InputError(f"row has {metric!r} but no integer 'epoch'", path=path, line=number)
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise InputError(f"{metric!r} is {value!r}, not a number", path=path, line=number)
        if epoch >= 1:
            values[epoch] = float(value)
    return [EpochScore(epoch, value) for epoch, value in sorted(values.items())]


def infer_metric_mode(metric: str) -> MetricMode:
    """``min`` for error-like metric names (der, loss, ...), ``max`` for accuracy-like ones; otherwise an error."""
    name = metric.lower().rsplit("/", 1)[-1]
    if any(word in name for word in LOWER_IS_BETTER):
        return "min"
    if any(word in name for word in HIGHER_IS_BETTER):
        return "max"
    raise DiarizenLabError(
        f"cannot tell whether lower or higher {metric!r} is better: pass --metric-mode min or --metric-mode max"
    )


# ---------------------------------------------------------------------------------------------------------
# Choosing epochs


def rank_epochs(scores: list[EpochScore], metric_mode: MetricMode) -> list[EpochScore]:
    """Finite scores, best first; on ties the more recent epoch first. Retention keeps a prefix of this list,
    and ``best`` averaging takes one."""
    if metric_mode not in ("min", "max"):
        raise ValueError(f"metric_mode must be 'min' or 'max', got {metric_mode!r}")
    sign = 1.0 if metric_mode == "min" else -1.0
    return sorted((s for s in scores if s.finite), key=lambda s: (sign * s.value, -s.epoch))


def select_epochs(scores: list[EpochScore], mode: Mode, n: int, metric_mode: MetricMode) -> list[EpochScore]:
    """Pick ``n`` epochs from ``scores`` (sorted by epoch) according to ``mode``; returned sorted by epoch.

    Non-finite scores are never picked (``last`` and ``window`` use the finite epochs in order).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if n < 1:
        raise DiarizenLabError(f"the number of epochs to average must be >= 1, got {n}")
    sign = 1.0 if metric_mode == "min" else -1.0
    ranked = rank_epochs(scores, metric_mode)
    finite = sorted(ranked, key=lambda s: s.epoch)
    if mode == "after_peak":
        if not finite:
            raise DiarizenLabError("no validated epoch has a finite value of the metric")
        peak = max(finite, key=lambda s: (sign * s.value, s.epoch))  # the worst value; the last one on ties
        ranked = [s for s in ranked if s.epoch > peak.epoch]
        if len(ranked) < n:
            raise DiarizenLabError(
                f"only {len(ranked)} validated epoch(s) after the peak at epoch {peak.epoch}, {n} requested: "
                "train longer after the target sparsity is reached, or average fewer epochs (-n)"
            )
        return sorted(ranked[:n], key=lambda s: s.epoch)
    if len(finite) < n:
        raise DiarizenLabError(
            f"cannot average {n} epochs: only {len(finite)} validated epoch(s) have a finite value of the metric"
            + (f" ({', '.join(str(s.epoch) for s in finite)})" if finite else "")
        )
    if mode == "last":
        return finite[-n:]
    if mode == "best":
        return sorted(ranked[:n], key=lambda s: s.epoch)
    means = [sign * sum(s.value for s in finite[i : i + n]) / n for i in range(len(finite) - n + 1)]
    start = min(range(len(means)), key=lambda i: (means[i], -i))
    return finite[start : start + n]


# ---------------------------------------------------------------------------------------------------------
# Averaging


def average_state_dicts(
    state_dicts: list[dict[str, torch.Tensor]], names: list[str] | None = None
) -> dict[str, torch.Tensor]:
    """Average state dicts (oldest first): floating tensors in float64, others copied from the last one.

    ``names`` label the state dicts in error messages (default: their index).
    """
    if not state_dicts:
        raise ValueError("nothing to average")
    names = names or [str(i) for i in range(len(state_dicts))]
    reference = state_dicts[-1]
    for name, state_dict in zip(names, state_dicts):
        missing, unexpected = sorted(reference.keys() - state_dict.keys()), sorted(state_dict.keys() - reference.keys())
        if missing or unexpected:
            raise DiarizenLabError(
                f"{name} does not have the same parameters as {names[-1]}"
                f" (missing: {_abbreviate(missing)}; unexpected: {_abbreviate(unexpected)})"
            )
        for key, tensor in reference.items():
            if state_dict[key].shape != tensor.shape or state_dict[key].dtype != tensor.dtype:
                raise DiarizenLabError(
                    f"{name}: {key} is {state_dict[key].dtype} {tuple(state_dict[key].shape)},"
                    f" but {tensor.dtype} {tuple(tensor.shape)} in {names[-1]}"
                )
    averaged = {}
    for key, tensor in reference.items():
        if tensor.is_floating_point():
            total = torch.zeros_like(tensor, dtype=torch.float64)
            for state_dict in state_dicts:
                total += state_dict[key].to(torch.float64)
            averaged[key] = (total / len(state_dicts)).to(tensor.dtype)
        else:
            averaged[key] = tensor.clone()
    return averaged


def average_checkpoints(
    run_dir: str | os.PathLike,
    output: str | os.PathLike,
    *,
    metric: str = "val/der",
    mode: Mode = "best",
    n: int = 5,
    metric_mode: MetricMode | None = None,
) -> dict[str, Any]:
    """Average the ``n`` epochs of ``run_dir`` chosen by ``mode`` on ``metric``; write ``output`` atomically.

    Returns the ``meta["averaging"]`` record written to the output: epochs, metric values, modes, sources and
    the epochs skipped for a non-finite value (``skipped_nonfinite``).
    """
    run_dir = Path(run_dir)
    metric_mode = metric_mode or infer_metric_mode(metric)
    scores = read_metric(run_dir, metric)
    selected = select_epochs(scores, mode, n, metric_mode)
    paths = [model_path(run_dir, score.epoch) for score in selected]
    absent = [score.epoch for score, path in zip(selected, paths) if not path.is_file()]
    if absent:
        on_disk = [epoch for epoch, path in saved_epochs(run_dir / CHECKPOINTS) if (path / MODEL_FILE).is_file()]
        raise DiarizenLabError(
            f"no checkpoint for selected epoch(s) {', '.join(map(str, absent))} in {run_dir / CHECKPOINTS}"
            f" (epochs on disk: {', '.join(map(str, on_disk)) or 'none'}); older checkpoints may have been removed"
            " by keep_last_n: choose --mode last, a smaller -n, or keep more checkpoints when training"
        )
    checkpoints = [load_checkpoint(path) for path in paths]
    newest = checkpoints[-1]
    for path, checkpoint in zip(paths, checkpoints):
        if checkpoint["model"] != newest["model"]:
            raise DiarizenLabError(
                f"{path} was saved from a different architecture than {paths[-1]}: only checkpoints of one model"
                " can be averaged"
            )
    record = {
        "metric": metric,
        "metric_mode": metric_mode,
        "mode": mode,
        "epochs": [score.epoch for score in selected],
        "values": [score.value for score in selected],
        "checkpoints": [str(path) for path in paths],
        "skipped_nonfinite": [score.epoch for score in scores if not score.finite],
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


def _abbreviate(names: list[str], limit: int = 6) -> str:
    if not names:
        return "none"
    shown = ", ".join(names[:limit])
    return shown if len(names) <= limit else f"{shown}, ... ({len(names)} in all)"
