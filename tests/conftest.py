"""Shared test settings and fixtures.

Ray stays on loopback, no test depends on the source tree's location, and the official ML-Agents client's
interpreter (tests/official_venv.py) serves the protos and conformance tests from here.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

# Ray binds the machine's address unless told otherwise; tests keep it on 127.0.0.1.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def _load_official_venv() -> ModuleType:
    # tests/ is not a package (importlib import mode), so the shared helper is loaded from its path, once.
    name = "unimarl_tests_official_venv"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("official_venv.py"))
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


official_venv = _load_official_venv()


@pytest.fixture(scope="session")
def official_python() -> Path:
    """Interpreter of the isolated mlagents-envs 0.28.0 venv; skips only when UNIMARL_SKIP_OFFICIAL=1."""
    if official_venv.skip_requested():
        pytest.skip(f"{official_venv.ENV_SKIP}=1: official-client tests skipped on request")
    try:
        return official_venv.official_python()
    except official_venv.OfficialVenvError as e:
        pytest.fail(str(e), pytrace=False)


@pytest.fixture(scope="session")
def run_official(official_python: Path) -> Callable[..., str]:
    """``run_official(args, cwd, timeout_s=120) -> stdout``: run the official venv's Python on ``args``."""

    def run(args: list[str], cwd: Path, timeout_s: float = 120.0) -> str:
        try:
            return official_venv.run_official(official_python, args, cwd, timeout_s)
        except official_venv.OfficialVenvError as e:
            pytest.fail(str(e), pytrace=False)

    return run
