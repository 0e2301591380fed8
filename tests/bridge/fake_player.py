"""A scripted stand-in for a Unity player, speaking the ML-Agents communicator over real gRPC.

It dials ``localhost:PORT`` like Unity's ``RpcCommunicator``: call #1 carries ``rl_initialization_output``
(package and API versions), call #2 an empty output, and each later call the next scripted output, until the
trainer answers with a non-200 status. Every trainer reply is recorded in ``FakePlayer.inputs``.

Runs in a thread (``FakePlayer(...).start()``) or as a process, the way a build is launched::

    python tests/bridge/fake_player.py -batchmode -nographics --mlagents-port 5005 -logFile Player-0.log

``write_build(folder)`` wraps it as an executable ``Fake.x86_64`` so the launcher is exercised for real.
"""

from __future__ import annotations

import argparse
import logging
import os
import stat
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import grpc

from unimarl.protos import (
    EXCHANGE_METHOD,
    AgentInfoProto,
    BrainParametersProto,
    ObservationProto,
    UnityInputProto,
    UnityMessageProto,
)

logger = logging.getLogger("fake_player")
_MAX_BYTES = 256 * 2**20


def empty_output(side_channel: bytes = b"") -> bytes:
    """A status-200 message with an rl_output holding no agents (and optional side-channel bytes)."""
    message = UnityMessageProto()
    message.header.status = 200
    message.unity_output.rl_output.side_channel = side_channel
    return message.SerializeToString()


def agent_output(
    behavior: str, n_agents: int, obs_size: int, *, announce: bool, side_channel: bytes = b""
) -> bytes:
    """An output with ``n_agents`` decision agents of one behaviour (1 continuous action, vector obs)."""
    message = UnityMessageProto()
    message.header.status = 200
    rl_output = message.unity_output.rl_output
    rl_output.side_channel = side_channel
    infos = rl_output.agentInfos[behavior].value
    for agent_id in range(n_agents):
        obs = ObservationProto(shape=[obs_size], dimension_properties=[1])
        obs.float_data.data.extend(float(agent_id) for _ in range(obs_size))
        infos.append(AgentInfoProto(reward=0.5, id=agent_id, observations=[obs]))
    if announce:
        brain = BrainParametersProto(brain_name=behavior, is_training=True)
        brain.action_spec.num_continuous_actions = 1
        message.unity_output.rl_initialization_output.brain_parameters.append(brain)
    return message.SerializeToString()


