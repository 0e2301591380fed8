"""MAPPOPolicy: acting, learning on fixed and bandit-like batches, masks, weights and exact resume."""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from unimarl.bridge.spec import ActionSpec
from unimarl.trainers.algos.mappo.policy import (
    MAPPOHyperparameters,
    MAPPOPolicy,
    NetworkSettings,
    PolicyInputError,
)
from unimarl.trainers.core.batch import ActOutput, CriticInput, PolicySpec, RolloutBatch
from unimarl.trainers.core.errors import ConfigError, TrainerError

METRICS = {
    "Losses/Policy Loss",
    "Losses/Value Loss",
    "Policy/Entropy",
    "Policy/Approx KL",
    "Policy/Clip Fraction",
    "Policy/Learning Rate",
    "Losses/Grad Norm",
}
HYBRID = PolicySpec(obs_shapes=((3,), (2, 2)), action_spec=ActionSpec(2, (3, 2)))
BANDIT = PolicySpec(obs_shapes=((2,),), action_spec=ActionSpec(0, (3,)))


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def random_obs(spec: PolicySpec, batch: int, seed: int = 0) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    return tuple(rng.normal(size=(batch, *s)).astype(np.float32) for s in spec.obs_shapes)


def team_input(spec: PolicySpec, batch: int, k: int = 2, seed: int = 1) -> CriticInput:
    """Each row's teammates: k other rows of the same batch, drawn at random."""
    rng = np.random.default_rng(seed)
    offsets = np.stack([rng.permutation(np.arange(1, batch))[:k] for _ in range(batch)])
    return CriticInput(team_rows=((np.arange(batch)[:, None] + offsets) % batch).astype(np.int32))


def make_batch(
    spec: PolicySpec, act: ActOutput, obs: tuple[np.ndarray, ...], critic: CriticInput, rewards: np.ndarray
) -> RolloutBatch:
    """One-step episodes: advantage = r - V, return = r."""
    n = len(rewards)
    return RolloutBatch(
        obs=obs,
        critic=critic,
        continuous_actions=act.continuous_actions,
        discrete_actions=act.discrete_actions,
        action_mask=np.ones((n, spec.mask_size), np.float32) if spec.mask_size else None,
        logp=act.logp,
        values=act.values,
        advantages=(rewards - act.values).astype(np.float32),
        returns=rewards.astype(np.float32),
        loss_mask=np.ones(n, np.float32),
    )


def hybrid_policy(seed: int = 0, **hp: object) -> MAPPOPolicy:
    return MAPPOPolicy(HYBRID, MAPPOHyperparameters(**hp), NetworkSettings(hidden_units=16), seed=seed)  # type: ignore[arg-type]


def test_act_returns_batched_numpy_outputs_and_keeps_global_rng() -> None:
    policy = hybrid_policy()
    rng_before = torch.random.get_rng_state()
    out = policy.act(random_obs(HYBRID, 5), np.ones((5, 5), np.float32), team_input(HYBRID, 5))
    assert torch.equal(torch.random.get_rng_state(), rng_before)
    assert out.continuous_actions.shape == (5, 2) and out.continuous_actions.dtype == np.float32
    assert out.discrete_actions.shape == (5, 2) and out.discrete_actions.dtype == np.int64
    assert out.logp.shape == (5,) and out.values.shape == (5,)
    assert out.logp.dtype == np.float32 and out.values.dtype == np.float32


def test_same_seed_same_actions_and_deterministic_mode() -> None:
    obs, critic = random_obs(HYBRID, 4), team_input(HYBRID, 4)
    a, b = hybrid_policy(seed=3).act(obs, None, critic), hybrid_policy(seed=3).act(obs, None, critic)
    np.testing.assert_array_equal(a.continuous_actions, b.continuous_actions)
    np.testing.assert_array_equal(a.discrete_actions, b.discrete_actions)
    policy = hybrid_policy()
    first, second = policy.act(obs, None, critic, True), policy.act(obs, None, critic, True)
    np.testing.assert_array_equal(first.continuous_actions, second.continuous_actions)
    np.testing.assert_array_equal(first.discrete_actions, second.discrete_actions)


def test_masked_action_never_chosen_by_act() -> None:
    policy = hybrid_policy()
    mask = np.ones((2000, 5), np.float32)
    mask[:, 0] = mask[:, 2] = 0.0  # branch 0 may only take action 1
    out = policy.act(random_obs(HYBRID, 2000), mask, team_input(HYBRID, 2000))
    assert set(out.discrete_actions[:, 0].tolist()) == {1}


def test_bad_inputs_name_the_shape() -> None:
    policy = hybrid_policy()
    with pytest.raises(PolicyInputError, match=r"observation 1 has shape \(4, 3\)"):
        policy.act((np.zeros((4, 3)), np.zeros((4, 3))), None, CriticInput())
    with pytest.raises(PolicyInputError, match=r"action_mask has shape \(4, 3\), expected \(4, 5\)"):
        policy.act(random_obs(HYBRID, 4), np.ones((4, 3)), CriticInput())
    with pytest.raises(ConfigError, match="num_minibatches must be an integer >= 1, got 0"):
        MAPPOHyperparameters(num_minibatches=0)


