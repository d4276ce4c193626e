"""The router: requests routed on their ``model`` to a replica, responses relayed as they arrive.

An alias is rewritten to the served name. A replica is retried only while nothing has reached
the client, so streaming responses are never mixed; a response starts with its first body bytes
(``UpstreamConnection.response_start``), not its head alone; once it has started, a failing
replica cuts the client's connection (the only honest signal left). HTTP itself lives in
``downstream`` (clients) and ``upstream`` (replicas). A request for a model with no ready
replica is held (``hold``) until one is ready, so a model scaled to zero wakes up instead of
failing. A prefill/decode-disaggregated model has a second set of replicas, its prefill role
(``Route.prefill``): a request goes to both, joined as the model's protocol says (``_disaggregated``).
A model may have a candidate version beside its stable one (``Route.candidate``), replicas of its
own that get the requests carrying its header, a share of the others, and copies (``_version``,
``_mirror``).
Besides the router's own limits, each client (peer address, and API key when the router checks keys)
may hold only its share of connections and requests in flight.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import hashlib
import hmac
import math
import random
import re
import resource
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from stackc_router.config import Config, ModelRoute
from stackc_router.downstream import (
    REASONS,
    ClientConnection,
    Limits,
    Listener,
    Request,
    error_body,
    error_kind,
)
from stackc_router.hold import HoldQueue, QueueFull
from stackc_router.metrics import (
    CANDIDATE_SUFFIX,
    ERRORS,
    LATENCY,
    LIMITED,
    PREFILL_ERRORS,
    PREFILL_LATENCY,
    REQUESTS,
    RETRIES,
    TTFT,
    Metrics,
)
from stackc_router.scrape import capacity_chars, metric_value
from stackc_router.strategies import STRATEGIES, Strategy
from stackc_router.upstream import (
    Backend,
    UpstreamConnection,
    UpstreamError,
    simple_get,
    simple_request,
)

OPENAI_POSTS = ("/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/responses")
#: what a disaggregated model serves through both roles; anything else goes to decode alone, which computes it whole
GENERATING_POSTS = ("/v1/chat/completions", "/v1/completions")
#: what the prefill role of vLLM's NixlConnector is sent: produce the KV cache for a decode replica to pull
REMOTE_DECODE = {"do_remote_decode": True, "do_remote_prefill": False, "remote_engine_id": None,
                 "remote_block_ids": None, "remote_host": None, "remote_port": None}
HOP_BY_HOP = {b"connection", b"keep-alive", b"transfer-encoding", b"content-length", b"proxy-connection", b"te",
              b"trailer", b"upgrade"}
FILES_PER_CLIENT = 2  # the client's socket and, while it is served, one to a replica
SPARE_FILES = 64  # listening socket, pooled and health-check connections, logs
TOKEN68 = r"[A-Za-z0-9\-._~+/]+=*"  # RFC 9110 11.2
#: RFC 9110 11.4 ``credentials = auth-scheme [ 1*SP token68 ]`` with RFC 6750's scheme, in any case (ASCII only)
BEARER = re.compile(rf"(?i:bearer) +({TOKEN68})", re.ASCII)
#: a model's copies in flight to its candidate version (``mirror``); more are dropped and counted: a
#: slow candidate must never hold more of the router than this
MAX_MIRRORED = 64


@dataclass(eq=False)
class Route:
    config: ModelRoute
    strategy: Strategy
    backends: dict[str, Backend]
    held: HoldQueue
    upstream_key: str | None = None
    #: adapters the router loads into replicas itself (requests for them go where they are loaded)
    runtime_adapters: frozenset[str] = frozenset()
    #: a disaggregated model's prefill role: replicas checked, discovered and picked like these ones
    prefill: Route | None = None
    #: the model's candidate version (its ``config.name`` ends in ``CANDIDATE_SUFFIX``), or None
    candidate: Route | None = None
    is_candidate: bool = False
    split: int = 0  # requests counted by the weighted split, modulo 100
    mirroring: int = 0  # a candidate's copies in flight

    def ready_replicas(self) -> int:
        return sum(b.healthy for b in self.backends.values())

    def roles(self) -> tuple[Route, ...]:
        """The replica sets one request of this version goes through."""
        return (self,) if self.prefill is None else (self, self.prefill)

    def replica_sets(self) -> tuple[Route, ...]:
        """Every replica set of the model: checked, discovered and closed alike."""
        return self.roles() + (self.candidate.roles() if self.candidate is not None else ())


class PrefillFailed(Exception):
    """No prefill replica could prefill the request; ``error`` is the last one's failure."""

    def __init__(self, error: Exception):
        super().__init__(str(error) or type(error).__name__)
        self.error = error


