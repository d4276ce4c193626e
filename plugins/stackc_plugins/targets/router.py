"""The reference router (``stackc-router``) in front of every model; the models' NetworkPolicies
admit it (it says so as a caller).

The router's config is data built here from the Workloads (served names, aliases, discovery by
the model's Service, the engine's metric names), rendered as YAML into a ConfigMap.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from typing import Any, Literal

import attrs

from stackc import hookimpl, kube
from stackc.diagnostics import Diagnostic
from stackc.output.render import to_yaml
from stackc.plan import images
from stackc.plan.model import (
    RESTRICTED_CONTAINER,
    RESTRICTED_POD,
    Autoscaler,
    Caller,
    Component,
    Exporter,
    Plan,
    RouterMetricNames,
)
from stackc.records import frozen
from stackc.registry import Artifact, Registry
from stackc.spec.model import DNS_LABEL, DNS_SUBDOMAIN, HOSTNAME, INT32_MAX, PORT_MAX, PORT_NAME, SecretRef
from stackc_router import metrics as router_metrics

IMAGE = images.ROUTER.image
PORT = 8080
CONFIG_PATH = "/etc/stackc-router"
KEYS_PATH = "/etc/stackc-router/keys"
UPSTREAM_KEYS_PATH = "/etc/stackc-router/upstream"
#: what stackc-router exports on /metrics per model, as its runtime declares the families
METRICS = RouterMetricNames(
    model_label="model", pending=router_metrics.PENDING_REQUESTS.name, in_flight=router_metrics.IN_FLIGHT.name,
    hold_rejected=router_metrics.HOLD_REJECTED.name,
    requests=router_metrics.REQUESTS.name, errors=router_metrics.ERRORS.name, retries=router_metrics.RETRIES.name,
    latency=router_metrics.LATENCY.name, time_to_first_token=router_metrics.TTFT.name)


@frozen
class Ingress:
    host: str = attrs.field(metadata={"doc": "Host name clients use.", "form": HOSTNAME})
    class_name: str | None = attrs.field(default=None, metadata={"doc": "IngressClass name.", "form": DNS_SUBDOMAIN})
    tls_secret: str | None = attrs.field(default=None, metadata={"doc": "Secret with the TLS certificate.",
                                                                 "form": DNS_SUBDOMAIN})


@frozen
class HttpRoute:
    gateway: str = attrs.field(metadata={"doc": "Name of the Gateway to attach to.", "form": DNS_SUBDOMAIN})
    gateway_namespace: str | None = attrs.field(default=None, metadata={"doc": "Its namespace (default: the stack's).",
                                                                        "form": DNS_LABEL})
    hostnames: tuple[str, ...] = attrs.field(default=(), metadata={"doc": "Host names to match.", "form": HOSTNAME})


@frozen
class RouterAutoscaling:
    """An HPA on the router's CPU (the router is CPU-bound: it parses, picks and streams)."""

    min_replicas: int = attrs.field(default=2, metadata={"doc": "Fewest router replicas.", "minimum": 1,
                                                         "maximum": INT32_MAX})
    max_replicas: int = attrs.field(default=10, metadata={"doc": "Most router replicas.", "minimum": 1,
                                                          "maximum": INT32_MAX})
    cpu: int = attrs.field(default=70, metadata={"doc": "Target CPU utilization, percent of the CPU request.",
                                                 "minimum": 1, "maximum": INT32_MAX})


@frozen
class RouterPort:
    """A port more on the router's container and Service, for a program of the router's pod that listens
    beside it (production-stack's LMCache controller port)."""

    name: str = attrs.field(metadata={"doc": "Port name, on the container and the Service.", "form": PORT_NAME})
    port: int = attrs.field(metadata={"doc": "Its number on the Service.", "minimum": 1, "maximum": PORT_MAX})
    target_port: int | None = attrs.field(default=None, metadata={
        "doc": "Its number in the container (default: `port`).", "minimum": 1, "maximum": PORT_MAX})
    protocol: Literal["TCP", "UDP", "SCTP"] = attrs.field(default="TCP", metadata={"doc": "Protocol."})


