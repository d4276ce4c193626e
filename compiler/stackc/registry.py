"""The plugin contract: what an engine or a target may provide, declared once, and the registry that enforces it.

Every member is declared here with its type and, when optional, its default: ``ENGINE_TRAITS`` and
``TARGET_TRAITS`` hold the attributes, ``ENGINE_METHODS`` and ``TARGET_METHODS`` the methods. Registering
a plugin with a member the contract does not declare (a misspelt ``caller`` for ``callers``), a
method that takes other parameters, or an attribute of the wrong type is an error naming the plugin
and the member, as pluggy's ``check_pending`` rejects an unknown hook. The core then reads a plugin
only through ``Registered.traits`` and ``Registered.method``: it asks what a target does (serves
the models, proxies P/D decode, monitors the models…), never which target it is.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar, Protocol, runtime_checkable

import attrs

from stackc.diagnostics import did_you_mean
from stackc.plan.engine import Capability, EngineRequest, EngineResult, LocalRun
from stackc.plan.model import Plan
from stackc.records import frozen


def _declared(doc: str, default: Any = attrs.NOTHING, *, kind: type | tuple[type, ...]) -> Any:
    validator = attrs.validators.instance_of(kind)
    if default is not attrs.NOTHING and default is None:
        validator = attrs.validators.optional(attrs.validators.instance_of(kind))
    return attrs.field(default=default, validator=validator, metadata={"doc": doc})


@frozen
class EngineTraits:
    """An engine's attributes, the plugin's value or the declared default."""

    name: str = _declared("the value of `engine =` in specs", kind=str)
    description: str = _declared("one line for `stackc plugins`", kind=str)
    capabilities: frozenset[Capability] = _declared(
        "`frozenset` of `stackc.plan.engine.Capability`: spec features the engine can serve; the core rejects the "
        "rest at the spec's location", kind=frozenset)
    options_type: type | None = _declared(
        "an attrs class for `[models.NAME.engine_options]`, or `None`; field metadata `minimum`, `maximum`, `form` "
        "(a `stackc.spec.model.Form`), `keys`, `min_items` are checked by the core and published in the JSON Schema",
        None, kind=type)
    local_run: LocalRun | None = _declared(
        "a `LocalRun`: which host executables run the container's command for `stackc up`, and what to install "
        "when none is found; engines without it cannot run locally", None, kind=LocalRun)
    platform_weights: bool = _declared(
        "`False` when the engine loads one file and cannot use a folder of weights a target's platform downloads "
        "(llama.cpp)", True, kind=bool)
    object_storage: bool = _declared(
        "`True` when the engine reads `s3://` and `gs://` weights itself (vLLM); for other engines the core "
        "downloads them before the engine starts and `request.weights` points at the local copy", False, kind=bool)
    owned_flags: Mapping[str, str] = _declared(
        "a mapping of the command-line flags the engine sets from the spec to the spec field that sets them "
        "(`{\"--port\": \"port\"}`): `engine_args` repeating one gets warning W025", attrs.Factory(dict),
        kind=Mapping)
    kv_connectors: Mapping[str, str] = _declared(
        "with `Capability.DISAGGREGATION`: the `disaggregation.connector` values it takes, each with how a router "
        "joins the roles over it (`plan.model.PrefillProtocol`: `kv_transfer_params`, `prefill_then_decode` or "
        "`bootstrap`), e.g. `{\"nixl\": \"kv_transfer_params\"}`; others get E100", attrs.Factory(dict),
        kind=Mapping)
    memory_accounting: str | None = _declared(
        "how the engine sizes its KV cache, for the fit check (`stackc.fit.arithmetic.Accounting`): `vllm`, "
        "`sglang`, `trtllm` or `llamacpp`; `None`: the fit check says \"unknown\"", None, kind=str)


@frozen
class TargetTraits:
    """A target's attributes, the plugin's value or the declared default: what it is, never who."""

    name: str = _declared("the value in `stack.targets` and `--target`", kind=str)
    description: str = _declared("one line for `stackc plugins`", kind=str)
    options_type: type | None = _declared("an attrs class for `[targets.NAME]`, or `None`", None, kind=type)
    serves_models: bool = _declared(
        "`True` when the target deploys the model servers and their Services (manifests, helm)", False, kind=bool)
    serves_aliases: bool = _declared(
        "`True` when the target answers to every alias itself (the router), so engines that serve one name may "
        "still have aliases", False, kind=bool)
    loads_adapters: bool = _declared(
        "`True` when the target loads LoRA adapters into running engines itself (the router): models with "
        "`load = \"runtime\"` adapters need one such target", False, kind=bool)
    applies_routing: bool = _declared(
        "`True` when the target picks a replica by each model's `routing.strategy` and `session_header` (the "
        "router): without one such target they draw W153", False, kind=bool)
    routes_on_kv_events: bool = _declared(
        "`True` when the target routes on the engines' KV events (the gateway): models with `routing.kv_events` "
        "then publish them, and the target yields a `Caller` with `port=\"kv_events\"` for the pods that subscribe",
        False, kind=bool)
    proxies_pd_decode: bool = _declared(
        "`True` when the target reaches a disaggregated model's decode pods through llm-d's P/D sidecar (the "
        "gateway's endpoint picker): a `kv_transfer_params` model's decode pods then get the sidecar on the "
        "serving port and the engine behind it", False, kind=bool)
    splits_traffic: bool = _declared(
        "`True` when the target gives a model's candidate version its share of the requests (`candidate.traffic`, "
        "`header`, `mirror`; the router, the gateway): without one such target a candidate that should get "
        "requests draws W182", False, kind=bool)
    monitors_models: bool = _declared(
        "`True` when the target has Prometheus scrape every model's metrics labelled with the pods' labels (the "
        "monitoring target's PodMonitors): autoscaler triggers select series by those labels, and without such a "
        "target they draw W080", False, kind=bool)
    weights_path: str | None = _declared(
        "where the target's platform puts weights it downloads itself (KServe: `/mnt/models`); its plan is lowered "
        "so engines load from there", None, kind=str)
    ray_head: str | None = _declared(
        "the host at which the workers of a multi-node replica reach the leader when the target's platform forms "
        "the group as a Ray cluster (KServe: `$(HEAD_SVC)`); its plan is lowered with `EngineRequest.ray_head` set, "
        "and engines that honour it return `ray_group = True` (`topology.ray_group` in the plan)", None, kind=str)
    release_namespace: str | None = _declared(
        "a placeholder namespace, when the target's platform picks the namespace at install time (Helm: "
        "`stackc-release-namespace`, which the chart replaces with `.Release.Namespace`); its plan is lowered with "
        "it as `stack.namespace`, and `bundle` gets the add-ons emitted for that plan", None, kind=str)


@frozen
class Method:
    """A method of the contract: its parameters (after ``self``) and, when optional, what its absence means."""

    name: str
    parameters: tuple[str, ...]
    doc: str
    required: bool = False
    default: Callable[..., Any] | None = None


def _nothing(*_: Any) -> tuple[()]:
    return ()


def _no_service(_: Any) -> None:
    return None


ENGINE_METHODS = (
    Method("lower", ("request",),
           '`EngineRequest` → `EngineResult`: the container, served names, port, metrics, init containers and '
           'volumes for one model; `request.weights` says where the weights are (the core decided: load '
           '`weights.location`, and mount `weights.mount` when set); with `Capability.MULTI_NODE` and '
           "`serving.nodes` > 1 also `worker`, the container of the group's other pods (LeaderWorkerSet sets "
           '`LWS_LEADER_ADDRESS`, `LWS_WORKER_INDEX`, `LWS_GROUP_SIZE` in every pod), or, when '
           "`request.ray_head` is set, a leader that starts Ray's head and the engine over it and a worker that "
           'joins it (`ray_group = True`); `request.kv_disk_path`, `kv_cache_url` and `kv_cache_serde` say where'
           " the core mounted the disk for offloaded KV blocks and where the stack's KV-cache server is"
           "; `request.listen` (host and port), set when `stackc up` lowers one replica for the local machine, is "
           "where the engine listens instead of every interface at the spec's port (`stackc up` refuses several "
           "replicas of an engine that ignores it)", required=True),
    Method("check", ("key", "model", "options"), "yields `Diagnostic`s for engine-specific rules; paths are "
           "relative to `models.KEY`", default=_nothing),
)
TARGET_METHODS = (
    Method("emit", ("plan", "options"), "yields `Artifact`s (paths relative to `out/STACK/NAME/`): `objects` become a "
           "YAML stream, `data` canonical JSON/YAML, `text` is written as is", required=True),
    Method("check", ("plan", "options"), "yields `Diagnostic`s the target finds (errors or warnings) with full spec "
           "paths (`targets.NAME.…`, `models.KEY.…`), located in the spec", default=_nothing),
    Method("model_service", ("component",), "the Service the target's platform puts in front of a model's pods and "
           "the pods' port (KServe: `NAME-predictor`), or `None`; routers and gateways use it when no "
           "`serves_models` target is in the stack", default=_no_service),
    Method("model_pods", ("component",), "the labels the target's platform gives a model's serving pods in place "
           "of the plan's, or `None` (KServe's LLMInferenceService replaces stackc's name labels with its own); "
           "monitors select the pods by them when only such targets deploy the model", default=_no_service),
    Method("callers", ("plan", "options"), "yields `stackc.plan.model.Caller`s: the target's pods that call the "
           "model servers (on the serving, metrics or KV-events port), which the models' NetworkPolicies then admit",
           default=_nothing),
    Method("exporters", ("plan", "options"), "yields `stackc.plan.model.Exporter`s: the target's pods that export "
           "Prometheus metrics (a router declares its per-model series as `RouterMetricNames`), which monitors "
           "scrape and autoscalers, alerts and dashboards query", default=_nothing),
    Method("bundle", ("plan", "options", "addons"), "called once every target has emitted, with `addons`: target "
           "name → the artifacts of each stack target that neither serves the models nor names their Service "
           "(router, monitoring, gateway); returns more artifacts for this target's folder (the Helm chart packages "
           "them, so one release installs the whole stack)", default=_nothing),
)


@runtime_checkable
class Engine(Protocol):
    """How one inference engine runs a model (the required members; ``EngineTraits`` and
    ``ENGINE_METHODS`` declare the optional ones). Methods return data; they never print or write."""

    name: ClassVar[str]
    description: ClassVar[str]
    capabilities: ClassVar[frozenset[Capability]]

    def lower(self, request: EngineRequest) -> EngineResult:
        """The container (and its needs) that serves ``request.model``."""


@frozen
class Artifact:
    """One output file. ``objects`` become a YAML stream; ``data`` canonical JSON; ``text`` as is."""

    path: str
    objects: tuple[Mapping[str, Any], ...] = ()
    data: Any = None
    text: str | None = None


@runtime_checkable
class Target(Protocol):
    """A deployment format: it translates the plan (the required members; ``TargetTraits`` and
    ``TARGET_METHODS`` declare the optional ones). ``emit`` returns artifacts; the core renders and writes them."""

    name: ClassVar[str]
    description: ClassVar[str]

    def emit(self, plan: Plan, options: Any) -> Iterable[Artifact]:
        """Artifacts with paths relative to ``OUT/STACK/NAME/``."""


@frozen
class Provider:
    """Who provides a plugin: the entry point and its distribution."""

    plugin: str
    distribution: str
    version: str

    def __str__(self) -> str:
        return f"{self.distribution} {self.version} ({self.plugin})"


@frozen
class Registered:
    """A plugin object as the core reads it: its declared traits and its methods (or their defaults)."""

    obj: Any
    provider: Provider
    traits: Any
    methods: Mapping[str, Callable[..., Any]]

    def method(self, name: str) -> Callable[..., Any]:
        return self.methods[name]


class DuplicateNameError(Exception):
    """Two plugins add the same engine or target name."""


class ContractError(Exception):
    """A plugin object does not follow the declared contract: a bug in the plugin, named with its member."""


class Registry:
    """Collects engines and targets, remembering who provided each."""

    def __init__(self) -> None:
        self.engines: dict[str, Registered] = {}
        self.targets: dict[str, Registered] = {}
        self._provider: Provider | None = None

    def providing(self, provider: Provider) -> Registry:
        self._provider = provider
        return self

    def add_engine(self, engine: Engine) -> None:
        self._add(self.engines, "engine", engine, EngineTraits, ENGINE_METHODS)

    def add_target(self, target: Target) -> None:
        self._add(self.targets, "target", target, TargetTraits, TARGET_METHODS)

    def _add(self, table: dict[str, Registered], kind: str, obj: Any, traits_type: type,
             methods: tuple[Method, ...]) -> None:
        provider = self._provider or Provider("<direct>", "<unknown>", "0")
        registered = declared(kind, obj, provider, traits_type, methods)
        name = registered.traits.name
        if name in table:
            first = table[name].provider
            raise DuplicateNameError(f"{kind} '{name}' is provided twice: by {first} and by {provider}")
        table[name] = registered

    def engine(self, name: str) -> Engine:
        return self.engines[name].obj

    def target(self, name: str) -> Target:
        return self.targets[name].obj

    def targets_having(self, trait: str, names: Iterable[str] | None = None) -> list[str]:
        """The registered targets (of ``names``, or all) whose boolean trait ``trait`` is set, sorted."""
        assert trait in attrs.fields_dict(TargetTraits), trait
        chosen = self.targets if names is None else [name for name in names if name in self.targets]
        return sorted({name for name in chosen if getattr(self.targets[name].traits, trait)})


def contract_members(traits_type: type, methods: tuple[Method, ...]) -> dict[str, bool]:
    """Every member the contract declares for one kind of plugin, and whether it is optional."""
    members = {field.name: field.default is not attrs.NOTHING for field in attrs.fields(traits_type)}
    members.update({method.name: not method.required for method in methods})
    return members


def declared(kind: str, obj: Any, provider: Provider, traits_type: type, methods: tuple[Method, ...]) -> Registered:
    """``obj`` read through the contract, or ContractError naming the plugin and every member that breaks it."""
    label = f"{kind} '{getattr(obj, 'name', '?')}' of plugin {provider}"
    members = contract_members(traits_type, methods)
    problems = []
    for member in sorted(m for m in dir(type(obj)) if not m.startswith("_") and m not in members):
        hint = did_you_mean(member, members) or ""
        problems.append(f"unknown member '{member}'" + (f" ({hint})" if hint.startswith("did you mean") else "")
                        + "; the contract's members are listed in docs/hooks.md (prefix private helpers with '_')")
    for member, optional in members.items():
        if not optional and not hasattr(obj, member):
            problems.append(f"missing member '{member}'")
    found: dict[str, Callable[..., Any]] = {}
    for method in methods:
        implementation = getattr(obj, method.name, None)
        if implementation is None:
            if method.default is not None:
                found[method.name] = method.default
            continue
        if not callable(implementation):
            problems.append(f"member '{method.name}' must be a method {method.name}({', '.join(method.parameters)})")
            continue
        try:
            inspect.signature(implementation).bind(*method.parameters)
        except TypeError:
            problems.append(f"member '{method.name}' must take ({', '.join(method.parameters)}), "
                            f"not {inspect.signature(implementation)}")
        except ValueError:
            pass  # a builtin without a signature: nothing to check
        found[method.name] = implementation
    traits = None
    if not problems:
        values = {field.name: getattr(obj, field.name) for field in attrs.fields(traits_type)
                  if hasattr(obj, field.name)}
        try:
            traits = traits_type(**values)
        except TypeError as error:
            member = error.args[1].name if len(error.args) > 1 and hasattr(error.args[1], "name") else "?"
            problems.append(f"member '{member}' has the wrong type: {error.args[0]}")
    if problems:
        raise ContractError(f"{label} breaks the plugin contract: " + "; ".join(problems))
    return Registered(obj, provider, traits, found)


def contract_reference(traits_type: type, methods: tuple[Method, ...]) -> str:
    """The Markdown table of one kind's members, from the declarations (docs/hooks.md embeds it)."""
    rows = ["| member | meaning |", "| --- | --- |"]
    for field in attrs.fields(traits_type):
        optional = " (optional)" if field.default is not attrs.NOTHING else ""
        rows.append(f"| `{field.name}`{optional} | {field.metadata['doc']} |")
    for method in methods:
        optional = "" if method.required else " (optional)"
        rows.append(f"| `{method.name}({', '.join(method.parameters)})`{optional} | {method.doc} |")
    return "\n".join(rows) + "\n"
