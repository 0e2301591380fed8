"""Linear schedules of MAPPO's learning rates, entropy weight and clip (ML-Agents' ``*_schedule: linear``):
values against the closed form, the optimisers' rates, the update's metrics, and a run's metrics lines."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from unimarl.bridge.spec import ActionSpec
from unimarl.trainers.algos.mappo.policy import MAPPOPolicy, NetworkSettings
from unimarl.trainers.core.batch import CriticInput, PolicySpec, RolloutBatch
from unimarl.trainers.core.config import config_from_dict
from unimarl.trainers.core.errors import ConfigError
from unimarl.trainers.core.mappo_settings import MAPPOHyperparameters
from unimarl.trainers.run.train import train

SPEC = PolicySpec(obs_shapes=((4,),), action_spec=ActionSpec(0, (3,)))
NAV = str(Path(__file__).with_name("nav_env.py"))


def _batch(p: MAPPOPolicy, n: int = 32) -> RolloutBatch:
    obs = np.random.default_rng(0).normal(size=(n, 4)).astype(np.float32)
    act = p.act((obs,), None, CriticInput())
    returns = np.ones(n, np.float32)
    return RolloutBatch(
        obs=(obs,),
        critic=CriticInput(),
        continuous_actions=act.continuous_actions,
        discrete_actions=act.discrete_actions,
        action_mask=None,
        logp=act.logp,
        values=act.values,
        advantages=(returns - act.values).astype(np.float32),
        returns=returns,
        loss_mask=np.ones(n, np.float32),
    )


def test_linear_schedules_follow_ml_agents_closed_form() -> None:
    hp = MAPPOHyperparameters(
        lr=3e-4, critic_lr=1e-3, entropy_coef=5e-3, clip=0.3, lr_schedule="linear", entropy_schedule="linear"
    )
    # ML-Agents: (initial - floor) * (1 - step / max_steps) + floor; floors 1e-10, 1e-5, 0.1
    lr, critic_lr, beta, clip = hp.scheduled(0.25)
    assert lr == pytest.approx((3e-4 - 1e-10) * 0.75 + 1e-10)
    assert critic_lr == pytest.approx((1e-3 - 1e-10) * 0.75 + 1e-10)
    assert beta == pytest.approx((5e-3 - 1e-5) * 0.75 + 1e-5)
    assert clip == 0.3  # clip_schedule stays constant
    assert hp.scheduled(1.0)[:3] == pytest.approx((1e-10, 1e-10, 1e-5))
    assert hp.scheduled(7.0) == hp.scheduled(1.0)  # progress beyond the end holds the floor
    with pytest.raises(ConfigError, match="clip_schedule is 'cosine'"):
        MAPPOHyperparameters(clip_schedule="cosine")


def test_the_policy_trains_with_the_scheduled_values() -> None:
    hp = MAPPOHyperparameters(
        epochs=1, lr_schedule="linear", entropy_schedule="linear", clip_schedule="linear"
    )
    p = MAPPOPolicy(SPEC, hp, NetworkSettings(hidden_units=8, centralized_critic=False), seed=1)
    p.set_progress(0.5)
    assert [g["lr"] for g in p.actor_optim.param_groups] == [pytest.approx((5e-4 - 1e-10) / 2 + 1e-10)]
    assert [g["lr"] for g in p.critic_optim.param_groups] == [pytest.approx((5e-4 - 1e-10) / 2 + 1e-10)]
    metrics = p.update(_batch(p))
    assert metrics["Policy/Learning Rate"] == pytest.approx((5e-4 - 1e-10) / 2 + 1e-10)
    assert metrics["Policy/Beta"] == pytest.approx((0.01 - 1e-5) / 2 + 1e-5)
    assert metrics["Policy/Epsilon"] == pytest.approx((0.2 - 0.1) / 2 + 0.1)


def test_a_run_decays_its_learning_rate_over_max_steps(tmp_path: Path) -> None:
    data = {
        "env": {"pettingzoo": f"{NAV}:make", "num_envs": 2},
        "run": {"run_id": "sched", "results_dir": str(tmp_path), "device": "cpu"},
        "behaviors": {
            "default": {
                "hyperparameters": {"epochs": 1, "lr": 1e-3, "lr_schedule": "linear"},
                "time_horizon": 25,
                "summary_freq": 50,
                "max_steps": 200,
            }
        },
    }
    result = train(config_from_dict(data))
    lines = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    rates = [line["Policy/Learning Rate/agent"] for line in lines]
    # each iteration (50 env steps) learns at the rate of the progress reached before it: 0, 0.25, 0.5, 0.75
    assert rates == pytest.approx([(1e-3 - 1e-10) * (1 - k / 4) + 1e-10 for k in range(4)])
