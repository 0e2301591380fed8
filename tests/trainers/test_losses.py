"""PPO loss terms against hand-computed numbers, with masks."""

from __future__ import annotations

import math

import pytest
import torch

from unimarl.trainers.algos.mappo.losses import entropy_bonus, masked_mean, policy_loss, value_loss


def t(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


def test_policy_loss_clips_and_masks() -> None:
    ratios = [1.5, 0.5, 1.0, 2.0]
    logp_new = torch.log(t(*ratios))
    # min(1.5*1, 1.2*1) = 1.2; min(0.5*1, 0.8*1) = 0.5; 1.0*-2 = -2; 4th masked out -> -(1.2+0.5-2)/3
    loss = policy_loss(logp_new, t(0, 0, 0, 0), t(1, 1, -2, 3), t(1, 1, 1, 0), clip=0.2)
    assert loss.item() == pytest.approx(0.1)


def test_policy_loss_negative_advantage_takes_pessimistic_bound() -> None:
    # ratio 0.5, A = -1: min(-0.5, 0.8 * -1) = -0.8
    loss = policy_loss(torch.log(t(0.5)), t(0.0), t(-1.0), t(1.0), clip=0.2)
    assert loss.item() == pytest.approx(0.8)


VALUES_NEW = t(1.0, -0.1, 3.0)
VALUES_OLD = t(0.0, 0.0, 0.0)
RETURNS = t(2.0, 0.5, -20.0)


def test_value_loss_clipped_mse() -> None:
    # errors 1, 0.6, -23; clipped values 0.2, -0.1, 0.2 -> errors 1.8, 0.6, -20.2; max of halves squared
    loss = value_loss(VALUES_NEW, VALUES_OLD, RETURNS, t(1, 1, 1), clip=0.2, huber_delta=None)
    assert loss.item() == pytest.approx((1.62 + 0.18 + 264.5) / 3)


def test_value_loss_huber_without_clip() -> None:
    # Huber(10): 0.5, 0.18, 10 * (23 - 5) = 180
    loss = value_loss(VALUES_NEW, VALUES_OLD, RETURNS, t(1, 1, 1), clip=None, huber_delta=10.0)
    assert loss.item() == pytest.approx((0.5 + 0.18 + 180.0) / 3)


def test_value_loss_huber_with_clip() -> None:
    # max(0.5, 1.62) = 1.62; 0.18; max(180, 10 * (20.2 - 5) = 152) = 180
    loss = value_loss(VALUES_NEW, VALUES_OLD, RETURNS, t(1, 1, 1), clip=0.2, huber_delta=10.0)
    assert loss.item() == pytest.approx((1.62 + 0.18 + 180.0) / 3)


def test_value_loss_mask_excludes_steps() -> None:
    loss = value_loss(VALUES_NEW, VALUES_OLD, RETURNS, t(1, 1, 0), clip=None, huber_delta=10.0)
    assert loss.item() == pytest.approx((0.5 + 0.18) / 2)


def test_entropy_bonus_and_empty_mask() -> None:
    assert entropy_bonus(t(1, 2, 3), t(1, 0, 1)).item() == pytest.approx(2.0)
    assert masked_mean(t(1, 2, 3), t(0, 0, 0)).item() == 0.0
    assert not math.isnan(policy_loss(t(0.1), t(0.0), t(1.0), t(0.0), clip=0.2).item())


def test_losses_backpropagate_only_through_counted_steps() -> None:
    values = t(1.0, 2.0).requires_grad_()
    value_loss(values, t(0, 0), t(0, 0), t(1, 0), clip=0.2, huber_delta=None).backward()
    assert values.grad is not None
    assert values.grad[1].item() == 0.0 and values.grad[0].item() != 0.0
