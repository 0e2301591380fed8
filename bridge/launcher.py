"""Find and start a Unity player build (or a stand-in game packaged like one), and own its process.

Resolution follows ML-Agents' ``env_utils.launch_executable``: the name may be given with or without its
platform suffix; ``.app``, ``.exe``, ``.x86_64`` and ``.x86`` are stripped, then the platform's candidates are
tried (Linux ``X.x86_64`` / ``X.x86``; macOS ``X.app/Contents/MacOS/*``; Windows ``X.exe`` or ``X/*.exe``
other than ``UnityCrashHandler*``). A path that is itself an executable file is taken as is.

The game is started in its own session (process group) so that :meth:`GameProcess.terminate` can end it and
anything it spawned. A game still running when the trainer's interpreter exits (its env never closed) is
killed then: a player with no Default agent never calls the trainer, so nothing else would ever end it.
Command line::

    exe -batchmode [-nographics] --mlagents-port N [-logFile <log_dir>/Player-<k>.log] *additional_args

Unity writes its own log to ``-logFile`` (skipped when the caller passes one); the process's stdout and stderr
go to ``Player-<k>.out`` beside it. Seed and number of areas are not command-line flags: they travel in the
handshake.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from unimarl.bridge.errors import LaunchError

logger = logging.getLogger(__name__)

_SUFFIXES = (".app", ".exe", ".x86_64", ".x86")
KILL_WAIT_S = 5.0
"""How long :meth:`GameProcess.terminate` waits for the game to go after SIGKILL before giving up on it."""


_RUNNING: dict[int, GameProcess] = {}
"""Launched games not yet terminated, by pid; killed at interpreter exit."""


def _kill_leftover_games() -> None:
    for process in list(_RUNNING.values()):
        if process.poll() is None:
            logger.warning(
                "killing game pid %d (%s): its env was never closed", process.pid, process.build_path
            )
            process._signal_group(signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.popen.wait(timeout=1.0)
    _RUNNING.clear()


atexit.register(_kill_leftover_games)


def _strip_suffix(path: Path) -> Path:
    for suffix in _SUFFIXES:
        if path.name.endswith(suffix) and len(path.name) > len(suffix):
            return path.with_name(path.name[: -len(suffix)])
    return path


def _candidates(base: Path, platform: str) -> list[Path]:
    if platform.startswith("linux"):
        return [base.with_name(base.name + ".x86_64"), base.with_name(base.name + ".x86")]
    if platform == "darwin":
        macos = base.with_name(base.name + ".app") / "Contents" / "MacOS"
        return sorted(macos.glob("*")) if macos.is_dir() else []
    if platform in ("win32", "cygwin"):
        found = [base.with_name(base.name + ".exe")]
        if base.is_dir():
            found += sorted(p for p in base.glob("*.exe") if not p.name.startswith("UnityCrashHandler"))
        return found
    raise LaunchError(f"unsupported platform {platform!r}; Unity players run on linux, darwin and win32")


def resolve_executable(file_name: str | os.PathLike, platform: str = sys.platform) -> Path:
    """The executable of a player build; :class:`LaunchError` if none is found or it cannot be run."""
    given = Path(file_name).expanduser().resolve()
    tried = [given] if given.is_file() else []
    tried += [p for p in _candidates(_strip_suffix(given), platform) if p not in tried]
    existing = [p for p in tried if p.is_file()]
    if not existing:
        names = ", ".join(str(p) for p in tried) or f"{given} (no candidates)"
        raise LaunchError(
            f"no player build found for {str(file_name)!r}; tried: {names}. Pass the path of the built "
            "player (e.g. Builds/Game.x86_64), or None to connect to the Unity Editor."
        )
    exe = existing[0]
    if platform not in ("win32", "cygwin") and not os.access(exe, os.X_OK):
        raise LaunchError(f"{exe} is not executable; make it executable with: chmod +x '{exe}'")
    return exe


def build_command(
    exe: Path,
    port: int,
    *,
    no_graphics: bool = True,
    log_path: Path | None = None,
    additional_args: Sequence[str] = (),
) -> list[str]:
    """The player's command line (see the module docstring)."""
    command = [str(exe), "-batchmode"]
    if no_graphics:
        command.append("-nographics")
    command += ["--mlagents-port", str(port)]
    if log_path is not None:
        command += ["-logFile", str(log_path)]
    return command + [str(a) for a in additional_args]


