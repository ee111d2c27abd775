"""Upstream DiariZen's WavLM description: its four named presets, its config keys, its state-dict names.

Upstream (BUTSpeechFIT/DiariZen) builds its WavLM from a flat dict of builder arguments (``extractor_mode``,
``encoder_remaining_heads``, ...): in the ``"config"`` of its ``{"state_dict", "config"}`` files, and behind the
preset names that released ``config.toml`` files give as ``wavlm_src`` (shipped here as data,
``upstream_presets.json``). Its state-dict names are torchaudio's. This module maps both to ours:

- :func:`wavlm_config_from_upstream`: upstream config dict -> :class:`WavLMConfig`;
- :func:`wavlm_from_upstream`: upstream config dict and WavLM state dict -> our config and state dict
  (the ONE place that knows upstream's WavLM tensor names and layouts);
- :func:`upstream_preset`: a preset name -> upstream's config dict.

Regularisation follows what upstream's model computes while training, not every key of its config: its
hidden states come from ``extract_features``, which never drops layers (``encoder_layer_drop`` is unused, so
``layer_drop`` is 0), and its extractor gradient is always scaled by 0.1 (``feature_grad_mult``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import cache
from importlib import resources
from typing import Any

from torch import Tensor

from diarizen_lab.models.wavlm.config import WavLMConfig

StateDict = dict[str, Tensor]

PRESETS_FILE = "upstream_presets.json"

#: Gradient scale upstream's WavLM always applies to its extractor output while training.
UPSTREAM_FEATURE_GRAD_MULT = 0.1

_EXTRACTOR_MODES = {"group_norm": "default", "layer_norm": "layer_norm"}
_PRUNING_FLAGS = (
    "extractor_prune_conv_channels",
    "encoder_prune_attention_heads",
    "encoder_prune_attention_layer",
    "encoder_prune_feed_forward_intermediate",
    "encoder_prune_feed_forward_layer",
    "use_layerwise_prune",
)
_KEYS = {
    "extractor_mode",
    "extractor_conv_layer_config",
    "extractor_conv_bias",
    "encoder_embed_dim",
    "encoder_projection_dropout",
    "encoder_pos_conv_kernel",
    "encoder_pos_conv_groups",
    "encoder_num_layers",
    "encoder_use_attention",
    "encoder_use_feed_forward",
    "encoder_total_num_heads",
    "encoder_remaining_heads",
    "encoder_num_buckets",
    "encoder_max_distance",
    "encoder_attention_dropout",
    "encoder_ff_interm_features",
    "encoder_ff_interm_dropout",
    "encoder_dropout",
    "encoder_layer_norm_first",
    "encoder_layer_drop",
    "aux_num_out",
    "normalize_waveform",
    *_PRUNING_FLAGS,
}
#: Keys that identify an upstream config (the torchaudio-style pruning-aware WavLM builder).
IDENTIFYING_KEYS = ("extractor_conv_layer_config", "encoder_remaining_heads")


@cache
def _presets() -> dict[str, dict[str, Any]]:
    return json.loads(resources.files(__package__).joinpath(PRESETS_FILE).read_text())


def upstream_preset_names() -> list[str]:
    """Names upstream's ``get_config`` knows (``wavlm_base``, ``wavlm_large``, ``wavlm_base_s80_md``, ...)."""
    return list(_presets())


def upstream_preset(name: str) -> dict[str, Any]:
    """A copy of upstream's config dict for a preset name (``ValueError`` listing the names if unknown)."""
    presets = _presets()
    if name not in presets:
        raise ValueError(f"unknown upstream WavLM preset {name!r}; upstream knows {', '.join(presets)}")
    return json.loads(json.dumps(presets[name]))


def is_upstream_config(config: Any) -> bool:
    """Whether ``config`` looks like an upstream WavLM config dict."""
    return isinstance(config, Mapping) and all(key in config for key in IDENTIFYING_KEYS)


