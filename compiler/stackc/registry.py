"""Engines and targets: the protocols plugins implement and the registry they add them to."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar, Protocol, runtime_checkable

import attrs

from stackc.diagnostics import Diagnostic
from stackc.plan.engine import Capability, EngineRequest, EngineResult, LocalRun
from stackc.plan.model import Plan
from stackc.spec.model import Model


@runtime_checkable
class Engine(Protocol):
    """How one inference engine runs a model. Methods return data; they never print or write."""

    name: ClassVar[str]
    description: ClassVar[str]
    capabilities: ClassVar[frozenset[Capability]]
    #: attrs class for ``[models.NAME.engine_options]``, or None when the engine has no options.
    options_type: ClassVar[type | None]
    #: how ``stackc up`` runs the engine here; engines without it cannot run locally (optional).
    local_run: ClassVar[LocalRun | None]

    # Optional: ``platform_weights = False`` when the engine loads one file and cannot use a folder
    # of weights that a target's platform downloads (KServe's storage initializer).
    # Optional: ``owned_flags``, command-line flags the engine sets from the spec (flag -> spec field):
    # ``engine_args`` repeating one draws warning W025.

    def check(self, key: str, model: Model, options: Any) -> Iterable[Diagnostic]:
        """Engine-specific rules beyond capabilities; paths are relative to ``models.KEY``."""

    def lower(self, request: EngineRequest) -> EngineResult:
        """The container (and its needs) that serves ``request.model``."""


@attrs.frozen
class Artifact:
    """One output file. ``objects`` become a YAML stream; ``data`` canonical JSON; ``text`` as is."""

    path: str
    objects: tuple[Mapping[str, Any], ...] = ()
    data: Any = None
    text: str | None = None


@runtime_checkable
class Target(Protocol):
    """A deployment format: it translates the plan. ``emit`` returns artifacts; the core renders and writes them.

    Optional members (docs/hooks.md): ``check(plan, options)`` yields diagnostics with full spec
    paths; ``weights_path`` names where the target's platform puts the weights it downloads
    itself (KServe: ``/mnt/models``), so engines load from there; ``ray_head`` is where the workers of a
    multi-node replica reach the leader when the platform forms the group as a Ray cluster (KServe:
    ``$(HEAD_SVC)``), so engines that can start Ray's head and join it do; ``release_namespace`` is a
    placeholder the plan is lowered with when the platform picks the namespace at install time (Helm's
    release), which the target turns into the platform's own; ``serves_models`` says the
    target deploys the model servers and their Services; ``model_service(component)`` names the
    Service its platform puts in front of a model otherwise; ``callers(plan, options)`` yields
    the target's pods that call the models, for their NetworkPolicies; ``exporters(plan, options)``
    yields its pods that export metrics (and a router's per-model series), for monitors and autoscalers;
    ``bundle(plan, options,
    addons)`` is called after every target emitted, with the artifacts of the stack's add-on
    targets (those that neither serve the models nor name their Services) emitted for the bundling
    target's plan, and returns more
    artifacts for the target's own folder (the Helm chart packages the router and monitoring).
    """

    name: ClassVar[str]
    description: ClassVar[str]
    #: attrs class for ``[targets.NAME]``, or None when the target has no options.
    options_type: ClassVar[type | None]

    def emit(self, plan: Plan, options: Any) -> Iterable[Artifact]:
        """Artifacts with paths relative to ``OUT/STACK/NAME/``."""

    # Optional: ``check(self, spec: Spec, options) -> Iterable[Diagnostic]`` finds what the target's
    # platform would reject (spec paths from the top), before anything is emitted.


@attrs.frozen
class Provider:
    """Who provides a plugin: the entry point and its distribution."""

    plugin: str
    distribution: str
    version: str

    def __str__(self) -> str:
        return f"{self.distribution} {self.version} ({self.plugin})"


@attrs.frozen
class Registered:
    obj: Any
    provider: Provider


class DuplicateNameError(Exception):
    """Two plugins add the same engine or target name."""


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
        self._add(self.engines, "engine", engine)

    def add_target(self, target: Target) -> None:
        self._add(self.targets, "target", target)

    def _add(self, table: dict[str, Registered], kind: str, obj: Any) -> None:
        provider = self._provider or Provider("<direct>", "<unknown>", "0")
        if obj.name in table:
            first = table[obj.name].provider
            raise DuplicateNameError(f"{kind} '{obj.name}' is provided twice: by {first} and by {provider}")
        table[obj.name] = Registered(obj, provider)

    def engine(self, name: str) -> Engine:
        return self.engines[name].obj

    def target(self, name: str) -> Target:
        return self.targets[name].obj
