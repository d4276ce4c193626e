"""The router's /metrics text parses as Prometheus reads it, whatever a model is called."""

from __future__ import annotations

from types import SimpleNamespace

from prometheus_client.parser import text_string_to_metric_families

from stackc_router.metrics import (
    FAMILIES,
    LATENCY,
    PENDING_REQUESTS,
    PREFILL_ERRORS,
    PREFILL_LATENCY,
    REQUESTS,
    Metrics,
)


def render(metrics: Metrics, name: str) -> dict:
    backend = SimpleNamespace(url="http://10.0.0.1:8000", in_flight=2, healthy=True)
    route = SimpleNamespace(config=SimpleNamespace(name=name, served_name=f"org/{name}"), held=[None] * 3,
                            backends={backend.url: backend}, candidate=None)
    route.replica_sets = lambda: (route,)
    text = metrics.render(SimpleNamespace(routes={name: route}))
    return {f.name: f for f in text_string_to_metric_families(text)}


def test_label_values_are_escaped_and_every_series_is_typed() -> None:
    metrics = Metrics()
    name = 'odd "model" \\ with\na newline'
    metrics.count(REQUESTS, name, "http://10.0.0.1:8000")
    metrics.observe(LATENCY, name, "http://10.0.0.1:8000", 0.2)
    metrics.reject(f"org/{name}", "timeout")
    families = render(metrics, name)
    (sample,) = families["stackc_router_requests"].samples
    assert sample.labels == {"model": name, "backend": "http://10.0.0.1:8000"} and sample.value == 1
    assert families["stackc_router_backend_healthy"].type == "gauge"
    assert families["stackc_router_in_flight"].samples[0].value == 2
    assert families["stackc_router_latency_seconds"].type == "histogram"
    (pending,) = families[PENDING_REQUESTS.name].samples
    assert pending.labels == {"model": f"org/{name}"} and pending.value == 3
    (rejected,) = families["stackc_router_hold_rejected"].samples
    assert rejected.labels == {"model": f"org/{name}", "reason": "timeout"} and rejected.value == 1


def test_every_exported_family_is_declared_with_its_type_and_labels() -> None:
    metrics = Metrics()
    metrics.count(REQUESTS, "a", "http://10.0.0.1:8000")
    metrics.observe(LATENCY, "a", "http://10.0.0.1:8000", 0.2)
    metrics.reject("org/a", "queue_full")
    metrics.observe(PREFILL_LATENCY, "a", "http://10.0.0.2:8000", 0.1)
    metrics.count(PREFILL_ERRORS, "a", "http://10.0.0.2:8000")
    metrics.drop("org/a@candidate", "busy")
    exported = render(metrics, "a")
    assert {"stackc_router_prefill_latency_seconds", "stackc_router_prefill_errors",
            "stackc_router_mirror_dropped"} <= set(exported)
    declared = {f.name.removesuffix("_total"): f for f in FAMILIES}  # the parser names a counter without _total
    assert set(exported) <= set(declared)
    for name, family in exported.items():
        assert family.type == declared[name].type
        for sample in family.samples:
            assert set(sample.labels) - {"le"} == set(declared[name].labels)
    assert PENDING_REQUESTS.name == "stackc_router_pending_requests"  # the autoscaler's activation signal
