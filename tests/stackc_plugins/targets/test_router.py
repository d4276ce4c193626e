from __future__ import annotations

from pathlib import Path

import attrs
import pytest
import yaml

from stackc import kube
from stackc.diagnostics import DiagnosticsError, Severity
from stackc.plan.model import Disaggregation, Plan
from stackc.testing import compile_text, is_core_kind, objects, validate_kubernetes
from stackc_plugins.targets.router import RouterOptions, RouterTarget
from stackc_router.config import parse

SPEC = """
version = 1
[stack]
name = "r"
namespace = "ns"
targets = ["router"]
[models.a]
engine = "vllm"
model = "org/a"
served_name = "a-served"
aliases = ["a1", "a2"]
accelerators = { count = 1 }
routing = { strategy = "session", session_header = "x-user" }
[models.b]
engine = "vllm"
model = "org/b"
accelerators = { count = 1 }
[targets.router]
api_keys = { name = "keys", key = "list" }
ingress = { host = "llm.example.com", tls_secret = "tls" }
http_route = { gateway = "public", gateway_namespace = "gw", hostnames = ["llm.example.com"] }
"""


def router_objects() -> dict[str, dict]:
    return {f"{o['kind']}/{o['metadata']['name']}": o for o in objects(compile_text(SPEC).files)}


def test_router_objects_validate_strictly() -> None:
    found = list(router_objects().values())
    assert [p for o in found if is_core_kind(o) for p in validate_kubernetes(o)] == []
    assert sorted(router_objects()) == [
        "ConfigMap/r-router", "Deployment/r-router", "HTTPRoute/r-router", "Ingress/r-router",
        "PodDisruptionBudget/r-router", "Role/r-router", "RoleBinding/r-router",
        "Service/r-router", "ServiceAccount/r-router"]


def test_config_maps_every_name_to_its_service_with_engine_metrics() -> None:
    config = yaml.safe_load(router_objects()["ConfigMap/r-router"]["data"]["router.yaml"])
    assert config["auth"] == {"api_keys_file": "/etc/stackc-router/keys/list"}
    a = config["models"]["a"]
    assert a["served_name"] == "a-served" and a["aliases"] == ["a1", "a2"]
    assert a["strategy"] == "session" and a["session"] == {"header": "x-user"}
    assert a["discovery"] == {"kubernetes": {"namespace": "ns", "service": "r-a", "port": 8000}}
    assert a["metrics"]["waiting"] == "vllm:num_requests_waiting" and a["health"] == {"path": "/health"}
    assert config["models"]["b"]["served_name"] == "org/b" and config["models"]["b"]["strategy"] == "prefix"


def test_router_may_only_watch_endpointslices_and_runs_restricted() -> None:
    found = router_objects()
    assert found["Role/r-router"]["rules"] == [
        {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["get", "list", "watch"]}]
    pod = found["Deployment/r-router"]["spec"]["template"]["spec"]
    context = pod["containers"][0]["securityContext"]
    assert context["runAsNonRoot"] and context["readOnlyRootFilesystem"] and context["capabilities"] == {"drop": ["ALL"]}
    assert {"name": "api-keys", "secret": {"secretName": "keys"}} in pod["volumes"]
    assert pod["topologySpreadConstraints"][0]["topologyKey"] == "kubernetes.io/hostname"


def test_a_config_change_rolls_the_router() -> None:
    before = router_objects()["Deployment/r-router"]["spec"]["template"]["metadata"]["annotations"]
    changed = objects(compile_text(SPEC.replace('"a2"', '"a3"')).files)
    after = next(o for o in changed if o["kind"] == "Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert before != after


def test_engines_behind_an_api_key_get_it_from_the_router() -> None:
    spec = SPEC.replace('routing = { strategy = "session", session_header = "x-user" }',
                        'routing = { strategy = "session", session_header = "x-user" }\n'
                        'security.api_key = { name = "engine-keys", key = "a" }')
    found = {f"{o['kind']}/{o['metadata']['name']}": o for o in objects(compile_text(spec).files)}
    config = yaml.safe_load(found["ConfigMap/r-router"]["data"]["router.yaml"])
    assert config["models"]["a"]["upstream_auth"] == {"api_key_file": "/etc/stackc-router/upstream/a/a"}
    assert "upstream_auth" not in config["models"]["b"]
    pod = found["Deployment/r-router"]["spec"]["template"]["spec"]
    assert {"name": "upstream-a", "secret": {"secretName": "engine-keys", "items": [{"key": "a", "path": "a"}]}} in pod["volumes"]


def test_an_hpa_on_cpu_owns_the_router_replicas_and_a_budget_keeps_some_up() -> None:
    found = {o["kind"]: o for o in objects(compile_text(
        SPEC, settings=["targets.router.autoscaling.min_replicas=2", "targets.router.autoscaling.max_replicas=6"]).files)}
    hpa, budget = found["HorizontalPodAutoscaler"], found["PodDisruptionBudget"]
    assert validate_kubernetes(hpa) == [] and validate_kubernetes(budget) == []
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 6)
    assert hpa["spec"]["metrics"][0]["resource"] == {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}
    assert "replicas" not in found["Deployment"]["spec"]
    assert budget["spec"]["selector"] == found["Deployment"]["spec"]["selector"]


