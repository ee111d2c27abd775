"""Hard-concrete gates: a differentiable relaxation of per-unit keep/drop decisions (Louizos et al., 2018).

Each of ``n`` units owns a location parameter ``log_alpha``. With temperature ``beta`` and stretch limits
``gamma < 0 < 1 < zeta``, a gate value is

    s = sigmoid((log u - log(1 - u) + log_alpha) / beta),   u ~ Uniform(0, 1)
    z = clamp(s * (zeta - gamma) + gamma, 0, 1)

so ``z`` is exactly 0 or 1 with non-zero probability and smooth in between. The probability that a unit is
*kept* (its gate is not exactly zero) has the closed form

    P(z > 0) = sigmoid(log_alpha - beta * log(-gamma / zeta))

and the expected L0 norm (expected number of kept units) is its sum. Both are differentiable in ``log_alpha``.

Deterministic mask (evaluation, and the mask that physical pruning realises):

1. ``k = round(expected L0)`` units are kept: the ``k`` with the largest ``log_alpha`` (ties: lowest index);
2. a kept unit's value is the gate's expected value ``E[z] = integral_0^1 P(z > v) dv`` with
   ``P(z > v) = sigmoid(log_alpha - beta * logit((v - gamma) / (zeta - gamma)))`` (a smooth integrand,
   integrated by 16-point Gauss-Legendre quadrature); the other units are 0.

``E[z]`` lies in (0, 1) for every ``log_alpha``: exactly ``k`` units are non-zero, so the deterministic model has
the size that the expected L0 announced. (The gate's median, ``clamp(sigmoid(log_alpha / beta) * (zeta -
gamma) + gamma, 0, 1)``, would be 0 for every unit with ``P(z > 0) <= 1/2`` and silently drop such units.) Well
trained gates are saturated, where ``E[z]`` is within float rounding of 1.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

__all__ = ["HardConcrete"]

#: Gauss-Legendre nodes and weights on [0, 1] for E[z]
_NODES, _WEIGHTS = (np.asarray(a) for a in np.polynomial.legendre.leggauss(16))
_NODES, _WEIGHTS = (_NODES + 1.0) / 2.0, _WEIGHTS / 2.0


class HardConcrete(nn.Module):
    """Hard-concrete gates for ``num_units`` units.

    Calling the module returns the mask, shape ``(num_units,)``: a fresh sample in training mode, the
    deterministic mask (see the module docstring) in evaluation mode.

    Parameters
    ----------
    num_units : int
        Number of gated units.
    init_keep_prob : float
        Initial probability that a gate is non-zero, ``P(z > 0)``, in (0, 1); ``log_alpha`` starts at the
        value giving it (plus ``init_std`` Gaussian noise, which breaks ties between units).
    init_std : float
        Standard deviation of the initial noise on ``log_alpha``.
    temperature : float
        ``beta``.
    stretch : tuple[float, float]
        ``(gamma, zeta)``, with ``gamma < 0`` and ``zeta > 1``.
    eps : float
        Uniform noise is drawn in ``[eps, 1 - eps]`` to keep its logit finite.
    """

    def __init__(
        self,
        num_units: int,
        init_keep_prob: float = 0.99,
        init_std: float = 0.01,
        temperature: float = 2.0 / 3.0,
        stretch: tuple[float, float] = (-0.1, 1.1),
        eps: float = 1e-6,
    ) -> None:
        super().__init__()
        gamma, zeta = stretch
        if num_units < 1:
            raise ValueError(f"HardConcrete needs at least one unit, got {num_units}.")
        if not 0.0 < init_keep_prob < 1.0:
            raise ValueError(f"init_keep_prob must be in (0, 1), got {init_keep_prob}.")
        if not (gamma < 0.0 and zeta > 1.0 and temperature > 0.0):
            raise ValueError(f"need stretch gamma < 0 < 1 < zeta and temperature > 0, got {stretch}, {temperature}.")
        self.num_units = num_units
        self.temperature = temperature
        self.gamma = gamma
        self.zeta = zeta
        self.eps = eps
        #: log_alpha + shift is the logit of P(z > 0)
        self.shift = -temperature * math.log(-gamma / zeta)
        init = math.log(init_keep_prob) - math.log1p(-init_keep_prob) - self.shift
        self.log_alpha = nn.Parameter(torch.full((num_units,), init))
        if init_std > 0:
            with torch.no_grad():
                self.log_alpha.add_(torch.randn(num_units) * init_std)

    def extra_repr(self) -> str:
        return f"num_units={self.num_units}, temperature={self.temperature:.4g}, stretch=({self.gamma}, {self.zeta})"

    def keep_prob(self) -> torch.Tensor:
        """``P(z > 0)`` per unit, shape ``(num_units,)``; differentiable."""
        return torch.sigmoid(self.log_alpha + self.shift)

    def expected_l0(self) -> torch.Tensor:
        """Expected number of non-zero gates (a scalar); differentiable."""
        return self.keep_prob().sum()

    def mean(self) -> torch.Tensor:
        """``E[z]`` per unit, shape ``(num_units,)`` (see the module docstring); differentiable."""
        nodes = torch.as_tensor(_NODES, dtype=self.log_alpha.dtype, device=self.log_alpha.device)
        weights = torch.as_tensor(_WEIGHTS, dtype=self.log_alpha.dtype, device=self.log_alpha.device)
        unstretched = (nodes - self.gamma) / (self.zeta - self.gamma)
        above = torch.sigmoid(self.log_alpha[:, None] - self.temperature * torch.logit(unstretched)[None, :])
        return above @ weights

    def sample(self) -> torch.Tensor:
        """A reparameterised sample of the gates; differentiable in ``log_alpha``."""
        u = torch.empty_like(self.log_alpha).uniform_(self.eps, 1.0 - self.eps)
        logits = (torch.log(u) - torch.log1p(-u) + self.log_alpha) / self.temperature
        s = torch.sigmoid(logits)
        return (s * (self.zeta - self.gamma) + self.gamma).clamp(0.0, 1.0)

    @torch.no_grad()
    def deterministic_mask(self) -> torch.Tensor:
        """The evaluation mask: the top ``round(expected L0)`` units at their expected value, the rest 0."""
        num_kept = int(round(self.expected_l0().item()))
        mask = torch.zeros_like(self.log_alpha)
        if num_kept > 0:
            # stable sort: equal log_alpha keeps the lower index first
            order = torch.sort(self.log_alpha, descending=True, stable=True).indices
            kept = order[:num_kept]
            mask[kept] = self.mean()[kept]
        return mask

    def forward(self) -> torch.Tensor:
        return self.sample() if self.training else self.deterministic_mask()
