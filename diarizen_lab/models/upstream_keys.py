"""Upstream DiariZen's WavLM-Conformer state dict (``pytorch_model.bin``) in our names.

Upstream's ``diarizen.models.eend.model_wavlm_conformer.Model`` computes what our
:class:`~diarizen_lab.models.wavlm_conformer.WavLMConformer` computes with ``layer_weighting="linear"`` and
``conformer_conv_norm="batch"`` (its defaults); :func:`wavlm_conformer_state_dict_from_upstream` renames the
weights. The WavLM part (``wavlm_model.*``) goes through
:func:`~diarizen_lab.models.wavlm.upstream.wavlm_from_upstream`, which also needs upstream's WavLM config dict
(a preset, a ``wavlm_config.json`` or the ``config`` of a ``{"state_dict", "config"}`` file).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from diarizen_lab.models.wavlm import WavLMConfig
from diarizen_lab.models.wavlm.upstream import wavlm_from_upstream

StateDict = dict[str, Tensor]

WAVLM_PREFIX = "wavlm_model."

_BLOCK = r"conformer\.conformer_layer\.(\d+)\."
_OURS = r"conformer.blocks.\1."
# (pattern matched at the start of an upstream head key, our name); the first matching rule applies
_HEAD_RENAMES = [
    (r"weight_sum\.weight$", "layer_weighting.weight"),
    (r"proj\.", "projection."),
    (r"lnorm\.", "projection_norm."),
    (r"classifier\.", "classifier."),
    *[
        (_BLOCK + theirs, _OURS + ours)
        for theirs, ours in [
            (r"ffn1\.ln_norm\.", "ffn_in.layers.0."),
            (r"ffn1\.w_1\.", "ffn_in.layers.1."),
            (r"ffn1\.w_2\.", "ffn_in.layers.4."),
            (r"ffn2\.ln_norm\.", "ffn_out.layers.0."),
            (r"ffn2\.w_1\.", "ffn_out.layers.1."),
            (r"ffn2\.w_2\.", "ffn_out.layers.4."),
            (r"mha\.ln_norm\.", "attention.norm."),
            (r"mha\.mha\.linear([QKV])\.(weight|bias)$", r"attention.attention.linear\2.\3"),  # packed below
            (r"mha\.mha\.linearO\.", "attention.attention.out_proj."),
            (r"conv\.ln_norm\.", "convolution.norm."),
            (r"conv\.pointwise_conv1\.", "convolution.pointwise_in."),
            (r"conv\.depthwise_conv\.", "convolution.depthwise."),
            (r"conv\.bn_norm\.", "convolution.depthwise_norm."),
            (r"conv\.pointwise_conv2\.", "convolution.pointwise_out."),
            (r"ln_norm\.", "norm."),
        ]
    ],
]
_RULES = [(re.compile(pattern), replacement) for pattern, replacement in _HEAD_RENAMES]


def wavlm_conformer_state_dict_from_upstream(
    state_dict: Mapping[str, Tensor], wavlm_config: Mapping[str, Any]
) -> tuple[WavLMConfig, StateDict]:
    """Our WavLM config and ``WavLMConformer`` state dict for upstream's model state dict.

    Parameters
    ----------
    state_dict : mapping
        Upstream ``Model.state_dict()`` (the released ``pytorch_model.bin``).
    wavlm_config : mapping
        Upstream's config dict of its WavLM (see the module docstring).

    Returns
    -------
    config, state_dict
        Build ``WavLMConformer(wavlm=config.to_dict(), layer_weighting="linear", conformer_conv_norm="batch",
        ...)`` and load ``state_dict`` strictly.

    Raises
    ------
    ValueError
        For keys of no known upstream module (e.g. the Conformer's relative positional encoding, ``use_posi``)
        or an invalid WavLM config.
    """
    wavlm = {key[len(WAVLM_PREFIX):]: value for key, value in state_dict.items() if key.startswith(WAVLM_PREFIX)}
    config, ours = wavlm_from_upstream(wavlm_config, wavlm)
    ours = {f"wavlm.{key}": value for key, value in ours.items()}
    unknown = []
    packed: dict[str, dict[str, Tensor]] = {}
    for key, value in state_dict.items():
        if key.startswith(WAVLM_PREFIX):
            continue
        rule = next(((pattern, new) for pattern, new in _RULES if pattern.match(key)), None)
        if rule is None:
            unknown.append(key)
            continue
        name = rule[0].sub(rule[1], key, count=1)
        if name == "layer_weighting.weight":
            value = value.reshape(-1)
        match = re.match(r"(.*attention\.attention\.)linear([QKV])\.(weight|bias)$", name)
        if match:
            prefix, projection, kind = match.groups()
            packed.setdefault(f"{prefix}in_proj_{kind}", {})[projection] = value
        else:
            ours[name] = value
    if unknown:
        shown = ", ".join(unknown[:5]) + (f", ... ({len(unknown)} in all)" if len(unknown) > 5 else "")
        raise ValueError(f"upstream model weights of no supported module: {shown}")
    for name, parts in packed.items():
        if set(parts) != {"Q", "K", "V"}:
            raise ValueError(f"upstream attention {name} lacks linear{'/'.join(sorted({'Q', 'K', 'V'} - set(parts)))}")
        ours[name] = torch.cat([parts["Q"], parts["K"], parts["V"]])
    return config, ours


__all__ = ["wavlm_conformer_state_dict_from_upstream"]
