"""Checkpoint averaging: pick epochs from ``exp/<name>/metrics.jsonl`` and average their weights.

Selection modes (among the epochs whose validation row holds the metric; the last row of an epoch counts):

- ``best``: the ``n`` epochs with the best metric values;
- ``last``: the ``n`` most recent epochs;
- ``window``: the ``n`` consecutive validated epochs with the best mean metric.

Floating-point tensors are averaged in float64 and cast back to their dtype; integer and boolean buffers
(e.g. BatchNorm's ``num_batches_tracked``) are taken from the newest selected epoch, as is the architecture.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any, Literal

import torch

from diarizen_lab.errors import DiarizenLabError, InputError
from diarizen_lab.models.io import FORMAT, MODEL_FILE, load_checkpoint
from diarizen_lab.utils.atomic import atomic_path
from diarizen_lab.utils.finite import is_selectable

Mode = Literal["best", "last", "window"]
MetricMode = Literal["min", "max"]
MODES: tuple[str, ...] = ("best", "last", "window")
LOWER_IS_BETTER = ("der", "loss", "error", "wer", "eer", "jer")
HIGHER_IS_BETTER = ("acc", "f1", "precision", "recall", "auc")


@dataclasses.dataclass(frozen=True)
class EpochScore:
    epoch: int
    value: float


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


def read_metric(exp_dir: str | os.PathLike, metric: str) -> list[EpochScore]:
    """The value of ``metric`` at each validated epoch of ``exp_dir/metrics.jsonl``, sorted by epoch.

    Rows without the metric, or with a non-finite value, are skipped; when an epoch was validated several times, its last row counts.
    """
    path = Path(exp_dir) / "metrics.jsonl"
    if not path.is_file():
        raise InputError(
            "no metrics.jsonl in this experiment directory", path=path.parent,
            fix="pass the exp/<name> directory of a training run that has validated at least once",
        )
    values: dict[int, float] = {}
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise InputError(f"not a JSON object ({error.msg})", path=path, line=number) from None
            if not isinstance(row, dict):
                raise InputError("not a JSON object", path=path, line=number)
            if row.get(metric) is None:
                continue
            epoch, value = row.get("epoch"), row[metric]
            if not isinstance(epoch, int) or isinstance(epoch, bool):
                raise InputError(f"row has {metric!r} but no integer 'epoch'", path=path, line=number)
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise InputError(f"{metric!r} is {value!r}, not a number", path=path, line=number)
            if not is_selectable(value):
                continue  # a diverged validation (NaN, inf) is never selected
            values[epoch] = float(value)
    return [EpochScore(epoch, value) for epoch, value in sorted(values.items())]


def select_epochs(scores: list[EpochScore], mode: Mode, n: int, metric_mode: MetricMode) -> list[EpochScore]:
    """Pick ``n`` epochs from ``scores`` (sorted by epoch) according to ``mode``; returned sorted by epoch.

    Ties go to the more recent epochs.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if metric_mode not in ("min", "max"):
        raise ValueError(f"metric_mode must be 'min' or 'max', got {metric_mode!r}")
    if n < 1:
        raise DiarizenLabError(f"the number of epochs to average must be >= 1, got {n}")
    if len(scores) < n:
        raise DiarizenLabError(
            f"cannot average {n} epochs: only {len(scores)} validated epoch(s) have the metric"
            + (f" ({', '.join(str(s.epoch) for s in scores)})" if scores else "")
        )
    sign = 1.0 if metric_mode == "min" else -1.0
    if mode == "last":
        return scores[-n:]
    if mode == "best":
        ranked = sorted(scores, key=lambda s: (sign * s.value, -s.epoch))
        return sorted(ranked[:n], key=lambda s: s.epoch)
    means = [sign * sum(s.value for s in scores[i : i + n]) / n for i in range(len(scores) - n + 1)]
    start = min(range(len(means)), key=lambda i: (means[i], -i))
    return scores[start : start + n]


def checkpoint_path(exp_dir: str | os.PathLike, epoch: int) -> Path:
    return Path(exp_dir) / "checkpoints" / f"epoch_{epoch:04d}" / MODEL_FILE


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
    exp_dir: str | os.PathLike,
    output: str | os.PathLike,
    *,
    metric: str = "val/der",
    mode: Mode = "best",
    n: int = 5,
    metric_mode: MetricMode | None = None,
) -> dict[str, Any]:
    """Average the ``n`` epochs of ``exp_dir`` chosen by ``mode`` on ``metric``; write ``output`` atomically.

    Returns the ``meta["averaging"]`` record written to the output: epochs, metric values, modes, sources.
    """
    exp_dir = Path(exp_dir)
    metric_mode = metric_mode or infer_metric_mode(metric)
    selected = select_epochs(read_metric(exp_dir, metric), mode, n, metric_mode)
    paths = [checkpoint_path(exp_dir, score.epoch) for score in selected]
    absent = [score.epoch for score, path in zip(selected, paths) if not path.is_file()]
    if absent:
        on_disk = sorted(
            int(d.name.removeprefix("epoch_")) for d in (exp_dir / "checkpoints").glob("epoch_*")
            if d.name.removeprefix("epoch_").isdigit() and (d / MODEL_FILE).is_file()
        )
        raise DiarizenLabError(
            f"no checkpoint for selected epoch(s) {', '.join(map(str, absent))} in {exp_dir / 'checkpoints'}"
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
    state_dict = average_state_dicts([c["state_dict"] for c in checkpoints], [str(p) for p in paths])
    record = {
        "metric": metric,
        "metric_mode": metric_mode,
        "mode": mode,
        "epochs": [score.epoch for score in selected],
        "values": [score.value for score in selected],
        "checkpoints": [str(path) for path in paths],
    }
    averaged = {
        "format": FORMAT,
        "model": newest["model"],
        "state_dict": state_dict,
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
