"""load -> structure -> validate -> lower -> emit -> render. Plain functions returning data.

Nothing here prints or writes to ``out/``; the CLI does. Plugin code is called only through
``_plugin_call`` so a crash is reported with the plugin's name instead of a bare traceback.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path as FsPath
from typing import Any, TypeVar

import attrs

from stackc.diagnostics import (
    Diagnostic,
    DiagnosticsError,
    Location,
    Severity,
    did_you_mean,
    sorted_unique,
)
from stackc.output.parallel import in_parallel, usable_cpus
from stackc.output.render import render
from stackc.lowering import lower as lowering
from stackc.plan.engine import Listen
from stackc.plan.model import Plan
from stackc.records import frozen
from stackc.registry import Artifact, Provider, Registered, Registry
from stackc.spec import convert
from stackc.spec.candidate import SUFFIX as CANDIDATE
from stackc.spec.model import SPEC_VERSION, Model, Spec
from stackc.spec.source import Document, Path, SourceMap, load_files
from stackc import kube
from stackc.check.fit import HUB_CACHE, assess as assess_fit
from stackc.check.limits import limit_problems
from stackc.check.plan import autoscaling_problems, cluster_problems, lowered_problems
from stackc.check.spec import validate_spec

T = TypeVar("T")


class PluginCrash(Exception):
    """A plugin raised while lowering or emitting: a bug in the plugin, not in the spec."""

    def __init__(self, provider: Provider, what: str, error: BaseException):
        self.provider = provider
        self.error = error
        super().__init__(f"plugin {provider} crashed in {what}: {type(error).__name__}: {error}")


@frozen
class Compilation:
    """The result of compiling a spec: the checked spec, its plan and the rendered files."""

    spec: Spec
    plan: Plan
    targets: tuple[str, ...]
    files: Mapping[str, bytes]  # "TARGET/relative/path" -> bytes
    warnings: tuple[Diagnostic, ...] = ()


def read_specs(paths: Sequence[str | FsPath]) -> tuple[list[tuple[str, str]], list[Diagnostic]]:
    texts, diagnostics = [], []
    for path in paths:
        try:
            texts.append((str(path), FsPath(path).read_text("utf-8")))
        except FileNotFoundError:
            diagnostics.append(Diagnostic("E000", f"spec file not found: {path}", location=Location(str(path), 1, 1)))
        except (OSError, UnicodeDecodeError) as error:
            diagnostics.append(Diagnostic("E000", f"cannot read spec: {error}", location=Location(str(path), 1, 1)))
    return texts, diagnostics


def resolve(paths: Sequence[str | FsPath], settings: Sequence[str] = (),
            texts: Sequence[tuple[str, str]] | None = None) -> tuple[Document, list[Diagnostic]]:
    """Read and overlay the spec files, apply ``--set``, then ``[defaults]`` into every model."""
    diagnostics: list[Diagnostic] = []
    if texts is None:
        texts, diagnostics = read_specs(paths)
    document, load_diagnostics = load_files(texts, settings)
    diagnostics += load_diagnostics
    if diagnostics:
        return document, diagnostics
    data = _copied(document.data)
    if isinstance(data.get("stack"), dict) and "name" not in data["stack"] and texts:
        data["stack"]["name"] = _default_stack_name(texts[-1][0])
    defaults = data.pop("defaults", None)
    if defaults is not None and not isinstance(defaults, dict):
        return document, [Diagnostic("E006", "expected a table", ("defaults",))]
    inheriting = []
    if defaults and isinstance(data.get("models"), dict):
        for name, model in data["models"].items():
            if isinstance(model, dict):
                data["models"][name] = _inherit(defaults, model)
                inheriting.append(name)
    positions = document.source_map
    return Document(data, SourceMap(lambda: _inherited_positions(positions, inheriting))), []


def _inherited_positions(source_map: SourceMap, models: Sequence[str]) -> tuple[dict, dict]:
    """A value a model inherits from ``[defaults]`` is located where ``[defaults]`` writes it."""
    keys, values = dict(source_map.keys), dict(source_map.values)
    for table in (keys, values):
        entries = [(path[1:], location) for path, location in table.items() if path[:1] == ("defaults",)]
        for name in models:
            for rest, location in entries:
                table.setdefault(("models", name) + rest, location)
    return keys, values


def _default_stack_name(file_name: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", FsPath(file_name).stem.lower()).strip("-") or "stack"


def _copied(data: Any) -> Any:
    """A copy of TOML data: only its tables and arrays change, and copy.deepcopy, made for any object, took
    a fifth of reading a large spec."""
    if isinstance(data, dict):
        return {key: _copied(value) for key, value in data.items()}
    if isinstance(data, list):
        return [_copied(item) for item in data]
    return data


def _inherit(defaults: Mapping[str, Any], model: Mapping[str, Any]) -> dict[str, Any]:
    """A model's own values win; tables merge; ``scheduling.tolerations`` append by default,
    and ``tolerations_mode = "replace"`` keeps only the model's own (none if it lists none).
    The defaults are copied for each model; the model's values, already a copy, are taken as they are."""
    merged = _copied(dict(defaults))
    for key, value in model.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _inherit(defaults[key], value)
        else:
            merged[key] = value
    default_scheduling = defaults.get("scheduling")
    own_scheduling = model.get("scheduling")
    if isinstance(default_scheduling, dict) and isinstance(own_scheduling, dict):
        inherited = default_scheduling.get("tolerations")
        own = own_scheduling.get("tolerations")
        mode = own_scheduling.get("tolerations_mode", default_scheduling.get("tolerations_mode", "append"))
        if mode == "append" and isinstance(inherited, list) and isinstance(own, list):
            merged["scheduling"]["tolerations"] = _copied(inherited) + [t for t in own if t not in inherited]
        elif mode == "replace" and "tolerations" not in own_scheduling:
            merged["scheduling"].pop("tolerations", None)
    return merged


