"""MF-Q's pace and update: the replay ratio held after every add, the fixed cadence beside it, the time
budget cutting the steps, the logged ratio in a short training run, and the update checked step by step
against a plain reference computation (same seed, same batches, same weights)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from unimarl.bridge.spec import ActionSpec
from unimarl.trainers.algos.meanfield.learners import MeanFieldHyperparameters, learner_config
from unimarl.trainers.algos.meanfield.mean_action import MeanFieldError
from unimarl.trainers.algos.meanfield.mfq import MFQConfig, MFQLearner
from unimarl.trainers.algos.meanfield.networks import NetworkConfig
from unimarl.trainers.algos.meanfield.replay import Transitions
from unimarl.trainers.core.batch import PolicySpec
from unimarl.trainers.core.config import config_from_dict
from unimarl.trainers.core.errors import ConfigError
from unimarl.trainers.run.train import train

TINY = PolicySpec(obs_shapes=((2,),), action_spec=ActionSpec(discrete_branches=(3,)))
TINY_NET = NetworkConfig(encoder="mlp", visual_hidden=8, mean_hidden=(4,), head_hidden=(8,))
VIEW = PolicySpec(obs_shapes=((7, 7, 3), (2,)), action_spec=ActionSpec(discrete_branches=(5,)))
VIEW_NET = NetworkConfig(
    conv_channels=(4, 4), visual_hidden=16, vector_hidden=8, mean_hidden=(8,), head_hidden=(16,)
)
NAV = Path(__file__).with_name("nav_env.py")


def steps(spec: PolicySpec, agents: int, n: int, seed: int = 0) -> list[Transitions]:
    """``n`` consecutive steps of ``agents`` agents: binary views, random vectors, masks and mean actions."""
    rng = np.random.default_rng(seed)
    actions = spec.action_spec.discrete_branches[0]

    def observe() -> tuple[np.ndarray, ...]:
        return tuple(
            (rng.random((agents, *s)) < 0.3).astype(np.float32)
            if len(s) == 3
            else rng.standard_normal((agents, *s)).astype(np.float32)
            for s in spec.obs_shapes
        )

    obs, mean = observe(), rng.dirichlet(np.ones(actions), size=agents).astype(np.float32)
    out = []
    for _ in range(n):
        nxt, nxt_mean = observe(), rng.dirichlet(np.ones(actions), size=agents).astype(np.float32)
        mask = rng.random((agents, actions)) < 0.7
        out.append(
            Transitions(
                obs=obs,
                action=rng.integers(0, actions, agents),
                reward=rng.standard_normal(agents).astype(np.float32),
                next_obs=nxt,
                terminated=rng.random(agents) < 0.1,
                mean_action=mean,
                next_mean_action=nxt_mean,
                next_action_mask=mask,
                agent_keys=[f"a{i}" for i in range(agents)],
            )
        )
        obs, mean = nxt, nxt_mean
    return out


@pytest.mark.parametrize("ratio", [0.25, 2.0, 8.0])
def test_samples_learned_follow_the_ratio_after_every_add(ratio: float) -> None:
    cfg = MFQConfig(network=TINY_NET, batch_size=16, learning_starts=40, replay_ratio=ratio, gradient_steps=0)
    learner = MFQLearner(TINY, cfg, seed=0)
    added = 0
    for k, t in enumerate(steps(TINY, 7, 30)):
        learner.add(t)
        added += len(t)
        learner.update()
        if added < cfg.learning_starts:
            assert learner.samples_learned == 0, k
        else:  # every transition counts, the ones stored before learning_starts too
            assert ratio * added <= learner.samples_learned < ratio * added + cfg.batch_size, k
        assert learner.samples_learned == cfg.batch_size * learner.gradient_steps
    assert learner.transitions_added == added
    assert learner.achieved_replay_ratio == pytest.approx(ratio, abs=cfg.batch_size / added)


@pytest.mark.parametrize(("ratio", "steps_per_add"), [(1.0, 3), (8.0, 8)])
def test_fixed_cadence_counts_towards_the_ratio(ratio: float, steps_per_add: int) -> None:
    """4 transitions per add, batch 4: the cadence gives 3 steps (ratio 3); the more of the two runs."""
    cfg = MFQConfig(
        network=TINY_NET,
        batch_size=4,
        learning_starts=4,
        replay_ratio=ratio,
        update_every=1,
        gradient_steps=3,
    )
    learner = MFQLearner(TINY, cfg, seed=0)
    for k, t in enumerate(steps(TINY, 4, 5)):
        learner.add(t)
        assert learner.steps_owed() == steps_per_add
        assert learner.update()["gradient_steps"] == steps_per_add * (k + 1)


def test_the_time_budget_cuts_the_steps_and_they_stay_owed() -> None:
    cfg = MFQConfig(network=TINY_NET, batch_size=8, learning_starts=8, replay_ratio=2.0, gradient_steps=0)
    learner = MFQLearner(TINY, cfg, seed=0)
    learner.add(steps(TINY, 16, 1)[0])
    assert learner.steps_owed() == 4
    assert learner.update(deadline=time.perf_counter()) == {}
    assert learner.gradient_steps == 0 and learner.steps_owed() == 4
    assert learner.update(deadline=time.perf_counter() + 60)["gradient_steps"] == 4
    assert learner.steps_owed() == 0


def test_counters_travel_with_the_checkpoint() -> None:
    cfg = MFQConfig(network=TINY_NET, batch_size=8, learning_starts=8, replay_ratio=1.0, gradient_steps=0)
    learner = MFQLearner(TINY, cfg, seed=0)
    learner.add(steps(TINY, 20, 1)[0])
    learner.update()
    other = MFQLearner(TINY, cfg, seed=1)
    other.load_state_dict(learner.state_dict())
    assert (other.transitions_added, other.samples_learned) == (20, 24)
    assert other.optimizer.param_groups[0]["foreach"] is True
    state = learner.state_dict()
    del state["counters"]["transitions_added"], state["counters"]["samples_learned"]
    other.load_state_dict(state)  # a checkpoint from before the counters: nothing owed on resume
    assert (other.transitions_added, other.samples_learned) == (0, 0)


def test_training_config_defaults_to_the_reference_ratio_and_keeps_an_explicit_cadence() -> None:
    cfg = learner_config("mfq", MeanFieldHyperparameters())
    assert isinstance(cfg, MFQConfig)
    assert (cfg.replay_ratio, cfg.gradient_steps) == (2.0, 0)  # mlii/mfrl: 2 x new transitions per battle
    cfg = learner_config("mfq", MeanFieldHyperparameters(gradient_steps=4))
    assert isinstance(cfg, MFQConfig)
    assert (cfg.replay_ratio, cfg.update_every, cfg.gradient_steps) == (2.0, 5, 4)
    cfg = learner_config("mfq", MeanFieldHyperparameters(update_every=2, replay_ratio=0.0))
    assert isinstance(cfg, MFQConfig)
    assert (cfg.replay_ratio, cfg.update_every, cfg.gradient_steps) == (0.0, 2, 1)
    with pytest.raises(MeanFieldError, match="would never learn"):
        MFQConfig(replay_ratio=0.0, gradient_steps=0)
    data: dict[str, Any] = {
        "env": {"pettingzoo": f"{NAV}:make"},
        "behaviors": {"agent": {"trainer_type": "mfq", "hyperparameters": {"replay_ratio": 0}}},
    }
    with pytest.raises(ConfigError, match=r"behaviors\.agent\.hyperparameters: replay_ratio 0 and no"):
        config_from_dict(data)
    data["behaviors"]["agent"]["hyperparameters"] = {"replay_ratio": -1}
    with pytest.raises(ConfigError, match=r"replay_ratio -1\.0 must be >= 0"):
        config_from_dict(data)


def _reference_steps(learner: MFQLearner, opt: torch.optim.Optimizer, n: int) -> list[float]:
    """``n`` MF-Q steps written out plainly: one ``sample`` per step, Adam's per-parameter loop, the
    Boltzmann target as formulas (paper eq. 10-12) and the soft update parameter by parameter. (Early Adam
    steps move every weight by about lr whatever the size of its gradient, so a rounding difference in a
    near-zero gradient shows as an lr-sized weight difference: the reference rounds as the learner does.)"""
    cfg = learner.config
    beta = 1.0 / learner.temperature
    losses = []
    for _ in range(n):
        s = learner.buffer.sample(cfg.batch_size)
        obs = [torch.tensor(o) for o in s.obs]
        next_obs = [torch.tensor(o) for o in s.next_obs]
        with torch.no_grad():
            q_t = learner.q_target(next_obs, torch.tensor(s.next_mean_action))
            q_o = learner.q_online(next_obs, torch.tensor(s.next_mean_action))
            allowed = torch.tensor(s.next_action_mask)
            pi = torch.softmax((beta * q_o).masked_fill(~allowed, float("-inf")), dim=1)
            v = (pi * q_t.masked_fill(~allowed, 0.0)).sum(dim=1)
            y = torch.tensor(s.reward) + cfg.gamma * (1 - torch.tensor(s.terminated)) * v
        q = learner.q_online(obs, torch.tensor(s.mean_action))
        q_a = q[torch.arange(len(s.action)), torch.tensor(s.action)]
        loss = ((y - q_a) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            for t, o in zip(learner.q_target.parameters(), learner.q_online.parameters(), strict=True):
                t.mul_(1 - cfg.tau).add_(o, alpha=cfg.tau)
        losses.append(float(loss.detach()))
    return losses


def test_update_equals_a_plain_reference_computation() -> None:
    """Same seed, same data: the learner's update (batches gathered for several steps at once, vectorised
    Adam and soft update) gives the losses and weights of the plain loop, over several updates."""
    cfg = MFQConfig(network=VIEW_NET, batch_size=32, learning_starts=24, update_every=1, gradient_steps=5)
    learner, reference = MFQLearner(VIEW, cfg, seed=3), MFQLearner(VIEW, cfg, seed=3)
    adam = torch.optim.Adam(reference.q_online.parameters(), lr=cfg.learning_rate, foreach=False)
    for t in steps(VIEW, 24, 4):
        learner.add(t)
        reference.buffer.add(t)
        logs = learner.update()
        expected = _reference_steps(reference, adam, 5)
        assert logs["q_loss"] == pytest.approx(np.mean(expected), rel=1e-5)
    for net in ("q_online", "q_target"):
        got, want = getattr(learner, net).state_dict(), getattr(reference, net).state_dict()
        for key in want:
            torch.testing.assert_close(got[key], want[key], rtol=1e-5, atol=1e-6, msg=f"{net}.{key}")


def test_training_logs_the_achieved_ratio(tmp_path: Path) -> None:
    small = {
        "encoder": "mlp",
        "visual_hidden": 32,
        "head_hidden": [32],
        "batch_size": 32,
        "learning_starts": 32,
    }
    data = {
        "env": {"pettingzoo": f"{NAV}:make", "num_envs": 1},
        "run": {"run_id": "rr", "results_dir": str(tmp_path), "device": "cpu", "max_steps": 200},
        "behaviors": {
            "agent": {
                "trainer_type": "mfq",
                "hyperparameters": {**small, "push_every": 4, "replay_ratio": 3.0},
                "summary_freq": 50,
            }
        },
    }
    result = train(config_from_dict(data))
    lines = [json.loads(x) for x in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    ratios = [line["counters/replay_ratio/agent"] for line in lines if "counters/replay_ratio/agent" in line]
    assert len(ratios) >= 3
    # 0 while the first 32 transitions arrive (the first line's mean), then the learner catches up after
    # every chunk: never below the configured ratio
    assert ratios[0] > 0 and all(r >= 3.0 for r in ratios[1:]), ratios
    state = torch.load(sorted((result.run_dir / "checkpoints").glob("*.pt"))[-1], weights_only=True)
    counters = state["policies"]["agent"]["counters"]
    added, learned = counters["transitions_added"], counters["samples_learned"]
    assert added > 500 and 3 * added <= learned < 3 * added + 32  # 3 agents x 200 steps, some still open
