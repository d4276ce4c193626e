"""A model's candidate version (``[models.KEY.candidate]``): its own pods beside the stable version's, the
share of requests each target gives it, what ``stackc plan`` shows, and the located diagnostics."""

from __future__ import annotations

import difflib
import json

import pytest
import yaml

from stackc.diagnostics import DiagnosticsError, Severity
from stackc.testing import compile_text, objects, rejected_objects, wiring_problems

SPEC = """
version = 1
[stack]
name = "s"
targets = ["manifests", "gateway"]
[models.m]
engine = "vllm"
model = "meta-llama/Llama-3.1-8B-Instruct"
replicas = 2
accelerators = { type = "H100", count = 1 }
"""
CANDIDATE = """
[models.m.candidate]
image = "vllm/vllm-openai:v0.12.0"
engine_args = ["--max-num-seqs", "64"]
traffic = 10
header = "x-candidate"
"""


def _named(found: list[dict], kind: str, name: str) -> dict:
    [obj] = [o for o in found if o["kind"] == kind and o["metadata"]["name"] == name]
    return obj


def _problems(text: str) -> list:
    with pytest.raises(DiagnosticsError) as caught:
        compile_text(text)
    return caught.value.diagnostics


def _warnings(text: str) -> set[tuple[str, str]]:
    return {(d.code, d.dotted_path) for d in compile_text(text).warnings if d.severity is Severity.WARNING}


def test_the_candidate_runs_its_own_pods_and_leaves_the_stable_objects_as_they_were() -> None:
    plain = compile_text(SPEC).files
    files = compile_text(SPEC + CANDIDATE).files
    # the stable version's objects (workload, Service, policy) are byte for byte the same
    assert files["manifests/m.yaml"] == plain["manifests/m.yaml"]
    found = objects(files)
    candidate = _named(found, "Deployment", "s-m-candidate")
    selector = candidate["spec"]["selector"]["matchLabels"]
    assert selector == {"app.kubernetes.io/name": "m-candidate", "app.kubernetes.io/instance": "s"}
    assert candidate["spec"]["replicas"] == 1
    pod = candidate["spec"]["template"]
    assert pod["metadata"]["labels"]["stackc.dev/version"] == "candidate"
    [engine] = pod["spec"]["containers"]
    assert engine["image"] == "vllm/vllm-openai:v0.12.0"
    assert engine["args"][-2:] == ["--max-num-seqs", "64"]
    assert _named(found, "Service", "s-m-candidate")["spec"]["selector"] == selector
    # the stable Service can't select the candidate's pods
    stable = _named(found, "Service", "s-m")["spec"]["selector"]
    assert not all(pod["metadata"]["labels"].get(k) == v for k, v in stable.items())
    assert wiring_problems(found) == []


def test_the_gateway_weighs_the_pools_and_sends_the_testers_header_to_the_candidate() -> None:
    found = objects(compile_text(SPEC + CANDIDATE + "mirror = true\n").files)
    assert _named(found, "InferencePool", "s-m-candidate")["spec"]["selector"]["matchLabels"] == {
        "app.kubernetes.io/name": "m-candidate", "app.kubernetes.io/instance": "s"}
    _named(found, "Deployment", "s-m-candidate-epp")
    rules = _named(found, "HTTPRoute", "s-m")["spec"]["rules"]
    assert [[(r["name"], r.get("weight")) for r in rule["backendRefs"]] for rule in rules] == [
        [("s-m-candidate", None)], [("s-m", 90), ("s-m-candidate", 10)]]
    tester = rules[0]["matches"][0]["headers"]
    assert {"type": "Exact", "name": "x-candidate", "value": "true"} in tester
    assert "x-candidate" not in json.dumps(rules[1]["matches"])
    assert rules[1]["filters"] == [{"type": "RequestMirror", "requestMirror": {
        "backendRef": {"name": "s-m-candidate", "port": 8000}}}]
    assert "filters" not in rules[0]
    assert not [o for o in found if o["kind"] == "HTTPRoute" and o["metadata"]["name"] != "s-m"]


def test_promotion_is_a_diff_of_the_traffic_only() -> None:
    before = compile_text(SPEC + CANDIDATE).files
    after = compile_text(SPEC + CANDIDATE.replace("traffic = 10", "traffic = 100")).files
    changed = sorted(path for path in after if before[path] != after[path])
    assert changed == ["gateway/m.yaml"]
    lines = [line for line in difflib.unified_diff(before[changed[0]].decode().splitlines(),
                                                   after[changed[0]].decode().splitlines(), lineterm="", n=0)
             if line[:1] in "+-" and not line.startswith(("+++", "---"))]
    assert lines == ["-      weight: 90", "+      weight: 0", "-      weight: 10", "+      weight: 100"]


