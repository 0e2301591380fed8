"""The gRPC server the game dials: one unary method, raw bytes, handed between two threads.

Unity's communicator is *synchronous*: the game calls ``Exchange(UnityMessage)`` and blocks until the
trainer's reply, which carries the next input (actions, reset, quit). gRPC runs the handler on one of its
worker threads; the trainer runs on its own thread. :class:`ExchangeServer` joins the two with a queue
handoff:

* the handler puts the request on a queue and waits for the trainer's reply (up to ``reply_timeout``);
* the trainer takes the request with :meth:`ExchangeServer.receive` (up to its own timeout, calling a check
  function whenever ``poll_interval`` seconds pass without a call, so a dead game is noticed) and later
  answers it with :meth:`ExchangeServer.reply`;
* :meth:`ExchangeServer.close` answers every waiting call with ``header.status=400`` (Unity quits on a
  non-200 reply), so neither side is left blocked.

The handler has no (de)serializer: requests and replies are raw bytes and parsing errors are the trainer's to
report with context. The server binds 127.0.0.1 unless told otherwise (any other host is logged as a warning
naming it: the server is plain, unauthenticated gRPC), port 0 picks a free port, and ``grpc.so_reuseport`` is
off so a taken port is an error instead of two servers sharing it.

Speed: each step costs two cross-thread wakeups (handler -> trainer, trainer -> handler), so both use the
leanest primitives CPython has (a C ``SimpleQueue`` and a bare lock per call, no ``Condition``), and
``check`` (a ``waitpid`` for a launched game, which releases the GIL) runs only when a wait times out, not
before every call. A ``grpc.aio`` server run inside :meth:`~ExchangeServer.receive` on the trainer's thread
avoids the handoff, but side by side with a trivial trainer it was no faster beyond run-to-run noise
(+-15%), and it would answer an expired call only while the trainer happens to be inside ``receive``.

Message limits: gRPC refuses messages over 4 MB by default, which a single batch of camera observations
exceeds (84x84 RGB float observations for 50 agents are ~4.2 MB). Both directions are raised to
``max_message_bytes`` (256 MiB by default); a larger message is refused by gRPC with ``RESOURCE_EXHAUSTED``
before it reaches the trainer, so one call cannot hand the trainer more than that.
"""

from __future__ import annotations

import ipaddress
import logging
import queue
import socket
import threading
import time
from collections.abc import Callable
from concurrent import futures
from typing import Any

import grpc

from unimarl.bridge.errors import BridgeError, PortInUseError, ProtocolError
from unimarl.protos import EXCHANGE_METHOD, UnityMessageProto

logger = logging.getLogger(__name__)

DEFAULT_MAX_MESSAGE_BYTES = 256 * 2**20
#: How long a game's call waits for the trainer's reply before it is answered with status 400.
DEFAULT_REPLY_TIMEOUT_S = 3600.0

_SERVICE, _METHOD = EXCHANGE_METHOD.strip("/").split("/")


def close_message(reason: str = "trainer closed the connection") -> bytes:
    """The reply that tells the game to quit: ``header.status=400``."""
    message = UnityMessageProto()
    message.header.status = 400
    message.header.message = reason
    return message.SerializeToString()


class _PendingCall:
    """One call of the game waiting for its reply; answered exactly once (by the trainer or on close)."""

    __slots__ = ("_done", "_ready", "_state", "reply", "request")

    def __init__(self, request: bytes) -> None:
        self.request = request
        self.reply: bytes | None = None
        self._done = False
        self._state = threading.Lock()  # guards _done
        self._ready = threading.Lock()  # held until the reply is set: the handler blocks on it
        self._ready.acquire()

    def answer(self, reply: bytes) -> bool:
        """Set the reply; False if the call was already answered or expired."""
        with self._state:
            if self._done:
                return False
            self.reply, self._done = reply, True
        self._ready.release()
        return True

    def wait(self, timeout: float) -> bytes | None:
        """The reply, or None (and the call marked expired) once ``timeout`` passes."""
        if self._ready.acquire(timeout=timeout):
            return self.reply
        with self._state:
            if self._done:  # answered between the timeout and now
                return self.reply
            self._done = True
            return None


def is_loopback(host: str) -> bool:
    """True when ``host`` is reachable only from this machine: ``localhost`` or a loopback IP (127/8, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name other than localhost may resolve to any interface
        return False


def check_port_free(host: str, port: int) -> None:
    """Raise :class:`PortInUseError` if ``host:port`` cannot be bound (plain socket test, like ML-Agents)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError as e:
            raise PortInUseError(
                f"port {port} on {host} is in use ({e.strerror}); close the other trainer or game using it, "
                "or pass another port (a build can use port=None for a free one)"
            ) from e


class _DaemonThreadPool(futures.Executor):
    """A fixed pool of daemon threads for gRPC's handlers.

    A handler holds the game's call until the trainer replies (up to ``reply_timeout``, an hour by default).
    ``concurrent.futures.ThreadPoolExecutor`` threads are joined at interpreter exit, so a trainer that exits
    without closing its env would hang there for as long; daemon threads do not hold up the exit.
    """

    def __init__(self, max_workers: int, thread_name_prefix: str) -> None:
        self._work: queue.SimpleQueue[tuple[futures.Future, Callable[..., Any], tuple, dict] | None] = (
            queue.SimpleQueue()
        )
        self._threads = [
            threading.Thread(target=self._run, name=f"{thread_name_prefix}_{i}", daemon=True)
            for i in range(max_workers)
        ]
        for thread in self._threads:
            thread.start()

    def _run(self) -> None:
        while (item := self._work.get()) is not None:
            future, fn, args, kwargs = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn(*args, **kwargs))
            except BaseException as e:  # handed to the future's owner, as ThreadPoolExecutor does
                future.set_exception(e)

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> futures.Future:
        future: futures.Future = futures.Future()
        self._work.put((future, fn, args, kwargs))
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        for _ in self._threads:
            self._work.put(None)
        if wait:
            for thread in self._threads:
                thread.join()


