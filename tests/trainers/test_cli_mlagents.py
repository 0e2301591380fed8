"""mlagents-learn's flags on ``unimarl train`` (each flag's effect on the resolved config, the refusals), and
the outputs ML-Agents users look for: ``results/<run-id>/<Behavior>.onnx`` and ML-Agents' TensorBoard tags."""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from unimarl.trainers.cli.main import _apply_flags, build_parser, main
from unimarl.trainers.core.config import TrainConfig, config_to_dict, load_config
from unimarl.trainers.core.errors import ConfigError, ResumeError
from unimarl.trainers.run.loop import tensorboard
from unimarl.trainers.run.run_dir import RunDir, behavior_model_names

NAV = str(Path(__file__).with_name("nav_env.py"))


def _resolved(tmp_path: Path, *flags: str, config: str = "env: {sim: coop_nav}\n") -> TrainConfig:
    path = tmp_path / "c.yaml"
    path.write_text(config)
    loaded = load_config(path)
    _apply_flags(loaded, build_parser().parse_args(["train", str(path), *flags]))
    return loaded


def _field(config: TrainConfig, dotted: str) -> Any:
    section, key = dotted.split(".")
    return getattr(getattr(config, section), key)


@pytest.mark.parametrize(
    ("flags", "field", "expected"),
    [
        (["--run-id", "walker-2"], "run.run_id", "walker-2"),
        (["--results-dir", "runs"], "run.results_dir", "runs"),
        (["--resume"], "run.resume", True),
        (["--force"], "run.force", True),
        (["--initialize-from", "walker-1"], "run.initialize_from", "walker-1"),
        (["--seed", "7"], "run.seed", 7),
        (["--torch-device", "cpu"], "run.device", "cpu"),
        (["--env", "Game.x86_64"], "env.build", "Game.x86_64"),
        (["--env-args", "--agents", "2", "-logFile", "-"], "env.args", ["--agents", "2", "-logFile", "-"]),
        (["--num-envs", "3"], "env.num_envs", 3),
        (["--num-areas", "4"], "env.num_areas", 4),
        (["--timeout-wait", "12.5"], "env.timeout_s", 12.5),
        (["--max-lifetime-restarts", "-1"], "env.max_lifetime_restarts", -1),
        (["--restarts-rate-limit-n", "3"], "env.restarts_rate_limit_n", 3),
        (["--restarts-rate-limit-period-s", "30"], "env.restarts_rate_limit_period_s", 30.0),
        (["--width", "640"], "engine_settings.width", 640),
        (["--height", "480"], "engine_settings.height", 480),
        (["--quality-level", "1"], "engine_settings.quality_level", 1),
        (["--time-scale", "1.5"], "engine_settings.time_scale", 1.5),
        (["--target-frame-rate", "30"], "engine_settings.target_frame_rate", 30),
        (["--capture-frame-rate", "50"], "engine_settings.capture_frame_rate", 50),
    ],
)
def test_each_mlagents_flag_sets_its_config_field(
    tmp_path: Path, flags: list[str], field: str, expected: Any
) -> None:
    default = _field(_resolved(tmp_path), field)
    assert default != expected  # the flag, not the default, makes the value
    assert _field(_resolved(tmp_path, *flags), field) == expected


def test_no_graphics_overrides_a_config_that_turns_graphics_on(tmp_path: Path) -> None:
    config = "env: {sim: coop_nav}\nengine_settings: {no_graphics: false}\n"
    assert _resolved(tmp_path, config=config).engine_settings.no_graphics is False
    assert _resolved(tmp_path, "--no-graphics", config=config).engine_settings.no_graphics is True


def test_flags_override_an_mlagents_config_file(tmp_path: Path) -> None:
    config = (
        "behaviors: {Nav: {trainer_type: ppo}}\n"
        "env_settings: {env_path: 'sim:coop_nav', timeout_wait: 90, max_lifetime_restarts: 4}\n"
        "checkpoint_settings: {run_id: from-file}\n"
        "engine_settings: {time_scale: 10}\n"
    )
    resolved = _resolved(
        tmp_path,
        "--run-id",
        "from-flag",
        "--timeout-wait",
        "5",
        "--max-lifetime-restarts",
        "2",
        "--time-scale",
        "3",
        config=config,
    )
    assert (resolved.run.run_id, resolved.env.timeout_s) == ("from-flag", 5.0)
    assert (resolved.env.max_lifetime_restarts, resolved.engine_settings.time_scale) == (2, 3.0)


