"""Learned convex combination of the hidden states of a self-supervised encoder."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class LayerWeighting(nn.Module):
    """Weighted sum of ``num_layers`` hidden states with softmax-normalised learned weights.

    The logits start at zero, so every layer initially gets the weight ``1 / num_layers``.
    """

    def __init__(self, num_layers: int) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"LayerWeighting needs at least one layer, got {num_layers}.")
        self.logits = nn.Parameter(torch.zeros(num_layers))

    @property
    def weights(self) -> torch.Tensor:
        """Normalised layer weights, shape ``(num_layers,)``."""
        return self.logits.softmax(dim=0)

    def forward(self, hidden_states: Sequence[torch.Tensor]) -> torch.Tensor:
        """Combine ``num_layers`` tensors of identical shape ``(batch, frame, dim)`` into one."""
        if len(hidden_states) != self.logits.numel():
            raise ValueError(f"Expected {self.logits.numel()} hidden states, got {len(hidden_states)}.")
        weights = self.weights.to(hidden_states[0].dtype)
        return torch.einsum("l,lbfd->bfd", weights, torch.stack(list(hidden_states)))
