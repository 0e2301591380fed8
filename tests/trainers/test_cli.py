"""The `unimarl` command: help lists commands, `unimarl sim` stays free of torch and ray, errors exit 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from unimarl.trainers.cli.main import main


def test_help_lists_train_and_sim(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "train" in out and "sim" in out


def test_sim_dispatch_does_not_import_torch_or_ray() -> None:
    code = (
        "import sys, unimarl.sim\n"
        "calls = []\n"
        "unimarl.sim.main = lambda argv: calls.append(list(argv)) or 0\n"
        "from unimarl.trainers.cli.main import main\n"
        "rc = main(['sim', 'coop_nav', '--mlagents-port', '1'])\n"
        "assert rc == 0 and calls == [['coop_nav', '--mlagents-port', '1']], calls\n"
        "heavy = [m for m in ('torch', 'ray') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_config_errors_exit_2_with_the_message(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("behaviors:\n  x:\n    time_horizn: 5\n")
    assert main(["train", str(path)]) == 2
    assert "did you mean 'time_horizon'" in capsys.readouterr().err


def test_flags_override_the_file(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("env: {sim: coop_nav}\nrun: {device: cpu}\n")
    assert (
        main(
            [
                "train",
                str(path),
                "--env",
                "sim:nonexistent_game",
                "--results-dir",
                str(tmp_path),
                "--run-id",
                "r",
                "--num-envs",
                "1",
            ]
        )
        == 2
    )
    assert "nonexistent_game" in (tmp_path / "r" / "config.yaml").read_text()
