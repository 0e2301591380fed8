"""The Ray pool of the mean-field trainers: transitions stream in asynchronously, training completes."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from unimarl.trainers.algos.meanfield.learners import MeanFieldHyperparameters, make_learner
from unimarl.trainers.algos.meanfield.worker import MFPlan, MFPolicySetup, MFRolloutWorker
from unimarl.trainers.collect.backend import Collector, RayBackend, SerialBackend, cpus_per_worker, init_ray
from unimarl.trainers.core.config import EnvSettings, config_from_dict
from unimarl.trainers.envs.factory import EnvFactory
from unimarl.trainers.run.train import train

NAV = Path(__file__).with_name("nav_env.py")
SMALL = {"encoder": "mlp", "visual_hidden": 16, "head_hidden": [16], "batch_size": 16, "learning_starts": 16}
STEP_DELAY_S = 0.25
"""Per-step sleep of the slow env: well above the one-off ~0.2 s that a Ray actor's first act after its first
weight refresh was measured to take, so the fast worker's lead cannot hide behind that pause."""


def make_one_slow(first_flag: str, **kwargs: Any) -> Any:
    """TinyNav; the first env created (over all processes) is fast, every later one sleeps each step."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("nav_env_for_mf_pool", NAV)
    assert spec is not None and spec.loader is not None
    nav = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(nav)
    env = nav.make(**kwargs)
    try:
        os.close(os.open(first_flag, os.O_CREAT | os.O_EXCL))
    except FileExistsError:
        step = env.step

        def slow_step(actions: dict[str, Any]) -> Any:
            time.sleep(STEP_DELAY_S)
            return step(actions)

        env.step = slow_step
    return env


def test_ray_pool_streams_chunks_without_synchronous_rounds(tmp_path: Path) -> None:
    flag = str(tmp_path / "first")
    factory = EnvFactory(EnvSettings(pettingzoo=f"{__file__}:make_one_slow", kwargs={"first_flag": flag}))
    init_ray(None, num_cpus=2)
    backend = RayBackend(
        MFRolloutWorker, factory, 2, num_envs=1, seed=0, timeout_s=120, cpus_per_worker=cpus_per_worker(2)
    )
    pool = Collector(backend)
    try:
        spec = backend.call_first("specs")["agent"]
        hp = MeanFieldHyperparameters(**SMALL, update_every=1)  # type: ignore[arg-type]
        backend.call(
            "configure", MFPlan({"p": MFPolicySetup(spec, "mfq", hp)}, {"agent": "p"}, frozenset({"p"}))
        )
        learner = make_learner("mfq", spec, hp, seed=0)
        pool.stream({"p": learner.get_weights()}, 0.0, 4, {})
        arrivals: list[list[int]] = []
        updates = 0
        while sum(len(a) for a in arrivals) < 12 or len({w for a in arrivals for w in a}) < 2:
            chunks = pool.poll(timeout=10.0)
            arrivals.append([c.worker_index for c in chunks])
            for chunk in chunks:
                for t in chunk.transitions["p"]:
                    learner.add(t)
            updates += bool(learner.update())
            pool.stream({"p": learner.get_weights()}, 0.0, 4, {})
    finally:
        backend.close()
    per_worker = np.bincount([w for a in arrivals for w in a], minlength=2)
    fast, slow = int(per_worker.argmax()), int(per_worker.argmin())
    first_slow = next(k for k, a in enumerate(arrivals) if slow in a)
    # the learner took the fast worker's chunks one poll at a time while the slow one was still collecting
    assert sum(a.count(fast) for a in arrivals[:first_slow]) >= 3
    assert per_worker[fast] >= per_worker[slow] + 3
    assert updates >= 3 and learner.gradient_steps > 0


def test_mean_field_training_completes_on_ray(tmp_path: Path) -> None:
    data = {
        "env": {"pettingzoo": f"{NAV}:make", "num_envs": 1},
        "run": {
            "run_id": "ray",
            "results_dir": str(tmp_path),
            "device": "cpu",
            "backend": "ray",
            "num_workers": 2,
            "max_steps": 64,
        },
        "behaviors": {
            "agent": {
                "trainer_type": "mfq",
                "hyperparameters": {**SMALL, "push_every": 4},
                "summary_freq": 32,
                "checkpoint_interval": 32,
            }
        },
    }
    init_ray(None, num_cpus=2)
    result = train(config_from_dict(data))
    assert result.env_steps >= 64 and result.iterations >= 16
    assert sorted((result.run_dir / "checkpoints").glob("*.pt"))
    assert any(k.startswith("Losses/") for k in result.last_metrics)


def test_radius_mean_actions_with_an_agent_gone_without_final_observation() -> None:
    from unimarl.trainers.algos.meanfield.worker import MFRolloutWorker
    from unimarl.trainers.collect.runner import AgentEnd

    worker = MFRolloutWorker(EnvFactory(EnvSettings(pettingzoo=f"{NAV}:make")), num_envs=1)
    spec = worker.specs()["agent"]
    hp = MeanFieldHyperparameters(**SMALL, neighbourhood="radius", radius=10.0, position_sensor=0)  # type: ignore[arg-type]
    worker.configure(MFPlan({"p": MFPolicySetup(spec, "mfq", hp)}, {"agent": "p"}, frozenset({"p"})))
    names = ["agent_1", "agent_2"]
    split = [(list(np.ones((1, *spec.obs_shapes[0]), np.float32)), None) for _ in names]
    # agent_0 vanished without a final observation: it has no position (the position sensor has 16 values)
    gone = AgentEnd("agent_0", "agent", None, None, 0.0, False, True, {}, 0.0, 0)
    means = worker._means(0, "agent", names, split, [gone], [None])
    assert means is not None and means.shape == (3, 5)
    worker.close()


def test_a_chunk_refreshes_old_is_counted_and_corrected_by_mfac() -> None:
    """Serial pool: a chunk names the refresh it was collected with and carries each action's probability
    under those weights; ingested three refreshes later (as Ray delivers a slow worker's chunk), its age is
    counted and MF-AC's update weights it by min(1, pi_now / pi_then), computed here from the two actors."""
    from collections import defaultdict

    import torch

    from unimarl.trainers.algos.meanfield.algorithm import _ingest

    backend = SerialBackend(MFRolloutWorker, EnvFactory(EnvSettings(pettingzoo=f"{NAV}:make")), 1, num_envs=1)
    pool = Collector(backend)
    try:
        spec = backend.call_first("specs")["agent"]
        hp = MeanFieldHyperparameters(**{**SMALL, "batch_size": 4096, "learning_rate": 1e-2})  # type: ignore[arg-type]
        backend.call(
            "configure", MFPlan({"p": MFPolicySetup(spec, "mfac", hp)}, {"agent": "p"}, frozenset({"p"}))
        )
        learner, then = make_learner("mfac", spec, hp, seed=0), make_learner("mfac", spec, hp, seed=0)
        pool.stream({"p": learner.get_weights()}, 0.0, 8, {})
        [stale] = pool.poll(timeout=1.0)
        acc: dict[str, list[float]] = defaultdict(list)
        for _ in range(3):  # the learner moves on while the stale chunk is on its way
            [fresh] = pool.poll(timeout=1.0)
            _ingest(fresh, {"p": learner}, acc, pool.version)
            pool.stream({"p": learner.get_weights()}, 0.0, 8, {})
        assert acc["counters/chunk_age_refreshes"] == [0.0, 0.0, 0.0]
        obs = np.concatenate([t.obs[0] for t in stale.transitions["p"]])
        action = torch.as_tensor(np.concatenate([t.action for t in stale.transitions["p"]]))
        logp = np.concatenate([t.logp for t in stale.transitions["p"]])
        rows = torch.arange(len(action))
        with torch.no_grad():
            pi_then = torch.softmax(then.actor([torch.as_tensor(obs)]), 1)[rows, action]
            pi_now = torch.softmax(learner.actor([torch.as_tensor(obs)]), 1)[rows, action]
        np.testing.assert_allclose(logp, torch.log(pi_then).numpy(), rtol=1e-4, atol=1e-6)
        expected = float(torch.clamp(pi_now / pi_then, max=1.0).mean())
        _ingest(stale, {"p": learner}, acc, pool.version)
        assert stale.weights_version == 1 and acc["counters/chunk_age_refreshes"][-1] == 3.0
        assert acc["Losses/is_ratio/p"][-1] == pytest.approx(expected, rel=1e-5) and expected < 0.999
    finally:
        backend.close()
