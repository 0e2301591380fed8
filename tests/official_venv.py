"""Locate, or create once, the isolated virtual environment holding the official ML-Agents Python client.

The conformance tests compare unimarl against ``mlagents-envs`` 0.28.0, which pins protobuf < 3.21 and
numpy 1.23: it can never share a venv with unimarl (protobuf >= 5, numpy >= 1.26). It lives in its own venv,
by default ``~/.cache/unimarl/mlagents-envs-0.28.0``, and tests drive it as a subprocess.

Policy:

* ``UNIMARL_OFFICIAL_VENV=DIR`` puts the venv elsewhere.
* ``UNIMARL_SKIP_OFFICIAL=1`` skips every test that needs it, explicitly (and only then).
* Missing venv: it is created with ``python -m venv`` + pip, under an exclusive file lock so two pytest
  processes never build it at the same time. If creation fails (no registry reachable, pip error), the tests
  FAIL with the commands to create it by hand: a silent skip would let CI pass without ever running the
  comparison.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

MLAGENTS_ENVS_VERSION = "0.28.0"
#: The exact pins the official client is known to run with (protobuf < 3.21: its _pb2 files predate upb).
REQUIREMENTS = (f"mlagents-envs=={MLAGENTS_ENVS_VERSION}", "protobuf==3.20.3", "numpy==1.23.5")
ENV_DIR = "UNIMARL_OFFICIAL_VENV"
ENV_SKIP = "UNIMARL_SKIP_OFFICIAL"
_CREATE_TIMEOUT_S = 900
_PROBE_TIMEOUT_S = 60
_LOCK_TIMEOUT_S = 2 * _CREATE_TIMEOUT_S


class OfficialVenvError(RuntimeError):
    """The official client's venv is missing and could not be created; the message says how to create it."""


def venv_dir() -> Path:
    """Where the official venv lives (``$UNIMARL_OFFICIAL_VENV`` or the per-user cache)."""
    override = os.environ.get(ENV_DIR)
    if override:
        return Path(override).expanduser()
    return Path.home() / ".cache" / "unimarl" / f"mlagents-envs-{MLAGENTS_ENVS_VERSION}"


def skip_requested() -> bool:
    """True when the user asked to skip the official-client tests (``UNIMARL_SKIP_OFFICIAL=1``)."""
    return os.environ.get(ENV_SKIP, "").strip().lower() in {"1", "true", "yes"}


def _python_in(directory: Path) -> Path:
    return directory / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _manual_instructions(directory: Path) -> str:
    reqs = " ".join(REQUIREMENTS)
    return (
        f"create it by hand:\n    python3 -m venv {directory}\n"
        f"    {_python_in(directory)} -m pip install {reqs}\n"
        f"(or point {ENV_DIR} at an existing one, or set {ENV_SKIP}=1 to skip these tests explicitly)"
    )


def _is_ready(directory: Path) -> bool:
    """The venv imports the pinned client and protobuf (a half-built venv does not count)."""
    python = _python_in(directory)
    if not python.exists():
        return False
    probe = (
        "import google.protobuf, mlagents_envs.environment as e; "
        "import sys; sys.exit(0 if google.protobuf.__version__ == '3.20.3' else 3)"
    )
    try:
        result = subprocess.run(
            [str(python), "-c", probe], capture_output=True, timeout=_PROBE_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


def _run_step(args: list[str], directory: Path, log: Path) -> None:
    with log.open("ab") as out:
        try:
            result = subprocess.run(
                args, stdout=out, stderr=subprocess.STDOUT, timeout=_CREATE_TIMEOUT_S, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as e:
            raise OfficialVenvError(
                f"creating the official venv at {directory} failed running {args[:3]}: {e}; "
                + _manual_instructions(directory)
            ) from e
    if result.returncode != 0:
        tail = log.read_text(errors="replace")[-2000:]
        raise OfficialVenvError(
            f"creating the official venv at {directory} failed (exit {result.returncode}) running "
            f"{' '.join(args[:4])} ...; log {log}:\n{tail}\n" + _manual_instructions(directory)
        )


def _base_python(directory: Path) -> str:
    """An interpreter mlagents-envs 0.28 runs on: it imports ``distutils``, which Python 3.12 removed."""
    if sys.version_info < (3, 12):
        return sys.executable
    for name in ("python3.11", "python3.10", "python3.9"):
        found = shutil.which(name)
        if found:
            return found
    raise OfficialVenvError(
        f"mlagents-envs {MLAGENTS_ENVS_VERSION} needs Python <= 3.11 (it imports distutils) and none was "
        "found on PATH (python3.11, python3.10, python3.9); install one, then "
        + _manual_instructions(directory)
    )


def _create(directory: Path) -> None:
    directory.parent.mkdir(parents=True, exist_ok=True)
    if directory.exists():
        shutil.rmtree(directory)  # a half-built venv from an interrupted run
    log = directory.parent / f"{directory.name}.create.log"
    log.write_bytes(b"")
    _run_step([_base_python(directory), "-m", "venv", str(directory)], directory, log)
    pip = [str(_python_in(directory)), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    _run_step([*pip, *REQUIREMENTS], directory, log)
    if not _is_ready(directory):
        raise OfficialVenvError(
            f"the official venv at {directory} was created but cannot import mlagents_envs with "
            "protobuf 3.20.3; " + _manual_instructions(directory)
        )


def _acquire(fd: int, lock_path: Path) -> None:
    deadline = time.monotonic() + _LOCK_TIMEOUT_S
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise OfficialVenvError(
                    f"waited {_LOCK_TIMEOUT_S}s for {lock_path}, held by another process creating the "
                    "official venv (a stuck pip?); the lock is freed when that process exits"
                ) from None
            time.sleep(0.5)


def official_python() -> Path:
    """The official venv's interpreter, creating the venv when missing; raises :class:`OfficialVenvError`."""
    directory = venv_dir()
    if _is_ready(directory):
        return _python_in(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    lock_path = directory.parent / f"{directory.name}.lock"
    with lock_path.open("w") as lock:
        _acquire(lock.fileno(), lock_path)  # another pytest process may be creating it right now
        try:
            if not _is_ready(directory):
                _create(directory)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return _python_in(directory)


def _text(output: str | bytes | None) -> str:
    if isinstance(output, bytes):
        return output.decode(errors="replace")
    return output or ""


def run_official(python: Path, args: list[str], cwd: Path, timeout_s: float = 120.0) -> str:
    """Run ``python args...`` in the official venv with a clean environment; returns stdout.

    ``PYTHONPATH``/``VIRTUAL_ENV`` of the test process are dropped so nothing of unimarl's venv leaks in. A
    non-zero exit or a timeout raises :class:`OfficialVenvError` with the command and the tail of its output.
    """
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV"}}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    command = [str(python), *args]
    try:
        result = subprocess.run(
            command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout_s, check=False
        )
    except subprocess.TimeoutExpired as e:
        raise OfficialVenvError(
            f"{' '.join(command)} did not finish within {timeout_s}s; output so far:\n"
            f"{_text(e.stdout)}\n{_text(e.stderr)}"
        ) from e
    if result.returncode != 0:
        raise OfficialVenvError(
            f"{' '.join(command)} exited with {result.returncode}:\n"
            f"{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
        )
    return result.stdout
