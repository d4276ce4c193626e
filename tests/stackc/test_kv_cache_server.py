"""The stack's KV-cache server: built once from the plan, deployed by every target that deploys models,
reachable by the stack's model servers only."""

from __future__ import annotations

import pytest

from stackc.diagnostics import DiagnosticsError
from stackc.testing import compile_text, objects, pod_security_problems, pod_templates

SPEC = """
version = 1
[stack]
name = "kv"
namespace = "llm"
targets = ["manifests", "helm", "kserve"]
[stack.kv_cache_server]
image = "lmcache/vllm-openai:tested"
port = 8100
serde = "cachegen"
resources = { requests = { cpu = "4", memory = "8Gi" } }
[models.m]
engine = "vllm"
model = "org/m"
image = "lmcache/vllm-openai:tested"
accelerators = { count = 1 }
resources = { requests = { memory = "64Gi" } }
kv_offload = { cpu_gib = 20, backend = "lmcache", remote = true }
"""
NAME = "kv-kv-cache-server"


@pytest.fixture(scope="module")
def files() -> dict[str, bytes]:
    return compile_text(SPEC).files


def server_objects(files: dict[str, bytes], target: str) -> dict[str, dict]:
    return {o["kind"]: o for o in objects({k: v for k, v in files.items() if k.startswith(f"{target}/")})
            if o["metadata"]["name"] == NAME}


@pytest.mark.parametrize("target", ["manifests", "kserve"])
def test_every_target_that_deploys_models_deploys_the_server(files: dict[str, bytes], target: str) -> None:
    found = server_objects(files, target)
    assert sorted(found) == ["Deployment", "NetworkPolicy", "Service"]
    pod = found["Deployment"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["image"] == "lmcache/vllm-openai:tested"
    assert container["command"] == ["/opt/venv/bin/lmcache_server", "0.0.0.0", "8100"]
    assert container["ports"] == [{"name": "lm", "containerPort": 8100, "protocol": "TCP"}]
    assert container["resources"] == {"requests": {"cpu": "4", "memory": "8Gi"}}
    assert found["Deployment"]["spec"]["replicas"] == 1
    assert found["Service"]["spec"]["ports"] == [{"name": "lm", "port": 8100, "targetPort": "lm", "protocol": "TCP"}]
    assert found["Service"]["spec"]["selector"] == found["Deployment"]["spec"]["selector"]["matchLabels"]


def test_the_helm_chart_templates_the_server_too(files: dict[str, bytes]) -> None:
    template = files["helm/kv/templates/objects.yaml"].decode()
    assert all(f"kind: {kind}\n" in template for kind in ("Deployment", "Service", "NetworkPolicy"))
    assert f"name: {NAME}\n" in template


def test_only_the_stacks_model_servers_may_call_it(files: dict[str, bytes]) -> None:
    found = server_objects(files, "manifests")
    policy = found["NetworkPolicy"]["spec"]
    assert policy["podSelector"]["matchLabels"] == found["Deployment"]["spec"]["selector"]["matchLabels"]
    [rule] = policy["ingress"]
    [peer] = rule["from"]
    assert rule["ports"] == [{"port": "lm", "protocol": "TCP"}]
    models = [o for o in objects(files) if o["kind"] in ("Deployment", "InferenceService")
              and o["metadata"]["name"] == "kv-m"]
    assert len(models) == 2
    for model in models:
        labels = (model["spec"]["template"]["metadata"]["labels"] if model["kind"] == "Deployment"
                  else model["spec"]["predictor"]["labels"])
        assert peer["podSelector"]["matchLabels"].items() <= labels.items()


def test_the_server_is_admitted_by_a_restricted_namespace(files: dict[str, bytes]) -> None:
    deployment = server_objects(files, "manifests")["Deployment"]
    for meta, pod in pod_templates(deployment):
        assert pod_security_problems(meta, pod, "restricted") == []


def test_the_engines_are_told_where_it_is(files: dict[str, bytes]) -> None:
    kserve = next(o for o in objects(files) if o["kind"] == "InferenceService")
    env = {e["name"]: e.get("value") for e in kserve["spec"]["predictor"]["model"]["env"]}
    assert env["LMCACHE_REMOTE_URL"] == f"lm://{NAME}:8100"
    assert env["LMCACHE_REMOTE_SERDE"] == "cachegen"


def test_without_network_policies_the_server_gets_none() -> None:
    text = SPEC.replace('namespace = "llm"', 'namespace = "llm"\nnetwork_policy = { enabled = false }')
    assert sorted(server_objects(compile_text(text).files, "manifests")) == ["Deployment", "Service"]


def test_a_model_cannot_take_the_servers_names() -> None:
    text = SPEC.replace("[models.m]", "[models.kv-cache-server]")
    with pytest.raises(DiagnosticsError) as error:
        compile_text(text)
    assert [(d.code, d.dotted_path) for d in error.value.diagnostics] == [("E126", "models.kv-cache-server")]
