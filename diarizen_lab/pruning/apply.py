"""Physical pruning: turn a gated student into a smaller plain WavLM that computes the same hidden states.

The deterministic gate masks (:meth:`HardConcrete.deterministic_mask`) decide what stays: units whose mask is
non-zero. The surviving weights are sliced out of the student and every mask value is folded into the next
linear map, so that in evaluation mode the pruned model reproduces the gated student:

- conv channel ``c`` of layer ``i``: row ``c`` of conv ``i`` (and its bias and norm entries) is kept; the mask
  value scales input column ``c`` of conv ``i + 1``. After the last convolution, the value scales the feature
  projection's layer-norm weight and bias, and the projection keeps the matching input columns;
- head ``h``: its rows of ``q/k/v_proj``, its columns of ``out_proj`` (scaled by the head's value times the
  attention-layer value), its relative-position gate constant; the head's original index is kept in
  ``head_indices`` so that it still reads its column of the shared relative position embedding and its slice
  of the gated-bias input. The attention-layer value also scales ``out_proj``'s bias;
- feed-forward unit ``u``: row ``u`` of the intermediate layer, column ``u`` of the output layer (scaled by
  the unit's value times the feed-forward-layer value, which also scales the output bias);
- a sublayer whose layer gate is zero, or that keeps no head or unit, is removed (``num_heads`` or
  ``ffn_dims`` 0). The encoder-level relative position embedding is kept whole, so every layer can use it
  whichever heads (of layer 0 or any other) were pruned.

Exactness: see :mod:`~diarizen_lab.pruning.student` — exact (up to float rounding) for students with
mask-aware layer norms; otherwise approximate wherever a layer norm normalises over pruned conv channels
(:func:`max_hidden_state_difference` measures it).
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from diarizen_lab.data.task import Task
from diarizen_lab.errors import DiarizenLabError
from diarizen_lab.models.wavlm import WavLM, WavLMConfig
from diarizen_lab.pruning.complexity import full_keep, mac_counts, param_counts
from diarizen_lab.pruning.student import PruningStudent
from diarizen_lab.utils.atomic import atomic_open

__all__ = ["write_pruned", "apply_pruning", "prune_student", "pruning_report", "architecture_summary", "max_hidden_state_difference"]


@torch.no_grad()
def prune_student(student: PruningStudent) -> WavLM:
    """The physically pruned WavLM (eval mode, on CPU) equivalent to ``student`` in evaluation mode."""
    config = student.wavlm.config
    source = {key: value.detach().cpu() for key, value in student.wavlm.state_dict().items()}
    values = {name: gate.deterministic_mask().detach().cpu() for name, gate in student.gates.items()}

    def mask(name: str, size: int) -> Tensor:
        return values[name].reshape(-1) if name in values else torch.ones(size)

    state: dict[str, Tensor] = {}

    # --- convolutional extractor and feature projection
    conv_layers = []
    previous_kept, previous_values = None, None
    for index, (channels, kernel, stride) in enumerate(config.conv_layers):
        layer_values = mask(f"conv_{index}", channels)
        kept = layer_values.nonzero().flatten()
        if kept.numel() == 0:
            raise DiarizenLabError(
                f"the gates of convolution {index} keep no channel: the extractor would be cut; lower the "
                "target sparsity or leave 'conv' out of the pruned units"
            )
        prefix = f"feature_extractor.layers.{index}"
        weight = source[f"{prefix}.conv.weight"][kept]
        if previous_kept is not None:
            weight = weight[:, previous_kept] * previous_values[previous_kept].view(1, -1, 1)
        state[f"{prefix}.conv.weight"] = weight
        for name in ("conv.bias", "norm.weight", "norm.bias"):
            if f"{prefix}.{name}" in source:
                state[f"{prefix}.{name}"] = source[f"{prefix}.{name}"][kept]
        conv_layers.append((kept.numel(), kernel, stride))
        previous_kept, previous_values = kept, layer_values
    last_values = previous_values[previous_kept]
    if config.extractor_output_scale:  # upstream's dummy_weight of an already-pruned WavLM, per kept channel
        state["feature_extractor.output_scale"] = source["feature_extractor.output_scale"][previous_kept]
    for name in ("weight", "bias"):
        key = f"feature_projection.layer_norm.{name}"
        state[key] = source[key][previous_kept] * last_values
    state["feature_projection.projection.weight"] = source["feature_projection.projection.weight"][:, previous_kept]
    state["feature_projection.projection.bias"] = source["feature_projection.projection.bias"]

    # --- encoder-level weights are not pruned
    for key, value in source.items():
        if key.startswith(("encoder.pos_conv.", "encoder.layer_norm.", "encoder.rel_attn_embed.")):
            state[key] = value

    # --- transformer layers
    num_heads, head_indices, ffn_dims = [], [], []
    head_dim = config.head_dim
    for index in range(config.num_layers):
        prefix = f"encoder.layers.{index}"
        heads, indices = _prune_attention(
            source, state, prefix, config.layer_head_indices(index), head_dim,
            mask(f"head_{index}", config.num_heads[index]), mask(f"attlayer_{index}", 1)[0],
        )
        num_heads.append(heads)
        head_indices.append(indices)
        ffn_dims.append(
            _prune_feed_forward(
                source, state, prefix, mask(f"interm_{index}", config.ffn_dims[index]),
                mask(f"ffnlayer_{index}", 1)[0],
            )
        )
        post_norm = not config.layer_norm_first
        for norm, present in (("attention_norm", heads > 0), ("feed_forward_norm", ffn_dims[-1] > 0)):
            if present or post_norm:
                for name in ("weight", "bias"):
                    state[f"{prefix}.{norm}.{name}"] = source[f"{prefix}.{norm}.{name}"]

    pruned_config = dataclasses.replace(
        config, conv_layers=conv_layers, num_heads=num_heads, ffn_dims=ffn_dims, head_indices=head_indices
    )
    pruned = WavLM(pruned_config)
    pruned.load_state_dict(state, strict=True)
    return pruned.eval()


def _prune_attention(
    source: dict[str, Tensor],
    state: dict[str, Tensor],
    prefix: str,
    indices: list[int],
    head_dim: int,
    head_values: Tensor,
    layer_value: Tensor,
) -> tuple[int, list[int]]:
    """Slice one attention sublayer into ``state``; return its kept head count and original head indices."""
    if not indices or layer_value <= 0:
        return 0, []
    kept = head_values.nonzero().flatten()
    if kept.numel() == 0:
        return 0, []
    rows = (kept[:, None] * head_dim + torch.arange(head_dim)).flatten()
    column_scale = (head_values[kept] * layer_value).repeat_interleave(head_dim)
    attention = f"{prefix}.attention"
    for projection in ("q_proj", "k_proj", "v_proj"):
        state[f"{attention}.{projection}.weight"] = source[f"{attention}.{projection}.weight"][rows]
        state[f"{attention}.{projection}.bias"] = source[f"{attention}.{projection}.bias"][rows]
    state[f"{attention}.out_proj.weight"] = source[f"{attention}.out_proj.weight"][:, rows] * column_scale
    state[f"{attention}.out_proj.bias"] = source[f"{attention}.out_proj.bias"] * layer_value
    state[f"{attention}.gru_rel_pos_linear.weight"] = source[f"{attention}.gru_rel_pos_linear.weight"]
    state[f"{attention}.gru_rel_pos_linear.bias"] = source[f"{attention}.gru_rel_pos_linear.bias"]
    state[f"{attention}.gru_rel_pos_const"] = source[f"{attention}.gru_rel_pos_const"][:, kept]
    return kept.numel(), [indices[h] for h in kept.tolist()]


def _prune_feed_forward(
    source: dict[str, Tensor], state: dict[str, Tensor], prefix: str, unit_values: Tensor, layer_value: Tensor
) -> int:
    """Slice one feed-forward sublayer into ``state``; return its kept width."""
    if unit_values.numel() == 0 or layer_value <= 0:
        return 0
    kept = unit_values.nonzero().flatten()
    if kept.numel() == 0:
        return 0
    ffn = f"{prefix}.feed_forward"
    state[f"{ffn}.intermediate.weight"] = source[f"{ffn}.intermediate.weight"][kept]
    state[f"{ffn}.intermediate.bias"] = source[f"{ffn}.intermediate.bias"][kept]
    state[f"{ffn}.output.weight"] = source[f"{ffn}.output.weight"][:, kept] * (unit_values[kept] * layer_value)
    state[f"{ffn}.output.bias"] = source[f"{ffn}.output.bias"] * layer_value
    return kept.numel()


def _counts(config: WavLMConfig, seconds: float, sample_rate: int) -> dict[str, dict[str, float]]:
    keep = full_keep(config)
    params = {name: float(value) for name, value in param_counts(config, keep).items()}
    macs = {name: float(value) for name, value in mac_counts(config, keep, seconds, sample_rate).items()}
    return {
        "params": {**params, "total": sum(params.values())},
        "macs_per_second": {**macs, "total": sum(macs.values())},
    }


def architecture_summary(config: WavLMConfig) -> dict[str, Any]:
    """Conv channels, heads and feed-forward widths per layer."""
    return {
        "conv_channels": [channels for channels, _, _ in config.conv_layers],
        "num_heads": list(config.num_heads),
        "ffn_dims": list(config.ffn_dims),
        "head_indices": [config.layer_head_indices(layer) for layer in range(config.num_layers)],
    }


def pruning_report(
    before: WavLMConfig, after: WavLMConfig, seconds: float = 1.0, sample_rate: int = Task.sample_rate
) -> dict[str, Any]:
    """Parameters and MACs per second of audio (input of ``seconds`` s) per component, before and after, and
    the achieved sparsity (pruned fraction of the parameters) and MAC reduction."""
    counts_before = _counts(before, seconds, sample_rate)
    counts_after = _counts(after, seconds, sample_rate)
    params_before, params_after = counts_before["params"]["total"], counts_after["params"]["total"]
    macs_before, macs_after = counts_before["macs_per_second"]["total"], counts_after["macs_per_second"]["total"]
    return {
        "before": counts_before,
        "after": counts_after,
        "sparsity": 1.0 - params_after / params_before,
        "mac_reduction": 1.0 - macs_after / macs_before,
        "macs_input_seconds": seconds,
        "architecture_before": architecture_summary(before),
        "architecture_after": architecture_summary(after),
    }


@torch.no_grad()
def max_hidden_state_difference(student: PruningStudent, pruned: WavLM, waveforms: Tensor) -> float:
    """Largest absolute difference between the hidden states of ``student`` and ``pruned`` (both in eval mode)."""
    was_training = student.training
    student.eval()
    pruned.eval()
    try:
        expected = student.hidden_states(waveforms)
        actual = pruned(waveforms)
    finally:
        student.train(was_training)
    return max(float((a - e).abs().max()) for a, e in zip(actual, expected))


def apply_pruning(
    student: PruningStudent,
    before: WavLMConfig | None = None,
    seconds: float = 1.0,
    sample_rate: int = Task.sample_rate,
) -> tuple[WavLM, dict[str, Any]]:
    """The physically pruned WavLM of ``student`` and its report: :func:`pruning_report` relative to ``before``
    (default: the student's own architecture), plus the largest hidden-state difference between the pruned
    WavLM and the gated student on two seconds of seeded noise, and whether norms were mask-aware."""
    pruned = prune_student(student)
    report = pruning_report(before or student.wavlm.config, pruned.config, seconds, sample_rate)
    probe = torch.randn(1, 2 * sample_rate, generator=torch.Generator().manual_seed(0))
    report["max_hidden_state_difference"] = max_hidden_state_difference(student, pruned, probe)
    report["mask_aware_norms"] = student.mask_aware_norms
    return pruned, report


def write_pruned(
    checkpoint: str | os.PathLike,
    output: str | os.PathLike,
    report_path: str | os.PathLike | None = None,
    teacher: str | os.PathLike | None = None,
    seconds: float = 1.0,
    sample_rate: int = Task.sample_rate,
) -> dict[str, Any]:
    """Prune the student in ``checkpoint`` (a model.pt, checkpoint or experiment directory) into the WavLM file
    ``output`` and write its JSON report (default: ``output`` with ``.json``); return the report.

    ``teacher``: the WavLM file the sparsity is relative to (default: the student's own architecture).
    """
    from diarizen_lab.models.io import find_model_file, load_model_file
    from diarizen_lab.models.wavlm.formats import load_wavlm_checkpoint, save_wavlm

    source = find_model_file(checkpoint)
    student = load_model_file(source)
    if not isinstance(student, PruningStudent):
        raise DiarizenLabError(
            f"{source} holds a {type(student).__name__}, not a PruningStudent: pass a distill-prune checkpoint"
        )
    before = None if teacher is None else load_wavlm_checkpoint(teacher)[0]
    pruned, report = apply_pruning(student, before, seconds=seconds, sample_rate=sample_rate)
    output = Path(output)
    report.update(source=str(source), output=str(output))
    save_wavlm(output, pruned)
    with atomic_open(Path(report_path) if report_path else output.with_suffix(".json"), "w") as f:
        json.dump(report, f, indent=2)
        f.write("\n")
    return report
