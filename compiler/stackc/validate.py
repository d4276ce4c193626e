"""Checks on a structured spec that types alone can't express. Returns diagnostics, all of them."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

from stackc import sources
from stackc.diagnostics import Diagnostic, Severity, did_you_mean
from stackc.model import Model, Spec
from stackc.registry import Registry
from stackc.plan import Plan
from stackc.workload import Capability

DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
QUANTITY = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+|[KMGTPE]i?|m|k|u|n)?$")
ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
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
                             "use lowercase letters, digits and '-', starting with a letter (at most 63)")
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


def served_name_conflicts(plan: Plan) -> list[Diagnostic]:
    """Every name a client may send must lead to one model (engines decide the primary names)."""
    owners: dict[str, str] = {}
    problems = []
    for component in plan.components:
        for name in dict.fromkeys((*component.endpoint.served_names, *component.endpoint.aliases)):
            if name in owners and owners[name] != component.key:
                problems.append(Diagnostic("E012", f"'{name}' is already a name of model '{owners[name]}'",
                                           ("models", component.key, "aliases"),
                                           "every served name and alias must be unique in a stack"))
            owners.setdefault(name, component.key)
    return problems


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
