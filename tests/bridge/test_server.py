"""ExchangeServer: raw-bytes handoff between gRPC's handler and the trainer, ports, limits, close."""

from __future__ import annotations

import socket
import threading
import time
from concurrent import futures

import grpc
import pytest

from unimarl.bridge import BridgeError, PortInUseError, ProtocolError
from unimarl.bridge.server import ExchangeServer
from unimarl.protos import EXCHANGE_METHOD, UnityMessageProto

_BIG = 256 * 2**20


def _client_call(port: int, data: bytes, timeout: float = 10.0) -> futures.Future:
    """Call Exchange from a background thread, the way the game does; the future holds the reply bytes."""
    pool = futures.ThreadPoolExecutor(max_workers=1)

    def call() -> bytes:
        options = [("grpc.max_receive_message_length", _BIG), ("grpc.max_send_message_length", _BIG)]
        with grpc.insecure_channel(f"localhost:{port}", options=options) as channel:
            return channel.unary_unary(EXCHANGE_METHOD)(data, timeout=timeout)

    future = pool.submit(call)
    pool.shutdown(wait=False)
    return future


@pytest.fixture
def server():
    srv = ExchangeServer()
    srv.start()
    yield srv
    srv.close(grace=0.1)


def test_ephemeral_port_and_raw_bytes_round_trip(server: ExchangeServer) -> None:
    assert server.port > 0
    future = _client_call(server.port, b"\x00raw request\xff")
    assert server.receive(timeout=10) == b"\x00raw request\xff"
    assert server.has_pending_call
    server.reply(b"raw reply")
    assert future.result(timeout=10) == b"raw reply"
    assert not server.has_pending_call


def test_messages_over_4mb_pass_both_ways(server: ExchangeServer) -> None:
    request = bytes(range(256)) * (5 * 2**20 // 256 + 1)
    future = _client_call(server.port, request)
    assert server.receive(timeout=20) == request
    server.reply(request[::-1])
    assert future.result(timeout=20) == request[::-1]


def test_limit_is_configurable() -> None:
    small = ExchangeServer(max_message_bytes=1024)
    small.start()
    try:
        future = _client_call(small.port, b"x" * 4096)
        with pytest.raises(grpc.RpcError) as info:
            future.result(timeout=10)
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    finally:
        small.close(grace=0.1)


def test_receive_times_out_and_polls_check(server: ExchangeServer) -> None:
    calls = []
    assert server.receive(timeout=0.5, check=lambda: calls.append(1), poll_interval=0.05) is None
    assert len(calls) >= 5


def test_check_can_abort_the_wait(server: ExchangeServer) -> None:
    def check() -> None:
        raise RuntimeError("process died")

    with pytest.raises(RuntimeError, match="process died"):
        server.receive(timeout=10, check=check)


def test_reply_without_a_call_is_an_error(server: ExchangeServer) -> None:
    with pytest.raises(ProtocolError, match="no call from the game is waiting"):
        server.reply(b"x")


def test_close_answers_pending_and_queued_calls_with_400(server: ExchangeServer) -> None:
    first = _client_call(server.port, b"one")
    assert server.receive(timeout=10) == b"one"
    second = _client_call(server.port, b"two")  # queued, never received by the trainer
    deadline = time.monotonic() + 10
    while server._incoming.qsize() < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    server.close(reason="bye")
    for future in (first, second):
        reply = UnityMessageProto.FromString(future.result(timeout=10))
        assert (reply.header.status, reply.header.message) == (400, "bye")
    server.close()  # idempotent


def test_expired_call_is_told_to_quit_and_late_reply_fails() -> None:
    srv = ExchangeServer(reply_timeout=0.3)
    srv.start()
    try:
        future = _client_call(srv.port, b"req")
        assert srv.receive(timeout=10) == b"req"
        assert UnityMessageProto.FromString(future.result(timeout=10)).header.status == 400
        with pytest.raises(ProtocolError, match=r"expired after reply_timeout=0\.3"):
            srv.reply(b"late")
    finally:
        srv.close(grace=0.1)


def test_port_in_use_is_detected() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(PortInUseError, match=f"port {port} on 127.0.0.1 is in use"):
            ExchangeServer(port=port).start()


def test_port_taken_by_another_server_is_detected(server: ExchangeServer) -> None:
    with pytest.raises(PortInUseError, match=str(server.port)):
        ExchangeServer(port=server.port).start()


def test_close_from_another_thread_ends_a_waiting_receive(server: ExchangeServer) -> None:
    closer = threading.Timer(0.2, server.close)
    closer.start()
    with pytest.raises(BridgeError, match="closed while waiting"):
        server.receive(timeout=10)
    closer.join(5)


def test_a_queued_call_is_returned_before_check_runs(server: ExchangeServer) -> None:
    future = _client_call(server.port, b"last words")
    deadline = time.monotonic() + 10
    while server._incoming.qsize() < 1 and time.monotonic() < deadline:
        time.sleep(0.01)

    def check() -> None:
        raise RuntimeError("the game exited after sending")

    assert server.receive(timeout=10, check=check) == b"last words"  # nothing the game sent is lost
    server.reply(b"ok")
    assert future.result(timeout=10) == b"ok"
    with pytest.raises(RuntimeError, match="exited after sending"):
        server.receive(timeout=10, check=check, poll_interval=0.05)
