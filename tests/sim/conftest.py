"""A tiny trainer-side gRPC server for driving sim games over the real wire (no unimarl.bridge).

``FakeTrainer`` binds 127.0.0.1 on an ephemeral port and hands each Exchange request to the test, which
answers it explicitly; ``launch`` starts a sim process the way a worker starts a player build.
"""

from __future__ import annotations

import queue
import subprocess
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import grpc
import numpy as np
import pytest

from unimarl.protos import AgentActionProto, CommandProto, UnityMessageProto
from unimarl.protos.sidechannel import frame

WAIT_S = 20.0


class FakeTrainer:
    """Trainer side of the Exchange RPC; the test reads each request and decides the reply."""

    def __init__(self) -> None:
        self.requests: queue.Queue[bytes] = queue.Queue()
        self.replies: queue.Queue[bytes] = queue.Queue()
        self.server = grpc.server(ThreadPoolExecutor(max_workers=4))
        method = grpc.unary_unary_rpc_method_handler(self._exchange)
        handler = grpc.method_handlers_generic_handler(
            "communicator_objects.UnityToExternalProto", {"Exchange": method}
        )
        self.server.add_generic_rpc_handlers((handler,))
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    def _exchange(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        self.requests.put(request)
        return self.replies.get(timeout=WAIT_S)

    def receive_raw(self, timeout: float = WAIT_S) -> bytes:
        return self.requests.get(timeout=timeout)

    def receive(self, timeout: float = WAIT_S) -> UnityMessageProto:
        message = UnityMessageProto()
        message.ParseFromString(self.receive_raw(timeout))
        return message

    def send(self, message: UnityMessageProto) -> None:
        self.replies.put(message.SerializeToString())

    def handshake(self, seed: int = 0, num_areas: int = 1) -> tuple[UnityMessageProto, UnityMessageProto]:
        """Answer call #1 with the initialization input; return (call #1, call #2)."""
        first = self.receive()
        reply = UnityMessageProto()
        reply.header.status = 200
        init = reply.unity_input.rl_initialization_input
        init.seed, init.num_areas, init.communication_version = seed, num_areas, "1.5.0"
        self.send(reply)
        return first, self.receive()

    def command(
        self,
        command: int,
        actions: dict[str, list[AgentActionProto]] | None = None,
        side_channel: bytes = b"",
    ) -> None:
        message = UnityMessageProto()
        message.header.status = 200
        rl_input = message.unity_input.rl_input
        rl_input.command = command
        rl_input.side_channel = side_channel
        for name, values in (actions or {}).items():
            rl_input.agent_actions[name].value.extend(values)
        self.send(message)

    def reset(self, side_channel: bytes = b"") -> UnityMessageProto:
        self.command(CommandProto.RESET, side_channel=side_channel)
        return self.receive()

    def step(self, actions: dict[str, list[AgentActionProto]] | None = None) -> UnityMessageProto:
        self.command(CommandProto.STEP, actions)
        return self.receive()

    def close(self) -> None:
        bye = UnityMessageProto()
        bye.header.status = 400
        for _ in range(4):  # unblock any handler still waiting for a reply
            self.send(bye)
        self.server.stop(grace=0.5).wait(WAIT_S)


def agents(message: UnityMessageProto, behavior: str) -> list:
    """The AgentInfoProtos of ``behavior`` in an output."""
    return list(message.unity_output.rl_output.agentInfos[behavior].value)


def floats(info, index: int = 0) -> np.ndarray:
    obs = info.observations[index]
    return np.asarray(obs.float_data.data, np.float32).reshape(tuple(obs.shape))


def discrete_actions(rows: list[list[int]]) -> list[AgentActionProto]:
    return [AgentActionProto(discrete_actions=row) for row in rows]


def float_parameter(key: str, value: float) -> bytes:
    """EnvironmentParameters side-channel bytes setting ``key`` to ``value``."""
    import struct
    import uuid

    payload = struct.pack("<i", len(key)) + key.encode() + struct.pack("<if", 0, value)
    return frame([(uuid.UUID("534c891e-810f-11ea-a9d0-822485860400"), payload)])


@pytest.fixture
def trainer() -> Iterator[FakeTrainer]:
    server = FakeTrainer()
    yield server
    server.close()


@pytest.fixture
def launch(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen]]:
    """Start ``python -m unimarl.sim GAME --mlagents-port PORT -logFile LOG *flags``; killed at teardown."""
    started: list[subprocess.Popen] = []

    def start(game: str, port: int, *flags: str, command: list[str] | None = None) -> subprocess.Popen:
        log = tmp_path / f"{game}-{len(started)}.log"
        base = command or [sys.executable, "-m", "unimarl.sim", game]
        args = [
            *base,
            "--mlagents-port",
            str(port),
            "-batchmode",
            "-nographics",
            "-logFile",
            str(log),
            *flags,
        ]
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        proc.log_path = log  # type: ignore[attr-defined]
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=WAIT_S)
        proc.stdout.close()  # type: ignore[union-attr]
        proc.stderr.close()  # type: ignore[union-attr]


@pytest.fixture
def wire() -> SimpleNamespace:
    """Helpers for reading outputs and building inputs (test modules cannot import conftest)."""
    return SimpleNamespace(
        agents=agents, floats=floats, discrete_actions=discrete_actions, float_parameter=float_parameter
    )


@pytest.fixture
def make_trainer() -> Iterator[Callable[[], FakeTrainer]]:
    """Factory for extra trainers (closed at teardown)."""
    made: list[FakeTrainer] = []

    def make() -> FakeTrainer:
        made.append(FakeTrainer())
        return made[-1]

    yield make
    for server in made:
        server.close()
