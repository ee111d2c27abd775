"""The torch device a command runs on, checked before anything is loaded onto it."""

from __future__ import annotations

import torch

from diarizen_lab.errors import DiarizenLabError


def resolve_device(name: str | None) -> torch.device:
    """``name`` as a usable device (``None``: ``cuda`` when a GPU is visible, else ``cpu``).

    A name torch does not know, ``cuda`` without a visible GPU, or a GPU index past the last one is a
    one-line error.
    """
    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise DiarizenLabError(f"--device {name!r} is not a torch device (use cpu, cuda or cuda:N)") from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise DiarizenLabError(
                f"--device {name}: no CUDA GPU is visible here (check CUDA_VISIBLE_DEVICES and nvidia-smi, "
                "or use --device cpu)"
            )
        if device.index is not None and device.index >= count:
            raise DiarizenLabError(
                f"--device {name}: only {count} CUDA GPU(s) are visible (cuda:0 to cuda:{count - 1})"
            )
    elif device.type != "cpu":
        raise DiarizenLabError(f"--device {name}: unsupported device type {device.type!r} (use cpu or cuda)")
    return device