def test_the_helm_chart_has_the_candidates_values_of_its_own() -> None:
    text = (SPEC + CANDIDATE).replace('targets = ["manifests", "gateway"]', 'targets = ["helm", "router"]')
    values = yaml.safe_load(compile_text(text).files["helm/s/values.yaml"])
    assert values["models"]["m"]["image"]["tag"] != "v0.12.0" and values["models"]["m"]["replicas"] == 2
    assert values["models"]["m-candidate"]["image"] == {"repository": "vllm/vllm-openai", "tag": "v0.12.0"}
    assert values["models"]["m-candidate"]["replicas"] == 1


def test_kserve_standard_runs_the_candidate_as_an_inference_service_of_its_own() -> None:
    text = (SPEC + CANDIDATE).replace('targets = ["manifests", "gateway"]', 'targets = ["kserve", "router"]')
    found = objects(compile_text(text).files)
    stable, candidate = (_named(found, "InferenceService", n) for n in ("s-m", "s-m-candidate"))
    assert "canaryTrafficPercent" not in stable["spec"]["predictor"]
    assert candidate["spec"]["predictor"]["model"]["image"] == "vllm/vllm-openai:v0.12.0"


def test_kserve_knative_rolls_the_candidate_out_as_a_canary_revision() -> None:
    text = (SPEC + CANDIDATE).replace('targets = ["manifests", "gateway"]', 'targets = ["kserve"]') \
        + '[targets.kserve]\ndeployment_mode = "Knative"\n'
    compilation = compile_text(text)
    [service] = [o for o in objects(compilation.files) if o["kind"] == "InferenceService"]
    assert service["metadata"]["name"] == "s-m"
    assert service["spec"]["predictor"]["canaryTrafficPercent"] == 10
    assert service["spec"]["predictor"]["model"]["image"] == "vllm/vllm-openai:v0.12.0"
    codes = {(d.code, d.dotted_path) for d in compilation.warnings}
    assert {("W077", "models.m.candidate"), ("W078", "models.m.candidate"), ("W182", "models.m.candidate")} <= codes
    header = next(d for d in compilation.warnings if d.code == "W077")
    assert "the candidate's header is not applied" in header.message


def test_llmisvc_runs_the_candidate_as_a_service_of_its_own_and_says_its_route_gives_it_nothing() -> None:
    text = (SPEC + CANDIDATE).replace('targets = ["manifests", "gateway"]', 'targets = ["llmisvc"]') \
        .replace('model = "meta-llama', 'model = "hf://meta-llama')
    compilation = compile_text(text)
    names = sorted(o["metadata"]["name"] for o in objects(compilation.files) if o["kind"] == "LLMInferenceService")
    assert names == ["s-m", "s-m-candidate"]
    assert ("W164", "models.m.candidate") in {(d.code, d.dotted_path) for d in compilation.warnings}


def test_what_a_candidate_cannot_be_is_a_located_error() -> None:
    found = {(d.code, d.dotted_path) for d in _problems(
        SPEC + CANDIDATE.replace("traffic = 10", "traffic = 10\nreplicas = 0")
        + '[models.m-candidate]\nengine = "vllm"\nmodel = "org/x"\n')}
    assert {("E182", "models.m.candidate.replicas"), ("E183", "models.m-candidate")} <= found
    disaggregated = SPEC + "[models.m.disaggregation]\n" + CANDIDATE
    assert ("E180", "models.m.candidate") in {(d.code, d.dotted_path) for d in _problems(disaggregated)}
    multinode = SPEC + "[models.m.serving]\nnodes = 2\npipeline_parallel = 2\n" + CANDIDATE
    assert ("E181", "models.m.candidate") in {(d.code, d.dotted_path) for d in _problems(multinode)}


def test_the_candidates_own_settings_are_checked_where_it_writes_them() -> None:
    found = {(d.code, d.dotted_path) for d in _problems(SPEC + CANDIDATE + 'model = "ftp://nowhere/x"\n')}
    assert ("E013", "models.m.candidate.model") in found


def test_a_candidate_without_requests_or_a_router_is_a_warning() -> None:
    idle = SPEC + CANDIDATE.replace("traffic = 10\nheader = \"x-candidate\"\n", "")
    assert ("W180", "models.m.candidate") in _warnings(idle)
    unrouted = (SPEC + CANDIDATE).replace('targets = ["manifests", "gateway"]', 'targets = ["manifests"]')
    assert ("W182", "models.m.candidate") in _warnings(unrouted)
    disabled = SPEC.replace("replicas = 2", "replicas = 2\nenabled = false") + CANDIDATE
    assert ("W181", "models.m.candidate") in _warnings(disabled + '[models.n]\nengine = "vllm"\nmodel = "org/n"\n')


