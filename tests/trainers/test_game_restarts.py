"""Games that crash, are killed, hang mid-rollout or never finish their handshake are relaunched by the
environment runner under ML-Agents' bounds; their broken-off trajectories are dropped, the rest is kept."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from unimarl.trainers.algos.mappo.plan import PolicySetup, WorkerPlan
from unimarl.trainers.algos.mappo.policy import MAPPOHyperparameters, MAPPOPolicy, NetworkSettings
from unimarl.trainers.algos.mappo.rollout import RolloutWorker
from unimarl.trainers.algos.meanfield.learners import MeanFieldHyperparameters
from unimarl.trainers.algos.meanfield.worker import MFPlan, MFPolicySetup, MFRolloutWorker
from unimarl.trainers.collect.runner import GameRestartError
from unimarl.trainers.core.config import EnvSettings
from unimarl.trainers.envs.factory import EnvFactory, make_sim_build

COOP = ["--team-size", "2"]


def _factory(tmp_path: Path, game: str = "coop_nav", args: list[str] | None = None, **kw: Any) -> EnvFactory:
    settings = EnvSettings(sim=game, args=list(args or COOP), **kw)
    build = make_sim_build(settings, tmp_path)
    return EnvFactory(settings, run_dir=str(tmp_path), build_path=str(build))


def _mappo(worker: RolloutWorker) -> dict[str, Any]:
    specs = worker.specs()
    setups = {
        b: PolicySetup(s, MAPPOHyperparameters(), NetworkSettings(hidden_units=16)) for b, s in specs.items()
    }
    worker.configure(WorkerPlan(setups, {b: b for b in specs}))
    return {b: MAPPOPolicy(s.spec, s.hyperparameters, s.network).get_weights() for b, s in setups.items()}


def _processes_running(text: str) -> list[int]:
    """Pids whose command line contains ``text`` (Linux /proc)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if text in cmdline:
                pids.append(int(entry.name))
    return pids


def _pid(worker: Any, env: int) -> int:
    return int(worker.runner.envs[env].connection.process.pid)


def test_a_killed_game_is_relaunched_and_only_its_open_trajectories_are_dropped(tmp_path: Path) -> None:
    worker = RolloutWorker(_factory(tmp_path), num_envs=2)
    try:
        weights = _mappo(worker)
        first = worker.collect(weights, 6)
        assert first.game_restarts == {} and all(b.loss_mask.all() for b in first.batches.values())
        old_pid = _pid(worker, 0)
        os.kill(old_pid, signal.SIGKILL)
        second = worker.collect(weights, 6)
        assert second.game_restarts == {"exited": 1}
        assert _pid(worker, 0) != old_pid
        mask = np.concatenate([b.loss_mask for b in second.batches.values()])
        # the killed game's open trajectories (the actions it never ran) are dropped; env 1's are kept
        assert 0 < mask.sum() < len(mask)
        third = worker.collect(weights, 6)
        assert third.game_restarts == {} and all(b.loss_mask.all() for b in third.batches.values())
        logs = sorted(p.name for p in (tmp_path / "logs").iterdir())
        assert logs == ["worker0-env0", "worker0-env0-restart1", "worker0-env1"]
    finally:
        worker.close()


def test_a_game_hung_mid_rollout_is_relaunched(tmp_path: Path) -> None:
    factory = _factory(tmp_path, args=[*COOP, "--misbehave", "hang:3"], timeout_s=2.0)
    worker = RolloutWorker(factory, num_envs=1)
    try:
        result = worker.collect(_mappo(worker), 5)  # hangs at step 4: relaunched, then one more step
        assert result.game_restarts == {"hung": 1} and result.env_steps == 5
    finally:
        worker.close()


def test_a_game_that_keeps_dying_ends_the_run_at_its_lifetime_bound(tmp_path: Path) -> None:
    factory = _factory(
        tmp_path,
        args=[*COOP, "--misbehave", "die:2"],
        max_lifetime_restarts=2,
        restarts_rate_limit_n=-1,
    )
    worker = RolloutWorker(factory, num_envs=1)
    try:
        weights = _mappo(worker)
        assert worker.collect(weights, 5).game_restarts == {"exited": 2}  # dies after steps 2 and 4
        with pytest.raises(GameRestartError, match="max_lifetime_restarts 2") as info:
            worker.collect(weights, 5)
        assert "exited with code 3" in str(info.value)  # the game's own error, with its log named
    finally:
        worker.close()


