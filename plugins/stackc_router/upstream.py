"""Connections to replicas: HTTP/1.1 on asyncio protocols, responses parsed by llhttp (httptools).

A response is read by the protocol itself: the request's task wakes once for the head and once
for the end, and body bytes in between go straight to a sink (the client's socket) without a
task switch. A connection goes back to the pool only when its response ended cleanly with
keep-alive and nothing else arrived, so bytes a replica sends out of turn never reach another
client.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import httptools

MAX_RESPONSE_HEAD_BYTES = 64 * 1024
MAX_UNRELAYED_BODY_BYTES = 1 << 20  # what is held before a sink takes over (health and metric bodies)
MAX_POOLED = 64
# a pooled connection is not reused after this long: uvicorn (vLLM, SGLang) closes idle keep-alive
# connections after 5 s, and a request sent as the replica closes is lost in the crossing
POOLED_IDLE_S = 4.0


class UpstreamError(Exception):
    """The replica answered with something that is not a usable HTTP response."""


class StaleConnection(UpstreamError):
    """A pooled connection the replica closed before answering: its keep-alive timeout crossed the
    request, which the replica never took, so the request may go again on a new connection."""


class UpstreamConnection(asyncio.Protocol):
    """One keep-alive connection to a replica, one request at a time."""

    def __init__(self, backend: Backend | None = None):
        self.backend = backend
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.dead = False
        self.paused = False  # reading, while the client reads slower than the replica writes
        self.expecting = False
        self.error: Exception | None = None
        self.waiter: asyncio.Future | None = None
        self.read_timeout = 0.0
        self.last_read = 0.0
        self.stall_timer: asyncio.TimerHandle | None = None
        self.reused = False  # taken from the pool: the replica may have closed it meanwhile
        self.idle_since = 0.0
        self._reset()

    def _reset(self) -> None:
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.head_bytes = 0
        self.received = False
        self.interim = False
        self.headers_done = False
        self.complete = False
        self.reusable = False
        self.body: list[bytes] = []
        self.body_bytes = 0
        self.last_body = b""  # where a cut stream stopped: did it end an event?
        self.first_byte_at: float | None = None
        self.sink: Callable[[bytes], None] | None = None

    # -- asyncio.Protocol ------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        no_delay(transport)
        if self.backend is not None:
            self.backend.open += 1

    def data_received(self, data: bytes) -> None:
        if not self.expecting or self.complete:  # bytes out of turn: this connection can't be trusted
            self._fail(UpstreamError("the replica sent bytes nobody asked for"))
            return
        self.last_read = self.loop.time()
        self.received = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError:
            self._fail(self.error or UpstreamError("malformed response"))
            return
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as error:
            self._fail(UpstreamError(f"malformed response: {error!r}"))
            return
        if self.headers_done:
            self._wake()

    def connection_lost(self, exc: Exception | None) -> None:
        self.dead = True
        if self.backend is not None:
            self.backend.open -= 1
            if self in self.backend.idle:
                self.backend.idle.remove(self)
        if self.expecting and not self.complete and self.error is None:
            if self.headers_done and self._close_delimited():
                self.complete = True
            else:
                self.error = self._closed_error("mid-response")
        self._stop_timer()
        self._wake()

    # -- llhttp callbacks ----------------------------------------------------------------------------
    def on_message_begin(self) -> None:
        if self.complete:  # a second response to one request
            self.error = UpstreamError("the replica sent more than one response")
            raise self.error

    def on_status(self, status: bytes) -> None:
        self._count(len(status))

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if 100 <= status < 200:  # interim response (100 Continue, 103 Early Hints): wait for the real one
            self.interim = True
            self.headers = []
            return
        self.status = status
        self.headers_done = True

    def on_body(self, chunk: bytes) -> None:
        if self.first_byte_at is None:
            self.first_byte_at = time.monotonic()  # the clock the router times requests with
        self.last_body = chunk
        if self.sink is not None:
            self.sink(chunk)
        else:
            self.body_bytes += len(chunk)
            if self.body_bytes > MAX_UNRELAYED_BODY_BYTES:
                self.error = UpstreamError(f"response body larger than {MAX_UNRELAYED_BODY_BYTES} bytes")
                raise self.error
            self.body.append(chunk)

    def on_message_complete(self) -> None:
        if self.interim:
            self.interim = False
            self.head_bytes = 0
            return
        self.complete = True
        self.reusable = self.parser.should_keep_alive()

    # -- used by the request's task -------------------------------------------------------------------
    def send(self, data: bytes, read_timeout: float) -> None:
        """Write a request; the response must keep coming at least every ``read_timeout`` seconds."""
        assert self.transport is not None
        self._reset()
        self.expecting = True
        self.read_timeout = read_timeout
        self.last_read = self.loop.time()
        if self.stall_timer is None:  # one timer per connection, re-armed lazily: none per request
            self.stall_timer = self.loop.call_later(read_timeout, self._check_stall)
        self.transport.write(data)

    async def response_head(self) -> None:
        await self._until(lambda: self.headers_done)

    async def response_start(self) -> None:
        """The head and the first body bytes (or the end, for an empty body): what the client may be sent.

        Servers write a head and its body apart (uvicorn; http.server flushes the head first), and
        a streaming head comes before prefill: a replica that dies between the two has given the
        client nothing usable yet, so the request can still go to another one.
        """
        await self._until(lambda: self.complete or (self.headers_done and self.first_byte_at is not None))

    async def response_end(self) -> None:
        await self._until(lambda: self.complete)

    def attach(self, sink: Callable[[bytes], None]) -> list[bytes]:
        """Body bytes go to ``sink`` from now on; returns those already here, for the caller to send first."""
        early, self.body = self.body, []
        self.sink = sink
        return early

    def pause_reading(self) -> None:
        if self.transport is not None and not self.dead and not self.paused:
            self.paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None and not self.dead and self.paused:
            self.paused = False
            self.transport.resume_reading()

    def finish(self) -> bool:
        """The response was fully relayed; True when the connection may serve another request."""
        self.expecting = False
        self.sink = None
        self.resume_reading()  # the response may have ended while its client was slow: read the next one
        return self.complete and self.reusable and not self.dead and self.error is None

    def close(self) -> None:
        """Abandon the connection (RST): the replica notices and stops generating."""
        self.dead = True
        self._stop_timer()
        if self.transport is not None:
            self.transport.abort()

    # -- internals ------------------------------------------------------------------------------------
    async def _until(self, ready: Callable[[], bool]) -> None:
        while not ready() and self.error is None:
            if self.dead:
                raise self._closed_error()
            self.waiter = self.loop.create_future()
            try:
                await self.waiter
            finally:
                self.waiter = None
        if self.error is not None:
            raise self.error

    def _closed_error(self, when: str = "") -> UpstreamError:
        if self.reused and not self.received:
            return StaleConnection("the replica closed a pooled connection before answering")
        return UpstreamError(f"the replica closed the connection {when}".rstrip())

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def _count(self, size: int) -> None:
        self.head_bytes += size
        if self.head_bytes > MAX_RESPONSE_HEAD_BYTES:
            self.error = UpstreamError(f"response head larger than {MAX_RESPONSE_HEAD_BYTES} bytes")
            raise self.error

    def _close_delimited(self) -> bool:
        names = {name.lower() for name, _ in self.headers}
        return b"content-length" not in names and b"transfer-encoding" not in names

    def _check_stall(self) -> None:
        self.stall_timer = None
        waited = self.loop.time() - self.last_read
        if not self.expecting or self.complete:
            return
        if waited >= self.read_timeout:
            self._fail(TimeoutError(f"the replica sent nothing for {self.read_timeout:g} s"))
        else:
            self.stall_timer = self.loop.call_later(self.read_timeout - waited, self._check_stall)

    def _stop_timer(self) -> None:
        if self.stall_timer is not None:
            self.stall_timer.cancel()
            self.stall_timer = None

    def _fail(self, error: Exception) -> None:
        if self.error is None:
            self.error = error
        self.close()
        self._wake()


def no_delay(transport: asyncio.BaseTransport) -> None:
    """Small writes (SSE events) leave at once instead of waiting for the peer's delayed ACK."""
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


