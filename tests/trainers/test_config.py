"""Config parsing: defaults, strictness with nearest-key hints, lookups, CLI overrides, behaviour naming."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from unimarl.trainers.core.config import (
    BehaviorSettings,
    apply_env_flag,
    config_from_dict,
    config_to_dict,
    load_config,
    validate,
)
from unimarl.trainers.core.errors import ConfigError
from unimarl.trainers.envs.factory import behavior_from_name

CONFIGS = Path(__file__).parents[2] / "configs"


def test_yaml_overrides_defaults_and_round_trips(tmp_path: Path) -> None:
    text = """
env: {sim: coop_nav, args: [--global-state], num_envs: 2}
run: {run_id: x, max_seconds: 30}
behaviors:
  CoopNav:
    trainer_type: mappo
    hyperparameters: {lr: 1e-3, epochs: 4, huber_delta: null}
    network_settings: {hidden_units: 32}
    max_steps: 1e6
environment_parameters: {episode_length: 25}
engine_settings: {time_scale: 1}
"""
    (tmp_path / "c.yaml").write_text(text)
    config = load_config(tmp_path / "c.yaml")
    settings = config.behavior_settings("CoopNav?team=0")
    assert settings.hyperparameters.lr == 1e-3 and settings.hyperparameters.epochs == 4
    assert settings.hyperparameters.huber_delta is None and settings.hyperparameters.clip == 0.2
    assert settings.network_settings.hidden_units == 32 and settings.max_steps == 1_000_000
    assert config.env.kind == "sim" and config.env.args == ["--global-state"]
    assert config.engine_settings.time_scale == 1.0 and config.environment_parameters == {
        "episode_length": 25.0
    }
    again = config_from_dict(yaml.safe_load(yaml.safe_dump(config_to_dict(config))))
    assert again == config


@pytest.mark.parametrize(
    ("data", "pattern"),
    [
        (
            {"behaviors": {"x": {"hyperparameters": {"learning_rate": 1e-3}}}},
            r"unknown key 'learning_rate' in section 'behaviors.x.hyperparameters'",
        ),
        (
            {"behaviors": {"x": {"time_horizn": 5}}},
            r"'time_horizn' in section 'behaviors.x': did you mean 'time_horizon'",
        ),
        ({"envv": {}}, r"unknown key 'envv' in section 'top level': did you mean 'env'"),
        ({"env": {"num_env": 3}}, r"did you mean 'num_envs'"),
        (
            {"behaviors": {"x": {"trainer_type": "dqn"}}},
            r"trainer_type 'dqn' is not supported; supported: mappo",
        ),
        (
            {"behaviors": {"x": {"max_steps": "many"}}},
            r"behaviors.x.max_steps: expected a number, got 'many'",
        ),
        ({"run": {"device": "tpu"}}, r"run.device must be auto, cpu or cuda, got 'tpu'"),
        ({"behaviors": {"x": {"hyperparameters": {"gamma": 2}}}}, r"gamma must lie in \[0, 1\]"),
        ({"env": {"editor": True, "num_envs": 4}}, r"--num-envs 1 --num-workers 1"),
        ({"run": {"max_steps": 0}}, r"run.max_steps must be > 0 .*got 0"),
        ({"run": {"max_seconds": -1}}, r"run.max_seconds must be > 0 .*got -1"),
    ],
)
def test_invalid_configs_raise_with_the_key_and_a_fix(data: dict, pattern: str) -> None:
    with pytest.raises(ConfigError, match=pattern):
        config_from_dict(data)


def test_env_kind_is_at_most_one() -> None:
    with pytest.raises(ConfigError, match=r"got \['build', 'sim'\]"):
        _ = config_from_dict({"env": {"build": "a", "sim": "b"}}).env.kind
    with pytest.raises(ConfigError, match=r"got \['editor', 'sim'\]"):
        _ = config_from_dict({"env": {"editor": True, "sim": "b"}}).env.kind


@pytest.mark.parametrize("env", [None, {}, {"editor": True}, {"editor": True, "editor_port": 6000}])
def test_a_config_without_env_trains_on_the_editor_with_one_env_and_one_worker(env: dict | None) -> None:
    # as with mlagents-learn: a config that names only its behaviours waits for Play in the Editor
    data: dict = {"behaviors": {"Walker": {"max_steps": 1000}}}
    if env is not None:
        data["env"] = env
    config = config_from_dict(data)
    assert config.env.kind == "editor"
    assert (config.env.envs_per_worker, config.run.num_workers) == (1, 1)
    assert config.env.editor_port == (env or {}).get("editor_port", 5004)
    assert config_to_dict(config)["env"]["num_envs"] == 1  # the resolved config the run folder keeps


def test_editor_mode_with_several_envs_or_workers_names_the_fix() -> None:
    config = config_from_dict({})
    config.run.num_workers = 2
    with pytest.raises(ConfigError, match=r"Editor.*--num-workers 1"):
        validate(config)


def test_env_flag_after_an_editor_config_gets_the_usual_env_count() -> None:
    config = config_from_dict({})
    apply_env_flag(config, "sim:coop_nav")
    assert config.env.kind == "sim" and config.env.envs_per_worker == 4


def test_default_behavior_and_policy_mapping() -> None:
    config = config_from_dict(
        {
            "behaviors": {"default": {"time_horizon": 7}, "Striker": {"time_horizon": 9}},
            "policy_mapping": {"Goalie": "shared", "Striker?team=1": "shared"},
        }
    )
    assert config.behavior_settings("Striker?team=0").time_horizon == 9
    assert config.behavior_settings("Other").time_horizon == 7
    assert config_from_dict({}).behavior_settings("Other") == BehaviorSettings()
    assert config.policy_of("Goalie?team=0") == "shared" and config.policy_of("Striker?team=1") == "shared"
    assert config.policy_of("Striker?team=0") == "Striker?team=0"


def test_env_flag_overrides_the_env_section() -> None:
    config = config_from_dict({"env": {"pettingzoo": "m:f", "num_envs": 3}})
    apply_env_flag(config, "sim:coop_nav")
    assert config.env.kind == "sim" and config.env.sim == "coop_nav" and config.env.num_envs == 3
    apply_env_flag(config, "/games/Nav.x86_64")
    assert config.env.kind == "build" and config.env.build == "/games/Nav.x86_64"


@pytest.mark.parametrize(
    ("agent", "behavior"),
    [
        ("agent_0", "agent"),
        ("red_12", "red"),
        ("blue_team_3", "blue_team"),
        ("solo", "solo"),
        ("_7", "_7"),
    ],
)
def test_behavior_names_drop_a_trailing_index(agent: str, behavior: str) -> None:
    assert behavior_from_name(agent) == behavior


def test_shipped_configs_load() -> None:
    paths = sorted(CONFIGS.glob("*.yaml"))
    assert paths, "configs/ holds no YAML"
    for path in paths:
        load_config(path)


@pytest.mark.parametrize(
    "path", sorted(Path(__file__).parents[2].joinpath("configs").glob("*.yaml")), ids=str
)
def test_resolved_config_reads_back_as_the_same_config(path: Path) -> None:
    """results/RUN_ID/config.yaml (config_to_dict) is a config file itself: loading it gives the run's
    config back, for MAPPO and mean-field behaviours alike (a mean-field run's resolved file was refused)."""
    config = load_config(path)
    assert config_from_dict(yaml.safe_load(yaml.safe_dump(config_to_dict(config)))) == config
