"""``unimarl train CONFIG --env BUILD`` keeps the config's ``env.args``: in the resolved config and on the
command line the build is launched with."""

from __future__ import annotations

import sys
from pathlib import Path

from unimarl.trainers.core.config import apply_env_flag, config_from_dict, config_to_dict
from unimarl.trainers.envs.factory import EnvFactory

EXTRA = ["--agents", "2", "--episode-length", "7"]


def _logging_build(tmp_path: Path) -> tuple[Path, Path]:
    """A player 'build' that writes its command line to a file, then runs the coop_nav sim with it."""
    argv = tmp_path / "argv.txt"
    build = tmp_path / "Nav.x86_64"
    build.write_text(
        f'#!/bin/sh\nprintf "%s\\n" "$@" > {argv}\nexec {sys.executable} -m unimarl.sim coop_nav "$@"\n'
    )
    build.chmod(0o755)
    return build, argv


def test_env_flag_with_a_build_keeps_the_configs_player_arguments(tmp_path: Path) -> None:
    build, argv = _logging_build(tmp_path)
    config = config_from_dict({"env": {"sim": "coop_nav", "args": EXTRA, "num_envs": 1}})
    apply_env_flag(config, str(build))
    assert config.env.kind == "build" and config.env.build == str(build)
    assert config_to_dict(config)["env"]["args"] == EXTRA
    env = EnvFactory(config.env, run_dir=str(tmp_path))(0, 0, 0)
    try:
        env.reset()
        assert len(env.agents) == 2  # the game saw --agents 2
    finally:
        env.close()
    launched = argv.read_text().split()
    assert launched[-len(EXTRA) :] == EXTRA and "--mlagents-port" in launched
