"""Launcher: build resolution per platform, command line, log files, process-group termination."""

from __future__ import annotations

import logging
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from unimarl.bridge import LaunchError
from unimarl.bridge.launcher import KILL_WAIT_S, GameProcess, build_command, launch, resolve_executable


def _touch(path: Path, executable: bool = True) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\necho started\n")
    if executable:
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


@pytest.mark.parametrize("given", ["Game", "Game.x86_64", "Game.x86", "Game.exe"])
def test_linux_resolution_strips_suffixes(tmp_path: Path, given: str) -> None:
    exe = _touch(tmp_path / "Game.x86_64")
    assert resolve_executable(tmp_path / given, platform="linux") == exe


def test_linux_falls_back_to_x86(tmp_path: Path) -> None:
    exe = _touch(tmp_path / "Game.x86")
    assert resolve_executable(tmp_path / "Game", platform="linux") == exe


def test_macos_app_bundle(tmp_path: Path) -> None:
    exe = _touch(tmp_path / "Game.app" / "Contents" / "MacOS" / "Game")
    assert resolve_executable(tmp_path / "Game.app", platform="darwin") == exe
    assert resolve_executable(tmp_path / "Game", platform="darwin") == exe


def test_windows_exe_and_folder_without_crash_handler(tmp_path: Path) -> None:
    exe = _touch(tmp_path / "Game.exe")
    assert resolve_executable(tmp_path / "Game", platform="win32") == exe
    _touch(tmp_path / "Other" / "UnityCrashHandler64.exe")
    inner = _touch(tmp_path / "Other" / "Other.exe")
    assert resolve_executable(tmp_path / "Other", platform="win32") == inner


def test_missing_build_names_what_was_tried(tmp_path: Path) -> None:
    with pytest.raises(LaunchError, match=r"no player build found .*Game\.x86_64.*Game\.x86\b.*Unity Editor"):
        resolve_executable(tmp_path / "Game", platform="linux")


def test_only_crash_handler_is_not_a_build(tmp_path: Path) -> None:
    _touch(tmp_path / "Game" / "UnityCrashHandler64.exe")
    with pytest.raises(LaunchError, match="no player build found"):
        resolve_executable(tmp_path / "Game", platform="win32")


def test_not_executable(tmp_path: Path) -> None:
    exe = _touch(tmp_path / "Game.x86_64", executable=False)
    with pytest.raises(LaunchError, match=rf"{exe} is not executable.*chmod \+x"):
        resolve_executable(exe, platform="linux")


def test_unsupported_platform(tmp_path: Path) -> None:
    with pytest.raises(LaunchError, match="unsupported platform 'plan9'"):
        resolve_executable(tmp_path / "Game", platform="plan9")


def test_command_line_order() -> None:
    exe = Path("/b/Game.x86_64")
    assert build_command(exe, 5005, log_path=Path("/l/Player-0.log"), additional_args=["--x", "1"]) == [
        "/b/Game.x86_64",
        "-batchmode",
        "-nographics",
        "--mlagents-port",
        "5005",
        "-logFile",
        "/l/Player-0.log",
        "--x",
        "1",
    ]
    assert build_command(exe, 7, no_graphics=False) == [
        "/b/Game.x86_64",
        "-batchmode",
        "--mlagents-port",
        "7",
    ]


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting for its reaper counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat_file = Path(f"/proc/{pid}/stat")
    if stat_file.exists():
        return stat_file.read_text().rsplit(")", 1)[1].split()[0] != "Z"
    return True


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX process groups")
def test_launch_writes_logs_and_passes_arguments(tmp_path: Path) -> None:
    exe = _touch(tmp_path / "build" / "Game.x86_64")
    exe.write_text('#!/bin/sh\necho "args: $*"\necho "to the log" > "$6"\n')
    process = launch(exe, 5123, log_dir=tmp_path / "logs", worker_id=3, additional_args=["--extra"])
    assert process.popen.wait(timeout=10) == 0
    assert process.log_path == (tmp_path / "logs" / "Player-3.log").resolve()
    assert process.log_path.read_text() == "to the log\n"
    output = process.output_path.read_text()
    assert (
        output == f"args: -batchmode -nographics --mlagents-port 5123 -logFile {process.log_path} --extra\n"
    )
    assert "to the log" in process.log_tail() and "args:" in process.log_tail()


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX process groups")
def test_user_log_file_is_respected(tmp_path: Path) -> None:
    exe = _touch(tmp_path / "Game.x86_64")
    exe.write_text('#!/bin/sh\necho "$*"\n')
    user_log = tmp_path / "mine" / "custom.log"
    process = launch(exe, 1, additional_args=["-logfile", str(user_log)])
    process.popen.wait(timeout=10)
    assert process.log_path == user_log.resolve()
    expected = ["-batchmode", "-nographics", "--mlagents-port", "1", "-logfile", str(user_log)]
    assert process.output_path.read_text().split() == expected


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX process groups")
def test_terminate_kills_the_process_group(tmp_path: Path) -> None:
    exe = _touch(tmp_path / "Game.x86_64")
    # The game ignores SIGTERM and leaves a child behind: both must be gone after terminate().
    exe.write_text("#!/bin/sh\ntrap '' TERM\nsleep 300 &\necho child $!\nwait\n")
    process = launch(exe, 1, log_dir=tmp_path)
    deadline = time.monotonic() + 10
    while "child" not in process.output_path.read_text() and time.monotonic() < deadline:
        time.sleep(0.02)
    child = int(process.output_path.read_text().split()[1])
    start = time.monotonic()
    code = process.terminate(grace=0.3)
    assert code == -signal.SIGKILL
    assert time.monotonic() - start < 8
    deadline = time.monotonic() + 5
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not _alive(child)
    assert process.terminate(grace=0.1) == code  # safe to repeat


class _UnkillablePopen:
    """A process that never exits, not even on SIGKILL (as one stuck in uninterruptible I/O)."""

    pid = 4_000_000  # never signalled: the test replaces the group signalling
    returncode = None

    def __init__(self) -> None:
        self.waits: list[float | None] = []

    def wait(self, timeout: float | None = None) -> int:
        self.waits.append(timeout)
        raise subprocess.TimeoutExpired("game", timeout or 0.0)


def test_terminate_gives_up_on_a_process_that_outlives_sigkill(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    popen = _UnkillablePopen()
    process = GameProcess(
        popen, tmp_path / "Game.x86_64", tmp_path / "Player-0.log", tmp_path / "Player-0.out"
    )
    sent: list[int] = []
    monkeypatch.setattr(process, "_signal_group", sent.append)
    with caplog.at_level(logging.ERROR, logger="unimarl.bridge.launcher"):
        assert process.terminate(grace=0.1) is None
    assert sent == [signal.SIGTERM, signal.SIGKILL, signal.SIGKILL]
    assert popen.waits == [0.1, 0.1, KILL_WAIT_S]  # every wait bounded
    assert "still running" in caplog.text and str(tmp_path / "Player-0.log") in caplog.text
