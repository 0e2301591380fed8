"""A Ray rollout worker whose process dies mid-run is replaced and training reaches its step budget."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from unimarl.trainers.core.config import config_from_dict
from unimarl.trainers.run.train import train

NAV = Path(__file__).with_name("nav_env.py")


def make_dying(flag: str, die_at: int, **kwargs: Any) -> Any:
    """TinyNav whose process exits at its ``die_at``-th step, once over all processes (``flag`` marks it)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("nav_env_for_worker_loss", NAV)
    assert spec is not None and spec.loader is not None
    nav = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(nav)
    env = nav.make(**kwargs)
    step, count = env.step, [0]

    def dying_step(actions: dict[str, Any]) -> Any:
        count[0] += 1
        if count[0] == die_at:
            try:
                os.close(os.open(flag, os.O_CREAT | os.O_EXCL))
            except FileExistsError:
                return step(actions)
            os._exit(1)  # as a worker process killed by the OOM killer or kill -9
        return step(actions)

    env.step = dying_step
    return env


@pytest.mark.parametrize("trainer_type", ["mappo", "mfq"])
def test_training_survives_a_lost_ray_worker(tmp_path: Path, trainer_type: str) -> None:
    hyperparameters: dict[str, Any] = {"epochs": 1}
    if trainer_type == "mfq":
        hyperparameters = {"encoder": "mlp", "visual_hidden": 16, "head_hidden": [16], "push_every": 8}
    data = {
        "env": {
            "pettingzoo": f"{__file__}:make_dying",
            "kwargs": {"flag": str(tmp_path / "died"), "die_at": 30},
            "num_envs": 1,
        },
        "run": {
            "run_id": "lost",
            "results_dir": str(tmp_path / "results"),
            "device": "cpu",
            "num_workers": 2,
            "backend": "ray",
        },
        "behaviors": {
            "default": {
                "trainer_type": trainer_type,
                "hyperparameters": hyperparameters,
                "time_horizon": 25,
                "summary_freq": 100,
                "max_steps": 300,
            }
        },
    }
    result = train(config_from_dict(data))
    assert (tmp_path / "died").exists(), "no worker died: the test did not test anything"
    assert result.stopped_by == "max_steps" and result.env_steps >= 300
    lines = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert lines[-1]["counters/worker_restarts"] == 1.0
    events = EventAccumulator(str(result.run_dir / "tensorboard" / "run"))
    events.Reload()
    assert events.Scalars("Counters/worker_restarts")[-1].value == 1.0
    assert list((result.run_dir / "onnx").glob("*.onnx"))