def structure(document: Document, registry: Registry) -> tuple[Spec | None, list[Diagnostic]]:
    data = document.data
    if "version" not in data:
        return None, [Diagnostic("E004", "missing required key 'version'", ("version",),
                                 f"add `version = {SPEC_VERSION}` at the top of the spec")]
    if data["version"] != SPEC_VERSION or isinstance(data["version"], bool):
        return None, [Diagnostic("E007", f"unsupported spec format version {data['version']!r}", ("version",),
                                 f"this stackc reads version {SPEC_VERSION}")]
    spec, diagnostics = _structure_repairing(data)
    if spec is None:
        return None, diagnostics
    models: dict[str, Model] = {}
    for key, model in spec.models.items():
        engine = registry.engines.get(model.engine)
        if engine is None:
            models[key] = model  # an unknown engine is reported by validation with a hint
            continue
        options, problems = _structure_options(model.engine_options, engine.traits.options_type,
                                               ("models", key, "engine_options"), f"engine '{model.engine}'")
        diagnostics += problems
        models[key] = attrs.evolve(model, engine_options=options)
    targets: dict[str, Any] = {}
    for name, raw in spec.targets.items():
        target = registry.targets.get(name)
        if target is None:
            continue  # reported by validation with a hint
        options, problems = _structure_options(raw, target.traits.options_type, ("targets", name), f"target '{name}'")
        diagnostics += problems
        targets[name] = options
    return attrs.evolve(spec, models=models, targets=targets), diagnostics


def _structure_repairing(data: dict[str, Any]) -> tuple[Spec | None, list[Diagnostic]]:
    """Structure the spec; on errors, drop the bad values and retry so later checks still run.

    Users get every mistake in one run: a type error must not hide an unknown engine.
    """
    spec, diagnostics = convert.structure(data, Spec)
    repaired = copy.deepcopy(data) if spec is None else data  # a valid spec (the usual case) is not repaired
    attempts = 0
    while spec is None and attempts < 5:
        attempts += 1
        for diagnostic in diagnostics:
            prune(repaired, diagnostic)
        spec, more = convert.structure(repaired, Spec)
        diagnostics = sorted_unique(diagnostics + more)
    return (spec if attempts < 5 else None), diagnostics


def prune(data: dict[str, Any], diagnostic: Diagnostic) -> None:
    """Remove what a diagnostic complains about; a missing required key drops its model."""
    path = list(diagnostic.path)
    if diagnostic.code == "E004":
        path = path[:2] if path[:1] == ["models"] and len(path) > 2 else path[:-1]
    items = [index for index, part in enumerate(path) if isinstance(part, int)]
    if items:
        del path[items[0]:]  # within an array item: drop the whole array (other paths index its items)
    node: Any = data
    for part in path[:-1]:
        node = node.get(part) if isinstance(node, dict) else None
        if not isinstance(node, (dict, list)):
            return
    if isinstance(node, dict) and path:
        node.pop(path[-1], None)


