"""The Exchange server: loopback unless asked otherwise (then a warning naming the address), and gRPC's
message limit enforced in both directions."""

from __future__ import annotations

import logging
from concurrent import futures

import grpc
import pytest

from unimarl.bridge import PortInUseError
from unimarl.bridge.server import ExchangeServer, is_loopback
from unimarl.protos import EXCHANGE_METHOD

_BIG = 256 * 2**20


def _client_call(port: int, data: bytes, timeout: float = 10.0) -> futures.Future:
    """Call Exchange as the game does, from a client that itself accepts messages up to 256 MiB."""
    pool = futures.ThreadPoolExecutor(max_workers=1)

    def call() -> bytes:
        options = [("grpc.max_receive_message_length", _BIG), ("grpc.max_send_message_length", _BIG)]
        with grpc.insecure_channel(f"127.0.0.1:{port}", options=options) as channel:
            return channel.unary_unary(EXCHANGE_METHOD)(data, timeout=timeout)

    future = pool.submit(call)
    pool.shutdown(wait=False)
    return future


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),  # all of 127.0.0.0/8 is loopback (RFC 1122 3.2.1.3)
        ("localhost", True),
        ("LOCALHOST", True),
        ("::1", True),
        ("[::1]", True),
        ("0.0.0.0", False),  # every interface
        ("::", False),
        ("192.168.1.10", False),
        ("gpu-node-3", False),  # a name may resolve to any interface
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_default_server_is_on_loopback_and_silent(caplog: pytest.LogCaptureFixture) -> None:
    server = ExchangeServer()
    with caplog.at_level(logging.WARNING, logger="unimarl.bridge.server"):
        server.start()
    try:
        assert server.host == "127.0.0.1"
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    finally:
        server.close(grace=0.1)


def test_non_loopback_bind_request_logs_a_warning_naming_it(caplog: pytest.LogCaptureFixture) -> None:
    # 192.0.2.1 is TEST-NET-1 (RFC 5737): never a local address, so nothing gets exposed; the bind fails
    # after the warning.
    server = ExchangeServer(host="192.0.2.1")
    with caplog.at_level(logging.WARNING, logger="unimarl.bridge.server"), pytest.raises(PortInUseError):
        server.start()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "192.0.2.1" in warnings[0] and "127.0.0.1" in warnings[0], warnings


def test_over_limit_request_is_refused_before_the_trainer_sees_it() -> None:
    server = ExchangeServer(max_message_bytes=1024)
    server.start()
    try:
        future = _client_call(server.port, b"x" * 2048)
        with pytest.raises(grpc.RpcError) as info:
            future.result(timeout=10)
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert server.receive(timeout=0.3) is None  # nothing was queued for the trainer
    finally:
        server.close(grace=0.1)


def test_over_limit_reply_is_refused() -> None:
    server = ExchangeServer(max_message_bytes=1024)
    server.start()
    try:
        future = _client_call(server.port, b"small")
        assert server.receive(timeout=10) == b"small"
        server.reply(b"y" * 2048)
        with pytest.raises(grpc.RpcError) as info:
            future.result(timeout=10)
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    finally:
        server.close(grace=0.1)


def test_default_limit_is_256_mib() -> None:
    assert ExchangeServer().max_message_bytes == 256 * 2**20
