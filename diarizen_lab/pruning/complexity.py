"""Parameter and multiply-accumulate counts of a WavLM as functions of which units it keeps.

Every prunable unit has a keep probability (a 0/1 indicator for a fixed architecture). Units are independent,
so the expected size of a product of counts is the product of expected counts, and the formulas below are the
*exact* expectation of the parameter and MAC counts of the physically pruned model — in particular they equal
the real counts when every probability is 0 or 1. They are differentiable in the probabilities, which is how
the pruning objective steers the model towards a target size:

- convolution ``i``: ``kernel_i * C_{i-1} * C_i`` weights (quadratic in consecutive layers' kept channels),
  plus bias and normalisation parameters per kept channel;
- attention layer: ``P(layer) * (sum_h p_h * per_head + P(any head) * per_layer)``, where ``P(any head) =
  1 - prod_h (1 - p_h)`` accounts for the output bias and the relative-position gate, which go away with the
  last head; the same for feed-forward units;
- layer norms that belong to a sublayer (pre-norm models) disappear with it.

MACs count the multiply-accumulates of the convolutions and matrix products (attention scores included);
normalisations, activations and softmax are left out. They are reported per second of audio for an input of
``seconds`` seconds: the attention-score term grows with the input length, everything else is linear in it.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor

from diarizen_lab.data.task import Task
from diarizen_lab.models.wavlm import WavLMConfig

__all__ = ["UnitKeep", "full_keep", "param_counts", "mac_counts"]


@dataclasses.dataclass
class UnitKeep:
    """Keep probability (or 0/1 indicator) of every prunable unit of a WavLM.

    Attributes
    ----------
    conv : list of (channels,) Tensors
        Output channels of each convolution.
    heads : list of (num_heads,) Tensors
        Heads of each transformer layer (an empty tensor where the layer has no attention).
    attlayer : list of () Tensors
        Whole attention sublayers.
    interm : list of (ffn_dim,) Tensors
        Feed-forward intermediate units of each layer (empty where the layer has no feed-forward).
    ffnlayer : list of () Tensors
        Whole feed-forward sublayers.
    """

    conv: list[Tensor]
    heads: list[Tensor]
    attlayer: list[Tensor]
    interm: list[Tensor]
    ffnlayer: list[Tensor]


def full_keep(config: WavLMConfig) -> UnitKeep:
    """Every unit of ``config`` kept with probability 1."""
    one = torch.ones(())
    return UnitKeep(
        conv=[torch.ones(channels) for channels, _, _ in config.conv_layers],
        heads=[torch.ones(h) for h in config.num_heads],
        attlayer=[one for _ in config.num_heads],
        interm=[torch.ones(f) for f in config.ffn_dims],
        ffnlayer=[one for _ in config.ffn_dims],
    )


def _as_double(keep: UnitKeep) -> UnitKeep:
    """Counts of large models exceed float32's exact integer range (2**24): count in float64."""
    return UnitKeep(**{f.name: [t.double() for t in getattr(keep, f.name)] for f in dataclasses.fields(keep)})


def _any(probabilities: Tensor) -> Tensor:
    """Probability that at least one unit is kept."""
    if probabilities.numel() == 0:
        return probabilities.new_zeros(())
    return 1.0 - torch.prod(1.0 - probabilities)


def param_counts(config: WavLMConfig, keep: UnitKeep) -> dict[str, Tensor]:
    """Expected number of parameters per component: ``conv``, ``feature_projection``, ``encoder_shared``
    (positional convolution, encoder layer norm, relative position embedding), ``attention``, ``feed_forward``
    (each with its layer norms), as float64 scalars."""
    keep = _as_double(keep)
    zero = keep.conv[0].new_zeros(())
    dim, head_dim = config.embed_dim, config.head_dim
    channels = [c.sum() for c in keep.conv]

    conv = zero
    in_channels = zero + 1.0
    for index, ((_, kernel, _), out_channels) in enumerate(zip(config.conv_layers, channels)):
        conv = conv + kernel * in_channels * out_channels
        if config.conv_bias:
            conv = conv + out_channels
        if config.extractor_mode == "layer_norm" or index == 0:
            conv = conv + 2 * out_channels
        in_channels = out_channels

    last = channels[-1]
    feature_projection = 2 * last + last * dim + dim

    pos_conv = dim * (dim // config.pos_conv_groups) * config.pos_conv_kernel + config.pos_conv_kernel + dim
    encoder_shared = zero + float(pos_conv + 2 * dim + config.num_buckets * config.total_heads)

    per_head = 4 * dim * head_dim + 3 * head_dim + 1  # q/k/v rows and biases, out_proj columns, gate constant
    per_attention = dim + 8 * head_dim + 8  # out_proj bias, relative-position gate linear
    per_unit = 2 * dim + 1  # intermediate row and bias, output column
    attention = zero
    feed_forward = zero
    for heads, attlayer, units, ffnlayer in zip(keep.heads, keep.attlayer, keep.interm, keep.ffnlayer):
        present = attlayer * _any(heads)
        attention = attention + attlayer * heads.sum() * per_head + present * per_attention
        attention = attention + 2 * dim * (present if config.layer_norm_first else 1.0)
        present = ffnlayer * _any(units)
        feed_forward = feed_forward + ffnlayer * units.sum() * per_unit + present * dim
        feed_forward = feed_forward + 2 * dim * (present if config.layer_norm_first else 1.0)

    return {
        "conv": conv,
        "feature_projection": feature_projection,
        "encoder_shared": encoder_shared,
        "attention": attention,
        "feed_forward": feed_forward,
    }


def mac_counts(
    config: WavLMConfig, keep: UnitKeep, seconds: float = 1.0, sample_rate: int = Task.sample_rate
) -> dict[str, Tensor]:
    """Expected multiply-accumulates per second of audio, per component (keys of :func:`param_counts`),
    for an input of ``seconds`` seconds at ``sample_rate`` (default: the task default), as float64 scalars."""
    keep = _as_double(keep)
    zero = keep.conv[0].new_zeros(())
    dim, head_dim = config.embed_dim, config.head_dim
    frames = int(round(seconds * sample_rate))
    conv = zero
    in_channels = zero + 1.0
    for (_, kernel, stride), kept in zip(config.conv_layers, keep.conv):
        frames = max((frames - kernel) // stride + 1, 0)
        out_channels = kept.sum()
        conv = conv + frames * kernel * in_channels * out_channels
        in_channels = out_channels

    feature_projection = frames * in_channels * dim
    encoder_shared = zero + float(frames * dim * (dim // config.pos_conv_groups) * config.pos_conv_kernel)

    # per kept head: q/k/v/out projections, scores and weighted sum over `frames` keys, relative-position gate
    per_head = frames * (4 * dim * head_dim + 2 * frames * head_dim + 8 * head_dim)
    per_unit = frames * 2 * dim
    attention = zero
    feed_forward = zero
    for heads, attlayer, units, ffnlayer in zip(keep.heads, keep.attlayer, keep.interm, keep.ffnlayer):
        attention = attention + attlayer * heads.sum() * per_head
        feed_forward = feed_forward + ffnlayer * units.sum() * per_unit

    counts = {
        "conv": conv,
        "feature_projection": feature_projection,
        "encoder_shared": encoder_shared,
        "attention": attention,
        "feed_forward": feed_forward,
    }
    return {name: value / seconds for name, value in counts.items()}