def test_router_autoscaling_bounds_are_checked() -> None:
    with pytest.raises(DiagnosticsError) as caught:
        compile_text(SPEC, settings=["targets.router.autoscaling.min_replicas=5", "targets.router.autoscaling.max_replicas=3"])
    assert "E014] targets.router.autoscaling.min_replicas: min_replicas (5) is above max_replicas (3)" in str(caught.value)


def test_the_hold_queue_comes_from_the_spec_and_readiness_is_probed_apart_from_liveness() -> None:
    default = yaml.safe_load(router_objects()["ConfigMap/r-router"]["data"]["router.yaml"])
    assert default["hold"] == {"queue": 100, "timeout_s": 60.0}
    spec = SPEC.replace("[targets.router]\n", "[targets.router]\nhold_queue = 0\nhold_timeout_seconds = 300\n")
    found = {f"{o['kind']}/{o['metadata']['name']}": o for o in objects(compile_text(spec).files)}
    assert yaml.safe_load(found["ConfigMap/r-router"]["data"]["router.yaml"])["hold"] == {"queue": 0, "timeout_s": 300.0}
    container = found["Deployment/r-router"]["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"


def test_per_client_limits_come_from_the_spec_and_the_router_reads_them() -> None:
    """Behind a proxy that hides client addresses, a spec raises the per-address limits."""
    assert "max_in_flight_per_address" not in yaml.safe_load(
        router_objects()["ConfigMap/r-router"]["data"]["router.yaml"])["limits"]  # the router's default
    spec = SPEC.replace("[targets.router]\n", "[targets.router]\nmax_connections_per_address = 4096\n"
                        "max_in_flight_per_address = 1024\nmax_connections_per_key = 64\nmax_in_flight_per_key = 8\n")
    found = {f"{o['kind']}/{o['metadata']['name']}": o for o in objects(compile_text(spec).files)}
    config = parse(yaml.safe_load(found["ConfigMap/r-router"]["data"]["router.yaml"]))
    assert (config.max_connections_per_address, config.max_in_flight_per_address, config.max_connections_per_key,
            config.max_in_flight_per_key) == (4096, 1024, 64, 8)


def test_hold_settings_out_of_range_are_located_errors() -> None:
    spec = SPEC.replace("[targets.router]\n", "[targets.router]\nhold_queue = -1\nhold_timeout_seconds = 0\n")
    with pytest.raises(DiagnosticsError) as error:
        compile_text(spec)
    assert [d.render() for d in error.value.diagnostics if d.severity is Severity.ERROR] == [
        "spec.toml:19:14: error[E014] targets.router.hold_queue: must be at least 0, got -1",
        "spec.toml:20:24: error[E014] targets.router.hold_timeout_seconds: must be at least 1, got 0"]


def disaggregated(protocol: str, bootstrap_port: int | None = None) -> Plan:
    """The plan of SPEC with model ``a`` split into a decode and a prefill role, each with its own
    Service (as lowering makes it; built by hand so the router is tested apart from the engines)."""
    spec = SPEC.replace('routing = { strategy = "session", session_header = "x-user" }',
                        'routing = { strategy = "session", session_header = "x-user" }\n'
                        'security.api_key = { name = "engine-keys", key = "a" }')
    plan = compile_text(spec).plan
    a, b = plan.components
    decode = attrs.evolve(a, disaggregation=Disaggregation("decode", protocol))
    prefill = attrs.evolve(a, name="r-a-prefill", endpoint=attrs.evolve(a.endpoint, service="r-a-prefill", health_path="/ping"),
                           selector={**a.selector, "stackc.dev/role": "prefill"},
                           disaggregation=Disaggregation("prefill", protocol, bootstrap_port))
    return attrs.evolve(plan, components=(decode, prefill, b))


@pytest.mark.parametrize(("protocol", "port"), [("kv_transfer_params", None), ("prefill_then_decode", None),
                                                ("bootstrap", 8998)])
def test_a_disaggregated_model_is_one_route_with_both_roles_discovered(protocol, port) -> None:
    plan = disaggregated(protocol, port)
    found = {f"{a.objects[0]['kind']}/{a.objects[0]['metadata']['name']}": a.objects[0]
             for a in RouterTarget().emit(plan, RouterOptions()) if a.objects}
    assert [p for o in found.values() if is_core_kind(o) for p in validate_kubernetes(o)] == []
    text = found["ConfigMap/r-router"]["data"]["router.yaml"]
    config = parse(yaml.safe_load(text))  # the router reads what the target writes
    assert [route.name for route in config.models] == ["a", "b"]
    a = config.models[0]
    assert (a.served_name, a.aliases, a.kubernetes.service) == ("a-served", ("a1", "a2"), "r-a")
    assert a.upstream_api_key_file == "/etc/stackc-router/upstream/a/a"
    assert yaml.safe_load(text)["models"]["a"]["prefill"] == {
        "protocol": protocol, "discovery": {"kubernetes": {"namespace": "ns", "service": "r-a-prefill", "port": 8000}},
        "health": {"path": "/ping"}, **({"bootstrap_port": port} if port else {})}
    assert config.models[1].prefill is None
    volumes = found["Deployment/r-router"]["spec"]["template"]["spec"]["volumes"]
    assert [v["name"] for v in volumes].count("upstream-a") == 1  # one key for both roles of the model


def test_both_roles_admit_the_router_and_it_may_watch_both_services() -> None:
    plan = disaggregated("kv_transfer_params")
    decode, prefill, _ = plan.components
    router_pods = {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "router", "app.kubernetes.io/instance": "r"}}}
    for component in (decode, prefill):
        assert router_pods in kube.network_policy(plan.stack, component)["spec"]["ingress"][0]["from"]
    rules = {f"{a.objects[0]['kind']}": a.objects[0] for a in RouterTarget().emit(plan, RouterOptions()) if a.objects}
    assert rules["Role"]["rules"][0]["resources"] == ["endpointslices"]  # no resourceNames: every Service in the namespace