def _structure_options(raw: Mapping[str, Any], options_type: type | None, path: Path, owner: str) -> tuple[Any, list[Diagnostic]]:
    if options_type is None:
        return None, [Diagnostic("E003", f"unknown key '{key}': {owner} takes no options", path + (key,))
                      for key in sorted(raw)]
    options, problems = convert.structure(dict(raw), options_type, path)
    return options, problems


def target_options(spec: Spec, registry: Registry, name: str) -> Any:
    if name in spec.targets:
        return spec.targets[name]
    options_type = registry.targets[name].traits.options_type
    return options_type() if options_type is not None else None


def lower(spec: Spec, registry: Registry, platform_weights: str | None = None, ray_head: str | None = None,
          listen: Listen | None = None) -> Plan:
    """The plan of a checked spec (see ``stackc.lowering.lower``); engine crashes name the plugin."""
    return lowering.lower(spec, registry, _plugin_call, platform_weights, ray_head, listen)


#: what a target's platform does itself, which the plan is lowered for: where it puts downloaded weights
#: (``weights_path``), where multi-node workers join a Ray head (``ray_head``), the namespace when the
#: platform picks it at install time (``release_namespace``: a placeholder Helm's chart templates)
Platform = tuple[str | None, str | None, str | None]
NO_PLATFORM: Platform = (None, None, None)
#: components from which emitting the targets in worker processes pays for forking them (a few ms)
_WORKERS_FROM = 20


def platform(target: Registered) -> Platform:
    return target.traits.weights_path, target.traits.ray_head, target.traits.release_namespace


def lower_platforms(spec: Spec, registry: Registry, platforms: Iterable[Platform]) -> dict[Platform, Plan]:
    """The plan for each platform. Components never name the namespace, so a platform that picks it at
    install time shares the components lowered for its other choices and has only its stack lowered again."""
    plans: dict[Platform, Plan] = {}
    ordered = sorted(platforms, key=str)
    for where in ordered:
        weights_path, ray_head, release_namespace = where
        if (weights_path, ray_head, None) not in plans:
            plans[weights_path, ray_head, None] = lower(spec, registry, weights_path, ray_head)
        if release_namespace is not None:
            base = plans[weights_path, ray_head, None]
            in_release = attrs.evolve(spec, stack=attrs.evolve(spec.stack, namespace=release_namespace))
            plans[where] = attrs.evolve(base, stack=lowering.lower_stack(in_release, registry, base.components))
    return {where: plans[where] for where in ordered}


def emit(spec: Spec, plans: Mapping[Platform, Plan], registry: Registry, targets: Iterable[str],
         jobs: int | None = None) -> dict[str, bytes]:
    """Each target translates the plan lowered for its platform, in up to ``jobs`` processes side by side
    (by default as many as pay for themselves: a large stack's targets on every CPU)."""
    names = sorted(set(targets))
    if jobs is None:
        jobs = len(names) if len(plans[NO_PLATFORM].components) >= _WORKERS_FROM else 1
    # add-ons: targets that neither deploy the models nor name their Services (router, monitoring, gateway)
    addon_names = {name for name in names if not registry.targets[name].traits.serves_models}

    def translated(name: str) -> tuple[dict[str, bytes], tuple[Artifact, ...]]:
        """The target's files, and its artifacts when it is an add-on, for the others to bundle."""
        registered = registry.targets[name]
        artifacts = _emitted(spec, plans[platform(registered)], registry, name)
        made: dict[str, bytes] = {}
        _add(made, name, artifacts, registered.provider)
        return made, artifacts if name in addon_names else ()

    def weight(name: str) -> float:  # a target deploying the models writes several objects per model
        return 1.0 if name in addon_names else 3.0

    files: dict[str, bytes] = {}
    addons: dict[str, tuple[Artifact, ...]] = {}
    for name, (made, artifacts) in zip(names, in_parallel(translated, names, jobs, weight)):
        files.update(made)
        if name in addon_names:
            addons[name] = artifacts
    for name in names:
        registered = registry.targets[name]
        options = target_options(spec, registry, name)
        plan = plans[platform(registered)]
        # the add-ons as they are on the bundling target's platform (a chart's namespace is the release's)
        others = {other: artifacts if plans[platform(registry.targets[other])] is plan
                  else _emitted(spec, plan, registry, other)
                  for other, artifacts in addons.items() if other != name}
        _add(files, name, _plugin_call(registered.provider, f"target '{name}' bundle()",
                                       lambda: tuple(registered.method("bundle")(plan, options, others))),
             registered.provider)
    return files


