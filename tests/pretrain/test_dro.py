"""Group-DRO (Sagawa et al. 2020) against hand computations from the paper's formula."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from neurofeat.extract.dro import GroupDRO, erm_objective  # noqa: E402

pytestmark = pytest.mark.torch


def test_update_matches_hand_computation_with_adjustment():
    # Toy batch: 5 samples in 3 groups, eta = 0.1, C = 1, training sizes n_g = 10, 20, 40.
    losses = torch.tensor([1.0, 2.0, 3.0, 0.5, 4.0], requires_grad=True)
    groups = torch.tensor([0, 0, 1, 1, 2])
    dro = GroupDRO(3, eta=0.1, adjustment=1.0, group_counts=[10, 20, 40])
    step = dro(losses, groups)
    # By hand: L = (1.5, 1.75, 4.0); q0 = 1/3 each;
    # q_g <- q_g exp(eta (L_g + C / sqrt(n_g))), then renormalise.
    group_loss = np.array([1.5, 1.75, 4.0])
    unnormalised = (1 / 3) * np.exp(0.1 * (group_loss + 1.0 / np.sqrt([10.0, 20.0, 40.0])))
    q_expected = unnormalised / unnormalised.sum()
    np.testing.assert_allclose(step.q.numpy(), q_expected, rtol=1e-6)
    np.testing.assert_allclose(dro.q.numpy(), q_expected, rtol=1e-6)
    np.testing.assert_allclose(step.group_loss.numpy(), group_loss, rtol=1e-7)
    # objective = sum_g q_g L_g with the updated q (Algorithm 1 updates q first)
    np.testing.assert_allclose(step.objective.item(), float(q_expected @ group_loss), rtol=1e-6)
    assert step.objective_value == pytest.approx(float(q_expected @ group_loss), rel=1e-6)
    # d objective / d l_i = q_{g(i)} / (number of samples of g(i) in the batch)
    step.objective.backward()
    np.testing.assert_allclose(
        losses.grad.numpy(), [q_expected[0] / 2, q_expected[0] / 2, q_expected[1] / 2, q_expected[1] / 2,
                              q_expected[2] / 1], rtol=1e-6)


def test_second_step_with_an_absent_group():
    dro = GroupDRO(3, eta=0.5)
    dro(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([0, 1, 2]))
    q1 = np.exp(0.5 * np.array([1.0, 2.0, 3.0]))
    q1 = q1 / q1.sum()
    np.testing.assert_allclose(dro.q.numpy(), q1, rtol=1e-6)
    # Group 1 absent: no exponent for it (factor 1), no term in the objective, no NaN.
    step = dro(torch.tensor([4.0, 0.0, 2.0]), torch.tensor([0, 0, 2]))
    q2 = q1 * np.exp(0.5 * np.array([2.0, 0.0, 2.0]))
    q2 = q2 / q2.sum()
    np.testing.assert_allclose(step.q.numpy(), q2, rtol=1e-6)
    assert np.isnan(step.group_loss[1].item())
    assert step.group_count.tolist() == [2.0, 0.0, 1.0]
    np.testing.assert_allclose(step.objective.item(), q2[0] * 2.0 + q2[2] * 2.0, rtol=1e-6)


def test_q_moves_towards_the_higher_loss_group():
    dro = GroupDRO(2, eta=0.05, group_names=["UCSF", "UPenn"])
    previous = 0.5
    for _ in range(20):
        dro(torch.tensor([0.5, 0.5, 2.0, 2.0]), torch.tensor([0, 0, 1, 1]))
        assert dro.q[1].item() > previous
        previous = dro.q[1].item()
    # after 20 steps: q1/q0 = exp(20 * 0.05 * (2.0 - 0.5))
    np.testing.assert_allclose(dro.q[1].item() / dro.q[0].item(), np.exp(20 * 0.05 * 1.5), rtol=1e-5)


def test_erm_is_the_plain_mean():
    losses = torch.tensor([1.0, 2.0, 6.0], requires_grad=True)
    step = erm_objective(losses, torch.tensor([0, 1, 1]), 2)
    assert step.objective.item() == pytest.approx(3.0)
    assert step.group_loss.tolist() == pytest.approx([1.0, 4.0])
    step.objective.backward()
    np.testing.assert_allclose(losses.grad.numpy(), [1 / 3] * 3)


def test_state_round_trip_keeps_q():
    dro = GroupDRO(2, eta=0.3)
    dro(torch.tensor([1.0, 3.0]), torch.tensor([0, 1]))
    other = GroupDRO(2, eta=0.3)
    other.load_state_dict(dro.state_dict())
    torch.testing.assert_close(other.q, dro.q)


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match=r"per-sample loss vector \(B,\), got shape \(\)"):
        GroupDRO(2)(torch.tensor(1.0), torch.tensor([0]))
    with pytest.raises(ValueError, match=r"group index out of range \[0, 2\) \(min 0, max 2\)"):
        GroupDRO(2)(torch.tensor([1.0, 2.0]), torch.tensor([0, 2]))
    with pytest.raises(ValueError, match="adjustment C > 0 needs group_counts"):
        GroupDRO(2, adjustment=1.0)
    with pytest.raises(ValueError, match="3 losses but 2 group labels"):
        GroupDRO(2)(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([0, 1]))