def wavlm_config_from_upstream(config: Mapping[str, Any]) -> WavLMConfig:
    """Our :class:`WavLMConfig` for an upstream config dict (see the module docstring for regularisation).

    ``extractor_output_scale`` is left False: whether the scale matters depends on the weights
    (:func:`wavlm_from_upstream` decides). Raises ``ValueError`` naming the key for unknown keys, configs of
    models that still carry pruning gates, an auxiliary head, or inconsistent per-layer lists.
    """
    unknown = sorted(set(config) - _KEYS)
    if unknown:
        raise ValueError(f"unknown upstream WavLM config key(s): {', '.join(unknown)}")
    missing = sorted(key for key in _KEYS - set(_PRUNING_FLAGS) if key not in config)
    if missing:
        raise ValueError(f"upstream WavLM config lacks {', '.join(missing)}")
    gated = [flag for flag in _PRUNING_FLAGS if config.get(flag)]
    if gated:
        raise ValueError(
            f"{', '.join(gated)} is set: the model still carries pruning gates; apply upstream's pruning "
            "(apply_pruning.py) first, or prune with diarizen-lab"
        )
    if config["aux_num_out"] is not None:
        raise ValueError("aux_num_out is set: WavLM models with an auxiliary output head are not supported")
    if config["extractor_mode"] not in _EXTRACTOR_MODES:
        raise ValueError(
            f"extractor_mode must be one of {', '.join(_EXTRACTOR_MODES)}, got {config['extractor_mode']!r}"
        )
    num_layers = int(config["encoder_num_layers"])
    per_layer = (
        "encoder_use_attention",
        "encoder_use_feed_forward",
        "encoder_total_num_heads",
        "encoder_remaining_heads",
        "encoder_ff_interm_features",
    )
    for key in per_layer:
        if len(config[key]) != num_layers:
            raise ValueError(f"{key} needs one entry per layer ({num_layers}), got {len(config[key])}")
    total_heads = set(int(h) for h in config["encoder_total_num_heads"])
    if len(total_heads) != 1:
        raise ValueError(
            f"encoder_total_num_heads must be the same in every layer, got {config['encoder_total_num_heads']}"
        )
    (total,) = total_heads
    head_indices = [
        [int(h) for h in heads] if use else []
        for use, heads in zip(config["encoder_use_attention"], config["encoder_remaining_heads"])
    ]
    unpruned = all(heads == list(range(total)) for heads in head_indices)
    return WavLMConfig(
        conv_layers=[tuple(layer) for layer in config["extractor_conv_layer_config"]],
        extractor_mode=_EXTRACTOR_MODES[config["extractor_mode"]],
        conv_bias=bool(config["extractor_conv_bias"]),
        normalize_waveform=bool(config["normalize_waveform"]),
        embed_dim=int(config["encoder_embed_dim"]),
        total_heads=total,
        num_heads=[len(heads) for heads in head_indices],
        ffn_dims=[
            int(size) if use else 0
            for use, size in zip(config["encoder_use_feed_forward"], config["encoder_ff_interm_features"])
        ],
        head_indices=None if unpruned else head_indices,
        layer_norm_first=bool(config["encoder_layer_norm_first"]),
        pos_conv_kernel=int(config["encoder_pos_conv_kernel"]),
        pos_conv_groups=int(config["encoder_pos_conv_groups"]),
        num_buckets=int(config["encoder_num_buckets"]),
        max_distance=int(config["encoder_max_distance"]),
        dropout=float(config["encoder_dropout"]),
        attention_dropout=float(config["encoder_attention_dropout"]),
        activation_dropout=float(config["encoder_ff_interm_dropout"]),
        projection_dropout=float(config["encoder_projection_dropout"]),
        layer_drop=0.0,
        feature_grad_mult=UPSTREAM_FEATURE_GRAD_MULT,
    )


def wavlm_from_upstream(config: Mapping[str, Any], state_dict: Mapping[str, Tensor]) -> tuple[WavLMConfig, StateDict]:
    """Our config and state dict for an upstream WavLM (config dict, state dict without ``wavlm_model.``).

    Tensor names are torchaudio's; besides renaming:

    - ``feature_extractor.dummy_weight`` becomes ``feature_extractor.output_scale`` (and sets
      ``extractor_output_scale``) unless it is all ones, the identity;
    - ``gru_rel_pos_const`` (one value per original head) keeps the kept heads' values: our attention gates
      only the heads it kept, reading the same input slices;
    - in pre-norm (Large) layers, the layer norm of a removed attention or feed-forward block, unused upstream
      too, is dropped.

    The result is not checked against the architecture here; :func:`~diarizen_lab.models.wavlm.formats.
    check_state_dict` does that.
    """
    from diarizen_lab.models.wavlm.formats import rename_state_dict  # formats reads upstream files with this

    ours = wavlm_config_from_upstream(config)
    renamed = rename_state_dict(dict(state_dict), "torchaudio")
    scale = renamed.pop("feature_extractor.dummy_weight", None)
    if scale is not None and not bool((scale == 1).all()):
        renamed["feature_extractor.output_scale"] = scale
        ours.extractor_output_scale = True
    for layer in range(ours.num_layers):
        prefix = f"encoder.layers.{layer}."
        const = renamed.get(prefix + "attention.gru_rel_pos_const")
        if const is not None and ours.num_heads[layer] and const.shape[1] == ours.total_heads:
            renamed[prefix + "attention.gru_rel_pos_const"] = const[:, ours.layer_head_indices(layer)].clone()
        if ours.layer_norm_first:
            sizes = {"attention_norm": ours.num_heads[layer], "feed_forward_norm": ours.ffn_dims[layer]}
            for norm in [norm for norm, size in sizes.items() if not size]:
                for name in ("weight", "bias"):
                    renamed.pop(f"{prefix}{norm}.{name}", None)
    return ours, renamed


__all__ = [
    "UPSTREAM_FEATURE_GRAD_MULT",
    "is_upstream_config",
    "upstream_preset",
    "upstream_preset_names",
    "wavlm_config_from_upstream",
    "wavlm_from_upstream",
]