def _emitted(spec: Spec, plan: Plan, registry: Registry, name: str) -> tuple[Artifact, ...]:
    registered = registry.targets[name]
    options = target_options(spec, registry, name)
    return _plugin_call(registered.provider, f"target '{name}' emit()",
                        lambda: tuple(registered.method("emit")(plan, options)))


def _add(files: dict[str, bytes], target: str, artifacts: Iterable[Artifact], provider: Provider) -> None:
    for artifact in artifacts:
        path = _safe_relative(artifact, provider)
        full = f"{target}/{path}"
        if full in files:
            raise PluginCrash(provider, "emit()", ValueError(f"two artifacts named {path}"))
        files[full] = render(artifact)


def _reached_through_services(plan: Plan, registry: Registry, deployed: Sequence[str]) -> Plan:
    """Routers, gateways and monitors reach each model through the Service and the pod labels of the
    target that deploys it.

    A target that deploys the models itself creates the Service the plan names (its ``model_service``
    names none) and labels the pods as the plan does (``model_pods`` none); when only targets whose
    platform puts its own Service in front (KServe's predictor) or its own labels on the pods deploy a
    model, the others reach it there.
    """
    deployers = [registry.targets[name] for name in sorted(deployed) if registry.targets[name].traits.serves_models]
    components = []
    for component in plan.components:
        endpoint = component.endpoint
        services = _platform_answers(deployers, "model_service", component)
        if services:
            service, port = services[0]
            endpoint = attrs.evolve(endpoint, service=service, service_port=port)
        pods = _platform_answers(deployers, "model_pods", component)
        if pods:
            endpoint = attrs.evolve(endpoint, selector=dict(pods[0]))
        components.append(component if endpoint is component.endpoint else attrs.evolve(component, endpoint=endpoint))
    return attrs.evolve(plan, components=tuple(components))


def _platform_answers(deployers: Sequence[Registered], member: str, component: Any) -> list[Any]:
    """What every deploying target's platform says of the component, or nothing when one keeps the plan's."""
    answers = [_plugin_call(d.provider, f"target '{d.traits.name}' {member}()", d.method(member), component)
               for d in deployers]
    return [] if not answers or None in answers else answers


def _with_callers(plan: Plan, spec: Spec, registry: Registry, deployed: Sequence[str]) -> Plan:
    """Every deployed target's pods that call the model servers (their NetworkPolicies admit them) and
    that export metrics (monitors scrape them, autoscalers and alerts read them)."""
    callers = _contributions(plan, spec, registry, deployed, "callers")
    exporters = sorted(_contributions(plan, spec, registry, deployed, "exporters"), key=lambda e: e.name)
    return attrs.evolve(plan, stack=attrs.evolve(plan.stack, callers=tuple(callers), exporters=tuple(exporters)))


def _contributions(plan: Plan, spec: Spec, registry: Registry, deployed: Sequence[str], member: str) -> list[Any]:
    """What the deployed targets' ``member(plan, options)`` yield, in target order."""
    found: list[Any] = []
    for name in sorted(deployed):
        registered = registry.targets[name]
        options = target_options(spec, registry, name)
        found += _plugin_call(registered.provider, f"target '{name}' {member}()",
                              lambda: list(registered.method(member)(plan, options)))
    return found


def target_problems(spec: Spec, plans: Mapping[Platform, Plan], registry: Registry,
                    targets: Iterable[str]) -> list[Diagnostic]:
    """What the targets' own ``check`` says of the plan lowered for each (spec paths, so each is located
    where the spec says it)."""
    problems = []
    for name in sorted(set(targets)):
        registered = registry.targets[name]
        plan = plans[platform(registered)]
        problems += _plugin_call(registered.provider, f"target '{name}' check()",
                                 lambda: list(registered.method("check")(plan, target_options(spec, registry, name))))
    return problems


def _safe_relative(artifact: Artifact, provider: Provider) -> str:
    parts = artifact.path.split("/")
    if artifact.path.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise PluginCrash(provider, "emit()", ValueError(f"artifact path {artifact.path!r} is not a plain relative path"))
    return artifact.path