def test_update_reduces_loss_on_a_fixed_batch() -> None:
    policy = hybrid_policy(epochs=2, num_minibatches=2)
    obs, critic = random_obs(HYBRID, 64), team_input(HYBRID, 64)
    act = policy.act(obs, None, critic)
    rewards = obs[0][:, 0] * 3.0 + 1.0  # a value target the critic can fit from its inputs
    batch = make_batch(HYBRID, act, obs, critic, rewards)
    first = policy.update(batch)
    assert set(first) >= METRICS
    assert all(np.isfinite(v) for v in first.values())
    for _ in range(30):
        last = policy.update(batch)
    assert last["Losses/Value Loss"] < 0.5 * first["Losses/Value Loss"]
    assert last["Losses/Policy Loss"] < first["Losses/Policy Loss"]


def bandit_prob_best(policy: MAPPOPolicy, obs: tuple[np.ndarray, ...]) -> float:
    with torch.no_grad():
        logits = policy.actor([torch.as_tensor(obs[0][:1])]).discrete_logits[0]
    return float(torch.softmax(logits, dim=1)[0, 2])


def test_bandit_learns_the_best_discrete_action() -> None:
    policy = MAPPOPolicy(BANDIT, MAPPOHyperparameters(epochs=4), NetworkSettings(), seed=0)
    obs = (np.ones((64, 2), np.float32),)
    critic = CriticInput(team_rows=np.zeros((64, 0), np.int32))
    reward_of_action = np.array([0.0, 0.8, 1.0], np.float32)
    assert bandit_prob_best(policy, obs) < 0.5
    for _ in range(200):
        act = policy.act(obs, None, critic)
        policy.update(make_batch(BANDIT, act, obs, critic, reward_of_action[act.discrete_actions[:, 0]]))
        if bandit_prob_best(policy, obs) > 0.9:
            break
    assert bandit_prob_best(policy, obs) > 0.9
    # the critic's denormalised value tracks the (now mostly 1.0) reward
    assert policy.value(obs, critic)[0] == pytest.approx(1.0, abs=0.25)


def test_continuous_bandit_moves_the_mean_to_the_target() -> None:
    spec = PolicySpec(obs_shapes=((1,),), action_spec=ActionSpec(1, ()))
    policy = MAPPOPolicy(spec, MAPPOHyperparameters(epochs=4, lr=3e-3), NetworkSettings(), seed=0)
    obs, critic = (np.ones((64, 1), np.float32),), CriticInput()
    for _ in range(150):
        act = policy.act(obs, None, critic)
        rewards = -((act.continuous_actions[:, 0] - 0.5) ** 2)
        policy.update(make_batch(spec, act, obs, critic, rewards))
    mean = policy.act(obs[:1], None, critic, deterministic=True).continuous_actions[0, 0]
    assert mean == pytest.approx(0.5, abs=0.15)


def test_masked_out_steps_do_not_change_the_update() -> None:
    obs, critic = random_obs(HYBRID, 16), team_input(HYBRID, 16)
    act = hybrid_policy().act(obs, None, critic)
    batch = make_batch(HYBRID, act, obs, critic, obs[0][:, 0])
    garbage_rows = 8

    def pad(a: np.ndarray, value: float) -> np.ndarray:
        return np.concatenate([a, np.full((garbage_rows, *a.shape[1:]), value, a.dtype)])

    padded = RolloutBatch(
        obs=tuple(pad(o, 50.0) for o in obs),
        critic=CriticInput(
            team_rows=np.concatenate([critic.team_rows, np.full((garbage_rows, 2), 16, np.int32)])
        ),
        continuous_actions=pad(batch.continuous_actions, 3.0),
        discrete_actions=pad(batch.discrete_actions, 0),
        action_mask=pad(batch.action_mask, 1.0),
        logp=pad(batch.logp, -20.0),
        values=pad(batch.values, 100.0),
        advantages=pad(batch.advantages, 1000.0),
        returns=pad(batch.returns, -1000.0),
        loss_mask=pad(batch.loss_mask, 0.0),
    )
    plain, masked = hybrid_policy(epochs=1), hybrid_policy(epochs=1)
    metrics_plain, metrics_masked = plain.update(batch), masked.update(padded)
    assert metrics_masked["Losses/Value Loss"] == pytest.approx(metrics_plain["Losses/Value Loss"], rel=1e-4)
    for key, value in plain.get_weights().items():
        np.testing.assert_allclose(masked.get_weights()[key], value, atol=1e-5, err_msg=key)


