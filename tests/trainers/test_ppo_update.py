"""The PPO update against hand-computed figures: normalisers move only after the epochs (ratio exactly 1 at
the first minibatch), the value clip is centred on the critic's output at collection time, and ValueNorm
starts as the identity."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch

from unimarl.bridge.spec import ActionSpec
from unimarl.trainers.algos.mappo.networks import CriticInputTensors
from unimarl.trainers.algos.mappo.policy import MAPPOHyperparameters, MAPPOPolicy, NetworkSettings
from unimarl.trainers.core.batch import CriticInput, PolicySpec, RolloutBatch

SPEC = PolicySpec(obs_shapes=((4,),), action_spec=ActionSpec(1, (3,)))
N = 64


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def policy(**hp: object) -> MAPPOPolicy:
    settings = MAPPOHyperparameters(**{"epochs": 1, "num_minibatches": 1, **hp})  # type: ignore[arg-type]
    return MAPPOPolicy(SPEC, settings, NetworkSettings(hidden_units=16, centralized_critic=False), seed=3)


def collect(p: MAPPOPolicy, obs: np.ndarray, returns: np.ndarray) -> tuple[RolloutBatch, np.ndarray]:
    """A batch acted by ``p`` on ``obs`` and the critic's raw (normalised-unit) outputs at collection time."""
    act = p.act((obs,), None, CriticInput())
    with torch.no_grad():
        raw = p.critic([torch.as_tensor(obs)], CriticInputTensors()).numpy().astype(np.float64)
    batch = RolloutBatch(
        obs=(obs,),
        critic=CriticInput(),
        continuous_actions=act.continuous_actions,
        discrete_actions=act.discrete_actions,
        action_mask=None,
        logp=act.logp,
        values=act.values,
        advantages=(returns - act.values).astype(np.float32),
        returns=returns.astype(np.float32),
        loss_mask=np.ones(len(obs), np.float32),
    )
    return batch, raw


def shifted(seed: int, mean: float, std: float, size: tuple[int, ...]) -> np.ndarray:
    return np.random.default_rng(seed).normal(mean, std, size).astype(np.float32)


def test_ratio_is_one_at_the_first_minibatch_and_obs_statistics_move_after_the_epochs() -> None:
    p = policy()
    seen = []
    for it, (mean, std) in enumerate([(5.0, 3.0), (-4.0, 0.5), (10.0, 8.0)]):
        obs = shifted(it, mean, std, (N, 4))
        seen.append(obs)
        batch, _ = collect(p, obs, shifted(10 + it, 1.0, 1.0, (N,)))
        metrics = p.update(batch)
        # epochs=1, one minibatch: the ratio is measured before the only gradient step
        assert metrics["Policy/Clip Fraction"] == 0.0
        assert abs(metrics["Policy/Approx KL"]) < 1e-7
        # after the update the input statistics hold every observation seen so far (pseudo-count 1e-4)
        every = np.concatenate(seen).astype(np.float64)
        stats = p.actor.obs_norm.stats
        np.testing.assert_allclose(stats.mean.numpy(), every.mean(0), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(stats.var.numpy(), every.var(0), rtol=1e-5)


def test_fresh_value_norm_is_the_identity() -> None:
    p = policy()
    obs = shifted(0, 0.0, 1.0, (N, 4))
    batch, raw = collect(p, obs, np.zeros(N, np.float32))
    np.testing.assert_allclose(batch.values, raw, rtol=1e-6, atol=1e-7)  # reward units = critic output


@pytest.mark.parametrize("popart", [False, True])
def test_value_clip_is_centred_on_the_prediction_stored_at_collection(popart: bool) -> None:
    # no Huber: the loss at the first minibatch is 0.5 * mean((target - raw)^2) exactly when the clip
    # centre equals the critic's own output (the clipped branch then equals the unclipped one)
    p = policy(use_popart=popart, huber_delta=None, value_clip=0.2)
    r1 = shifted(20, 30.0, 5.0, (N,)).astype(np.float64)
    batch, raw = collect(p, shifted(1, 2.0, 2.0, (N, 4)), r1.astype(np.float32))
    r1 = batch.returns.astype(np.float64)
    m1, v1 = r1.mean(), max(r1.var(), 1e-2)
    # first batch: ValueNorm takes its first statistics before training; PopArt trains in identity units and
    # rescales its head afterwards (both keep the critic's outputs meaningful across the first update)
    target1 = r1 if popart else (r1 - m1) / np.sqrt(v1)
    loss = p.update(batch)["Losses/Value Loss"]
    assert loss == pytest.approx(0.5 * np.mean((target1 - raw) ** 2), rel=1e-4)
    mean, var = p.value_norm.mean_var()  # type: ignore[union-attr]
    assert (mean.item(), var.item()) == pytest.approx((m1, v1), rel=1e-9)

    # second batch: targets in the statistics the values were collected under, then the statistics move
    batch, raw = collect(p, shifted(2, -1.0, 1.0, (N, 4)), shifted(21, 10.0, 2.0, (N,)))
    r2 = batch.returns.astype(np.float64)
    loss = p.update(batch)["Losses/Value Loss"]
    assert loss == pytest.approx(0.5 * np.mean(((r2 - m1) / np.sqrt(v1) - raw) ** 2), rel=1e-4)
    beta = p.value_norm.beta  # type: ignore[union-attr]
    # debiased EMA of two batches: weights beta (1 - beta) and (1 - beta)
    m2 = (beta * m1 + r2.mean()) / (beta + 1.0)
    sq2 = (beta * (r1**2).mean() + (r2**2).mean()) / (beta + 1.0)
    mean, var = p.value_norm.mean_var()  # type: ignore[union-attr]
    assert (mean.item(), var.item()) == pytest.approx((m2, sq2 - m2**2), rel=1e-9)


def test_update_past_its_deadline_takes_one_minibatch_step_and_still_moves_the_normalisers() -> None:
    p = policy(epochs=5, num_minibatches=4)
    obs = shifted(3, 5.0, 3.0, (N, 4))
    batch, _ = collect(p, obs, shifted(30, 1.0, 1.0, (N,)))
    metrics = p.update(batch, deadline=0.0)  # perf_counter() is past 0 already
    assert metrics["Policy/Minibatch Steps"] == 1.0
    np.testing.assert_allclose(p.actor.obs_norm.stats.mean.numpy(), obs.mean(0), rtol=1e-4)
    assert p.update(batch)["Policy/Minibatch Steps"] == 20.0  # no deadline: 5 epochs x 4 minibatches