@dataclass(eq=False)
class Backend:
    url: str
    host: str
    port: int
    authority: str  # host[:port] as in the URL, IPv6 in brackets: the Host header
    in_flight: int = 0
    waiting: float = 0.0
    cache_chars: int | None = None  # what its KV cache holds, from its metrics; None: it does not say
    healthy: bool = True
    failures: int = 0
    ejected_until: float = 0.0
    adapters: set[str] = field(default_factory=set)  # run-time LoRA adapters the router loaded into it
    loading_adapters: bool = False
    open: int = 0  # connections to this replica, pooled or busy
    idle: list[UpstreamConnection] = field(default_factory=list)

    @classmethod
    def from_url(cls, url: str, healthy: bool = True) -> Backend:
        hostport = url.removeprefix("http://").split("/", 1)[0]
        host, _, port = hostport.rpartition(":")
        if not port.isdigit():  # no port: the colon, if any, was inside an IPv6 address
            host, port = hostport, "80"
        return cls(url, host.strip("[]"), int(port), hostport, healthy=healthy)

    def available(self, now: float) -> bool:
        return self.healthy and now >= self.ejected_until

    async def connect(self, timeout: float, pooled: bool = True) -> UpstreamConnection:
        loop = asyncio.get_running_loop()
        while pooled and self.idle:
            connection = self.idle.pop()
            if connection.dead:
                continue
            if loop.time() - connection.idle_since > POOLED_IDLE_S:
                connection.close()
                continue
            connection.reused = True
            return connection
        _, connection = await asyncio.wait_for(
            loop.create_connection(lambda: UpstreamConnection(self), self.host, self.port), timeout)
        return connection

    async def exchange(self, message: bytes, connect_timeout: float, read_timeout: float,
                       answered: Callable[[UpstreamConnection], Awaitable[None]]) -> UpstreamConnection:
        """A connection that sent ``message`` and got as far as ``answered`` waits (closed on any failure).
        A pooled connection the replica closed before answering is no failure of the replica: the message
        goes again on a new connection."""
        pooled = True
        while True:
            connection = await self.connect(connect_timeout, pooled)
            try:
                connection.send(message, read_timeout)
                await answered(connection)
                return connection
            except StaleConnection:
                connection.close()
                pooled = False
            except BaseException:
                connection.close()
                raise

    def release(self, connection: UpstreamConnection) -> None:
        if connection.finish() and len(self.idle) < MAX_POOLED:
            connection.idle_since = connection.loop.time()
            self.idle.append(connection)
        else:
            connection.close()

    def close_idle(self) -> None:
        for connection in self.idle:
            connection.close()
        self.idle.clear()