def _plugin_call(provider: Provider, what: str, function: Callable[..., T], *args: Any) -> T:
    try:
        return function(*args)
    except Exception as error:
        raise PluginCrash(provider, what, error) from error


def compile_stack(paths: Sequence[str | FsPath], registry: Registry, settings: Sequence[str] = (),
                  targets: Sequence[str] | None = None,
                  texts: Sequence[tuple[str, str]] | None = None) -> Compilation:
    """Compile spec files to rendered files; raises DiagnosticsError listing every problem.

    The plan and every target's files are those of the whole stack (``stack.targets``, to which ``check``
    adds any target ``targets`` names that the stack lacks); ``targets`` then selects which folders are
    returned, last, so a partial build writes exactly what the full build writes there.
    """
    checked, lowered = _check(paths, registry, settings, targets, texts, lower=True)
    assert lowered is not None
    spec = checked.spec
    selected = tuple(sorted(set(targets or spec.stack.targets)))
    deployed = tuple(sorted(set(spec.stack.targets)))
    # facts from this machine's Hugging Face cache inform the check only: the output depends on the spec alone
    rows = checked.fit_rows if checked.fit_rows is not None else plan_fit(checked, registry)[0]
    fits = {(row.model, row.role): row.fit.kv_tokens_per_replica for row in rows if row.facts_source != HUB_CACHE}
    plans = {where: _with_kv_tokens(_with_callers(_reached_through_services(
        plan, registry, deployed), spec, registry, deployed), fits) for where, plan in lowered.items()}
    problems = (lowered_problems(plans[NO_PLATFORM]) + cluster_problems(plans[NO_PLATFORM])
                + kube.extra_object_clashes(plans[NO_PLATFORM])
                + list(autoscaling_problems(plans[NO_PLATFORM])) + list(limit_problems(plans[NO_PLATFORM]))
                + target_problems(spec, plans, registry, deployed))
    located = locate(problems, checked.source_map)
    if any(d.severity is Severity.ERROR for d in located):
        raise DiagnosticsError(located)
    files = emit(spec, plans, registry, deployed)
    chosen = tuple(f"{name}/" for name in selected)
    files = {path: content for path, content in files.items() if path.startswith(chosen)}
    return Compilation(spec, plans[NO_PLATFORM], selected, files, (*checked.warnings, *located))


@frozen
class Checked:
    spec: Spec
    source_map: SourceMap
    warnings: tuple[Diagnostic, ...] = ()
    #: the fit check's row per model (``check(fit=True)``; else ``plan_fit`` computes them)
    fit_rows: tuple[Any, ...] | None = None


def check(paths: Sequence[str | FsPath], registry: Registry, settings: Sequence[str] = (),
          targets: Sequence[str] | None = None,
          texts: Sequence[tuple[str, str]] | None = None, fit: bool = True) -> Checked:
    """The checked spec and its warnings, or DiagnosticsError with every located error; ``fit=False``
    leaves the fit check to the caller (``stackc plan`` shows models that don't fit)."""
    return _check(paths, registry, settings, targets, texts, fit)[0]


#: models from which validating a spec in a worker process, while this one goes ahead, pays for forking it
_VALIDATE_ASIDE_FROM = 20


