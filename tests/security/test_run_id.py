"""A run id names one folder directly under the results folder: nothing that could land elsewhere is accepted,
from YAML, from ``--run-id`` or through :class:`RunDir` itself, and nothing is created on the way."""

from __future__ import annotations

from pathlib import Path

import pytest

from unimarl.trainers.cli.main import main
from unimarl.trainers.core.config import config_from_dict
from unimarl.trainers.core.errors import ConfigError
from unimarl.trainers.run.run_dir import RunDir

BAD_IDS = [
    "../x",
    "..",
    ".",
    "",
    "   ",
    "a/b",
    "a\\b",
    "/tmp/elsewhere",
    "C:run",
    "x\x00y",
    "results/../../x",
]


@pytest.mark.parametrize("run_id", BAD_IDS)
def test_yaml_run_id_that_leaves_the_results_folder_is_refused(run_id: str) -> None:
    with pytest.raises(ConfigError) as info:
        config_from_dict({"run": {"run_id": run_id}})
    message = str(info.value)
    assert repr(run_id) in message and "run.run_id" in message and "letters" in message


@pytest.mark.parametrize("run_id", BAD_IDS)
def test_run_dir_refuses_it_and_creates_nothing(tmp_path: Path, run_id: str) -> None:
    results = tmp_path / "deep" / "results"
    results.mkdir(parents=True)
    with pytest.raises(ConfigError, match=r"run\.run_id"):
        RunDir(results, run_id)
    assert list(results.iterdir()) == [] and sorted(p.name for p in tmp_path.iterdir()) == ["deep"]
    assert sorted(p.name for p in (tmp_path / "deep").iterdir()) == ["results"]


def test_cli_run_id_flag_is_checked(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("env: {sim: coop_nav}\nrun: {device: cpu}\n")
    results = tmp_path / "results"
    code = main(["train", str(config), "--results-dir", str(results), "--run-id", "../escaped"])
    assert code == 2
    assert "'../escaped'" in capsys.readouterr().err
    assert not (tmp_path / "escaped").exists() and not results.exists()


@pytest.mark.parametrize(
    "run_id", ["run", "coop_nav-mappo-3", "v1.2", "ppo seed 0", "Überlauf", "..x", "x.."]
)
def test_ordinary_run_ids_are_accepted(tmp_path: Path, run_id: str) -> None:
    assert config_from_dict({"run": {"run_id": run_id}}).run.run_id == run_id
    run = RunDir(tmp_path, run_id)
    assert run.path == tmp_path / run_id and run.path.is_dir()
    run.close()