@pytest.mark.parametrize(("spec", "settings", "protocol"), [
    ("specs/disaggregated.toml", [], "kv_transfer_params"),
    # the gateway's P/D sidecar drives NIXL only: a stack with LMCache's connector routes through the router alone
    ("specs/disaggregated.toml", ["models.llama.disaggregation.connector=lmcache",
                                  'stack.targets=["manifests", "router"]'], "prefill_then_decode"),
    ("specs/disaggregated-sglang.toml", [], "bootstrap")])
def test_the_disaggregated_examples_route_through_both_roles(spec, settings, protocol) -> None:
    text = (Path(__file__).resolve().parents[3] / spec).read_text()
    found = objects(compile_text(text, settings=settings, targets=["manifests", "router"]).files)
    config = parse(yaml.safe_load(next(o for o in found if o["kind"] == "ConfigMap")["data"]["router.yaml"]))
    (route,) = config.models
    assert route.prefill is not None and route.prefill.protocol == protocol
    decode = route.kubernetes.service
    assert decode.endswith("-decode") and route.prefill.kubernetes.service == decode.removesuffix("-decode") + "-prefill"
    assert route.prefill.bootstrap_port == (8998 if protocol == "bootstrap" else None)
    router = {"app.kubernetes.io/name": "router"}
    policies = [o for o in found if o["kind"] == "NetworkPolicy"]
    assert len(policies) == 2  # one per role, each admitting the router's pods
    for policy in policies:
        assert any(router.items() <= peer.get("podSelector", {}).get("matchLabels", {}).items()
                   for rule in policy["spec"]["ingress"] for peer in rule.get("from", []))


