"""KServe's LLMInferenceService: each spec feature shows in the service (valid under the CRD, CEL rules
included) or as a located diagnostic."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from stackc.diagnostics import DiagnosticsError, Severity
from stackc.testing import compile_text, is_core_kind, objects, validate_kubernetes

MODEL = 'engine = "vllm"\nmodel = "hf://org/model"\naccelerators = { count = 1 }\n'


def spec(model: str = "", targets: str = '"llmisvc"', options: str = "", stack: str = "") -> str:
    return (f'version = 1\n[stack]\nname = "s"\nnamespace = "ns"\ntargets = [{targets}]\n{stack}'
            f'[models.m]\n{MODEL}{model}\n' + (f"[targets.llmisvc]\n{options}\n" if options else ""))


def build(text: str, crd_validator) -> tuple[dict[str, Any], list[dict], Any]:
    compilation = compile_text(text)
    found = objects(compilation.files)
    assert [p for o in found for p in (validate_kubernetes(o) if is_core_kind(o) else crd_validator(o))] == []
    (service,) = [o for o in found if o["kind"] == "LLMInferenceService"]
    return service, found, compilation


def codes(text: str) -> dict[str, tuple]:
    with pytest.raises(DiagnosticsError) as raised:
        compile_text(text)
    return {d.code: d.path for d in raised.value.diagnostics if d.severity is Severity.ERROR}


def warnings(compilation: Any) -> dict[str, tuple]:
    return {d.code: d.path for d in compilation.warnings if d.location is not None}


def test_a_model_becomes_one_service_with_its_uri_name_template_and_managed_router(crd_validator) -> None:
    service, found, _ = build(spec(options='base_refs = ["kserve-config-llm-template"]'), crd_validator)
    assert service["apiVersion"] == "serving.kserve.io/v1alpha2"
    assert service["metadata"] == {**service["metadata"], "name": "s-m", "namespace": "ns"}
    body = service["spec"]
    assert body["model"] == {"uri": "hf://org/model", "name": "org/model"}
    assert body["baseRefs"] == [{"name": "kserve-config-llm-template"}]
    assert body["replicas"] == 1 and "scaling" not in body
    main = body["template"]["containers"][0]
    assert main["name"] == "main" and "/mnt/models" in main["args"]
    assert main["resources"]["limits"] == {"nvidia.com/gpu": "1"}
    assert body["template"]["securityContext"]["runAsNonRoot"] is True
    assert body["router"] == {"scheduler": {}, "route": {}, "gateway": {}}
    # KServe selects the pods by its own labels, which spec.labels would overwrite: stackc's others only
    assert body["labels"]["app.kubernetes.io/instance"] == "s"
    assert not {"app.kubernetes.io/name", "app.kubernetes.io/part-of", "app.kubernetes.io/component"} & set(body["labels"])
    assert "storageInitializer" not in body  # KServe fetches the weights
    assert not [o for o in found if o["kind"] in ("Deployment", "Service")]  # KServe makes them


def test_weights_the_engine_fetches_itself_turn_the_storage_initializer_off(crd_validator) -> None:
    service, _, _ = build(spec('security.hf_token = { name = "hf", key = "token" }\n'), crd_validator)
    assert service["spec"]["storageInitializer"] == {"enabled": False}
    assert service["spec"]["model"]["uri"] == "hf://org/model"
    assert "/mnt/models" not in service["spec"]["template"]["containers"][0]["args"]
    mounted = ('model = "/weights/m"\nextra_volumes = [{ name = "w", persistentVolumeClaim = { claimName = "w" } }]\n'
               'extra_volume_mounts = [{ name = "w", mountPath = "/weights" }]\n')
    service, _, _ = build(spec(mounted).replace('model = "hf://org/model"\n', ""), crd_validator)
    # KServe refuses a URI without a scheme even when it fetches nothing
    assert service["spec"]["model"]["uri"] == "file:///weights/m"
    assert service["spec"]["storageInitializer"] == {"enabled": False}


def test_lora_adapters_are_listed_in_the_model(crd_validator) -> None:
    adapters = ('[[models.m.serving.lora_adapters]]\nname = "sql"\nsource = "hf://org/sql-lora"\n')
    service, _, _ = build(spec(adapters), crd_validator)
    assert service["spec"]["model"]["lora"] == {"adapters": [{"name": "sql", "uri": "hf://org/sql-lora"}]}


def test_autoscaling_becomes_scaling_through_the_variant_autoscaler(crd_validator) -> None:
    service, _, compilation = build(spec(
        'autoscaling = { min_replicas = 2, max_replicas = 5, signal = "waiting", target = 4, scale_down_seconds = 300 }\n'),
        crd_validator)
    scaling = service["spec"]["scaling"]
    assert "replicas" not in service["spec"]
    assert (scaling["minReplicas"], scaling["maxReplicas"]) == (2, 5)
    assert scaling["wva"]["hpa"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 300
    assert warnings(compilation)["W163"] == ("models", "m", "autoscaling", "signal")


def test_scale_to_zero_is_a_located_error() -> None:
    found = codes(spec('autoscaling = { min_replicas = 0, max_replicas = 2 }\n'))
    assert found["E165"] == ("models", "m", "autoscaling", "min_replicas")


def test_a_model_over_several_nodes_gets_a_worker_template_and_its_parallelism(crd_validator) -> None:
    service, found, _ = build(spec('serving = { tensor_parallel = 8, pipeline_parallel = 2, nodes = 2 }\n'
                                   'cache = { size = "100Gi", access_mode = "ReadWriteMany" }\ndisruption_budget = { enabled = true }\n')
                          .replace("count = 1", "count = 8"), crd_validator)
    body = service["spec"]
    assert body["parallelism"] == {"tensor": 8, "pipeline": 2}
    assert body["worker"]["containers"][0]["name"] == "main"
    assert body["worker"]["containers"][0]["args"] != body["template"]["containers"][0]["args"]
    # leader and worker share the labels KServe gives both; neither role's own
    assert "stackc.dev/role" not in body["labels"]
    budget_and_policy = [o["spec"].get("selector", o["spec"].get("podSelector")) for o in found
                         if o["kind"] in ("PodDisruptionBudget", "NetworkPolicy")]
    assert budget_and_policy and all(s == {"matchLabels": {"app.kubernetes.io/name": "s-m", "app.kubernetes.io/part-of":
                                                           "llminferenceservice"}} for s in budget_and_policy)


def test_a_disaggregated_model_is_one_service_with_its_prefill_workload(crd_validator) -> None:
    roles = ('[models.m.disaggregation]\nconnector = "nixl"\n[models.m.disaggregation.prefill]\nreplicas = 2\n'
             '[models.m.disaggregation.decode]\nreplicas = 1\naccelerators = { count = 2 }\ntensor_parallel = 2\n')
    service, found, _ = build(spec(roles), crd_validator)
    body = service["spec"]
    assert service["metadata"]["name"] == "s-m"
    assert body["replicas"] == 1 and body["prefill"]["replicas"] == 2
    # one pod's tensor parallelism is the engine's own flag; parallelism sizes groups over several nodes
    assert "--tensor-parallel-size" in body["template"]["containers"][0]["args"]
    assert "llm-d.ai/role" not in body["labels"] and "llm-d.ai/role" not in body["prefill"]["labels"]
    policies = {o["metadata"]["name"]: o["spec"]["podSelector"]["matchLabels"] for o in found
                if o["kind"] == "NetworkPolicy"}
    assert policies["s-m-prefill"] == {"app.kubernetes.io/name": "s-m", "app.kubernetes.io/part-of": "llminferenceservice",
                                       "llm-d.ai/role": "prefill"}
    assert "NixlConnector" in str(body["prefill"]["template"]["containers"][0]["args"])
    assert "router" in body
    assert sorted(o["metadata"]["name"] for o in found if o["kind"] == "ServiceAccount") == ["s-m-decode", "s-m-prefill"]


def test_a_disaggregated_model_needs_kserves_own_scheduler() -> None:
    roles = '[models.m.disaggregation]\nconnector = "nixl"\n'
    assert codes(spec(roles, targets='"llmisvc", "router"'))["E163"] == ("models", "m", "disaggregation")
    assert codes(spec(roles, options='router = "none"'))["E163"] == ("models", "m", "disaggregation")


def test_the_stacks_router_reaches_the_workload_service_and_kserves_router_is_off(crd_validator) -> None:
    service, found, _ = build(spec(targets='"llmisvc", "router"'), crd_validator)
    assert "router" not in service["spec"]
    config = next(o for o in found if o["kind"] == "ConfigMap" and "router.yaml" in o.get("data", {}))
    routed = yaml.safe_load(config["data"]["router.yaml"])["models"]["m"]["discovery"]["kubernetes"]
    assert routed["service"] == "s-m-kserve-workload-svc"


def test_a_managed_route_attaches_to_the_named_or_the_stacks_gateway(crd_validator) -> None:
    service, _, _ = build(spec(options='gateway = "inference-gateway"\ngateway_namespace = "kserve"'), crd_validator)
    assert service["spec"]["router"]["gateway"] == {"refs": [{"name": "inference-gateway", "namespace": "kserve"}]}
    service, _, _ = build(spec(options='gateway = "inference-gateway"'), crd_validator)
    assert service["spec"]["router"]["gateway"] == {"refs": [{"name": "inference-gateway", "namespace": "ns"}]}


def test_pod_settings_reach_the_template(crd_validator) -> None:
    pod = ('env = { A = "1" }\nscheduling.node_selector = { pool = "gpu" }\n'
           'scheduling.tolerations = [{ key = "gpu", operator = "Exists", effect = "NoSchedule" }]\n'
           'probes.readiness = { path = "/ready" }\n'
           'extra_volumes = [{ name = "data", persistentVolumeClaim = { claimName = "data" } }]\n'
           'extra_volume_mounts = [{ name = "data", mountPath = "/data" }]\n')
    service, _, _ = build(spec(pod), crd_validator)
    template = service["spec"]["template"]
    main = template["containers"][0]
    assert {"name": "A", "value": "1"} in main["env"]
    assert template["nodeSelector"] == {"pool": "gpu"} and template["tolerations"][0]["key"] == "gpu"
    assert main["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert {"name": "data", "mountPath": "/data"} in main["volumeMounts"]
    assert {"name": "data", "persistentVolumeClaim": {"claimName": "data"}} in template["volumes"]


def test_what_kserve_cannot_express_is_a_located_warning(crd_validator) -> None:
    _, _, compilation = build(spec('service_port = 80\nrollout = { strategy = "Recreate" }\n'), crd_validator)
    found = warnings(compilation)
    assert found["W161"] == ("models", "m", "service_port")
    assert found["W162"] == ("models", "m", "rollout")


def test_what_kserve_cannot_run_is_a_located_error() -> None:
    assert codes(spec("port = 9000\n"))["E162"] == ("models", "m", "port")
    assert codes(spec(options='models = { other = {} }'))["E160"] == ("targets", "llmisvc", "models", "other")
    assert codes(spec(targets='"llmisvc", "gateway"'))["E164"] == ("stack", "targets")
    # beside a target that deploys the models itself, the gateway routes to that one's pods
    assert compile_text(spec(targets='"llmisvc", "manifests", "gateway"')).files
    multi = 'serving = { tensor_parallel = 2, nodes = 2 }\ncache = { size = "100Gi", access_mode = "ReadWriteMany" }\n'
    assert codes(spec(multi))["E166"] == ("models", "m", "serving", "nodes")
    ray = spec().replace('engine = "vllm"', 'engine = "ray-vllm"')
    assert codes(ray)["E161"] == ("models", "m", "engine")


def test_a_closed_network_policy_under_a_managed_router_is_a_warning(crd_validator) -> None:
    _, _, compilation = build(spec(targets='"llmisvc", "router"', options='router = "managed"'), crd_validator)
    assert warnings(compilation)["W160"] == ("stack", "network_policy")
    _, _, compilation = build(spec(), crd_validator)  # nothing calls the pods: the serving port stays open
    assert "W160" not in warnings(compilation)


def test_kv_offloading_stays_in_the_engines_flags_not_kserves_field(crd_validator) -> None:
    # KServe turns kvCacheOffloading into its presets' command line (--kv-transfer-config), which the engine's
    # own command, in the template, replaces: the offload is in that command
    service, _, _ = build(spec('resources = { requests = { memory = "32Gi" } }\nkv_offload = { cpu_gib = 8 }\n'),
                          crd_validator)
    args = service["spec"]["template"]["containers"][0]["args"]
    assert args[args.index("--kv-offloading-size") + 1] == "8"
    assert "kvCacheOffloading" not in service["spec"]
