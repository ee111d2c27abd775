"""Where a model's WavLM comes from: a named architecture with random weights, or a pretrained file.

Every model that holds a WavLM (the WavLM-Conformer, the pruning student, the distillation teacher) builds it
here, so the two ways of naming one, and the rule that they exclude each other, are the same everywhere:

- ``wavlm = "random:wavlm_base_plus"`` (or a ``WavLMConfig`` dict): the architecture only, random weights;
- ``wavlm_checkpoint = "wavlm-base-plus"`` (an asset name or path, resolved by the config loader): pretrained
  weights, the architecture read from the file.

Bare preset names (``"wavlm_base_plus"``) are refused: one character away from the pretrained asset name
``wavlm-base-plus``, they silently gave random weights to configs that meant the pretrained model.
"""

from __future__ import annotations

import os
from typing import Any

from diarizen_lab.config import Asset
from diarizen_lab.errors import DiarizenLabError
from diarizen_lab.models.wavlm import PRESETS, WavLM, WavLMConfig, get_preset, load_wavlm

__all__ = ["RANDOM_PREFIX", "wavlm_architecture", "wavlm_encoder"]

#: Prefix of the names of random-init WavLM architectures (``random:`` + a preset name).
RANDOM_PREFIX = "random:"


def wavlm_architecture(wavlm: str | dict[str, Any]) -> WavLMConfig:
    """The config named by ``"random:<preset>"`` or given as a ``WavLMConfig`` dict."""
    if isinstance(wavlm, dict):
        return WavLMConfig.from_dict(wavlm)
    if wavlm.startswith(RANDOM_PREFIX):
        try:
            return get_preset(wavlm.removeprefix(RANDOM_PREFIX))
        except ValueError:
            names = ", ".join(RANDOM_PREFIX + name for name in PRESETS)
            raise DiarizenLabError(f"unknown WavLM architecture {wavlm!r}; choose one of {names}") from None
    if wavlm in PRESETS:
        raise DiarizenLabError(
            f"wavlm = {wavlm!r} is a random-init architecture: write wavlm = '{RANDOM_PREFIX}{wavlm}' "
            f"(or wavlm_checkpoint = '{wavlm.replace('_', '-')}' for pretrained weights)"
        )
    raise DiarizenLabError(
        f"wavlm = {wavlm!r} is not an architecture: use '{RANDOM_PREFIX}<preset>' (random weights) or "
        "wavlm_checkpoint = <asset name or path> (pretrained weights)"
    )


def wavlm_encoder(
    wavlm: str | dict[str, Any] | None,
    wavlm_checkpoint: str | os.PathLike | None,
    *,
    owner: str,
    default: str | None = None,
    **training: float,
) -> WavLM:
    """A WavLM from exactly one of ``wavlm`` (architecture) and ``wavlm_checkpoint`` (pretrained file).

    Parameters
    ----------
    wavlm
        ``"random:<preset>"`` or a ``WavLMConfig`` dict; random weights.
    wavlm_checkpoint
        Path of pretrained (or pruned) weights in any format :func:`~diarizen_lab.models.wavlm.load_wavlm`
        reads (the config loader has resolved asset names already).
    owner
        Who asks, for error messages (e.g. ``"WavLMConformer"``).
    default
        Architecture used when neither is given; ``None``: one of them is required.
    **training
        Regularisation overrides (e.g. ``layer_drop=0.0``).
    """
    if wavlm is not None and wavlm_checkpoint is not None:
        raise DiarizenLabError(
            f"{owner}: set either wavlm (architecture, random weights) or wavlm_checkpoint (pretrained weights, "
            f"architecture from the file), not both (got {wavlm!r} and {os.fspath(wavlm_checkpoint)!r})"
        )
    if isinstance(wavlm_checkpoint, Asset):
        wavlm_checkpoint = wavlm_checkpoint.require()
    if wavlm_checkpoint is not None:
        return load_wavlm(wavlm_checkpoint, **training)
    wavlm = wavlm if wavlm is not None else default
    if wavlm is None:
        raise DiarizenLabError(f"{owner}: set wavlm (architecture, random weights) or wavlm_checkpoint (pretrained)")
    config = wavlm_architecture(wavlm)
    return WavLM(config.with_training(**training) if training else config)
