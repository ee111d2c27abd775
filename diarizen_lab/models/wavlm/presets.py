"""Named WavLM architectures: the released Base, Base+ and Large, and tiny ones for tests and smoke runs."""

from __future__ import annotations

from collections.abc import Callable

from diarizen_lab.models.wavlm.config import STANDARD_CONV_LAYERS, WavLMConfig

#: Extractor of the tiny presets: standard kernels and strides (same frames as the real models), 32 channels.
TINY_CONV_LAYERS = [(32, kernel, stride) for _, kernel, stride in STANDARD_CONV_LAYERS]


def wavlm_base() -> WavLMConfig:
    """WavLM Base: 12 post-norm layers of width 768, 12 heads, FFN 3072, group-norm extractor."""
    return WavLMConfig()


def wavlm_base_plus() -> WavLMConfig:
    """WavLM Base+: the Base architecture (trained on more data)."""
    return WavLMConfig()


def wavlm_large() -> WavLMConfig:
    """WavLM Large: 24 pre-norm layers of width 1024, 16 heads, FFN 4096, layer-norm extractor, normalised input."""
    return WavLMConfig(
        extractor_mode="layer_norm",
        normalize_waveform=True,
        embed_dim=1024,
        total_heads=16,
        num_heads=[16] * 24,
        ffn_dims=[4096] * 24,
        layer_norm_first=True,
    )


def wavlm_tiny() -> WavLMConfig:
    """Base-like toy model (2 layers of width 64, 4 heads, FFN 128) with the standard frame geometry."""
    return WavLMConfig(
        conv_layers=list(TINY_CONV_LAYERS),
        embed_dim=64,
        total_heads=4,
        num_heads=[4, 4],
        ffn_dims=[128, 128],
    )


def wavlm_tiny_large() -> WavLMConfig:
    """Large-like toy model: :func:`wavlm_tiny` with the layer-norm extractor, pre-norm layers, normalised input."""
    return WavLMConfig(
        conv_layers=list(TINY_CONV_LAYERS),
        extractor_mode="layer_norm",
        normalize_waveform=True,
        embed_dim=64,
        total_heads=4,
        num_heads=[4, 4],
        ffn_dims=[128, 128],
        layer_norm_first=True,
    )


PRESETS: dict[str, Callable[[], WavLMConfig]] = {
    "wavlm_base": wavlm_base,
    "wavlm_base_plus": wavlm_base_plus,
    "wavlm_large": wavlm_large,
    "wavlm_tiny": wavlm_tiny,
    "wavlm_tiny_large": wavlm_tiny_large,
}


def get_preset(name: str) -> WavLMConfig:
    """A fresh config for a named architecture (``ValueError`` listing the names if unknown)."""
    try:
        return PRESETS[name]()
    except KeyError:
        raise ValueError(f"unknown WavLM preset {name!r}; choose one of {', '.join(PRESETS)}") from None