def test_env_flag_keeps_timeout_and_restart_bounds(tmp_path: Path) -> None:
    config = (
        "env: {sim: coop_nav, timeout_s: 7, max_lifetime_restarts: 2, restarts_rate_limit_n: 5,\n"
        "      restarts_rate_limit_period_s: 9, args: [--agents, '2']}\n"
    )
    env = _resolved(tmp_path, "--env", "Game.x86_64", config=config).env
    assert (env.kind, env.timeout_s, env.args) == ("build", 7.0, ["--agents", "2"])
    assert (env.max_lifetime_restarts, env.restarts_rate_limit_n, env.restarts_rate_limit_period_s) == (
        2,
        5,
        9.0,
    )


def test_seed_minus_one_draws_a_seed_as_mlagents_learn_does(tmp_path: Path) -> None:
    seeds = {_resolved(tmp_path, "--seed", "-1").run.seed for _ in range(20)}
    assert all(0 <= s < 10_000 for s in seeds) and len(seeds) > 1


def test_base_port_is_accepted_and_ignored_with_a_note(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with_port = _resolved(tmp_path, "--base-port", "5005")
    assert "--base-port 5005 is ignored" in capsys.readouterr().err
    assert config_to_dict(with_port) == config_to_dict(_resolved(tmp_path))


def test_inference_is_refused_pointing_at_play(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(ConfigError, match=r"--inference: .*unimarl play"):
        _resolved(tmp_path, "--inference")
    path = tmp_path / "c.yaml"
    assert main(["train", str(path), "--inference", "--results-dir", str(tmp_path / "r")]) == 2
    assert "unimarl play" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()  # refused before any run folder is made


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--torch-device", "cuda:1"], "CUDA_VISIBLE_DEVICES=1"),
        (["--torch-device", "cpu", "--device", "cuda"], "disagree"),
        (["--timeout-wait", "0"], "--timeout-wait must be > 0"),
        (["--time-scale", "-1"], "--time-scale must be > 0"),
        (["--num-areas", "0"], "--num-areas must be >= 1"),
        (["--max-lifetime-restarts", "-2"], "-1 for no limit"),
        (["--initialize-from", "run"], "names this run itself"),
        (["--initialize-from", "../other"], "run.initialize_from '../other' is not a single folder name"),
    ],
)
def test_bad_flag_values_are_refused_with_the_fix(tmp_path: Path, flags: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        _resolved(tmp_path, *flags)


def test_help_lists_every_mlagents_flag(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    for flag in (
        "--run-id", "--resume", "--force", "--initialize-from", "--inference", "--env", "--env-args",
        "--num-envs", "--base-port", "--seed", "--no-graphics", "--time-scale", "--width", "--height",
        "--quality-level", "--target-frame-rate", "--capture-frame-rate", "--torch-device", "--results-dir",
        "--timeout-wait", "--max-lifetime-restarts", "--restarts-rate-limit-n",
        "--restarts-rate-limit-period-s",
    ):  # fmt: skip
        assert flag in out, flag


def _old_run(results: Path, run_id: str) -> Path:
    run = results / run_id
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "checkpoint-5.pt").write_bytes(b"old")
    (run / "metrics.jsonl").write_text('{"env_steps": 5}\n')
    (run / "tensorboard" / "agent").mkdir(parents=True)
    return run


def test_force_replaces_the_run_folder_and_nothing_else(tmp_path: Path) -> None:
    results = tmp_path / "results"
    run = _old_run(results, "a")
    other = _old_run(results, "a-2")
    with pytest.raises(ResumeError, match="--force to replace it"):
        RunDir(results, "a")
    fresh = RunDir(results, "a", force=True)
    fresh.close()
    assert sorted(p.name for p in run.iterdir()) == ["checkpoints", "logs"]
    assert fresh.latest_checkpoint() is None
    assert sorted(p.name for p in results.iterdir()) == ["a", "a-2"]  # no leftovers, the other run kept
    assert (other / "checkpoints" / "checkpoint-5.pt").read_bytes() == b"old"


def test_force_with_resume_continues_the_run(tmp_path: Path) -> None:
    run = _old_run(tmp_path, "a")
    RunDir(tmp_path, "a", resume=True, force=True).close()
    assert (run / "checkpoints" / "checkpoint-5.pt").exists()


def test_force_never_follows_a_linked_run_folder(tmp_path: Path) -> None:
    outside = _old_run(tmp_path / "elsewhere", "kept")
    results = tmp_path / "results"
    results.mkdir()
    os.symlink(outside, results / "a", target_is_directory=True)
    with pytest.raises(ResumeError, match="link or not a folder"):
        RunDir(results, "a", force=True)
    assert (outside / "checkpoints" / "checkpoint-5.pt").read_bytes() == b"old"


def test_behavior_model_names_follow_mlagents_brain_names() -> None:
    assert behavior_model_names({"Soccer?team=0": "Soccer", "Soccer?team=1": "Soccer", "agent": "agent"}) == {
        "Soccer?team=0": "Soccer.onnx",
        "Soccer?team=1": "Soccer.onnx",
        "agent": "agent.onnx",
    }
    # teams trained as different policies keep their team in the name, made safe for Windows
    assert behavior_model_names({"Nav?team=0": "Nav?team=0", "Nav?team=1": "Nav?team=1"}) == {
        "Nav?team=0": "Nav_team_0.onnx",
        "Nav?team=1": "Nav_team_1.onnx",
    }
    clash = {"A?team=0": "p", "A?team=1": "q", "A_team_0": "r"}
    assert behavior_model_names(clash) == {"A?team=1": "A_team_1.onnx"}  # one file, two policies: no copy


def test_mean_field_losses_also_get_mlagents_tags(tmp_path: Path) -> None:
    run = RunDir(tmp_path, "mf")
    line = {
        "env_steps": 10,
        "env_steps_per_s": 1.0,
        "agent_steps_per_s": 1.0,
        "return/red": 1.0,
        "Losses/pg_loss/red": 0.5,
        "Losses/critic_loss/red": 0.25,
        "Losses/entropy/red": 1.5,
        "Losses/q_loss/blue": 0.75,
    }
    tensorboard(run, line, {"red": "red", "blue": "blue"})
    run.close()
    red, blue = (_scalars(tmp_path / "mf" / "tensorboard" / p) for p in ("red", "blue"))
    assert red["Losses/Policy Loss"] == 0.5 and red["Losses/Value Loss"] == 0.25
    assert red["Policy/Entropy"] == 1.5 and red["Losses/pg_loss"] == 0.5  # the own names stay
    assert blue["Losses/Value Loss"] == 0.75


def _scalars(folder: Path) -> dict[str, float]:
    acc = EventAccumulator(str(folder))
    acc.Reload()
    return {tag: acc.Scalars(tag)[-1].value for tag in acc.Tags()["scalars"]}


def _nav_config(tmp_path: Path, hidden_units: int = 64) -> Path:
    data = {
        "env": {"pettingzoo": f"{NAV}:make", "kwargs": {"masks": True}, "num_envs": 4},
        "run": {"results_dir": str(tmp_path / "results"), "device": "cpu"},
        "behaviors": {
            "default": {
                "hyperparameters": {"epochs": 2},
                "network_settings": {"hidden_units": hidden_units},
                "time_horizon": 25,
                "summary_freq": 200,
                "checkpoint_interval": 200,
                "max_steps": 400,
            }
        },
    }
    path = tmp_path / f"nav-{hidden_units}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _adam_steps(run: Path, env_steps: int) -> float:
    state = torch.load(run / "checkpoints" / f"checkpoint-{env_steps}.pt", weights_only=True)
    return float(state["policies"]["agent"]["actor_optim"]["state"][0]["step"])


def test_a_short_run_writes_mlagents_outputs_and_the_flags_work_end_to_end(tmp_path: Path) -> None:
    config = str(_nav_config(tmp_path))
    results = tmp_path / "results"
    assert main(["train", config, "--run-id", "first", "--seed", "1"]) == 0
    run = results / "first"
    # <Behavior>.onnx where ML-Agents writes it, identical to unimarl's own model of that behaviour's policy
    assert (run / "agent.onnx").read_bytes() == (run / "onnx" / "agent.onnx").read_bytes()
    tags = _scalars(run / "tensorboard" / "agent")
    for tag in (
        "Environment/Cumulative Reward",
        "Environment/Episode Length",
        "Policy/Entropy",
        "Policy/Learning Rate",
        "Losses/Policy Loss",
        "Losses/Value Loss",
    ):
        assert tag in tags, tag
    assert tags["Environment/Episode Length"] == 25
    # `unimarl export` rewrites the copies with the models
    (run / "agent.onnx").write_bytes(b"stale")
    assert main(["export", str(run)]) == 0
    assert (run / "agent.onnx").read_bytes() == (run / "onnx" / "agent.onnx").read_bytes()

    # --initialize-from: the first run's state (its Adam step count shows it), counters from 0
    assert (
        main(["train", config, "--run-id", "second", "--initialize-from", "first", "--max-steps", "200"]) == 0
    )
    first_updates = _adam_steps(run, 400)
    assert first_updates == 4 * 2  # 4 iterations x 2 epochs
    assert _adam_steps(results / "second", 200) == first_updates + 2 * 2
    assert sorted(p.name for p in (results / "second" / "checkpoints").iterdir()) == ["checkpoint-200.pt"]

    # a run of other network settings cannot start from it: a typed error, before any step
    with pytest.raises(ResumeError, match="cannot initialize from run 'first'"):
        _train(_nav_config(tmp_path, hidden_units=32), run_id="third", initialize_from="first")
    with pytest.raises(ResumeError, match="cannot initialize from run 'missing'"):
        _train(Path(config), run_id="fourth", initialize_from="missing")

    # --force starts the run again in its folder: the old checkpoints and metrics are gone
    before = (run / "agent.onnx").read_bytes()
    assert main(["train", config, "--run-id", "first", "--force", "--max-steps", "200", "--seed", "2"]) == 0
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["checkpoint-200.pt"]
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 1
    assert (run / "agent.onnx").read_bytes() == (run / "onnx" / "agent.onnx").read_bytes() != before


def _train(config_path: Path, **run: Any) -> None:
    from unimarl.trainers.run.train import train

    config = load_config(config_path)
    config.run = dataclasses.replace(config.run, **run)
    train(config)


def test_a_mean_field_run_copies_its_models_and_writes_mlagents_tags(tmp_path: Path) -> None:
    from unimarl.trainers.core.config import config_from_dict
    from unimarl.trainers.run.train import train

    small = {
        "encoder": "mlp",
        "visual_hidden": 32,
        "head_hidden": [32],
        "batch_size": 32,
        "learning_starts": 32,
    }
    data = {
        "env": {"sim": "battle", "num_envs": 1, "args": ["--team-size", "6", "--grid", "12", "--view", "5"]},
        "run": {"run_id": "b", "results_dir": str(tmp_path), "device": "cpu", "max_steps": 96},
        "behaviors": {
            "Battle?team=0": {
                "trainer_type": "mfac",
                "hyperparameters": {**small, "push_every": 8},
                "self_play": {"opponent": "Battle?team=1"},
                "summary_freq": 48,
                "checkpoint_interval": 64,
            }
        },
        "environment_parameters": {"max_steps": 20},
    }
    run = train(config_from_dict(data)).run_dir
    # self-play trains one policy of the behaviour (the other team plays its snapshots): as ML-Agents' ghost
    # trainer writes it, one <Behavior>.onnx under the name without ?team=
    assert sorted(p.name for p in run.glob("*.onnx")) == ["Battle.onnx"]
    assert (run / "Battle.onnx").read_bytes() == (run / "onnx" / "Battle_team_0.onnx").read_bytes()
    tags = _scalars(run / "tensorboard" / "Battle_team_0")
    assert {"Losses/Policy Loss", "Losses/Value Loss", "Policy/Entropy"} <= set(tags)
