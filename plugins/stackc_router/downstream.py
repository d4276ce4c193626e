"""The client-facing side: HTTP/1.1 on asyncio protocols, requests parsed by llhttp (httptools).

llhttp already refuses what RFC 9112 calls ambiguous framing (bare CR or LF, signed, listed or
repeated Content-Length, Content-Length with Transfer-Encoding, chunked not last, obs-fold,
whitespace before a colon); ``_head_problem`` refuses the rest we cannot frame or forward
safely. Every phase of a connection has a deadline; the number of connections is capped for the
router, for each peer address and for each API key, and a connection that has no request head yet
is the first closed to make room (``Listener.admit``). A client that goes away cancels the task
serving it, wherever that task is.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

import httptools
import orjson

from stackc_router.metrics import LIMITED, SHED, Metrics
from stackc_router.upstream import UpstreamConnection, no_delay

MAX_HEAD_BYTES = 64 * 1024
MAX_HELD_BYTES = 64 * 1024  # pipelined bytes kept unparsed while a request is served
REASONS = {100: "Continue", 200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found",
           405: "Method Not Allowed", 408: "Request Timeout", 413: "Content Too Large", 417: "Expectation Failed",
           429: "Too Many Requests", 431: "Request Header Fields Too Large", 500: "Internal Server Error",
           501: "Not Implemented", 502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout"}
log = logging.getLogger("stackc_router")


def error_body(message: str, kind: str, code: str | None = None, param: str | None = None) -> bytes:
    return orjson.dumps({"error": {"message": message, "type": kind, "param": param, "code": code}})


def error_kind(status: int) -> str:
    """The OpenAI error type of a status the router answers itself."""
    return "server_error" if status >= 500 else "rate_limit_exceeded" if status == 429 else "invalid_request_error"


def response_head(status: int, content_type: str, length: int, keep_alive: bool, extra: bytes = b"") -> bytes:
    """``extra``: more header lines, each ending in CRLF."""
    return (b"HTTP/1.1 %d %s\r\ncontent-type: %s\r\ncontent-length: %d\r\n%sconnection: %s\r\n\r\n"
            % (status, REASONS.get(status, "Status").encode(), content_type.encode(), length, extra,
               b"keep-alive" if keep_alive else b"close"))


@dataclass(slots=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names; a repeated field's values joined with ", "
    body: bytes
    keep_alive: bool
    http11: bool


@dataclass(frozen=True)
class Limits:
    max_body_bytes: int
    max_connections: int
    max_connections_per_address: int
    max_connections_per_key: int
    max_headers: int
    header_timeout_s: float
    body_timeout_s: float
    idle_timeout_s: float


class Rejected(Exception):
    def __init__(self, status: int, message: str, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


class Listener:
    """Connections of one listening socket: the caps (the router's, each address's, each API key's), the
    deadlines and the request handler."""

    def __init__(self, limits: Limits, handle: Callable[[Request, ClientConnection], Awaitable[None]],
                 metrics: Metrics):
        self.limits = limits
        self.handle = handle
        self.metrics = metrics
        self.connections: dict[ClientConnection, None] = {}  # oldest first
        self.by_address: dict[str, dict[ClientConnection, None]] = {}  # each peer address's, oldest first
        self.by_key: dict[bytes, int] = {}  # connections whose last request presented each API key (its digest)
        self.sweeper: asyncio.Task | None = None

    def protocol(self) -> ClientConnection:
        return ClientConnection(self)

    def admit(self, connection: ClientConnection) -> Rejected | None:
        """Room for one more connection, or why not.

        Only a connection with no request under way and no complete head is closed to make room
        (``sheddable``: closing it loses no work), the oldest first: an address at its own limit
        makes room among its own connections. When the router is full, a connection that never
        sent a whole request goes first (a hoarder's, from one address or many), then one of the
        address holding the most (idle keep-alive connections). One client hoarding half-open
        connections therefore never locks the others out.
        """
        mine = self.by_address.get(connection.address, {})
        if len(mine) >= self.limits.max_connections_per_address:
            if not self._shed(mine, "connections_per_address"):
                self.metrics.limit(LIMITED, "connections_per_address")
                return Rejected(429, "too many open connections from this address; reuse or close them",
                                "client_connection_limit")
        elif len(self.connections) >= self.limits.max_connections:
            never_served = (c for c in self.connections if not c.served)
            holders = sorted(self.by_address.values(), key=len, reverse=True)
            if not any(self._shed(group, "connections") for group in (never_served, *holders)):
                self.metrics.limit(LIMITED, "connections")
                return Rejected(503, "the router has too many open connections; retry shortly", "too_many_connections")
        self.by_address.setdefault(connection.address, {})[connection] = None
        self.connections[connection] = None
        if self.sweeper is None or self.sweeper.done():
            self.sweeper = asyncio.get_running_loop().create_task(self._sweep())
        return None

    def _shed(self, group: Iterable[ClientConnection], limit: str) -> bool:
        victim = next((c for c in group if c.sheddable), None)  # the oldest: nearest its header deadline
        if victim is None:
            return False
        victim.close()
        self.metrics.limit(SHED, limit)
        return True

    def claim(self, connection: ClientConnection, key: bytes) -> bool:
        """Count ``connection`` as the API key's; False when the key holds its maximum already."""
        if connection.api_key == key:
            return True
        if self.by_key.get(key, 0) >= self.limits.max_connections_per_key:
            return False
        self._release_key(connection)
        connection.api_key = key
        self.by_key[key] = self.by_key.get(key, 0) + 1
        return True

    def forget(self, connection: ClientConnection) -> None:
        """``connection`` closed: it counts nowhere any more (called once or more)."""
        self.connections.pop(connection, None)
        group = self.by_address.get(connection.address)
        if group is not None:
            group.pop(connection, None)
            if not group:
                del self.by_address[connection.address]
        self._release_key(connection)

    def _release_key(self, connection: ClientConnection) -> None:
        key = connection.api_key
        if key is not None:
            connection.api_key = None
            if self.by_key[key] == 1:
                del self.by_key[key]
            else:
                self.by_key[key] -= 1

    async def _sweep(self) -> None:
        """Enforce deadlines; ends by itself when no connection is left."""
        period = min(1.0, self.limits.header_timeout_s / 4, self.limits.body_timeout_s / 4,
                     self.limits.idle_timeout_s / 4)
        loop = asyncio.get_running_loop()
        while self.connections:
            await asyncio.sleep(period)
            now = loop.time()
            for connection in list(self.connections):
                if connection.deadline and now >= connection.deadline:
                    connection.expire()

    def close(self) -> None:
        for connection in list(self.connections):
            connection.close()
        if self.sweeper is not None:
            self.sweeper.cancel()


class ClientConnection(asyncio.Protocol):
    """One client's connection: requests parsed as bytes arrive, served one at a time, in order."""

    def __init__(self, listener: Listener):
        self.listener = listener
        self.limits = listener.limits
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.address = ""  # the peer's IP address: one client, for the per-address limits
        self.api_key: bytes | None = None  # the digest of the API key its last request presented
        self.parser = httptools.HttpRequestParser(self)
        self.task: asyncio.Task | None = None  # serving the current request
        self.queued: list[Request] = []  # parsed from the same read as the current one (pipelining)
        self.answering = False  # part of the current response has been written
        self.held: list[bytes] = []
        self.held_bytes = 0
        self.idle = True  # between requests
        self.served = False  # a request of its own was answered: not a hoarder's
        self.in_head = False  # a request's head has begun and is not complete
        self.head_began_in_read = False  # ... and it began in the read being parsed
        self.raw_head_bytes = 0  # the head's bytes in the reads that neither began nor ended it
        self.deadline = 0.0
        self.closed = False
        self.write_paused = False
        self.relay: UpstreamConnection | None = None  # paused while the client reads slowly
        self.problem: Rejected | None = None
        self._new_request()

    def _new_request(self) -> None:
        self.url = b""
        self.headers: dict[str, str] = {}
        self.hosts = 0
        self.header_count = 0
        self.head_bytes = 0
        self.body: list[bytes] = []
        self.body_bytes = 0

    # -- asyncio.Protocol ----------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        no_delay(transport)
        peer = transport.get_extra_info("peername")
        self.address = peer[0] if isinstance(peer, tuple) else ""
        refused = self.listener.admit(self)
        if refused is not None:
            self.reject(refused.status, refused.message, refused.code)
            return
        self.deadline = self.loop.time() + self.limits.header_timeout_s  # a new connection must start a request

    def data_received(self, data: bytes) -> None:
        if self.task is not None or self.closed:  # pipelined: parse after the current response
            self.held.append(data)
            self.held_bytes += len(data)
            if self.held_bytes > MAX_HELD_BYTES and self.transport is not None:
                self.transport.pause_reading()
            return
        self._feed(data)

    def eof_received(self) -> bool:
        return False  # a client that half-closes is gone: close, and cancel what serves it

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.listener.forget(self)
        if self.task is not None:
            self.task.cancel()

    def pause_writing(self) -> None:
        self.write_paused = True
        if self.relay is not None:
            self.relay.pause_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.relay is not None:
            self.relay.resume_reading()

    # -- llhttp callbacks ----------------------------------------------------------------------------
    def on_message_begin(self) -> None:
        self.idle = False
        self.in_head = self.head_began_in_read = True
        self.raw_head_bytes = 0
        self.deadline = self.loop.time() + self.limits.header_timeout_s

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.header_count += 1
        if self.header_count > self.limits.max_headers:  # before the fields cost more than their count says
            self.problem = Rejected(431, f"more than {self.limits.max_headers} header fields")
            raise self.problem
        self._count(len(name) + len(value) + 4)
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1").rstrip(" \t")  # RFC 9110 5.5: not part of the value; llhttp keeps it
        if key == "host":
            self.hosts += 1
        previous = self.headers.get(key)
        self.headers[key] = text if previous is None else f"{previous}, {text}"

    def on_headers_complete(self) -> None:
        self.in_head = False
        self.problem = _head_problem(self.headers, self.hosts, self.parser.get_http_version(), self.limits)
        if self.problem is not None:
            raise self.problem
        self.deadline = self.loop.time() + self.limits.body_timeout_s
        if self.headers.get("expect", "").lower() == "100-continue" and self.transport is not None:
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, chunk: bytes) -> None:
        self.body_bytes += len(chunk)
        if self.body_bytes > self.limits.max_body_bytes:
            self.problem = _too_large(self.limits.max_body_bytes)
            raise self.problem
        self.body.append(chunk)

    def on_message_complete(self) -> None:
        self.deadline = 0.0
        url = self.url
        path = url.split(b"?", 1)[0] if url.startswith(b"/") else (httptools.parse_url(url).path or b"/")
        request = Request(self.parser.get_method().decode("ascii"), path.decode("latin-1"), self.headers,
                          b"".join(self.body), self.parser.should_keep_alive(),
                          self.parser.get_http_version() == "1.1")
        self._new_request()
        if self.task is None:
            self.task = self.loop.create_task(self._serve(request))
        else:
            self.queued.append(request)

    # -- serving ---------------------------------------------------------------------------------------
    def _feed(self, data: bytes) -> None:
        self.head_began_in_read = False
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError:
            problem = self.problem or Rejected(400, "malformed HTTP request")
            self.reject(problem.status, problem.message, problem.code)
            return
        except httptools.HttpParserUpgrade:
            self.reject(400, "protocol upgrades are not supported")
            return
        except httptools.HttpParserError as error:
            self.reject(400, f"malformed HTTP request: {error}")
            return
        if self.in_head and not self.head_began_in_read:
            # the whole read was head: counted here, as llhttp reports a field only once it is complete and
            # httptools gathers an unfinished one in memory (quadratically) however long it grows
            self.raw_head_bytes += len(data)
            if self.raw_head_bytes > MAX_HEAD_BYTES:
                self.reject(431, f"request head larger than {MAX_HEAD_BYTES} bytes")

    async def _serve(self, request: Request) -> None:
        self.answering = False
        try:
            await self.listener.handle(request, self)
        except asyncio.CancelledError:
            self.close()
            raise
        except Exception:  # a bug must not take the connection's neighbours down; log it and answer 500
            log.exception("request failed")
            if self.answering:
                self.close()
            else:
                self.reject(500, "internal router error")
        finally:
            self.task = None
            self.relay = None
            self.served = True
        if not request.keep_alive:
            self.close()
        elif self.closed:
            return
        elif self.queued:
            self.task = self.loop.create_task(self._serve(self.queued.pop(0)))
        else:
            self.idle = True
            self.deadline = self.loop.time() + self.limits.idle_timeout_s
            self._feed_held()

    def _feed_held(self) -> None:
        if self.held:
            data = b"".join(self.held)
            self.held, self.held_bytes = [], 0
            if self.transport is not None:
                self.transport.resume_reading()
            self._feed(data)

    def write(self, data: bytes) -> None:
        self.answering = True
        if not self.closed and self.transport is not None:
            self.transport.write(data)

    def respond(self, request: Request, status: int, body: bytes, content_type: str = "application/json",
                extra_head: bytes = b"") -> None:
        head = response_head(status, content_type, len(body), request.keep_alive, extra_head)
        self.write(head if request.method == "HEAD" else head + body)  # a body after HEAD would be a response

    @property
    def sheddable(self) -> bool:
        """No request is served, and none has a complete head: closing the connection loses no work."""
        return self.task is None and (self.idle or self.in_head)

    def reject(self, status: int, message: str, code: str | None = None) -> None:
        """Answer an unusable request and close: its framing can't be trusted to find the next one."""
        body = error_body(message, error_kind(status), code)
        self.write(response_head(status, "application/json", len(body), False) + body)
        self.close()

    def expire(self) -> None:
        if self.idle:
            self.close()
        elif self.task is None:  # headers or body too slow (slowloris)
            self.reject(408, "the request was not received in time")

    def close(self) -> None:
        self.closed = True
        self.deadline = 0.0
        self.held, self.queued = [], []
        self.listener.forget(self)
        if self.transport is not None:
            self.transport.close()

    def _count(self, size: int) -> None:
        self.head_bytes += size
        if self.head_bytes > MAX_HEAD_BYTES:
            self.problem = Rejected(431, f"request head larger than {MAX_HEAD_BYTES} bytes")
            raise self.problem


def _too_large(limit: int) -> Rejected:
    return Rejected(413, f"request body is larger than {limit} bytes", "request_too_large")


def _head_problem(headers: dict[str, str], hosts: int, version: str, limits: Limits) -> Rejected | None:
    """What llhttp accepts but RFC 9112 or this router does not."""
    if version == "1.1" and hosts != 1:
        return Rejected(400, "an HTTP/1.1 request needs exactly one Host header")  # RFC 9112 3.2
    coding = headers.get("transfer-encoding")
    if coding is not None:
        if version != "1.1":
            return Rejected(400, "Transfer-Encoding in an HTTP/1.0 request")  # RFC 9112 6.1: faulty framing
        if coding.lower() != "chunked":
            return Rejected(501, f"unsupported Transfer-Encoding {coding!r}; send chunked or Content-Length")
    length = headers.get("content-length")
    if length is not None and int(length) > limits.max_body_bytes:  # llhttp checked: ASCII digits only
        return _too_large(limits.max_body_bytes)
    expect = headers.get("expect")
    if expect is not None and expect.lower() != "100-continue":
        return Rejected(417, f"unsupported Expect {expect!r}")
    return None