async def simple_get(backend: Backend, path: str, timeout: float, key: str | None,
                     port: int | None = None) -> tuple[int, str]:
    """A one-off GET on its own connection (health checks never queue behind requests), on another
    ``port`` of the replica's host when given."""
    return await simple_request(backend, "GET", path, timeout, key, port=port)


async def simple_request(backend: Backend, method: str, path: str, timeout: float, key: str | None,
                         json_body: bytes | None = None, port: int | None = None) -> tuple[int, str]:
    """A one-off request on its own connection: the status (0 when none came) and the body's text."""
    connection = None
    authority = backend.authority if port is None else f"[{backend.host}]:{port}" if ":" in backend.host \
        else f"{backend.host}:{port}"
    try:
        loop = asyncio.get_running_loop()
        _, connection = await asyncio.wait_for(
            loop.create_connection(UpstreamConnection, backend.host, port or backend.port), timeout)
        auth = f"Authorization: Bearer {key}\r\n" if key else ""
        body = f"Content-Type: application/json\r\nContent-Length: {len(json_body)}\r\n" if json_body is not None else ""
        connection.send(f"{method} {path} HTTP/1.1\r\nHost: {authority}\r\n{auth}{body}"
                        "Connection: close\r\n\r\n".encode() + (json_body or b""), timeout)
        await asyncio.wait_for(connection.response_end(), timeout)
        return connection.status, b"".join(connection.body).decode("utf-8", "replace")
    except (OSError, TimeoutError, UpstreamError):
        return 0, ""
    finally:
        if connection is not None:
            connection.close()
