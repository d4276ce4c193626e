"""Model servers' NetworkPolicies, emitted by whichever target deploys them, admit every caller in the stack."""

from __future__ import annotations

import itertools

import pytest

from stackc.testing import compile_text, objects, validate_kubernetes

SPEC = """
version = 1
[stack]
name = "n"
namespace = "ns"
targets = [{targets}]
{policy}
[models.a]
engine = "vllm"
model = "org/a"
accelerators = {{ count = 1 }}
[models.b]
engine = "llamacpp"
model = "/models/b.gguf"
"""
ROUTER = {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "router", "app.kubernetes.io/instance": "n"}}}
GATEWAY = {"podSelector": {"matchLabels": {"gateway.networking.k8s.io/gateway-name": "n-gateway"}}}
SCRAPERS = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
DEPLOYING = ("manifests", "helm", "kserve")
CALLING = ("router", "gateway", "monitoring")


def policies(targets: tuple[str, ...], policy: str = "") -> dict[str, dict]:
    text = SPEC.format(targets=", ".join(f'"{t}"' for t in targets), policy=policy)
    found = objects(compile_text(text).files)
    assert [p for o in found if o["kind"] == "NetworkPolicy" for p in validate_kubernetes(o)] == []
    return {o["metadata"]["name"]: o["spec"] for o in found if o["kind"] == "NetworkPolicy"}


@pytest.mark.parametrize("callers", [c for n in range(len(CALLING) + 1) for c in itertools.combinations(CALLING, n)],
                         ids=lambda c: "+".join(c) or "none")
@pytest.mark.parametrize("deploying", [("manifests",), ("kserve",), ("manifests", "kserve")], ids="+".join)
def test_every_caller_in_the_stack_is_admitted(deploying: tuple[str, ...], callers: tuple[str, ...]) -> None:
    found = policies(deploying + callers)
    assert sorted(found) == ["n-a", "n-b"]  # one per model, whoever deploys it
    for name, spec in found.items():
        serving, metrics = spec["ingress"]
        expected = [GATEWAY] * ("gateway" in callers) + [ROUTER] * ("router" in callers)
        assert serving.get("from", []) == expected  # no caller known: clients call the Service directly
        assert SCRAPERS in metrics["from"]
        picker = {"podSelector": {"matchLabels": {"app.kubernetes.io/name": f"{name[2:]}-epp",
                                                  "app.kubernetes.io/instance": "n"}}}
        assert (picker in metrics["from"]) == ("gateway" in callers)


def test_the_helm_chart_carries_the_same_policies() -> None:
    text = SPEC.format(targets='"helm", "router"', policy="")
    files = compile_text(text).files
    for model in ("a", "b"):  # in each model's template file
        assert "kind: NetworkPolicy\n" in files[f"helm/n/templates/{model}.yaml"].decode()


def test_listed_peers_are_admitted_and_policies_can_be_turned_off() -> None:
    peer = '{ namespaceSelector = { matchLabels = { "kubernetes.io/metadata.name" = "gw" } } }'
    found = policies(("manifests", "router"), f"network_policy = {{ allow_from = [{peer}], metrics_namespace = \"obs\" }}")
    serving, metrics = found["n-a"]["ingress"]
    assert serving["from"] == [ROUTER, {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "gw"}}}]
    assert metrics["from"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "obs"}}}]
    assert policies(("manifests", "router"), "network_policy = { enabled = false }") == {}


def test_knative_mode_gets_no_policy_that_would_block_its_activator() -> None:
    assert policies(("kserve", "router"), "") != {}
    text = SPEC.format(targets='"kserve"', policy="") + '[targets.kserve]\ndeployment_mode = "Knative"\n'
    assert [o for o in objects(compile_text(text).files) if o["kind"] == "NetworkPolicy"] == []


def test_envoy_gateway_proxies_are_admitted_from_its_namespace_and_labels_can_be_set() -> None:
    text = SPEC.format(targets='"manifests", "gateway"', policy="") + "[targets.gateway]\nenvoy_extension_policy = true\n"
    found = {o["metadata"]["name"]: o["spec"] for o in objects(compile_text(text).files) if o["kind"] == "NetworkPolicy"}
    assert found["n-a"]["ingress"][0]["from"] == [{
        "podSelector": {"matchLabels": {"gateway.envoyproxy.io/owning-gateway-name": "n-gateway",
                                        "gateway.envoyproxy.io/owning-gateway-namespace": "ns"}},
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "envoy-gateway-system"}}}]
    text = SPEC.format(targets='"manifests", "gateway"', policy="") + (
        '[targets.gateway]\nproxy_labels = { "app" = "my-proxy" }\nproxy_namespace = "edge"\n')
    found = {o["metadata"]["name"]: o["spec"] for o in objects(compile_text(text).files) if o["kind"] == "NetworkPolicy"}
    assert found["n-a"]["ingress"][0]["from"] == [{
        "podSelector": {"matchLabels": {"app": "my-proxy"}},
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "edge"}}}]