def test_plan_shows_both_versions_and_what_they_hold_during_the_rollout(tmp_path, capsys) -> None:
    from stackc.cli import main

    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC + CANDIDATE + 'model = "meta-llama/Llama-3.1-70B-Instruct"\n')
    assert main(["plan", str(spec)]) == 2
    out, err = capsys.readouterr()
    assert "m (candidate)" in out
    assert "m: during the rollout the stable and candidate versions hold 2 × (1 × H100-80GB) + 1 × (1 × H100-80GB)" in out
    # the candidate's larger weights don't fit: located at the field the candidate set
    assert "models.m.candidate.model" in err and "E140" in err


@pytest.mark.parametrize("targets, options", [
    ('["manifests", "router", "gateway"]', "mirror = true\n"),
    ('["helm", "router", "monitoring"]', ""),
    ('["kserve", "router"]', ""),
    ('["kserve"]', '[targets.kserve]\ndeployment_mode = "Knative"\n'),
    ('["llmisvc", "router"]', '[targets.llmisvc]\nrouter = "none"\n'),
])
def test_every_targets_objects_with_a_candidate_would_be_accepted(targets: str, options: str, crd_validator) -> None:
    text = (SPEC + CANDIDATE + options).replace('targets = ["manifests", "gateway"]', f"targets = {targets}") \
        .replace('model = "meta-llama', 'model = "hf://meta-llama')
    count, problems = rejected_objects(compile_text(text).files)
    assert count and problems == []


def test_new_weights_serve_the_models_names_without_the_models_revision() -> None:
    text = (SPEC.replace('replicas = 2', 'replicas = 2\nrevision = "0e9e39f249a16976918f6564b8830bc894c89659"')
            + '[[models.m.serving.lora_adapters]]\nname = "topic"\nsource = "org/topic-lora"\n'
            + '[models.m.candidate]\nmodel = "meta-llama/Llama-3.2-3B-Instruct"\ntraffic = 10\n')
    found = objects(compile_text(text).files)  # an adapter of the model is the candidate's too: no E012
    [engine] = _named(found, "Deployment", "s-m-candidate")["spec"]["template"]["spec"]["containers"]
    args = engine["args"]
    assert args[args.index("--served-model-name") + 1] == "meta-llama/Llama-3.1-8B-Instruct"
    assert "--revision" not in args and "meta-llama/Llama-3.2-3B-Instruct" in args


def test_knatives_new_revision_keeps_the_services_objects_and_refuses_routing_targets() -> None:
    text = (SPEC + CANDIDATE).replace('targets = ["manifests", "gateway"]', 'targets = ["kserve"]') \
        .replace("replicas = 2", 'replicas = 2\ncache = { size = "100Gi", access_mode = "ReadWriteMany" }') \
        + '[targets.kserve]\ndeployment_mode = "Knative"\n'
    found = objects(compile_text(text).files)
    assert sorted((o["kind"], o["metadata"]["name"]) for o in found if o["kind"] != "ServingRuntime") == [
        ("InferenceService", "s-m"), ("PersistentVolumeClaim", "s-m-cache"), ("PodDisruptionBudget", "s-m"),
        ("ServiceAccount", "s-m")]
    predictor = _named(found, "InferenceService", "s-m")["spec"]["predictor"]
    assert predictor["serviceAccountName"] == "s-m" and predictor["labels"]["app.kubernetes.io/name"] == "m"
    assert predictor["minReplicas"] == predictor["maxReplicas"] == 2
    assert {v["persistentVolumeClaim"]["claimName"] for v in predictor["volumes"] if "persistentVolumeClaim" in v} \
        == {"s-m-cache"}
    routed = text.replace('targets = ["kserve"]', 'targets = ["kserve", "router"]')
    assert ("E075", "models.m.candidate") in {(d.code, d.dotted_path) for d in _problems(routed)}


def test_a_mirror_beside_a_share_and_a_lone_header_value_are_warnings() -> None:
    assert ("W061", "models.m.candidate.mirror") in _warnings(SPEC + CANDIDATE + "mirror = true\n")
    lone = SPEC + CANDIDATE.replace('header = "x-candidate"\n', 'header_value = "yes"\n')
    assert ("W183", "models.m.candidate.header_value") in _warnings(lone)
