"""The router's YAML config, validated at start: every problem reported with its path, exit 2."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

#: characters per token of the prompts an engine caches: ~4 for English text and code with the
#: common BPE tokenizers (Llama 3, GPT-4's cl100k); fewer for other scripts, so a guess on the short side
CHARS_PER_TOKEN = 4

STRATEGIES = ("prefix", "least_loaded", "session", "round_robin")
#: how a prefill/decode-disaggregated model's two roles are joined (docs/router.md, "Prefill/decode")
PREFILL_PROTOCOLS = ("kv_transfer_params", "prefill_then_decode", "bootstrap")
#: RFC 9110 5.1: a field name is a token
HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+", re.ASCII)


class ConfigError(Exception):
    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


@dataclass(frozen=True)
class KubernetesDiscovery:
    namespace: str
    service: str
    port: int


@dataclass(frozen=True)
class PrefillRoute:
    """The prefill role of a disaggregated model: its replicas, and how the router joins them to decode."""

    protocol: str
    backends: tuple[str, ...] = ()
    kubernetes: KubernetesDiscovery | None = None
    #: the prefill servers' bootstrap port, sent to both roles (``bootstrap``)
    bootstrap_port: int | None = None
    health_path: str = "/health"


@dataclass(frozen=True)
class CandidateRoute:
    """A model's candidate version: its own replicas, and which requests it gets (docs/router.md,
    "Model versions (canary)")."""

    backends: tuple[str, ...] = ()
    kubernetes: KubernetesDiscovery | None = None
    health_path: str = "/health"
    weight: int = 0  # percent (0-100) of the model's requests
    header: str | None = None  # requests carrying this header ...
    header_value: str = "true"  # ... with this value go to the candidate only
    #: a copy of each request the stable version answers goes to the candidate; its answer is dropped
    mirror: bool = False


@dataclass(frozen=True)
class ModelRoute:
    name: str
    served_name: str
    aliases: tuple[str, ...] = ()
    strategy: str = "prefix"
    session_header: str = "x-session-id"
    backends: tuple[str, ...] = ()
    kubernetes: KubernetesDiscovery | None = None
    health_path: str = "/health"
    health_interval_s: float = 5.0
    metrics_path: str | None = None
    #: the replicas' metrics port when it isn't the one requests go to (Triton's, Ray's, an engine behind a proxy)
    metrics_port: int | None = None
    running_metric: str | None = None
    waiting_metric: str | None = None
    kv_usage_metric: str | None = None
    kv_capacity_metric: str | None = None  # the KV cache's capacity in tokens, times ``kv_capacity_labels``' values
    kv_capacity_labels: tuple[str, ...] = ()
    upstream_api_key_file: str | None = None
    cache_chars: int = 1_000_000  # prompt characters a replica's prefix cache holds when it publishes no capacity
    #: LoRA adapters the engine serves from its start, under their own names (never rewritten)
    adapters: tuple[str, ...] = ()
    #: adapters the router loads into each replica once it is healthy: name -> path, through a POST
    #: of ``{"lora_name", "lora_path"}`` to ``adapter_load_path``
    runtime_adapters: tuple[tuple[str, str], ...] = ()
    adapter_load_path: str | None = None
    #: a disaggregated model's prefill role; ``backends``/``kubernetes`` above are then its decode role
    prefill: PrefillRoute | None = None
    #: a second version of the model beside this one, the stable version
    candidate: CandidateRoute | None = None


@dataclass(frozen=True)
class Config:
    models: tuple[ModelRoute, ...]
    host: str = "127.0.0.1"
    port: int = 8080
    max_body_bytes: int = 10 * 1024 * 1024
    max_in_flight: int = 1024
    max_connections: int = 4096  # lowered to what the open-file limit allows
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 600.0  # the longest a replica may stay silent, before and within a response
    header_timeout_s: float = 10.0  # from a connection's (or request's) first byte to the end of its head
    body_timeout_s: float = 60.0
    idle_timeout_s: float = 75.0  # a keep-alive connection between requests
    #: one client's share, by its address and by its API key (docs/router.md, "Per-client limits"): half the
    #: router's, so a client that takes all it may still leaves half to everyone else
    max_connections_per_address: int = 2048  # lowered with max_connections, in proportion
    max_in_flight_per_address: int = 512
    max_connections_per_key: int = 2048
    max_in_flight_per_key: int = 512
    max_headers: int = 100  # request header fields; more: 431 (Envoy's, Apache's and Tomcat's default)
    api_keys_file: str | None = None
    retries: int = 2
    eject_after_failures: int = 3
    eject_seconds: float = 10.0
    prefix_block_chars: int = 1024
    load_factor: float = 1.25
    #: requests held per model while it has no ready replica; 0 answers them 503 at once
    hold_queue: int = 100
    #: how long a held request waits for a ready replica before its 503 (docs/router.md says why 60)
    hold_timeout_s: float = 60.0
    #: health checks of a model with no ready replica, so a starting one is noticed soon
    hold_health_interval_s: float = 1.0
    extra: dict[str, Any] = field(default_factory=dict)


#: limits of one client and of a request head, each at least 1
_POSITIVE_LIMITS = ("max_connections_per_address", "max_in_flight_per_address", "max_connections_per_key",
                    "max_in_flight_per_key", "max_headers")


def _check(problems: list[str], table: Any, path: str, allowed: set[str]) -> dict:
    if not isinstance(table, dict):
        problems.append(f"{path or 'config'}: expected a mapping, got {type(table).__name__}")
        return {}
    for key in sorted(set(table) - allowed):
        problems.append(f"{path + '.' if path else ''}{key}: unknown key (expected one of: {', '.join(sorted(allowed))})")
    return table


def _typed(problems: list[str], table: dict, key: str, path: str, kind: type | tuple, default: Any) -> Any:
    value = table.get(key, default)
    if value is default:
        return value
    if isinstance(value, bool) and kind is not bool or not isinstance(value, kind):
        expected = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
        problems.append(f"{path}.{key}: expected {expected}, got {value!r}".lstrip("."))
        return default
    return value


def _replicas(problems: list[str], table: dict, path: str) -> tuple[tuple[str, ...], KubernetesDiscovery | None]:
    """A role's replicas: listed ``backends``, or ``discovery.kubernetes`` (its Service's EndpointSlices)."""
    backends = _typed(problems, table, "backends", path, list, [])
    for index, url in enumerate(backends):
        if not isinstance(url, str) or not url.startswith("http://"):
            problems.append(f"{path}.backends[{index}]: expected an http:// URL, got {url!r}")
    discovery = _check(problems, table.get("discovery", {}), f"{path}.discovery", {"kubernetes"})
    kubernetes = None
    if "kubernetes" in discovery:
        k8s = _check(problems, discovery["kubernetes"], f"{path}.discovery.kubernetes", {"namespace", "service", "port"})
        try:
            kubernetes = KubernetesDiscovery(str(k8s["namespace"]), str(k8s["service"]), int(k8s["port"]))
        except (KeyError, TypeError, ValueError):
            problems.append(f"{path}.discovery.kubernetes: needs namespace, service and port")
    if not backends and kubernetes is None:
        problems.append(f"{path}: needs backends or discovery.kubernetes")
    return tuple(u.rstrip("/") for u in backends if isinstance(u, str)), kubernetes


def _prefill(problems: list[str], raw: Any, path: str) -> PrefillRoute:
    table = _check(problems, raw, path, {"protocol", "backends", "discovery", "bootstrap_port", "health"})
    protocol = _typed(problems, table, "protocol", path, str, None)
    if protocol not in PREFILL_PROTOCOLS:
        problems.append(f"{path}.protocol: expected one of {', '.join(PREFILL_PROTOCOLS)}, got {protocol!r}")
    backends, kubernetes = _replicas(problems, table, path)
    port = _typed(problems, table, "bootstrap_port", path, int, None)
    if port is not None and not 1 <= port <= 65535:
        problems.append(f"{path}.bootstrap_port: expected a port (1-65535), got {port}")
    if protocol == "bootstrap" and port is None:
        problems.append(f"{path}.bootstrap_port: the bootstrap protocol needs the prefill servers' bootstrap port")
    elif protocol in PREFILL_PROTOCOLS and protocol != "bootstrap" and "bootstrap_port" in table:
        problems.append(f"{path}.bootstrap_port: only the bootstrap protocol uses it (protocol is {protocol})")
    health = _check(problems, table.get("health", {}), f"{path}.health", {"path"})
    health_path = _typed(problems, health, "path", f"{path}.health", str, "/health")
    return PrefillRoute(str(protocol), backends, kubernetes, port, health_path)  # used only when no problem was found


def _candidate(problems: list[str], raw: Any, path: str) -> CandidateRoute:
    table = _check(problems, raw, path, {"backends", "discovery", "health", "weight", "header", "mirror"})
    backends, kubernetes = _replicas(problems, table, path)
    health = _check(problems, table.get("health", {}), f"{path}.health", {"path"})
    health_path = _typed(problems, health, "path", f"{path}.health", str, "/health")
    weight = _typed(problems, table, "weight", path, int, 0)
    if not 0 <= weight <= 100:
        problems.append(f"{path}.weight: expected a percentage of the model's requests (0-100), got {weight}")
    header, value = None, "true"
    if "header" in table:
        selector = _check(problems, table["header"], f"{path}.header", {"name", "value"})
        header = _typed(problems, selector, "name", f"{path}.header", str, None)
        value = _typed(problems, selector, "value", f"{path}.header", str, "true")
        if header is None or not HEADER_NAME.fullmatch(header):
            problems.append(f"{path}.header.name: expected an HTTP field name (a token, such as x-candidate), "
                            f"got {header!r}")
        if not value or not value.isascii() or not value.isprintable() or value != value.strip():
            problems.append(f"{path}.header.value: expected a field value (printable ASCII, no leading or "
                            f"trailing space), got {value!r}")
    mirror = _typed(problems, table, "mirror", path, bool, False)
    return CandidateRoute(backends, kubernetes, health_path, weight, header, value, mirror)


def parse(data: Any) -> Config:
    """A Config from loaded YAML, or ConfigError listing every problem."""
    problems: list[str] = []
    root = _check(problems, data, "", {"version", "listen", "limits", "hold", "auth", "models"})
    if root.get("version", 1) != 1:
        problems.append(f"version: unsupported config version {root.get('version')!r} (expected 1)")
    listen = _check(problems, root.get("listen", {}), "listen", {"host", "port"})
    limits = _check(problems, root.get("limits", {}), "limits", {
        "max_body_bytes", "max_in_flight", "max_connections", "connect_timeout_s", "read_timeout_s",
        "header_timeout_s", "body_timeout_s", "idle_timeout_s", "retries", *_POSITIVE_LIMITS})
    hold = _check(problems, root.get("hold", {}), "hold", {"queue", "timeout_s", "health_interval_s"})
    auth = _check(problems, root.get("auth", {}), "auth", {"api_keys_file"})
    models_table = root.get("models")
    if not isinstance(models_table, dict) or not models_table:
        problems.append("models: expected a mapping with at least one model")
        models_table = {}
    routes = []
    for name, raw in sorted(models_table.items()):
        path = f"models.{name}"
        table = _check(problems, raw, path, {"served_name", "aliases", "adapters", "runtime_adapters", "strategy",
                                             "session", "backends", "discovery", "health", "metrics",
                                             "upstream_auth", "cache_chars", "prefill", "candidate"})
        strategy = _typed(problems, table, "strategy", path, str, "prefix")
        if strategy not in STRATEGIES:
            problems.append(f"{path}.strategy: {strategy!r} is not one of {', '.join(STRATEGIES)}")
        backends, kubernetes = _replicas(problems, table, path)
        session = _check(problems, table.get("session", {}), f"{path}.session", {"header"})
        health = _check(problems, table.get("health", {}), f"{path}.health", {"path", "interval_s"})
        metrics = _check(problems, table.get("metrics", {}), f"{path}.metrics", {"path", "port", "running", "waiting",
                                                                                "kv_usage", "kv_capacity",
                                                                                "kv_capacity_labels"})
        metrics_port = _typed(problems, metrics, "port", f"{path}.metrics", int, None)
        if metrics_port is not None and not 0 < metrics_port < 65536:
            problems.append(f"{path}.metrics.port: {metrics_port} is not a port number (1-65535)")
        upstream = _check(problems, table.get("upstream_auth", {}), f"{path}.upstream_auth", {"api_key_file"})
        aliases = _typed(problems, table, "aliases", path, list, [])
        adapters = _typed(problems, table, "adapters", path, list, [])
        runtime = _check(problems, table.get("runtime_adapters", {}), f"{path}.runtime_adapters",
                         {"endpoint", "adapters"})
        loaded = _typed(problems, runtime, "adapters", f"{path}.runtime_adapters", dict, {})
        endpoint = _typed(problems, runtime, "endpoint", f"{path}.runtime_adapters", str, None)
        if loaded and not (endpoint or "").startswith("/"):
            problems.append(f"{path}.runtime_adapters.endpoint: expected the engine's path for loading adapters")
        capacity_labels = _typed(problems, metrics, "kv_capacity_labels", f"{path}.metrics", list, [])
        routes.append(ModelRoute(
            name=name, served_name=str(table.get("served_name", name)), aliases=tuple(map(str, aliases)),
            adapters=tuple(map(str, adapters)),
            runtime_adapters=tuple((str(n), str(p)) for n, p in sorted(loaded.items())), adapter_load_path=endpoint,
            strategy=strategy, session_header=str(session.get("header", "x-session-id")).lower(),
            backends=backends, kubernetes=kubernetes,
            health_path=str(health.get("path", "/health")),
            health_interval_s=float(_typed(problems, health, "interval_s", f"{path}.health", (int, float), 5.0)),
            metrics_path=metrics.get("path"), metrics_port=metrics_port, running_metric=metrics.get("running"),
            waiting_metric=metrics.get("waiting"), kv_usage_metric=metrics.get("kv_usage"),
            kv_capacity_metric=metrics.get("kv_capacity"), kv_capacity_labels=tuple(map(str, capacity_labels)),
            upstream_api_key_file=upstream.get("api_key_file"),
            cache_chars=_typed(problems, table, "cache_chars", path, int, 1_000_000),
            prefill=_prefill(problems, table["prefill"], f"{path}.prefill") if "prefill" in table else None,
            candidate=_candidate(problems, table["candidate"], f"{path}.candidate") if "candidate" in table else None,
        ))
        if "prefill" in table and "candidate" in table:
            problems.append(f"{path}.candidate: a prefill/decode-disaggregated model (prefill) cannot have a "
                            "candidate version")
    names: dict[str, str] = {}
    for route in routes:
        for alias in (route.served_name, *route.aliases, *route.adapters, *(n for n, _ in route.runtime_adapters)):
            if alias in names and names[alias] != route.name:
                problems.append(f"models.{route.name}: name {alias!r} is also used by models.{names[alias]}")
            names.setdefault(alias, route.name)
    config = Config(
        models=tuple(routes),
        host=str(_typed(problems, listen, "host", "listen", str, "127.0.0.1")),
        port=_typed(problems, listen, "port", "listen", int, 8080),
        max_body_bytes=_typed(problems, limits, "max_body_bytes", "limits", int, 10 * 1024 * 1024),
        max_in_flight=_typed(problems, limits, "max_in_flight", "limits", int, 1024),
        max_connections=_typed(problems, limits, "max_connections", "limits", int, 4096),
        connect_timeout_s=float(_typed(problems, limits, "connect_timeout_s", "limits", (int, float), 5.0)),
        read_timeout_s=float(_typed(problems, limits, "read_timeout_s", "limits", (int, float), 600.0)),
        header_timeout_s=float(_typed(problems, limits, "header_timeout_s", "limits", (int, float), 10.0)),
        body_timeout_s=float(_typed(problems, limits, "body_timeout_s", "limits", (int, float), 60.0)),
        idle_timeout_s=float(_typed(problems, limits, "idle_timeout_s", "limits", (int, float), 75.0)),
        retries=_typed(problems, limits, "retries", "limits", int, 2),
        **{name: _typed(problems, limits, name, "limits", int, getattr(Config, name)) for name in _POSITIVE_LIMITS},
        api_keys_file=auth.get("api_keys_file"),
        hold_queue=_typed(problems, hold, "queue", "hold", int, 100),
        hold_timeout_s=float(_typed(problems, hold, "timeout_s", "hold", (int, float), 60.0)),
        hold_health_interval_s=float(_typed(problems, hold, "health_interval_s", "hold", (int, float), 1.0)),
    )
    for name in _POSITIVE_LIMITS:
        if getattr(config, name) < 1:
            problems.append(f"limits.{name}: expected 1 or more, got {getattr(config, name)}")
    if config.hold_queue < 0:
        problems.append(f"hold.queue: expected 0 or more, got {config.hold_queue}")
    for key in ("timeout_s", "health_interval_s"):
        if getattr(config, f"hold_{key}") <= 0:
            problems.append(f"hold.{key}: expected a positive number of seconds, got {hold[key]!r}")
    if problems:
        raise ConfigError(problems)
    return config


#: always written, so a ConfigMap shows them; the other limits are written when not the default
_SHOWN_LIMITS = ("max_body_bytes", "max_in_flight")
_OTHER_LIMITS = ("max_connections", "connect_timeout_s", "read_timeout_s", "header_timeout_s", "body_timeout_s",
                 "idle_timeout_s", "retries", *_POSITIVE_LIMITS)


def to_data(config: Config) -> dict[str, Any]:
    """The YAML form of ``config``, which ``parse`` reads back as it was.

    The one writer of the format: the router target (its ConfigMap) and ``stackc up`` build a
    Config and write it through here.
    """
    defaults = Config(models=())
    limits = {name: getattr(config, name) for name in _SHOWN_LIMITS}
    limits.update({name: getattr(config, name) for name in _OTHER_LIMITS
                   if getattr(config, name) != getattr(defaults, name)})
    hold: dict[str, Any] = {"queue": config.hold_queue, "timeout_s": config.hold_timeout_s}
    if config.hold_health_interval_s != defaults.hold_health_interval_s:
        hold["health_interval_s"] = config.hold_health_interval_s
    data: dict[str, Any] = {"version": 1, "listen": {"host": config.host, "port": config.port}, "limits": limits,
                            "hold": hold, "models": {route.name: _route_data(route) for route in config.models}}
    if config.api_keys_file:
        data["auth"] = {"api_keys_file": config.api_keys_file}
    return data


def _route_data(route: ModelRoute) -> dict[str, Any]:
    defaults = ModelRoute(name="", served_name="")
    entry: dict[str, Any] = {"served_name": route.served_name, "aliases": list(route.aliases), "strategy": route.strategy}
    if route.adapters:
        entry["adapters"] = list(route.adapters)
    if route.runtime_adapters:
        entry["runtime_adapters"] = {"endpoint": route.adapter_load_path, "adapters": dict(route.runtime_adapters)}
    entry.update(_replicas_data(route.backends, route.kubernetes))
    if route.strategy == "session" or route.session_header != defaults.session_header:
        entry["session"] = {"header": route.session_header}
    entry["health"] = {"path": route.health_path}
    if route.health_interval_s != defaults.health_interval_s:
        entry["health"]["interval_s"] = route.health_interval_s
    if route.metrics_path:
        entry["metrics"] = {"path": route.metrics_path, **{key: value for key, value in (
            ("port", route.metrics_port), ("running", route.running_metric), ("waiting", route.waiting_metric), ("kv_usage", route.kv_usage_metric),
            ("kv_capacity", route.kv_capacity_metric), ("kv_capacity_labels", list(route.kv_capacity_labels)))
            if value}}
    if route.upstream_api_key_file:
        entry["upstream_auth"] = {"api_key_file": route.upstream_api_key_file}
    if route.cache_chars != defaults.cache_chars:
        entry["cache_chars"] = route.cache_chars
    if route.prefill is not None:
        prefill = route.prefill
        entry["prefill"] = {"protocol": prefill.protocol, **_replicas_data(prefill.backends, prefill.kubernetes),
                            "health": {"path": prefill.health_path}}
        if prefill.bootstrap_port is not None:
            entry["prefill"]["bootstrap_port"] = prefill.bootstrap_port
    if route.candidate is not None:
        entry["candidate"] = _candidate_data(route.candidate)
    return entry


def _candidate_data(candidate: CandidateRoute) -> dict[str, Any]:
    """The replicas, and the members that are not the default."""
    entry = _replicas_data(candidate.backends, candidate.kubernetes)
    defaults = CandidateRoute()
    if candidate.health_path != defaults.health_path:
        entry["health"] = {"path": candidate.health_path}
    if candidate.weight != defaults.weight:
        entry["weight"] = candidate.weight
    if candidate.header is not None:
        entry["header"] = {"name": candidate.header, "value": candidate.header_value}
    if candidate.mirror:
        entry["mirror"] = True
    return entry


def _replicas_data(backends: tuple[str, ...], kubernetes: KubernetesDiscovery | None) -> dict[str, Any]:
    entry: dict[str, Any] = {}
    if backends:
        entry["backends"] = list(backends)
    if kubernetes is not None:
        entry["discovery"] = {"kubernetes": {"namespace": kubernetes.namespace, "service": kubernetes.service,
                                             "port": kubernetes.port}}
    return entry


def from_backends(specs: list[str], strategy: str, host: str, port: int) -> Config:
    """Quick use without a file: ``--backend MODEL=URL`` (repeatable)."""
    grouped: dict[str, list[str]] = {}
    for spec in specs:
        model, sep, url = spec.partition("=")
        if not sep:
            raise ConfigError([f"--backend {spec!r}: expected MODEL=URL"])
        grouped.setdefault(model, []).append(url)
    return parse({"listen": {"host": host, "port": port},
                  "models": {m: {"served_name": m, "strategy": strategy, "backends": urls} for m, urls in grouped.items()}})