class PrefillRefused(Exception):
    """A prefill replica refused the request itself (a 4xx): the client gets its answer."""

    def __init__(self, status: int, body: bytes):
        super().__init__(f"status {status}")
        self.status, self.body = status, body


def connection_cap(configured: int) -> int:
    """At most what the open-file limit allows, so a flood of sockets gets 503s, not EMFILE for all."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return configured
    return max(1, min(configured, (soft - SPARE_FILES) // FILES_PER_CLIENT))


def share(limit: int, cap: int, configured: int) -> int:
    """A client's connection limit, lowered in proportion when the router's was (``connection_cap``)."""
    return limit if cap >= configured else max(1, limit * cap // configured)


def sendable_key(key: str) -> bool:
    """A key a client can send as ``Bearer KEY``; any other could never match."""
    return re.fullmatch(TOKEN68, key, re.ASCII) is not None


def presented_key(authorization: str) -> str | None:
    """The key of an ``Authorization: Bearer KEY`` field, else None (a bare key, another scheme, a tab, two keys)."""
    match = BEARER.fullmatch(authorization)
    return match[1] if match else None


class Router:
    def __init__(self, config: Config, api_keys: Iterable[str] = ()):
        self.config = config
        #: keys are compared as digests: equal lengths, so the comparison's time says nothing of a key
        self.key_digests = tuple(hashlib.sha256(k.encode()).digest() for k in api_keys if k)
        self.metrics = Metrics()
        self.routes: dict[str, Route] = {}
        self.names: dict[str, tuple[Route, str]] = {}  # every client-facing name -> (route, served name)
        self.in_flight = 0
        self.client_in_flight: dict[str | bytes, int] = {}  # per peer address (str) and API key digest (bytes)
        self.tasks: set[asyncio.Task] = set()  # background: health checks, discovery
        self.loop: asyncio.AbstractEventLoop | None = None
        cap = connection_cap(config.max_connections)
        self.listener = Listener(Limits(
            max_body_bytes=config.max_body_bytes, max_connections=cap,
            max_connections_per_address=share(config.max_connections_per_address, cap, config.max_connections),
            max_connections_per_key=share(config.max_connections_per_key, cap, config.max_connections),
            max_headers=config.max_headers, header_timeout_s=config.header_timeout_s,
            body_timeout_s=config.body_timeout_s, idle_timeout_s=config.idle_timeout_s), self.handle, self.metrics)
        for model in config.models:
            key = _read_key(model.upstream_api_key_file)
            route = self._route(model, key)
            if model.prefill is not None:  # the same model and engine: its names, adapters and metrics hold there too
                prefill = model.prefill
                route.prefill = self._route(dataclasses.replace(
                    model, backends=prefill.backends, kubernetes=prefill.kubernetes, health_path=prefill.health_path,
                    prefill=None), key)
            if model.candidate is not None:  # the same model again: names, adapters, metrics and key
                candidate = model.candidate
                assert model.prefill is None, "config.parse refuses a disaggregated model with a candidate"
                route.candidate = self._route(dataclasses.replace(
                    model, name=model.name + CANDIDATE_SUFFIX, backends=candidate.backends,
                    kubernetes=candidate.kubernetes, health_path=candidate.health_path, candidate=None), key)
                route.candidate.is_candidate = True
            self.routes[model.name] = route
            for name in (model.served_name, *model.aliases):
                self.names[name] = (route, model.served_name)
            for name in (*model.adapters, *(adapter for adapter, _ in model.runtime_adapters)):
                self.names[name] = (route, name)  # the engine serves an adapter under its own name

    def _route(self, model: ModelRoute, key: str | None) -> Route:
        strategy = STRATEGIES[model.strategy](load_factor=self.config.load_factor,
                                              block_chars=self.config.prefix_block_chars,
                                              session_header=model.session_header, cache_chars=model.cache_chars)
        # a static replica is ready once its first health check (at start) passes
        backends = {u: Backend.from_url(u, healthy=False) for u in model.backends}
        return Route(model, strategy, backends, HoldQueue(self.config.hold_queue), key,
                     frozenset(name for name, _ in model.runtime_adapters))

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self, host: str | None = None, port: int | None = None) -> asyncio.base_events.Server:
        loop = self.loop = asyncio.get_running_loop()
        server = await loop.create_server(self.listener.protocol, host or self.config.host,
                                          self.config.port if port is None else port, reuse_address=True,
                                          backlog=1024)
        for role in (role for route in self.routes.values() for role in route.replica_sets()):
            self._spawn(self._watch_health(role))
            if role.config.kubernetes is not None:
                from stackc_router.discovery import watch_endpoint_slices

                self._spawn(watch_endpoint_slices(role.config.kubernetes, lambda urls, r=role: self.set_backends(r, urls)))
        return server

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def close(self) -> None:
        self.listener.close()
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for route in self.routes.values():
            for role in route.replica_sets():
                for backend in role.backends.values():
                    backend.close_idle()

    def set_backends(self, route: Route, urls: Iterable[str]) -> None:
        """Discovery results: keep the state of replicas that stay, drop the ones that left.

        A new one is ready at once (its EndpointSlice says its readiness probe passed), so
        requests held for the model go to it without waiting for a health check.
        """
        wanted = {u.rstrip("/") for u in urls}
        for gone in set(route.backends) - wanted:
            route.backends.pop(gone).close_idle()
        for url in sorted(wanted - set(route.backends)):
            route.backends[url] = Backend.from_url(url)
        self._release_held(route)

    def readiness(self) -> tuple[bool, dict[str, dict[str, int]]]:
        """Ready while some model can be served: one has a ready replica, or requests are held
        until one has (scale from zero needs the router ready while every model sleeps).

        The detail, per model (primary served name): ready and known replicas, held requests, for a
        disaggregated model its prefill role's replicas, and for a model with a candidate version that
        version's replicas and held requests. The candidate never counts for readiness: a canary
        without a ready replica leaves its model served by the stable version.
        """
        models: dict[str, dict] = {}
        for route in self.routes.values():
            models[route.config.served_name] = detail = {"ready": route.ready_replicas(), "total": len(route.backends),
                                                         "pending": len(route.held)}
            if route.prefill is not None:
                detail["prefill"] = {"ready": route.prefill.ready_replicas(), "total": len(route.prefill.backends)}
            if route.candidate is not None:
                detail["candidate"] = {"ready": route.candidate.ready_replicas(), "total": len(route.candidate.backends),
                                       "pending": len(route.candidate.held)}
        holding = self.config.hold_queue > 0
        servable = (all(role.ready_replicas() for role in route.roles()) for route in self.routes.values())
        return holding or any(servable), models

    # -- health and load ----------------------------------------------------------------------
    async def _watch_health(self, route: Route) -> None:
        """Checks every ``health_interval_s``; more often while the model has no ready replica,
        so a starting one gets the held requests soon after it answers."""
        while True:
            await asyncio.gather(*(self._check(route, b) for b in list(route.backends.values())))
            interval = route.config.health_interval_s
            if not route.ready_replicas():
                interval = min(interval, self.config.hold_health_interval_s)
            await asyncio.sleep(interval)

    async def _check(self, route: Route, backend: Backend) -> None:
        status, _ = await simple_get(backend, route.config.health_path, self.config.connect_timeout_s, route.upstream_key)
        backend.healthy = status == 200
        if backend.healthy:
            backend.failures = 0
            self._release_held(route)
        else:
            backend.adapters.clear()  # when it answers again it may have restarted without them
        model = route.config
        missing = {name for name, _ in model.runtime_adapters} - backend.adapters
        if missing and backend.healthy and not backend.loading_adapters:
            backend.loading_adapters = True  # in a task of its own: a slow download never delays health checks
            self._spawn(self._load_adapters(route, backend))
        if model.metrics_path and (model.waiting_metric or model.kv_capacity_metric) and backend.healthy:
            status, text = await simple_get(backend, model.metrics_path, self.config.connect_timeout_s,
                                            route.upstream_key, model.metrics_port)
            if status == 200:
                if model.waiting_metric:
                    backend.waiting = metric_value(text, model.waiting_metric)
                if model.kv_capacity_metric:  # read each time: a restarted replica may have another cache
                    backend.cache_chars = capacity_chars(text, model.kv_capacity_metric, model.kv_capacity_labels)

    def _release_held(self, role: Route) -> None:
        """Held requests go on once each role of their model (version) has a replica for them."""
        route = role if role.is_candidate else self.routes[role.config.name]
        if len(route.held) and all(self._candidates(r) for r in route.roles()):
            route.held.release()

    def _candidates(self, route: Route, adapter: str | None = None) -> list[Backend]:
        """Available replicas (with ``adapter`` loaded, for a run-time adapter); when all are ejected,
        the healthy ones anyway (Envoy's panic routing); none when no replica is ready: the request
        is held."""
        now = time.monotonic()
        backends = [b for b in route.backends.values() if adapter is None or adapter in b.adapters]
        return [b for b in backends if b.available(now)] or [b for b in backends if b.healthy]

    async def _hold(self, route: Route, adapter: str | None = None) -> list[Backend] | tuple[str, str]:
        """Candidates once a replica is ready, else why not: (reason, message) for the 503."""
        name = adapter or route.config.served_name
        deadline = time.monotonic() + self.config.hold_timeout_s
        while not (candidates := self._candidates(route, adapter)) or (
                route.prefill is not None and not self._candidates(route.prefill, adapter)):
            replica = "prefill replica" if candidates else "candidate replica" if route.is_candidate else "replica"
            if self.config.hold_queue == 0:
                return "no_replica", f"no {replica} of '{name}' is ready"
            try:
                await route.held.wait(deadline - time.monotonic())
            except QueueFull:
                return "queue_full", (f"no {replica} of '{name}' is ready and {self.config.hold_queue} requests "
                                      "already wait for one; retry shortly")
            except TimeoutError:
                return "timeout", (f"no {replica} of '{name}' became ready within {self.config.hold_timeout_s:g} s "
                                   "(it may be starting); retry shortly")
        return candidates

    async def _load_adapters(self, route: Route, backend: Backend) -> None:
        """Load the run-time adapters a healthy replica lacks; one already there counts as loaded.
        Requests held for an adapter go on once a replica has it."""
        try:
            for name, path in route.config.runtime_adapters:
                if name in backend.adapters or route.config.adapter_load_path is None:
                    continue
                status, text = await simple_request(backend, "POST", route.config.adapter_load_path,
                                                    self.config.read_timeout_s, route.upstream_key,
                                                    orjson.dumps({"lora_name": name, "lora_path": path}))
                if backend.healthy and (status == 200 or (status == 400 and "already" in text)):
                    backend.adapters.add(name)
                    self._release_held(route)
        finally:
            backend.loading_adapters = False

    def _failed(self, backend: Backend, error: Exception) -> None:
        if isinstance(error, ConnectionRefusedError):  # nothing listens: down until a health check passes
            backend.healthy = False
            backend.adapters.clear()  # when it answers again it has restarted without them
        backend.failures += 1
        if backend.failures >= self.config.eject_after_failures:
            backend.ejected_until = time.monotonic() + self.config.eject_seconds

    # -- serving -------------------------------------------------------------------------------
    async def handle(self, request: Request, client: ClientConnection) -> None:
        method, path = "GET" if request.method == "HEAD" else request.method, request.path
        if method == "GET" and path == "/health":
            client.respond(request, 200, b'{"status":"ok"}')
        elif method == "GET" and path == "/ready":
            ready, models = self.readiness()
            client.respond(request, 200 if ready else 503, orjson.dumps({"ready": ready, "models": models}))
        elif method == "GET" and path == "/metrics":
            client.respond(request, 200, self.metrics.render(self).encode(), "text/plain; version=0.0.4")
        elif not self._authenticated(request, client):
            return
        elif method == "GET" and path == "/v1/models":
            client.respond(request, 200, self._models())
        elif method == "POST" and path in OPENAI_POSTS:
            await self._proxy(request, client)
        elif path in OPENAI_POSTS or path == "/v1/models":
            client.respond(request, 405, error_body(f"{method} is not allowed on {path}", "invalid_request_error"))
        else:
            client.respond(request, 404, error_body(f"no route for {method} {path}", "invalid_request_error"))

    def _authenticated(self, request: Request, client: ClientConnection) -> bool:
        """True when the request may go on, else it was answered: 401, or 429 when its key holds its
        connections already (docs/router.md, "API keys")."""
        if not self.key_digests:
            return True
        key = presented_key(request.headers.get("authorization", ""))
        given = hashlib.sha256(key.encode()).digest() if key is not None else b""
        matched = None
        for digest in self.key_digests:  # all of them: the time says nothing of which key matched
            if hmac.compare_digest(given, digest):
                matched = digest
        if matched is None:
            client.respond(request, 401, error_body("Incorrect API key provided.", "invalid_request_error",
                                                    "invalid_api_key"), extra_head=b"www-authenticate: Bearer\r\n")
            return False
        if not self.listener.claim(client, matched):
            self.metrics.limit(LIMITED, "connections_per_key")
            client.reject(429, "too many open connections with this API key; reuse or close them",
                          "client_connection_limit")
            return False
        return True

    def _models(self) -> bytes:
        data = []
        for name in sorted(self.names):
            route, served = self.names[name]
            entry: dict[str, Any] = {"id": name, "object": "model", "created": 0, "owned_by": "stackc"}
            if served == name != route.config.served_name:  # an adapter: its base model is the parent, as vLLM says
                entry["parent"] = route.config.served_name
            data.append(entry)
        return orjson.dumps({"object": "list", "data": data})

    async def _proxy(self, request: Request, client: ClientConnection) -> None:
        """Within the client's share of requests in flight (held ones count: a client may not fill the
        hold queue either), by its address and by its API key."""
        address, key, running = client.address, client.api_key, self.client_in_flight
        if running.get(address, 0) >= self.config.max_in_flight_per_address:
            self._too_many(request, client, "in_flight_per_address", "from this address")
            return
        if key is not None and running.get(key, 0) >= self.config.max_in_flight_per_key:
            self._too_many(request, client, "in_flight_per_key", "with this API key")
            return
        running[address] = running.get(address, 0) + 1
        if key is not None:
            running[key] = running.get(key, 0) + 1
        try:
            await self._serve_model(request, client)
        finally:
            _leave(running, address)
            if key is not None:
                _leave(running, key)

    def _too_many(self, request: Request, client: ClientConnection, limit: str, whose: str) -> None:
        self.metrics.limit(LIMITED, limit)
        client.respond(request, 429, error_body(f"too many requests in flight {whose}; retry when one is done",
                                                error_kind(429), "client_in_flight_limit"))

    async def _serve_model(self, request: Request, client: ClientConnection) -> None:
        try:
            payload = orjson.loads(request.body)  # bounded nesting; measured 4-6x faster than json (performance.md)
        except orjson.JSONDecodeError:
            payload = None
        if not isinstance(payload, dict):
            client.respond(request, 400, error_body("request body is not a valid JSON object", "invalid_request_error"))
            return
        model = payload.get("model")
        if not isinstance(model, str) or not model:
            client.respond(request, 400, error_body("you must provide a model parameter", "invalid_request_error",
                                                    param="model"))
            return
        if model not in self.names:
            known = ", ".join(sorted(self.names))
            client.respond(request, 404, error_body(f"The model '{model}' does not exist. Known models: {known}",
                                                    "invalid_request_error", "model_not_found", "model"))
            return
        stable, served = self.names[model]
        # a run-time adapter goes only to replicas the router loaded it into (held until one has it)
        adapter = model if model in stable.runtime_adapters else None
        body = request.body
        if served != model:
            payload["model"] = served
            body = orjson.dumps(payload)
        route, shared = self._version(stable, request, adapter)
        if await self._serve_version(route, served, adapter, request, payload, body, client, shared) is None:
            # the candidate's share failed before anything reached the client: the stable version serves it
            # (not copied to the candidate again)
            await self._serve_version(stable, served, adapter, request, payload, body, client, False, mirror=False)

    async def _serve_version(self, route: Route, served: str, adapter: str | None, request: Request,
                             payload: dict[str, Any], body: bytes, client: ClientConnection,
                             fallback: bool, mirror: bool = True) -> bool | None:
        """``_forward``'s answer; with ``fallback`` (the candidate's share), None instead of the
        router's error when every replica failed before the response started. ``mirror``: a copy
        goes to the candidate when its config says so."""
        candidates = await self._hold(route, adapter)
        if isinstance(candidates, tuple):
            reason, message = candidates
            self.metrics.reject(served + CANDIDATE_SUFFIX if route.is_candidate else served, reason)
            # retrying soon re-enters the queue, so the pending count stays up while the model starts
            retry_after = math.ceil(self.config.hold_health_interval_s)
            client.respond(request, 503, error_body(message, "server_error", "model_not_ready", "model"),
                           extra_head=b"retry-after: %d\r\n" % retry_after)
            return False
        if self.in_flight >= self.config.max_in_flight:
            self.metrics.limit(LIMITED, "in_flight")
            client.respond(request, 429, error_body("the router is at its concurrency limit; retry shortly",
                                                    "rate_limit_exceeded", "rate_limit_exceeded"))
            return False
        ordered = route.strategy.order(candidates, payload, request.headers)[: 1 + self.config.retries]
        chosen = route.config.candidate
        if mirror and route.candidate is not None and chosen is not None and chosen.mirror:
            self._mirror(route.candidate, adapter, request, payload, body)
        self.in_flight += 1
        try:
            if route.prefill is not None and request.path in GENERATING_POSTS:
                await self._disaggregated(route, adapter, ordered, request, payload, client)
                return True
            return await self._forward(route, ordered, request, body, client, fallback=fallback)
        finally:
            self.in_flight -= 1

    def _version(self, route: Route, request: Request, adapter: str | None) -> tuple[Route, bool]:
        """The version of the model a request goes to, and whether it is the candidate's share.

        The candidate when the request carries its header (held, if need be, until it has a ready
        replica); else, while the candidate has a ready replica, exactly ``weight`` of every 100
        requests, spread evenly (its share); else the stable version.
        """
        candidate, chosen = route.candidate, route.config.candidate
        if candidate is None or chosen is None:
            return route, False
        if chosen.header is not None and request.headers.get(chosen.header.lower()) == chosen.header_value:
            return candidate, False
        if chosen.weight and self._candidates(candidate, adapter):
            previous = route.split
            route.split = previous % 100 + 1  # request n of 100 goes to the candidate when n*w/100 passes a whole number
            if route.split * chosen.weight // 100 != previous % 100 * chosen.weight // 100:
                return candidate, True
        return route, False

    def _mirror(self, candidate: Route, adapter: str | None, request: Request, payload: dict[str, Any],
                body: bytes) -> None:
        """A copy of ``request`` to a candidate replica in the background, its answer dropped; none
        (counted) while no candidate replica is ready or ``MAX_MIRRORED`` copies are in flight."""
        replicas = self._candidates(candidate, adapter)
        if not replicas or candidate.mirroring >= MAX_MIRRORED:
            self.metrics.drop(candidate.config.served_name + CANDIDATE_SUFFIX, "busy" if replicas else "no_replica")
            return
        backend = candidate.strategy.order(replicas, payload, request.headers)[0]
        candidate.mirroring += 1
        self._spawn(self._mirrored(candidate, backend, request, body))

    async def _mirrored(self, candidate: Route, backend: Backend, request: Request, body: bytes) -> None:
        """One copy, counted and timed as the candidate's own requests, failures as its failures."""
        model = candidate.config.name
        started = time.monotonic()
        backend.in_flight += 1
        self.metrics.count(REQUESTS, model, backend.url)
        upstream = None
        try:
            upstream = await backend.exchange(_upstream_head(request, backend, len(body), candidate.upstream_key) + body,
                                              self.config.connect_timeout_s, self.config.read_timeout_s, _dropped)
            status = upstream.status
            backend.release(upstream)
            upstream = None
            if status < 500:
                backend.failures = 0
            else:
                self.metrics.count(ERRORS, model, backend.url)
            self.metrics.observe(LATENCY, model, backend.url, time.monotonic() - started)
        except (OSError, TimeoutError, UpstreamError) as error:
            self._failed(backend, error)
            self.metrics.count(ERRORS, model, backend.url)
        finally:
            backend.in_flight -= 1
            candidate.mirroring -= 1
            if upstream is not None:
                upstream.close()

    async def _disaggregated(self, route: Route, adapter: str | None, decodes: list[Backend], request: Request,
                             payload: dict[str, Any], client: ClientConnection) -> None:
        """Prefill on one role, decode on the other, joined as the model's protocol says; the client
        gets the decode replica's answer, or the prefill's when it refused the request."""
        role = route.prefill
        assert role is not None and route.config.prefill is not None
        protocol = route.config.prefill.protocol
        prefills = role.strategy.order(self._candidates(role, adapter), payload, request.headers)[: 1 + self.config.retries]
        try:
            if protocol == "bootstrap":
                await self._bootstrap(route, prefills, decodes, request, payload, client)
                return
            first = {**payload, "stream": False, "max_tokens": 1}  # the prompt's KV cache, and one token
            first.pop("stream_options", None)
            if "max_completion_tokens" in payload:
                first["max_completion_tokens"] = 1
            if protocol == "kv_transfer_params":
                first["kv_transfer_params"] = REMOTE_DECODE
            answer = await self._prefilled(role, prefills, request, orjson.dumps(first))
            params = _kv_transfer_params(answer) if protocol == "kv_transfer_params" else None
            await self._forward(route, decodes, request,
                                orjson.dumps({**payload, "kv_transfer_params": params} if params else payload), client)
        except PrefillRefused as refused:
            client.respond(request, refused.status, refused.body)
        except PrefillFailed as failed:
            client.respond(request, 504 if isinstance(failed.error, TimeoutError) else 502,
                           error_body(f"no prefill replica could prefill the request: {failed}", "server_error",
                                      "upstream_error"))

    async def _bootstrap(self, route: Route, prefills: list[Backend], decodes: list[Backend], request: Request,
                         payload: dict[str, Any], client: ClientConnection) -> None:
        """SGLang's protocol: the same request to a prefill and a decode replica at once, both naming
        the prefill replica and a fresh room, where the decode replica fetches the KV cache from.

        A prefill replica that fails before the decode replica answers takes the decode request down
        with it (its room will never be filled): both go again, to the next prefill replica.
        """
        assert route.prefill is not None and route.config.prefill is not None
        port = route.config.prefill.bootstrap_port
        failure = PrefillFailed(UpstreamError("no prefill replica is ready"))
        for backend in prefills:
            body = orjson.dumps({**payload, "bootstrap_host": backend.host, "bootstrap_port": port,
                                 "bootstrap_room": random.getrandbits(63)})
            prefill = asyncio.ensure_future(self._prefilled(route.prefill, [backend], request, body))
            prefill.add_done_callback(_retrieve)
            try:
                if await self._forward(route, decodes, request, body, client, prefill):
                    # the client has its answer and may leave: the prefill's is read to its end (timed, a
                    # failure counted) by the router
                    self.tasks.add(prefill)
                    prefill.add_done_callback(self.tasks.discard)
                return
            except PrefillFailed as failed:
                failure = failed
            finally:
                if prefill not in self.tasks:
                    prefill.cancel()  # failed, refused, the decode side failed, or the client left
        raise failure

    async def _prefilled(self, role: Route, prefills: list[Backend], request: Request, body: bytes) -> bytes:
        """A prefill replica's answer to ``body``, trying the next one when one fails."""
        model = role.config.name
        failure: Exception = UpstreamError("no prefill replica is ready")
        for backend in prefills:
            started = time.monotonic()
            backend.in_flight += 1
            upstream = None
            try:
                upstream = await backend.exchange(_upstream_head(request, backend, len(body), role.upstream_key) + body,
                                                  self.config.connect_timeout_s, self.config.read_timeout_s,
                                                  UpstreamConnection.response_end)
                status, answer = upstream.status, b"".join(upstream.body)
                backend.release(upstream)
                upstream = None
                if status >= 500:
                    raise UpstreamError(f"status {status}")
            except (OSError, TimeoutError, UpstreamError) as error:
                self._failed(backend, error)
                self.metrics.count(PREFILL_ERRORS, model, backend.url)
                failure = error
                continue
            finally:
                backend.in_flight -= 1
                if upstream is not None:  # failed, or the request was abandoned: the replica stops
                    upstream.close()
            if not 200 <= status < 300:
                raise PrefillRefused(status, answer)
            backend.failures = 0
            self.metrics.observe(PREFILL_LATENCY, model, backend.url, time.monotonic() - started)
            return answer
        raise PrefillFailed(failure)

    async def _forward(self, route: Route, ordered: list[Backend], request: Request, body: bytes,
                       client: ClientConnection, prefill: asyncio.Future | None = None,
                       fallback: bool = False) -> bool | None:
        """True once a replica's response was relayed; False when the client got the router's error.

        ``prefill``: the prefill running beside this request (``bootstrap``); its failure before the
        response starts is raised here. ``fallback``: the request may go elsewhere (a candidate
        version's share), so when the last replica fails before the response starts, or answers a
        5xx, nothing is answered and the result is None.
        """
        model = route.config.name
        for attempt, backend in enumerate(ordered):
            last = attempt == len(ordered) - 1
            if attempt:
                self.metrics.count(RETRIES, model, backend.url)
            started = time.monotonic()
            backend.in_flight += 1
            self.metrics.count(REQUESTS, model, backend.url)
            upstream = None
            try:
                try:
                    upstream = await backend.exchange(
                        _upstream_head(request, backend, len(body), route.upstream_key) + body,
                        self.config.connect_timeout_s, self.config.read_timeout_s,
                        UpstreamConnection.response_start if prefill is None
                        else functools.partial(_start_unless_prefill_fails, prefill=prefill))
                    if upstream.status >= 500 and (not last or fallback):
                        raise UpstreamError(f"status {upstream.status}")
                except (OSError, TimeoutError, UpstreamError) as error:
                    self._failed(backend, error)
                    self.metrics.count(ERRORS, model, backend.url)
                    if not last:
                        continue
                    if fallback:
                        return None
                    status = 504 if isinstance(error, TimeoutError) else 502
                    client.respond(request, status, error_body(f"upstream replica failed: {str(error) or type(error).__name__}",
                                                               "server_error", "upstream_error"))
                    return False
                try:
                    await _relay(request, upstream, client)
                except (TimeoutError, UpstreamError) as error:
                    self._failed(backend, error)
                    self.metrics.count(ERRORS, model, backend.url)
                    client.close()  # the response was cut: an error event (SSE) and the close are the signals left
                    return False
                if upstream.first_byte_at is not None:
                    self.metrics.observe(TTFT, model, backend.url, upstream.first_byte_at - started)
                if upstream.status < 500:
                    backend.failures = 0
                else:
                    self.metrics.count(ERRORS, model, backend.url)
                backend.release(upstream)
                upstream = None
                self.metrics.observe(LATENCY, model, backend.url, time.monotonic() - started)
                return True
            finally:
                backend.in_flight -= 1
                if upstream is not None:  # failed, or the client went away (cancelled): the replica stops
                    upstream.close()
        return False


