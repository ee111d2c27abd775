"""Hard-concrete gates, the Lagrangian sparsity penalty and the distillation loss."""

import math

import numpy as np
import pytest
import torch

from diarizen_lab.pruning.distill import HiddenStateDistillation
from diarizen_lab.pruning.hardconcrete import HardConcrete
from diarizen_lab.pruning.lagrangian import SparsityLagrangian

BETA, GAMMA, ZETA = 2.0 / 3.0, -0.1, 1.1


def gates_with(log_alpha: list[float]) -> HardConcrete:
    gate = HardConcrete(len(log_alpha), init_std=0.0)
    with torch.no_grad():
        gate.log_alpha.copy_(torch.tensor(log_alpha))
    return gate


def test_expected_l0_matches_monte_carlo():
    torch.manual_seed(0)
    log_alpha = [-3.0, -1.5, -0.5, 0.0, 0.7, 2.0, 4.0]
    gate = gates_with(log_alpha)
    draws = 40_000
    # one gate with every unit repeated `draws` times: one call gives `draws` independent samples per unit
    repeated = gates_with(log_alpha * draws).train()
    samples = repeated().view(draws, len(log_alpha))
    empirical = (samples > 0).float().mean(0)
    closed_form = gate.keep_prob().detach()
    # P(z > 0) = sigmoid(log_alpha - beta * log(-gamma / zeta)), written out by hand
    by_hand = torch.tensor([1 / (1 + math.exp(-(a - BETA * math.log(-GAMMA / ZETA)))) for a in log_alpha])
    assert torch.allclose(closed_form, by_hand, atol=1e-6)
    assert torch.allclose(empirical, closed_form, atol=0.01)  # 4 standard errors at p = 0.5
    assert gate.expected_l0().item() == pytest.approx(float(closed_form.sum()), abs=1e-5)
    assert torch.allclose(samples.mean(0), gate.mean().detach(), atol=0.005)  # E[z] by quadrature
    # samples are clamped to [0, 1] and reach both ends with non-zero probability
    assert samples.min() == 0.0 and samples.max() == 1.0
    assert ((samples > 0) & (samples < 1)).any()


def test_initial_keep_probability_is_the_configured_one():
    gate = HardConcrete(1000, init_keep_prob=0.9, init_std=0.0)
    assert torch.allclose(gate.keep_prob(), torch.full((1000,), 0.9), atol=1e-6)


def expected_gate_value(log_alpha: float, points: int = 200_001) -> float:
    """E[z] = integral over v in [0, 1] of P(z > v), by the trapezoid rule on a fine grid."""
    v = np.linspace(0.0, 1.0, points)
    w = (v - GAMMA) / (ZETA - GAMMA)
    above = 1.0 / (1.0 + np.exp(-(log_alpha - BETA * np.log(w / (1.0 - w)))))
    return float(np.trapezoid(above, v))


def test_deterministic_mask_keeps_the_top_round_l0_units_at_their_expected_value():
    log_alpha = [3.0, -4.0, 0.5, -2.5, 1.0, -1.0]
    gate = gates_with(log_alpha).eval()
    mask = gate()
    # keep probabilities 0.99, 0.004, 0.89, 0.29, 0.93, 0.65: 3.75 -> the 4 largest log_alpha
    assert round(gate.expected_l0().item()) == 4
    order = sorted(range(len(log_alpha)), key=lambda i: -log_alpha[i])
    for rank, unit in enumerate(order):
        expected = expected_gate_value(log_alpha[unit]) if rank < 4 else 0.0
        assert mask[unit].item() == pytest.approx(expected, abs=1e-5)
    assert torch.equal(gate(), mask)  # no randomness in eval mode