class FakePlayer:
    """One scripted game session; see the module docstring."""

    def __init__(
        self,
        port: int,
        *,
        package_version: str = "3.0.0",
        api_version: str = "1.5.0",
        outputs: Sequence[bytes] = (),
        first_message: bytes | None = None,
        exit_after_handshake: bool = False,
        silent_after_inputs: int | None = None,
        call_timeout: float = 30.0,
    ) -> None:
        self.port = port
        self.package_version = package_version
        self.api_version = api_version
        self.outputs = list(outputs)
        self.first_message = first_message
        self.exit_after_handshake = exit_after_handshake
        self.silent_after_inputs = silent_after_inputs
        self.call_timeout = call_timeout
        self.inputs: list[UnityMessageProto] = []
        self.error: BaseException | None = None
        self.stop_event = threading.Event()
        self._thread: threading.Thread | None = None

    def handshake_message(self) -> bytes:
        message = UnityMessageProto()
        message.header.status = 200
        init = message.unity_output.rl_initialization_output
        init.name = "AcademySingleton"
        init.package_version = self.package_version
        init.communication_version = self.api_version
        for field in init.capabilities.DESCRIPTOR.fields:
            setattr(init.capabilities, field.name, True)
        return message.SerializeToString()

    def run(self) -> None:
        """Play the script; returns when the trainer closes, the script ends, or ``stop_event`` is set."""
        options = [
            ("grpc.max_receive_message_length", _MAX_BYTES),
            ("grpc.max_send_message_length", _MAX_BYTES),
        ]
        with grpc.insecure_channel(f"localhost:{self.port}", options=options) as channel:
            exchange = channel.unary_unary(EXCHANGE_METHOD)
            if not self._wait_ready(channel):
                return
            reply = self._call(exchange, self.first_message or self.handshake_message())
            if self.exit_after_handshake or reply is None or reply.header.status != 200:
                return
            reply = self._call(exchange, UnityMessageProto(header={"status": 200}).SerializeToString())
            outputs = iter(self.outputs)
            while reply is not None and not self.stop_event.is_set():
                if reply.header.status != 200:
                    logger.info("trainer closed the connection: status %d", reply.header.status)
                    return
                if self.silent_after_inputs is not None and len(self.inputs) >= self.silent_after_inputs:
                    logger.info("going silent after %d inputs", len(self.inputs))
                    self.stop_event.wait()
                    return
                reply = self._call(exchange, next(outputs, None) or empty_output())

    def _wait_ready(self, channel: grpc.Channel) -> bool:
        """Wait for the trainer's server like Unity does; gives up on ``stop_event`` or the timeout."""
        ready = grpc.channel_ready_future(channel)
        deadline = time.monotonic() + self.call_timeout
        while not self.stop_event.is_set() and time.monotonic() < deadline:
            try:
                ready.result(timeout=0.1)
                return True
            except grpc.FutureTimeoutError:
                continue
        ready.cancel()
        return False

    def _call(self, exchange: grpc.UnaryUnaryMultiCallable, data: bytes) -> UnityMessageProto | None:
        try:
            raw = exchange(data, timeout=self.call_timeout)
        except grpc.RpcError as e:
            logger.info("exchange failed: %s", e.code())
            return None
        reply = UnityMessageProto.FromString(raw)
        self.inputs.append(reply)
        logger.info("received status %d, %s", reply.header.status, _describe(reply.unity_input))
        return reply

    def start(self) -> FakePlayer:
        """Run in a daemon thread; errors are kept in ``error``."""

        def target() -> None:
            try:
                self.run()
            except BaseException as e:
                self.error = e

        self._thread = threading.Thread(target=target, name="fake-player", daemon=True)
        self._thread.start()
        return self

    def join(self, timeout: float = 10.0) -> None:
        self.stop_event.set()
        if self._thread is not None:
            self._thread.join(timeout)


def _describe(unity_input: UnityInputProto) -> str:
    if unity_input.HasField("rl_initialization_input"):
        return "rl_initialization_input"
    if unity_input.HasField("rl_input"):
        return f"rl_input command={unity_input.rl_input.command}"
    return "no input"


def write_build(folder: Path, *extra_args: str, name: str = "Fake") -> Path:
    """An executable ``<name>.x86_64`` in ``folder`` that execs this script with ``extra_args``."""
    folder.mkdir(parents=True, exist_ok=True)
    exe = folder / f"{name}.x86_64"
    args = " ".join(f"'{a}'" for a in extra_args)
    exe.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{Path(__file__).resolve()}" {args} "$@"\n')
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return exe


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mlagents-port", type=int, required=True)
    parser.add_argument("-logFile", dest="log_file", default=None)
    parser.add_argument("-batchmode", action="store_true")
    parser.add_argument("-nographics", action="store_true")
    parser.add_argument("--package-version", default="3.0.0")
    parser.add_argument("--api-version", default="1.5.0")
    parser.add_argument("--exit-code", type=int, default=None, help="exit with this code after the handshake")
    parser.add_argument("--ignore-close", action="store_true", help="keep running after a 400 reply")
    args = parser.parse_args(argv)
    logging.basicConfig(
        filename=args.log_file, level=logging.INFO, format="%(asctime)s fake_player: %(message)s", force=True
    )
    logger.info("started pid %d with %s", os.getpid(), sys.argv[1:])
    player = FakePlayer(
        args.mlagents_port,
        package_version=args.package_version,
        api_version=args.api_version,
        exit_after_handshake=args.exit_code is not None,
    )
    player.run()
    if args.exit_code is not None:
        logger.error("fatal: scripted crash with exit code %d", args.exit_code)
        return args.exit_code
    if args.ignore_close:
        logger.info("ignoring the close request")
        time.sleep(600)
    logger.info("exiting normally")
    return 0


if __name__ == "__main__":
    sys.exit(main())
