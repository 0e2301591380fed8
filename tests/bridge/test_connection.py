"""UnityConnection against a scripted fake player, in a thread and launched as a build over real gRPC."""

from __future__ import annotations

import importlib.util
import logging
import struct
import sys
import time
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from unimarl.bridge import (
    ActionTuple,
    EnvironmentParametersChannel,
    IncompatibleVersionError,
    LaunchError,
    PortInUseError,
    ProtocolError,
    UnityConnection,
    UnityProcessExitedError,
    UnityTimeoutError,
)
from unimarl.bridge.connection import check_api_compatible, package_version
from unimarl.protos import API_VERSION, CommandProto
from unimarl.protos.sidechannel import STATS, frame


def _load_fake_player() -> ModuleType:
    name = "unimarl_tests_fake_player"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("fake_player.py"))
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


fp = _load_fake_player()


class _Session:
    """A connection on a free port plus a fake player thread dialling it, both closed at the end."""

    def __init__(self, timeout: float = 10.0, side_channels: tuple = (), **player_kwargs: object) -> None:
        # port=0 (ephemeral) with file_name=None: Editor-style waiting, but no fixed port.
        self.conn = UnityConnection(
            None, port=0, timeout=timeout, seed=42, num_areas=3, side_channels=side_channels
        )
        self.conn._server.start()
        self.conn.port = self.conn._server.port
        self.player = fp.FakePlayer(self.conn.port, **player_kwargs).start()

    def close(self) -> None:
        self.conn.close()
        self.player.join(timeout=10)


@pytest.fixture
def session_factory():
    sessions: list[_Session] = []

    def make(**kwargs: object) -> _Session:
        sessions.append(_Session(**kwargs))
        return sessions[-1]

    yield make
    for s in sessions:
        s.close()


def test_handshake_answer_fields(session_factory) -> None:
    s = session_factory(package_version="2.2.1-exp.1")
    s.conn.open()
    answer = s.player.inputs[0]
    assert answer.header.status == 200
    init = answer.unity_input.rl_initialization_input
    assert (init.seed, init.num_areas, init.communication_version) == (42, 3, API_VERSION)
    assert init.package_version == package_version() != ""
    caps = init.capabilities
    assert all(getattr(caps, f.name) for f in caps.DESCRIPTOR.fields)
    assert (s.conn.unity_package_version, s.conn.unity_api_version) == ("2.2.1-exp.1", "1.5.0")
    assert s.conn.visual_layout == "HWC"
    assert len(s.player.inputs) == 1, "call #2 is held until reset()"


def test_reset_and_step_route_actions_side_channels_and_stats(session_factory) -> None:
    stats = frame([(STATS, struct.pack("<i", 5) + b"Score" + struct.pack("<fi", 3.0, 0))])
    outputs = [
        fp.agent_output("Walker?team=0", 2, 3, announce=True),
        fp.agent_output("Walker?team=0", 2, 3, announce=False, side_channel=stats),
    ]
    params = EnvironmentParametersChannel()
    s = session_factory(outputs=outputs, side_channels=(params,))
    s.conn.open()
    params.set_float_parameter("gravity", 2.0)
    first = s.conn.reset()
    assert s.player.inputs[1].unity_input.rl_input.command == CommandProto.RESET
    assert s.player.inputs[1].unity_input.rl_input.side_channel != b""
    assert list(s.conn.behavior_specs) == ["Walker?team=0"]
    assert first.steps["Walker?team=0"].decision.obs[0].shape == (2, 3)
    actions = ActionTuple(
        continuous=np.array([[0.25], [-0.5]], np.float32), discrete=np.zeros((2, 0), np.int32)
    )
    s.conn.step({"Walker?team=0": actions})
    rl_input = s.player.inputs[2].unity_input.rl_input
    assert rl_input.command == CommandProto.STEP
    sent = [list(a.continuous_actions) for a in rl_input.agent_actions["Walker?team=0"].value]
    assert sent == [[0.25], [-0.5]]
    assert rl_input.side_channel == b"", "side-channel messages are sent once"
    assert s.conn.stats.get_and_reset_stats() == {"Score": [(3.0, 0)]}


def test_close_sends_400_with_quit(session_factory) -> None:
    s = session_factory()
    s.conn.open()
    s.conn.close()
    s.player.join(timeout=10)
    last = s.player.inputs[-1]
    assert last.header.status == 400
    assert last.unity_input.rl_input.command == CommandProto.QUIT
    s.conn.close()  # idempotent


@pytest.mark.parametrize(
    ("unity_api", "match"),
    [
        ("2.0.0", r"game speaks communication API 2\.0\.0 but this trainer speaks 1\.5\.0"),
        ("0.15.0", r"communication API 0\.15\.0"),
        ("banana", r"cannot parse the game's communication API version 'banana'"),
    ],
)
def test_incompatible_versions(session_factory, unity_api: str, match: str) -> None:
    s = session_factory(api_version=unity_api)
    with pytest.raises(IncompatibleVersionError, match=match):
        s.conn.open()
    s.player.join(timeout=10)
    assert s.player.inputs[-1].header.status == 400, "the game is told to quit"


