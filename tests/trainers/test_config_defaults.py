"""Defaults that depend on the env kind: environments per worker (``env.num_envs`` unset) and workers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from unimarl.trainers.cli.main import _apply_flags, build_parser
from unimarl.trainers.core.config import (
    ENVS_PER_WORKER,
    apply_env_flag,
    config_from_dict,
    config_to_dict,
    load_config,
)

ENVS: dict[str, dict[str, Any]] = {
    "pettingzoo": {"pettingzoo": "pkg.mod:make"},
    "sim": {"sim": "coop_nav"},
    "build": {"build": "Game.x86_64"},
    "editor": {"editor": True},
}


@pytest.mark.parametrize(("kind", "expected"), [("pettingzoo", 32), ("sim", 4), ("build", 4), ("editor", 1)])
def test_unset_num_envs_resolves_by_env_kind(kind: str, expected: int) -> None:
    config = config_from_dict({"env": ENVS[kind]})
    assert config.env.kind == kind and config.env.num_envs is None
    assert config.env.envs_per_worker == ENVS_PER_WORKER[kind] == expected
    assert config_to_dict(config)["env"]["num_envs"] == expected  # what results/RUN_ID/config.yaml records
    assert config.run.num_workers == 1  # in-process worker: no Ray start-up unless asked for


@pytest.mark.parametrize("kind", ["pettingzoo", "sim", "build"])
def test_an_explicit_num_envs_wins_over_the_default(kind: str) -> None:
    config = config_from_dict({"env": {**ENVS[kind], "num_envs": 3}})
    assert config.env.envs_per_worker == 3 and config_to_dict(config)["env"]["num_envs"] == 3


def test_the_default_follows_the_env_that_the_env_flag_selects() -> None:
    config = config_from_dict({"env": ENVS["pettingzoo"]})
    apply_env_flag(config, "sim:coop_nav")
    assert config.env.envs_per_worker == 4  # game processes, not in-process envs
    explicit = config_from_dict({"env": {**ENVS["pettingzoo"], "num_envs": 8}})
    apply_env_flag(explicit, "Game.x86_64")
    assert explicit.env.envs_per_worker == 8  # a value the user gave travels with --env


def test_cli_flags_win_over_the_kind_defaults(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("env: {pettingzoo: 'pkg.mod:make'}\n")
    config = load_config(path)
    _apply_flags(
        config, build_parser().parse_args(["train", str(path), "--num-envs", "5", "--num-workers", "2"])
    )
    assert (config.env.envs_per_worker, config.run.num_workers) == (5, 2)
    config = load_config(path)
    _apply_flags(config, build_parser().parse_args(["train", str(path)]))
    assert (config.env.envs_per_worker, config.run.num_workers) == (32, 1)
