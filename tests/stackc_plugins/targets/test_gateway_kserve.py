"""The Gateway API Inference Extension and KServe targets on one stack of three models on two engines."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import yaml

from stackc import pipeline
from stackc.diagnostics import DiagnosticsError
from stackc.plugins import load_registry
from stackc.testing import compile_text, is_core_kind, objects, validate_kubernetes

REPO = Path(__file__).resolve().parents[3]


def compiled(*settings: str) -> list[dict]:
    compilation = pipeline.compile_stack([REPO / "specs" / "gateway.toml"], load_registry(), settings)
    return objects({k: v for k, v in compilation.files.items() if not k.startswith("manifests/")})


def by_kind(found: list[dict]) -> Counter:
    return Counter(o["kind"] for o in found)


def test_three_models_two_engines_give_three_pools_three_pickers_one_gateway(crd_validator) -> None:
    everything = compiled()
    gateway_side = [o for o in everything if o["kind"] not in ("InferenceService", "ServingRuntime")]
    counts = by_kind(gateway_side)
    assert counts["InferencePool"] == 3 and counts["Gateway"] == 1 and counts["HTTPRoute"] == 3
    pickers = [o for o in gateway_side if o["kind"] == "Deployment"
               and o["metadata"]["labels"]["app.kubernetes.io/component"] == "endpoint-picker"]
    assert len(pickers) == 3
    problems = [p for o in everything for p in (validate_kubernetes(o) if is_core_kind(o) else crd_validator(o))]
    assert problems == []


def test_kserve_has_a_runtime_and_an_inference_service_per_model() -> None:
    found = compiled()
    runtimes = [o for o in found if o["kind"] == "ServingRuntime"]
    services = [o for o in found if o["kind"] == "InferenceService"]
    assert sorted(r["metadata"]["name"] for r in runtimes) == ["gateway-llama", "gateway-mistral", "gateway-qwen"]
    assert len(services) == 3
    assert all(r["spec"]["containers"][0]["name"] == "kserve-container" for r in runtimes)
    assert not {"HorizontalPodAutoscaler", "ScaledObject"} & set(by_kind(found))  # KServe owns its autoscaler
    llama = next(s for s in services if s["metadata"]["name"] == "gateway-llama")
    predictor = llama["spec"]["predictor"]
    assert predictor["model"]["runtime"] == "gateway-llama" and predictor["model"]["modelFormat"] == {"name": "vllm"}
    assert predictor["model"]["storageUri"] == "hf://meta-llama/Llama-3.1-8B-Instruct"
    assert predictor["model"]["args"][0] == "/mnt/models"  # KServe downloads the weights there
    assert (predictor["minReplicas"], predictor["maxReplicas"], predictor["scaleMetric"], predictor["scaleTarget"]) == (
        2, 6, "cpu", 70)
    assert llama["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Standard"
    assert predictor["model"]["resources"]["limits"]["nvidia.com/gpu"] == "1"


def test_pools_select_their_model_and_routes_match_every_name() -> None:
    found = compiled()
    pool = next(o for o in found if o["kind"] == "InferencePool" and o["metadata"]["name"] == "gateway-llama")
    assert pool["spec"]["selector"]["matchLabels"] == {"app.kubernetes.io/name": "llama", "app.kubernetes.io/instance": "gateway"}
    assert pool["spec"]["targetPorts"] == [{"number": 8000}]
    assert pool["spec"]["endpointPickerRef"] == {"name": "gateway-llama-epp", "port": {"number": 9002}, "failureMode": "FailClose"}
    route = next(o for o in found if o["kind"] == "HTTPRoute" and o["metadata"]["name"] == "gateway-llama")
    names = [m["headers"][0]["value"] for m in route["spec"]["rules"][0]["matches"]]
    assert names == ["meta-llama/Llama-3.1-8B-Instruct", "llama-3.1-8b"]
    assert route["spec"]["rules"][0]["backendRefs"] == [{"group": "inference.networking.k8s.io", "kind": "InferencePool",
                                                         "name": "gateway-llama"}]
    config_map = next(o for o in found if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "gateway-llama-epp")
    config = yaml.safe_load(config_map["data"]["default-plugins.yaml"])
    weights = {p["pluginRef"]: p.get("weight") for p in config["schedulingProfiles"][0]["plugins"]}
    assert weights == {"queue-scorer": 2, "kv-cache-utilization-scorer": 2, "prefix-cache-scorer": 3, "max-score-picker": None}
    service = next(o for o in found if o["kind"] == "Service" and o["metadata"]["name"] == "gateway-llama-epp")
    assert service["spec"]["ports"][0]["appProtocol"] == "kubernetes.io/h2c"


def test_aliases_of_a_one_name_engine_are_rewritten_for_it() -> None:
    rewrite = next(o for o in compiled() if o["kind"] == "InferenceModelRewrite")
    assert rewrite["metadata"]["name"] == "gateway-qwen"
    assert rewrite["spec"]["rules"][0]["targets"] == [{"modelRewrite": "Qwen/Qwen2.5-7B-Instruct", "weight": 1}]


def test_a_referenced_gateway_is_not_created_and_picker_rbac_is_least_privilege() -> None:
    found = compiled("targets.gateway.create_gateway=false", "targets.gateway.gateway_name=shared",
                     "targets.gateway.gateway_namespace=infra")
    assert "Gateway" not in by_kind(found)
    route = next(o for o in found if o["kind"] == "HTTPRoute")
    assert route["spec"]["parentRefs"] == [{"name": "shared", "namespace": "infra"}]
    role = next(o for o in found if o["kind"] == "Role")
    assert all(set(rule["verbs"]) <= {"get", "list", "watch"} for rule in role["rules"])


def test_cluster_runtimes_by_option() -> None:
    spec = ('version = 1\n[stack]\nname = "k"\ntargets = ["kserve"]\n[models.m]\nengine = "vllm"\nmodel = "org/m"\n'
            'accelerators = { count = 1 }\n[targets.kserve]\ncluster_runtimes = true\n')
    runtime = next(o for o in objects(compile_text(spec).files) if o["kind"] == "ClusterServingRuntime")
    assert "namespace" not in runtime["metadata"]


def test_listener_certificates_and_protocols_must_agree() -> None:
    text = ('version = 1\n[stack]\nname = "g"\ntargets = ["gateway", "manifests"]\n[models.m]\nengine = "vllm"\n'
            'model = "org/m"\naccelerators = { count = 1 }\n[targets.gateway]\ncreate_gateway = true\n'
            '[[targets.gateway.listeners]]\nname = "web"\nport = 80\ntls_secret = "cert"\n'
            '[[targets.gateway.listeners]]\nname = "secure"\nport = 443\nprotocol = "HTTPS"\n'
            '[[targets.gateway.listeners]]\nname = "web"\nport = 81\n'
            '[[targets.gateway.listeners]]\nname = "other"\nport = 80\ntls_secret = "cert"\n')
    with pytest.raises(DiagnosticsError) as error:
        compile_text(text)
    assert [(d.code, d.dotted_path) for d in error.value.diagnostics] == [
        ("E062", "targets.gateway.listeners[0].tls_secret"), ("E062", "targets.gateway.listeners[1].protocol"),
        ("E062", "targets.gateway.listeners[2].name"), ("E062", "targets.gateway.listeners[3].port"),
        ("E062", "targets.gateway.listeners[3].tls_secret")]


def test_several_picker_replicas_elect_a_leader_over_a_lease() -> None:
    def picker(found: list[dict]) -> tuple[dict, dict]:
        deployment = next(o for o in found if o["kind"] == "Deployment" and o["metadata"]["name"] == "gateway-llama-epp")
        role = next(o for o in found if o["kind"] == "Role" and o["metadata"]["name"] == "gateway-llama-epp")
        return deployment, role

    deployment, role = picker(compiled())
    assert deployment["spec"]["replicas"] == 1
    assert "--ha-enable-leader-election" not in deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "coordination.k8s.io" not in [g for rule in role["rules"] for g in rule["apiGroups"]]
    deployment, role = picker(compiled("targets.gateway.picker_replicas=2"))
    assert deployment["spec"]["replicas"] == 2
    assert "--ha-enable-leader-election" in deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    (lease,) = [rule for rule in role["rules"] if rule["apiGroups"] == ["coordination.k8s.io"]]
    assert {"create", "update", "get"} <= set(lease["verbs"]) and validate_kubernetes(deployment) == []


ONE_MODEL = """
version = 1
[stack]
name = "one"
targets = ["gateway"]
[models.m]
engine = "vllm"
model = "org/m"
accelerators.count = 1
[targets.gateway]
envoy_extension_policy = true
extension_policy_target = "Gateway"
"""


def test_the_extension_policy_can_target_the_gateway_of_a_one_model_stack(crd_validator) -> None:
    (policy,) = [o for o in objects(compile_text(ONE_MODEL).files) if o["kind"] == "EnvoyExtensionPolicy"]
    assert policy["spec"]["targetRefs"] == [{"group": "gateway.networking.k8s.io", "kind": "Gateway",
                                             "name": "one-gateway"}]
    assert crd_validator(policy) == []


@pytest.mark.parametrize("extra, message", [
    ('[models.n]\nengine = "vllm"\nmodel = "org/n"\naccelerators.count = 1\n', "the stack has 2 models"),
    ('[targets.gateway]\ngateway_namespace = "gw"\ncreate_gateway = false\n', "the Gateway is in 'gw'"),
])
def test_a_gateway_policy_that_cannot_work_is_located(extra: str, message: str) -> None:
    # a table of its own after ONE_MODEL's, or more keys of [targets.gateway]
    text = ONE_MODEL + extra if extra.startswith("[models") else ONE_MODEL.replace(
        "[targets.gateway]\n", extra)
    with pytest.raises(DiagnosticsError) as error:
        compile_text(text)
    (problem,) = error.value.diagnostics
    assert (problem.code, problem.dotted_path) == ("E063", "targets.gateway.extension_policy_target")
    assert message in problem.message