def _check(paths: Sequence[str | FsPath], registry: Registry, settings: Sequence[str] = (),
           targets: Sequence[str] | None = None, texts: Sequence[tuple[str, str]] | None = None,
           fit: bool = True, lower: bool = False) -> tuple[Checked, dict[Platform, Plan] | None]:
    """``check``, and with ``lower`` the checked spec's plan for each platform of its targets. Where a worker
    process can be forked, a large spec is validated there while this process checks its fit and lowers it
    ahead: the plans are kept only if the spec checks out, and what lowering raised (a spec with errors may
    break it) is raised only then. Otherwise the spec is lowered once it checks out."""
    document, diagnostics = resolve(paths, settings, texts)
    spec = None
    rows = None
    plans: dict[Platform, Plan] | _Raised | None = None
    aside = False
    if not diagnostics:
        spec, diagnostics = structure(document, registry)
        if spec is not None:
            checking = _deploying(spec, [name for name in targets or () if name in registry.targets])
            aside = lower and len(checking.models) >= _VALIDATE_ASIDE_FROM and usable_cpus() > 1

            def validated() -> list[Diagnostic]:
                return validate_spec(checking, registry, _plugin_call)

            def fitted() -> tuple[Any, list[Diagnostic], dict[Platform, Plan] | _Raised | None]:
                found, problems = (assess_fit(checking, registry, _spec_file(document.source_map)) if fit
                                   else (None, []))
                return found, problems, _lowered_ahead(checking, registry) if aside else None

            # the fit and the plans stay here (a plan is costly to send back), validation goes aside
            problems, (rows, fit_problems, plans) = in_parallel(
                _called, [validated, fitted], 2 if aside else 1, weight=lambda part: 2.0 if part is fitted else 1.0)
            spec = checking
            diagnostics += problems + fit_problems
    for name in targets or ():
        if name not in registry.targets:
            diagnostics.append(Diagnostic("E011", f"unknown target '{name}' (from --target)", (),
                                          did_you_mean(name, registry.targets), location=Location("--target", 1, 1)))
    located = locate(diagnostics, document.source_map)
    errors = [d for d in located if d.severity is Severity.ERROR]
    if errors or spec is None:
        raise DiagnosticsError(located)
    if isinstance(plans, _Raised):
        raise plans.error
    if lower and not aside:
        plans = _lowered(spec, registry)
    return Checked(spec, document.source_map, tuple(located), None if rows is None else tuple(rows)), plans


def _lowered(spec: Spec, registry: Registry) -> dict[Platform, Plan]:
    """The plan for each platform of the stack's targets (and for none)."""
    deployed = sorted(set(spec.stack.targets))
    return lower_platforms(spec, registry, {platform(registry.targets[name]) for name in deployed} | {NO_PLATFORM})


@frozen
class _Raised:
    error: BaseException


def _lowered_ahead(spec: Spec, registry: Registry) -> dict[Platform, Plan] | _Raised:
    """``_lowered``, or what it raised: a spec not yet validated may break what assumes it valid."""
    try:
        return _lowered(spec, registry)
    except Exception as error:
        return _Raised(error)


def _called(part: Callable[[], T]) -> T:
    return part()


def _with_kv_tokens(plan: Plan, fits: Mapping[tuple[str, str | None], int | None]) -> Plan:
    """Each component with the KV tokens the fit check found for it (its model's, or its role's); a component
    whose count is already that is kept (attrs.evolve rebuilds the whole object)."""
    components = []
    for c in plan.components:
        tokens = fits.get((c.key, c.disaggregation.role if c.disaggregation else CANDIDATE if c.candidate else None))
        components.append(c if tokens == c.kv_tokens_per_replica else attrs.evolve(c, kv_tokens_per_replica=tokens))
    return attrs.evolve(plan, components=tuple(components))


def _spec_file(source_map: SourceMap) -> Callable[[Path], str | None]:
    """The file that wrote a spec path (None for ``--set``), for files a spec names relative to itself."""
    def file_of(path: Path) -> str | None:
        location = source_map.locate(path)
        return location.file if location is not None and not location.file.startswith("--") else None
    return file_of


def plan_fit(checked: Checked, registry: Registry) -> tuple[list[Any], list[Diagnostic]]:
    """The fit of each model of a spec checked with ``fit=False`` (the rows of ``stackc plan``), and its
    located diagnostics."""
    rows, problems = assess_fit(checked.spec, registry, _spec_file(checked.source_map))
    return rows, locate(problems, checked.source_map)


def _deploying(spec: Spec, selected: Sequence[str]) -> Spec:
    """A target a build selects that the stack lacks is built as if ``stack.targets`` listed it."""
    missing = tuple(sorted(set(selected) - set(spec.stack.targets)))
    if not missing:
        return spec
    return attrs.evolve(spec, stack=attrs.evolve(spec.stack, targets=(*spec.stack.targets, *missing)))


def locate(diagnostics: Iterable[Diagnostic], source_map: SourceMap) -> list[Diagnostic]:
    """Give each diagnostic the file:line:col of its spec path."""
    return sorted_unique(_located(d, source_map) for d in diagnostics)


def _located(diagnostic: Diagnostic, source_map: SourceMap) -> Diagnostic:
    if diagnostic.location is not None:
        return diagnostic
    at_key = diagnostic.code in ("E003",)
    location = source_map.locate(diagnostic.path, key=at_key)
    return attrs.evolve(diagnostic, location=location)