def test_units_kept_by_the_count_stay_non_zero_even_when_mostly_off():
    # the expected L0 keeps 3 units (1 + 4 * 0.475); the gate's median would be 0 for log_alpha -1.7
    gate = gates_with([5.0, -1.7, -1.7, -1.7, -1.7, -20.0]).eval()
    mask = gate()
    assert int((mask > 0).sum()) == round(gate.expected_l0().item()) == 3
    assert mask[1].item() == mask[2].item() == pytest.approx(expected_gate_value(-1.7), abs=1e-5)
    assert mask[0].item() == pytest.approx(expected_gate_value(5.0), abs=1e-5)
    assert mask[0].item() > 0.99


def test_expected_l0_is_differentiable():
    gate = gates_with([0.0, 1.0])
    gate.expected_l0().backward()
    assert (gate.log_alpha.grad > 0).all()


def test_lambda_ascent_pushes_sparsity_towards_the_target():
    def one_step(sparsity: float, target: float) -> tuple[float, float, float]:
        lagrangian = SparsityLagrangian(target, warmup_steps=0)
        with torch.no_grad():
            lagrangian.lambda1.fill_(0.1)
            lagrangian.lambda2.fill_(0.1)
        ascent = torch.optim.SGD(lagrangian.parameters(), lr=1.0, maximize=True)
        expected = torch.tensor(sparsity, requires_grad=True)
        lagrangian(expected, step=0).backward()
        ascent.step()
        return lagrangian.lambda1.item(), lagrangian.lambda2.item(), expected.grad.item()

    # too sparse: lambda1 grows, and minimising the penalty lowers the sparsity (positive gradient)
    lambda1, lambda2, gradient = one_step(0.6, 0.5)
    assert lambda1 == pytest.approx(0.1 + 0.1) and lambda2 == pytest.approx(0.1 + 0.01)
    assert gradient > 0
    # not sparse enough: lambda1 falls; after enough ascent the penalty pushes the sparsity up
    lambda1, lambda2, gradient = one_step(0.2, 0.5)
    assert lambda1 == pytest.approx(0.1 - 0.3) and lambda2 == pytest.approx(0.1 + 0.09)
    lagrangian = SparsityLagrangian(0.5, warmup_steps=0)
    with torch.no_grad():
        lagrangian.lambda1.fill_(lambda1)
        lagrangian.lambda2.fill_(lambda2)
    expected = torch.tensor(0.2, requires_grad=True)
    lagrangian(expected, step=0).backward()
    assert expected.grad.item() < 0


def test_target_warms_up_linearly():
    lagrangian = SparsityLagrangian(0.8, warmup_steps=100)
    assert [lagrangian.target(s) for s in (0, 25, 100, 500)] == pytest.approx([0.0, 0.2, 0.8, 0.8])
    assert SparsityLagrangian(0.8, warmup_steps=0).target(0) == 0.8


def test_distillation_loss_values():
    torch.manual_seed(0)
    target = torch.randn(2, 5, 8)
    loss = HiddenStateDistillation(l1_weight=1.0, l2_weight=1.0, cos_weight=1.0, cosine_type="distance")
    total, parts = loss([target.clone()], [target])
    assert total.item() == pytest.approx(0.0, abs=1e-6)
    shifted = target + 0.5
    total, parts = loss([shifted, target], [target, target])
    assert parts["l1"].item() == pytest.approx(0.5, abs=1e-6)
    assert parts["l2"].item() == pytest.approx(0.25, abs=1e-6)
    cosine = torch.nn.functional.cosine_similarity(shifted, target, dim=-1).mean()
    assert parts["cos"].item() == pytest.approx(1.0 - cosine.item(), abs=1e-6)
    assert total.item() == pytest.approx(0.75 + 1.0 - cosine.item(), abs=1e-6)
    log_sigmoid = HiddenStateDistillation(l1_weight=0.0, cos_weight=1.0, cosine_type="log_sigmoid")
    total, _ = log_sigmoid([target], [target])
    assert total.item() == pytest.approx(-math.log(1 / (1 + math.exp(-1.0))), abs=1e-6)
