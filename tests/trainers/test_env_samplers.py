"""Environment parameters reach the games: numbers and samplers (ML-Agents' uniform, gaussian, multi-range
uniform), each sampler seeded with the game's seed unless it names one; the games draw from them."""

from __future__ import annotations

from pathlib import Path

from unimarl.trainers.core.config import config_from_dict
from unimarl.trainers.run.train import train


def test_samplers_and_numbers_are_sent_to_every_game(tmp_path: Path) -> None:
    data = {
        "env": {"sim": "coop_nav", "num_envs": 2, "num_areas": 1},
        "run": {"run_id": "params", "results_dir": str(tmp_path), "device": "cpu", "seed": 5},
        "environment_parameters": {
            "speed": {"sampler_type": "uniform", "sampler_parameters": {"min_value": 0.5, "max_value": 2.0}},
            "noise": {
                "sampler_type": "gaussian",
                "sampler_parameters": {"mean": 1.0, "st_dev": 0.1, "seed": 9},
            },
            "size": {
                "sampler_type": "multirangeuniform",
                "sampler_parameters": {"intervals": [[1, 2], [4, 5]]},
            },
            "length": 12,
        },
        "behaviors": {"default": {"hyperparameters": {"epochs": 1}, "time_horizon": 8, "max_steps": 16}},
    }
    result = train(config_from_dict(data))
    logs = sorted((result.run_dir / "logs").rglob("*.log"))
    assert len(logs) == 2, logs
    seen = []
    for log in logs:
        lines = [line for line in log.read_text().splitlines() if "environment parameter" in line]
        text = "\n".join(lines)
        assert "environment parameter length = 12" in text, text
        assert "speed = sampler type 0" in text and "noise = sampler type 1 (seed 9)" in text, text
        assert "size = sampler type 2" in text, text
        seen.append(next(line for line in lines if "speed = sampler" in line).split("(seed ")[1])
    assert seen[0] != seen[1], "each game seeds its samplers with its own seed"
