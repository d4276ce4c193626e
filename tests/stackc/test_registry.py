"""The plugin contract: every member declared once, enforced at registration, and the core acting on
traits alone, so an out-of-tree target gets what a built-in with the same traits gets."""

from __future__ import annotations

import types

import pytest
import yaml

from stackc import hookimpl
from stackc.plan.model import Caller
from stackc.plugins import PluginError, load_registry
from stackc.registry import (
    ENGINE_METHODS,
    TARGET_METHODS,
    Artifact,
    EngineTraits,
    Provider,
    Registry,
    TargetTraits,
    contract_members,
)
from stackc.testing import compile_text, objects


class QuietTarget:
    name = "quiet"
    description = "emits nothing"

    def emit(self, plan, options):
        return ()


def plugin_module(name: str, targets=(), engines=()) -> types.ModuleType:
    module = types.ModuleType(name)

    @hookimpl
    def stackc_add_targets(registry):
        for target in targets:
            registry.add_target(target)

    @hookimpl
    def stackc_add_engines(registry):
        for engine in engines:
            registry.add_engine(engine)

    module.stackc_add_targets = stackc_add_targets
    module.stackc_add_engines = stackc_add_engines
    return module


def registration_error(*, targets=(), engines=()) -> str:
    with pytest.raises(PluginError) as error:
        load_registry(extra=[plugin_module("broken", targets, engines)])
    return str(error.value)


def test_every_built_in_follows_the_contract() -> None:
    registry = load_registry()
    assert {"gateway", "helm", "kserve", "manifests", "monitoring", "router"} <= set(registry.targets)
    assert registry.targets["gateway"].traits.proxies_pd_decode
    assert registry.engines["vllm"].traits.kv_connectors["nixl"] == "kv_transfer_params"


def test_a_misspelt_optional_member_is_an_error_naming_it() -> None:
    class Misspelt(QuietTarget):
        def caller(self, plan, options):  # meant: callers — the NetworkPolicies would stay closed to its pods
            return ()

    message = registration_error(targets=[Misspelt()])
    assert "target 'quiet'" in message and "<test> 0 (broken)" in message
    assert "unknown member 'caller' (did you mean 'callers'?)" in message


def test_a_misspelt_engine_member_is_an_error_naming_it() -> None:
    class Engine:
        name, description, capabilities = "e", "an engine", frozenset()
        owned_flag = {"--port": "port"}

        def lower(self, request):
            raise NotImplementedError

    assert "engine 'e'" in (message := registration_error(engines=[Engine()]))
    assert "unknown member 'owned_flag' (did you mean 'owned_flags'?)" in message


def test_a_method_with_other_parameters_is_an_error() -> None:
    class WrongCheck(QuietTarget):
        def check(self, spec):
            return ()

    assert "member 'check' must take (plan, options), not (spec)" in registration_error(targets=[WrongCheck()])


def test_an_attribute_of_the_wrong_type_is_an_error() -> None:
    class Stringly(QuietTarget):
        serves_models = "yes"

    assert "member 'serves_models' has the wrong type" in registration_error(targets=[Stringly()])


def test_a_missing_required_member_is_an_error() -> None:
    class Nameless:
        description = "no name"

        def emit(self, plan, options):
            return ()

    assert "missing member 'name'" in registration_error(targets=[Nameless()])


def test_private_helpers_are_the_plugins_own() -> None:
    class Helped(QuietTarget):
        def _objects(self):
            return ()

    registry = Registry().providing(Provider("p", "d", "1"))
    registry.add_target(Helped())
    assert registry.targets["quiet"].traits == TargetTraits(name="quiet", description="emits nothing")
    assert list(registry.targets["quiet"].method("callers")(None, None)) == []


def test_the_contract_declares_what_the_docs_table_lists() -> None:
    assert set(contract_members(EngineTraits, ENGINE_METHODS)) == {
        "name", "description", "capabilities", "options_type", "local_run", "platform_weights", "object_storage",
        "owned_flags", "kv_connectors", "memory_accounting", "lower", "check"}
    assert {m.name for m in TARGET_METHODS} == {"emit", "check", "model_service", "model_pods", "callers", "exporters",
                                               "bundle"}


PD_SPEC = """
version = 1
stack = { name = "pd", targets = ["manifests", "my-gateway"] }
[models.m]
engine = "vllm"
model = "org/m"
accelerators.count = 1
disaggregation = { connector = "nixl" }
"""
PICKER = {"app.kubernetes.io/name": "my-picker"}


class OutOfTreeGateway:
    """A third party's gateway: the built-in gateway's traits, none of its code."""

    name = "my-gateway"
    description = "a gateway of our own"
    serves_aliases = True
    proxies_pd_decode = True

    def callers(self, plan, options):
        yield Caller(PICKER)

    def emit(self, plan, options):
        yield Artifact("pools.yaml", data={"pools": sorted(c.name for c in plan.components)})


def test_an_out_of_tree_target_with_the_gateways_traits_gets_the_pd_proxy_and_admission() -> None:
    module = plugin_module("my_gateway", targets=[OutOfTreeGateway()])
    found = {(o["kind"], o["metadata"]["name"]): o
             for o in objects(compile_text(PD_SPEC, plugins=[module], targets=["manifests"]).files)}
    decode = found[("Deployment", "pd-m-decode")]["spec"]["template"]["spec"]
    (proxy,) = decode["initContainers"]
    assert proxy["name"] == "routing-proxy" and proxy["ports"][0]["containerPort"] == 8000
    engine = decode["containers"][0]
    assert engine["args"][engine["args"].index("--port") + 1] == "8200"
    for role in ("decode", "prefill"):
        rules = found[("NetworkPolicy", f"pd-m-{role}")]["spec"]["ingress"]
        assert {"podSelector": {"matchLabels": PICKER}} in rules[0]["from"]
    without = compile_text(PD_SPEC.replace('"my-gateway"', '"router"'), targets=["manifests"]).files
    plain = next(o for o in objects(without) if o["kind"] == "Deployment" and o["metadata"]["name"] == "pd-m-decode")
    assert "initContainers" not in plain["spec"]["template"]["spec"]
    assert yaml.safe_load(compile_text(PD_SPEC, plugins=[module]).files["my-gateway/pools.yaml"]) == {
        "pools": ["pd-m-decode", "pd-m-prefill"]}