def _user_log_file(additional_args: Sequence[str]) -> Path | None:
    lowered = [str(a).lower() for a in additional_args]
    if "-logfile" not in lowered:
        return None
    index = lowered.index("-logfile")
    if index + 1 < len(additional_args):
        return Path(additional_args[index + 1])
    return None


@dataclass
class GameProcess:
    """A running game: its process, build path and log files."""

    popen: subprocess.Popen
    build_path: Path
    log_path: Path
    output_path: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def returncode(self) -> int | None:
        return self.popen.returncode

    def poll(self) -> int | None:
        """The exit code once the process has exited, else None."""
        return self.popen.poll()

    def log_tail(self, lines: int = 20) -> str:
        """The last ``lines`` lines of the player log and of its stdout/stderr, for error messages."""
        parts = []
        for label, path in (("log", self.log_path), ("stdout/stderr", self.output_path)):
            try:
                text = path.read_text(errors="replace")
            except OSError:
                continue
            tail = text.rstrip().splitlines()[-lines:]
            if tail:
                parts.append(f"--- last lines of {label} {path} ---\n" + "\n".join(tail))
        return "\n".join(parts) if parts else "(the game wrote no log output)"

    def terminate(self, grace: float = 10.0) -> int | None:
        """Wait up to ``grace`` s for the game to exit, then end its process group (SIGTERM, then SIGKILL).

        Returns the exit code (None if the game outlived SIGKILL by :data:`KILL_WAIT_S`; logged, never
        raised). Safe to call more than once.
        """
        try:
            self.popen.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            logger.warning(
                "game pid %d did not exit within %.1f s; terminating its process group", self.pid, grace
            )
            self._signal_group(signal.SIGTERM)
            try:
                self.popen.wait(timeout=min(grace, 3.0))
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                self._wait_after_kill()
        # Children the game left behind in its group go too.
        self._signal_group(signal.SIGKILL)
        _RUNNING.pop(self.pid, None)
        return self.popen.returncode

    def _wait_after_kill(self) -> None:
        """Reap the game after SIGKILL; a process that outlives it (e.g. stuck in the kernel) is logged and
        left behind, so closing never raises."""
        try:
            self.popen.wait(timeout=KILL_WAIT_S)
        except subprocess.TimeoutExpired:
            logger.error(
                "game pid %d (%s, log: %s) is still running %.1f s after SIGKILL; giving up on it "
                "(check for a process stuck in uninterruptible I/O)",
                self.pid,
                self.build_path,
                self.log_path,
                KILL_WAIT_S,
            )

    def _signal_group(self, sig: int) -> None:
        if sys.platform == "win32":
            self.popen.kill()
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)


def launch(
    file_name: str | os.PathLike,
    port: int,
    *,
    no_graphics: bool = True,
    log_dir: str | os.PathLike | None = None,
    worker_id: int = 0,
    additional_args: Sequence[str] = (),
) -> GameProcess:
    """Resolve and start a player build that will dial ``localhost:port``.

    Without ``log_dir`` the logs go to a fresh temporary folder (named in errors). The log is
    ``Player-<worker_id>.log`` unless ``additional_args`` carries its own ``-logFile``.
    """
    exe = resolve_executable(file_name)
    user_log = _user_log_file(additional_args)
    if user_log is not None:
        log_path = user_log.expanduser().resolve()
    else:
        folder = Path(log_dir) if log_dir is not None else Path(tempfile.mkdtemp(prefix="unimarl-player-"))
        log_path = folder.expanduser().resolve() / f"Player-{worker_id}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    output_path = log_path.with_suffix(".out")
    command = build_command(
        exe,
        port,
        no_graphics=no_graphics,
        log_path=None if user_log is not None else log_path,
        additional_args=additional_args,
    )
    logger.info("launching %s on port %d (log: %s)", exe, port, log_path)
    with open(output_path, "wb") as output:
        try:
            popen = subprocess.Popen(
                command,
                stdout=output,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        except OSError as e:
            raise LaunchError(
                f"could not start {exe}: {e}. Check that the build is for this platform ({sys.platform}) and "
                "complete (its _Data folder beside it)."
            ) from e
    process = GameProcess(popen=popen, build_path=exe, log_path=log_path, output_path=output_path)
    _RUNNING[process.pid] = process
    return process
