"""Every address and port a component is configured to reach is served by a Service port that the
NetworkPolicies admit: over every spec in specs/, random valid specs, and the defects it would have caught."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from stackc import pipeline
from stackc.diagnostics import DiagnosticsError
from stackc.fuzzing import SpecGenerator, compile_outcome, with_plain_objects
from stackc.plugins import load_registry
from stackc.testing import compile_text, objects, wiring_problems

REPO = Path(__file__).resolve().parents[2]
SPECS = sorted(p for p in (REPO / "specs").rglob("*.toml") if "invalid" not in p.parts)
REGISTRY = load_registry()

LMCACHE_PD = """
version = 1
[stack]
name = "pd"
targets = ["manifests", "router"]
[models.m]
engine = "vllm"
model = "org/m"
accelerators.count = 1
[models.m.disaggregation]
connector = "lmcache"
"""


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.relative_to(REPO / "specs").as_posix())
def test_every_spec_reaches_only_what_is_served_and_admitted(spec: Path) -> None:
    compilation = pipeline.compile_stack([spec], REGISTRY)
    assert wiring_problems(objects(compilation.files)) == []


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(st.integers(0, 2**32))
def test_random_valid_specs_reach_only_what_is_served_and_admitted(seed: int) -> None:
    text = SpecGenerator(REGISTRY, random.Random(seed), valid=True).valid_spec()
    assume(text is not None)
    text = with_plain_objects(text, REGISTRY)
    outcome = compile_outcome(REGISTRY, text)
    assume(outcome.kind == "ok")
    assert wiring_problems(objects(outcome.files)) == [], text


def test_lmcache_prefill_pods_reach_the_decode_service_at_the_receiver_port() -> None:
    found = objects(compile_text(LMCACHE_PD).files)
    assert wiring_problems(found) == []
    # the defect it guards against: the decode Service without the receiver's port
    for obj in found:
        if obj["kind"] == "Service" and obj["metadata"]["name"] == "pd-m-decode":
            obj["spec"]["ports"] = [p for p in obj["spec"]["ports"] if p["name"] != "kv-transfer"]
    (problem,) = wiring_problems(found)
    assert problem.startswith("Deployment pd-m-prefill: engine env LMCACHE_NIXL_RECEIVER_HOST reaches "
                              "pd-m-decode:55555, but Service pd-m-decode has no port 55555")


def test_a_network_policy_that_shuts_the_caller_out_is_caught() -> None:
    found = objects(compile_text(LMCACHE_PD.replace('"router"]', '"router"]\nnetwork_policy = {}')).files)
    assert wiring_problems(found) == []
    for obj in found:
        if obj["kind"] == "NetworkPolicy":
            obj["spec"]["ingress"] = [r for r in obj["spec"]["ingress"] if "ports" in r]
    problems = wiring_problems(found)
    assert any("no NetworkPolicy of Deployment pd-m-decode admits Deployment pd-m-prefill on port 55555" in p
               for p in problems), problems


def test_the_router_discovers_pods_at_a_port_they_open() -> None:
    found = objects(compile_text(LMCACHE_PD).files)
    for obj in found:
        if obj["kind"] == "ConfigMap" and obj["metadata"]["name"] == "pd-router":
            obj["data"] = {k: v.replace("port: 8000", "port: 8100") for k, v in obj["data"].items()}
    problems = wiring_problems(found)
    assert any("ConfigMap pd-router router.yaml reaches Deployment pd-m-decode at 8100, but Deployment "
               "pd-m-decode opens no port 8100" in p for p in problems), problems


def test_the_gateways_references_are_checked() -> None:
    found = objects(pipeline.compile_stack([REPO / "specs" / "gateway.toml"], REGISTRY).files)
    assert wiring_problems(found) == []
    for obj in found:
        if obj["kind"] == "InferencePool" and obj["metadata"]["name"] == "gateway-llama":
            obj["spec"]["targetPorts"] = [{"number": 8100}]
            obj["spec"]["endpointPickerRef"]["port"]["number"] = 9100
    problems = wiring_problems(found)
    assert any("InferencePool gateway-llama: Deployment gateway-llama opens no target port 8100" in p
               for p in problems), problems
    assert any("its endpoint picker gateway-llama-epp:9100 is not served" in p for p in problems), problems


def test_the_compiler_refuses_an_address_its_service_does_not_serve() -> None:
    import attrs

    from stackc.check.plan import unserved_addresses

    plan = compile_text(LMCACHE_PD).plan
    assert list(unserved_addresses(plan)) == []
    decode = next(c for c in plan.components if c.disaggregation.role == "decode")
    broken = attrs.evolve(decode, endpoint=attrs.evolve(decode.endpoint, extra_service_ports=()))
    plan = attrs.evolve(plan, components=tuple(broken if c is decode else c for c in plan.components))
    (problem,) = unserved_addresses(plan)
    assert (problem.code, problem.dotted_path) == ("E152", "models.m")
    assert "is told (env LMCACHE_NIXL_RECEIVER_HOST) to reach pd-m-decode:55555, but Service pd-m-decode serves 8000" \
        in problem.message


def test_every_service_port_leads_to_a_port_its_pods_open() -> None:
    text = LMCACHE_PD + '[[targets.router.ports]]\nname = "lmcache"\nport = 9000\n'
    found = objects(compile_text(text).files)
    assert wiring_problems(found) == []
    for obj in found:
        if obj["kind"] == "Deployment" and obj["metadata"]["name"] == "pd-router":
            container = obj["spec"]["template"]["spec"]["containers"][0]
            container["ports"] = [p for p in container["ports"] if p["name"] != "lmcache"]
    assert wiring_problems(found) == ["Service pd-router: port 9000 targets 'lmcache', which Deployment pd-router "
                                      "does not open"]


def test_an_address_named_like_the_stacks_own_with_no_service_is_caught() -> None:
    found = objects(compile_text(LMCACHE_PD).files)
    for obj in found:  # the receiver's host misspelt: nothing answers at pd-m-decoder
        for container in obj.get("spec", {}).get("template", {}).get("spec", {}).get("containers", []):
            for var in container.get("env", []):
                if var["name"] == "LMCACHE_NIXL_RECEIVER_HOST":
                    var["value"] = "pd-m-decoder"
    problems = wiring_problems(found)
    assert any("reaches pd-m-decoder:55555, but the output has no Service pd-m-decoder" in p for p in problems), problems
    # the compiler says so too, of an address the spec's env sets
    with pytest.raises(DiagnosticsError) as caught:
        compile_text(LMCACHE_PD + '[models.m.env]\nPEER = "http://pd-m-prefil:8000/v1"\n')
    assert any(d.code == "E152" and "but the stack has no Service pd-m-prefil" in d.message
               for d in caught.value.diagnostics)


def test_the_pickers_tokenizer_dials_the_models_service_port() -> None:
    text = """
version = 1
[stack]
name = "g"
targets = ["manifests", "gateway"]
[models.m]
engine = "vllm"
model = "org/m"
accelerators.count = 1
service_port = 80
routing = { kv_events = true }
"""
    found = objects(compile_text(text).files)
    assert wiring_problems(found) == []
    [config] = [o for o in found if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "g-m-epp"]
    assert "http://g-m.default.svc:80" in next(iter(config["data"].values()))
