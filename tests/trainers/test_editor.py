"""Editor mode end to end: a config without a build, sim or PettingZoo env waits for a game to dial the editor
port (here a free one instead of 5004) and trains on it, as ``mlagents-learn`` does when Play is pressed."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from unimarl.trainers.cli.main import main


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_train_without_env_accepts_the_game_dialling_the_editor_port(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    port = _free_port()
    config = {
        "env": {"editor_port": port, "timeout_s": 30},  # no build, sim or pettingzoo: the Editor
        "run": {"run_id": "editor", "results_dir": str(tmp_path), "device": "cpu"},
        "behaviors": {"CoopNav": {"hyperparameters": {"epochs": 1}, "time_horizon": 10, "max_steps": 20}},
    }
    path = tmp_path / "editor.yaml"
    path.write_text(yaml.safe_dump(config))
    # the "Editor": a stand-in game that dials the port, as Unity does when Play is pressed
    game = subprocess.Popen(
        [sys.executable, "-m", "unimarl.trainers.cli.main", "sim", "coop_nav", "--mlagents-port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert main(["train", str(path)]) == 0
    finally:
        if game.poll() is None:
            game.kill()
        _, err = game.communicate(timeout=30)
    out = capsys.readouterr().out
    assert f"Press Play in the Unity Editor (listening on port {port})" in out
    run = tmp_path / "editor"
    resolved = yaml.safe_load((run / "config.yaml").read_text())
    assert (resolved["env"]["num_envs"], resolved["run"]["num_workers"]) == (1, 1)
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert lines[-1]["env_steps"] == 20, err
    assert "Losses/Value Loss/CoopNav?team=0" in lines[-1]
