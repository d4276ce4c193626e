"""Checks on a structured spec that types alone can't express. Returns diagnostics, all of them."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import attrs

from stackc import sources
from stackc.diagnostics import Diagnostic, Severity, did_you_mean
from stackc.model import Model, Spec
from stackc.registry import Registry
from stackc.workload import Capability, Workload

DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
QUANTITY = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+|[KMGTPE]i?|m|k|u|n)?$")
ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
_DNS_LABEL_HINT = "use lowercase letters, digits and '-', starting with a letter (at most 63)"
# the longest suffix stackc adds to a workload name ("-chat-template")
_LONGEST_SUFFIX = len("-chat-template")

_CAPABILITY_FIELDS: dict[Capability, tuple[tuple[str, ...], str, Callable[[Model], bool]]] = {
    Capability.TENSOR_PARALLEL: (("serving", "tensor_parallel"), "tensor parallelism", lambda m: m.serving.tensor_parallel > 1),
    Capability.PIPELINE_PARALLEL: (("serving", "pipeline_parallel"), "pipeline parallelism", lambda m: m.serving.pipeline_parallel > 1),
    Capability.GPU_MEMORY_FRACTION: (("serving", "gpu_memory_fraction"), "a GPU memory fraction", lambda m: m.serving.gpu_memory_fraction is not None),
    Capability.DTYPE: (("serving", "dtype"), "choosing a dtype", lambda m: m.serving.dtype is not None),
    Capability.QUANTIZATION: (("serving", "quantization"), "a quantization flag", lambda m: m.serving.quantization is not None),
    Capability.MAX_CONCURRENT_SEQUENCES: (("serving", "max_concurrent_sequences"), "a limit on concurrent sequences", lambda m: m.serving.max_concurrent_sequences is not None),
    Capability.PREFIX_CACHING_TOGGLE: (("serving", "prefix_caching"), "switching prefix caching", lambda m: m.serving.prefix_caching is not None),
    Capability.CHAT_TEMPLATE: (("serving", "chat_template"), "a chat template", lambda m: m.serving.chat_template is not None),
    Capability.LORA: (("serving", "lora_adapters"), "LoRA adapters", lambda m: bool(m.serving.lora_adapters)),
    Capability.MAX_CONTEXT: (("serving", "max_context"), "a maximum context length", lambda m: m.serving.max_context is not None),
    Capability.API_KEY: (("security", "api_key"), "an API key", lambda m: m.security.api_key is not None),
    Capability.MULTIPLE_SERVED_NAMES: (("aliases",), "more than one served name", lambda m: bool(m.aliases)),
    Capability.ACCELERATORS: (("accelerators", "count"), "accelerators", lambda m: m.accelerators.count > 0),
}


def validate_spec(spec: Spec, registry: Registry, plugin_call: Callable[..., Any]) -> list[Diagnostic]:
    return list(_validate(spec, registry, plugin_call))


def _validate(spec: Spec, registry: Registry, plugin_call: Callable[..., Any]) -> Iterator[Diagnostic]:
    stack = spec.stack
    for field, value in (("name", stack.name), ("namespace", stack.namespace)):
        if not DNS_LABEL.match(value) or len(value) > 63:
            yield Diagnostic("E008", f"'{value}' is not a valid name", ("stack", field),
                             _DNS_LABEL_HINT)
    for index, name in enumerate(stack.targets):
        if name not in registry.targets:
            yield Diagnostic("E011", f"unknown target '{name}'", ("stack", "targets", index), did_you_mean(name, registry.targets))
    for name in spec.targets:
        if name not in registry.targets:
            yield Diagnostic("E011", f"unknown target '{name}'", ("targets", name), did_you_mean(name, registry.targets))
    if not spec.models:
        yield Diagnostic("E009", "the stack has no models", ("models",), "add a [models.NAME] table")
    for key in sorted(spec.models):
        yield from _validate_model(spec, key, spec.models[key], registry, plugin_call)


def served_name_conflicts(workloads: Iterable[Workload]) -> list[Diagnostic]:
    """Every name a client may send must lead to one model (engines decide the primary names)."""
    owners: dict[str, str] = {}
    problems = []
    for workload in workloads:
        for name in dict.fromkeys((*workload.result.served_names, *workload.model.aliases)):
            if name in owners and owners[name] != workload.key:
                problems.append(Diagnostic("E012", f"'{name}' is already a name of model '{owners[name]}'",
                                           ("models", workload.key, "aliases"),
                                           "every served name and alias must be unique in a stack"))
            owners.setdefault(name, workload.key)
    return problems


def lowered_problems(workloads: Iterable[Workload]) -> list[Diagnostic]:
    """Problems only visible once engines have lowered the models: names and volumes of the pods."""
    workloads = tuple(workloads)
    return served_name_conflicts(workloads) + [problem for w in workloads for problem in _pod_volume_problems(w)]


def _pod_volume_problems(workload: Workload) -> Iterator[Diagnostic]:
    base = ("models", workload.key)
    model = workload.model
    extra_start = len(workload.volumes) - len(model.extra_volumes)
    declared: set[str] = set()
    for index, volume in enumerate(workload.volumes):
        if volume.name in declared and index >= extra_start:
            yield Diagnostic("E018", f"a volume named '{volume.name}' is already in the pod",
                             base + ("extra_volumes", index - extra_start, "name"),
                             f"stackc's own volumes: {', '.join(v.name for v in workload.volumes[:extra_start])}")
        declared.add(volume.name)
    for index, mount in enumerate(model.extra_volume_mounts):
        name = mount.get("name")
        if isinstance(name, str) and name not in declared:
            yield Diagnostic("E018", f"mounts the volume '{name}', which the pod does not have",
                             base + ("extra_volume_mounts", index, "name"),
                             "declare it in extra_volumes; the pod has: " + ", ".join(sorted(declared)))
    paths = [m.path for m in workload.result.container.mounts]
    for index, mount in enumerate(model.extra_volume_mounts):
        path = mount.get("mountPath")
        if path in paths:
            yield Diagnostic("E018", f"'{path}' is already a mount path of the engine container",
                             base + ("extra_volume_mounts", index, "mountPath"))
        paths.append(path)
    containers = {workload.result.container.name, *(c.name for c in workload.result.init_containers)}
    for index, raw in enumerate(model.init_containers):
        if raw.get("name") in containers:
            yield Diagnostic("E018", f"a container named '{raw['name']}' is already in the pod",
                             base + ("init_containers", index, "name"))
        containers.add(raw.get("name"))


def _raw_table_problems(model: Model) -> Iterator[Diagnostic]:
    """The keys Kubernetes requires in the tables passed on as is; paths relative to the model."""
    required = (("extra_volumes", ("name",)), ("extra_volume_mounts", ("name", "mountPath")),
                ("init_containers", ("name", "image")))
    for field, keys in required:
        for index, raw in enumerate(getattr(model, field)):
            for key in keys:
                value = raw.get(key)
                if value is None:
                    yield Diagnostic("E018", f"needs '{key}'", (field, index))
                elif not isinstance(value, str) or not value:
                    yield Diagnostic("E018", f"'{key}' must be a non-empty string", (field, index, key))
                elif key == "name" and field != "extra_volume_mounts" and not (DNS_LABEL.match(value) and len(value) <= 63):
                    yield Diagnostic("E008", f"'{value}' is not a valid name", (field, index, key), _DNS_LABEL_HINT)


def _validate_model(spec: Spec, key: str, model: Model, registry: Registry, plugin_call: Callable[..., Any]) -> Iterator[Diagnostic]:
    base = ("models", key)
    if not DNS_LABEL.match(key):
        yield Diagnostic("E008", f"model name '{key}' is not a valid name", base,
                         "use lowercase letters, digits and '-', starting with a letter")
    elif len(spec.stack.name) + 1 + len(key) + _LONGEST_SUFFIX > 63:
        yield Diagnostic("E008", f"stack and model names together are too long for Kubernetes ('{spec.stack.name}-{key}')",
                         base, f"keep stack name + model name under {63 - _LONGEST_SUFFIX - 1} characters")
    if sources.parse(model.model) is None:
        yield Diagnostic("E013", f"cannot tell where '{model.model}' comes from", base + ("model",),
                         "use a Hugging Face id (org/name or hf://org/name), s3://, gs://, pvc://CLAIM/PATH, oci://IMAGE, "
                         "ollama://NAME:TAG or an absolute path")
    for path, value, low in _bounds(model):
        if value is not None and value < low:
            yield Diagnostic("E014", f"must be at least {low}, got {value}", base + path)
    scaling = model.autoscaling
    if scaling.min_replicas is not None and scaling.max_replicas is not None and scaling.min_replicas > scaling.max_replicas:
        yield Diagnostic("E014", f"min_replicas ({scaling.min_replicas}) is above max_replicas ({scaling.max_replicas})",
                         base + ("autoscaling", "min_replicas"))
    fraction = model.serving.gpu_memory_fraction
    if fraction is not None and not 0 < fraction <= 1:
        yield Diagnostic("E014", f"must be in (0, 1], got {fraction}", base + ("serving", "gpu_memory_fraction"))
    for path, quantity in _quantities(model):
        if not QUANTITY.match(quantity):
            yield Diagnostic("E015", f"'{quantity}' is not a Kubernetes quantity", base + path, "for example '500m', '16Gi' or '2'")
    for name in model.env:
        if not ENV_NAME.match(name):
            yield Diagnostic("E016", f"'{name}' is not a valid environment variable name", base + ("env", name))
    for problem in _raw_table_problems(model):
        yield attrs.evolve(problem, path=base + problem.path)
    cache = model.cache
    if cache is not None and not cache.size and not cache.existing_claim:
        yield Diagnostic("E017", "a cache needs a size or an existing claim", base + ("cache",),
                         "set cache.size = \"100Gi\" or cache.existing_claim = \"NAME\"")
    if cache is not None and cache.size and cache.existing_claim:
        yield Diagnostic("E017", "set either size or existing_claim, not both", base + ("cache",))
    registered = registry.engines.get(model.engine)
    if registered is None:
        yield Diagnostic("E010", f"unknown engine '{model.engine}'", base + ("engine",), did_you_mean(model.engine, registry.engines))
        return
    engine = registered.obj
    alias_servers = sorted(t for t in spec.stack.targets
                           if t in registry.targets and getattr(registry.target(t), "serves_aliases", False))
    for capability, (path, what, used) in _CAPABILITY_FIELDS.items():
        if capability is Capability.MULTIPLE_SERVED_NAMES and used(model) and alias_servers \
                and capability not in engine.capabilities:
            yield Diagnostic("W020", f"engine '{engine.name}' answers to one name; the aliases are served by "
                             f"target '{alias_servers[0]}'", base + path, severity=Severity.WARNING)
            continue
        if used(model) and capability not in engine.capabilities:
            able = sorted(n for n, r in registry.engines.items() if capability in r.obj.capabilities)
            hint = f"engines that can: {', '.join(able)}" if able else None
            if capability is Capability.MULTIPLE_SERVED_NAMES:
                servers = sorted(n for n, r in registry.targets.items() if getattr(r.obj, "serves_aliases", False))
                hint = f"add a target that serves aliases ({', '.join(servers)}) to stack.targets, or drop the aliases"
            yield Diagnostic("E020", f"engine '{engine.name}' does not support {what}", base + path, hint)
    if model.accelerators.count == 0 and Capability.CPU_ONLY not in engine.capabilities and model.enabled:
        yield Diagnostic("E021", f"engine '{engine.name}' needs accelerators", base + ("accelerators", "count"),
                         "set accelerators.count (and accelerators.resource)")
    if model.engine_options is None and engine.options_type is not None:
        return  # its options had errors, already reported
    problems = plugin_call(registered.provider, f"engine '{engine.name}' check()",
                           lambda: list(engine.check(key, model, model.engine_options)))
    for problem in problems:
        yield Diagnostic(problem.code, problem.message, base + tuple(problem.path), problem.hint, problem.severity)


def _bounds(model: Model) -> Iterator[tuple[tuple[str, ...], int | None, int]]:
    yield ("replicas",), model.replicas, 0
    yield ("accelerators", "count"), model.accelerators.count, 0
    yield ("serving", "tensor_parallel"), model.serving.tensor_parallel, 1
    yield ("serving", "pipeline_parallel"), model.serving.pipeline_parallel, 1
    yield ("serving", "max_context"), model.serving.max_context, 1
    yield ("serving", "max_concurrent_sequences"), model.serving.max_concurrent_sequences, 1
    yield ("serving", "max_lora_rank"), model.serving.max_lora_rank, 1
    yield ("termination_grace_seconds",), model.termination_grace_seconds, 0
    yield ("autoscaling", "min_replicas"), model.autoscaling.min_replicas, 0
    yield ("autoscaling", "max_replicas"), model.autoscaling.max_replicas, 1
    yield ("autoscaling", "target"), model.autoscaling.target, 1


def _quantities(model: Model) -> Iterator[tuple[tuple[str, ...], str]]:
    for kind in ("requests", "limits"):
        for name, quantity in getattr(model.resources, kind).items():
            yield ("resources", kind, name), quantity
    if model.cache is not None and model.cache.size:
        yield ("cache", "size"), model.cache.size
    if model.shm_size:
        yield ("shm_size",), model.shm_size
