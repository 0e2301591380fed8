"""One trainer-side connection to one game: Unity player build, Unity Editor, or a stand-in game.

Semantics (ML-Agents communicator, API 1.5.0):

* The trainer is the gRPC server; the game dials ``localhost:port``. For a build the connection binds a port
  first (a free one unless ``port`` is given) and launches the build with ``--mlagents-port``. Without a build
  (``file_name=None``) it listens on 5004 and waits for Play to be pressed in the Unity Editor.
* Handshake: the game's call #1 carries ``rl_initialization_output`` (its package and API versions); the reply
  carries ``rl_initialization_input`` (seed, API version, our package version, capabilities, number of areas).
  The game's call #2 is then held unanswered: its answer is the first :meth:`UnityConnection.reset`.
* Each :meth:`~UnityConnection.reset` / :meth:`~UnityConnection.step` answers the held call (with RESET or
  STEP and the queued side-channel messages) and waits for the game's next output, which it decodes.
  Actions are matched *by position* to each behaviour's decision agents of the previous output.
* :meth:`~UnityConnection.close` answers the held call with ``header.status=400`` (the game quits), stops the
  server and reaps the process.
* A game that quits on its own (Play stopped, ``Application.Quit``) sends a bare ``header.status=400``
  exchange; it is answered at once and the wait raises :class:`UnityClosedError`.

Every wait polls the game process every 0.2 s and has a deadline: a dead process raises
:class:`UnityProcessExitedError` (exit code, log tail), a silent one :class:`UnityTimeoutError`.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import re
import types
from collections.abc import Mapping, Sequence
from pathlib import Path

from google.protobuf.message import DecodeError

from unimarl.bridge.decode import NAN_POLICIES, decode_output, floats_hwc_under_chw, visual_layout_for
from unimarl.bridge.encode import encode_actions
from unimarl.bridge.errors import (
    BridgeError,
    IncompatibleVersionError,
    ProtocolError,
    UnityClosedError,
    UnityProcessExitedError,
    UnityTimeoutError,
)
from unimarl.bridge.launcher import GameProcess, launch
from unimarl.bridge.server import ExchangeServer, close_message
from unimarl.bridge.side_channels import SideChannel, SideChannelManager, StatsSideChannel
from unimarl.bridge.spec import ActionTuple, BehaviorSpec, GameOutput
from unimarl.protos import (
    API_VERSION,
    BrainParametersProto,
    CommandProto,
    UnityMessageProto,
    UnityRLInputProto,
    all_capabilities,
)

logger = logging.getLogger(__name__)

EDITOR_PORT = 5004
_POLL_INTERVAL_S = 0.2
_CLOSE_GRACE_S = 10.0


def package_version() -> str:
    """unimarl's version, sent to the game in the handshake."""
    try:
        return importlib.metadata.version("unimarl")
    except importlib.metadata.PackageNotFoundError:
        return "0.0.0"


def check_api_compatible(unity_api_version: str, trainer_api_version: str = API_VERSION) -> None:
    """ML-Agents' version rule: Unity major 0 -> majors and minors must match; otherwise majors must match."""
    versions = []
    for label, text in (("game", unity_api_version), ("trainer", trainer_api_version)):
        match = re.match(r"^\s*(\d+)\.(\d+)", text)
        if match is None:
            raise IncompatibleVersionError(
                f"cannot parse the {label}'s communication API version {text!r}; expected 'major.minor.patch'"
            )
        versions.append((int(match[1]), int(match[2])))
    (u_major, u_minor), (t_major, t_minor) = versions
    compatible = u_major == t_major and (u_major != 0 or u_minor == t_minor)
    if not compatible:
        raise IncompatibleVersionError(
            f"the game speaks communication API {unity_api_version} but this trainer speaks "
            f"{trainer_api_version}; they are not compatible (majors must match, and minors too for 0.x). "
            "Use a com.unity.ml-agents package that speaks API 1.x (release 10 or later)."
        )


