"""Self-describing model checkpoints: architecture, weights and metadata in one ``model.pt`` file.

Format (``torch.save`` of a dict)::

    {"format": "diarizen_lab.model/1",
     "model": {"path": "package.module.Class", "args": {...},    # model.architecture()
               "task": {"sample_rate": ..., "chunk_size": ..., ...}},   # segmentation models only
     "state_dict": {...},                                         # CPU tensors
     "meta": {...}}                                               # plain Python values (epoch, step, ...)

Files are read with :func:`~diarizen_lab.utils.torch_files.load_torch_file` (``torch.load(weights_only=True)``)
and ``model.path`` must name a model class (a subclass of pyannote's ``Model``) in a module of
:data:`ARCHITECTURE_PACKAGES`: a checkpoint never executes code, so ``meta`` must hold only plain values (str,
int, float, bool, None, lists, dicts, tensors).

``args`` lists every constructor argument. An argument added to a model later is absent from older files; on
reading, it takes the value that reproduces what those files were trained as (:data:`ARGS_BEFORE_THEY_EXISTED`),
not the constructor default.

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

from diarizen_lab.config import accepts, import_object, instantiate
from diarizen_lab.data.task import Task
from diarizen_lab.errors import InputError, describe
from diarizen_lab.utils.atomic import atomic_path
from diarizen_lab.utils.finite import require_finite_weights
from diarizen_lab.utils.torch_files import UnsafePickleError, load_torch_file

FORMAT = "diarizen_lab.model/1"
MODEL_FILE = "model.pt"
ARCHITECTURE_PACKAGES = ("diarizen_lab.", "pyannote.audio.")
"""The only packages a model file may name its architecture in (checked before anything is imported)."""

#: Per model class, constructor arguments added after files were first written, with the value that files
#: lacking them imply (the variant the code had then; the defaults are now upstream DiariZen's variants).
ARGS_BEFORE_THEY_EXISTED: dict[str, dict[str, Any]] = {
    "diarizen_lab.models.wavlm_conformer.WavLMConformer": {
        "layer_weighting": "softmax",
        "conformer_conv_norm": "layer",
    },
    "diarizen_lab.models.fbank_conformer.FbankConformer": {"conformer_conv_norm": "layer"},
}


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
        checkpoint = load_torch_file(path, map_location=map_location)
    except UnsafePickleError as error:
        raise InputError(
            f"model checkpoint refused as unsafe: {error.detail}",
            path=path,
            fix="use a model.pt written by diarizen_lab from a trusted source",
        ) from None
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
    require_finite_weights(checkpoint["state_dict"], path)
    implied = ARGS_BEFORE_THEY_EXISTED.get(architecture["path"], {})
    architecture["args"] = {**implied, **architecture.get("args", {})}
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
    """Instantiate ``{"path": "module.Class", "args": {...}, "task": {...}}`` with random weights.

    Raises :class:`ValueError` when ``path`` is not an allowed architecture (see :func:`allowed_architecture`);
    it is checked before anything else imports it.
    """
    allowed_architecture(architecture["path"])
    task, args = model_task(architecture)
    runtime = {} if task is None else {"task": task}
    return instantiate({"path": architecture["path"], "args": args}, **runtime)


def allowed_architecture(path: str) -> type:
    """The model class ``path`` names, if a model file may name it: a subclass of pyannote's ``Model`` in a module
    of :data:`ARCHITECTURE_PACKAGES`, or a torch ``Module`` of ``diarizen_lab`` itself (the gated WavLM of a
    pruning run). The package is checked before the module is imported, so a file naming ``os.system`` imports and
    calls nothing.

    Raises :class:`ValueError` naming ``path`` otherwise.
    """
    from pyannote.audio import Model

    if not path.startswith(ARCHITECTURE_PACKAGES) or ".." in path:
        allowed = ", ".join(f"{package}*" for package in ARCHITECTURE_PACKAGES)
        raise ValueError(f"architecture {path!r} is not in an allowed package ({allowed})")
    target = import_object(path)
    base = nn.Module if path.startswith("diarizen_lab.") else Model
    if not (isinstance(target, type) and issubclass(target, base)):
        raise ValueError(f"architecture {path!r} is not a model class (a subclass of {base.__module__}.{base.__name__})")
    return target


def load_model_file(path_or_dir: str | os.PathLike, map_location: str | torch.device = "cpu") -> nn.Module:
    """Rebuild the model stored in one of our checkpoints (see :func:`find_model_file`) with its weights, in eval
    mode. Callers that accept any model argument use :func:`diarizen_lab.models.load_model`.

    The state dict must match the architecture exactly; otherwise the error lists the missing, unexpected and
    mis-shaped entries.
    """
    path = find_model_file(path_or_dir)
    checkpoint = load_checkpoint(path, map_location=map_location)
    try:
        model = build_model(checkpoint["model"])
    except (ValueError, TypeError) as error:
        raise InputError(f"cannot build model {checkpoint['model']['path']!r}: {error}", path=path) from None
    load_state_dict_strictly(model, checkpoint["state_dict"], path, checkpoint["model"]["path"])
    return model.to(map_location).eval()


def load_state_dict_strictly(model: nn.Module, state_dict: dict[str, Any], path: str | os.PathLike, what: str) -> None:
    """Load ``state_dict`` into ``model``; if it does not match exactly, the error lists the missing, unexpected
    and mis-shaped entries (``what`` names the architecture, ``path`` the file)."""
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
            f"state dict does not match {what} ({'; '.join(problems)})",
            path=path,
            fix="the weights were saved from a different architecture",
        )
    model.load_state_dict(state_dict, strict=True)


def _abbreviate(names: list[str], limit: int = 8) -> str:
    shown = ", ".join(names[:limit])
    return shown if len(names) <= limit else f"{shown}, ... ({len(names)} in all)"
