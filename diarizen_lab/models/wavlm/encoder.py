"""WavLM transformer encoder: convolutional positional embedding and post- or pre-norm layers of varying size."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from diarizen_lab.models.wavlm.attention import GatedSelfAttention, RelativePositionBias
from diarizen_lab.models.wavlm.config import WavLMConfig


class PositionalConvEmbedding(nn.Module):
    """Grouped, weight-normalised convolution over frames (same-length output), followed by GELU."""

    def __init__(self, embed_dim: int, kernel: int, groups: int) -> None:
        super().__init__()
        conv = nn.Conv1d(embed_dim, embed_dim, kernel, padding=kernel // 2, groups=groups)
        nn.init.normal_(conv.weight, std=math.sqrt(4.0 / (kernel * embed_dim)))
        nn.init.zeros_(conv.bias)
        self.conv = nn.utils.parametrizations.weight_norm(conv, name="weight", dim=2)
        self.trim = 1 if kernel % 2 == 0 else 0

    def forward(self, x: Tensor) -> Tensor:
        """``(batch, frame, dim)`` -> ``(batch, frame, dim)``."""
        y = self.conv(x.transpose(1, 2))
        if self.trim:
            y = y[..., : -self.trim]
        return F.gelu(y).transpose(1, 2)


class FeedForward(nn.Module):
    """Linear, GELU, dropout, linear, dropout.

    Gate slots: ``gate() -> (ffn_dim,)`` scales the intermediate units after the activation;
    ``output_gate() -> ()`` scales the sublayer output.
    """

    def __init__(self, embed_dim: int, ffn_dim: int, activation_dropout: float, dropout: float) -> None:
        super().__init__()
        self.intermediate = nn.Linear(embed_dim, ffn_dim)
        self.output = nn.Linear(ffn_dim, embed_dim)
        self.activation_dropout = nn.Dropout(activation_dropout)
        self.dropout = nn.Dropout(dropout)
        self.gate: nn.Module | None = None
        self.output_gate: nn.Module | None = None

    def forward(self, x: Tensor) -> Tensor:
        hidden = F.gelu(self.intermediate(x))
        if self.gate is not None:
            hidden = hidden * self.gate()
        y = self.dropout(self.output(self.activation_dropout(hidden)))
        if self.output_gate is not None:
            y = y * self.output_gate()
        return y


class EncoderLayer(nn.Module):
    """Attention and feed-forward sublayers with residual connections; either sublayer may be absent (None).

    Post-norm: ``x = norm1(x + attn(x)); x = norm2(x + ffn(x))``. Pre-norm: ``x = x + attn(norm1(x));
    x = x + ffn(norm2(x))``, where a pre-norm layer norm goes away with its sublayer.
    """

    def __init__(self, config: WavLMConfig, layer: int) -> None:
        super().__init__()
        dim, eps = config.embed_dim, config.layer_norm_eps
        self.layer_norm_first = config.layer_norm_first
        heads, ffn_dim = config.num_heads[layer], config.ffn_dims[layer]
        self.attention = None
        if heads:
            self.attention = GatedSelfAttention(
                dim, config.layer_head_indices(layer), config.head_dim, config.attention_dropout
            )
        self.feed_forward = None
        if ffn_dim:
            self.feed_forward = FeedForward(dim, ffn_dim, config.activation_dropout, config.dropout)
        keep_norms = not self.layer_norm_first
        self.attention_norm = nn.LayerNorm(dim, eps=eps) if heads or keep_norms else None
        self.feed_forward_norm = nn.LayerNorm(dim, eps=eps) if ffn_dim or keep_norms else None
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: Tensor, position_bias: Tensor, key_padding_mask: Tensor | None = None) -> Tensor:
        if self.layer_norm_first:
            if self.attention is not None:
                x = x + self.dropout(self.attention(self.attention_norm(x), position_bias, key_padding_mask))
            if self.feed_forward is not None:
                x = x + self.feed_forward(self.feed_forward_norm(x))
            return x
        if self.attention is not None:
            x = x + self.dropout(self.attention(x, position_bias, key_padding_mask))
        x = self.attention_norm(x)
        if self.feed_forward is not None:
            x = x + self.feed_forward(x)
        return self.feed_forward_norm(x)


class Encoder(nn.Module):
    """Positional convolution, layer norm, transformer layers.

    Post-norm models apply ``layer_norm`` before the first layer. Pre-norm checkpoints carry a final layer norm
    that only their last output uses, not the hidden states (transformers' ``hidden_states``, torchaudio's
    ``extract_features``, s3prl's layer results); it is kept so that checkpoints round-trip, and created frozen
    so that distributed training sees no parameter without gradient.
    """

    def __init__(self, config: WavLMConfig) -> None:
        super().__init__()
        self.layer_norm_first = config.layer_norm_first
        self.layer_drop = config.layer_drop
        self.pos_conv = PositionalConvEmbedding(config.embed_dim, config.pos_conv_kernel, config.pos_conv_groups)
        self.layer_norm = nn.LayerNorm(config.embed_dim, eps=config.layer_norm_eps)
        if self.layer_norm_first:
            self.layer_norm.requires_grad_(False)
        self.dropout = nn.Dropout(config.dropout)
        self.rel_attn_embed = RelativePositionBias(config.num_buckets, config.max_distance, config.total_heads)
        self.layers = nn.ModuleList(EncoderLayer(config, layer) for layer in range(config.num_layers))

    def forward(self, x: Tensor, padding_mask: Tensor | None = None) -> list[Tensor]:
        """All hidden states of ``x`` ``(batch, frame, dim)``: the input of the first layer, then each layer's output.

        ``padding_mask`` ``(batch, frame)`` is True for padded frames: they are zeroed before the positional
        convolution and never attended to. A layer skipped by layer drop repeats its input.
        """
        if padding_mask is not None:
            x = x.masked_fill(padding_mask.unsqueeze(-1), 0.0)
        x = x + self.pos_conv(x)
        if not self.layer_norm_first:
            x = self.layer_norm(x)
        x = self.dropout(x)
        position_bias = self.rel_attn_embed(x.size(1))
        hidden_states = [x]
        for layer in self.layers:
            if not (self.training and self.layer_drop > 0 and torch.rand(()) < self.layer_drop):
                x = layer(x, position_bias, padding_mask)
            hidden_states.append(x)
        return hidden_states
