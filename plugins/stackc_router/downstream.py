"""The client-facing side: HTTP/1.1 on asyncio protocols, requests parsed by llhttp (httptools).

llhttp already refuses what RFC 9112 calls ambiguous framing (bare CR or LF, signed, listed or
repeated Content-Length, Content-Length with Transfer-Encoding, chunked not last, obs-fold,
whitespace before a colon); ``_head_problem`` refuses the rest we cannot frame or forward
safely. Every phase of a connection has a deadline, the number of connections is capped, and a
client that goes away cancels the task serving it, wherever that task is.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httptools
import orjson

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
    header_timeout_s: float
    body_timeout_s: float
    idle_timeout_s: float


class Rejected(Exception):
    def __init__(self, status: int, message: str, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


class Listener:
    """Connections of one listening socket: the cap, the deadlines and the request handler."""

    def __init__(self, limits: Limits, handle: Callable[[Request, ClientConnection], Awaitable[None]]):
        self.limits = limits
        self.handle = handle
        self.connections: dict[ClientConnection, None] = {}  # oldest first
        self.sweeper: asyncio.Task | None = None

    def protocol(self) -> ClientConnection:
        return ClientConnection(self)

    def admit(self, connection: ClientConnection) -> bool:
        """Room for one more connection, made by closing the longest-idle one if needed."""
        if len(self.connections) >= self.limits.max_connections:
            oldest_idle = next((c for c in self.connections if c.idle), None)
            if oldest_idle is None:
                return False
            oldest_idle.close()
            self.connections.pop(oldest_idle, None)
        self.connections[connection] = None
        if self.sweeper is None or self.sweeper.done():
            self.sweeper = asyncio.get_running_loop().create_task(self._sweep())
        return True

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
        self.parser = httptools.HttpRequestParser(self)
        self.task: asyncio.Task | None = None  # serving the current request
        self.queued: list[Request] = []  # parsed from the same read as the current one (pipelining)
        self.answering = False  # part of the current response has been written
        self.held: list[bytes] = []
        self.held_bytes = 0
        self.idle = True  # between requests: evicted first when connections run out
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
        self.head_bytes = 0
        self.body: list[bytes] = []
        self.body_bytes = 0

    # -- asyncio.Protocol ----------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        no_delay(transport)
        if not self.listener.admit(self):
            body = error_body("the router has too many open connections; retry shortly", "server_error",
                              "too_many_connections")
            transport.write(response_head(503, "application/json", len(body), False) + body)  # type: ignore[attr-defined]
            self.closed = True
            transport.close()
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
        self.listener.connections.pop(self, None)
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
        self.deadline = self.loop.time() + self.limits.header_timeout_s

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        if key == "host":
            self.hosts += 1
        previous = self.headers.get(key)
        self.headers[key] = text if previous is None else f"{previous}, {text}"

    def on_headers_complete(self) -> None:
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
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError:
            problem = self.problem or Rejected(400, "malformed HTTP request")
            self.reject(problem.status, problem.message, problem.code)
        except httptools.HttpParserUpgrade:
            self.reject(400, "protocol upgrades are not supported")
        except httptools.HttpParserError as error:
            self.reject(400, f"malformed HTTP request: {error}")

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

    def reject(self, status: int, message: str, code: str | None = None) -> None:
        """Answer an unusable request and close: its framing can't be trusted to find the next one."""
        kind = "server_error" if status >= 500 else "invalid_request_error"
        body = error_body(message, kind, code)
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
        self.listener.connections.pop(self, None)
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
