"""Self-attention with WavLM's gated relative position bias, built to survive head pruning.

The bucketed relative position embedding lives at encoder level (:class:`RelativePositionBias`, one column per
original head) and each attention layer reads the columns of the heads it kept (``head_indices``), so any
layer, the first included, can lose any of its heads.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F


def relative_position_buckets(length: int, num_buckets: int, max_distance: int, device=None) -> Tensor:
    """Bucket of every (query, key) offset, shape ``(length, length)``.

    Half of the buckets hold keys after the query, half keys at or before it. Within a half, offsets below a
    quarter of ``num_buckets`` get their own bucket; larger ones share logarithmically wider buckets up to
    ``max_distance``, beyond which all offsets fall in the last bucket.
    """
    positions = torch.arange(length, device=device)
    offsets = positions[None, :] - positions[:, None]
    half = num_buckets // 2
    exact = half // 2
    distance = offsets.abs()
    log_bucket = torch.log(distance.float() / exact) / math.log(max_distance / exact) * (half - exact)
    log_bucket = (exact + log_bucket.to(torch.long)).clamp(max=half - 1)
    bucket = torch.where(distance < exact, distance, log_bucket)
    return bucket + (offsets > 0).to(torch.long) * half


class RelativePositionBias(nn.Module):
    """Learned attention bias per (relative position bucket, original head)."""

    def __init__(self, num_buckets: int, max_distance: int, num_heads: int) -> None:
        super().__init__()
        self.max_distance = max_distance
        self.embedding = nn.Embedding(num_buckets, num_heads)
        nn.init.xavier_normal_(self.embedding.weight)

    def forward(self, length: int) -> Tensor:
        """Bias of shape ``(original heads, length, length)``."""
        buckets = relative_position_buckets(
            length, self.embedding.num_embeddings, self.max_distance, device=self.embedding.weight.device
        )
        return self.embedding(buckets).permute(2, 0, 1)


class GatedSelfAttention(nn.Module):
    """Multi-head self-attention whose relative position bias is gated by the input (GRU-style, per head).

    For kept head ``h`` (original index ``j``), a shared ``Linear(head_dim, 8)`` reads slice ``j`` of the input,
    giving gates ``a`` and ``b`` (sigmoids of two sums of four outputs); the head's bias row for each query is
    multiplied by ``a * (b * c_h - 1) + 2`` with a learned per-head constant ``c_h``.

    Gate slots (each a module called with no argument):

    - ``gate() -> (num_heads,)`` scales each head's context before the output projection;
    - ``output_gate() -> ()`` scales the whole attention output.
    """

    def __init__(
        self,
        embed_dim: int,
        head_indices: Sequence[int],
        head_dim: int,
        dropout: float,
    ) -> None:
        super().__init__()
        if not head_indices:
            raise ValueError("an attention layer needs at least one head; use no attention module instead")
        self.head_indices = list(head_indices)
        self.head_dim = head_dim
        self.dropout = dropout
        inner = self.num_heads * head_dim
        self.q_proj = nn.Linear(embed_dim, inner)
        self.k_proj = nn.Linear(embed_dim, inner)
        self.v_proj = nn.Linear(embed_dim, inner)
        self.out_proj = nn.Linear(inner, embed_dim)
        self.gru_rel_pos_linear = nn.Linear(head_dim, 8)
        self.gru_rel_pos_const = nn.Parameter(torch.ones(1, self.num_heads, 1, 1))
        self.gate: nn.Module | None = None
        self.output_gate: nn.Module | None = None

    @property
    def num_heads(self) -> int:
        return len(self.head_indices)

    def _gated_bias(self, x: Tensor, position_bias: Tensor) -> Tensor:
        batch, length, _ = x.shape
        slices = x.unflatten(-1, (-1, self.head_dim))
        if self.num_heads != slices.size(2):
            index = torch.tensor(self.head_indices, device=x.device)
            slices = slices.index_select(2, index)
            position_bias = position_bias.index_select(0, index)
        gates = torch.sigmoid(self.gru_rel_pos_linear(slices).view(batch, length, self.num_heads, 2, 4).sum(-1))
        gate_a, gate_b = gates.unbind(-1)
        scale = gate_a * (gate_b * self.gru_rel_pos_const.view(self.num_heads) - 1.0) + 2.0
        return scale.transpose(1, 2).unsqueeze(-1) * position_bias

    def forward(self, x: Tensor, position_bias: Tensor, key_padding_mask: Tensor | None = None) -> Tensor:
        """Attend over ``x`` ``(batch, frame, embed_dim)``.

        ``position_bias`` has shape ``(original heads, frame, frame)``; ``key_padding_mask`` ``(batch, frame)``
        is True for padded frames, which no query attends to.
        """
        batch, length, _ = x.shape
        bias = self._gated_bias(x, position_bias)
        if key_padding_mask is not None:
            bias = bias.masked_fill(key_padding_mask[:, None, None, :], float("-inf"))

        def heads(projection: nn.Linear) -> Tensor:
            return projection(x).view(batch, length, self.num_heads, self.head_dim).transpose(1, 2)

        query = heads(self.q_proj)
        context = F.scaled_dot_product_attention(
            query,
            heads(self.k_proj),
            heads(self.v_proj),
            attn_mask=bias.to(query.dtype),
            dropout_p=self.dropout if self.training else 0.0,
        )
        if self.gate is not None:
            context = context * self.gate().view(1, -1, 1, 1)
        output = self.out_proj(context.transpose(1, 2).reshape(batch, length, -1))
        if self.output_gate is not None:
            output = output * self.output_gate()
        return output
