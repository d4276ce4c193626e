"""Autoscaling: one autoscaler per model owns its replicas, on a signal some component declares."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

import pytest
import yaml

from stackc.diagnostics import DiagnosticsError
from stackc.testing import compile_text, objects, validate_kubernetes

SPEC = """\
version = 1
[stack]
name = "a"
namespace = "ns"
targets = ["manifests", "helm", "router", "monitoring"]
[models.chat]
engine = "vllm"
model = "org/chat"
served_name = "chat-model"
accelerators = { count = 1 }
resources.requests.cpu = "4"
"""


def compiled(scaling: str, targets: list[str] | None = None) -> Mapping[str, bytes]:
    return compile_text(SPEC + f"autoscaling = {{ {scaling} }}\n", targets=targets).files


def build(scaling: str, targets: list[str] | None = None) -> dict[str, dict]:
    """The model's objects (manifests or kserve) by kind/name."""
    files = compiled(scaling, targets)
    found = objects({name: data for name, data in files.items() if name.startswith(("manifests/", "kserve/"))})
    return {f"{o['kind']}/{o['metadata']['name']}": o for o in found}


def errors(text: str) -> list[str]:
    with pytest.raises(DiagnosticsError) as caught:
        compile_text(text)
    return [d.render() for d in caught.value.diagnostics if d.severity.value == "error"]


def test_queue_signal_becomes_a_scaledobject_that_owns_the_replicas(crd_validator: Callable[[Mapping[str, Any]], list[str]]) -> None:
    scaling = 'min_replicas = 1, max_replicas = 4, signal = "waiting", target = 5, scale_down_seconds = 600'
    found = build(scaling)
    scaled = found["ScaledObject/a-chat"]
    assert crd_validator(scaled) == []
    assert "HorizontalPodAutoscaler/a-chat" not in found
    assert "replicas" not in found["Deployment/a-chat"]["spec"]
    spec = scaled["spec"]
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (1, 4)
    assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "a-chat"}
    assert spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"] == {"scaleDown": {"stabilizationWindowSeconds": 600}}
    (trigger,) = spec["triggers"]
    assert trigger["metadata"] == {
        "serverAddress": "http://prometheus-operated.monitoring.svc:9090", "threshold": "5",
        "query": 'sum(vllm:num_requests_waiting{namespace="ns", app_kubernetes_io_instance="a", '
                 'app_kubernetes_io_name="chat"})'}
    assert trigger["metricType"] == "AverageValue"
    values = yaml.safe_load(compiled(scaling)["helm/a/values.yaml"])
    assert "replicas" not in values["models"]["chat"]


def test_kv_cache_usage_is_an_average_compared_as_a_value() -> None:
    (trigger,) = build('max_replicas = 3, signal = "kv_cache_usage", target = 0.8')["ScaledObject/a-chat"]["spec"]["triggers"]
    assert trigger["metricType"] == "Value" and trigger["metadata"]["threshold"] == "0.8"
    assert trigger["metadata"]["query"].startswith("avg(vllm:kv_cache_usage_perc{")