async def _start_unless_prefill_fails(upstream: UpstreamConnection, *, prefill: asyncio.Future) -> None:
    """The start of the decode replica's response (``response_start``), or the prefill's failure when
    that comes first (the decode replica would wait for its KV cache in vain)."""
    start = asyncio.ensure_future(upstream.response_start())
    try:
        await asyncio.wait((start, prefill), return_when=asyncio.FIRST_COMPLETED)
        if not start.done() and prefill.exception() is not None:
            raise prefill.exception()
        await start
    finally:
        start.cancel()


async def _dropped(upstream: UpstreamConnection) -> None:
    """A mirrored copy's response read to its end and thrown away as it arrives, however long."""
    await upstream.response_head()
    upstream.attach(_discard)
    await upstream.response_end()


def _discard(_: bytes) -> None:
    pass


def _retrieve(task: asyncio.Future) -> None:
    """A prefill's failure is counted where it happens; retrieved here so asyncio does not log it as lost."""
    if not task.cancelled():
        task.exception()


def _kv_transfer_params(answer: bytes) -> dict[str, Any] | None:
    """What a vLLM prefill replica answered for the decode replica to fetch its KV cache (None: nothing)."""
    try:
        params = orjson.loads(answer).get("kv_transfer_params")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    return params if isinstance(params, dict) and params else None


