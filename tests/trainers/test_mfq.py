"""MF-Q pieces by hand (Boltzmann policy, v_MF with and without double Q, TD target, soft update,
schedule) and the learner's seams (act with masks, update cadence, weights and state-dict round trips)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from unimarl.bridge.spec import ActionSpec
from unimarl.trainers.algos.meanfield.mean_action import MeanFieldError
from unimarl.trainers.algos.meanfield.mfq import (
    MFQConfig,
    MFQLearner,
    boltzmann_policy,
    mf_value,
    scheduled,
    td_target,
)
from unimarl.trainers.algos.meanfield.networks import NetworkConfig, soft_update
from unimarl.trainers.algos.meanfield.replay import Transitions
from unimarl.trainers.core.batch import PolicySpec

LN2 = math.log(2.0)
VIEW_SPEC = PolicySpec(obs_shapes=((13, 13, 5), (4,)), action_spec=ActionSpec(discrete_branches=(21,)))
TINY = PolicySpec(obs_shapes=((2,),), action_spec=ActionSpec(discrete_branches=(3,)))
TINY_NET = NetworkConfig(encoder="mlp", visual_hidden=8, mean_hidden=(4,), head_hidden=(8,))


def test_boltzmann_is_zero_on_masked_actions():
    q = torch.tensor([[1.0, 2.0, 3.0], [5.0, 5.0, 5.0]])
    mask = torch.tensor([[True, False, True], [False, False, False]])
    pi = boltzmann_policy(q, mask, beta=1.0)
    e1, e3 = math.exp(1), math.exp(3)
    torch.testing.assert_close(pi[0], torch.tensor([e1 / (e1 + e3), 0.0, e3 / (e1 + e3)]))
    assert pi[0, 1] == 0.0
    torch.testing.assert_close(pi[1], torch.full((3,), 1 / 3))  # nothing allowed: treated as all allowed


def test_mf_value_by_hand():
    q_target = torch.tensor([[0.0, 1.0, 2.0]])
    # beta = ln 2: weights 2^Q = 1, 2, 4 -> v = (0*1 + 1*2 + 2*4) / 7
    assert float(mf_value(q_target, None, LN2)) == pytest.approx(10 / 7)
    # double Q: the online net (Q = 2, 1, 0) weights 4, 2, 1; the target net evaluates
    assert float(mf_value(q_target, None, LN2, q_online=torch.tensor([[2.0, 1.0, 0.0]]))) == pytest.approx(
        4 / 7
    )
    mask = torch.tensor([[True, True, False]])
    assert float(mf_value(q_target, mask, LN2)) == pytest.approx(2 / 3)
    y = td_target(torch.tensor([1.0, 1.0]), torch.tensor([0.0, 1.0]), torch.tensor([10 / 7, 10 / 7]), 0.5)
    torch.testing.assert_close(y, torch.tensor([1 + 5 / 7, 1.0]))


class TableQ(nn.Module):
    """Ignores its input and returns a fixed Q row per sample."""

    def __init__(self, row: list[float]) -> None:
        super().__init__()
        self.row = torch.tensor([row])

    def forward(self, obs, mean_action=None):
        return self.row.expand(obs[0].shape[0], -1)


@pytest.mark.parametrize(("double_q", "expected_v"), [(False, 10 / 7), (True, 4 / 7)])
def test_learner_targets_on_a_q_table(double_q: bool, expected_v: float):
    t = 1 / LN2
    cfg = MFQConfig(network=TINY_NET, double_q=double_q, temperature=((0.0, t), (1.0, t)), gamma=0.5)
    learner = MFQLearner(TINY, cfg, seed=0)
    learner.q_target, learner.q_online = TableQ([0.0, 1.0, 2.0]), TableQ([2.0, 1.0, 0.0])
    learner.add(transitions(2, step=0, terminated=[False, True]))
    s = learner.buffer._read(np.arange(2))
    y = learner.td_targets(s)
    torch.testing.assert_close(y, torch.tensor([1 + 0.5 * expected_v, 1.0]))


def test_soft_update_math():
    online, target = nn.Linear(1, 1), nn.Linear(1, 1)
    nn.init.ones_(online.weight), nn.init.zeros_(target.weight)
    soft_update(target, online, 0.25)
    assert target.weight.item() == pytest.approx(0.25)
    soft_update(target, online, 0.25)
    assert target.weight.item() == pytest.approx(0.25 + 0.75 * 0.25)


def test_temperature_schedule():
    pts = MFQConfig().temperature
    got = [scheduled(pts, p) for p in (0.0, 0.4, 0.8, 0.9, 1.0, 2.0)]
    assert got == pytest.approx([1.0, 0.6, 0.2, 0.15, 0.1, 0.1])


def transitions(b: int, step: int, terminated=None, spec: PolicySpec = TINY, seed: int = 0) -> Transitions:
    rng = np.random.default_rng(seed + step)
    n = spec.action_spec.discrete_branches[0]
    obs = tuple(rng.random((b, *s), dtype=np.float32) for s in spec.obs_shapes)
    mean = rng.dirichlet(np.ones(n), size=b).astype(np.float32)
    return Transitions(
        obs=obs,
        action=rng.integers(0, n, b),
        reward=np.ones(b, np.float32),
        next_obs=tuple(o + 1 for o in obs),
        terminated=np.zeros(b, bool) if terminated is None else np.asarray(terminated),
        mean_action=mean,
        next_mean_action=mean[::-1].copy(),
        next_action_mask=np.ones((b, n), bool),
        agent_keys=[f"agent{i}" for i in range(b)],
    )


def test_act_on_views_for_128_agents_respects_masks():
    learner = MFQLearner(VIEW_SPEC, seed=0)
    rng = np.random.default_rng(0)
    obs = (rng.random((128, 13, 13, 5), dtype=np.float32), rng.random((128, 4), dtype=np.float32))
    mean = rng.dirichlet(np.ones(21), size=128).astype(np.float32)
    mask = np.zeros((128, 21), np.int8)
    mask[:, [3, 7]] = 1
    out = learner.act(obs, mean, mask)
    assert out.discrete_actions.shape == (128, 1) and set(np.unique(out.discrete_actions)) <= {3, 7}
    assert np.all(np.isin(learner.act(obs, mean, mask, deterministic=True).discrete_actions, [3, 7]))
    assert np.all(out.logp <= 0) and out.values.shape == (128,)
    with pytest.raises(MeanFieldError, match=r"mean_action must be \[128, 21\]"):
        learner.act(obs, None, mask)


def test_channels_first_views_and_iql():
    spec = PolicySpec(obs_shapes=((5, 13, 13),), action_spec=ActionSpec(discrete_branches=(21,)))
    learner = MFQLearner(spec, MFQConfig(use_mean_action=False), seed=0)
    assert learner.q_online.mean_branch is None and learner.buffer._frame_mean.shape[1] == 0
    out = learner.act((np.zeros((2, 5, 13, 13), np.float32),))
    assert out.discrete_actions.shape == (2, 1)


def test_update_every_five_steps():
    learner = MFQLearner(TINY, MFQConfig(network=TINY_NET, batch_size=4, learning_starts=8), seed=0)
    for step in range(4):
        learner.add(transitions(4, step))
        assert learner.update() == {}
    learner.add(transitions(4, 4))
    logs = learner.update()
    assert logs["gradient_steps"] == 1 and np.isfinite(logs["q_loss"])
    assert learner.update() == {}


def test_rounds_due_before_learning_starts_are_dropped():
    cfg = MFQConfig(network=TINY_NET, batch_size=4, learning_starts=12, update_every=1)
    learner = MFQLearner(TINY, cfg, seed=0)
    for step in range(2):
        learner.add(transitions(4, step))
        assert learner.update() == {}
    learner.add(transitions(4, 2))
    assert learner.update()["gradient_steps"] == 1


def test_rejects_continuous_or_multi_branch_actions():
    spec = PolicySpec(obs_shapes=((2,),), action_spec=ActionSpec(discrete_branches=(3, 2)))
    with pytest.raises(MeanFieldError, match="exactly one discrete branch"):
        MFQLearner(spec)
    with pytest.raises(MeanFieldError, match="tau=0"):
        MFQConfig(tau=0.0)


def test_state_dict_round_trip_with_weights_only(tmp_path):
    learner = MFQLearner(
        TINY, MFQConfig(network=TINY_NET, batch_size=4, learning_starts=4, update_every=1), seed=0
    )
    learner.add(transitions(4, 0))
    learner.update()
    learner.set_progress(0.5)
    torch.save(learner.state_dict(), tmp_path / "mfq.pt")
    state = torch.load(tmp_path / "mfq.pt", weights_only=True)
    other = MFQLearner(TINY, MFQConfig(network=TINY_NET), seed=1)
    other.load_state_dict(state)
    obs, mean = (np.ones((3, 2), np.float32),), np.full((3, 3), 1 / 3, np.float32)
    np.testing.assert_array_equal(other.act(obs, mean).values, learner.act(obs, mean).values)
    assert other.temperature == learner.temperature and other.gradient_steps == 1
    assert state["config"]["network"]["encoder"] == "mlp"
    worker = MFQLearner(TINY, MFQConfig(network=TINY_NET), seed=2)
    worker.set_weights(learner.get_weights())
    worker.set_progress(0.5)  # the temperature travels separately from the weights
    np.testing.assert_array_equal(worker.act(obs, mean).values, learner.act(obs, mean).values)
    with pytest.raises(MeanFieldError, match="checkpoint is for 'mfq', this learner is 'iql'"):
        MFQLearner(TINY, MFQConfig(network=TINY_NET, use_mean_action=False)).load_state_dict(state)
