from __future__ import annotations

import json

from stackc.testing import compile_text, objects

SPEC = """
version = 1
[stack]
name = "m"
namespace = "ns"
targets = ["monitoring"]
[defaults]
engine = "vllm"
accelerators = { count = 1 }
[models.llama]
model = "org/llama"
[models.llama-big]
model = "org/llama-big"
[targets.monitoring]
monitor_labels = { release = "prom" }
interval = "30s"
"""


def found() -> dict[str, dict]:
    return {f"{o['kind']}/{o['metadata']['name']}": o for o in objects(compile_text(SPEC).files)}


def test_a_podmonitor_per_model_scrapes_the_engines_metrics_endpoint() -> None:
    monitor = found()["PodMonitor/m-llama"]
    assert monitor["metadata"]["labels"]["release"] == "prom"
    assert monitor["spec"]["selector"] == {"matchLabels": {"app.kubernetes.io/name": "llama", "app.kubernetes.io/instance": "m"}}
    assert monitor["spec"]["podMetricsEndpoints"] == [{"port": "http", "path": "/metrics", "interval": "30s"}]
    assert monitor["spec"]["podTargetLabels"] == ["app.kubernetes.io/instance", "app.kubernetes.io/name"]


def test_dashboard_queries_use_engine_metric_names_and_never_mix_models() -> None:
    config_map = found()["ConfigMap/m-dashboard"]
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    board = json.loads(config_map["data"]["m.json"])
    queries = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
    assert any("vllm:num_requests_waiting" in q for q in queries)
    llama = [q for q in queries if 'app_kubernetes_io_name="llama"' in q]
    big = [q for q in queries if 'app_kubernetes_io_name="llama-big"' in q]
    assert len(llama) == len(big) == 5 and not set(llama) & set(big)
