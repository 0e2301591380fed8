"""Fixtures for the protocol tests (the official client's interpreter comes from tests/conftest.py)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest


@pytest.fixture(scope="session")
def wire_samples() -> ModuleType:
    """tests/protos/wire_samples.py as a module (it also runs as a script inside the official venv)."""
    spec = importlib.util.spec_from_file_location(
        "unimarl_tests_wire_samples", Path(__file__).with_name("wire_samples.py")
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
