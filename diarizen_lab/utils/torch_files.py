"""Reading torch files without running code: ``torch.load(weights_only=True)`` plus the few classes that the
checkpoints we read pickle besides tensors and plain containers.

A pickle can name any Python callable and ``torch.load(weights_only=False)`` calls it while reading, so a
downloaded ``pytorch_model.bin`` could run a shell command. ``weights_only=True`` refuses every global outside
torch's allow-list and :func:`checkpoint_globals`; a refused file raises :class:`UnsafePickleError`, which
names the global.
"""

from __future__ import annotations

import os
import pickle
import re
from typing import Any

from diarizen_lab.errors import DiarizenLabError

_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")


class UnsafePickleError(DiarizenLabError):
    """A torch file whose pickle names a Python object that is neither a tensor nor a known safe class."""

    def __init__(self, path: str | os.PathLike, name: str) -> None:
        self.path = os.fspath(path)
        self.name = name
        self.detail = f"its pickle names {name}, which is not weights; refused, since unpickling it could run code"
        super().__init__(f"{self.path}: {self.detail} (use a file from a trusted source, re-saved as plain weights)")


def checkpoint_globals() -> list[type]:
    """The classes besides tensors that known checkpoints pickle: fairseq's ``argparse.Namespace`` config
    (Microsoft's WavLM files) and pyannote.audio's task specifications (its ``pytorch_model.bin`` files)."""
    import argparse

    from pyannote.audio.core.task import Problem, Resolution, Specifications

    return [argparse.Namespace, Specifications, Problem, Resolution]


def load_torch_file(path: str | os.PathLike, *, map_location: Any = "cpu", mmap: bool = False) -> Any:
    """``torch.load`` that never runs code (see the module documentation).

    Raises:
        UnsafePickleError: the pickle names another global.
        Exception: whatever torch raises for a corrupt or truncated file (``RuntimeError``, ``EOFError``, ...).
    """
    import torch

    try:
        with torch.serialization.safe_globals(checkpoint_globals()):
            return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as error:
        match = _GLOBAL.search(str(error))
        if match and "Weights only load failed" in str(error):
            raise UnsafePickleError(path, match.group(1)) from None
        raise  # a corrupt file or plain text: torch's weights-only unpickler meets an unknown opcode
