"""Training checkpoints: one directory per epoch, written atomically, plus ``best`` and retention.

Layout of ``<exp>/checkpoints/``::

    epoch_0007/model.pt           the self-describing model file (diarizen_lab.models.io.save_model)
    epoch_0007/training_state.pt  optimizers, schedulers, grad scaler, clipper, objective, trainer counters,
                                  data order (seed, next epoch) and the RNG states of every process
    best -> epoch_0005            symlink to the checkpoint with the best monitored metric

A directory named ``epoch_NNNN`` is always complete: it is written under a temporary name, flushed to disk and
renamed (``diarizen_lab.utils.atomic.atomic_dir``), so a run killed while saving leaves the previous
checkpoints as they were.
"""

from __future__ import annotations

import os
import random
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from diarizen_lab.errors import InputError
from diarizen_lab.models.io import MODEL_FILE, save_model
from diarizen_lab.training.run_dir import CHECKPOINTS, epoch_dir_name, saved_epochs
from diarizen_lab.utils.atomic import atomic_dir, fsync_dir

STATE_FILE = "training_state.pt"
BEST = "best"


class Checkpointer:
    """Writes, lists and reads the checkpoints of one experiment (writes happen on the main process only)."""

    def __init__(self, directory: Path, keep_last_n: int = 0) -> None:
        self.directory = directory
        self.keep_last_n = keep_last_n

    def epochs(self) -> list[tuple[int, Path]]:
        """Complete checkpoints as ``(epoch, path)``, oldest first."""
        return saved_epochs(self.directory)

    def latest(self) -> Path | None:
        found = self.epochs()
        return found[-1][1] if found else None

    def best(self) -> Path | None:
        link = self.directory / BEST
        return self.directory / os.readlink(link) if link.is_symlink() and link.exists() else None

    def save(
        self,
        epoch: int,
        model: nn.Module,
        state: dict[str, Any],
        meta: dict[str, Any],
        is_best: bool,
        keep: Iterable[int] = (),
    ) -> Path:
        """Write ``epoch_NNNN`` (model + training state), move ``best`` if needed, apply retention (the epochs
        in ``keep`` and ``best`` are never deleted)."""
        target = self.directory / epoch_dir_name(epoch)
        with atomic_dir(target) as tmp:
            save_model(tmp / MODEL_FILE, model, meta=meta)
            torch.save(state, tmp / STATE_FILE)
        if is_best:
            self._point_best_to(target)
        self._apply_retention(set(keep))
        return target

    def remove_stale_temporaries(self) -> None:
        """Delete half-written (or half-deleted) checkpoint directories left by a killed run."""
        if self.directory.is_dir():
            for path in self.directory.glob(".epoch_*"):
                shutil.rmtree(path, ignore_errors=True)

    def _point_best_to(self, target: Path) -> None:
        link = self.directory / BEST
        tmp = self.directory / f".{BEST}.tmp"
        tmp.unlink(missing_ok=True)
        os.symlink(target.name, tmp)
        os.replace(tmp, link)
        fsync_dir(self.directory)

    def _apply_retention(self, keep: set[int]) -> None:
        if self.keep_last_n == 0:
            return
        best = self.best()
        for epoch, path in self.epochs()[: -self.keep_last_n]:
            if epoch not in keep and (best is None or path.name != best.name):
                # renamed first, so that an interrupted deletion never leaves an incomplete epoch_NNNN
                doomed = path.with_name(f".{path.name}.deleting")
                os.replace(path, doomed)
                shutil.rmtree(doomed)


def resolve_checkpoint(path: Path) -> Path:
    """The checkpoint directory meant by ``path``: itself, or the latest one of an experiment directory."""
    if (path / STATE_FILE).is_file():
        return path
    latest = Checkpointer(path / CHECKPOINTS).latest()
    if latest is None:
        raise InputError(
            f"no {STATE_FILE} here and no checkpoints/epoch_NNNN/ with one",
            path=path,
            fix="pass a checkpoints/epoch_NNNN directory or an experiment directory that has checkpoints",
        )
    return latest


def load_training_state(checkpoint: Path) -> dict[str, Any]:
    """Read ``training_state.pt`` of a checkpoint directory (CPU tensors)."""
    path = checkpoint / STATE_FILE
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise InputError(
            "missing training state", path=path, fix="resume from a complete epoch_NNNN directory"
        ) from None
    except Exception as error:  # torch raises many types for corrupt files (EOFError, RuntimeError, ...)
        raise InputError(
            f"cannot read training state ({type(error).__name__}: {error})",
            path=path,
            fix="the file is truncated or corrupt: resume from an earlier checkpoint",
        ) from None


def capture_rng_state() -> dict[str, Any]:
    """The state of every random stream of this process (python, numpy, torch CPU and CUDA), as plain values
    and tensors (loadable with ``torch.load(weights_only=True)``)."""
    name, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": (name, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, cached_gaussian),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    name, keys, position, has_gauss, cached_gaussian = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), position, has_gauss, cached_gaussian))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
