"""WavLM speech encoder, ready for structured pruning.

>>> model = WavLM(get_preset("wavlm_tiny"))
>>> model.num_frames(128_000), model.receptive_field_size(), model.receptive_field_size(2)
(399, 400, 720)
"""

from __future__ import annotations

from os import PathLike

from diarizen_lab.models.wavlm.config import STANDARD_CONV_LAYERS, TRAINING_FIELDS, WavLMConfig
from diarizen_lab.models.wavlm.model import WavLM
from diarizen_lab.models.wavlm.presets import PRESETS, get_preset


def load_wavlm(path: str | PathLike, **training: float) -> WavLM:
    """WavLM with the weights of a checkpoint in any supported format (see :mod:`diarizen_lab.store.wavlm_formats`).

    ``training`` overrides regularisation settings (:data:`TRAINING_FIELDS`), e.g. ``layer_drop=0.0``.
    """
    from diarizen_lab.store.wavlm_formats import load_wavlm as load

    return load(path, **training)


__all__ = [
    "PRESETS",
    "STANDARD_CONV_LAYERS",
    "TRAINING_FIELDS",
    "WavLM",
    "WavLMConfig",
    "get_preset",
    "load_wavlm",
]
