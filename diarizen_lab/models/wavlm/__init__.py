"""WavLM speech encoder, ready for structured pruning.

>>> model = WavLM(get_preset("wavlm_tiny"))
>>> model.num_frames(128_000), model.receptive_field_size(), model.receptive_field_size(2)
(399, 400, 720)
"""

from __future__ import annotations

from diarizen_lab.models.wavlm.config import STANDARD_CONV_LAYERS, TRAINING_FIELDS, WavLMConfig
from diarizen_lab.models.wavlm.formats import load_wavlm
from diarizen_lab.models.wavlm.model import WavLM
from diarizen_lab.models.wavlm.presets import PRESETS, get_preset

__all__ = [
    "PRESETS",
    "STANDARD_CONV_LAYERS",
    "TRAINING_FIELDS",
    "WavLM",
    "WavLMConfig",
    "get_preset",
    "load_wavlm",
]