class UnityConnection:
    """A connection to one game; see the module docstring for the protocol it follows."""

    def __init__(
        self,
        file_name: str | os.PathLike | None = None,
        *,
        port: int | None = None,
        host: str = "127.0.0.1",
        seed: int = 0,
        num_areas: int = 1,
        no_graphics: bool = True,
        timeout: float = 60.0,
        additional_args: Sequence[str] = (),
        log_dir: str | os.PathLike | None = None,
        side_channels: Sequence[SideChannel] = (),
        nan_policy: str = "raise",
        max_message_bytes: int = 256 * 2**20,
        worker_id: int = 0,
    ) -> None:
        if nan_policy not in NAN_POLICIES:
            raise ValueError(f"nan_policy must be one of {NAN_POLICIES}, got {nan_policy!r}")
        self.file_name = file_name
        self.port = port if port is not None else (EDITOR_PORT if file_name is None else 0)
        self.host = host
        self.seed = seed
        self.num_areas = num_areas
        self.no_graphics = no_graphics
        self.timeout = timeout
        self.additional_args = tuple(additional_args)
        self.log_dir = log_dir
        self.nan_policy = nan_policy
        self._nan_warned: set[tuple[str, str]] = set()  # "warn": once per behaviour/observation of this game
        self.worker_id = worker_id
        self.stats = StatsSideChannel()
        self._side_channels = SideChannelManager([self.stats, *side_channels])
        self._server = ExchangeServer(port=self.port, host=host, max_message_bytes=max_message_bytes)
        self._specs: dict[str, BehaviorSpec] = {}
        self._n_decisions: dict[str, int] = {}
        self._pending_brains: list[BrainParametersProto] = []
        self.process: GameProcess | None = None
        self.unity_package_version = ""
        self.unity_api_version = ""
        self.visual_layout = "CHW"
        self.hwc_floats = False
        """The game writes rank-3 floats H, W, C under a [C, H, W] shape (packages 3.0.0-4.0.0)."""
        self._opened = False
        self._closed = False

    @property
    def behavior_specs(self) -> Mapping[str, BehaviorSpec]:
        """Specs of every behaviour seen so far (grows as behaviours appear); read-only."""
        return types.MappingProxyType(self._specs)

    @property
    def log_path(self) -> Path | None:
        return self.process.log_path if self.process is not None else None

    def __enter__(self) -> UnityConnection:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> None:
        """Bind, launch the build (if any), and perform the handshake. On failure everything is closed."""
        if self._closed:
            raise BridgeError("this UnityConnection was closed; create a new one")
        if self._opened:
            return
        try:
            self.port = self._server.start()
            if self.file_name is not None:
                self.process = launch(
                    self.file_name,
                    self.port,
                    no_graphics=self.no_graphics,
                    log_dir=self.log_dir,
                    worker_id=self.worker_id,
                    additional_args=self.additional_args,
                )
            else:
                logger.info("Listening on port %d: press Play in the Unity Editor", self.port)
            self._handshake()
        except BaseException:
            self.close()
            raise
        self._opened = True

    def _handshake(self) -> None:
        first = self._receive_message("the handshake (call #1)")
        if not first.unity_output.HasField("rl_initialization_output"):
            raise ProtocolError(
                "the game's first message has no rl_initialization_output; is the client an ML-Agents game "
                f"speaking API {API_VERSION}? Got: {_summary(first)}"
            )
        init = first.unity_output.rl_initialization_output
        self.unity_api_version = init.communication_version
        self.unity_package_version = init.package_version
        check_api_compatible(init.communication_version)
        # Every package since API 1.0 sends its version; an empty one is treated as the current layout.
        self.visual_layout = visual_layout_for(init.package_version or "3.0.0")
        self.hwc_floats = floats_hwc_under_chw(init.package_version)
        if init.HasField("capabilities") and not init.capabilities.baseRLCapabilities:
            logger.warning("the game reports baseRLCapabilities=false; training may not work as expected")
        self._pending_brains = list(init.brain_parameters)
        logger.info(
            "connected to %s: package %s, communication API %s (visual layout %s)",
            self._who(),
            init.package_version,
            init.communication_version,
            self.visual_layout,
        )
        self._server.reply(self._init_reply().SerializeToString())
        self._receive_message("the handshake (call #2)")

    def _init_reply(self) -> UnityMessageProto:
        reply = UnityMessageProto()
        reply.header.status = 200
        init_in = reply.unity_input.rl_initialization_input
        init_in.seed = self.seed
        init_in.communication_version = API_VERSION
        init_in.package_version = package_version()
        init_in.num_areas = self.num_areas
        init_in.capabilities.CopyFrom(all_capabilities())
        return reply

    def reset(self) -> GameOutput:
        """Reset the game (with the queued side-channel messages) and return its first output."""
        return self._exchange(UnityRLInputProto(command=CommandProto.RESET), "reset")

    def step(self, actions: Mapping[str, ActionTuple]) -> GameOutput:
        """Send one step of actions (rows in the order of the previous output's decision agents)."""
        self._require_open("step")
        rl_input = encode_actions(actions, self._specs, self._n_decisions)
        rl_input.command = CommandProto.STEP
        return self._exchange(rl_input, "step")

    def _exchange(self, rl_input: UnityRLInputProto, what: str) -> GameOutput:
        self._require_open(what)
        rl_input.side_channel = self._side_channels.encode_outgoing()
        reply = UnityMessageProto()
        reply.header.status = 200
        reply.unity_input.rl_input.CopyFrom(rl_input)
        self._server.reply(reply.SerializeToString())
        message = self._receive_message(f"the output after {what}")
        if not message.unity_output.HasField("rl_output"):
            raise ProtocolError(f"the game's output after {what} has no rl_output: {_summary(message)}")
        brains = list(message.unity_output.rl_initialization_output.brain_parameters)
        brains, self._pending_brains = self._pending_brains + brains, []
        rl_output = message.unity_output.rl_output
        # side channels first: stats and policy acknowledgements survive an observation the decoder rejects
        self._side_channels.process_incoming(bytes(rl_output.side_channel))
        output = decode_output(
            rl_output,
            brains,
            self._specs,
            visual_layout=self.visual_layout,
            nan_policy=self.nan_policy,
            warned=self._nan_warned,
            hwc_floats=self.hwc_floats,
        )
        self._specs.update(output.new_specs)
        self._n_decisions = {name: len(steps.decision) for name, steps in output.steps.items()}
        return output

    def _require_open(self, what: str) -> None:
        if self._closed:
            raise BridgeError(f"cannot {what}: the connection to {self._who()} is closed")
        if not self._opened:
            raise BridgeError(
                f"cannot {what}: call open() first (or use the connection as a context manager)"
            )
        if not self._server.has_pending_call:
            raise ProtocolError(f"cannot {what}: no call from the game is waiting (an earlier step failed?)")

    def _receive_message(self, what: str) -> UnityMessageProto:
        data = self._server.receive(self.timeout, check=self._check_process, poll_interval=_POLL_INTERVAL_S)
        if data is None:
            raise UnityTimeoutError(self._timeout_message(what))
        try:
            message = UnityMessageProto.FromString(data)
        except DecodeError as e:
            raise ProtocolError(
                f"{self._who()} sent {len(data)} bytes during {what} that are not a UnityMessageProto ({e}); "
                f"is it an ML-Agents game speaking API {API_VERSION}? First bytes: {data[:32]!r}"
            ) from e
        if message.header.status != 200:
            # Unity's Academy.Dispose (on quit, or when Play stops) sends a bare header-400 exchange and
            # ignores the answer (RpcCommunicator.cs:269-285): answer it at once so the game can exit.
            self._server.reply(close_message("the game closed the connection"))
            raise UnityClosedError(
                f"{self._who()} sent header.status={message.header.status} ({message.header.message!r}) "
                f"during {what}: the game closed its side (Play stopped, or it quit). Open a new connection."
            )
        return message

    def _check_process(self) -> None:
        if self.process is None:
            return
        code = self.process.poll()
        if code is not None:
            raise UnityProcessExitedError(
                f"the game process {self._who()} exited with code {code} (log: {self.process.log_path}).\n"
                f"{self.process.log_tail()}"
            )

    def _who(self) -> str:
        if self.process is not None:
            return f"pid {self.process.pid} ({self.process.build_path})"
        return "Unity Editor" if self.file_name is None else str(self.file_name)

    def _timeout_message(self, what: str) -> str:
        if self.file_name is None:
            causes = (
                "Play was not pressed in the Unity Editor, or the Editor's ML-Agents port setting is not "
                f"{self.port}, or a breakpoint paused the game"
            )
        else:
            causes = (
                "the build crashed or froze while loading, it was not built with ML-Agents, it has no agents "
                "requesting decisions, or the machine is too loaded (raise timeout)"
            )
        log = f"log: {self.process.log_path}" if self.process is not None else "no log file"
        message = (
            f"{self._who()} sent nothing on port {self.port} during {what} within {self.timeout} s ({log}). "
            f"Likely causes: {causes}."
        )
        return message if self.process is None else f"{message}\n{self.process.log_tail()}"

    def close(self, grace: float | None = None) -> None:
        """Tell the game to quit (status 400 / QUIT), stop the server, reap the process (waiting ``grace`` s
        for it to exit before ending it; default: the timeout, at most 10 s). Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._server.has_pending_call:
            quit_message = UnityMessageProto.FromString(close_message())
            quit_message.unity_input.rl_input.command = CommandProto.QUIT
            try:
                self._server.reply(quit_message.SerializeToString())
            except ProtocolError as e:
                logger.debug("could not send quit to the game: %s", e)
        self._server.close()
        if self.process is not None:
            wait = min(self.timeout, _CLOSE_GRACE_S) if grace is None else grace
            code = self.process.terminate(grace=wait)
            logger.debug("game pid %d exited with code %s", self.process.pid, code)


def _summary(message: UnityMessageProto) -> str:
    text = str(message).replace("\n", " ")
    return text[:200] + ("..." if len(text) > 200 else "")