@frozen
class RouterOptions:
    """``[targets.router]``."""

    image: str = attrs.field(default=IMAGE, metadata={"doc": "Router image (built from the repository's Dockerfile)."})
    replicas: int = attrs.field(default=2, metadata={"doc": "Router replicas, spread across nodes.", "minimum": 0,
                                                     "maximum": INT32_MAX})
    resources: Mapping[str, Mapping[str, str]] = attrs.field(
        factory=lambda: {"requests": {"cpu": "500m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}},
        metadata={"doc": "Router container resources (`requests`, `limits`)."})
    api_keys: SecretRef | None = attrs.field(
        default=None, metadata={"doc": "Secret key holding accepted API keys, one per line."})
    max_body_bytes: int = attrs.field(default=10 * 1024 * 1024, metadata={"doc": "Largest request body accepted.",
                                                                          "minimum": 1})
    max_in_flight: int = attrs.field(default=1024, metadata={"doc": "Concurrent requests before 429s.", "minimum": 1})
    max_connections_per_address: int = attrs.field(default=2048, metadata={
        "doc": "Connections one client address may hold; at the limit its connections without a request under way "
               "are closed first (docs/router.md, \"Per-client limits\"). Behind a proxy that hides client "
               "addresses every client has the proxy's: raise this and `max_in_flight_per_address`.",
        "minimum": 1})
    max_in_flight_per_address: int = attrs.field(default=512, metadata={
        "doc": "Requests one client address may have in flight (held ones included) before 429s.", "minimum": 1})
    max_connections_per_key: int = attrs.field(default=2048, metadata={
        "doc": "Connections that may present one API key (with `api_keys`).", "minimum": 1})
    max_in_flight_per_key: int = attrs.field(default=512, metadata={
        "doc": "Requests one API key may have in flight, from any address, before 429s (with `api_keys`).",
        "minimum": 1})
    hold_queue: int = attrs.field(default=100, metadata={
        "doc": "Requests held per model while it has no ready replica (scale from zero, a replica still loading), "
               "served in arrival order once one is ready; when it is full, a 503 at once. 0: a 503 at once.",
        "minimum": 0, "maximum": 100_000})
    hold_timeout_seconds: int = attrs.field(default=60, metadata={
        "doc": "How long a held request waits for a ready replica before a 503 with `Retry-After` "
               "(docs/router.md: why 60, and what to raise with it for a slow cold start).",
        "minimum": 1, "maximum": 3600})
    autoscaling: RouterAutoscaling | None = attrs.field(
        default=None, metadata={"doc": "Scale the router with an HPA on CPU (then `replicas` is not set)."})
    ingress: Ingress | None = attrs.field(default=None, metadata={"doc": "Expose the router with an Ingress."})
    http_route: HttpRoute | None = attrs.field(default=None, metadata={"doc": "Expose the router with an HTTPRoute."})
    ports: tuple[RouterPort, ...] = attrs.field(default=(), metadata={
        "doc": "More ports on the router's container and Service (`http` is the router's own: port 80 on the "
               "Service, 8080 in the container)."})


class RouterTarget:
    name = "router"
    description = "The stackc reference router (OpenAI-compatible, cache-aware) in front of every model"
    options_type = RouterOptions
    #: clients may use any alias: the router rewrites it to the engine's served name
    serves_aliases = True
    #: it loads a model's run-time LoRA adapters into each replica once the replica is healthy
    loads_adapters = True
    #: it picks each model's replica by ``routing.strategy`` (and ``session_header``)
    applies_routing = True
    #: it gives a model's candidate version its share of the requests, its testers' and mirrored copies
    splits_traffic = True

    def check(self, plan: Plan, options: RouterOptions) -> Iterator[Diagnostic]:
        scaling = options.autoscaling
        path = ("targets", "router", "autoscaling")
        if scaling is not None and scaling.min_replicas > scaling.max_replicas:
            yield Diagnostic("E014", f"min_replicas ({scaling.min_replicas}) is above max_replicas "
                             f"({scaling.max_replicas})", path + ("min_replicas",))
        if scaling is not None and "cpu" not in options.resources.get("requests", {}):
            yield Diagnostic("E080", "an HPA measures CPU against the router's request: it requests no cpu",
                             ("targets", "router", "resources"), "set resources.requests.cpu")
        yield from port_clashes(options.ports)
        engines = plan.stack.engines_service
        if engines is not None and engines.name == f"{plan.stack.name}-router":
            yield Diagnostic("E191", f"Service '{engines.name}' is already the router's", ("stack", "engines_service", "name"),
                             "name the engines' Service differently")

    def callers(self, plan: Plan, options: RouterOptions) -> Iterator[Caller]:
        yield Caller(router_selector(plan))
        # the router reads each replica's load from its metrics, also where they are on a port of their own
        for key in sorted({c.key for c in plan.components
                           if c.endpoint.metrics is not None and c.endpoint.metrics.port != c.endpoint.port.name
                           and c.topology.kind != "ray_cluster"}):
            yield Caller(router_selector(plan), port="metrics", component=key)

    def exporters(self, plan: Plan, options: RouterOptions) -> Iterator[Exporter]:
        yield Exporter("router", router_selector(plan), "http", "/metrics", METRICS)

    def emit(self, plan: Plan, options: RouterOptions) -> Iterator[Artifact]:
        return kube.kustomized(self._objects(plan, options))

    def _objects(self, plan: Plan, options: RouterOptions) -> Iterator[Artifact]:
        stack = plan.stack
        name = f"{stack.name}-router"
        selector = router_selector(plan)
        labels = {**kube.stack_labels(stack), **selector, "app.kubernetes.io/component": "router"}
        config = router_config(plan, options)
        config_text = to_yaml(config)
        yield Artifact("configmap.yaml", ({
            "apiVersion": "v1", "kind": "ConfigMap", "metadata": kube.metadata(stack, name, labels),
            "data": {"router.yaml": config_text},
        },))
        account, role, binding = kube.api_reader(stack, name, labels, [
            {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["get", "list", "watch"]}])
        yield Artifact("serviceaccount.yaml", (account,))
        yield Artifact("role.yaml", (role,))
        yield Artifact("rolebinding.yaml", (binding,))
        yield Artifact("deployment.yaml", (deployment(plan, options, name, labels, selector, config_text),))
        yield Artifact("service.yaml", ({
            "apiVersion": "v1", "kind": "Service", "metadata": kube.metadata(stack, name, labels),
            "spec": {"selector": dict(selector),
                     "ports": [{"name": "http", "port": SERVICE_PORT, "targetPort": "http", "protocol": "TCP"},
                               *({"name": p.name, "port": p.port, "targetPort": p.name, "protocol": p.protocol}
                                 for p in options.ports)]},
        },))
        scaling = options.autoscaling
        if scaling is not None:
            scaler = Autoscaler(scaling.min_replicas, scaling.max_replicas, "cpu", scaling.cpu)
            yield Artifact("horizontalpodautoscaler.yaml", (kube.horizontal_pod_autoscaler(
                stack, {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}, labels, scaler,
                [kube.resource_metric("cpu", scaling.cpu)]),))
        if (scaling.max_replicas if scaling is not None else options.replicas) > 1:
            yield Artifact("poddisruptionbudget.yaml", ({
                "apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": kube.metadata(stack, name, labels),
                "spec": {"maxUnavailable": 1, "selector": {"matchLabels": dict(selector)}},
            },))
        if options.ingress is not None:
            yield Artifact("ingress.yaml", (ingress(plan, options.ingress, name, labels),))
        if options.http_route is not None:
            yield Artifact("httproute.yaml", (http_route(plan, options.http_route, name, labels),))


SERVICE_PORT = 80


def port_clashes(ports: tuple[RouterPort, ...]) -> Iterator[Diagnostic]:
    """Each port more has a name, a Service port and a container port of its own: none the router's (``http``,
    80 on the Service, 8080 in the container) nor another's (same protocol)."""
    names, numbers, inside = {"http": "the router's own"}, {("TCP", SERVICE_PORT): "the router's own"}, \
        {("TCP", PORT): "the router's own"}
    for index, extra in enumerate(ports):
        path = ("targets", "router", "ports", index)
        checks = ((names, extra.name, "name", "name"), (numbers, (extra.protocol, extra.port), "port", "Service port"),
                  (inside, (extra.protocol, extra.target_port or extra.port),
                   "target_port" if extra.target_port else "port", "container port"))
        for seen, value, key, what in checks:
            shown = value[1] if isinstance(value, tuple) else value
            if value in seen:
                yield Diagnostic("E190", f"{what} {shown!r} is already {seen[value]}", (*path, key),
                                 "give each of the router's ports its own name and numbers")
            seen.setdefault(value, f"that of ports[{index}]")


def router_selector(plan: Plan) -> dict[str, str]:
    return {"app.kubernetes.io/name": "router", "app.kubernetes.io/instance": plan.stack.name}


def models(plan: Plan) -> Iterator[tuple[Component, Component | None]]:
    """Each model once: the component that answers clients (a disaggregated model's decode role)
    and, for a disaggregated model, its prefill role."""
    prefills = {c.key: c for c in plan.components if c.disaggregation is not None and c.disaggregation.role == "prefill"}
    for component in kube.models(plan):
        yield component, prefills.get(component.key)


def router_config(plan: Plan, options: RouterOptions) -> dict[str, Any]:
    """The ``stackc-router`` config file: one entry per model, each role discovered through its Service."""
    # the router's own config classes: imported when a stack has a router, not by every build
    from stackc_router.config import Config, KubernetesDiscovery, to_data
    from stackc_router.from_plan import candidate_route, model_route, prefill_route

    def discovery(component: Component) -> KubernetesDiscovery:
        return KubernetesDiscovery(plan.stack.namespace, component.endpoint.service, component.endpoint.service_port)

    routes = []
    for component, prefill in models(plan):
        engine_key = component.endpoint.api_key  # the engine demands its key: the router presents it (to both roles)
        candidate = kube.candidate(plan.components, component.key)
        routes.append(model_route(
            component, kubernetes=discovery(component),
            upstream_key_file=f"{UPSTREAM_KEYS_PATH}/{component.key}/{engine_key.key}" if engine_key else None,
            prefill=prefill_route(prefill, kubernetes=discovery(prefill)) if prefill is not None else None,
            candidate=candidate_route(candidate, kubernetes=discovery(candidate)) if candidate is not None else None))
    config = Config(models=tuple(routes), host="0.0.0.0", port=PORT, max_body_bytes=options.max_body_bytes,
                    max_in_flight=options.max_in_flight, hold_queue=options.hold_queue,
                    max_connections_per_address=options.max_connections_per_address,
                    max_in_flight_per_address=options.max_in_flight_per_address,
                    max_connections_per_key=options.max_connections_per_key,
                    max_in_flight_per_key=options.max_in_flight_per_key,
                    hold_timeout_s=float(options.hold_timeout_seconds),
                    api_keys_file=f"{KEYS_PATH}/{options.api_keys.key}" if options.api_keys else None)
    return to_data(config)


def deployment(plan: Plan, options: RouterOptions, name: str, labels: dict, selector: dict, config_text: str) -> dict:
    mounts = [{"name": "config", "mountPath": CONFIG_PATH, "readOnly": True}]
    volumes: list[dict[str, Any]] = [{"name": "config", "configMap": {"name": name}}]
    if options.api_keys is not None:
        mounts.append({"name": "api-keys", "mountPath": KEYS_PATH, "readOnly": True})
        volumes.append({"name": "api-keys", "secret": {"secretName": options.api_keys.name}})
    for component, _ in models(plan):
        engine_key = component.endpoint.api_key
        if engine_key is not None:
            volume = f"upstream-{component.key}"
            mounts.append({"name": volume, "mountPath": f"{UPSTREAM_KEYS_PATH}/{component.key}", "readOnly": True})
            volumes.append({"name": volume, "secret": {"secretName": engine_key.name,
                                                       "items": [{"key": engine_key.key, "path": engine_key.key}]}})
    container = {
        "name": "router",
        "image": options.image,
        "args": ["--config", f"{CONFIG_PATH}/router.yaml"],
        "ports": [{"name": "http", "containerPort": PORT, "protocol": "TCP"},
                  *({"name": p.name, "containerPort": p.target_port or p.port, "protocol": p.protocol}
                    for p in options.ports)],
        "readinessProbe": {"httpGet": {"path": "/ready", "port": "http"}, "periodSeconds": 5, "failureThreshold": 2},
        "livenessProbe": {"httpGet": {"path": "/health", "port": "http"}, "periodSeconds": 10, "failureThreshold": 3},
        "resources": {k: dict(v) for k, v in options.resources.items()},
        "volumeMounts": mounts,
        "securityContext": {**RESTRICTED_CONTAINER, "readOnlyRootFilesystem": True, "runAsNonRoot": True,
                            "runAsUser": 10001, "runAsGroup": 10001},
    }
    digest = hashlib.sha256(config_text.encode()).hexdigest()[:16]
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": kube.metadata(plan.stack, name, labels),
        "spec": {
            **kube.replicas(options.replicas, options.autoscaling is not None),
            "selector": {"matchLabels": dict(selector)},
            "template": {
                "metadata": {"labels": dict(labels), "annotations": {"stackc.dev/config-hash": digest}},
                "spec": {
                    "serviceAccountName": name,
                    "automountServiceAccountToken": True,  # the EndpointSlice watch needs the token
                    "enableServiceLinks": False,
                    "securityContext": {**RESTRICTED_POD, "runAsNonRoot": True},
                    "containers": [container],
                    "volumes": volumes,
                    "topologySpreadConstraints": [{
                        "maxSkew": 1, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "ScheduleAnyway",
                        "labelSelector": {"matchLabels": dict(selector)},
                    }],
                },
            },
        },
    }


def ingress(plan: Plan, options: Ingress, name: str, labels: dict) -> dict:
    spec: dict[str, Any] = {"rules": [{"host": options.host, "http": {"paths": [{
        "path": "/", "pathType": "Prefix",
        "backend": {"service": {"name": name, "port": {"name": "http"}}}}]}}]}
    if options.class_name:
        spec["ingressClassName"] = options.class_name
    if options.tls_secret:
        spec["tls"] = [{"hosts": [options.host], "secretName": options.tls_secret}]
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": kube.metadata(plan.stack, name, labels),
            "spec": spec}


def http_route(plan: Plan, options: HttpRoute, name: str, labels: dict) -> dict:
    parent: dict[str, Any] = {"name": options.gateway}
    if options.gateway_namespace:
        parent["namespace"] = options.gateway_namespace
    spec: dict[str, Any] = {"parentRefs": [parent], "rules": [{
        "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
        "backendRefs": [{"name": name, "port": SERVICE_PORT}]}]}
    if options.hostnames:
        spec["hostnames"] = list(options.hostnames)
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": kube.metadata(plan.stack, name, labels), "spec": spec}


@hookimpl
def stackc_add_targets(registry: Registry) -> None:
    registry.add_target(RouterTarget())
