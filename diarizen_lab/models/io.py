"""Self-describing model checkpoints: architecture, weights and metadata in one ``model.pt`` file.

Format (``torch.save`` of a dict)::

    {"format": "diarizen_lab.model/1",
     "model": {"path": "package.module.Class", "args": {...},    # model.architecture()
               "task": {"sample_rate": ..., "chunk_size": ..., ...}},   # segmentation models only
     "state_dict": {...},                                         # CPU tensors
     "meta": {...}}                                               # plain Python values (epoch, step, ...)

Files are read with ``torch.load(weights_only=True)``: a checkpoint never executes code, so ``meta`` must hold
only plain values (str, int, float, bool, None, lists, dicts, tensors).

Files written before the task had its own block kept ``chunk_size``, ``sample_rate``,
``max_speakers_per_chunk`` and ``max_speakers_per_frame`` among the segmentation model's ``args``; they load
as they are (:func:`model_task` reads those arguments into a :class:`~diarizen_lab.data.task.Task`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from diarizen_lab.config import accepts, instantiate
from diarizen_lab.data.task import Task
from diarizen_lab.errors import InputError, describe
from diarizen_lab.utils.atomic import atomic_path

FORMAT = "diarizen_lab.model/1"
MODEL_FILE = "model.pt"


def save_model(path: str | os.PathLike, model: nn.Module, meta: dict[str, Any] | None = None) -> Path:
    """Atomically write ``model`` (its ``architecture()`` and CPU state dict) and ``meta`` to ``path``."""
    checkpoint = {
        "format": FORMAT,
        "model": model.architecture(),
        "state_dict": {name: tensor.detach().cpu() for name, tensor in model.state_dict().items()},
        "meta": dict(meta or {}),
    }
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(checkpoint, tmp)
    return path


def find_model_file(path_or_dir: str | os.PathLike) -> Path:
    """The ``model.pt`` meant by a file, a checkpoint directory, or an experiment directory (its best checkpoint)."""
    path = Path(path_or_dir)
    if path.is_file():
        return path
    if not path.exists():
        raise InputError("no such model file or directory", path=path, fix="pass a model.pt, a checkpoint or exp dir")
    for candidate in (path / MODEL_FILE, path / "checkpoints" / "best" / MODEL_FILE):
        if candidate.is_file():
            return candidate
    raise InputError(
        f"no {MODEL_FILE} in this directory nor in its checkpoints/best/",
        path=path,
        fix="pass a model.pt, a checkpoints/epoch_NNNN directory, or an experiment directory with a best checkpoint",
    )


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read and validate a self-describing checkpoint file (see module docstring)."""
    path = Path(path)
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises many types (EOFError, RuntimeError, UnpicklingError, ...)
        raise InputError(
            f"cannot read model checkpoint ({describe(error)})",
            path=path,
            fix="the file is empty, truncated or not a torch file: re-create or copy it again",
        ) from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != FORMAT:
        found = checkpoint.get("format") if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise InputError(
            f"not a {FORMAT} checkpoint (format: {found!r})",
            path=path,
            fix="pass a model.pt written by diarizen_lab training or averaging",
        )
    architecture = checkpoint.get("model")
    if (
        not isinstance(architecture, dict)
        or not isinstance(architecture.get("path"), str)
        or not isinstance(architecture.get("args", {}), dict)
        or not isinstance(checkpoint.get("state_dict"), dict)
    ):
        raise InputError("checkpoint lacks a valid 'model' {path, args} block or 'state_dict'", path=path)
    return checkpoint


def model_task(architecture: dict[str, Any]) -> tuple[Task | None, dict[str, Any]]:
    """The task of a stored architecture and its other arguments (``None`` for models without a task).

    Reads the ``"task"`` block, or the task arguments of files written before it existed.
    """
    args = dict(architecture.get("args", {}))
    if "task" in architecture:
        return Task(**architecture["task"]), args
    if accepts(architecture["path"], "task"):
        return Task.split_legacy_args(args)
    return None, args


def build_model(architecture: dict[str, Any]) -> nn.Module:
    """Instantiate ``{"path": "module.Class", "args": {...}, "task": {...}}`` with random weights."""
    task, args = model_task(architecture)
    runtime = {} if task is None else {"task": task}
    return instantiate({"path": architecture["path"], "args": args}, **runtime)


def load_model(path_or_dir: str | os.PathLike, map_location: str | torch.device = "cpu") -> nn.Module:
    """Rebuild the model stored in a checkpoint (see :func:`find_model_file`) with its weights, in eval mode.

    The state dict must match the architecture exactly; otherwise the error lists the missing, unexpected and
    mis-shaped entries.
    """
    path = find_model_file(path_or_dir)
    checkpoint = load_checkpoint(path, map_location=map_location)
    try:
        model = build_model(checkpoint["model"])
    except (ValueError, TypeError) as error:
        raise InputError(f"cannot build model {checkpoint['model']['path']!r}: {error}", path=path) from None
    state_dict = checkpoint["state_dict"]
    expected = model.state_dict()
    missing = sorted(expected.keys() - state_dict.keys())
    unexpected = sorted(state_dict.keys() - expected.keys())
    mis_shaped = sorted(
        f"{name} {tuple(state_dict[name].shape)} vs {tuple(tensor.shape)}"
        for name, tensor in expected.items()
        if name in state_dict and state_dict[name].shape != tensor.shape
    )
    problems = [
        f"{label}: {_abbreviate(names)}"
        for label, names in (("missing", missing), ("unexpected", unexpected), ("wrong shape", mis_shaped))
        if names
    ]
    if problems:
        raise InputError(
            f"state dict does not match {checkpoint['model']['path']} ({'; '.join(problems)})",
            path=path,
            fix="the weights were saved from a different architecture",
        )
    model.load_state_dict(state_dict, strict=True)
    return model.to(map_location).eval()


def _abbreviate(names: list[str], limit: int = 8) -> str:
    shown = ", ".join(names[:limit])
    return shown if len(names) <= limit else f"{shown}, ... ({len(names)} in all)"
