"""Precise prefix-cache routing: vLLM publishes its KV events, the gateway's picker indexes them, and
located errors where an engine, strategy or model can't."""

from __future__ import annotations

import json

import pytest
import yaml

from stackc.diagnostics import DiagnosticsError, Severity
from stackc.testing import compile_text, is_core_kind, objects, validate_kubernetes

SPEC = """
version = 1
[stack]
name = "kv"
namespace = "llm"
targets = {targets}
[models.m]
engine = "{engine}"
model = "org/m"
replicas = 2
accelerators = {{ count = 1 }}
routing = {{ kv_events = true{routing} }}
{extra}
"""


def compile_spec(engine: str = "vllm", targets: str = '["manifests", "gateway"]', routing: str = "",
                 extra: str = ""):
    return compile_text(SPEC.format(engine=engine, targets=targets, routing=routing, extra=extra))


def find(found: list[dict], kind: str, name: str) -> dict:
    return next(o for o in found if o["kind"] == kind and o["metadata"]["name"] == name)


def engine_container(found: list[dict]) -> dict:
    return find(found, "Deployment", "kv-m")["spec"]["template"]["spec"]["containers"][0]


def test_vllm_publishes_every_block_event_on_its_pod_under_the_topic_the_picker_parses() -> None:
    engine = engine_container(objects(compile_spec().files))
    flag = engine["args"].index("--kv-events-config")
    assert json.loads(engine["args"][flag + 1]) == {
        "enable_kv_cache_events": True, "publisher": "zmq", "endpoint": "tcp://*:5557", "topic": "kv@$(POD_IP)@org/m"}
    # Kubernetes expands $(POD_IP) from the container's own variable
    assert {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}} in engine["env"]
    assert {"name": "kv-events", "containerPort": 5557, "protocol": "TCP"} in engine["ports"]


def test_the_picker_indexes_the_events_and_tokenizes_through_the_models_service() -> None:
    found = objects(compile_spec().files)
    config = yaml.safe_load(find(found, "ConfigMap", "kv-m-epp")["data"]["default-plugins.yaml"])
    plugins = {p["type"]: p.get("parameters") for p in config["plugins"]}
    assert plugins["token-producer"] == {"modelName": "org/m", "vllm": {"url": "http://kv-m.llm.svc:8000"}}
    assert plugins["precise-prefix-cache-producer"] == {"kvEventsConfig": {
        "topicFilter": "kv@", "discoverPods": True, "podDiscoveryConfig": {"socketPort": 5557}}}
    assert plugins["prefix-cache-scorer"] == {"prefixMatchInfoProducerName": "precise-prefix-cache-producer"}
    assert "endpoint-notification-source" in plugins
    assert config["dataLayer"] == {"sources": [{"pluginRef": "endpoint-notification-source",
                                                "extractors": [{"pluginRef": "precise-prefix-cache-producer"}]}]}
    weights = {p["pluginRef"]: p.get("weight") for p in config["schedulingProfiles"][0]["plugins"]}
    assert weights == {"queue-scorer": 2, "kv-cache-utilization-scorer": 2, "prefix-cache-scorer": 3,
                       "max-score-picker": None}
    # the picker dials the pods: it listens on nothing new
    service = find(found, "Service", "kv-m-epp")
    assert [p["port"] for p in service["spec"]["ports"]] == [9002, 9090]


def test_only_the_picker_reaches_the_event_port_and_it_may_call_the_render_api() -> None:
    found = objects(compile_spec().files)
    policy = find(found, "NetworkPolicy", "kv-m")
    picker = {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "m-epp", "app.kubernetes.io/instance": "kv"}}}
    events = [r for r in policy["spec"]["ingress"] if r.get("ports") == [{"port": "kv-events", "protocol": "TCP"}]]
    assert events == [{"from": [picker], "ports": [{"port": "kv-events", "protocol": "TCP"}]}]
    serving = policy["spec"]["ingress"][0]
    assert serving["ports"] == [{"port": "http", "protocol": "TCP"}] and picker in serving["from"]


def test_every_object_validates(crd_validator) -> None:
    found = objects(compile_spec().files)
    problems = [p for o in found for p in (validate_kubernetes(o) if is_core_kind(o) else crd_validator(o))]
    assert problems == []


def test_without_kv_events_the_picker_keeps_its_approximate_index_and_vllm_publishes_nothing() -> None:
    found = objects(compile_spec(routing=", strategy = \"prefix\"").files)
    assert "--kv-events-config" in engine_container(found)["args"]
    plain = objects(compile_text(SPEC.format(engine="vllm", targets='["manifests", "gateway"]', routing="",
                                             extra="").replace("kv_events = true", "kv_events = false")).files)
    assert "--kv-events-config" not in engine_container(plain)["args"]
    config = yaml.safe_load(find(plain, "ConfigMap", "kv-m-epp")["data"]["default-plugins.yaml"])
    assert "dataLayer" not in config and {"type": "prefix-cache-scorer"} in config["plugins"]


def test_the_manifests_built_alone_still_publish_for_the_stacks_gateway() -> None:
    compilation = compile_text(SPEC.format(engine="vllm", targets='["manifests", "gateway"]', routing="", extra=""),
                               targets=["manifests"])
    assert "--kv-events-config" in engine_container(objects(compilation.files))["args"]


def errors(**kwargs: str) -> list[tuple[str, str]]:
    with pytest.raises(DiagnosticsError) as error:
        compile_spec(**kwargs)
    return [(d.code, d.dotted_path) for d in error.value.diagnostics if d.severity is Severity.ERROR]


def test_engines_that_publish_no_events_say_so_where_they_are_asked() -> None:
    assert errors(engine="sglang") == [("E130", "models.m.routing.kv_events")]
    assert errors(engine="trtllm") == [("E130", "models.m.routing.kv_events")]


def test_events_feed_only_prefix_routing() -> None:
    assert errors(routing=', strategy = "least_loaded"') == [("E131", "models.m.routing.kv_events")]


def test_the_flag_is_stackcs_to_set() -> None:
    assert errors(extra='engine_args = ["--kv-events-config={}"]') == [("E132", "models.m.engine_args[0]")]


def test_the_picker_cannot_tokenize_behind_an_api_key() -> None:
    assert errors(extra='security.api_key = { name = "k", key = "key" }') == [("E133", "models.m.security.api_key")]


def test_models_stackc_does_not_wire_say_so() -> None:
    assert errors(extra='served_name = "m@1"') == [("E134", "models.m.served_name")]
    assert errors(extra="serving = { nodes = 2, tensor_parallel = 2 }") == [
        ("E134", "models.m.routing.kv_events")]
    assert ("E134", "models.m.routing.kv_events") in errors(extra="disaggregation = {}")


def test_without_a_target_that_routes_on_events_it_warns_and_publishes_nothing() -> None:
    compilation = compile_spec(targets='["manifests", "router"]')
    assert [(d.code, d.dotted_path) for d in compilation.warnings] == [("W130", "models.m.routing.kv_events")]
    assert "--kv-events-config" not in engine_container(objects(compilation.files))["args"]


def test_errors_are_located_in_the_spec() -> None:
    with pytest.raises(DiagnosticsError) as error:
        compile_spec(engine="sglang")
    (problem,) = error.value.diagnostics
    assert problem.location is not None and problem.location.line == 12
