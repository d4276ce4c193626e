"""A disaggregated model lowers to a decode and a prefill component, each with its own pods, selector,
Service and scale; the roles' settings inherit the model's."""

from __future__ import annotations

from pathlib import Path

import pytest

from stackc.diagnostics import DiagnosticsError, Severity
from stackc.local import processes
from stackc.testing import (
    compile_text,
    is_core_kind,
    objects,
    validate_kubernetes,
)

SPEC = """
version = 1
stack = { name = "pd", targets = ["manifests"] }
[models.m]
engine = "vllm"
model = "org/m"
resources = { requests = { cpu = "4", memory = "32Gi" } }
accelerators.count = 1
engine_args = ["--enable-chunked-prefill"]
env = { SHARED = "model", OVERRIDDEN = "model" }
[models.m.disaggregation]
connector = "nixl"
[models.m.disaggregation.prefill]
replicas = 3
engine_args = ["--max-num-batched-tokens", "8192"]
env = { OVERRIDDEN = "prefill" }
[models.m.disaggregation.decode]
accelerators = { count = 2 }
tensor_parallel = 2
autoscaling = { min_replicas = 1, max_replicas = 4, signal = "running", target = 32 }
"""
MODEL = {"app.kubernetes.io/instance": "pd", "app.kubernetes.io/name": "m"}


def by_name(text: str = SPEC, targets: list[str] | None = None) -> dict[tuple[str, str], dict]:
    return {(o["kind"], o["metadata"]["name"]): o for o in objects(compile_text(text, targets=targets).files)}


def test_each_role_is_a_workload_whose_pods_services_and_selectors_carry_the_role() -> None:
    found = by_name()
    for role in ("prefill", "decode"):
        own = {**MODEL, "llm-d.ai/role": role}
        deployment, service = found[("Deployment", f"pd-m-{role}")], found[("Service", f"pd-m-{role}")]
        assert deployment["spec"]["selector"]["matchLabels"] == own
        assert service["spec"]["selector"] == own
        assert deployment["spec"]["template"]["metadata"]["labels"]["llm-d.ai/role"] == role
    assert not any(name == "pd-m" for _, name in found)


def test_the_roles_inherit_the_model_and_override_what_they_set() -> None:
    found = by_name()
    prefill = found[("Deployment", "pd-m-prefill")]
    decode = found[("Deployment", "pd-m-decode")]
    assert prefill["spec"]["replicas"] == 3 and "replicas" not in decode["spec"]  # its ScaledObject owns it
    assert found[("ScaledObject", "pd-m-decode")]["spec"]["maxReplicaCount"] == 4
    assert ("ScaledObject", "pd-m-prefill") not in found
    p, d = (w["spec"]["template"]["spec"]["containers"][0] for w in (prefill, decode))
    assert p["resources"]["limits"] == {"nvidia.com/gpu": "1"} and d["resources"]["limits"] == {"nvidia.com/gpu": "2"}
    assert p["resources"]["requests"]["memory"] == d["resources"]["requests"]["memory"] == "32Gi"
    assert p["args"][-3:] == ["--enable-chunked-prefill", "--max-num-batched-tokens", "8192"]
    assert d["args"][-1] == "--enable-chunked-prefill" and "--tensor-parallel-size" in d["args"]
    assert {e["name"]: e.get("value") for e in p["env"]}["OVERRIDDEN"] == "prefill"
    assert {e["name"]: e.get("value") for e in d["env"]}["OVERRIDDEN"] == "model"


def test_the_models_pods_reach_each_other_for_kv_transfer_and_everything_validates(crd_validator) -> None:
    found = by_name()
    for role in ("prefill", "decode"):
        policy = found[("NetworkPolicy", f"pd-m-{role}")]["spec"]
        assert policy["podSelector"]["matchLabels"]["llm-d.ai/role"] == role
        assert {"from": [{"podSelector": {"matchLabels": MODEL}}]} in policy["ingress"]
    for obj in found.values():
        problems = crd_validator(obj) if not is_core_kind(obj) else validate_kubernetes(obj)
        assert problems == [], obj["metadata"]["name"]


def test_both_roles_live_in_the_models_folder() -> None:
    files = compile_text(SPEC).files
    assert "Deployment" in {o["kind"] for o in objects({"prefill": files["manifests/m/prefill.yaml"]}, "")}
    assert {"Deployment", "ScaledObject"} <= {o["kind"] for o in objects({"decode": files["manifests/m/decode.yaml"]}, "")}


def problems(text: str) -> list[tuple[str, str]]:
    with pytest.raises(DiagnosticsError) as error:
        compile_text(text)
    return [(d.code, d.dotted_path) for d in error.value.diagnostics]


def test_role_problems_are_located_in_the_roles_table() -> None:
    text = SPEC.replace("min_replicas = 1, max_replicas = 4", "min_replicas = 5, max_replicas = 4")
    assert ("E101", "models.m.disaggregation.decode.autoscaling") in problems(text)
    # the engine's own check of a role's settings: 2 devices for tensor_parallel = 4
    text = SPEC.replace("tensor_parallel = 2", "tensor_parallel = 4")
    assert problems(text) == [("E030", "models.m.disaggregation.decode.tensor_parallel")]


def test_a_model_named_like_anothers_role_is_refused() -> None:
    text = SPEC + '[models.m-decode]\nengine = "vllm"\nmodel = "org/x"\naccelerators = { count = 1 }\n'
    assert ("E107", "models.m-decode") in problems(text)


def test_warnings_a_role_without_replicas_and_lmcache_with_several_decode_pods() -> None:
    text = SPEC.replace("replicas = 3", "replicas = 0").replace('connector = "nixl"', 'connector = "lmcache"')
    warnings = {(w.code, w.dotted_path) for w in compile_text(text).warnings if w.severity is Severity.WARNING}
    assert ("W100", "models.m.disaggregation.prefill.replicas") in warnings
    assert ("W101", "models.m.disaggregation.decode") in warnings


def test_stackc_up_refuses_a_disaggregated_model(tmp_path: Path) -> None:
    plan = compile_text(SPEC).plan
    planned, found = processes.plan(plan.components, {"vllm": None}, tmp_path, lambda component, listen: component)
    assert planned == [] and [(d.code, d.dotted_path) for d in found] == [("E107", "models.m.disaggregation")]


def test_the_model_is_checked_as_its_roles_run_it() -> None:
    # the model's own 1 device is too few for tensor_parallel = 2, but both roles bring 2
    text = SPEC.replace("accelerators.count = 1", "accelerators.count = 1\nserving.tensor_parallel = 2").replace(
        "[models.m.disaggregation.prefill]\n", "[models.m.disaggregation.prefill]\naccelerators = { count = 2 }\n")
    assert compile_text(text).plan.components[1].pod.containers[0].resources["limits"] == {"nvidia.com/gpu": "2"}
    # the prefill role inherits tensor_parallel: its problem is located at the model's field, once
    assert problems(text.replace("serving.tensor_parallel = 2", "serving.tensor_parallel = 4")) == [
        ("E030", "models.m.serving.tensor_parallel")]


def test_a_kv_port_on_the_serving_port_is_located_where_the_spec_sets_it() -> None:
    text = ('version = 1\n[stack]\nname = "pd"\n[models.m]\nengine = "vllm"\nmodel = "org/m"\naccelerators.count = 1\n'
            '[models.m.disaggregation]\nkv_port = 8000\n')
    with pytest.raises(DiagnosticsError) as caught:
        compile_text(text)
    assert {(d.code, d.dotted_path) for d in caught.value.diagnostics} == {("E024", "models.m.disaggregation.kv_port")}
