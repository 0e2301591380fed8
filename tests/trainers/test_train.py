"""End-to-end training runs: run-folder artifacts, exact resume of counters, SIGINT checkpoint, learning."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from unimarl.trainers.cli.main import main
from unimarl.trainers.core.config import config_from_dict
from unimarl.trainers.core.errors import ResumeError
from unimarl.trainers.run.train import train

NAV = str(Path(__file__).with_name("nav_env.py"))


def _write_config(tmp_path: Path, **behavior: Any) -> Path:
    data = {
        "env": {"pettingzoo": f"{NAV}:make", "kwargs": {"masks": True}, "num_envs": 4},
        "run": {"run_id": "nav", "results_dir": str(tmp_path / "results"), "device": "cpu"},
        "behaviors": {
            "default": {
                "hyperparameters": {"epochs": 2},
                "time_horizon": 25,
                "summary_freq": 200,
                "checkpoint_interval": 500,
                "max_steps": 600,
                **behavior,
            }
        },
    }
    path = tmp_path / "nav.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _metrics(run: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_cli_train_writes_every_run_folder_artifact(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["train", str(_write_config(tmp_path)), "--seed", "3"]) == 0
    run = tmp_path / "results" / "nav"
    resolved = yaml.safe_load((run / "config.yaml").read_text())
    assert resolved["run"]["seed"] == 3 and resolved["behaviors"]["default"]["hyperparameters"]["epochs"] == 2
    lines = _metrics(run)
    assert [m["env_steps"] for m in lines] == [200, 400, 600]
    for key in (
        "agent_steps",
        "wall_s",
        "env_steps_per_s",
        "return/agent",
        "episode_length/agent",
        "Losses/Policy Loss/agent",
        "Losses/Value Loss/agent",
        "Policy/Entropy/agent",
    ):
        assert key in lines[-1], key
    assert lines[-1]["agent_steps"] == 3 * 600 and lines[-1]["episode_length/agent"] == 25
    assert list((run / "tensorboard" / "agent").glob("events.out.tfevents.*"))
    assert list((run / "tensorboard" / "run").glob("events.out.tfevents.*"))
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        "checkpoint-500.pt",
        "checkpoint-600.pt",
    ]
    state = torch.load(run / "checkpoints" / "checkpoint-600.pt", weights_only=True)
    assert state["counters"]["env_steps"] == 600 and set(state["policies"]) == {"agent"}
    assert (run / "logs").is_dir()
    assert "600/600" in capsys.readouterr().out


def test_resume_continues_step_counts_exactly(tmp_path: Path) -> None:
    path = _write_config(tmp_path)
    first = train(_config(path))
    assert (first.env_steps, first.iterations) == (600, 6)
    with pytest.raises(ResumeError, match="pass --resume"):
        train(_config(path))
    config = _config(path)
    config.run.resume, config.run.max_steps = True, 1000
    second = train(config)
    assert (second.env_steps, second.agent_steps, second.iterations) == (1000, 3000, 10)
    lines = _metrics(first.run_dir)
    assert [m["env_steps"] for m in lines] == [200, 400, 600, 800, 1000]
    assert lines[3]["wall_s"] > lines[2]["wall_s"]
    state = torch.load(first.run_dir / "checkpoints" / "checkpoint-1000.pt", weights_only=True)
    optim_steps = state["policies"]["agent"]["actor_optim"]["state"][0]["step"]
    assert (
        float(optim_steps) == 10 * 2
    )  # 10 iterations x 2 epochs x 1 minibatch: optimiser state carried over


def test_behaviour_appearing_after_reset_is_trained_checkpointed_and_resumed(tmp_path: Path) -> None:
    late_env = str(Path(__file__).with_name("test_rollout.py"))
    data: dict[str, Any] = {
        "env": {"pettingzoo": f"{late_env}:make_late", "num_envs": 2},
        "run": {"run_id": "late", "results_dir": str(tmp_path / "results"), "device": "cpu"},
        "behaviors": {
            "default": {
                "hyperparameters": {"epochs": 1},
                "time_horizon": 8,
                "summary_freq": 32,
                "checkpoint_interval": 1000,
                "max_steps": 32,
            }
        },
    }
    first = train(config_from_dict(data))
    assert first.env_steps == 32
    state = torch.load(first.run_dir / "checkpoints" / "checkpoint-32.pt", weights_only=True)
    assert set(state["policies"]) == {"red", "blue"}
    assert _metrics(first.run_dir)[-1]["return/blue"] == pytest.approx(5.0)
    data["run"] = {**data["run"], "resume": True, "max_steps": 64}
    second = train(config_from_dict(data))
    assert second.env_steps == 64
    state = torch.load(first.run_dir / "checkpoints" / "checkpoint-64.pt", weights_only=True)
    assert (
        float(state["policies"]["blue"]["actor_optim"]["state"][0]["step"]) == 4
    )  # 2 + 2 iterations: restored


def test_time_budget_ends_the_run_with_a_final_metrics_line(tmp_path: Path) -> None:
    config = _config(_write_config(tmp_path, max_steps=10_000_000, summary_freq=1_000_000))
    config.run.max_seconds = 0.01
    result = train(config)
    # the budget holds inside the first iteration: it stops collecting after a few of its 25 steps (4 envs)
    assert result.stopped_by == "max_seconds" and result.env_steps % 4 == 0 and 0 < result.env_steps < 100
    assert [m["env_steps"] for m in _metrics(result.run_dir)] == [result.env_steps]
    assert result.last_metrics["env_steps"] == result.env_steps


def _config(path: Path) -> Any:
    return config_from_dict(yaml.safe_load(path.read_text()))


@pytest.mark.parametrize(
    ("signum", "workers"),
    [(signal.SIGINT, 1), (signal.SIGTERM, 1), (signal.SIGTERM, 2)],
    ids=["SIGINT", "SIGTERM", "SIGTERM-ray"],  # ray.init takes SIGTERM in the driver: the run takes it back
)
def test_a_stop_signal_saves_a_checkpoint_and_models_and_exits_cleanly(
    tmp_path: Path, signum: signal.Signals, workers: int
) -> None:
    path = _write_config(tmp_path, max_steps=10_000_000)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "unimarl.trainers.cli.main",
            "train",
            str(path),
            "--num-workers",
            str(workers),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    metrics = tmp_path / "results" / "nav" / "metrics.jsonl"
    try:
        deadline = time.monotonic() + 60
        while not metrics.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
        assert metrics.exists(), "training did not start within 60 s"
        proc.send_signal(signum)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert proc.returncode == 0, out
    assert "interrupt" in out
    checkpoints = list((tmp_path / "results" / "nav" / "checkpoints").glob("checkpoint-*.pt"))
    assert checkpoints
    state = torch.load(max(checkpoints, key=lambda p: p.stat().st_mtime), weights_only=True)
    steps = state["counters"]["env_steps"]
    assert 0 < steps < 10_000_000
    manifest = json.loads((tmp_path / "results" / "nav" / "onnx" / "policies.json").read_text())
    assert manifest["agent"]["env_steps"] == steps  # the models of the final checkpoint were exported
    assert not list((tmp_path / "results" / "nav").rglob("*.tmp"))


def test_resume_skips_a_newest_checkpoint_cut_by_a_crash(tmp_path: Path, caplog: Any) -> None:
    path = _write_config(tmp_path, max_steps=400, checkpoint_interval=200)
    first = train(_config(path))
    newest = first.run_dir / "checkpoints" / "checkpoint-400.pt"
    data = newest.read_bytes()
    newest.write_bytes(data[: len(data) // 2])  # as a kill -9 during a write without rename would leave it
    (newest.parent / "checkpoint-600.tmp").write_bytes(data[:100])  # a write cut before its rename
    config = _config(path)
    config.run.resume, config.run.max_steps = True, 600
    with caplog.at_level("WARNING"):
        second = train(config)
    assert "skipping unreadable checkpoint" in caplog.text and "checkpoint-400.pt" in caplog.text
    assert second.env_steps == 600
    assert not list(newest.parent.glob("*.tmp"))
    lines = _metrics(first.run_dir)
    assert [m["env_steps"] for m in lines] == [200, 400, 400, 600]  # resumed from 200: 400 learned again


@pytest.mark.slow
def test_a_trainer_killed_at_random_moments_resumes_every_time(tmp_path: Path) -> None:
    """kill -9 of the trainer process itself, once at a random moment and twice the moment a checkpoint or
    model write has begun (a ``*.tmp`` file exists, not yet renamed), in a run that writes a checkpoint and
    its ONNX models every iteration: every ``--resume`` starts from an intact checkpoint and the run reaches
    its step budget with its models."""
    import random

    max_steps = 6000
    path = _write_config(tmp_path, max_steps=max_steps, checkpoint_interval=100, summary_freq=100)
    run = tmp_path / "results" / "nav"
    checkpoints = run / "checkpoints"
    rng = random.Random(7)
    cut_writes = 0
    for attempt in range(4):
        flags = ["--resume"] if attempt else []
        proc = subprocess.Popen(
            [sys.executable, "-m", "unimarl.trainers.cli.main", "train", str(path), *flags],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:
            if attempt < 3:
                before = len(list(checkpoints.glob("*.pt"))) if checkpoints.exists() else 0
                deadline = time.monotonic() + 90
                while time.monotonic() < deadline and proc.poll() is None:  # until it checkpointed anew
                    if checkpoints.exists() and len(list(checkpoints.glob("*.pt"))) > before:
                        break
                    time.sleep(0.05)
                if attempt == 0:
                    time.sleep(rng.uniform(0.0, 1.5))
                else:  # the moment a checkpoint or model write has begun and not yet been renamed
                    deadline = time.monotonic() + 60
                    while not list(run.rglob("*.tmp")) and time.monotonic() < deadline:
                        time.sleep(0.001)
                assert proc.poll() is None, "the run ended before it was killed; raise max_steps"
                proc.kill()  # SIGKILL: no handler runs
                proc.wait(timeout=30)
                cut_writes += bool(list(run.rglob("*.tmp")))
                continue
            out, _ = proc.communicate(timeout=300)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
        assert proc.returncode == 0, out
    lines = _metrics(run)
    assert cut_writes >= 2, "the kills meant to land inside a write did not"
    assert lines[-1]["env_steps"] >= max_steps
    state = torch.load(max(checkpoints.glob("*.pt"), key=lambda p: p.stat().st_mtime), weights_only=True)
    assert state["counters"]["env_steps"] >= max_steps
    assert (tmp_path / "results" / "nav" / "agent.onnx").exists()


@pytest.mark.slow
def test_mappo_learns_tiny_navigation(tmp_path: Path) -> None:
    path = _write_config(
        tmp_path,
        max_steps=60_000,
        summary_freq=5000,
        hyperparameters={"epochs": 10, "lr": 1e-3, "critic_lr": 1e-3},
    )
    config = _config(path)
    config.env.num_envs = 16
    config.env.kwargs = {"masks": True, "n_agents": 2}
    train(config)
    lines = _metrics(tmp_path / "results" / "nav")
    first, last = lines[0]["return/agent"], lines[-1]["return/agent"]
    assert last > first + 5.0, (first, last)


@pytest.mark.slow
def test_two_node_cluster_spreads_workers_and_trains(tmp_path: Path) -> None:
    import ray
    from ray.cluster_utils import Cluster

    from unimarl.trainers.algos.mappo.rollout import RolloutWorker
    from unimarl.trainers.collect.backend import RayBackend
    from unimarl.trainers.core.config import EnvSettings
    from unimarl.trainers.envs.factory import EnvFactory

    if ray.is_initialized():
        ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "node_ip_address": "127.0.0.1"})
    cluster.add_node(num_cpus=1, node_ip_address="127.0.0.1")
    try:
        ray.init(address=cluster.address, include_dashboard=False)
        assert ray.get_runtime_context().gcs_address.startswith("127.0.0.1")
        factory = EnvFactory(EnvSettings(pettingzoo=f"{NAV}:make", num_envs=1))
        pool = RayBackend(RolloutWorker, factory, num_workers=2, num_envs=1, timeout_s=120)
        try:
            assert len(set(pool.nodes())) == 2
        finally:
            pool.close()
        config = _config(_write_config(tmp_path))
        config.run.num_workers, config.run.address = 2, cluster.address
        result = train(config)
        assert result.env_steps == 600 and result.stopped_by == "max_steps"
    finally:
        ray.shutdown()
        cluster.shutdown()


@pytest.mark.slow
def test_training_survives_losing_a_cluster_node(tmp_path: Path) -> None:
    """A node leaves the cluster mid-run (its raylet and every process on it killed): the rollout worker
    that ran there is replaced on the node that is left, and the run reaches its step budget."""
    import threading

    import ray
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "node_ip_address": "127.0.0.1"})
    doomed = cluster.add_node(num_cpus=1, node_ip_address="127.0.0.1")
    metrics = tmp_path / "results" / "nav" / "metrics.jsonl"
    removed = threading.Event()

    def remove_when_training() -> None:
        deadline = time.monotonic() + 120
        while not metrics.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        cluster.remove_node(doomed, allow_graceful=False)
        removed.set()

    try:
        ray.init(address=cluster.address, include_dashboard=False)
        config = _config(_write_config(tmp_path, max_steps=4000, summary_freq=100))
        config.run.num_workers, config.run.address = 2, cluster.address
        remover = threading.Thread(target=remove_when_training, daemon=True)
        remover.start()
        result = train(config)
        remover.join(timeout=60)
        assert removed.is_set(), "the node was not removed during the run"
        assert result.stopped_by == "max_steps" and result.env_steps >= 4000
        lines = _metrics(result.run_dir)
        assert lines[-1]["counters/worker_restarts"] == 1.0
    finally:
        ray.shutdown()
        cluster.shutdown()