async def _relay(request: Request, upstream: UpstreamConnection, client: ClientConnection) -> None:
    """Pass the response on as it arrives: whole when it is already here, else streamed.

    An event stream the replica cuts (it died, or fell silent for ``read_timeout_s``) ends with an
    OpenAI-style error event, as vLLM ends a stream that fails, when its framing leaves room for one.
    """
    head = [b"HTTP/1.1 %d %s\r\n" % (upstream.status, REASONS.get(upstream.status, "Status").encode())]
    length = None
    event_stream = False
    for name, value in upstream.headers:
        lower = name.lower()
        if lower not in HOP_BY_HOP:
            head.append(b"%s: %s\r\n" % (name, value))
            if lower == b"content-type":
                event_stream = value.lower().startswith(b"text/event-stream")
        elif lower == b"content-length":
            length = value
    keep_alive = request.keep_alive
    if upstream.complete:
        body = b"".join(upstream.body)
        head.append(b"content-length: %d\r\n" % len(body))
    elif length is not None:
        head.append(b"content-length: %s\r\n" % length)
    elif request.http11:
        head.append(b"transfer-encoding: chunked\r\n")
    else:
        keep_alive = False  # an HTTP/1.0 client reads to the end of the connection
    head.append(b"connection: keep-alive\r\n\r\n" if keep_alive else b"connection: close\r\n\r\n")
    if upstream.complete:
        client.write(b"".join(head) + body)
    else:
        rechunk = length is None and request.http11
        write = client.write
        sink = (lambda chunk: write(_chunk(chunk))) if rechunk else write
        client.relay = upstream
        if client.write_paused:
            upstream.pause_reading()
        early = upstream.attach(sink)
        head += map(_chunk, early) if rechunk else early
        write(b"".join(head))  # the head and what came with it in one segment
        try:
            await upstream.response_end()
        except (TimeoutError, UpstreamError) as error:
            if event_stream and length is None:
                event = _error_event(f"the replica failed mid-stream: {str(error) or type(error).__name__}",
                                     upstream.last_body)
                write(_chunk(event) + b"0\r\n\r\n" if rechunk else event)
            raise
        if rechunk:
            write(b"0\r\n\r\n")
    if not keep_alive:
        client.close()


