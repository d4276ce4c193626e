"""Observability: PodMonitors, alerting rules and a Grafana dashboard, from declared metric names.

Engines declare their Prometheus series as data (``MetricNames``), and targets that add pods
exporting metrics (the router, endpoint pickers) declare those (``Exporter``); this target never
names an engine or a router, so a new one gets monitoring for free.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from typing import Any

import attrs

from stackc import hookimpl, kube
from stackc.diagnostics import Diagnostic, Severity
from stackc.plan import signals
from stackc.plan.model import Component, Plan
from stackc.records import frozen
from stackc.registry import Artifact, Registry
from stackc.spec.model import LABEL_KEY, LABEL_VALUE, Form

# prometheus-operator's Duration, as its CRDs spell the pattern
PROMETHEUS_DURATION = Form(r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$",
                           "a Prometheus duration such as '15s' or '1m30s'")


@frozen
class MonitoringOptions:
    """``[targets.monitoring]``."""

    interval: str = attrs.field(default="15s", metadata={"doc": "Scrape interval.", "form": PROMETHEUS_DURATION})
    scrape_timeout: str | None = attrs.field(default=None, metadata={
        "doc": "How long one scrape may take (`scrapeTimeout`, at most `interval`; Prometheus' default when unset).",
        "form": PROMETHEUS_DURATION})
    monitor_labels: Mapping[str, str] = attrs.field(
        factory=dict, metadata={"doc": "Labels your Prometheus selects monitors by (e.g. `release = \"prometheus\"`).",
                                "keys": LABEL_KEY, "form": LABEL_VALUE})
    dashboard: bool = attrs.field(default=True, metadata={"doc": "Emit a Grafana dashboard ConfigMap."})
    dashboard_labels: Mapping[str, str] = attrs.field(
        factory=lambda: {"grafana_dashboard": "1"},
        metadata={"doc": "Labels the Grafana dashboard sidecar looks for.", "keys": LABEL_KEY, "form": LABEL_VALUE})
    ttft_p95_seconds: float = attrs.field(default=2.0, metadata={
        "doc": "Alert when a model's p95 time to first token stays above this many seconds."})
    waiting_per_replica: int = attrs.field(default=10, metadata={
        "doc": "Alert when more requests than this wait per replica.", "minimum": 1})
    error_ratio: float = attrs.field(default=0.05, metadata={
        "doc": "Alert when this fraction of a model's upstream attempts fail (with the router)."})


class MonitoringTarget:
    name = "monitoring"
    description = ("PodMonitors for engines, routers and endpoint pickers, alerting rules and a Grafana dashboard "
                   "(prometheus-operator)")
    options_type = MonitoringOptions
    #: a PodMonitor per model copies the pods' labels onto its series, which autoscaler triggers select
    monitors_models = True

    def check(self, plan: Plan, options: MonitoringOptions) -> Iterator[Diagnostic]:
        timeout = options.scrape_timeout
        if timeout is not None and duration_ms(timeout) > duration_ms(options.interval):
            # Prometheus refuses the whole configuration, so no monitor of the cluster would load
            yield Diagnostic("E153", f"scrape_timeout {timeout} is longer than the scrape interval {options.interval}",
                             ("targets", "monitoring", "scrape_timeout"), "keep it at most interval")
        yield from unused_settings(plan, options)
        for key in sorted({c.key for c in plan.components if c.endpoint.metrics is None}):
            engine = next(c.engine for c in plan.components if c.key == key)
            yield Diagnostic("W197", f"engine '{engine}' exports no metrics: no monitor scrapes model '{key}', and no "
                             "alert or dashboard panel shows it", ("models", key, "engine"),
                             "the router's metrics (with the router target) still count its requests",
                             Severity.WARNING)

    def emit(self, plan: Plan, options: MonitoringOptions) -> Iterator[Artifact]:
        return kube.kustomized(self._objects(plan, options))

    def _objects(self, plan: Plan, options: MonitoringOptions) -> Iterator[Artifact]:
        for component in plan.components:
            metrics = component.endpoint.metrics
            if metrics is None:
                continue  # the engine exports no metrics
            endpoint: dict[str, Any] = {"portNumber": port_number(component, metrics.port), "path": metrics.path,
                                        "interval": options.interval, **scrape_timeout(options)}
            api_key = component.endpoint.api_key
            if metrics.needs_api_key and api_key is not None:
                endpoint["authorization"] = {"type": "Bearer", "credentials": {"name": api_key.name, "key": api_key.key}}
            # the pods that answer (a multi-node group's leaders), labelled by the model's selector
            yield Artifact(f"podmonitor-{component.name.removeprefix(plan.stack.name + '-')}.yaml", (pod_monitor(
                plan, component.name, {**component.labels, **options.monitor_labels}, component.endpoint.selector,
                endpoint, component.selector),))
        for exporter in plan.stack.exporters:
            labels = {**stack_labels(plan), **exporter.pods, **options.monitor_labels}
            endpoint = {"port": exporter.port, "path": exporter.path, "interval": options.interval,
                        **scrape_timeout(options)}
            yield Artifact(f"podmonitor-{exporter.name}.yaml", (pod_monitor(
                plan, f"{plan.stack.name}-{exporter.name}", labels, exporter.pods, endpoint),))
        groups = alert_groups(plan, options)
        if groups:
            yield Artifact("prometheusrule.yaml", ({
                "apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule",
                "metadata": kube.metadata(plan.stack, f"{plan.stack.name}-alerts",
                                          {**stack_labels(plan), **options.monitor_labels}),
                "spec": {"groups": groups},
            },))
        if options.dashboard:
            name = f"{plan.stack.name}-dashboard"
            labels = {**stack_labels(plan), **options.dashboard_labels}
            board = json.dumps(dashboard(plan), indent=1, sort_keys=True)
            yield Artifact(f"dashboards/{plan.stack.name}.json", text=board + "\n")
            yield Artifact("dashboard.yaml", ({
                "apiVersion": "v1", "kind": "ConfigMap", "metadata": kube.metadata(plan.stack, name, labels),
                "data": {f"{plan.stack.name}.json": board},
            },))


#: each alert threshold, the alert it sets and what that alert reads
THRESHOLDS = (("error_ratio", "ModelErrorRate", "the router's error and request series"),
              ("ttft_p95_seconds", "ModelTimeToFirstTokenSLO", "an engine's time-to-first-token histogram"),
              ("waiting_per_replica", "ModelQueueSLO", "an engine's waiting-requests series"))


def unused_settings(plan: Plan, options: MonitoringOptions) -> Iterator[Diagnostic]:
    """A threshold whose alert no model has, or scrape settings with nothing to scrape: set, but in no file."""
    defaults = MonitoringOptions()
    alerts = {rule["alert"] for group in alert_groups(plan, options) for rule in group["rules"]}
    for option, alert, reads in THRESHOLDS:
        if getattr(options, option) != getattr(defaults, option) and alert not in alerts:
            yield Diagnostic("W193", f"no model of the stack has the alert {option} sets ({alert} reads {reads})",
                             ("targets", "monitoring", option), "drop it, or deploy what the alert reads",
                             Severity.WARNING)
    scraped = plan.stack.exporters or any(c.endpoint.metrics is not None for c in plan.components)
    for option in ("interval", "scrape_timeout"):
        if getattr(options, option) != getattr(defaults, option) and not scraped:
            yield Diagnostic("W193", f"nothing of the stack exports metrics: no monitor scrapes at this {option}",
                             ("targets", "monitoring", option), "drop it, or deploy a model whose engine exports "
                             "metrics (or the router)", Severity.WARNING)


def scrape_timeout(options: MonitoringOptions) -> dict[str, str]:
    return {"scrapeTimeout": options.scrape_timeout} if options.scrape_timeout is not None else {}


_UNIT_MS = {"y": 365 * 86_400_000, "w": 7 * 86_400_000, "d": 86_400_000, "h": 3_600_000, "m": 60_000, "s": 1000,
            "ms": 1}


def duration_ms(text: str) -> int:
    """Milliseconds of a Prometheus duration the form already accepted (``1m30s``)."""
    return sum(int(number) * _UNIT_MS[unit] for number, unit in re.findall(r"(\d+)(ms|[ywdhms])", text))


def stack_labels(plan: Plan) -> dict[str, str]:
    return {**kube.stack_labels(plan.stack), "app.kubernetes.io/instance": plan.stack.name}


def port_number(component: Component, name: str) -> int:
    """The metrics port by number: platforms rename ports (KServe's Knative mode calls the serving port
    ``http1``), the number stays the same in every target that deploys the model."""
    pod = component.pod
    return next(port.number for container in (*pod.containers, *pod.init_containers) for port in container.ports
                if port.name == name)


def pod_monitor(plan: Plan, name: str, labels: Mapping[str, str], pods: Mapping[str, str],
                endpoint: dict[str, Any], copied: Mapping[str, str] | None = None) -> dict:
    return {
        "apiVersion": "monitoring.coreos.com/v1", "kind": "PodMonitor",
        "metadata": kube.metadata(plan.stack, name, labels),
        "spec": {
            "selector": {"matchLabels": dict(pods)},
            # copied onto every series, so queries select a model without guessing pod names
            "podTargetLabels": sorted(pods if copied is None else copied),
            "podMetricsEndpoints": [endpoint],
        },
    }


def ready_replicas(plan: Plan, component: Component) -> str:
    """Replicas whose metrics endpoint answers (Prometheus' own ``up``), 0 when none is scraped."""
    return f"(sum({signals.model_series(plan.stack, component, signals.PROMETHEUS_UP)}) or vector(0))"


def _histogram_quantile(quantile: float, histogram: str) -> str:
    return f"histogram_quantile({quantile}, sum by (le) (rate({histogram}[5m])))"


def _ratio(numerator: str, denominator: str) -> str:
    return f"sum(rate({numerator}[5m])) / sum(rate({denominator}[5m]))"


def model_expressions(plan: Plan, component: Component) -> Iterator[tuple[str, str, str]]:
    """(panel title, unit, PromQL) for every signal the model's engine and the router declare."""
    metrics = component.endpoint.metrics
    names = metrics.names if metrics is not None else None
    stack = plan.stack

    def engine(metric: str) -> str:
        return signals.model_series(stack, component, metric)

    yield "Ready replicas", "short", ready_replicas(plan, component)
    if component.scale.autoscaler is not None:  # from kube-state-metrics
        yield ("Replicas set by the autoscaler", "short",
               f"sum({signals.deployment_series(stack, component, signals.DEPLOYMENT_REPLICAS)})")
        yield ("Replicas available", "short",
               f"sum({signals.deployment_series(stack, component, signals.DEPLOYMENT_AVAILABLE)})")
    if names is not None:
        for field, title, how, unit in (("running", "Requests running", "sum", "short"),
                                        ("waiting", "Requests waiting", "sum", "short"),
                                        ("kv_cache_usage", "KV-cache usage", "avg", "percentunit")):
            metric = getattr(names, field)
            if metric:
                yield title, unit, f"{how}({engine(metric)})"
        if names.time_to_first_token:
            histogram = engine(names.time_to_first_token + "_bucket")
            for quantile in (0.5, 0.95):
                yield f"Time to first token p{round(quantile * 100)} (engine)", "s", _histogram_quantile(quantile, histogram)
        if names.prefix_cache_hits and names.prefix_cache_queries:
            yield "Prefix-cache hit rate", "percentunit", _ratio(engine(names.prefix_cache_hits),
                                                                 engine(names.prefix_cache_queries))
        if names.generation_tokens:
            yield "Generated tokens per second", "short", f"sum(rate({engine(names.generation_tokens)}[5m]))"
    router = signals.router(stack)
    if router is not None and router.router is not None:
        declared = router.router

        def routed(metric: str) -> str:
            return signals.router_series(stack, component, metric) or ""

        if declared.requests:
            yield "Requests per second (router)", "reqps", f"sum(rate({routed(declared.requests)}[5m]))"
        for field, title in (("latency", "Latency"), ("time_to_first_token", "Time to first token")):
            metric = getattr(declared, field)
            if metric:
                for quantile in (0.5, 0.95):
                    yield (f"{title} p{round(quantile * 100)} (router)", "s",
                           _histogram_quantile(quantile, routed(metric + "_bucket")))
        for field, title in (("retries", "Retries per second (router)"), ("errors", "Errors per second (router)")):
            metric = getattr(declared, field)
            if metric:
                yield title, "short", f"sum(rate({routed(metric)}[5m]))"
        if declared.pending:
            yield ("Requests held, no ready replica (router)", "short",
                   f"sum({signals.router_series(stack, component, declared.pending, by_served_name=True)})")
        if declared.hold_rejected:
            refused = signals.router_series(stack, component, declared.hold_rejected, with_adapters=True)
            yield "Requests refused, no ready replica (router)", "reqps", f"sum(rate({refused}[5m]))"


def alert_groups(plan: Plan, options: MonitoringOptions) -> list[dict[str, Any]]:
    """One rule group per model: no ready replica, router errors, TTFT and queue SLOs."""
    groups = []
    router = signals.router(plan.stack)
    declared = router.router if router is not None else None
    for component in plan.components:
        scaler = component.scale.autoscaler
        labels = {"severity": "warning", "model": component.key, "namespace": plan.stack.namespace,
                  **({"role": component.disaggregation.role} if component.disaggregation else {})}
        rules: list[dict[str, Any]] = []
        roles = component.disaggregation
        who = component.key if roles is None else f"{component.key} ({roles.role})"
        # the router's series are the model's: one role's group carries their alerts
        routed = declared if roles is None or roles.role == "decode" else None
        if scaler is None or scaler.min_replicas > 0:  # at zero replicas by design, none is ready
            rules.append(_alert("ModelNoReadyReplica", f"{ready_replicas(plan, component)} < 1", "5m",
                                {**labels, "severity": "critical"}, f"Model {who} has no ready replica"))
        if routed is not None and routed.errors and routed.requests:
            errors = signals.router_series(plan.stack, component, routed.errors) or ""
            requests = signals.router_series(plan.stack, component, routed.requests) or ""
            rules.append(_alert("ModelErrorRate", f"{_ratio(errors, requests)} > {options.error_ratio}", "10m", labels,
                                f"Over {options.error_ratio:.0%} of {component.key}'s upstream attempts fail"))
        if routed is not None and routed.hold_rejected:
            refused = signals.router_series(plan.stack, component, routed.hold_rejected, with_adapters=True)
            rules.append(_alert("ModelRequestsRefusedNoReplica", f"sum(rate({refused}[5m])) > 0", "5m", labels,
                                f"{component.key}: the router answers 503 while no replica is ready (hold queue "
                                "full or timed out): raise hold_timeout_seconds past the cold start, or min_replicas"))
        names = component.endpoint.metrics.names if component.endpoint.metrics is not None else None
        if names is not None and names.time_to_first_token:
            histogram = signals.model_series(plan.stack, component, names.time_to_first_token + "_bucket")
            rules.append(_alert("ModelTimeToFirstTokenSLO",
                                f"{_histogram_quantile(0.95, histogram)} > {options.ttft_p95_seconds}", "10m", labels,
                                f"{who}: p95 time to first token above {options.ttft_p95_seconds} s"))
        if names is not None and names.waiting:
            waiting = signals.model_series(plan.stack, component, names.waiting)
            rules.append(_alert("ModelQueueSLO", f"avg({waiting}) > {options.waiting_per_replica}", "10m", labels,
                                f"{who}: over {options.waiting_per_replica} requests waiting per replica"))
        if rules:
            groups.append({"name": component.name, "rules": rules})
    return groups


def _alert(name: str, expr: str, duration: str, labels: Mapping[str, str], summary: str) -> dict[str, Any]:
    return {"alert": name, "expr": expr, "for": duration, "labels": dict(labels), "annotations": {"summary": summary}}


def dashboard(plan: Plan) -> dict[str, Any]:
    """A Grafana dashboard: one row per model, a panel per signal its engine and the router export."""
    panels: list[dict[str, Any]] = []
    y = 0
    for component in plan.components:
        role = f" {component.disaggregation.role}" if component.disaggregation else ""
        panels.append({"type": "row", "title": f"{component.key}{role} ({component.engine})", "id": len(panels) + 1,
                       "gridPos": {"x": 0, "y": y, "w": 24, "h": 1}})
        y += 1
        for index, (title, unit, expr) in enumerate(model_expressions(plan, component)):
            panels.append({
                "type": "timeseries", "title": title, "id": len(panels) + 1, "datasource": {"uid": "${datasource}"},
                "gridPos": {"x": (index % 4) * 6, "y": y + (index // 4) * 8, "w": 6, "h": 8},
                "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
                "targets": [{"refId": "A", "expr": expr}],
            })
        y += 8 * ((index // 4) + 1)
    return {
        "title": f"stackc: {plan.stack.name}", "uid": f"stackc-{plan.stack.name}"[:40],
        "schemaVersion": 39, "tags": ["stackc", "llm"], "time": {"from": "now-6h", "to": "now"},
        "templating": {"list": [{"name": "datasource", "type": "datasource", "query": "prometheus"}]},
        "panels": panels,
    }


def expressions(plan: Plan, options: MonitoringOptions) -> list[str]:
    """Every PromQL expression this target emits (alerts and dashboard panels)."""
    found = [rule["expr"] for group in alert_groups(plan, options) for rule in group["rules"]]
    return found + [expr for component in plan.components for _, _, expr in model_expressions(plan, component)]


@hookimpl
def stackc_add_targets(registry: Registry) -> None:
    registry.add_target(MonitoringTarget())
