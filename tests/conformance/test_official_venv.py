"""The official-venv helper's policy: explicit skip switch, override location, and a loud failure with the
manual commands when the venv cannot be created (here: a package index that refuses connections)."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest

official_venv = sys.modules["unimarl_tests_official_venv"]  # loaded once by tests/conftest.py


def test_location_override_and_skip_switch(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(official_venv.ENV_DIR, str(tmp_path / "elsewhere"))
    assert official_venv.venv_dir() == tmp_path / "elsewhere"
    monkeypatch.setenv(official_venv.ENV_SKIP, "1")
    assert official_venv.skip_requested()
    monkeypatch.setenv(official_venv.ENV_SKIP, "0")
    assert not official_venv.skip_requested()


def _refused_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/simple"  # nothing listens there once the socket is closed


def test_unreachable_registry_fails_loudly(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    target = tmp_path / "official"
    monkeypatch.setenv(official_venv.ENV_DIR, str(target))
    monkeypatch.setenv("PIP_INDEX_URL", _refused_url())
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("PIP_TIMEOUT", "2")
    monkeypatch.setenv("PIP_NO_CACHE_DIR", "1")
    with pytest.raises(official_venv.OfficialVenvError, match=r"create it by hand:\n\s+python3 -m venv "):
        official_venv.official_python()
    assert (tmp_path / "official.create.log").exists()
