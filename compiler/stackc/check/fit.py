"""The fit check of each model (and each P/D role) against its accelerators' memory: the rows of
``stackc plan`` and the diagnostics of ``check`` and ``build`` (E140–E143, W140–W144); and the nodes
``accelerators.select_nodes`` requires, with why none are (W145, W146)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path as FsPath
from typing import Any

import attrs

from stackc.check.spec import quantity_value
from stackc.diagnostics import Diagnostic, Severity, did_you_mean
from stackc.fit import arithmetic, facts as model_facts
from stackc.fit.arithmetic import Deployment, Fit
from stackc.fit.catalogue import ACCELERATOR_ALIASES, ACCELERATORS, GIB, ModelFacts, accelerator
from stackc.fit.nodes import NodeSelection, node_selection
from stackc.records import frozen
from stackc.registry import Registry
from stackc.spec.candidate import SUFFIX as CANDIDATE, candidate_model, candidate_path
from stackc.spec.disaggregation import role_model, role_path
from stackc.spec.model import Accelerators, Model, Serving, Spec
from stackc.spec.source import Path

_MIG = re.compile(r"^nvidia\.com/mig-\d+g\.(\d+)gb$")
_ROLES = ("prefill", "decode")
#: the source of facts read from this machine's Hugging Face cache: they inform the check, never the output
HUB_CACHE = "the Hugging Face cache"


@frozen
class ModelFit:
    """One row of ``stackc plan``: a model, or one role of a disaggregated model."""

    model: str
    #: a disaggregated model's role, or ``candidate`` for a model's candidate version
    role: str | None
    accelerators: str
    fit: Fit
    facts_source: str | None = None
    #: replicas (or a scaled model's most), for what a version needs beside the other during a rollout
    replicas: int = 1
    #: the nodes ``accelerators.select_nodes`` requires; None when it is off
    nodes: NodeSelection | None = None


def accelerator_memory(accelerators: Accelerators) -> tuple[float | None, str]:
    """Memory per device in GiB and how the row names the device; None when nothing says it."""
    mig = _MIG.match(accelerators.resource)
    if accelerators.memory is not None:
        value = quantity_value(accelerators.memory)
        return (float(value) / GIB if value else None), accelerators.type or accelerators.memory
    if mig:
        return float(mig.group(1)), accelerators.resource.removeprefix("nvidia.com/")
    device = accelerator(accelerators.type)
    if device is None:
        return None, accelerators.type or accelerators.resource
    per_core = accelerators.resource.endswith("/neuroncore")
    return device.memory_gib / (device.cores if per_core else 1), device.name + (" core" if per_core else "")


def assess(spec: Spec, registry: Registry, spec_file: Callable[[Path], str | None]) -> tuple[list[ModelFit], list[Diagnostic]]:
    """The fit of every enabled model, with its diagnostics; ``spec_file`` names the file that set a path
    (a relative ``serving.model_config`` is read from that file's folder). Facts come from the spec's
    ``serving.model_config``, else the catalogue, else this machine's Hugging Face cache."""
    rows: list[ModelFit] = []
    problems: list[Diagnostic] = []
    for key, model in sorted(spec.models.items()):
        if not model.enabled:
            continue
        base: Path = ("models", key)
        found, source, facts_problems = _facts(model, base, spec_file)
        problems += facts_problems
        roles = [(None, base, model.accelerators, model.serving.tensor_parallel)]
        if model.disaggregation is not None:
            roles = [(name, base + ("disaggregation", name), role.accelerators or model.accelerators,
                      role.tensor_parallel or model.serving.tensor_parallel)
                     for name in _ROLES for role in [getattr(model.disaggregation, name)]]
        own: list[Diagnostic] = []
        for role, path, accelerators, tensor_parallel in roles:
            row, role_problems = _assess_one(key, role, path, model, accelerators, tensor_parallel, found, source,
                                             registry)
            served = role_model(model, role) if role else model
            nodes = node_selection(served.accelerators, served.scheduling)
            rows.append(attrs.evolve(row, replicas=_most_replicas(served), nodes=nodes))
            # a config that could not be read already says why the model is unknown
            own += [p for p in role_problems if not (facts_problems and p.code == "W142")]
            own += _node_problems(key, model, role, served.accelerators, nodes)
        problems += own
        if model.candidate is not None and model.disaggregation is None:
            rows_of_candidate, candidate_problems = _assess_candidate(key, model, spec_file, registry)
            rows += rows_of_candidate
            problems += [p for p in candidate_problems if p not in own]
    return rows, problems


def _assess_candidate(key: str, model: Model, spec_file: Callable[[Path], str | None],
                      registry: Registry) -> tuple[list[ModelFit], list[Diagnostic]]:
    """The candidate version's row: its own weights and engine arguments on the model's accelerators, during a
    rollout beside the stable version's; its problems located in its table where it sets the field."""
    served = candidate_model(model)
    base: Path = ("models", key)
    found, source, problems = _facts(served, base, spec_file)
    row, more = _assess_one(key, CANDIDATE, base, served, served.accelerators, served.serving.tensor_parallel,
                            found, source, registry)
    # as for the model: a config that could not be read already says why it is unknown
    more = [p for p in more if not (problems and p.code == "W142")]
    located = [attrs.evolve(p, path=base + candidate_path(model, tuple(p.path[2:])))
               if p.path[:2] == base else p for p in (*problems, *more)]
    nodes = node_selection(served.accelerators, served.scheduling)
    return [attrs.evolve(row, replicas=served.replicas, nodes=nodes)], located


def _node_problems(key: str, model: Model, role: str | None, accelerators: Accelerators,
                   nodes: NodeSelection | None) -> list[Diagnostic]:
    """W145 where ``select_nodes`` is set and nothing selects the type's nodes; W146 where the spec's own
    selection of the label, which stands, names none of the type's values."""
    def where(*path: str | int) -> Path:
        return ("models", key, *(role_path(model, role, path) if role else path))

    if nodes is None:
        return []
    if nodes.unmet:
        return [Diagnostic("W145", f"accelerators.select_nodes is set, but no node affinity is added: {nodes.note}",
                           where("accelerators", "select_nodes"),
                           "drop it: a model on CPU needs no accelerator node" if accelerators.count == 0 else
                           "set accelerators.type to a catalogue device, or select the nodes with "
                           "scheduling.node_selector", Severity.WARNING)]
    if nodes.contradiction is not None:
        path, (operator, *values) = nodes.contradiction
        assert nodes.implied is not None
        label = nodes.implied
        selected = f"{label.key} {operator}" + (f" ({', '.join(values)})" if values else "")
        return [Diagnostic("W146", f"scheduling.{path[0]} selects {selected}, which admits no "
                           f"{nodes.device} (its nodes have {', '.join(label.values)}): the spec's selection stands, "
                           "and accelerators.select_nodes adds nothing against it", where("scheduling", *path),
                           "fix the label's value, or accelerators.type", Severity.WARNING)]
    return []


def _most_replicas(model: Model) -> int:
    return model.autoscaling.max_replicas if model.autoscaling.max_replicas is not None else model.replicas


def _facts(model: Model, base: Path, spec_file: Callable[[Path], str | None]) -> tuple[
        ModelFacts | None, str | None, list[Diagnostic]]:
    config = model.serving.model_config
    if config is not None:
        path = ("serving", "model_config")
        where = spec_file(base + path)
        file = FsPath(config) if FsPath(config).is_absolute() or where is None else FsPath(where).parent / config
        try:
            return model_facts.read_config(file, config), config, []
        except model_facts.ConfigError as error:
            return None, None, [Diagnostic("E143", str(error), base + path,
                                           "point it at the model's config.json (transformers format)")]
    found = model_facts.catalogue_facts(model.model)
    if found is not None:
        return found, found.source, []
    cached = model_facts.cached_config(model.model, model.revision, model_facts.hub_cache())
    if cached is None:
        return None, None, []
    try:
        return model_facts.read_config(cached, HUB_CACHE), HUB_CACHE, []
    except model_facts.ConfigError as error:
        return None, None, [Diagnostic("W143", f"the Hugging Face cache's copy is unreadable: {error}",
                                       base + ("model",), "download the model again, or set serving.model_config",
                                       Severity.WARNING)]


def _assess_one(key: str, role: str | None, path: Path, model: Model, accelerators: Accelerators,
                tensor_parallel: int, found: ModelFacts | None, source: str | None,
                registry: Registry) -> tuple[ModelFit, list[Diagnostic]]:
    memory, device = accelerator_memory(accelerators)
    devices = f"{accelerators.count} × {device}" if accelerators.count else "CPU"
    where = path + ("accelerators",) if role not in _ROLES or getattr(
        model.disaggregation, role).accelerators is not None else ("models", key, "accelerators")

    def unknown(reason: str, *problems: Diagnostic) -> tuple[ModelFit, list[Diagnostic]]:
        # the threshold of W140, which only a fit check applies
        threshold = [Diagnostic("W196", f"serving.min_concurrent_at_context is set, but no fit check runs: {reason}",
                                ("models", key, "serving", "min_concurrent_at_context"), severity=Severity.WARNING)] \
            if model.serving.min_concurrent_at_context != Serving().min_concurrent_at_context else []
        return ModelFit(key, role, devices, Fit("unknown", reason), source), [*problems, *threshold]

    told = accelerators.type is not None or accelerators.memory is not None

    def unchecked(reason: str) -> tuple[ModelFit, list[Diagnostic]]:
        """No fit check; said where the spec named the accelerator, so a type or memory is never ignored silently."""
        field = "type" if accelerators.type is not None else "memory"
        return unknown(reason, *([Diagnostic("W144", f"accelerators.{field} is set, but no fit check runs: {reason}",
                                             where + (field,), severity=Severity.WARNING)] if told else []))

    if accelerators.count == 0:
        return unchecked("no accelerators: the model runs on CPU")
    if tensor_parallel < 1 or model.serving.pipeline_parallel < 1:  # E014 says so: no share of the weights to compute
        return unknown("the parallelism is out of bounds")
    if memory is None:
        if accelerators.type is not None:
            options = [*ACCELERATORS, *ACCELERATOR_ALIASES]
            hint = did_you_mean(accelerators.type, options) or ""
            return unknown(f"unknown accelerator type '{accelerators.type}'", Diagnostic(
                "W141", f"unknown accelerator type '{accelerators.type}': no fit check", where + ("type",),
                f"{hint}; or set accelerators.memory".lstrip("; "), Severity.WARNING))
        return unknown("accelerator memory unknown: set accelerators.type or accelerators.memory")
    engine = registry.engines.get(model.engine)
    accounting = engine.traits.memory_accounting if engine is not None else None
    if accounting is None:
        return unchecked(f"engine '{model.engine}' declares no memory accounting")
    if found is None:
        return unknown(f"the facts of '{model.model}' are unknown", Diagnostic(
            "W142", f"no fit check: stackc knows nothing of what '{model.model}' is made of",
            ("models", key, "model"), "set serving.model_config to its config.json", Severity.WARNING))
    role_args = getattr(model.disaggregation, role).engine_args if role in _ROLES else ()
    deployment = _deployment(model, memory, accounting, tensor_parallel, (*model.engine_args, *role_args),
                             _nccl_channels(accelerators))
    result = arithmetic.fit(found, deployment)
    row = ModelFit(key, role, devices, result, source)
    return row, list(_diagnostics(found, deployment, result, path, ("models", key, "serving"), model, device))


def _flag(arguments: Sequence[str], name: str) -> str | None:
    """The value of ``--name VALUE`` or ``--name=VALUE`` in ``arguments`` (the last one wins)."""
    found = None
    for index, argument in enumerate(arguments):
        if argument == name and index + 1 < len(arguments):
            found = arguments[index + 1]
        elif argument.startswith(name + "="):
            found = argument.split("=", 1)[1]
    return found


def _nccl_channels(accelerators: Accelerators) -> int:
    """NCCL's ring channels on the spec's device type (0 for a memory, a MIG slice or a type without them)."""
    if accelerators.memory is not None or _MIG.match(accelerators.resource):
        return 0
    device = accelerator(accelerators.type)
    return device.nccl_channels if device is not None else 0


def _deployment(model: Model, memory: float, accounting: Any, tensor_parallel: int,
                engine_args: Sequence[str], nccl_channels: int) -> Deployment:
    serving = model.serving
    # the engine's structured options, when it has these two (vLLM's do), else its command line's flags
    batched = getattr(model.engine_options, "max_num_batched_tokens", None) or _flag(engine_args,
                                                                                   "--max-num-batched-tokens")
    kv_dtype = getattr(model.engine_options, "kv_cache_dtype", None) or _flag(engine_args, "--kv-cache-dtype")
    if isinstance(batched, str):
        batched = int(batched) if batched.isdigit() else None
    return Deployment(memory, accounting, tensor_parallel, serving.pipeline_parallel, serving.max_context,
                      serving.gpu_memory_fraction, serving.dtype, serving.quantization,
                      kv_dtype if isinstance(kv_dtype, str) else None,
                      batched if isinstance(batched, int) else None, serving.max_concurrent_sequences,
                      arithmetic.vllm_image_version(model.image), nccl_channels)


def _diagnostics(found: ModelFacts, deployment: Deployment, result: Fit, path: Path, serving: Path, model: Model,
                 device: str) -> Iterator[Diagnostic]:
    on = f"{device} ({deployment.memory_gib:g} GiB)"
    if result.problem == "weights":
        fixes = _fixes(found, deployment)
        yield Diagnostic("E140", f"the weights need {result.weights_gib_per_device} GiB per device: they leave no room "
                         f"for the KV cache on {on}", _tp_path(path, serving, model), fixes)
    elif result.problem == "context":
        largest = arithmetic.largest_context(found, deployment)
        fixes = [f"max_context = {largest} fits" if largest else None, _fixes(found, deployment)]
        yield Diagnostic("E141", f"the KV cache ({result.kv_cache_gib_per_device} GiB per device on {on}) holds "
                         f"{result.kv_tokens_per_replica} tokens: not one sequence of {result.context}",
                         serving + ("max_context",), "; or ".join(f for f in fixes if f))
    elif result.max_concurrent_at_context is not None and \
            result.max_concurrent_at_context < model.serving.min_concurrent_at_context:
        yield Diagnostic("W140", f"only {result.max_concurrent_at_context} sequences of {result.context} tokens fit "
                         f"in the KV cache at once (serving.min_concurrent_at_context = "
                         f"{model.serving.min_concurrent_at_context})", serving + ("max_context",),
                         "a shorter max_context, more tensor parallelism or a larger accelerator",
                         Severity.WARNING)


def _tp_path(path: Path, serving: Path, model: Model) -> Path:
    if path[-1] in _ROLES and getattr(model.disaggregation, str(path[-1])).tensor_parallel is not None:
        return path + ("tensor_parallel",)
    return serving + ("tensor_parallel",)


def _fixes(found: ModelFacts, deployment: Deployment) -> str | None:
    degree = arithmetic.smallest_tensor_parallel(found, deployment)
    larger = arithmetic.larger_accelerator(found, deployment)
    devices = f"{degree * deployment.pipeline_parallel} devices a replica" if degree else ""
    fixes = [f"tensor_parallel = {degree} fits ({devices})" if degree else None,
             f"accelerators.type = \"{larger}\" fits" if larger else None]
    return " or ".join(f for f in fixes if f) or "no catalogue accelerator holds it: more pipeline parallelism"
