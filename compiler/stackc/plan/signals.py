"""PromQL from declared metric names: the series of one model, and the query an autoscaler scales on.

Series names come from the engines' ``MetricNames`` and the router's ``RouterMetricNames``, never
from a target. A model's series are selected as prometheus-operator labels them when a monitor
copies the pods' labels onto every series (``podTargetLabels``): ``namespace`` plus each selector
label with its name sanitised. Autoscaler queries aggregate to exactly one series (KEDA reads one
number per trigger).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping

from stackc.plan.model import Component, Exporter, RouterMetricNames, Stack
from stackc.records import frozen

#: signals read from the engine's series, with the MetricNames field that names each and how replicas combine
ENGINE_SIGNALS = {"waiting": "waiting", "running": "running", "kv_cache_usage": "kv_cache_usage",
                  "tokens_per_second": "generation_tokens"}
#: signals an HPA scales on (resource utilization, no Prometheus)
RESOURCE_SIGNALS = ("cpu", "memory")
#: Prometheus' own series: 1 per target whose last scrape succeeded
PROMETHEUS_UP = "up"
#: kube-state-metrics' series of a Deployment, labelled ``namespace`` and ``deployment``: the replica count
#: its autoscaler set, and the replicas available
DEPLOYMENT_REPLICAS = "kube_deployment_spec_replicas"
DEPLOYMENT_AVAILABLE = "kube_deployment_status_replicas_available"


@frozen
class Trigger:
    """A Prometheus query and how an autoscaler compares it with the target."""

    query: str
    #: ``AverageValue``: the target is per replica; ``Value``: the query is already per replica
    metric_type: str


def label_name(key: str) -> str:
    """A Kubernetes label key as Prometheus label name (how ``podTargetLabels`` copies it)."""
    return re.sub(r"[^a-zA-Z0-9_]", "_", key)


def quoted(value: str) -> str:
    """A PromQL string literal."""
    return json.dumps(value, ensure_ascii=False)


def pod_matchers(namespace: str, pods: Mapping[str, str]) -> tuple[str, ...]:
    return (f"namespace={quoted(namespace)}",
            *(f"{label_name(key)}={quoted(value)}" for key, value in sorted(pods.items())))


def series(metric: str, matchers: Iterable[str]) -> str:
    """``metric{matchers}``; a declared name may carry matchers of its own (``name{type="active"}``)."""
    name, brace, own = metric.partition("{")
    own_matchers = [own.rstrip("}")] if brace and own.rstrip("}") else []
    return f"{name}{{{', '.join([*own_matchers, *matchers])}}}"


def model_series(stack: Stack, component: Component, metric: str) -> str:
    return series(metric, pod_matchers(stack.namespace, component.selector))


def deployment_series(stack: Stack, component: Component, metric: str) -> str:
    """A kube-state-metrics series of the component's Deployment."""
    return series(metric, (f"namespace={quoted(stack.namespace)}", f"deployment={quoted(component.name)}"))


def router(stack: Stack) -> Exporter | None:
    """The exporter that routes requests to the models, if a target adds one."""
    return next((exporter for exporter in stack.exporters if exporter.router is not None), None)


def router_series(stack: Stack, component: Component, metric: str, by_served_name: bool = False,
                  with_adapters: bool = False) -> str | None:
    """One model's series of the router (None without a router): labelled with its key, its primary
    served name, or any name it serves (its adapters' too)."""
    exporter = router(stack)
    if exporter is None or exporter.router is None:
        return None
    names: RouterMetricNames = exporter.router
    endpoint = component.endpoint
    if with_adapters and endpoint.adapters:
        served = (endpoint.served_names[0], *(adapter.name for adapter in endpoint.adapters))
        model = f"{names.model_label}=~{quoted('|'.join(re.escape(name) for name in served))}"
    else:
        model = f"{names.model_label}={quoted(endpoint.served_names[0] if by_served_name or with_adapters else component.key)}"
    return series(metric, (*pod_matchers(stack.namespace, exporter.pods), model))


def engine_metric(component: Component, signal: str) -> str | None:
    metrics = component.endpoint.metrics
    return getattr(metrics.names, ENGINE_SIGNALS[signal]) if metrics is not None else None


def trigger(stack: Stack, component: Component) -> Trigger | None:
    """The Prometheus query a component's autoscaler scales on (None: no Prometheus signal, or no such series)."""
    scaler = component.scale.autoscaler
    if scaler is None:
        return None
    if scaler.signal == "custom":
        return Trigger(scaler.query or "", "AverageValue")
    if scaler.signal == "router_pending":
        exporter = router(stack)
        pending = exporter.router.pending if exporter is not None and exporter.router is not None else None
        query = router_series(stack, component, pending, by_served_name=True) if pending else None
        if query is None:
            return None
        # held requests wake the model; once awake nothing is held, so the requests it serves keep it up
        in_flight = exporter.router.in_flight if exporter is not None and exporter.router is not None else None
        serving = router_series(stack, component, in_flight) if in_flight else None
        total = f"(sum({query}) or vector(0)) + (sum({serving}) or vector(0))" if serving else f"sum({query})"
        return Trigger(total, "AverageValue")
    if scaler.signal not in ENGINE_SIGNALS:
        return None
    metric = engine_metric(component, scaler.signal)
    if metric is None:
        return None
    selected = model_series(stack, component, metric)
    if scaler.signal == "kv_cache_usage":
        return Trigger(f"avg({selected})", "Value")
    if scaler.signal == "tokens_per_second":
        return Trigger(f"sum(rate({selected}[1m]))", "AverageValue")
    return Trigger(f"sum({selected})", "AverageValue")
