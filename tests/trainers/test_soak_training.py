"""A short soak (slow tier): rounds of MAPPO collection with game kills, a hung game and hot-swaps leave no
more threads, file descriptors or child processes than after warm-up (benchmarks/soak_training.py runs it
longer and prints the figures)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

pytestmark = pytest.mark.slow


def _soak_module() -> ModuleType:
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "soak_training.py"
    spec = importlib.util.spec_from_file_location("soak_training", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their annotations through it
    spec.loader.exec_module(module)
    return module


@pytest.mark.timeout(180)
def test_short_soak_leaks_no_threads_fds_or_children(tmp_path: Path) -> None:
    soak = _soak_module()
    plan = soak.SoakPlan(rounds=70, warmup=10, kill_every=4, hang_every=40, hang_timeout_s=3.0, points=2)
    done = soak.soak(tmp_path, plan)
    assert done.kills >= 10 and done.hangs == 2 and done.pushes >= 20
    assert done.restarts == {"exited": done.kills, "hung": done.hangs}
    warm, end, closed = done.figures("warm-up"), done.figures("end"), done.figures("closed")
    for metric in ("python_threads", "os_threads", "open_fds", "children"):
        assert end[metric] <= warm[metric] + 1, (
            f"{metric}: {warm[metric]} after warm-up, {end[metric]} at the end"
        )
    assert all(figures["zombies"] == 0 for _, figures in done.samples)
    assert closed["children"] == 0 and closed["python_threads"] == done.figures("start")["python_threads"]
    assert closed["open_fds"] <= done.figures("start")["open_fds"] + 1
