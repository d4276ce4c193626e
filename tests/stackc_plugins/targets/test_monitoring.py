from __future__ import annotations

import json
import re

from pathlib import Path

import attrs
import pytest

from stackc import pipeline
from stackc.diagnostics import DiagnosticsError
from stackc.plugins import load_registry
from stackc.testing import compile_text, objects, pod_templates

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
    assert monitor["spec"]["podMetricsEndpoints"] == [{"portNumber": 8000, "path": "/metrics", "interval": "30s"}]
    assert monitor["spec"]["podTargetLabels"] == ["app.kubernetes.io/instance", "app.kubernetes.io/name"]


def test_dashboard_queries_use_engine_metric_names_and_never_mix_models() -> None:
    config_map = found()["ConfigMap/m-dashboard"]
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    board = json.loads(config_map["data"]["m.json"])
    queries = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
    assert any("vllm:num_requests_waiting" in q for q in queries)
    llama = [q for q in queries if 'app_kubernetes_io_name="llama"' in q]
    big = [q for q in queries if 'app_kubernetes_io_name="llama-big"' in q]
    assert len(llama) == len(big) == 8 and not set(llama) & set(big)


FULL = SPEC.replace('targets = ["monitoring"]', 'targets = ["manifests", "router", "gateway", "monitoring"]') + """
[models.llama.autoscaling]
min_replicas = 0
max_replicas = 3
signal = "router_pending"
target = 4
activation = 1
[models.llama-big.autoscaling]
max_replicas = 4
signal = "tokens_per_second"
target = 500
"""


def emitted_expressions(compilation) -> list[str]:
    """Every PromQL expression in the output: triggers, alert rules, dashboard panels."""
    found = objects(compilation.files)
    exprs = [t["metadata"]["query"] for o in found if o["kind"] == "ScaledObject" for t in o["spec"]["triggers"]]
    exprs += [r["expr"] for o in found if o["kind"] == "PrometheusRule" for g in o["spec"]["groups"] for r in g["rules"]]
    boards = [json.loads(o["data"][key]) for o in found if o["kind"] == "ConfigMap" and "dashboard" in o["metadata"]["name"]
              for key in o["data"]]
    return exprs + [t["expr"] for board in boards for p in board["panels"] for t in p.get("targets", [])]


def declared_names(compilation) -> set[str]:
    from stackc.plan import signals

    plan = compilation.plan
    names = {signals.PROMETHEUS_UP, signals.DEPLOYMENT_REPLICAS, signals.DEPLOYMENT_AVAILABLE}
    for component in plan.components:
        metrics = component.endpoint.metrics
        values = attrs.asdict(metrics.names).values() if metrics is not None else ()
        names |= {v.partition("{")[0] for v in values if isinstance(v, str)}
    for exporter in plan.stack.exporters:
        if exporter.router is not None:
            names |= {v for k, v in attrs.asdict(exporter.router).items() if k != "model_label" and v}
    return names | {f"{n}_bucket" for n in names}