def test_version_rule_for_major_zero() -> None:
    check_api_compatible("1.0.0", "1.5.0")  # same major >= 1: compatible
    check_api_compatible("0.15.1", "0.15.0")  # major 0: minors match
    with pytest.raises(IncompatibleVersionError, match=r"0\.16\.0"):
        check_api_compatible("0.16.0", "0.15.0")
    with pytest.raises(IncompatibleVersionError, match=r"1\.5\.0"):
        check_api_compatible("1.5.0", "0.15.0")


def test_timeout_when_the_player_stops_answering(session_factory) -> None:
    s = session_factory(timeout=1.0, silent_after_inputs=2)
    s.conn.open()
    start = time.monotonic()
    with pytest.raises(UnityTimeoutError, match=r"Unity Editor sent nothing on port \d+ .* within 1\.0 s"):
        s.conn.reset()
    assert time.monotonic() - start < 3.0


def test_malformed_bytes_are_a_protocol_error(session_factory) -> None:
    s = session_factory(first_message=b"\xff\xff\xff\xff garbage")
    with pytest.raises(ProtocolError, match="not a UnityMessageProto"):
        s.conn.open()


def test_output_without_rl_output_is_a_protocol_error(session_factory) -> None:
    s = session_factory(outputs=[fp.UnityMessageProto(header={"status": 200}).SerializeToString()])
    s.conn.open()
    with pytest.raises(ProtocolError, match="after reset has no rl_output"):
        s.conn.reset()


def test_handshake_without_init_output_is_a_protocol_error(session_factory) -> None:
    s = session_factory(first_message=fp.empty_output())
    with pytest.raises(ProtocolError, match="first message has no rl_initialization_output"):
        s.conn.open()


def test_large_output_passes(session_factory) -> None:
    big = fp.agent_output("Eyes", 1, 5 * 2**20 // 4 + 7, announce=True)
    assert len(big) > 5 * 2**20
    s = session_factory(outputs=[big])
    s.conn.open()
    out = s.conn.reset()
    assert out.steps["Eyes"].decision.obs[0].shape == (1, 5 * 2**20 // 4 + 7)


def test_editor_mode_defaults_and_message(caplog: pytest.LogCaptureFixture) -> None:
    assert UnityConnection().port == 5004
    conn = UnityConnection(port=0, timeout=0.4)
    with (
        caplog.at_level(logging.INFO, logger="unimarl.bridge.connection"),
        pytest.raises(UnityTimeoutError, match="Play was not pressed in the Unity Editor"),
    ):
        conn.open()
    assert any("press Play in the Unity Editor" in r.getMessage() for r in caplog.records)
    assert conn._server.closed


def test_bad_nan_policy_is_rejected_early() -> None:
    with pytest.raises(ValueError, match=r"nan_policy must be one of .* got 'zero'"):
        UnityConnection(nan_policy="zero")


def test_port_in_use(session_factory) -> None:
    s = session_factory()
    with pytest.raises(PortInUseError, match=str(s.conn.port)):
        UnityConnection(port=s.conn.port).open()


def test_missing_build_is_a_launch_error(tmp_path: Path) -> None:
    with pytest.raises(LaunchError, match="no player build found"):
        UnityConnection(tmp_path / "Nope.x86_64").open()


# --- launched as a build (subprocess) ---------------------------------------------------------------------


def test_build_handshake_and_close_reaps_the_process(tmp_path: Path) -> None:
    exe = fp.write_build(tmp_path / "build")
    conn = UnityConnection(exe, timeout=20, log_dir=tmp_path / "logs", worker_id=2)
    with conn:
        assert conn.process is not None and conn.process.poll() is None
        assert conn.log_path == (tmp_path / "logs" / "Player-2.log").resolve()
        conn.reset()
    assert conn.process.returncode == 0
    log = conn.log_path.read_text()
    assert f"--mlagents-port', '{conn.port}'" in log
    assert "trainer closed the connection: status 400" in log


def test_build_that_exits_names_exit_code_and_log(tmp_path: Path) -> None:
    exe = fp.write_build(tmp_path / "build", "--exit-code", "3")
    conn = UnityConnection(exe, timeout=20, log_dir=tmp_path)
    with pytest.raises(
        UnityProcessExitedError, match=r"(?s)exited with code 3 \(log: .*Player-0\.log\).*fatal"
    ):
        conn.open()
    assert conn.process is not None and conn.process.returncode == 3


def test_close_terminates_a_build_that_ignores_quit(tmp_path: Path) -> None:
    exe = fp.write_build(tmp_path / "build", "--ignore-close")
    conn = UnityConnection(exe, timeout=1.0, log_dir=tmp_path)
    conn.open()
    start = time.monotonic()
    conn.close()
    assert conn.process is not None and conn.process.returncode is not None and conn.process.returncode < 0
    assert time.monotonic() - start < 8