def test_cpu_becomes_an_hpa_and_nothing_else() -> None:
    found = build('min_replicas = 2, max_replicas = 5, signal = "cpu", target = 70, scale_up_seconds = 30')
    hpa = found["HorizontalPodAutoscaler/a-chat"]
    assert validate_kubernetes(hpa) == []
    assert "ScaledObject/a-chat" not in found and "replicas" not in found["Deployment/a-chat"]["spec"]
    assert hpa["spec"]["metrics"] == [{"type": "Resource", "resource": {
        "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}}]
    assert hpa["spec"]["behavior"] == {"scaleUp": {"stabilizationWindowSeconds": 30}}
    assert validate_kubernetes(found["PodDisruptionBudget/a-chat"]) == []


def test_scale_to_zero_wakes_on_the_requests_the_router_holds(crd_validator: Callable[[Mapping[str, Any]], list[str]]) -> None:
    scaled = build('min_replicas = 0, max_replicas = 2, signal = "router_pending", target = 4, activation = 1, '
                   'scale_down_seconds = 900')["ScaledObject/a-chat"]
    assert crd_validator(scaled) == []
    spec = scaled["spec"]
    assert spec["minReplicaCount"] == 0 and spec["cooldownPeriod"] == 900
    (trigger,) = spec["triggers"]
    assert trigger["metadata"]["activationThreshold"] == "1"
    router = 'namespace="ns", app_kubernetes_io_instance="a", app_kubernetes_io_name="router"'
    # held requests wake it; the requests it then serves keep it awake
    assert trigger["metadata"]["query"] == (
        f'(sum(stackc_router_pending_requests{{{router}, model="chat-model"}}) or vector(0)) + '
        f'(sum(stackc_router_in_flight{{{router}, model="chat"}}) or vector(0))')


def test_kserve_standard_scales_on_prometheus_through_its_keda_mode(crd_validator: Callable[[Mapping[str, Any]], list[str]]) -> None:
    found = build('min_replicas = 1, max_replicas = 3, signal = "running", target = 8', targets=["kserve", "router"])
    service = found["InferenceService/a-chat"]
    assert crd_validator(service) == []
    assert service["metadata"]["annotations"]["serving.kserve.io/autoscalerClass"] == "keda"
    (metric,) = service["spec"]["predictor"]["autoScaling"]["metrics"]
    assert metric["external"]["metric"]["query"].startswith("sum(vllm:num_requests_running{")
    assert metric["external"]["target"] == {"type": "AverageValue", "averageValue": "8"}


def test_kserve_keeps_its_own_spelling() -> None:
    predictor = build('min_replicas = 1, max_replicas = 3, metric = "cpu", target = 60',
                      targets=["kserve"])["InferenceService/a-chat"]["spec"]["predictor"]
    assert (predictor["scaleMetric"], predictor["scaleTarget"], predictor["minReplicas"]) == ("cpu", 60, 1)


@pytest.mark.parametrize(("scaling", "targets", "expected"), [
    ('min_replicas = 0, max_replicas = 2, signal = "waiting", target = 1', None,
     "E082] models.chat.autoscaling.min_replicas: with no replica running, nothing exports 'waiting'"),
    ('max_replicas = 2, signal = "router_pending", target = 1', ["manifests"],
     "E081] models.chat.autoscaling.signal: signal 'router_pending' counts the requests the router holds"),
    ('min_replicas = 0, max_replicas = 2, signal = "custom", query = "sum(up)", target = 1', ["manifests"],
     "E082] models.chat.autoscaling.min_replicas: at zero replicas the model's requests need the router"),
    ('max_replicas = 2, signal = "waiting"', None, "E080] models.chat.autoscaling.signal: signal 'waiting' needs a target"),
    ('max_replicas = 2, signal = "custom", target = 1', None, "E080] models.chat.autoscaling.signal: signal 'custom' needs"),
    ('max_replicas = 2, signal = "cpu", metric = "cpu", target = 50', None, "E080] models.chat.autoscaling.metric: set either"),
    ('max_replicas = 2, metric = "concurrency", target = 5', ["manifests"],
     "E083] models.chat.autoscaling.metric: 'concurrency' is Knative's metric"),
    ('max_replicas = 3', ["helm"], "E083] models.chat.autoscaling: target 'helm' has no platform that picks a signal"),
    ('min_replicas = 0, max_replicas = 2, signal = "router_pending", target = 1', ["kserve", "router"],
     "E082] models.chat.autoscaling.min_replicas: the kserve target's Standard mode keeps at least one replica"),
    ('max_replicas = 2, signal = "cpu", target = 0.5', None, "E080] models.chat.autoscaling.target: the cpu target is a whole"),
    ('max_replicas = 2, signal = "memory", target = 80', None, "E080] models.chat.autoscaling: an HPA measures memory"),
    ('max_replicas = 2, target = 0.5', ["kserve"], "E083] models.chat.autoscaling.target: KServe's scaleTarget is a whole"),
])
def test_autoscaling_that_cannot_work_is_a_located_error(scaling: str, targets: list[str] | None, expected: str) -> None:
    text = SPEC if targets is None else SPEC.replace('targets = ["manifests", "helm", "router", "monitoring"]',
                                                      f"targets = {json.dumps(targets)}")
    found = errors(text + f"autoscaling = {{ {scaling} }}\n")
    assert any(expected in error and error.startswith("spec.toml:") for error in found), found


def test_an_engine_without_the_series_is_named() -> None:
    text = SPEC.replace('engine = "vllm"\nmodel = "org/chat"', 'engine = "llamacpp"\nmodel = "/models/chat.gguf"')
    (error,) = errors(text + 'autoscaling = { max_replicas = 2, signal = "kv_cache_usage", target = 0.8 }\n')
    assert "E081] models.chat.autoscaling.signal: engine 'llamacpp' exports no series for signal 'kv_cache_usage'" in error
    assert "waiting, running, tokens_per_second" in error


def test_building_some_targets_still_reads_the_stacks_router() -> None:
    found = build('min_replicas = 0, max_replicas = 2, signal = "router_pending", target = 4', targets=["manifests"])
    assert "stackc_router_pending_requests" in found["ScaledObject/a-chat"]["spec"]["triggers"][0]["metadata"]["query"]


def test_without_the_monitoring_target_a_prometheus_trigger_warns() -> None:
    text = SPEC.replace('"monitoring"]', '"router"]') + 'autoscaling = { max_replicas = 2, signal = "waiting", target = 3 }\n'
    warnings = [d.render() for d in compile_text(text).warnings]
    assert any("W080] models.chat.autoscaling: the trigger selects series by namespace" in w for w in warnings), warnings


def test_a_multi_node_model_scales_whole_groups(crd_validator: Callable[[Mapping[str, Any]], list[str]]) -> None:
    text = SPEC.replace("accelerators = { count = 1 }", "accelerators = { count = 8 }\n"
                        "serving = { tensor_parallel = 8, pipeline_parallel = 2, nodes = 2 }")
    files = compile_text(text + 'autoscaling = { max_replicas = 3, signal = "waiting", target = 8 }\n').files
    found = {f"{o['kind']}/{o['metadata']['name']}": o for o in objects(files)}
    scaled, group = found["ScaledObject/a-chat"], found["LeaderWorkerSet/a-chat"]
    assert crd_validator(scaled) == [] and crd_validator(group) == []
    assert scaled["spec"]["scaleTargetRef"] == {"apiVersion": "leaderworkerset.x-k8s.io/v1", "kind": "LeaderWorkerSet",
                                                "name": "a-chat"}
    assert "replicas" not in group["spec"]
