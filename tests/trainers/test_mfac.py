"""MF-AC loss by hand, on-policy update cadence, AC baseline, and the state-dict round trip."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from unimarl.bridge.spec import ActionSpec
from unimarl.trainers.algos.meanfield.mean_action import MeanFieldError
from unimarl.trainers.algos.meanfield.mfac import MFACConfig, MFACLearner, actor_critic_loss
from unimarl.trainers.algos.meanfield.networks import NetworkConfig
from unimarl.trainers.algos.meanfield.replay import Transitions
from unimarl.trainers.core.batch import PolicySpec

TINY = PolicySpec(obs_shapes=((2,),), action_spec=ActionSpec(discrete_branches=(3,)))
TINY_NET = NetworkConfig(encoder="mlp", visual_hidden=8, mean_hidden=(4,), head_hidden=(8,))


def test_actor_critic_loss_by_hand():
    logits = torch.zeros(1, 3, requires_grad=True)
    q = torch.tensor([[1.0, 3.0, 100.0]], requires_grad=True)
    mask = torch.tensor([[True, True, False]])
    loss, logs = actor_critic_loss(logits, q, torch.tensor([0]), torch.tensor([2.0]), mask, 0.1, 0.08)
    # pi = (1/2, 1/2, 0); A = Q(a=0) - sum pi Q = 1 - 2 = -1; pg = -A log(1/2); critic = (2 - 1)^2; H = ln 2
    assert logs["pg_loss"] == pytest.approx(math.log(0.5))
    assert logs["critic_loss"] == pytest.approx(1.0)
    assert logs["entropy"] == pytest.approx(math.log(2))
    assert loss.item() == pytest.approx(math.log(0.5) + 0.1 - 0.08 * math.log(2))
    loss.backward()
    assert logits.grad is not None
    assert torch.isfinite(logits.grad).all() and logits.grad[0, 2] == 0.0
    # only the taken action's Q gets a critic gradient: 0.1 * 2 * (Q - y) = -0.2
    torch.testing.assert_close(q.grad, torch.tensor([[-0.2, 0.0, 0.0]]))


def transitions(b: int, step: int) -> Transitions:
    rng = np.random.default_rng(step)
    obs = (rng.random((b, 2), dtype=np.float32),)
    mean = rng.dirichlet(np.ones(3), size=b).astype(np.float32)
    mask = np.ones((b, 3), bool)
    mask[:, 1] = False
    return Transitions(
        obs=obs,
        action=rng.choice([0, 2], b),
        reward=rng.random(b, dtype=np.float32),
        next_obs=(obs[0] + 1,),
        terminated=np.zeros(b, bool),
        mean_action=mean,
        next_mean_action=mean,
        action_mask=mask,
        next_action_mask=mask,
        agent_keys=[f"agent{i}" for i in range(b)],
    )


def test_update_is_one_pass_then_forgets():
    learner = MFACLearner(TINY, MFACConfig(network=TINY_NET, batch_size=4), seed=0)
    assert learner.update() == {}
    for step in range(3):
        learner.add(transitions(4, step))
    logs = learner.update()
    assert logs["gradient_steps"] == 3 and np.isfinite(logs["pg_loss"]) and len(learner.buffer) == 0
    assert learner.update() == {}


def test_ac_baseline_has_no_mean_action_and_acts_within_masks():
    learner = MFACLearner(TINY, MFACConfig(network=TINY_NET, use_mean_action=False), seed=0)
    assert learner.critic.mean_branch is None
    mask = np.tile([1, 0, 1], (64, 1))
    out = learner.act((np.zeros((64, 2), np.float32),), None, mask)
    assert set(np.unique(out.discrete_actions)) <= {0, 2}
    mf = MFACLearner(TINY, MFACConfig(network=TINY_NET), seed=0)
    with pytest.raises(MeanFieldError, match=r"mean_action must be \[2, 3\]"):
        mf.act((np.zeros((2, 2), np.float32),), np.zeros((2, 4), np.float32))


def test_state_dict_round_trip_with_weights_only(tmp_path):
    learner = MFACLearner(TINY, MFACConfig(network=TINY_NET, batch_size=4), seed=0)
    learner.add(transitions(4, 0))
    learner.update()
    torch.save(learner.state_dict(), tmp_path / "mfac.pt")
    state = torch.load(tmp_path / "mfac.pt", weights_only=True)
    other = MFACLearner(TINY, MFACConfig(network=TINY_NET), seed=1)
    other.load_state_dict(state)
    obs, mean = (np.ones((3, 2), np.float32),), np.full((3, 3), 1 / 3, np.float32)
    np.testing.assert_array_equal(other.act(obs, mean).values, learner.act(obs, mean).values)
    worker = MFACLearner(TINY, MFACConfig(network=TINY_NET), seed=2)
    worker.set_weights(learner.get_weights())
    np.testing.assert_array_equal(
        worker.act(obs, mean, deterministic=True).logp, learner.act(obs, mean, deterministic=True).logp
    )
    assert other.gradient_steps == 1 and state["algorithm"] == "mfac"
    with pytest.raises(MeanFieldError, match="do not fit this network"):
        MFACLearner(TINY, MFACConfig()).load_state_dict(state)


def test_policy_gradient_of_older_weights_data_is_importance_weighted_by_hand():
    """pi(a=0) = 1/2 now; the acting weights gave it 0.8 (rho = 0.625) or 0.25 (rho = 2, truncated to 1)."""
    logits = torch.zeros(3, 3)
    q = torch.tensor([[1.0, 3.0, 100.0]]).repeat(3, 1)
    mask = torch.tensor([[True, True, False]]).repeat(3, 1)
    mu = torch.log(torch.tensor([0.8, 0.25, float("nan")]))  # NaN: not known, taken as on-policy
    args = (logits, q, torch.tensor([0, 0, 0]), torch.tensor([2.0, 2.0, 2.0]), mask, 0.1, 0.08)
    _, logs = actor_critic_loss(*args, mu)
    # A = -1 for every row, log pi(a) = log(1/2): pg = -mean(rho * A * log(1/2))
    assert logs["is_ratio"] == pytest.approx((0.625 + 1.0 + 1.0) / 3)
    assert logs["pg_loss"] == pytest.approx((0.625 + 1.0 + 1.0) / 3 * math.log(0.5))
    _, on_policy = actor_critic_loss(*args)
    assert on_policy["pg_loss"] == pytest.approx(math.log(0.5)) and on_policy["is_ratio"] == 1.0


def test_update_weights_stale_transitions_by_their_acting_probability():
    """Transitions chosen by older weights carry their log-probabilities; the update's ratio is the mean of
    min(1, pi_now / pi_then) computed here from the two actors."""
    old = MFACLearner(TINY, MFACConfig(network=TINY_NET, batch_size=64), seed=0)
    learner = MFACLearner(TINY, MFACConfig(network=TINY_NET, batch_size=64), seed=1)
    t = transitions(16, 0)
    acted = old.act(t.obs, t.mean_action, t.action_mask)
    t = dataclasses.replace(t, action=acted.discrete_actions[:, 0], logp=acted.logp)
    with torch.no_grad():
        x = [torch.as_tensor(t.obs[0])]
        mask = torch.as_tensor(t.action_mask)
        pi_then = torch.softmax(old.actor(x).masked_fill(~mask, float("-inf")), 1)
        pi_now = torch.softmax(learner.actor(x).masked_fill(~mask, float("-inf")), 1)
    rows = torch.arange(16)
    a = torch.as_tensor(t.action)
    expected = torch.clamp(pi_now[rows, a] / pi_then[rows, a], max=1.0).mean()
    np.testing.assert_allclose(np.exp(acted.logp), pi_then[rows, a].numpy(), rtol=1e-5)
    learner.add(t)
    logs = learner.update()
    assert logs["is_ratio"] == pytest.approx(float(expected), rel=1e-5) and logs["is_ratio"] < 1.0
