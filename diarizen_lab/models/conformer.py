"""Conformer encoder (Gulati et al., Interspeech 2020) used on top of the segmentation front ends.

Each block is ``x + FFN/2 -> x + MHSA -> x + Conv -> x + FFN/2 -> LayerNorm`` (macaron feed-forward halves).
Self-attention carries no positional encoding: position comes from the convolution module and the front end.
This is upstream DiariZen's block (its ``use_posi = false``); its separate query/key/value projections are the
three row blocks of ``nn.MultiheadAttention``'s ``in_proj``.

The convolution module normalises after the depthwise convolution with (``conv_norm``):

- ``"batch"``: ``BatchNorm1d``, as in the paper and upstream DiariZen (running statistics in evaluation mode);
- ``"layer"``: ``LayerNorm`` over channels: outputs then depend on one chunk only (identical in training and
  evaluation, for any batch size, gradient-accumulation setting or number of processes) and the model has no
  running statistics or integer buffers to average.
"""

from __future__ import annotations

import torch
from torch import nn


class FeedForward(nn.Module):
    """Pre-norm position-wise feed-forward sublayer: LayerNorm, Linear, SiLU, Dropout, Linear, Dropout."""

    def __init__(self, dim: int, hidden_dim: int, dropout: float) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.LayerNorm(dim),
            nn.Linear(dim, hidden_dim),
            nn.SiLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden_dim, dim),
            nn.Dropout(dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class SelfAttention(nn.Module):
    """Pre-norm multi-head self-attention sublayer."""

    def __init__(self, dim: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.attention = nn.MultiheadAttention(dim, num_heads, dropout=dropout, batch_first=True)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(x)
        x, _ = self.attention(x, x, x, need_weights=False)
        return self.dropout(x)


#: Normalisations after the depthwise convolution (see the module docstring).
CONV_NORMS = ("batch", "layer")


class ConvolutionModule(nn.Module):
    """Pre-norm convolution sublayer: pointwise conv + GLU, depthwise conv, norm, SiLU, pointwise conv."""

    def __init__(self, dim: int, kernel_size: int, dropout: float, norm: str = "batch") -> None:
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"Conformer kernel_size must be odd to keep the frame count, got {kernel_size}.")
        if norm not in CONV_NORMS:
            raise ValueError(f"Conformer conv_norm must be one of {', '.join(CONV_NORMS)}, got {norm!r}.")
        self.norm = nn.LayerNorm(dim)
        self.pointwise_in = nn.Conv1d(dim, 2 * dim, kernel_size=1)
        self.glu = nn.GLU(dim=1)
        self.depthwise = nn.Conv1d(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim)
        self.depthwise_norm = nn.BatchNorm1d(dim) if norm == "batch" else nn.LayerNorm(dim)
        self.activation = nn.SiLU()
        self.pointwise_out = nn.Conv1d(dim, dim, kernel_size=1)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(x).transpose(1, 2)  # (batch, dim, frame)
        x = self.depthwise(self.glu(self.pointwise_in(x)))
        if isinstance(self.depthwise_norm, nn.LayerNorm):
            x = self.depthwise_norm(x.transpose(1, 2)).transpose(1, 2)
        else:
            x = self.depthwise_norm(x)
        x = self.pointwise_out(self.activation(x))
        return self.dropout(x.transpose(1, 2))


class ConformerBlock(nn.Module):
    """One Conformer block: half-step FFN, self-attention, convolution, half-step FFN, final LayerNorm."""

    def __init__(
        self, dim: int, ffn_hidden: int, num_heads: int, kernel_size: int, dropout: float, conv_norm: str = "batch"
    ) -> None:
        super().__init__()
        self.ffn_in = FeedForward(dim, ffn_hidden, dropout)
        self.attention = SelfAttention(dim, num_heads, dropout)
        self.convolution = ConvolutionModule(dim, kernel_size, dropout, conv_norm)
        self.ffn_out = FeedForward(dim, ffn_hidden, dropout)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + 0.5 * self.ffn_in(x)
        x = x + self.attention(x)
        x = x + self.convolution(x)
        x = x + 0.5 * self.ffn_out(x)
        return self.norm(x)


class ConformerEncoder(nn.Module):
    """A stack of Conformer blocks mapping ``(batch, frame, dim)`` to ``(batch, frame, dim)``.

    Parameters
    ----------
    dim : int
        Model dimension (``attention_in``).
    ffn_hidden : int
        Hidden width of each feed-forward half.
    num_heads : int
        Attention heads; must divide ``dim``.
    num_layers : int
        Number of blocks.
    kernel_size : int
        Depthwise convolution kernel (odd).
    dropout : float
        Dropout in every sublayer and on attention weights.
    conv_norm : {"batch", "layer"}
        Normalisation after the depthwise convolution (see the module docstring).
    """

    def __init__(
        self,
        dim: int = 256,
        ffn_hidden: int = 1024,
        num_heads: int = 4,
        num_layers: int = 4,
        kernel_size: int = 31,
        dropout: float = 0.1,
        conv_norm: str = "batch",
    ) -> None:
        super().__init__()
        if dim % num_heads != 0:
            raise ValueError(f"Conformer dim ({dim}) must be divisible by num_heads ({num_heads}).")
        self.blocks = nn.ModuleList(
            ConformerBlock(dim, ffn_hidden, num_heads, kernel_size, dropout, conv_norm) for _ in range(num_layers)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x
