"""Observability: a PodMonitor per model and a Grafana dashboard, from the engines' metric names.

Engines declare their Prometheus series as data (``MetricNames``); this target never names an
engine, so a new engine gets monitoring for free.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

import attrs

from stackc import hookimpl, kube
from stackc.plan.model import Component, Plan
from stackc.registry import Artifact, Registry
from stackc.spec.model import LABEL_KEY, LABEL_VALUE, Form

# prometheus-operator's Duration, as its CRDs spell the pattern
PROMETHEUS_DURATION = Form(r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$",
                           "a Prometheus duration such as '15s' or '1m30s'")


@attrs.frozen
class MonitoringOptions:
    """``[targets.monitoring]``."""

    interval: str = attrs.field(default="15s", metadata={"doc": "Scrape interval.", "form": PROMETHEUS_DURATION})
    monitor_labels: Mapping[str, str] = attrs.field(
        factory=dict, metadata={"doc": "Labels your Prometheus selects monitors by (e.g. `release = \"prometheus\"`).",
                                "keys": LABEL_KEY, "form": LABEL_VALUE})
    dashboard: bool = attrs.field(default=True, metadata={"doc": "Emit a Grafana dashboard ConfigMap."})
    dashboard_labels: Mapping[str, str] = attrs.field(
        factory=lambda: {"grafana_dashboard": "1"},
        metadata={"doc": "Labels the Grafana dashboard sidecar looks for.", "keys": LABEL_KEY, "form": LABEL_VALUE})


_PANELS = (
    ("running", "Requests running", "sum by (pod) ({metric}{{{selector}}})"),
    ("waiting", "Requests waiting", "sum by (pod) ({metric}{{{selector}}})"),
    ("kv_cache_usage", "KV-cache usage", "avg by (pod) ({metric}{{{selector}}})"),
    ("time_to_first_token", "Time to first token p95 (s)",
     "histogram_quantile(0.95, sum by (le) (rate({metric}_bucket{{{selector}}}[5m])))"),
    ("prefix_cache_hits", "Prefix-cache hit rate", "sum(rate({metric}{{{selector}}}[5m])) / sum(rate({queries}{{{selector}}}[5m]))"),
)


class MonitoringTarget:
    name = "monitoring"
    description = "PodMonitors (prometheus-operator) and a Grafana dashboard for every model"
    options_type = MonitoringOptions

    def emit(self, plan: Plan, options: MonitoringOptions) -> Iterator[Artifact]:
        return kube.kustomized(self._objects(plan, options))

    def _objects(self, plan: Plan, options: MonitoringOptions) -> Iterator[Artifact]:
        for component in plan.components:
            metrics = component.endpoint.metrics
            if metrics is None:
                continue  # the engine exports no metrics
            endpoint: dict[str, Any] = {"port": metrics.port, "path": metrics.path, "interval": options.interval}
            api_key = component.endpoint.api_key
            if metrics.needs_api_key and api_key is not None:
                endpoint["authorization"] = {"type": "Bearer", "credentials": {"name": api_key.name, "key": api_key.key}}
            yield Artifact(f"podmonitor-{component.key}.yaml", ({
                "apiVersion": "monitoring.coreos.com/v1", "kind": "PodMonitor",
                "metadata": kube.metadata(plan.stack, component.name, {**component.labels, **options.monitor_labels}),
                "spec": {
                    "selector": {"matchLabels": dict(component.endpoint.selector)},
                    # copied onto every series, so dashboards select a model without guessing pod names
                    "podTargetLabels": sorted(component.selector),
                    "podMetricsEndpoints": [endpoint],
                },
            },))
        if options.dashboard:
            name = f"{plan.stack.name}-dashboard"
            labels = {**plan.stack.labels, "app.kubernetes.io/instance": plan.stack.name,
                      "app.kubernetes.io/part-of": plan.stack.name,
                      "app.kubernetes.io/managed-by": "stackc", **options.dashboard_labels}
            yield Artifact("dashboard.yaml", ({
                "apiVersion": "v1", "kind": "ConfigMap", "metadata": kube.metadata(plan.stack, name, labels),
                "data": {f"{plan.stack.name}.json": json.dumps(dashboard(plan), indent=1, sort_keys=True)},
            },))


def dashboard(plan: Plan) -> dict[str, Any]:
    """A Grafana dashboard: one row per model, a panel per signal its engine exports."""
    panels: list[dict[str, Any]] = []
    for row, component in enumerate(plan.components):
        panels.append({"type": "row", "title": f"{component.key} ({component.engine})", "id": len(panels) + 1,
                       "gridPos": {"x": 0, "y": row * 9, "w": 24, "h": 1}})
        for column, (signal, title, expr) in enumerate(p for p in _PANELS if _metric(component, p[0])):
            panels.append({
                "type": "timeseries", "title": title, "id": len(panels) + 1, "datasource": {"uid": "${datasource}"},
                "gridPos": {"x": column * 5, "y": row * 9 + 1, "w": 5, "h": 8},
                "targets": [{"refId": "A", "expr": expr.format(
                    metric=_metric(component, signal), queries=_metric(component, "prefix_cache_queries") or "",
                    selector=_series_selector(plan, component))}],
            })
    return {
        "title": f"stackc: {plan.stack.name}", "uid": f"stackc-{plan.stack.name}"[:40],
        "schemaVersion": 39, "tags": ["stackc", "llm"], "time": {"from": "now-6h", "to": "now"},
        "templating": {"list": [{"name": "datasource", "type": "datasource", "query": "prometheus"}]},
        "panels": panels,
    }


def _series_selector(plan: Plan, component: Component) -> str:
    """PromQL matchers for one model's series (labels from ``podTargetLabels``, sanitised)."""
    matchers = [f'namespace="{plan.stack.namespace}"']
    matchers += [f'{key.replace(".", "_").replace("/", "_")}="{value}"' for key, value in sorted(component.selector.items())]
    return ", ".join(matchers)


def _metric(component: Component, signal: str) -> str | None:
    metrics = component.endpoint.metrics
    if metrics is None:
        return None
    if signal == "prefix_cache_hits" and not metrics.names.prefix_cache_queries:
        return None
    return getattr(metrics.names, signal)


@hookimpl
def stackc_add_targets(registry: Registry) -> None:
    registry.add_target(MonitoringTarget())
