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

from stackc import convert
from stackc.diagnostics import Diagnostic, DiagnosticsError, Location, Severity, did_you_mean, sorted_unique
from stackc.model import SPEC_VERSION, Model, Spec
from stackc.registry import Artifact, Build, Provider, Registry
from stackc.render import render
from stackc.source import Document, Path, SourceMap, load_files
from stackc.validate import lowered_problems, validate_spec
from stackc.workload import (
    ClaimRequest,
    ConfigMapData,
    EngineRequest,
    Mount,
    Volume,
    Workload,
)
from stackc import sources

T = TypeVar("T")

CACHE_VOLUME = "model-cache"
CHAT_TEMPLATE_VOLUME = "chat-template"
SHM_VOLUME = "dshm"


class PluginCrash(Exception):
    """A plugin raised while lowering or emitting: a bug in the plugin, not in the spec."""

    def __init__(self, provider: Provider, what: str, error: BaseException):
        self.provider = provider
        self.error = error
        super().__init__(f"plugin {provider} crashed in {what}: {type(error).__name__}: {error}")


@attrs.frozen
class Compilation:
    """The result of compiling a spec: the checked spec, its workloads and the rendered files."""

    spec: Spec
    workloads: tuple[Workload, ...]
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
    data = copy.deepcopy(document.data)
    keys, values = dict(document.source_map.keys), dict(document.source_map.values)
    if isinstance(data.get("stack"), dict) and "name" not in data["stack"] and texts:
        data["stack"]["name"] = _default_stack_name(texts[-1][0])
    defaults = data.pop("defaults", None)
    if defaults is not None and not isinstance(defaults, dict):
        return document, [Diagnostic("E006", "expected a table", ("defaults",))]
    if defaults and isinstance(data.get("models"), dict):
        inherited = [(table, [(path[1:], loc) for path, loc in table.items() if path[:1] == ("defaults",)])
                     for table in (keys, values)]
        for name, model in data["models"].items():
            if isinstance(model, dict):
                data["models"][name] = _inherit(defaults, model)
                for table, entries in inherited:
                    for rest, location in entries:
                        table.setdefault(("models", name) + rest, location)
    return Document(data, SourceMap(keys, values)), []