def _error_event(message: str, relayed: bytes) -> bytes:
    """``data: {"error": …}``, after a blank line unless ``relayed`` (the last bytes sent) ended an event."""
    event = b"data: %s\n\n" % error_body(message, "server_error", "upstream_error")
    return event if not relayed or relayed.endswith((b"\n\n", b"\r\n\r\n", b"\r\r")) else b"\n\n" + event


def _leave(running: dict[str | bytes, int], client: str | bytes) -> None:
    if running[client] == 1:
        del running[client]  # clients come and go: the map holds only those with requests
    else:
        running[client] -= 1


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def _upstream_head(request: Request, backend: Backend, length: int, key: str | None) -> bytes:
    """Only fields the router sets, plus Accept when it is plain text: nothing of the client's head passes raw."""
    head = b"POST %s HTTP/1.1\r\nhost: %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n" % (
        request.path.encode("latin-1"), backend.authority.encode(), length)
    accept = request.headers.get("accept")
    if accept is not None and accept.isascii() and accept.isprintable():
        head += b"accept: %s\r\n" % accept.encode()
    if key:
        head += b"authorization: Bearer %s\r\n" % key.encode()
    return head + b"\r\n"


def _read_key(path: str | None) -> str | None:
    if not path:
        return None
    with open(path, encoding="utf-8") as handle:
        return handle.read().strip() or None
