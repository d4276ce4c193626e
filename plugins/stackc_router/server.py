"""The router's HTTP/1.1 server and its upstream client, on asyncio streams.

Requests are routed on their ``model``; an alias is rewritten to the served name. A replica is
retried only while nothing has reached the client, so streaming responses are never mixed.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from stackc_router.config import Config, ModelRoute
from stackc_router.metrics import Metrics
from stackc_router.strategies import STRATEGIES, Strategy

OPENAI_POSTS = ("/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/responses")
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "proxy-connection", "te",
              "trailer", "upgrade"}
MAX_HEAD_BYTES = 64 * 1024
IDLE_SECONDS = 75.0
REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 405: "Method Not Allowed",
           413: "Payload Too Large", 429: "Too Many Requests", 500: "Internal Server Error", 502: "Bad Gateway",
           503: "Service Unavailable", 504: "Gateway Timeout"}


class ClientGone(Exception):
    """The client closed its connection; the upstream request is abandoned."""


@dataclass(eq=False)
class Backend:
    url: str
    host: str
    port: int
    in_flight: int = 0
    waiting: float = 0.0
    healthy: bool = True
    failures: int = 0
    ejected_until: float = 0.0
    idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = field(default_factory=list)

    @classmethod
    def from_url(cls, url: str) -> Backend:
        hostport = url.removeprefix("http://").split("/", 1)[0]
        host, _, port = hostport.rpartition(":")
        return cls(url, host.strip("[]") or hostport, int(port) if port.isdigit() else 80)

    def available(self, now: float) -> bool:
        return self.healthy and now >= self.ejected_until

    async def connect(self, timeout: float) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        while self.idle:
            reader, writer = self.idle.pop()
            if not writer.is_closing() and not reader.at_eof():
                return reader, writer
            writer.close()
        reader, writer = await asyncio.wait_for(asyncio.open_connection(self.host, self.port), timeout)
        _no_delay(writer)
        return reader, writer

    def release(self, connection: tuple[asyncio.StreamReader, asyncio.StreamWriter]) -> None:
        if len(self.idle) < 64 and not connection[1].is_closing():
            self.idle.append(connection)
        else:
            connection[1].close()

    def close_idle(self) -> None:
        for _, writer in self.idle:
            writer.close()
        self.idle.clear()


def _no_delay(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


@dataclass(eq=False)
class Route:
    config: ModelRoute
    strategy: Strategy
    backends: dict[str, Backend]
    upstream_key: str | None = None


def error_body(status: int, message: str, kind: str, code: str | None = None, param: str | None = None) -> bytes:
    return json.dumps({"error": {"message": message, "type": kind, "param": param, "code": code}}).encode()


class Router:
    def __init__(self, config: Config, api_keys: Iterable[str] = ()):
        self.config = config
        self.api_keys = [k.encode() for k in api_keys if k]
        self.metrics = Metrics()
        self.routes: dict[str, Route] = {}
        self.names: dict[str, tuple[Route, str]] = {}  # every client-facing name -> (route, served name)
        self.in_flight = 0
        self.tasks: set[asyncio.Task] = set()
        for model in config.models:
            strategy = STRATEGIES[model.strategy](load_factor=config.load_factor, block_chars=config.prefix_block_chars,
                                                  session_header=model.session_header)
            key = _read_key(model.upstream_api_key_file)
            route = Route(model, strategy, {u: Backend.from_url(u) for u in model.backends}, key)
            self.routes[model.name] = route
            for name in (model.served_name, *model.aliases):
                self.names[name] = (route, model.served_name)

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self, host: str | None = None, port: int | None = None) -> asyncio.base_events.Server:
        server = await asyncio.start_server(self._connection, host or self.config.host,
                                            self.config.port if port is None else port,
                                            limit=MAX_HEAD_BYTES, reuse_address=True)
        for route in self.routes.values():
            self._spawn(self._watch_health(route))
            if route.config.kubernetes is not None:
                from stackc_router.discovery import watch_endpoint_slices

                self._spawn(watch_endpoint_slices(route.config.kubernetes, lambda urls, r=route: self.set_backends(r, urls)))
        return server

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for route in self.routes.values():
            for backend in route.backends.values():
                backend.close_idle()

    def set_backends(self, route: Route, urls: Iterable[str]) -> None:
        """Discovery results: keep the state of replicas that stay, drop the ones that left."""
        wanted = {u.rstrip("/") for u in urls}
        for gone in set(route.backends) - wanted:
            route.backends.pop(gone).close_idle()
        for url in sorted(wanted - set(route.backends)):
            route.backends[url] = Backend.from_url(url)

    def ready(self) -> bool:
        now = time.monotonic()
        return all(any(b.available(now) for b in r.backends.values()) for r in self.routes.values())

    # -- health and load ----------------------------------------------------------------------
    async def _watch_health(self, route: Route) -> None:
        while True:
            await asyncio.gather(*(self._check(route, b) for b in list(route.backends.values())))
            await asyncio.sleep(route.config.health_interval_s)

    async def _check(self, route: Route, backend: Backend) -> None:
        status, _ = await _simple_get(backend, route.config.health_path, self.config.connect_timeout_s, route.upstream_key)
        backend.healthy = status == 200
        if backend.healthy:
            backend.failures = 0
        if route.config.metrics_path and route.config.waiting_metric and backend.healthy:
            status, text = await _simple_get(backend, route.config.metrics_path, self.config.connect_timeout_s,
                                             route.upstream_key)
            if status == 200:
                backend.waiting = _metric_value(text, route.config.waiting_metric)

    def _failed(self, backend: Backend) -> None:
        backend.failures += 1
        if backend.failures >= self.config.eject_after_failures:
            backend.ejected_until = time.monotonic() + self.config.eject_seconds

    # -- serving -------------------------------------------------------------------------------
    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        _no_delay(writer)
        try:
            while True:
                try:
                    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), IDLE_SECONDS)
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ConnectionError):
                    return
                keep_alive = await self._request(head, reader, writer)
                if not keep_alive:
                    return
        except ClientGone:
            return
        finally:
            writer.close()

    async def _request(self, head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        try:
            request_line, *header_lines = head[:-4].decode("latin-1").split("\r\n")
            method, target, version = request_line.split(" ", 2)
            headers = {}
            for line in header_lines:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        except ValueError:
            await respond(writer, 400, error_body(400, "malformed HTTP request", "invalid_request_error"), False)
            return False
        keep_alive = headers.get("connection", "").lower() != "close" and version == "HTTP/1.1"
        path = target.split("?", 1)[0]
        length = headers.get("content-length")
        if headers.get("transfer-encoding", "").lower() == "chunked":
            await respond(writer, 400, error_body(400, "chunked request bodies are not supported; "
                                                  "send Content-Length", "invalid_request_error"), False)
            return False
        size = int(length) if length and length.isdigit() else 0
        if size > self.config.max_body_bytes:
            await respond(writer, 413, error_body(413, f"request body is larger than {self.config.max_body_bytes} bytes",
                                                  "invalid_request_error", "request_too_large"), False)
            return False
        try:
            body = await reader.readexactly(size) if size else b""
        except (asyncio.IncompleteReadError, ConnectionError):
            return False
        return await self._dispatch(method, path, headers, body, writer, keep_alive)

    async def _dispatch(self, method: str, path: str, headers: dict[str, str], body: bytes,
                        writer: asyncio.StreamWriter, keep_alive: bool) -> bool:
        if method == "GET" and path == "/health":
            await respond(writer, 200, b'{"status":"ok"}', keep_alive)
        elif method == "GET" and path == "/ready":
            ready = self.ready()
            await respond(writer, 200 if ready else 503, b'{"ready":%s}' % (b"true" if ready else b"false"), keep_alive)
        elif method == "GET" and path == "/metrics":
            await respond(writer, 200, self.metrics.render(self).encode(), keep_alive, "text/plain; version=0.0.4")
        elif not self._authorized(headers):
            await respond(writer, 401, error_body(401, "Incorrect API key provided.", "invalid_request_error",
                                                  "invalid_api_key"), keep_alive)
        elif method == "GET" and path == "/v1/models":
            await respond(writer, 200, self._models(), keep_alive)
        elif method == "POST" and path in OPENAI_POSTS:
            return await self._proxy(path, headers, body, writer, keep_alive)
        elif path in OPENAI_POSTS or path == "/v1/models":
            await respond(writer, 405, error_body(405, f"{method} is not allowed on {path}", "invalid_request_error"),
                          keep_alive)
        else:
            await respond(writer, 404, error_body(404, f"no route for {method} {path}", "invalid_request_error"),
                          keep_alive)
        return keep_alive

    def _authorized(self, headers: dict[str, str]) -> bool:
        if not self.api_keys:
            return True
        given = headers.get("authorization", "").removeprefix("Bearer ").strip().encode()
        return any(hmac.compare_digest(given, key) for key in self.api_keys)

    def _models(self) -> bytes:
        data = [{"id": name, "object": "model", "created": 0, "owned_by": "stackc"} for name in sorted(self.names)]
        return json.dumps({"object": "list", "data": data}).encode()

    async def _proxy(self, path: str, headers: dict[str, str], body: bytes, writer: asyncio.StreamWriter,
                     keep_alive: bool) -> bool:
        try:
            payload = json.loads(body)
            if not isinstance(payload, dict):
                raise ValueError("not an object")
        except ValueError:
            await respond(writer, 400, error_body(400, "request body is not valid JSON", "invalid_request_error"),
                          keep_alive)
            return keep_alive
        model = payload.get("model")
        if not isinstance(model, str) or not model:
            await respond(writer, 400, error_body(400, "you must provide a model parameter", "invalid_request_error",
                                                  param="model"), keep_alive)
            return keep_alive
        if model not in self.names:
            known = ", ".join(sorted(self.names))
            await respond(writer, 404, error_body(404, f"The model '{model}' does not exist. Known models: {known}",
                                                  "invalid_request_error", "model_not_found", "model"), keep_alive)
            return keep_alive
        if self.in_flight >= self.config.max_in_flight:
            await respond(writer, 429, error_body(429, "the router is at its concurrency limit; retry shortly",
                                                  "rate_limit_exceeded", "rate_limit_exceeded"), keep_alive)
            return keep_alive
        route, served = self.names[model]
        if served != model:
            payload["model"] = served
            body = json.dumps(payload, separators=(",", ":")).encode()
        now = time.monotonic()
        candidates = [b for b in route.backends.values() if b.available(now)] or list(route.backends.values())
        if not candidates:
            await respond(writer, 503, error_body(503, f"no replica of '{model}' is available", "server_error",
                                                  "no_backend"), keep_alive)
            return keep_alive
        ordered = route.strategy.order(candidates, payload, headers)[: 1 + self.config.retries]
        self.in_flight += 1
        try:
            return await self._forward(route, ordered, path, headers, body, writer, keep_alive)
        finally:
            self.in_flight -= 1

    async def _forward(self, route: Route, ordered: list[Backend], path: str, headers: dict[str, str], body: bytes,
                       writer: asyncio.StreamWriter, keep_alive: bool) -> bool:
        model = route.config.name
        for attempt, backend in enumerate(ordered):
            last = attempt == len(ordered) - 1
            if attempt:
                self.metrics.count("retries", model, backend.url)
            started = time.monotonic()
            backend.in_flight += 1
            self.metrics.count("requests", model, backend.url)
            connection = None
            try:
                connection = await backend.connect(self.config.connect_timeout_s)
                upstream_reader, upstream_writer = connection
                upstream_writer.write(_upstream_head(path, backend, headers, len(body), route.upstream_key) + body)
                status, response_headers = await asyncio.wait_for(_read_head(upstream_reader), self.config.read_timeout_s)
                if status >= 500 and not last:
                    raise UpstreamError(f"status {status}")
            except (OSError, asyncio.IncompleteReadError, TimeoutError, UpstreamError, ValueError) as error:
                if connection is not None:
                    connection[1].close()
                backend.in_flight -= 1
                self._failed(backend)
                self.metrics.count("errors", model, backend.url)
                if last:
                    kind = 504 if isinstance(error, TimeoutError) else 502
                    await respond(writer, kind, error_body(kind, f"upstream replica failed: {type(error).__name__}",
                                                           "server_error", "upstream_error"), keep_alive)
                    return keep_alive
                continue
            try:
                reusable = await self._relay(model, backend, status, response_headers, upstream_reader, writer,
                                             keep_alive, started)
            except ClientGone:
                upstream_writer.close()  # the engine sees the disconnect and stops generating
                raise
            except (OSError, asyncio.IncompleteReadError, TimeoutError):
                upstream_writer.close()
                self._failed(backend)
                self.metrics.count("errors", model, backend.url)
                return False  # the response was cut; the client sees a closed connection
            finally:
                backend.in_flight -= 1
            if status < 500:
                backend.failures = 0
            else:
                self.metrics.count("errors", model, backend.url)
            if reusable:
                backend.release(connection)
            else:
                upstream_writer.close()
            self.metrics.observe("latency", model, backend.url, time.monotonic() - started)
            return keep_alive
        return keep_alive

    async def _relay(self, model: str, backend: Backend, status: int, headers: list[tuple[str, str]],
                     upstream: asyncio.StreamReader, writer: asyncio.StreamWriter, keep_alive: bool,
                     started: float) -> bool:
        """Pass the response through as it arrives; True when the upstream connection can be reused."""
        fields = {k.lower(): v for k, v in headers}
        chunked = fields.get("transfer-encoding", "").lower() == "chunked"
        length = fields.get("content-length")
        lines = [f"HTTP/1.1 {status} {REASONS.get(status, 'Status')}"]
        lines += [f"{k}: {v}" for k, v in headers if k.lower() not in HOP_BY_HOP]
        lines.append("Transfer-Encoding: chunked" if chunked or length is None else f"Content-Length: {length}")
        lines.append("Connection: keep-alive" if keep_alive else "Connection: close")
        await _send(writer, ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        first = True
        if chunked:
            while True:
                size_line = await asyncio.wait_for(upstream.readuntil(b"\r\n"), self.config.read_timeout_s)
                size = int(size_line.split(b";", 1)[0], 16)
                chunk = await upstream.readexactly(size + 2)
                if first:
                    self.metrics.observe("ttft", model, backend.url, time.monotonic() - started)
                    first = False
                await _send(writer, size_line + chunk)
                if size == 0:
                    return fields.get("connection", "").lower() != "close"
        if length is not None:
            remaining = int(length)
            while remaining:
                data = await asyncio.wait_for(upstream.read(min(remaining, 65536)), self.config.read_timeout_s)
                if not data:
                    raise asyncio.IncompleteReadError(b"", remaining)
                if first:
                    self.metrics.observe("ttft", model, backend.url, time.monotonic() - started)
                    first = False
                remaining -= len(data)
                await _send(writer, data)
            return fields.get("connection", "").lower() != "close"
        while data := await upstream.read(65536):  # close-delimited body, re-chunked for the client
            await _send(writer, b"%x\r\n%s\r\n" % (len(data), data))
        await _send(writer, b"0\r\n\r\n")
        return False


class UpstreamError(Exception):
    pass


async def _send(writer: asyncio.StreamWriter, data: bytes) -> None:
    if writer.is_closing():
        raise ClientGone()
    writer.write(data)
    try:
        await writer.drain()
    except (ConnectionError, OSError) as error:
        raise ClientGone() from error


def _upstream_head(path: str, backend: Backend, headers: dict[str, str], length: int, key: str | None) -> bytes:
    lines = [f"POST {path} HTTP/1.1", f"Host: {backend.host}:{backend.port}", "Content-Type: application/json",
             f"Content-Length: {length}", "Connection: keep-alive"]
    if "accept" in headers:
        lines.append(f"Accept: {headers['accept']}")
    if key:
        lines.append(f"Authorization: Bearer {key}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def _read_head(reader: asyncio.StreamReader) -> tuple[int, list[tuple[str, str]]]:
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *lines = head[:-4].decode("latin-1").split("\r\n")
    status = int(status_line.split(" ", 2)[1])
    headers = []
    for line in lines:
        name, _, value = line.partition(":")
        headers.append((name.strip(), value.strip()))
    return status, headers


async def _simple_get(backend: Backend, path: str, timeout: float, key: str | None) -> tuple[int, str]:
    """A one-off GET on its own connection (health checks never queue behind requests)."""
    writer = None
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(backend.host, backend.port), timeout)
        auth = f"Authorization: Bearer {key}\r\n" if key else ""
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {backend.host}\r\n{auth}Connection: close\r\n\r\n".encode())
        status, headers = await asyncio.wait_for(_read_head(reader), timeout)
        body = await asyncio.wait_for(reader.read(1 << 20), timeout)
        if dict((k.lower(), v) for k, v in headers).get("transfer-encoding", "").lower() == "chunked":
            body = _dechunk(body)
        return status, body.decode("utf-8", "replace")
    except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError, IndexError):
        return 0, ""
    finally:
        if writer is not None:
            writer.close()


def _dechunk(data: bytes) -> bytes:
    out, rest = [], data
    while rest:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out.append(rest[:size])
        rest = rest[size + 2:]
    return b"".join(out)


def _metric_value(text: str, name: str) -> float:
    """Sum of a metric's series in Prometheus text; ``name{label="x"}`` selects by labels."""
    base, _, labels = name.partition("{")
    wanted = [part.strip() for part in labels.rstrip("}").split(",") if part.strip()]
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(base) or line.startswith("#"):
            continue
        series, _, value = line.rpartition(" ")
        if series.split("{", 1)[0] != base or not all(w in series for w in wanted):
            continue
        try:
            total += float(value)
        except ValueError:
            continue
    return total


def _read_key(path: str | None) -> str | None:
    if not path:
        return None
    with open(path, encoding="utf-8") as handle:
        return handle.read().strip() or None


async def respond(writer: asyncio.StreamWriter, status: int, body: bytes, keep_alive: bool,
                  content_type: str = "application/json") -> None:
    head = (f"HTTP/1.1 {status} {REASONS.get(status, 'Status')}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: {'keep-alive' if keep_alive else 'close'}\r\n\r\n")
    await _send(writer, head.encode("latin-1") + body)
