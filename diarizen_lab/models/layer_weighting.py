"""Learned weighted sum of the hidden states of a self-supervised encoder."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

#: ``"linear"``: upstream DiariZen's raw weights; ``"softmax"``: softmax-normalised weights.
LAYER_WEIGHTINGS = ("linear", "softmax")


class LayerWeighting(nn.Module):
    """Weighted sum of ``num_layers`` hidden states with learned weights.

    Parameters
    ----------
    num_layers : int
        Number of hidden states combined.
    mode : {"linear", "softmax"}
        ``"linear"`` (upstream DiariZen's ``weight_sum = Linear(num_layers, 1, bias=False)``): the weights are the
        parameter ``weight`` itself, unnormalised and of any sign, initialised like that linear layer (uniform in
        ``±1/sqrt(num_layers)``). ``"softmax"``: the weights are the softmax of the parameter ``logits``, which
        start at zero (every layer weighs ``1 / num_layers``).
    """

    def __init__(self, num_layers: int, mode: str = "linear") -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"LayerWeighting needs at least one layer, got {num_layers}.")
        if mode not in LAYER_WEIGHTINGS:
            raise ValueError(f"layer weighting must be one of {', '.join(LAYER_WEIGHTINGS)}, got {mode!r}.")
        self.mode = mode
        if mode == "linear":
            bound = 1.0 / math.sqrt(num_layers)
            self.weight = nn.Parameter(torch.empty(num_layers).uniform_(-bound, bound))
        else:
            self.logits = nn.Parameter(torch.zeros(num_layers))

    @property
    def num_layers(self) -> int:
        return (self.weight if self.mode == "linear" else self.logits).numel()

    @property
    def weights(self) -> torch.Tensor:
        """The layer weights applied, shape ``(num_layers,)``."""
        return self.weight if self.mode == "linear" else self.logits.softmax(dim=0)

    def forward(self, hidden_states: Sequence[torch.Tensor]) -> torch.Tensor:
        """Combine ``num_layers`` tensors of identical shape ``(batch, frame, dim)`` into one."""
        if len(hidden_states) != self.num_layers:
            raise ValueError(f"Expected {self.num_layers} hidden states, got {len(hidden_states)}.")
        weights = self.weights.to(hidden_states[0].dtype)
        return torch.einsum("l,lbfd->bfd", weights, torch.stack(list(hidden_states)))
