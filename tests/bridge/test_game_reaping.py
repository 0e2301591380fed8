"""No game outlives its env: ``close()`` ends a game that never exchanges (no Default agent, so it plays until
killed, as a Unity player does: Communicator/RpcCommunicator.cs:320-329, 337-362), within a bound; and a
trainer process that exits without closing its env neither hangs on the game's held call nor leaves the
game running."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from unimarl import sim
from unimarl.bridge.errors import UnityTimeoutError
from unimarl.bridge.parallel_env import UnityParallelEnv

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX process checks")

INFERENCE_ONLY = ("--behavior-type", "inference")


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


def _wait_gone(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not _alive(pid)


def test_close_ends_a_game_without_default_agents_within_its_grace(tmp_path: Path) -> None:
    build = sim.make_build("coop_nav", tmp_path / "build", extra_args=INFERENCE_ONLY)
    env = UnityParallelEnv(build, seed=0, timeout=2, log_dir=tmp_path / "logs")
    with pytest.raises(UnityTimeoutError, match="no agents requesting decisions"):
        env.reset()  # the handshake happens; no observation ever follows
    process = env.connection.process
    assert process is not None and process.poll() is None  # still playing, as a player does
    start = time.monotonic()
    env.close()
    # grace = min(timeout, 10 s), then SIGTERM: well under grace + the launcher's kill bounds
    assert time.monotonic() - start < 2 + 3 + 5
    assert _wait_gone(process.pid, 5), "the game survived env.close()"


_UNCLOSED = """
import sys
from unimarl import sim
from unimarl.bridge.errors import UnityTimeoutError
from unimarl.bridge.parallel_env import UnityParallelEnv

folder, flags = sys.argv[1], sys.argv[2:]
build = sim.make_build("coop_nav", folder + "/build", extra_args=flags)
env = UnityParallelEnv(build, seed=0, timeout=2, log_dir=folder + "/logs")
try:
    env.reset()
except UnityTimeoutError:
    pass
print(env.connection.process.pid, flush=True)
# exits without env.close()
"""


@pytest.mark.parametrize("flags", [(), INFERENCE_ONLY], ids=["default-agents", "inference-only"])
def test_exiting_without_close_neither_hangs_nor_leaves_the_game(
    tmp_path: Path, flags: tuple[str, ...]
) -> None:
    """Default agents: the game's call is held by a server thread waiting for the trainer's reply (up to
    ``reply_timeout``, an hour), which must not hold up interpreter exit. Inference only: the game never
    calls, so only its owner can end it."""
    script = tmp_path / "unclosed.py"
    script.write_text(textwrap.dedent(_UNCLOSED))
    proc = subprocess.Popen(
        [sys.executable, str(script), str(tmp_path), *flags], stdout=subprocess.PIPE, text=True
    )
    hung = False
    try:
        out, _ = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        hung = True
        proc.kill()
        out, _ = proc.communicate()
    pid = int(out.split()[0])
    try:
        assert not hung, "the trainer process hung at exit on an env it did not close"
        assert proc.returncode == 0
        assert _wait_gone(pid, 10), "the game outlived the trainer process that launched it"
    finally:  # never leave the game behind, whatever happened
        if _alive(pid):
            os.killpg(pid, signal.SIGKILL)