def test_the_rate_limit_ends_the_run(tmp_path: Path) -> None:
    factory = _factory(tmp_path, args=[*COOP, "--misbehave", "die:2"])  # ML-Agents' 1 relaunch per 60 s
    worker = RolloutWorker(factory, num_envs=1)
    try:
        with pytest.raises(GameRestartError, match="restarts_rate_limit_n 1 per 60 s"):
            worker.collect(_mappo(worker), 5)
    finally:
        worker.close()


def test_a_game_that_never_handshakes_is_relaunched_then_ends_the_run(tmp_path: Path) -> None:
    factory = _factory(tmp_path, args=[*COOP, "--misbehave", "mute"], timeout_s=2.0, max_lifetime_restarts=1)
    with pytest.raises(GameRestartError, match="hung") as info:
        RolloutWorker(factory, num_envs=1)
    assert "max_lifetime_restarts 1" in str(info.value)
    assert sorted(p.name for p in (tmp_path / "logs").iterdir()) == ["worker0-env0", "worker0-env0-restart1"]


def test_mean_field_drops_the_killed_games_pending_transitions(tmp_path: Path) -> None:
    args = ["--team-size", "3", "--grid", "10", "--view", "3"]
    worker = MFRolloutWorker(_factory(tmp_path, "battle", args), num_envs=1)
    try:
        specs = worker.specs()
        hp = MeanFieldHyperparameters(encoder="mlp", visual_hidden=16, head_hidden=[16])
        setups = {b: MFPolicySetup(s, "mfq", hp) for b, s in specs.items()}
        worker.configure(MFPlan(setups, {b: b for b in specs}, frozenset(setups)))
        worker.collect({}, 0.0, 4)
        os.kill(_pid(worker, 0), signal.SIGKILL)
        chunk = worker.collect({}, 0.0, 4)
        assert chunk.game_restarts == {"exited": 1}
        assert chunk.dropped == 6  # every agent's pending transition on the killed game
        assert not chunk.outcomes  # the broken-off battle is not counted
        assert worker.collect({}, 0.0, 4).dropped == 0
    finally:
        worker.close()


@pytest.mark.slow
def test_training_survives_three_kills_and_finishes_with_its_models(tmp_path: Path) -> None:
    import json
    import random
    import threading

    from unimarl.trainers.core.config import config_from_dict
    from unimarl.trainers.run.train import train

    data = {
        "env": {"sim": "coop_nav", "num_envs": 2, "num_areas": 2, "restarts_rate_limit_n": -1},
        "run": {"run_id": "kills", "results_dir": str(tmp_path), "device": "cpu"},
        "behaviors": {"default": {"hyperparameters": {"epochs": 2}, "time_horizon": 32, "max_steps": 15000}},
    }
    logs = str(tmp_path / "kills" / "logs")  # on every game's command line (-logFile)
    killed: list[int] = []
    stop = threading.Event()

    def killer() -> None:
        rng = random.Random(0)
        while len(killed) < 3 and not stop.wait(3.0):
            games = _processes_running(logs)
            if games:
                victim = rng.choice(games)
                os.kill(victim, signal.SIGKILL)
                killed.append(victim)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    try:
        result = train(config_from_dict(data))
    finally:
        stop.set()
        thread.join(timeout=10)
    assert len(killed) == 3, "the run ended before three games were killed: lengthen it"
    assert result.stopped_by == "max_steps" and result.env_steps >= 15000
    lines = [json.loads(x) for x in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert lines[-1]["counters/game_restarts/exited"] == 3  # the session's total
    dropped = [
        line["counters/dropped_steps/CoopNav?team=0"]
        for line in lines
        if "counters/dropped_steps/CoopNav?team=0" in line
    ]
    assert dropped, "the killed games' broken-off steps are counted"
    assert list((result.run_dir / "onnx").glob("*.onnx"))


def test_game_stats_are_drained_into_the_metrics(tmp_path: Path) -> None:
    """MAPPO runs report what the games record with StatsRecorder (``game/<key>``) and clear the games'
    stats channels each iteration, so a long run keeps no growing backlog."""
    factory = _factory(tmp_path, args=["--agents", "2", "--episode-length", "4"], num_areas=2)
    worker = RolloutWorker(factory, num_envs=1)
    try:
        weights = _mappo(worker)
        result = worker.collect(weights, 8)  # two episodes in each of the 2 areas
        assert len(result.game_stats["CoopNav/episode_team_reward"]) == 4
        assert worker.runner.envs[0].connection.stats.get_and_reset_stats() == {}
    finally:
        worker.close()
