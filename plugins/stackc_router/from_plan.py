"""Router configs from the deployment plan, for the router target's ConfigMap and for ``stackc up``.

Both describe a model the same way here and write it through ``stackc_router.config.to_data``,
the format the runtime parses; the runtime itself never imports this module.
"""

from __future__ import annotations

from collections.abc import Sequence

from stackc.plan.engine import MetricNames
from stackc.plan.model import Component
from stackc_router.config import CHARS_PER_TOKEN, CandidateRoute, KubernetesDiscovery, ModelRoute, PrefillRoute


def model_route(component: Component, *, backends: Sequence[str] = (), kubernetes: KubernetesDiscovery | None = None,
                upstream_key_file: str | None = None, prefill: PrefillRoute | None = None,
                candidate: CandidateRoute | None = None) -> ModelRoute:
    """One model: its names (aliases rewritten to what the engine serves, adapters passed as they are),
    routing, health and metrics; for a disaggregated model ``component`` is its decode role and
    ``prefill`` its prefill role (``prefill_route``); ``candidate``: its candidate version (``candidate_route``)."""
    endpoint = component.endpoint
    primary, *other_names = endpoint.served_names
    metrics, metrics_port = endpoint.metrics, None
    if component.topology.kind == "ray_cluster":
        metrics = None  # a Ray pod's proxy hands requests to any replica: its node's load says nothing of where they go
    elif metrics is not None and metrics.port != endpoint.port.name:
        # on another port (Triton's, an engine behind a proxy): each pod's own, when the router finds the pods;
        # replicas on one host (``stackc up``) would share the number, so those it doesn't scrape
        metrics_port = _port_number(component, metrics.port) if kubernetes is not None else None
        metrics = metrics if metrics_port is not None else None
    names = metrics.names if metrics is not None else MetricNames()
    return ModelRoute(
        name=component.key, served_name=primary,
        aliases=tuple(sorted(set(other_names) | set(endpoint.aliases) - {primary})),
        adapters=tuple(a.name for a in endpoint.adapters if not a.runtime),
        runtime_adapters=tuple(sorted((a.name, a.location) for a in endpoint.adapters if a.runtime)),
        adapter_load_path=endpoint.adapter_load_path,
        strategy=component.routing.strategy, session_header=component.routing.session_header,
        backends=tuple(backends), kubernetes=kubernetes,
        health_path=endpoint.health_path or "/health",
        metrics_path=metrics.path if metrics is not None else None, metrics_port=metrics_port,
        running_metric=names.running, waiting_metric=names.waiting, kv_usage_metric=names.kv_cache_usage,
        kv_capacity_metric=names.kv_cache_capacity, kv_capacity_labels=names.kv_cache_capacity_labels,
        upstream_api_key_file=upstream_key_file, prefill=prefill, candidate=candidate,
        # an engine that publishes no capacity: what the fit check computed, else the router's default
        **({"cache_chars": component.kv_tokens_per_replica * CHARS_PER_TOKEN}
           if names.kv_cache_capacity is None and component.kv_tokens_per_replica else {}),
    )


def prefill_route(component: Component, *, backends: Sequence[str] = (),
                  kubernetes: KubernetesDiscovery | None = None) -> PrefillRoute:
    """The prefill role of a disaggregated model, joined to its decode role as its plan says."""
    role = component.disaggregation
    assert role is not None and role.role == "prefill", "prefill_route takes a prefill component"
    return PrefillRoute(protocol=role.protocol, backends=tuple(backends), kubernetes=kubernetes,
                        bootstrap_port=role.bootstrap_port, health_path=component.endpoint.health_path or "/health")


def candidate_route(component: Component, *, backends: Sequence[str] = (),
                    kubernetes: KubernetesDiscovery | None = None) -> CandidateRoute:
    """A model's candidate version: its replicas, and the requests its plan gives it."""
    version = component.candidate
    assert version is not None, "candidate_route takes a candidate component"
    return CandidateRoute(backends=tuple(backends), kubernetes=kubernetes,
                          health_path=component.endpoint.health_path or "/health", weight=version.traffic,
                          header=version.header, header_value=version.header_value, mirror=version.mirror)


def _port_number(component: Component, name: str) -> int | None:
    """The number of the serving pod's port called ``name`` (its engine's or a sidecar's)."""
    containers = (*component.pod.containers, *component.pod.init_containers)
    return next((port.number for container in containers for port in container.ports if port.name == name), None)
