"""UnityParallelEnv over real gRPC against the stand-in games launched as player builds."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import pytest
from pettingzoo.test import parallel_api_test

from unimarl import sim
from unimarl.bridge.parallel_env import UnityParallelEnv, parse_agent_name


def make_env(tmp_path: Path, game: str, *extra: str, seed: int = 0) -> UnityParallelEnv:
    build = sim.make_build(game, tmp_path / "build", extra_args=extra)
    return UnityParallelEnv(build, seed=seed, timeout=30, log_dir=tmp_path / "logs")


def seeded_actions(env: UnityParallelEnv, obs: dict, rng: np.random.Generator) -> dict:
    actions = {}
    for agent in sorted(env.agents):
        space = env.action_space(agent)
        space.seed(int(rng.integers(2**31)))
        mask = obs[agent].get("action_mask") if isinstance(obs[agent], dict) else None
        actions[agent] = space.sample(mask=mask) if mask is not None else space.sample()
    return actions


@pytest.mark.parametrize(
    ("game", "extra"),
    [
        ("coop_nav", ()),
        ("coop_nav", ("--continuous", "--global-state", "--decision-period", "2")),
        ("battle", ("--team-size", "6", "--grid", "14")),
        ("visual", ()),
        ("visual", ("--channels", "4", "--package-version", "3.0.0")),
    ],
)
def test_parallel_api(tmp_path: Path, game: str, extra: tuple[str, ...]) -> None:
    env = make_env(tmp_path, game, *extra)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            parallel_api_test(env, num_cycles=60)
    finally:
        env.close()


def test_same_seed_same_trajectory(tmp_path: Path) -> None:
    envs = [make_env(tmp_path / str(i), "coop_nav", "--episode-length", "20", seed=7) for i in range(2)]
    try:
        runs = []
        for env in envs:
            rng = np.random.default_rng(0)
            obs, _ = env.reset()
            trace = [obs]
            for _ in range(50):
                obs, rewards, *_ = env.step(seeded_actions(env, obs, rng))
                trace += [obs, rewards]
            runs.append(trace)
        for a, b in zip(*runs, strict=True):
            assert a.keys() == b.keys()
            for key in a:
                va, vb = a[key], b[key]
                if isinstance(va, dict):
                    np.testing.assert_array_equal(va["observation"], vb["observation"])
                else:
                    np.testing.assert_array_equal(va, vb)
    finally:
        for env in envs:
            env.close()


def test_episode_end_and_restart_in_one_step(tmp_path: Path) -> None:
    env = make_env(tmp_path, "coop_nav", "--episode-length", "4")
    try:
        obs, _ = env.reset()
        rng = np.random.default_rng(1)
        first = sorted(env.agents)
        for _ in range(4):
            obs, rewards, terms, truncs, infos = env.step(seeded_actions(env, obs, rng))
        for (
            agent
        ) in first:  # cut at the step limit: truncated, reward and final obs delivered under the old name
            assert truncs[agent] and not terms[agent] and infos[agent]["interrupted"] is True
            assert agent in rewards and agent in obs and agent not in env.agents
        restarted = sorted(env.agents)
        assert [parse_agent_name(a)[1:] for a in restarted] == [(parse_agent_name(a)[1], 1) for a in first]
        assert all(a in obs and not truncs[a] for a in restarted)
    finally:
        env.close()


def test_global_state_and_decision_period(tmp_path: Path) -> None:
    env = make_env(tmp_path, "coop_nav", "--global-state", "--decision-period", "2")
    try:
        obs, _ = env.reset()
        assert env.state().shape == env.state_space.shape
        agent = env.agents[0]
        assert env.observation_space(agent)["observation"].shape != env.state_space.shape
        requested = []
        rng = np.random.default_rng(2)
        for _ in range(6):
            obs, _, _, _, infos = env.step(seeded_actions(env, obs, rng))
            requested += [info["requested_decision"] for info in infos.values()]
        assert True in requested and False in requested
    finally:
        env.close()


def test_reset_with_new_seed_relaunches(tmp_path: Path) -> None:
    env = make_env(tmp_path, "bench", "--agents", "4", "--obs-size", "8")
    try:
        env.reset()
        pid = env.connection.process.pid
        env.reset(seed=5)
        assert env.connection.seed == 5 and env.connection.process.pid != pid
        assert all(parse_agent_name(a)[2] == 1 for a in env.agents)
        assert len(env.agents) == 4
    finally:
        env.close()


def test_nan_warning_is_logged_once_per_game(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Two games with NaN observations under nan_policy="warn": each warns once (one never silences the
    other's warning), however many messages hold NaN."""
    build = sim.make_build("coop_nav", tmp_path / "build", extra_args=("--misbehave", "nan:1"))
    envs = [
        UnityParallelEnv(build, seed=0, timeout=30, log_dir=tmp_path / f"logs{k}", nan_policy="warn")
        for k in range(2)
    ]
    try:
        with caplog.at_level(logging.WARNING, logger="unimarl.bridge.decode"):
            for env in envs:
                env.reset()
                for _ in range(3):  # NaN in every output after the first step
                    env.step({agent: env.action_space(agent).sample() for agent in env.agents})
    finally:
        for env in envs:
            env.close()
    assert sum("NaN or inf" in r.message for r in caplog.records) == 2


def test_ended_agent_ids_are_not_remembered_forever(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An agent switched off and on gets a new id in Unity (battle's ``--reenable-dead`` gives a dead agent a
    new id at the next battle); the env's memory of ended ids stays bounded."""
    from unimarl.bridge import parallel_env

    monkeypatch.setattr(parallel_env, "REMEMBERED_IDS", 10, raising=False)
    env = make_env(tmp_path, "battle", "--team-size", "4", "--grid", "6", "--view", "3", "--max-steps", "6",
                   "--reenable-dead", "--obstacles", "0")  # fmt: skip
    try:
        obs, _ = env.reset()
        rng = np.random.default_rng(0)
        seen: set[int] = set()
        for _ in range(300):
            obs, *_ = env.step(seeded_actions(env, obs, rng))
            seen |= {parse_agent_name(a)[1] for a in env.agents}
        assert len(seen) > 12  # new ids kept coming, more than the env remembers
        assert len(env._episodes) <= 10
        ended = [k for k in env._episodes if k not in env._current]
        assert ended, "ended ids are remembered up to the bound"
    finally:
        env.close()