class ExchangeServer:
    """gRPC server for ``Exchange`` with a thread handoff between gRPC's handler and the trainer."""

    def __init__(
        self,
        port: int = 0,
        host: str = "127.0.0.1",
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        reply_timeout: float = DEFAULT_REPLY_TIMEOUT_S,
    ) -> None:
        self._requested_port = port
        self.host = host
        self.max_message_bytes = max_message_bytes
        self.reply_timeout = reply_timeout
        self.port = port
        self._incoming: queue.SimpleQueue[_PendingCall] = queue.SimpleQueue()
        self._current: _PendingCall | None = None
        self._closed = threading.Event()
        self._server: grpc.Server | None = None
        self._executor: _DaemonThreadPool | None = None

    def start(self) -> int:
        """Bind and start serving; returns the port actually bound."""
        if self._server is not None:
            return self.port
        if self._closed.is_set():
            raise BridgeError("this Exchange server was closed; create a new one")
        if not is_loopback(self.host):
            logger.warning(
                "the Exchange server binds %s, which other machines can reach (plain gRPC, no "
                "authentication); bind 127.0.0.1 unless the game runs on another machine",
                self.host,
            )
        if self._requested_port != 0:
            check_port_free(self.host, self._requested_port)
        options = [
            ("grpc.so_reuseport", 0),
            ("grpc.max_receive_message_length", self.max_message_bytes),
            ("grpc.max_send_message_length", self.max_message_bytes),
        ]
        self._executor = _DaemonThreadPool(max_workers=4, thread_name_prefix="unimarl-exchange")
        server = grpc.server(self._executor, options=options)
        handler = grpc.unary_unary_rpc_method_handler(self._handle)
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(_SERVICE, {_METHOD: handler}),))
        address = f"[{self.host}]" if ":" in self.host else self.host
        try:
            bound = server.add_insecure_port(f"{address}:{self._requested_port}")
        except RuntimeError as e:
            bound = 0
            logger.debug("add_insecure_port failed: %s", e)
        if bound == 0:
            self._executor.shutdown(wait=False)
            raise PortInUseError(
                f"gRPC could not bind {self.host}:{self._requested_port}; another process holds it, or the "
                "host is not a local address. Pass another port or host."
            )
        server.start()
        self._server, self.port = server, bound
        logger.debug("Exchange server listening on %s:%d", self.host, bound)
        return bound

    def _handle(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        if self._closed.is_set():
            return close_message()
        call = _PendingCall(request)
        self._incoming.put(call)
        if self._closed.is_set():  # close() may have drained the queue just before the put
            call.answer(close_message())
        reply = call.wait(self.reply_timeout)
        if reply is None:
            logger.warning(
                "the trainer did not answer the game within %.0f s; telling it to quit", self.reply_timeout
            )
            return close_message(f"trainer did not answer within {self.reply_timeout} s")
        return reply

    def receive(
        self, timeout: float, check: Callable[[], None] | None = None, poll_interval: float = 0.2
    ) -> bytes | None:
        """Wait for the game's next call and return its request bytes; None once ``timeout`` passes.

        ``check`` is called at least every ``poll_interval`` seconds and may raise to abort the wait (e.g.
        when the game process exited). The previous call must have been answered with :meth:`reply`.
        """
        if self._current is not None:
            raise ProtocolError("the game's previous call has not been answered; reply() before receive()")
        deadline = time.monotonic() + timeout
        while True:
            if self._closed.is_set():
                raise BridgeError("the Exchange server was closed while waiting for the game's next call")
            remaining = deadline - time.monotonic()
            try:
                call = self._incoming.get(timeout=max(0.0, min(poll_interval, remaining)))
            except queue.Empty:
                if check is not None:
                    check()
                if remaining <= poll_interval:
                    return None
                continue
            if self._closed.is_set():  # close() ran while this call was being taken: answer it too
                call.answer(close_message())
                raise BridgeError("the Exchange server was closed while waiting for the game's next call")
            self._current = call
            return call.request

    @property
    def has_pending_call(self) -> bool:
        """True between :meth:`receive` returning a request and :meth:`reply` answering it."""
        return self._current is not None

    def reply(self, data: bytes) -> None:
        """Answer the call last returned by :meth:`receive`."""
        call, self._current = self._current, None
        if call is None:
            raise ProtocolError("no call from the game is waiting for a reply; receive() one first")
        if not call.answer(data):
            raise ProtocolError(
                f"the game's call expired after reply_timeout={self.reply_timeout} s and was told to quit; "
                "step the environment more often or raise reply_timeout"
            )

    def close(self, reason: str = "trainer closed the connection", grace: float = 1.0) -> None:
        """Answer every waiting call with status 400 and stop the server. Idempotent."""
        if self._closed.is_set():
            return
        self._closed.set()
        message = close_message(reason)
        if self._current is not None:
            self._current.answer(message)
            self._current = None
        while True:
            try:
                self._incoming.get_nowait().answer(message)
            except queue.Empty:
                break
        if self._server is not None:
            self._server.stop(grace).wait(grace + 1.0)
            self._server = None
        if self._executor is not None:
            self._executor.shutdown(wait=False)
            self._executor = None

    @property
    def closed(self) -> bool:
        return self._closed.is_set()