def test_metrics_on_their_own_port_are_scraped_there_and_the_policy_admits_the_router() -> None:
    """Triton's metrics listen on a port of their own; the router reads load there, the NetworkPolicy lets it."""
    spec = """
version = 1
[stack]
name = "t"
targets = ["manifests", "router"]
[models.trt]
engine = "trtllm"
model = "Salesforce/codegen-2B-multi"
accelerators = { count = 1 }
engine_options = { mode = "triton", checkpoint_dir = "/cache/checkpoints/codegen-2B-multi" }
"""
    built = objects(compile_text(spec).files)
    config = yaml.safe_load(next(o for o in built if o["kind"] == "ConfigMap")["data"]["router.yaml"])
    metrics = config["models"]["trt"]["metrics"]
    policy = next(o for o in built if o["kind"] == "NetworkPolicy" and o["metadata"]["name"] == "t-trt")
    rule = next(r for r in policy["spec"]["ingress"] if r["ports"] == [{"port": "metrics", "protocol": "TCP"}])
    router = {"podSelector": {"matchLabels": {"app.kubernetes.io/instance": "t", "app.kubernetes.io/name": "router"}}}
    assert metrics["port"] == 8002 and metrics["waiting"].startswith("nv_trt_llm_request_metrics")
    assert router in rule["from"]


PORTS = """
version = 1
[stack]
name = "p"
targets = ["manifests", "helm", "router"]
network_policy = {}
[models.a]
engine = "vllm"
model = "org/a"
[[targets.router.ports]]
name = "lmcache"
port = 9000
[[targets.router.ports]]
name = "side"
port = 9100
target_port = 9101
protocol = "UDP"
"""


def test_the_routers_extra_ports_are_on_its_service_and_container_in_every_output() -> None:
    files = compile_text(PORTS).files
    found = objects({k: v for k, v in files.items() if k.startswith("router/")})
    [service] = [o for o in found if o["kind"] == "Service"]
    assert service["spec"]["ports"][1:] == [
        {"name": "lmcache", "port": 9000, "targetPort": "lmcache", "protocol": "TCP"},
        {"name": "side", "port": 9100, "targetPort": "side", "protocol": "UDP"}]
    [deployment] = [o for o in found if o["kind"] == "Deployment"]
    assert deployment["spec"]["template"]["spec"]["containers"][0]["ports"][1:] == [
        {"name": "lmcache", "containerPort": 9000, "protocol": "TCP"},
        {"name": "side", "containerPort": 9101, "protocol": "UDP"}]
    # the chart carries the router's objects as they are
    for kind in ("service", "deployment"):
        assert b"name: side" in files[f"helm/p/templates/router/{kind}.yaml"]
    # the models' policies admit the router; the router has no policy of its own to open
    assert not any(o["kind"] == "NetworkPolicy" and o["metadata"]["name"] == "p-router" for o in objects(files))
    assert all(not problems for problems in map(validate_kubernetes, objects(files)) if problems is not None)


@pytest.mark.parametrize("port, message", [
    ('name = "http"\nport = 9000', "targets.router.ports[0].name: name 'http' is already the router's own"),
    ('name = "x"\nport = 80', "targets.router.ports[0].port: Service port 80 is already the router's own"),
    ('name = "x"\nport = 9000\ntarget_port = 8080',
     "targets.router.ports[0].target_port: container port 8080 is already the router's own"),
    ('name = "x"\nport = 9000\n[[targets.router.ports]]\nname = "x"\nport = 9001',
     "targets.router.ports[1].name: name 'x' is already that of ports[0]"),
    ('name = "x"\nport = 9000\n[[targets.router.ports]]\nname = "y"\nport = 9000',
     "targets.router.ports[1].port: Service port 9000 is already that of ports[0]"),
    ('name = "x"\nport = 70000', "targets.router.ports[0].port"),
    ('name = "Not_A_Port_Name"\nport = 9000', "targets.router.ports[0].name"),
])
def test_router_ports_that_clash_or_are_out_of_range_are_located_errors(port: str, message: str) -> None:
    text = SPEC + f"[[targets.router.ports]]\n{port}\n"
    with pytest.raises(DiagnosticsError) as caught:
        compile_text(text)
    found = [d for d in caught.value.diagnostics if d.dotted_path.startswith("targets.router.ports")]
    assert any(message in f"{d.dotted_path}: {d.message}" for d in found), found
    assert all(d.location is not None and d.location.line > SPEC.count("\n") for d in found), found
