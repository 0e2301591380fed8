"""Soak and fault-injection runs of the bridge against stand-in game builds (slow tier).

They check what short tests cannot: no file descriptors, threads or child processes leak over many steps and
many open/close cycles, and a game that dies or hangs in the middle of a long run is reported with the typed
error, in time, every time.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from unimarl import sim
from unimarl.bridge import UnityParallelEnv, UnityProcessExitedError, UnityTimeoutError

pytestmark = pytest.mark.slow


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _children() -> set[int]:
    me = str(os.getpid())
    found = set()
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                stat = Path(f"/proc/{pid}/stat").read_text()
            except OSError:
                continue
            if stat.rsplit(")", 1)[1].split()[1] == me:
                found.add(int(pid))
    return found


def _random_actions(env: UnityParallelEnv, obs: dict, rng: np.random.Generator) -> dict:
    actions = {}
    for agent in env.agents:
        mask = obs[agent]["action_mask"]
        actions[agent] = int(rng.choice(np.flatnonzero(mask)))
    return actions


def test_long_run_keeps_terminal_data_and_leaks_nothing(tmp_path: Path) -> None:
    build = sim.make_build("battle", tmp_path / "build", extra_args=("--team-size", "64", "--grid", "30"))
    env = UnityParallelEnv(build, seed=3, timeout=60, log_dir=tmp_path / "logs")
    rng = np.random.default_rng(0)
    obs, _ = env.reset()
    fds, threads = _open_fds(), threading.active_count()
    finished, terminal_rewards_seen = 0, 0
    for _ in range(3000):
        obs, rewards, terminations, truncations, _ = env.step(_random_actions(env, obs, rng))
        for agent in terminations:
            if terminations[agent] or truncations[agent]:
                finished += 1
                assert agent in obs and agent in rewards, f"terminal data of {agent} lost"
                terminal_rewards_seen += rewards[agent] != 0.0
    env.close()
    assert finished > 128, "3000 battle steps must end many agents' episodes"
    assert terminal_rewards_seen > 0
    assert _open_fds() <= fds + 2
    assert threading.active_count() <= threads + 1


def test_repeated_open_close_reaps_every_game(tmp_path: Path) -> None:
    build = sim.make_build("coop_nav", tmp_path / "build")
    fds = _open_fds()
    for cycle in range(20):
        env = UnityParallelEnv(build, seed=cycle, timeout=30, log_dir=tmp_path / "logs" / str(cycle))
        env.reset()
        for _ in range(10):
            env.step({agent: 0 for agent in env.agents})
        env.close()
    deadline = time.monotonic() + 10
    while _children() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _children(), "every game process must be reaped by close()"
    assert _open_fds() <= fds + 2


@pytest.mark.parametrize(
    ("mode", "error"), [("die:1500", UnityProcessExitedError), ("hang:1500", UnityTimeoutError)]
)
def test_fault_deep_into_a_run_is_reported_in_time(tmp_path: Path, mode: str, error: type) -> None:
    build = sim.make_build("coop_nav", tmp_path / "build", extra_args=("--misbehave", mode))
    env = UnityParallelEnv(build, seed=0, timeout=5, log_dir=tmp_path / "logs")
    env.reset()
    steps = 0
    started = None
    with pytest.raises(error, match=r"Player-0\.log|log"):
        while True:
            started = time.monotonic()
            env.step({agent: 0 for agent in env.agents})
            steps += 1
    assert steps == 1499 or steps == 1500
    assert started is not None and time.monotonic() - started < 5 + 3
    env.close()