def test_every_expression_uses_only_declared_metric_names() -> None:
    compilation = compile_text(FULL)
    exprs = emitted_expressions(compilation)
    assert len(exprs) > 20
    used = {name for expr in exprs for name in re.findall(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\{", expr)}
    assert used and used <= declared_names(compilation), used - declared_names(compilation)


def test_monitors_and_rules_validate_against_their_crds(crd_validator) -> None:
    found = {f"{o['kind']}/{o['metadata']['name']}": o for o in objects(compile_text(FULL).files)}
    checked = [o for o in found.values() if o["apiVersion"].startswith(("monitoring.coreos.com", "keda.sh"))]
    assert {o["kind"] for o in checked} == {"PodMonitor", "PrometheusRule", "ScaledObject"}
    assert [p for o in checked for p in crd_validator(o)] == []
    assert {"PodMonitor/m-router", "PodMonitor/m-llama-endpoint-picker"} <= set(found)
    rules = found["PrometheusRule/m-alerts"]["spec"]["groups"]
    alerts = {g["name"]: [r["alert"] for r in g["rules"]] for g in rules}
    # llama scales to zero by design: no replica is not an alert there
    assert alerts["m-llama"] == ["ModelErrorRate", "ModelRequestsRefusedNoReplica", "ModelTimeToFirstTokenSLO",
                                 "ModelQueueSLO"]
    assert alerts["m-llama-big"][0] == "ModelNoReadyReplica"


def test_the_dashboard_is_also_a_json_file() -> None:
    files = compile_text(SPEC).files
    board = json.loads(files["monitoring/dashboards/m.json"])
    assert board == json.loads(found()["ConfigMap/m-dashboard"]["data"]["m.json"])


def test_refusals_count_every_name_the_model_serves_its_adapters_too() -> None:
    text = FULL.replace('model = "org/llama"\n', 'model = "org/llama"\n'
                        'serving.lora_adapters = [{ name = "sql.v2", source = "org/sql-lora" }]\n', 1)
    exprs = emitted_expressions(compile_text(text))
    refused = [e for e in exprs if "stackc_router_hold_rejected_total" in e and 'app_kubernetes_io_name="router"' in e]
    assert any('model=~"org/llama|sql\\\\.v2"' in e for e in refused), refused


def test_a_scrape_timeout_reaches_every_monitor_and_stays_within_the_interval() -> None:
    monitors = [o for o in objects(compile_text(SPEC + 'scrape_timeout = "25s"\n').files) if o["kind"] == "PodMonitor"]
    assert monitors and all(e["scrapeTimeout"] == "25s" for m in monitors for e in m["spec"]["podMetricsEndpoints"])
    with pytest.raises(DiagnosticsError) as error:
        compile_text(SPEC + 'scrape_timeout = "1m"\n')
    (problem,) = error.value.diagnostics
    assert (problem.code, problem.dotted_path) == ("E153", "targets.monitoring.scrape_timeout")


# -- every monitor scrapes a port its pods have --------------------------------------------------------------
REPO = Path(__file__).resolve().parents[3]
EXAMPLES = sorted(p for p in (REPO / "specs").rglob("*.toml") if "invalid" not in p.parts)
ENGINES = {
    "vllm": 'model = "org/m-1b"\naccelerators = { count = 1 }',
    "sglang": 'model = "org/m-1b"\naccelerators = { count = 1 }',
    "trtllm": 'model = "org/m-1b"\naccelerators = { count = 1 }',
    "trtllm-triton": 'model = "org/m-1b"\naccelerators = { count = 1 }\n'
                     'engine_options = { mode = "triton", checkpoint_dir = "/ckpt" }',
    "llamacpp": 'model = "hf://org/r/m.gguf"',
    "ollama": 'model = "ollama://llama3.2:1b"',
    "neuron": 'model = "org/m-1b"\naccelerators = { count = 1, resource = "aws.amazon.com/neuron" }',
}
DEPLOYERS = {"manifests": "", "kserve-Standard": "", "kserve-Knative": 'deployment_mode = "Knative"'}


def pod_ports(obj: dict, runtimes: dict[str, dict]) -> list[tuple[dict, set]]:
    """(pod labels, container port names and numbers) of every pod an object makes; a KServe predictor's
    labels are its own and its ServingRuntime's (a multi-node head's role)."""
    found = []
    for meta, pod in pod_templates(obj):
        labels = meta.get("labels", {})
        if obj["kind"] == "InferenceService":
            predictor = obj["spec"]["predictor"]
            runtime = runtimes.get(predictor.get("model", {}).get("runtime"), {})
            labels = {**predictor.get("labels", {}), **runtime.get("spec", {}).get("labels", {})}
        containers = [*pod.get("containers", ()), *pod.get("initContainers", ())]
        found.append((labels, {value for c in containers for p in c.get("ports", ())
                               for value in (p.get("name"), p["containerPort"])}))
    return found


def unscraped(files) -> list[str]:
    """Each PodMonitor endpoint whose port some pod it selects does not have, or that selects no pod."""
    everything = objects(files)
    runtimes = {o["metadata"]["name"]: o for o in everything if o["kind"] == "ServingRuntime"}
    pods = [found for obj in everything for found in pod_ports(obj, runtimes)]
    problems = []
    for monitor in (o for o in everything if o["kind"] == "PodMonitor"):
        selector = monitor["spec"]["selector"]["matchLabels"]
        selected = [ports for labels, ports in pods if selector.items() <= labels.items()]
        for endpoint in monitor["spec"]["podMetricsEndpoints"]:
            port = endpoint.get("portNumber", endpoint.get("port"))
            if not selected or any(port not in ports for ports in selected):
                problems.append(f"{monitor['metadata']['name']}: port {port} on {len(selected)} pods")
    return problems


@pytest.mark.parametrize("deployer", DEPLOYERS)
@pytest.mark.parametrize("engine", ENGINES)
def test_every_monitor_scrapes_a_port_its_pods_have_in_every_target_and_mode(engine: str, deployer: str) -> None:
    target = deployer.partition("-")[0]
    text = (f'version = 1\n[stack]\nname = "s"\ntargets = ["{target}", "monitoring", "router", "gateway"]\n'
            f'[models.m]\nengine = "{engine.partition("-")[0]}"\n{ENGINES[engine]}\n'
            f"[targets.kserve]\n{DEPLOYERS[deployer]}\n")
    compilation = compile_text(text)
    warned = {d.code for d in compilation.warnings}
    if engine == "trtllm-triton" and deployer == "kserve-Knative":  # Triton's metrics port is not the serving one
        assert "W076" in warned and unscraped(compilation.files) == ["s-m: port 8002 on 1 pods"]
    else:
        assert "W076" not in warned and unscraped(compilation.files) == []


@pytest.mark.parametrize("mode", ["Standard", "Knative"])
@pytest.mark.parametrize("spec", EXAMPLES, ids=lambda p: p.relative_to(REPO / "specs").as_posix())
def test_every_monitor_of_every_example_scrapes_a_port_its_pods_have(spec: Path, mode: str) -> None:
    """Multi-node groups, P/D roles, Ray clusters and the stack's own exporters, in each KServe mode."""
    registry = load_registry()
    checked = pipeline.check([spec], registry).spec
    settings = [f"targets.kserve.deployment_mode={mode}"]
    multi_node = any(model.serving.nodes > 1 for model in checked.models.values())
    if mode == "Knative" and multi_node and "kserve" in checked.stack.targets:
        with pytest.raises(DiagnosticsError, match="E074"):  # KServe runs multi-node predictors in Standard mode
            pipeline.compile_stack([spec], registry, settings)
        return
    compilation = pipeline.compile_stack([spec], registry, settings,
                                         targets=sorted({*checked.stack.targets, "monitoring"}))
    assert unscraped(compilation.files) == []


def test_a_model_whose_engine_exports_no_metrics_is_a_located_warning() -> None:
    text = ('version = 1\n[stack]\nname = "s"\ntargets = ["manifests", "monitoring"]\n[models.c]\nengine = "command"\n'
            'model = "/models/x"\nimage = "example.com/server:1"\n[models.c.engine_options]\nport = 9000\n'
            'command = ["server"]\n')
    compilation = compile_text(text)
    assert ("W197", "models.c.engine") in {(d.code, d.dotted_path) for d in compilation.warnings}
    assert not [o for o in objects(compilation.files) if o["kind"] == "PodMonitor" and "s-c" == o["metadata"]["name"]]
    with_metrics = compile_text(text + 'metrics_path = "/metrics"\n')
    assert "W197" not in {d.code for d in with_metrics.warnings}