def test_get_set_weights_round_trip_through_pickle() -> None:
    source = hybrid_policy(seed=1, use_popart=True)
    obs, critic = random_obs(HYBRID, 8), team_input(HYBRID, 8)
    source.update_obs_normalizer(obs)
    source.update(make_batch(HYBRID, source.act(obs, None, critic), obs, critic, np.ones(8, np.float32)))
    weights = pickle.loads(pickle.dumps(source.get_weights()))
    assert all(isinstance(v, np.ndarray) for v in weights.values())
    assert any(k.startswith("actor.obs_norm.") for k in weights) and "value_norm.running_mean" in weights
    target = hybrid_policy(seed=2, use_popart=True)
    target.set_weights(weights)
    a = source.act(obs, None, critic, deterministic=True)
    b = target.act(obs, None, critic, deterministic=True)
    np.testing.assert_array_equal(a.continuous_actions, b.continuous_actions)
    np.testing.assert_array_equal(a.discrete_actions, b.discrete_actions)
    np.testing.assert_array_equal(a.values, b.values)
    with pytest.raises(PolicyInputError, match="weights do not fit this policy's actor"):
        target.set_weights({k: v for k, v in weights.items() if k != "actor.log_std"})


def test_state_dict_round_trip_resumes_exactly(tmp_path: Path) -> None:
    obs, critic = random_obs(HYBRID, 32), team_input(HYBRID, 32)
    original = hybrid_policy(seed=5, epochs=2, num_minibatches=4)
    original.update_obs_normalizer(obs)
    original.update(make_batch(HYBRID, original.act(obs, None, critic), obs, critic, obs[0][:, 1]))
    torch.save(original.state_dict(), tmp_path / "policy.pt")
    resumed = hybrid_policy(seed=99, epochs=2, num_minibatches=4)
    resumed.load_state_dict(torch.load(tmp_path / "policy.pt", weights_only=True))
    for policy_a, policy_b in ((original, resumed),):
        a, b = policy_a.act(obs, None, critic), policy_b.act(obs, None, critic)
        np.testing.assert_array_equal(a.continuous_actions, b.continuous_actions)
        np.testing.assert_array_equal(a.discrete_actions, b.discrete_actions)
        np.testing.assert_array_equal(a.logp, b.logp)
        metrics_a = policy_a.update(make_batch(HYBRID, a, obs, critic, obs[0][:, 1]))
        metrics_b = policy_b.update(make_batch(HYBRID, b, obs, critic, obs[0][:, 1]))
        assert metrics_a == metrics_b
    for key, value in original.get_weights().items():
        np.testing.assert_array_equal(resumed.get_weights()[key], value, err_msg=key)


def test_state_dict_from_other_settings_is_rejected() -> None:
    state = hybrid_policy(use_value_norm=False).state_dict()
    with pytest.raises(TrainerError, match=r"holds modules \['actor', 'critic'\]"):
        hybrid_policy().load_state_dict(state)


def test_global_state_critic_trains() -> None:
    spec = PolicySpec(obs_shapes=((3,),), action_spec=ActionSpec(0, (2,)), state_shape=(4,))
    policy = MAPPOPolicy(spec, MAPPOHyperparameters(epochs=2), NetworkSettings(hidden_units=16), seed=0)
    obs = random_obs(spec, 32)
    critic = CriticInput(state=np.random.default_rng(0).normal(size=(32, 4)).astype(np.float32))
    metrics = policy.update(
        make_batch(spec, policy.act(obs, None, critic), obs, critic, np.ones(32, np.float32))
    )
    assert np.isfinite(metrics["Losses/Value Loss"])
    assert policy.critic.state_norm is not None and policy.critic.state_norm.stats.count.item() > 30


def test_decentralised_critic_ignores_teammates_and_centralised_one_does_not() -> None:
    own = random_obs(BANDIT, 4)[0]
    team = np.random.default_rng(1).normal(size=(8, 2)).astype(np.float32)
    # rows 0..3 are the agents, rows 4..11 their teammates (two each, referenced by row)
    rows = np.full((12, 2), -1, np.int32)
    rows[:4] = np.arange(4, 12).reshape(4, 2)
    critic = CriticInput(team_rows=rows)
    values = {}
    for centralized in (True, False):
        policy = MAPPOPolicy(BANDIT, MAPPOHyperparameters(), NetworkSettings(centralized_critic=centralized))
        values[centralized] = tuple(
            policy.value((np.concatenate([own, t]),), critic)[:4] for t in (team, team + 3.0)
        )
    assert not np.allclose(*values[True])
    np.testing.assert_array_equal(*values[False])


def test_state_dict_records_the_spec_for_rebuilding() -> None:
    policy = MAPPOPolicy(HYBRID, MAPPOHyperparameters(), NetworkSettings())
    state = policy.state_dict()
    assert MAPPOPolicy.spec_from_state(state) == HYBRID
    with pytest.raises(TrainerError, match="holds no spec"):
        MAPPOPolicy.spec_from_state({k: v for k, v in state.items() if k != "spec"})