def _default_stack_name(file_name: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", FsPath(file_name).stem.lower()).strip("-") or "stack"


def _inherit(defaults: Mapping[str, Any], model: Mapping[str, Any]) -> dict[str, Any]:
    """A model's own values win; tables merge; ``scheduling.tolerations`` append by default."""
    merged = copy.deepcopy(dict(defaults))
    for key, value in model.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _inherit(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    default_scheduling = defaults.get("scheduling")
    own_scheduling = model.get("scheduling")
    if isinstance(default_scheduling, dict) and isinstance(own_scheduling, dict):
        inherited = default_scheduling.get("tolerations")
        own = own_scheduling.get("tolerations")
        mode = own_scheduling.get("tolerations_mode", default_scheduling.get("tolerations_mode", "append"))
        if mode == "append" and isinstance(inherited, list) and isinstance(own, list):
            merged["scheduling"]["tolerations"] = copy.deepcopy(inherited) + [t for t in own if t not in inherited]
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
        options, problems = _structure_options(model.engine_options, engine.obj.options_type,
                                               ("models", key, "engine_options"), f"engine '{model.engine}'")
        diagnostics += problems
        models[key] = attrs.evolve(model, engine_options=options)
    targets: dict[str, Any] = {}
    for name, raw in spec.targets.items():
        target = registry.targets.get(name)
        if target is None:
            continue  # reported by validation with a hint
        options, problems = _structure_options(raw, target.obj.options_type, ("targets", name), f"target '{name}'")
        diagnostics += problems
        targets[name] = options
    return attrs.evolve(spec, models=models, targets=targets), diagnostics


def _structure_repairing(data: dict[str, Any]) -> tuple[Spec | None, list[Diagnostic]]:
    """Structure the spec; on errors, drop the bad values and retry so later checks still run.

    Users get every mistake in one run: a type error must not hide an unknown engine.
    """
    spec, diagnostics = convert.structure(data, Spec)
    repaired = copy.deepcopy(data)
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
    while path and isinstance(path[-1], int):
        path.pop()  # a bad array item: drop the whole array
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
    options_type = registry.target(name).options_type
    return options_type() if options_type is not None else None


def lower(spec: Spec, registry: Registry) -> tuple[Workload, ...]:
    """Every enabled model, in key order, as a Workload its engine has filled in."""
    workloads = []
    for key in sorted(spec.models):
        model = spec.models[key]
        if model.enabled:
            workloads.append(_lower_model(spec, key, model, registry))
    return tuple(workloads)


def workload_name(spec: Spec, key: str) -> str:
    return f"{spec.stack.name}-{key}"


def _lower_model(spec: Spec, key: str, model: Model, registry: Registry) -> Workload:
    name = workload_name(spec, key)
    selector = {"app.kubernetes.io/name": key, "app.kubernetes.io/instance": spec.stack.name}
    labels = {
        **spec.stack.labels,
        **model.labels,
        **selector,
        "app.kubernetes.io/component": "model-server",
        "app.kubernetes.io/part-of": spec.stack.name,
        "app.kubernetes.io/managed-by": "stackc",
        "stackc.dev/engine": model.engine,
    }
    volumes: list[Volume] = []
    claims: list[ClaimRequest] = []
    config_maps: list[ConfigMapData] = []
    cache = model.cache
    if cache is not None and cache.existing_claim:
        volumes.append(Volume(CACHE_VOLUME, claim=cache.existing_claim))
    elif cache is not None and cache.size:
        claims.append(ClaimRequest(f"{name}-cache", cache.size, cache.access_mode, cache.storage_class))
        volumes.append(Volume(CACHE_VOLUME, claim=f"{name}-cache"))
    else:
        volumes.append(Volume(CACHE_VOLUME, empty_dir={}))
    template_volume = None
    if model.serving.chat_template is not None:
        config_maps.append(ConfigMapData(f"{name}-chat-template", {"chat-template.jinja": model.serving.chat_template}))
        volumes.append(Volume(CHAT_TEMPLATE_VOLUME, config_map=f"{name}-chat-template"))
        template_volume = CHAT_TEMPLATE_VOLUME
    source = sources.parse(model.model)
    assert source is not None  # validation rejected unparsable sources
    if source.scheme == "pvc":
        volumes.append(Volume("model-source", claim=source.claim))
    elif source.scheme == "oci":
        volumes.append(Volume("model-source", image=source.location))
    registered = registry.engines[model.engine]
    request = EngineRequest(key, model, model.engine_options, source, name, CACHE_VOLUME, template_volume)
    result = _plugin_call(registered.provider, f"engine '{model.engine}' lower()", registered.obj.lower, request)
    parallel = model.serving.tensor_parallel * model.serving.pipeline_parallel
    if model.shm_size or (result.needs_shm and parallel > 1):
        size = model.shm_size or f"{2 * parallel}Gi"
        volumes.append(Volume(SHM_VOLUME, empty_dir={"medium": "Memory", "sizeLimit": size}))
        shm_mount = Mount(SHM_VOLUME, "/dev/shm")
        result = attrs.evolve(result, container=attrs.evolve(result.container, mounts=(*result.container.mounts, shm_mount)))
    volumes.extend(result.volumes)
    volumes.extend(Volume(str(raw.get("name", "")), raw=raw) for raw in model.extra_volumes)
    account = model.security.service_account
    return Workload(
        key=key, name=name, engine=model.engine, model=model, source=source,
        labels=labels, selector=selector, result=result, volumes=tuple(volumes),
        config_maps=tuple(config_maps), claims=tuple(claims),
        service_account=account.name or (name if account.create else None),
    )


def emit(build: Build, registry: Registry, targets: Iterable[str]) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    for name in sorted(set(targets)):
        registered = registry.targets[name]
        options = target_options(build.spec, registry, name)
        artifacts = _plugin_call(registered.provider, f"target '{name}' emit()",
                                 lambda: list(registered.obj.emit(build, options)))
        for artifact in artifacts:
            path = _safe_relative(artifact, registered.provider)
            full = f"{name}/{path}"
            if full in files:
                raise PluginCrash(registered.provider, "emit()", ValueError(f"two artifacts named {path}"))
            files[full] = render(artifact)
    return files


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
    """Compile spec files to rendered files; raises DiagnosticsError listing every problem."""
    checked = check(paths, registry, settings, targets, texts)
    spec = checked.spec
    selected = tuple(sorted(set(targets or spec.stack.targets)))
    workloads = lower(spec, registry)
    problems = lowered_problems(workloads)
    if problems:
        raise DiagnosticsError(locate(problems, checked.source_map))
    files = emit(Build(spec, workloads), registry, selected)
    return Compilation(spec, workloads, selected, files, checked.warnings)


@attrs.frozen
class Checked:
    spec: Spec
    source_map: SourceMap
    warnings: tuple[Diagnostic, ...] = ()


def check(paths: Sequence[str | FsPath], registry: Registry, settings: Sequence[str] = (),
          targets: Sequence[str] | None = None,
          texts: Sequence[tuple[str, str]] | None = None) -> Checked:
    """The checked spec and its warnings, or DiagnosticsError with every located error."""
    document, diagnostics = resolve(paths, settings, texts)
    spec = None
    if not diagnostics:
        spec, diagnostics = structure(document, registry)
        if spec is not None:
            diagnostics += validate_spec(spec, registry, _plugin_call, targets)
    for name in targets or ():
        if name not in registry.targets:
            diagnostics.append(Diagnostic("E011", f"unknown target '{name}' (from --target)", (),
                                          did_you_mean(name, registry.targets), location=Location("--target", 1, 1)))
    located = locate(diagnostics, document.source_map)
    errors = [d for d in located if d.severity is Severity.ERROR]
    if errors or spec is None:
        raise DiagnosticsError(located)
    return Checked(spec, document.source_map, tuple(located))


def locate(diagnostics: Iterable[Diagnostic], source_map: SourceMap) -> list[Diagnostic]:
    """Give each diagnostic the file:line:col of its spec path."""
    return sorted_unique(_located(d, source_map) for d in diagnostics)


def _located(diagnostic: Diagnostic, source_map: SourceMap) -> Diagnostic:
    if diagnostic.location is not None:
        return diagnostic
    at_key = diagnostic.code in ("E003",)
    location = source_map.locate(diagnostic.path, key=at_key)
    return attrs.evolve(diagnostic, location=location)
