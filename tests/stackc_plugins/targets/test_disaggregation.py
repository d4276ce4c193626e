"""Targets and disaggregated models: one pool and a P/D picker for the gateway, the P/D sidecar on decode
pods, monitors per role, values per role, and located errors where a target can't."""

from __future__ import annotations

import pytest
import yaml

from stackc.diagnostics import DiagnosticsError
from stackc.testing import compile_text, objects

SPEC = """
version = 1
stack = {{ name = "pd", targets = ["manifests", "helm", "gateway", "monitoring"] }}
[models.m]
engine = "{engine}"
model = "org/m"
accelerators.count = 1
disaggregation = {{ connector = "{connector}", decode = {{ replicas = 2 }} }}
"""
MODEL = {"app.kubernetes.io/instance": "pd", "app.kubernetes.io/name": "m"}


def compiled(engine: str = "vllm", connector: str = "nixl", targets: list[str] | None = None,
             settings: tuple[str, ...] = ()):
    return compile_text(SPEC.format(engine=engine, connector=connector), targets=targets, settings=settings)


def by_name(files, prefix: str) -> dict[tuple[str, str], dict]:
    return {(o["kind"], o["metadata"]["name"]): o
            for o in objects({k: v for k, v in files.items() if k.startswith(prefix)})}


def test_the_gateway_pools_both_roles_and_picks_prefill_then_decode_by_role() -> None:
    gateway = by_name(compiled().files, "gateway/")
    pools = [obj for (kind, _), obj in gateway.items() if kind == "InferencePool"]
    assert [p["metadata"]["name"] for p in pools] == ["pd-m"]
    assert pools[0]["spec"]["selector"]["matchLabels"] == MODEL
    assert pools[0]["spec"]["targetPorts"] == [{"number": 8000}]
    config = yaml.safe_load(gateway[("ConfigMap", "pd-m-epp")]["data"]["default-plugins.yaml"])
    types = [p["type"] for p in config["plugins"]]
    assert {"prefill-filter", "decode-filter", "disagg-headers-handler"} <= set(types)
    assert types.index("always-disagg-pd-decider") < types.index("disagg-profile-handler")
    handler = next(p for p in config["plugins"] if p["type"] == "disagg-profile-handler")
    assert handler["parameters"] == {"deciders": {"prefill": "always-disagg-pd-decider"}}
    profiles = {p["name"]: [ref["pluginRef"] for ref in p["plugins"]] for p in config["schedulingProfiles"]}
    assert profiles["prefill"][0] == "prefill-filter" and profiles["decode"][0] == "decode-filter"
    assert "single-profile-handler" not in types


def test_with_the_gateway_decode_pods_put_the_pd_sidecar_before_the_engine() -> None:
    manifests = by_name(compiled().files, "manifests/")
    decode = manifests[("Deployment", "pd-m-decode")]["spec"]["template"]["spec"]
    prefill = manifests[("Deployment", "pd-m-prefill")]["spec"]["template"]["spec"]
    (proxy,) = decode["initContainers"]
    assert proxy["restartPolicy"] == "Always" and proxy["ports"] == [
        {"name": "http", "containerPort": 8000, "protocol": "TCP"}]
    assert proxy["args"] == ["--port=8000", "--model-server-port=8200", "--kv-connector=nixlv2",
                             "--secure-proxy=false"]
    engine = decode["containers"][0]
    assert engine["args"][engine["args"].index("--port") + 1] == "8200"
    assert engine["readinessProbe"]["httpGet"]["port"] == "engine"
    assert "initContainers" not in prefill
    assert manifests[("Service", "pd-m-decode")]["spec"]["ports"][0]["targetPort"] == "http"
    # the monitors scrape the engine itself
    monitors = by_name(compiled().files, "monitoring/")
    assert monitors[("PodMonitor", "pd-m-decode")]["spec"]["podMetricsEndpoints"][0]["portNumber"] == 8200
    # a build of the manifests alone writes the stack's decode pods: the gateway still needs the sidecar
    assert by_name(compiled(targets=["manifests"]).files, "manifests/") == manifests
    # a stack without the gateway: no sidecar
    alone = by_name(compiled(settings=('stack.targets=["manifests"]',)).files, "manifests/")
    assert "initContainers" not in alone[("Deployment", "pd-m-decode")]["spec"]["template"]["spec"]


def test_monitoring_watches_each_role_under_its_own_names() -> None:
    monitoring = by_name(compiled().files, "monitoring/")
    monitors = sorted(name for kind, name in monitoring if kind == "PodMonitor")
    assert monitors == ["pd-m-decode", "pd-m-endpoint-picker", "pd-m-prefill"]
    assert monitoring[("PodMonitor", "pd-m-prefill")]["spec"]["selector"]["matchLabels"] == {
        **MODEL, "llm-d.ai/role": "prefill"}
    groups = monitoring[("PrometheusRule", "pd-alerts")]["spec"]["groups"]
    assert sorted(g["name"] for g in groups) == ["pd-m-decode", "pd-m-prefill"]


def test_helm_values_hold_each_role_under_the_model() -> None:
    values = yaml.safe_load(compiled().files["helm/pd/values.yaml"])
    assert values["models"]["m"]["decode"]["replicas"] == 2 and values["models"]["m"]["prefill"]["replicas"] == 1


@pytest.mark.parametrize(("engine", "connector", "targets", "code", "path"), [
    ("sglang", "nixl", ["manifests", "gateway"], "E106", "models.m.disaggregation.connector"),
    ("vllm", "lmcache", ["manifests", "gateway"], "E106", "models.m.disaggregation.connector"),
    ("vllm", "nixl", ["kserve"], "E105", "models.m.disaggregation"),
])
def test_targets_that_cannot_split_a_model_say_so(engine: str, connector: str, targets: list[str], code: str,
                                                   path: str) -> None:
    with pytest.raises(DiagnosticsError) as error:
        compiled(engine, connector, targets)
    found = [(d.code, d.dotted_path, d.hint or "") for d in error.value.diagnostics if d.code.startswith("E")]
    assert [(c, p) for c, p, _ in found] == [(code, path)]
    if code == "E105":
        assert "llmisvc target" in found[0][2]  # a target stackc has


def test_the_gateway_refuses_a_role_spanning_nodes() -> None:
    text = SPEC.format(engine="vllm", connector="nixl").replace(
        "decode = { replicas = 2 }", "decode = { replicas = 2, nodes = 2, tensor_parallel = 2 }")
    with pytest.raises(DiagnosticsError) as error:
        compile_text(text)
    assert [(d.code, d.dotted_path) for d in error.value.diagnostics] == [
        ("E106", "models.m.disaggregation.decode.nodes")]
