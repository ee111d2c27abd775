"""The sparsity constraint as a Lagrangian term with learned multipliers.

For expected sparsity ``s`` and target ``t`` the penalty is ``lambda1 * (s - t) + lambda2 * (s - t) ** 2``.
The model minimises it over the gates while the multipliers *maximise* it (their optimizer runs with
``maximize=True``): whenever ``s`` stays away from ``t`` the multipliers grow in the direction that makes the
penalty bite, which drives ``s`` to ``t`` without hand-tuning a penalty weight (Wang et al., 2020; Xia et al.,
2022; Peng et al., 2023). The target grows linearly from 0 to its final value over ``warmup_steps`` updates, so
the model is pruned gradually.

Both multipliers start at 0 in those papers. ``lambda1`` then only acts after it has integrated the gap long
enough to outweigh the distillation gradients, and everything it integrated meanwhile pushes the sparsity
past the target later. Starting ``lambda2`` above 0 (``lambda2_init``) makes the quadratic term a spring that
pulls the sparsity along the target from the first step (the penalty term of an augmented Lagrangian), leaving
``lambda1`` only the small remaining offset.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["SparsityLagrangian"]


class SparsityLagrangian(nn.Module):
    """Lagrangian penalty pulling the expected sparsity to a linearly warmed-up target.

    Parameters
    ----------
    target_sparsity : float
        Final target, the pruned fraction of the teacher's parameters, in [0, 1).
    warmup_steps : int
        Number of optimizer updates over which the target grows linearly from 0 to ``target_sparsity``;
        0 uses the final target from the first step.
    lambda2_init : float
        Initial value of the quadratic multiplier (``lambda1`` starts at 0).
    """

    def __init__(self, target_sparsity: float, warmup_steps: int, lambda2_init: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= target_sparsity < 1.0:
            raise ValueError(f"target_sparsity must be in [0, 1), got {target_sparsity}.")
        if warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}.")
        if lambda2_init < 0:
            raise ValueError(f"lambda2_init must be >= 0, got {lambda2_init}.")
        self.target_sparsity = target_sparsity
        self.warmup_steps = warmup_steps
        self.lambda1 = nn.Parameter(torch.zeros(()))
        self.lambda2 = nn.Parameter(torch.tensor(float(lambda2_init)))

    def target(self, step: int) -> float:
        """The target sparsity after ``step`` optimizer updates."""
        if self.warmup_steps == 0:
            return self.target_sparsity
        return self.target_sparsity * min(1.0, step / self.warmup_steps)

    def forward(self, expected_sparsity: torch.Tensor, step: int) -> torch.Tensor:
        """The penalty (a scalar) to add to the loss: minimised by the gates, maximised by the multipliers."""
        gap = expected_sparsity - self.target(step)
        return self.lambda1 * gap + self.lambda2 * gap * gap
