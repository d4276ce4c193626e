"""``stack.engines_service``: one Service over every model's serving pods (LMStack's engine-service), with
located errors where it can't be one Service and located warnings for the pods it can't reach."""

from __future__ import annotations

from pathlib import Path

import attrs
import pytest

from stackc import pipeline
from stackc.check.plan import unopened_service_ports
from stackc.diagnostics import DiagnosticsError
from stackc.plugins import load_registry
from stackc.testing import compile_text, objects, wiring_problems

REPO = Path(__file__).resolve().parents[2]
SPEC = """
version = 1
[stack]
name = "s"
targets = ["manifests", "router"]
network_policy = {}
[stack.engines_service]
[models.a]
engine = "vllm"
model = "org/a"
accelerators.count = 1
[models.b]
engine = "vllm"
model = "org/b"
accelerators.count = 1
"""


def _errors(text: str) -> list:
    with pytest.raises(DiagnosticsError) as caught:
        compile_text(text)
    return caught.value.diagnostics


def test_one_service_selects_every_models_serving_pods() -> None:
    found = objects(compile_text(SPEC).files)
    [service] = [o for o in found if o["kind"] == "Service" and o["metadata"]["name"] == "s-engines"]
    assert service["spec"]["selector"] == {"stackc.dev/engines-service": "s-engines"}
    assert service["spec"]["ports"] == [{"name": "http", "port": 8000, "targetPort": "http", "protocol": "TCP"}]
    labelled = [o["metadata"]["name"] for o in found if o["kind"] == "Deployment" and
                o["spec"]["template"]["metadata"]["labels"].get("stackc.dev/engines-service") == "s-engines"]
    assert labelled == ["s-a", "s-b"]
    # the models' own Services still select only their own pods
    assert all("stackc.dev/engines-service" not in o["spec"]["selector"] for o in found
               if o["kind"] == "Service" and o["metadata"]["name"] in ("s-a", "s-b"))
    assert wiring_problems(found) == []


def test_a_named_service_on_a_port_of_its_own_and_in_the_chart() -> None:
    text = SPEC.replace('targets = ["manifests", "router"]', 'targets = ["manifests", "helm"]') \
        .replace("[stack.engines_service]", '[stack.engines_service]\nname = "engine-service"\nport = 80')
    files = compile_text(text).files
    [service] = [o for o in objects(files) if o["metadata"]["name"] == "engine-service"]
    assert service["spec"]["ports"][0]["port"] == 80
    assert "name: engine-service\n" in files["helm/s/templates/objects.yaml"].decode()


def test_models_whose_service_ports_disagree_need_a_port() -> None:
    text = SPEC.replace('model = "org/b"', 'model = "org/b"\nservice_port = 80')
    [error] = _errors(text)
    assert (error.code, error.dotted_path) == ("E192", "stack.engines_service.port")
    assert "(a: 8000, b: 80)" in error.message and error.location.line == 7
    compile_text(text.replace("[stack.engines_service]", "[stack.engines_service]\nport = 80"))


@pytest.mark.parametrize("name, owner", [("s-a", "the Service of model 'a'"), ("s-router", "the router's")])
def test_a_name_another_service_has_is_a_located_error(name: str, owner: str) -> None:
    [error] = _errors(SPEC.replace("[stack.engines_service]", f'[stack.engines_service]\nname = "{name}"'))
    assert (error.code, error.dotted_path) == ("E191", "stack.engines_service.name")
    assert owner in error.message and error.location.line == 8


def test_disaggregated_and_ray_models_are_warned_about_not_left_out_silently() -> None:
    text = SPEC + """[models.b.disaggregation]
connector = "nixl"
[models.r]
engine = "ray-vllm"
model = "org/r"
accelerators.count = 1
"""
    compilation = compile_text(text)
    warned = {w.dotted_path: w for w in compilation.warnings if w.code == "W190"}
    assert set(warned) == {"models.b.disaggregation", "models.r"}
    assert "prefill role first" in warned["models.b.disaggregation"].message
    assert "KubeRay" in warned["models.r"].message and all(w.location for w in warned.values())
    found = objects(compilation.files)
    labelled = [o["metadata"]["name"] for o in found if o["kind"] in ("Deployment", "RayService") and
                "stackc.dev/engines-service" in str(o["spec"])]
    assert labelled == ["s-a"]


def test_a_multi_node_model_is_behind_it_by_its_leaders_only() -> None:
    text = SPEC.replace('model = "org/b"', 'model = "org/b"\nserving = { nodes = 2, tensor_parallel = 2 }')
    found = objects(compile_text(text).files)
    [group] = [o for o in found if o["kind"] == "LeaderWorkerSet"]
    template = group["spec"]["leaderWorkerTemplate"]
    assert template["leaderTemplate"]["metadata"]["labels"]["stackc.dev/engines-service"] == "s-engines"
    assert "stackc.dev/engines-service" not in template["workerTemplate"]["metadata"]["labels"]
    assert wiring_problems(found) == []


@pytest.mark.parametrize("target", ["kserve", "llmisvc"])
def test_a_target_whose_platform_runs_the_pods_says_it_emits_no_service(target: str) -> None:
    compilation = compile_text(SPEC.replace('["manifests", "router"]', f'["{target}"]'))
    [warning] = [w for w in compilation.warnings if w.code == "W190"]
    assert warning.dotted_path == "stack.engines_service" and warning.location.line == 7
    assert f"{target}: KServe runs" in warning.message
    assert not any(o["metadata"]["name"] == "s-engines" for o in objects(compilation.files))


def test_a_service_port_no_pod_opens_is_caught() -> None:
    found = objects(compile_text(SPEC).files)
    for obj in found:
        if obj["kind"] == "Service" and obj["metadata"]["name"] == "s-engines":
            obj["spec"]["ports"][0]["targetPort"] = "api"
    problems = wiring_problems(found)
    assert "Service s-engines: port 8000 targets 'api', which Deployment s-a does not open" in problems


def test_the_compiler_refuses_a_service_port_its_pods_do_not_open() -> None:
    plan = compile_text(SPEC).plan
    assert list(unopened_service_ports(plan)) == []
    engines = attrs.evolve(plan.stack.engines_service, target_port="api")
    a = plan.components[0]
    broken = attrs.evolve(a, endpoint=attrs.evolve(a.endpoint, port=attrs.evolve(a.endpoint.port, name="api")))
    plan = attrs.evolve(plan, stack=attrs.evolve(plan.stack, engines_service=engines),
                        components=(broken, *plan.components[1:]))
    problems = {(d.code, d.dotted_path, d.message) for d in unopened_service_ports(plan)}
    assert ("E152", "models.a", "Service s-a port 8000 targets 'api', which no container of the pods opens") in problems
    assert ("E152", "stack.engines_service", "Service s-engines targets 'api', which no container of model 'b' opens") \
        in problems


def test_every_spec_with_an_engines_service_is_wired() -> None:
    spec = REPO / "specs" / "multi-engine.toml"
    compilation = pipeline.compile_stack([spec], load_registry(), ["stack.engines_service.port=80"])
    assert any(o["metadata"]["name"].endswith("-engines") for o in objects(compilation.files))
    assert wiring_problems(objects(compilation.files)) == []
