"""LoRA adapters in the gateway's and KServe's output; KServe's timeout, annotations and installed runtimes."""

from __future__ import annotations

import pytest
import yaml

from stackc.diagnostics import DiagnosticsError
from stackc.testing import compile_text, objects

SPEC = """
version = 1
stack = {{ name = "l", targets = [{targets}] }}
[models.base]
engine = "{engine}"
model = "org/base"
aliases = ["base-alias"]
accelerators.count = 1
serving.max_lora_rank = 16
serving.lora_adapters = [
  {{ name = "sql", source = "hf://org/sql-lora" }},
  {{ name = "guard", source = "org/guard-lora", load = "runtime" }},
]
{extra}
"""


def build(engine: str = "vllm", targets: str = '"router", "gateway"', extra: str = "") -> list[dict]:
    return objects(compile_text(SPEC.format(engine=engine, targets=targets, extra=extra)).files)


@pytest.mark.parametrize("engine", ["vllm", "sglang"])
def test_the_gateway_routes_adapters_to_the_pool_and_never_rewrites_them(engine: str, crd_validator) -> None:
    found = build(engine)
    route = next(o for o in found if o["kind"] == "HTTPRoute")
    names = [h["value"] for rule in route["spec"]["rules"] for m in rule["matches"] for h in m["headers"]]
    assert names == ["org/base", "base-alias", "sql", "guard"]
    rewritten = [m["model"]["value"] for o in found if o["kind"] == "InferenceModelRewrite"
                 for rule in o["spec"]["rules"] for m in rule["matches"]]
    assert "sql" not in rewritten and "guard" not in rewritten
    assert rewritten == (["base-alias"] if engine == "sglang" else [])  # SGLang answers to one name
    assert all(crd_validator(o) == [] for o in found if o["kind"] in ("HTTPRoute", "InferenceModelRewrite"))
    picker = yaml.safe_load(next(o for o in found if o["kind"] == "ConfigMap" and "epp" in o["metadata"]["name"])
                            ["data"]["default-plugins.yaml"])
    weights = {p["pluginRef"]: p.get("weight") for p in picker["schedulingProfiles"][0]["plugins"]}
    assert weights["lora-affinity-scorer"] == 1 and {"type": "lora-affinity-scorer"} in picker["plugins"]


def test_kserve_serves_the_adapters_from_the_model_container(crd_validator) -> None:
    found = build(targets='"kserve", "router"')
    service = next(o for o in found if o["kind"] == "InferenceService")
    args = service["spec"]["predictor"]["model"]["args"]
    assert args[args.index("--lora-modules") + 1] == "sql=org/sql-lora"
    assert crd_validator(service) == []


KNOBS = """
[targets.kserve]
timeout = 120
annotations = { "example.com/team" = "search", "serving.kserve.io/deploymentMode" = "Knative" }
[targets.kserve.models.base]
runtime = "kserve-vllm"
model_format = "huggingface"
timeout = 60
annotations = { "example.com/owner" = "ml" }
"""


def test_kserve_timeout_annotations_and_an_installed_runtime(crd_validator) -> None:
    found = build(targets='"kserve", "router"', extra=KNOBS)
    assert not [o for o in found if o["kind"] in ("ServingRuntime", "ClusterServingRuntime")]
    service = next(o for o in found if o["kind"] == "InferenceService")
    predictor = service["spec"]["predictor"]
    assert predictor["timeout"] == 60
    assert predictor["model"]["runtime"] == "kserve-vllm" and predictor["model"]["modelFormat"] == {"name": "huggingface"}
    assert predictor["model"]["image"].startswith("vllm/vllm-openai")  # stackc still states the container
    assert service["metadata"]["annotations"] == {"example.com/team": "search", "example.com/owner": "ml",
                                                  "serving.kserve.io/deploymentMode": "Standard"}
    assert crd_validator(service) == []


def test_kserve_target_timeout_applies_to_every_model_and_runtimes_stay_by_default() -> None:
    found = build(targets='"kserve", "router"', extra="[targets.kserve]\ntimeout = 90\n")
    service = next(o for o in found if o["kind"] == "InferenceService")
    assert service["spec"]["predictor"]["timeout"] == 90
    assert service["spec"]["predictor"]["model"]["runtime"] == "l-base"
    assert [o["kind"] for o in found if o["kind"] == "ServingRuntime"] == ["ServingRuntime"]


def test_an_unknown_model_under_kserve_models_is_located() -> None:
    with pytest.raises(DiagnosticsError) as error:
        build(targets='"kserve", "router"', extra='[targets.kserve.models.bsae]\ntimeout = 5\n')
    (problem,) = [d for d in error.value.diagnostics if d.code.startswith("E")]
    assert problem.code == "E073" and problem.path == ("targets", "kserve", "models", "bsae")
    assert problem.location is not None and "base" in (problem.hint or "")


EVERY_SOURCE = """
serving.lora_adapters = [
  { name = "hub", source = "org/hub-lora" },
  { name = "pinned", source = "org/pinned-lora", revision = "v3" },
  { name = "bucket", source = "s3://bucket/lora" },
  { name = "disk", source = "pvc://adapters/team/disk" },
  { name = "guard", source = "org/guard-lora", load = "runtime" },
]
"""


def test_pods_with_adapters_from_every_source_validate_in_every_target(crd_validator) -> None:
    from stackc.testing import is_core_kind, validate_kubernetes

    spec = SPEC.format(engine="vllm", targets='"manifests", "helm", "kserve", "router", "gateway"', extra="")
    spec = spec[:spec.index("serving.lora_adapters")] + EVERY_SOURCE
    compilation = compile_text(spec)
    found = objects(compilation.files)
    problems = [p for o in found for p in (validate_kubernetes(o) if is_core_kind(o) else crd_validator(o))]
    assert found and problems == []
    pods = [o["spec"]["template"]["spec"] for o in objects(compilation.files) if o["kind"] == "Deployment"
            and o["metadata"]["name"] == "l-base"]
    pods.append(next(o for o in objects(compilation.files) if o["kind"] == "InferenceService")["spec"]["predictor"])
    for pod in pods:  # manifests and KServe alike download the pinned and bucket adapters before the engine starts
        assert [c["args"][0] for c in pod["initContainers"]] == ["hf://org/pinned-lora:v3", "s3://bucket/lora"]
