"""The router's /metrics text parses as Prometheus reads it, whatever a model is called."""

from __future__ import annotations

from types import SimpleNamespace

from prometheus_client.parser import text_string_to_metric_families

from stackc_router.metrics import Metrics


def test_label_values_are_escaped_and_every_series_is_typed() -> None:
    metrics = Metrics()
    name = 'odd "model" \\ with\na newline'
    metrics.count("requests", name, "http://10.0.0.1:8000")
    metrics.observe("latency", name, "http://10.0.0.1:8000", 0.2)
    backend = SimpleNamespace(url="http://10.0.0.1:8000", in_flight=2, healthy=True)
    router = SimpleNamespace(routes={name: SimpleNamespace(config=SimpleNamespace(name=name),
                                                           backends={backend.url: backend})})
    families = {f.name: f for f in text_string_to_metric_families(metrics.render(router))}
    (sample,) = families["stackc_router_requests"].samples
    assert sample.labels == {"model": name, "backend": "http://10.0.0.1:8000"} and sample.value == 1
    assert families["stackc_router_backend_healthy"].type == "gauge"
    assert families["stackc_router_in_flight"].samples[0].value == 2
    assert families["stackc_router_latency_seconds"].type == "histogram"
