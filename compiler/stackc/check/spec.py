"""Checks on a structured spec that types alone can't express. Returns diagnostics, all of them."""

from __future__ import annotations

import functools
import math
import re
import typing
from collections.abc import Callable, Iterable, Iterator, Mapping
from fractions import Fraction
from types import NoneType, UnionType
from typing import Any, Literal

import attrs

from stackc.check.pod_security import pod_security_warnings
from stackc.diagnostics import Diagnostic, Severity, did_you_mean
from stackc.plan.engine import Capability
from stackc.plan.model import KV_CACHE_SERVER
from stackc.registry import Registered, Registry
from stackc.spec import candidate, disaggregation, sources
from stackc.spec.model import (
    DNS_LABEL,
    DNS_SUBDOMAIN,
    NAME,
    QUANTITY,
    Autoscaling,
    DisruptionBudget,
    EnvSource,
    Form,
    InitContainer,
    Model,
    ProbeOverride,
    Routing,
    Sidecar,
    Spec,
)
from stackc.spec.source import Path

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
    Capability.RUNTIME_LORA: (("serving", "lora_adapters"), "loading LoRA adapters at run time",
                              lambda m: any(a.load == "runtime" for a in m.serving.lora_adapters)),
    Capability.MAX_CONTEXT: (("serving", "max_context"), "a maximum context length", lambda m: m.serving.max_context is not None),
    Capability.API_KEY: (("security", "api_key"), "an API key", lambda m: m.security.api_key is not None),
    Capability.MULTIPLE_SERVED_NAMES: (("aliases",), "more than one served name", lambda m: bool(m.aliases)),
    Capability.ACCELERATORS: (("accelerators", "count"), "accelerators", lambda m: m.accelerators.count > 0),
    Capability.OLLAMA_LIBRARY: (("model",), "models from the Ollama library", lambda m: m.model.startswith("ollama://")),
    Capability.MULTI_NODE: (("serving", "nodes"), "one replica over several nodes", lambda m: m.serving.nodes > 1),
    Capability.KV_OFFLOAD: (("kv_offload",), "KV-cache offloading", lambda m: m.kv_offload is not None),
    Capability.PORT: (("port",), "setting its port here", lambda m: m.port is not None),
    Capability.DISAGGREGATION: (("disaggregation",), "prefill/decode disaggregation",
                                lambda m: m.disaggregation is not None),
}
#: an emptyDir cache above this many bytes of weights draws W026: node root disks (EKS: 20 GiB by default)
#: also hold the images, an emptyDir fills them, and every restart downloads again. 20 GB is a 10B model in 16 bits.
LARGE_EMPTYDIR_BYTES = 20 * 10**9


def validate_spec(spec: Spec, registry: Registry, plugin_call: Callable[..., Any]) -> list[Diagnostic]:
    """Every problem the spec alone shows (targets check the plan later: ``pipeline.target_problems``)."""
    return list(_validate(spec, registry, plugin_call))


def _validate(spec: Spec, registry: Registry, plugin_call: Callable[..., Any]) -> Iterator[Diagnostic]:
    stack = spec.stack
    yield from bound_problems(spec)
    for index, name in enumerate(stack.targets):
        if name not in registry.targets:
            yield Diagnostic("E011", f"unknown target '{name}'", ("stack", "targets", index), did_you_mean(name, registry.targets))
    for name in spec.targets:
        if name not in registry.targets:
            yield Diagnostic("E011", f"unknown target '{name}'", ("targets", name), did_you_mean(name, registry.targets))
    if not spec.models:
        yield Diagnostic("E009", "the stack has no models", ("models",), "add a [models.NAME] table")
    known = [name for name in stack.targets if name in registry.targets]
    if spec.models and known and not registry.targets_having("serves_models", known):
        yield Diagnostic("W155", f"no target of the stack deploys the models: {', '.join(known)} reach them through "
                         "Services and pods that nothing in this output creates", ("stack", "targets"),
                         f"add a target that deploys models ({', '.join(registry.targets_having('serves_models'))})",
                         Severity.WARNING)
    if known and stack.namespace != "default" and \
            all(registry.targets[name].traits.release_namespace is not None for name in known):
        yield Diagnostic("W192", f"every target of the stack ({', '.join(known)}) takes its namespace at install "
                         f"time (helm install --namespace): '{stack.namespace}' is in no file", ("stack", "namespace"),
                         f"install with --namespace {stack.namespace}, or drop namespace", Severity.WARNING)
    yield from extra_object_problems(spec)
    yield from _shared_cache_problems(spec)
    yield from _kv_cache_server_problems(spec)
    for key in sorted(spec.models):
        own = list(_validate_model(spec, key, spec.models[key], registry, plugin_call))
        yield from own
        if spec.models[key].disaggregation is not None and spec.models[key].enabled:
            yield from disaggregation.name_problems(spec, key, _LONGEST_SUFFIX)
        if spec.models[key].candidate is not None:
            yield from _candidate_problems(spec, key, registry, plugin_call, own)


def extra_object_problems(spec: Spec) -> Iterator[Diagnostic]:
    """What an extra object needs before it is emitted as written: a kind, a name, this stack's namespace."""
    seen: set[tuple[str, str, str]] = set()
    for index, obj in enumerate(spec.stack.extra_objects):
        path = ("stack", "extra_objects", index)
        metadata = obj.get("metadata")
        problems = [Diagnostic("E027", f"needs '{key}', a non-empty string", path + (key,))
                    for key in ("apiVersion", "kind") if not isinstance(obj.get(key), str) or not obj.get(key)]
        if not isinstance(metadata, dict) or not isinstance(metadata.get("name"), str):
            problems.append(Diagnostic("E027", "needs 'metadata.name', a string", path + ("metadata",)))
        yield from problems
        if problems:
            continue
        name = metadata["name"]
        yield from _form_problems(name, DNS_SUBDOMAIN, path + ("metadata", "name"))
        namespace = metadata.get("namespace")
        if namespace is not None and namespace != spec.stack.namespace:
            yield Diagnostic("E027", f"is in namespace '{namespace}', not the stack's ('{spec.stack.namespace}')",
                             path + ("metadata", "namespace"), "drop metadata.namespace: stackc sets the stack's")
        for key in ("labels", "annotations"):
            if not _string_table(metadata.get(key, {})):
                yield Diagnostic("E027", f"'metadata.{key}' must be a table of strings", path + ("metadata", key))
        if obj["kind"] == "ConfigMap":
            for key in ("data", "binaryData"):
                if not _string_table(obj.get(key, {})):
                    yield Diagnostic("E027", f"a ConfigMap's '{key}' must be a table of strings", path + (key,))
        if obj["kind"] == "Secret" and ("data" in obj or "stringData" in obj):
            yield Diagnostic("E027", "a Secret with data would put its values in the output",
                             path + ("data" if "data" in obj else "stringData",),
                             "create the Secret outside stackc and reference it (secret_env, env sources)")
        identity = (obj["apiVersion"].rpartition("/")[0], obj["kind"], name)
        if identity in seen:
            yield Diagnostic("E027", f"a {obj['kind']} named '{name}' is already in extra_objects", path + ("metadata", "name"))
        seen.add(identity)


def _string_table(value: object) -> bool:
    return isinstance(value, dict) and all(isinstance(v, str) for v in value.values())


_QUANTITY_SUFFIXES = {"": 1, "n": Fraction(1, 10**9), "u": Fraction(1, 10**6), "m": Fraction(1, 1000),
                      "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18,
                      "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}


@functools.lru_cache(maxsize=1 << 12)
def quantity_value(text: str) -> Fraction | None:
    """A Kubernetes quantity as an exact number (None when it is not one); once per text, as every model of a
    large spec repeats the same few quantities (parsing them into fractions was a tenth of its validation)."""
    match = re.fullmatch(r"(\d+(?:\.\d*)?|\.\d+)(?:[eE]([+-]?\d+)|([KMGTPE]i?|[mkun])?)", text)
    if match is None or re.fullmatch(QUANTITY.pattern, text) is None:
        return None
    number, exponent, suffix = match.groups()
    if exponent is not None and abs(int(exponent)) > 100:
        return None
    return Fraction(number) * (Fraction(10) ** int(exponent or 0)) * _QUANTITY_SUFFIXES[suffix or ""]


def _offload_memory_problems(model: Model, base: Path) -> Iterator[Diagnostic]:
    """Offloaded KV blocks live in the pod's memory: a request below them invites eviction under pressure."""
    if model.kv_offload is None:
        return
    wanted = model.kv_offload.cpu_gib * 2**30
    request = model.resources.requests.get("memory")
    requested = quantity_value(request) if request is not None else None
    if request is None or (requested is not None and requested < wanted):
        got = f"requests only {request} of memory" if request is not None else "requests no memory"
        yield Diagnostic("W022", f"kv_offload keeps {model.kv_offload.cpu_gib} GiB in host memory, but the pod {got}",
                         base + ("kv_offload", "cpu_gib"), "add the offload buffer to resources.requests.memory",
                         Severity.WARNING)


def _offload_storage_problems(spec: Spec, model: Model, base: Path) -> Iterator[Diagnostic]:
    """The disk and the server a model's KV blocks go to must exist; an emptyDir must be requested."""
    offload = model.kv_offload
    if offload is None:
        return
    path = base + ("kv_offload",)
    volumes = [str(v.get("name", "")) for v in model.extra_volumes]
    if offload.disk_volume is not None and offload.disk_volume not in volumes:
        yield Diagnostic("E121", f"kv_offload.disk_volume names no volume of extra_volumes: '{offload.disk_volume}'",
                         path + ("disk_volume",), did_you_mean(offload.disk_volume, volumes)
                         or "add the volume to extra_volumes, or drop disk_volume for an emptyDir")
    if offload.disk_volume is not None and offload.disk_gib is None:
        yield Diagnostic("E124", "kv_offload.disk_volume without disk_gib: the engine needs to know how much of it "
                         "to fill", path + ("disk_volume",), "set kv_offload.disk_gib")
    if offload.remote and spec.stack.kv_cache_server is None:
        yield Diagnostic("E122", "kv_offload.remote shares KV blocks through the stack's cache server, and the stack "
                         "has none", path + ("remote",), "add [stack.kv_cache_server] with its image")
    if offload.disk_gib is not None and offload.disk_volume is None:
        request = model.resources.requests.get("ephemeral-storage")
        requested = quantity_value(request) if request is not None else None
        if request is None or (requested is not None and requested < offload.disk_gib * 2**30):
            got = f"requests only {request} of" if request is not None else "requests no"
            yield Diagnostic("W120", f"kv_offload puts up to {offload.disk_gib} GiB on an emptyDir, but the pod {got} "
                             "ephemeral-storage: the scheduler may place it on a node without that much disk",
                             path + ("disk_gib",), "add it to resources.requests.ephemeral-storage (with the image and "
                             "logs), or name a volume of your own in kv_offload.disk_volume", Severity.WARNING)


def _kv_cache_server_problems(spec: Spec) -> Iterator[Diagnostic]:
    """A cache server nothing uses is a pod of memory for nothing; its objects' names must be its own."""
    if spec.stack.kv_cache_server is None:
        return
    if KV_CACHE_SERVER in spec.models:
        yield Diagnostic("E126", f"a model named '{KV_CACHE_SERVER}' would take the names of the stack's KV-cache server "
                         "(its Deployment, Service and pod labels)", ("models", KV_CACHE_SERVER),
                         "rename the model")
    if not any(m.enabled and m.kv_offload is not None and m.kv_offload.remote for m in spec.models.values()):
        yield Diagnostic("W121", "the KV-cache server is deployed, but no model shares KV blocks through it",
                         ("stack", "kv_cache_server"), "set kv_offload.remote = true on the models that should",
                         Severity.WARNING)


def _consistency_problems(model: Model) -> Iterator[Diagnostic]:
    """Values each valid alone that the API server rejects together; paths relative to the model."""
    requests, limits = model.resources.requests, model.resources.limits
    for name, request in sorted(requests.items()):
        wanted, limit = quantity_value(request), quantity_value(limits.get(name, ""))
        exact = "/" in name or name.startswith("hugepages-")  # extended resources are not overcommitted
        set_by_accelerators = name == model.accelerators.resource and model.accelerators.count > 0
        if exact and limit != wanted and not set_by_accelerators:
            yield Diagnostic("E022", f"'{name}' cannot be overcommitted: its limit must equal the request",
                             ("resources", "requests", name), f'set resources.limits."{name}" = "{request}"')
        elif wanted is not None and limit is not None and wanted > limit:
            yield Diagnostic("E022", f"the request ({request}) is above the limit ({limits[name]})",
                             ("resources", "requests", name))
    for index, toleration in enumerate(model.scheduling.tolerations):
        path = ("scheduling", "tolerations", index)
        if toleration.operator == "Exists" and toleration.value:
            yield Diagnostic("E022", "a toleration with operator 'Exists' takes no value", path + ("value",))
        if toleration.operator == "Equal" and not toleration.key:
            yield Diagnostic("E022", "a toleration without a key needs operator 'Exists'", path + ("operator",))
        if toleration.toleration_seconds is not None and toleration.effect != "NoExecute":
            yield Diagnostic("E022", "toleration_seconds applies only to effect 'NoExecute'",
                             path + ("toleration_seconds",), 'set effect = "NoExecute" or drop toleration_seconds')
    rollout = model.rollout
    if rollout.strategy == "RollingUpdate" and rollout.max_surge in (0, "0%") and rollout.max_unavailable in (0, "0%"):
        yield Diagnostic("E022", "max_surge and max_unavailable cannot both be 0: the rollout could not progress",
                         ("rollout", "max_surge"))


def _autoscaling_problems(scaling: Autoscaling) -> Iterator[Diagnostic]:
    """A signal that cannot drive an autoscaler, as written; paths relative to ``autoscaling``."""
    if scaling.signal is not None and scaling.metric is not None:
        yield Diagnostic("E080", "set either signal or metric (KServe's spelling of it), not both", ("metric",))
    if scaling.signal is not None and scaling.target is None:
        yield Diagnostic("E080", f"signal '{scaling.signal}' needs a target value per replica", ("signal",),
                         "set autoscaling.target")
    if scaling.signal == "custom" and not scaling.query:
        yield Diagnostic("E080", "signal 'custom' needs a PromQL query", ("signal",),
                         'set autoscaling.query = "sum(...)", aggregated to one series')
    if scaling.query is not None and scaling.signal != "custom":
        yield Diagnostic("E080", "a query is only read with signal = \"custom\"", ("query",))
    for name in ("target", "activation"):
        value = getattr(scaling, name)
        if value is not None and (value < 0 or name == "target" and value == 0):
            yield Diagnostic("E014", f"must be {'above' if name == 'target' else 'at least'} 0, got {value}", (name,))
    signal = scaling.signal or scaling.metric
    if signal in ("cpu", "memory") and scaling.target is not None and not isinstance(scaling.target, int):
        yield Diagnostic("E080", f"the {signal} target is a whole percentage of the pods' requests, got {scaling.target}",
                         ("target",))
    if scaling.min_replicas == 0 and signal is not None and signal not in ("router_pending", "custom", "concurrency", "rps"):
        yield Diagnostic("E082", f"with no replica running, nothing exports '{signal}': nothing would wake the model",
                         ("min_replicas",), 'scale to zero on signal = "router_pending" (the router target holds '
                         "requests and counts them), or keep min_replicas >= 1")
    if scaling.activation is not None and scaling.min_replicas != 0:
        yield Diagnostic("E080", "an activation threshold only applies when scaling from zero replicas",
                         ("activation",), "set min_replicas = 0, or drop activation")


def _pod_problems(model: Model) -> Iterator[Diagnostic]:
    """The spec's pod settings: sources that say one thing, probes that can run; paths relative to the model."""
    for name in sorted(set(model.env) & set(model.secret_env)):
        yield Diagnostic("E024", f"'{name}' is set twice, in env and in secret_env", ("secret_env", name),
                         "keep one of them")
    containers: list[tuple[tuple[str | int, ...], InitContainer]] = [
        *((("init_containers", i), c) for i, c in enumerate(model.init_containers)),
        *((("sidecars", i), c) for i, c in enumerate(model.sidecars))]
    roles = [] if model.disaggregation is None else [
        (("disaggregation", role), getattr(model.disaggregation, role).env) for role in disaggregation.ROLES]
    for prefix, env in [((), model.env), *((path, c.env) for path, c in containers), *roles]:
        for name, value in sorted(env.items()):
            if isinstance(value, EnvSource):
                yield from _env_source_problems(value, prefix + ("env", name))
    for kind in ("startup", "readiness", "liveness"):
        override = getattr(model.probes, kind)
        if override is not None:
            yield from _probe_problems(override, ("probes", kind), whole=False)
        for path, container in containers:
            probe = getattr(container.probes, kind) if isinstance(container, Sidecar) else None
            if probe is not None:
                yield from _probe_problems(probe, path + ("probes", kind), whole=True)
    for field, namespace in (("host_ipc", "IPC"), ("host_pid", "process")):
        if getattr(model, field) and model.security.pod_security != "privileged":
            yield Diagnostic("E026", f"sharing the node's {namespace} namespace breaks Pod Security "
                             f"'{model.security.pod_security}'", (field,),
                             f'set security.pod_security = "privileged" (and label the namespace for it), or drop {field}')


def _env_source_problems(source: EnvSource, path: Path) -> Iterator[Diagnostic]:
    chosen = [name for name in ("field", "resource", "secret", "config_map") if getattr(source, name) is not None]
    if len(chosen) != 1:
        yield Diagnostic("E025", "names " + (" and ".join(chosen) if chosen else "no source"), path,
                         "set exactly one of field, resource, secret or config_map")
        return
    keyed = chosen[0] in ("secret", "config_map")
    if keyed and source.key is None:
        yield Diagnostic("E025", f"a value from a {chosen[0].replace('_', ' ')} needs its key", path,
                         f'{{ {chosen[0]} = "{getattr(source, chosen[0])}", key = "KEY" }}')
    for name, allowed in (("key", keyed), ("optional", keyed), ("divisor", chosen[0] == "resource")):
        if getattr(source, name) is not None and not allowed:
            yield Diagnostic("E025", f"'{name}' does not apply to a value from {chosen[0]}", path + (name,))


def _probe_problems(probe: ProbeOverride, path: Path, whole: bool) -> Iterator[Diagnostic]:
    actions = [name for name, used in (("path", probe.path is not None), ("tcp", bool(probe.tcp)),
                                       ("exec", probe.exec is not None)) if used]
    if len(actions) > 1:
        yield Diagnostic("E025", f"a probe does one thing: {' and '.join(actions)} are both set", path)
    elif whole and not actions:
        yield Diagnostic("E025", "a sidecar's probe needs path, tcp = true or exec", path)
    elif whole and actions != ["exec"] and probe.port is None:
        yield Diagnostic("E025", "a sidecar's probe needs the port it checks", path + ("port",))


def _shared_cache_problems(spec: Spec) -> Iterator[Diagnostic]:
    shared = spec.stack.shared_cache
    if shared is None:
        return
    path = ("stack", "shared_cache")
    if shared.existing_claim:
        for name in ("size", "storage_class", "selector", "nfs"):
            if getattr(shared, name) not in (None, {}):  # storage_class "" is a setting too
                yield Diagnostic("E017", f"an existing claim takes no {name}", path + (name,),
                                 "set existing_claim alone, or remove it")
        return
    if not shared.size:
        yield Diagnostic("E017", "a shared cache needs a size" + (" (the NFS volume's capacity)" if shared.nfs else ""),
                         path, 'e.g. size = "2Ti" with a storage_class whose volumes many nodes mount')
    if shared.nfs is not None:
        for name in ("storage_class", "selector"):
            if getattr(shared, name) not in (None, {}):
                yield Diagnostic("E017", f"an NFS export takes no {name}: stackc creates its volume", path + (name,))


def _trap_warnings(model: Model, shared_cache: bool = False) -> Iterator[Diagnostic]:
    """Settings Kubernetes accepts that fail later; paths relative to the model."""
    cache = model.cache
    most = max(model.replicas, model.autoscaling.max_replicas or 0)
    if cache is not None and cache.size and cache.access_mode in ("ReadWriteOnce", "ReadWriteOncePod") and most > 1:
        one_pod = cache.access_mode.endswith("Pod")
        yield Diagnostic("W024", f"a {cache.access_mode} cache is mounted by one {'pod' if one_pod else 'node'} at a "
                         f"time: of {most} replicas, {'all but one' if one_pod else 'those on other nodes'} stay "
                         "Pending", ("cache", "access_mode"),
                         'use access_mode = "ReadWriteMany" (a shared file system) or one replica',
                         Severity.WARNING)
    if model.scheduling.tolerations_mode == "replace" and not model.scheduling.tolerations:
        yield Diagnostic("W154", "tolerations_mode = \"replace\" puts the model's tolerations in place of those in "
                         "[defaults], and the model has none", ("scheduling", "tolerations_mode"),
                         "list the model's tolerations, or drop tolerations_mode", Severity.WARNING)
    budget = model.disruption_budget
    if budget.enabled is False and budget.max_unavailable != DisruptionBudget().max_unavailable:
        yield Diagnostic("W152", "disruption_budget.max_unavailable sizes a budget that enabled = false turns off",
                         ("disruption_budget", "max_unavailable"), "drop one of them", Severity.WARNING)
    serving = model.serving
    for limit in ("max_loras", "max_lora_rank"):
        if getattr(serving, limit) is not None and not serving.lora_adapters:
            yield Diagnostic("W150", f"serving.{limit} limits LoRA adapters, but the model has none: engines start "
                             "without LoRA, and the limit is not passed on", ("serving", limit),
                             "add serving.lora_adapters, or drop it", Severity.WARNING)
    source = sources.parse(model.model)
    estimate = estimated_weight_bytes(model)
    ephemeral = quantity_value(model.resources.requests.get("ephemeral-storage", ""))
    if (cache is None and not shared_cache and source is not None and source.scheme in ("hf", "s3", "gs")
            and estimate is not None
            and estimate >= LARGE_EMPTYDIR_BYTES and (ephemeral is None or ephemeral < estimate)):
        yield Diagnostic("W026", f"about {estimate // 10**9} GB of weights go to an emptyDir on the node's disk: "
                         "every new pod downloads them again, and a full disk evicts it", ("model",),
                         'add a cache (cache.size = "200Gi", or [stack.shared_cache]), or request '
                         'ephemeral-storage for them',
                         Severity.WARNING)


_PARAMETERS = re.compile(r"(?<![A-Za-z0-9.])(?:(\d+)x)?(\d+(?:\.\d+)?)[bB](?![A-Za-z0-9])")
_FOUR_BIT = re.compile(r"awq|gptq|int4|4bit|nf4|mxfp4|q4|iq4|q3|q2", re.IGNORECASE)
_EIGHT_BIT = re.compile(r"fp8|int8|8bit|q8|w8a8", re.IGNORECASE)


def estimated_weight_bytes(model: Model) -> int | None:
    """Weights' size from the parameter count a model's name states (``Llama-3.1-70B``, ``Mixtral-8x7B``).

    Two bytes a parameter, one for 8-bit and half for 4-bit names or quantization; None without a count.
    """
    name = model.model.split("://", 1)[-1]
    counts = [float(size) * int(experts or 1) for experts, size in _PARAMETERS.findall(name)]
    if not counts:
        return None
    marker = f"{name} {model.serving.quantization or ''}"
    per_parameter = 0.5 if _FOUR_BIT.search(marker) else 1 if _EIGHT_BIT.search(marker) else 2
    return int(max(counts) * 10**9 * per_parameter)


def _raw_table_problems(model: Model) -> Iterator[Diagnostic]:
    """The keys Kubernetes requires in the tables passed on as is; paths relative to the model."""
    required = (("extra_volumes", ("name",)), ("extra_volume_mounts", ("name", "mountPath")))
    for field, keys in required:
        for index, raw in enumerate(getattr(model, field)):
            for key in keys:
                value = raw.get(key)
                if value is None:
                    yield Diagnostic("E018", f"needs '{key}'", (field, index))
                elif not isinstance(value, str) or not value:
                    yield Diagnostic("E018", f"'{key}' must be a non-empty string", (field, index, key))
                elif key == "name" and field != "extra_volume_mounts":
                    yield from _form_problems(value, DNS_LABEL, (field, index, key))


def _validate_model(spec: Spec, key: str, model: Model, registry: Registry, plugin_call: Callable[..., Any]) -> Iterator[Diagnostic]:
    base = ("models", key)
    if not re.fullmatch(NAME.pattern, key):
        yield Diagnostic("E008", f"model name '{key}' is not a valid name", base,
                         "use lowercase letters, digits and '-', starting with a letter")
    elif len(spec.stack.name) + 1 + len(key) + _LONGEST_SUFFIX > 63:
        yield Diagnostic("E008", f"stack and model names together are too long for Kubernetes ('{spec.stack.name}-{key}')",
                         base, f"keep stack name + model name under {63 - _LONGEST_SUFFIX - 1} characters")
    source = sources.parse(model.model)
    if source is None:
        yield Diagnostic("E013", f"cannot tell where '{model.model}' comes from", base + ("model",),
                         "use a Hugging Face id (org/name or hf://org/name), s3://, gs://, pvc://CLAIM/PATH, oci://IMAGE, "
                         "ollama://NAME:TAG or an absolute path")
    elif model.revision is not None and source.scheme != "hf":
        yield Diagnostic("E022", f"a revision pins only a Hugging Face model, not a {source.scheme} source",
                         base + ("revision",), "drop revision; the source's own path or tag says which version")
    scaling = model.autoscaling
    # what an autoscaling target (KServe) makes of them: both default to replicas
    low = scaling.min_replicas if scaling.min_replicas is not None else model.replicas
    high = scaling.max_replicas if scaling.max_replicas is not None else max(model.replicas, 1)
    if low > high:
        low_path = ("autoscaling", "min_replicas") if scaling.min_replicas is not None else ("replicas",)
        yield Diagnostic("E014", f"{low_path[-1]} ({low}) is above max_replicas ({high}"
                         f"{'' if scaling.max_replicas is not None else ', from replicas'})", base + low_path)
    yield from (attrs.evolve(p, path=base + p.path) for p in _consistency_problems(model))
    yield from (attrs.evolve(p, path=base + ("autoscaling",) + p.path) for p in _autoscaling_problems(model.autoscaling))
    yield from (attrs.evolve(p, path=base + p.path) for p in pod_security_warnings(model))
    yield from _offload_memory_problems(model, base)
    yield from _offload_storage_problems(spec, model, base)
    if model.scheduling.group_topology is not None and model.serving.nodes == 1:
        yield Diagnostic("W021", "group_topology places leader/worker groups; this model runs one pod per replica",
                         base + ("scheduling", "group_topology"), "set serving.nodes above 1, or remove it",
                         Severity.WARNING)
    fraction = model.serving.gpu_memory_fraction
    if fraction is not None and math.isfinite(fraction) and not 0 < fraction <= 1:
        yield Diagnostic("E014", f"must be in (0, 1], got {fraction}", base + ("serving", "gpu_memory_fraction"))
    for problem in (*_raw_table_problems(model), *_pod_problems(model), *_trap_warnings(model, spec.stack.shared_cache is not None)):
        yield attrs.evolve(problem, path=base + problem.path)
    yield from _adapter_problems(spec, model, registry, base)
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
    engine = registered.traits
    alias_servers = registry.targets_having("serves_aliases", spec.stack.targets)
    for capability, (path, what, used) in _CAPABILITY_FIELDS.items():
        if capability is Capability.MULTIPLE_SERVED_NAMES and used(model) and alias_servers \
                and capability not in engine.capabilities:
            yield Diagnostic("W020", f"engine '{engine.name}' answers to one name; the aliases are served by "
                             f"target '{alias_servers[0]}'", base + path, severity=Severity.WARNING)
            continue
        if used(model) and capability not in engine.capabilities:
            able = sorted(n for n, r in registry.engines.items() if capability in r.traits.capabilities)
            hint = f"engines that can: {', '.join(able)}" if able else None
            if capability is Capability.MULTIPLE_SERVED_NAMES:
                servers = registry.targets_having("serves_aliases")
                hint = f"add a target that serves aliases ({', '.join(servers)}) to stack.targets, or drop the aliases"
            yield Diagnostic("E020", f"engine '{engine.name}' does not support {what}", base + path, hint)
    if model.accelerators.count == 0 and Capability.CPU_ONLY not in engine.capabilities and model.enabled:
        yield Diagnostic("E021", f"engine '{engine.name}' needs accelerators", base + ("accelerators", "count"),
                         "set accelerators.count (and accelerators.resource)")
    yield from _kv_event_problems(spec, model, engine, registry, base)
    yield from _unapplied_routing(spec, model, registry, base)
    owned = registered.traits.owned_flags
    for index, arg in enumerate(model.engine_args):
        flag = arg.split("=", 1)[0]
        if flag in owned:
            yield Diagnostic("W025", f"engine_args sets {flag}, which stackc sets from {owned[flag]}: probes, "
                             "Service, router and gateway would disagree with the engine",
                             base + ("engine_args", index), f"set {owned[flag].split(' and ')[0]} instead",
                             Severity.WARNING)
    if model.engine_options is None and registered.traits.options_type is not None:
        return  # its options had errors, already reported
    if model.disaggregation is not None and Capability.DISAGGREGATION in engine.capabilities:
        # the model runs only as its roles: the engine checks each role's settings
        yield from _role_problems(key, model, registered, plugin_call)
        return
    problems = plugin_call(registered.provider, f"engine '{engine.name}' check()",
                           lambda: list(registered.method("check")(key, model, model.engine_options)))
    for problem in problems:
        yield Diagnostic(problem.code, problem.message, base + tuple(problem.path), problem.hint, problem.severity)


def _unapplied_routing(spec: Spec, model: Model, registry: Registry, base: Path) -> Iterator[Diagnostic]:
    """A strategy or session header with no target in the stack that picks replicas by them."""
    if registry.targets_having("applies_routing", spec.stack.targets):
        return
    appliers = " or ".join(repr(name) for name in registry.targets_having("applies_routing"))
    for field in ("strategy", "session_header"):
        if getattr(model.routing, field) != getattr(Routing(), field):
            yield Diagnostic("W153", f"routing.{field} is applied by a router, and no target of the stack is one",
                             (*base, "routing", field), f"add {appliers} to stack.targets, or drop it",
                             Severity.WARNING)


def _candidate_problems(spec: Spec, key: str, registry: Registry, plugin_call: Callable[..., Any],
                        own: list[Diagnostic]) -> Iterator[Diagnostic]:
    """A model's candidate: what it can't be, and the candidate's model checked as the model is, its problems
    located in the candidate's table where it sets the field (the model's ``own`` are reported once)."""
    model = spec.models[key]
    yield from candidate.problems(spec, key, registry.targets_having("splits_traffic", spec.stack.targets))
    if not model.enabled:
        return
    plain = len(spec.stack.name) + 1 + len(key) + _LONGEST_SUFFIX
    if plain <= 63 < plain + len(f"-{candidate.SUFFIX}"):  # longer names already drew the model's own E008
        yield Diagnostic("E008", f"stack and model names together are too long for the candidate's objects "
                         f"('{spec.stack.name}-{key}-{candidate.SUFFIX}')", ("models", key, *candidate.PATH),
                         f"keep stack name + model name under {63 - _LONGEST_SUFFIX - len(candidate.SUFFIX) - 2} characters")
    base = ("models", key)
    for problem in _validate_model(spec, key, candidate.candidate_model(model), registry, plugin_call):
        if problem not in own and problem.path[:2] == base:
            yield attrs.evolve(problem, path=base + candidate.candidate_path(model, tuple(problem.path[2:])))


def _kv_event_problems(spec: Spec, model: Model, engine: Any, registry: Registry,
                       base: tuple[str | int, ...]) -> Iterator[Diagnostic]:
    """``routing.kv_events``: an engine that publishes them, a target that routes on them, and a model whose
    events the picker can tie to its pods and tokenize for."""
    if not model.routing.kv_events:
        return
    where = (*base, "routing", "kv_events")
    if Capability.KV_EVENTS not in engine.capabilities:
        able = sorted(n for n, r in registry.engines.items() if Capability.KV_EVENTS in r.traits.capabilities)
        yield Diagnostic("E130", f"engine '{engine.name}' publishes no KV-cache events", where,
                         f"engines that do: {', '.join(able)}; or remove kv_events (the picker then guesses "
                         "from the prompts it sent)" if able else "remove kv_events")
        return
    if model.routing.strategy != "prefix":
        yield Diagnostic("E131", f"KV events feed prefix-cache routing; the strategy is '{model.routing.strategy}'",
                         where, 'set routing.strategy = "prefix", or remove kv_events')
    if not registry.targets_having("routes_on_kv_events", spec.stack.targets):
        routers = registry.targets_having("routes_on_kv_events")
        yield Diagnostic("W130", "no target of the stack routes on KV events, so the engines publish none (the "
                         "router target keeps its own approximate prefix index)", where,
                         f"add {' or '.join(repr(n) for n in routers)} to stack.targets, or remove kv_events",
                         Severity.WARNING)
        return
    if model.security.api_key is not None:
        yield Diagnostic("E133", "the endpoint picker tokenizes prompts through the engine's /v1/completions/render, "
                         "which the model's API key guards, and it sends no key", (*base, "security", "api_key"),
                         "remove kv_events, or the API key (keep callers out with the NetworkPolicy instead)")
    if model.disaggregation is not None:
        yield Diagnostic("E134", "stackc wires KV events for models served by one role; this model is "
                         "disaggregated", where, "remove kv_events (the P/D picker uses its approximate prefix index)")
    elif model.serving.nodes > 1:
        yield Diagnostic("E134", "stackc wires KV events for replicas of one pod; this model's replicas span "
                         f"{model.serving.nodes} pods", where, "remove kv_events, or serve the model on one node")
    if model.served_name is not None and "@" in model.served_name:
        yield Diagnostic("E134", f"the served name '{model.served_name}' contains '@', which separates the fields of a KV-event "
                         "topic (kv@POD@MODEL)", (*base, "served_name"), "serve the model under a name without '@'")


def _role_problems(key: str, model: Model, registered: Registered,
                   plugin_call: Callable[..., Any]) -> Iterator[Diagnostic]:
    """A disaggregated model's roles: what they must agree on, and the engine's checks of each role's
    settings, located in the role's table where the role sets the field (once where both roles share it)."""
    base = ("models", key)
    yield from (attrs.evolve(p, path=base + p.path)
                for p in disaggregation.problems(model, registered.traits.kv_connectors, registered.traits.name))
    seen: set[Diagnostic] = set()
    for role in disaggregation.ROLES:
        served = disaggregation.role_model(model, role)
        problems = plugin_call(registered.provider, f"engine '{registered.traits.name}' check()",
                               lambda: list(registered.method("check")(key, served, served.engine_options)))
        for problem in problems:
            located = Diagnostic(problem.code, problem.message,
                                 base + disaggregation.role_path(model, role, tuple(problem.path)), problem.hint,
                                 problem.severity)
            if located not in seen:
                seen.add(located)
                yield located


def _adapter_problems(spec: Spec, model: Model, registry: Registry, base: Path) -> Iterator[Diagnostic]:
    for index, adapter in enumerate(model.serving.lora_adapters):
        path = base + ("serving", "lora_adapters", index)
        source = sources.parse(adapter.source)
        if source is None or source.scheme not in sources.ADAPTER_SCHEMES:
            yield Diagnostic("E013", f"cannot tell where the adapter '{adapter.source}' comes from", path + ("source",),
                             "use a Hugging Face id (org/name or hf://org/name), s3://, gs://, pvc://CLAIM/PATH "
                             "or an absolute path")
        elif adapter.revision is not None and source.scheme != "hf":
            yield Diagnostic("E022", "a revision pins only a Hugging Face adapter", path + ("revision",))
    loaders = registry.targets_having("loads_adapters")
    if any(a.load == "runtime" for a in model.serving.lora_adapters) and not set(loaders) & set(spec.stack.targets):
        index = next(i for i, a in enumerate(model.serving.lora_adapters) if a.load == "runtime")
        yield Diagnostic("E028", "no target in the stack loads run-time adapters into the replicas",
                         base + ("serving", "lora_adapters", index, "load"),
                         f"add {' or '.join(loaders) or 'a target that loads them'} to stack.targets, "
                         'or set load = "startup"')


def bound_problems(obj: Any, path: Path = ()) -> Iterator[Diagnostic]:
    """Every value against the bounds its field declares (``stackc.spec.model.field``), through nested objects."""
    problems: list[Diagnostic] = []
    _collect_bound_problems(obj, path, problems)
    return iter(problems)


#: the metadata keys of ``stackc.spec.model.field`` that bound a value
_BOUND_KEYS = ("minimum", "maximum", "form", "keys", "min_items")


@functools.cache
def _walk_plan(cls: type) -> tuple[tuple[str, Mapping[str, Any], bool], ...]:
    """The fields of an attrs class the bound walk looks at, each with its bounds and whether its value may be
    a float or hold attrs objects, computed once per class from the declared types: most of a spec's thousands
    of fields are unbounded strings, integers and booleans, which can break no bound and hold nothing."""
    fields = attrs.fields(cls)
    if any(isinstance(f.type, str) for f in fields):  # as cattrs does before structuring the class
        try:
            attrs.resolve_types(cls)
        except Exception:  # an annotation naming what its module lacks stays a string: looked at
            pass
    plan = []
    for f in fields:
        bounds = {k: f.metadata[k] for k in _BOUND_KEYS if k in f.metadata}
        plain = _plain(f.type)
        if bounds or not plain:
            plan.append((f.name, bounds, not plain))
    return tuple(plan)


def _plain(declared: Any, scalars: tuple[type, ...] = (str, int, bool, NoneType)) -> bool:
    """Whether a value declared so is never a float nor an attrs object, nor a tuple or mapping holding an attrs
    object (its items may be floats: only a field's own value must be finite). ``Any``, a string left
    unresolved or anything unforeseen may be anything."""
    if isinstance(declared, type):
        return issubclass(declared, scalars)
    origin = typing.get_origin(declared)
    if origin is Literal:
        return all(isinstance(choice, scalars) for choice in typing.get_args(declared))
    if origin in (typing.Union, UnionType):
        return all(_plain(member, scalars) for member in typing.get_args(declared))
    if origin in (tuple, list, dict, Mapping):
        items = [a for a in typing.get_args(declared) if a is not Ellipsis]
        return bool(items) and all(_plain(item, (*scalars, float)) for item in items)
    return False


def _collect_bound_problems(obj: Any, path: Path, problems: list[Diagnostic]) -> None:
    # only values that can break a bound (or a float, which must be finite) are checked, and only attrs objects
    # are walked into
    for name, bounds, may_hold in _walk_plan(type(obj)):
        value = getattr(obj, name)
        if value is None:
            continue
        if bounds or isinstance(value, float):
            problems.extend(_field_problems(value, bounds, path + (name,)))
        if not may_hold:
            continue
        if isinstance(value, tuple):
            items: Iterable[tuple[Any, Any]] = enumerate(value)
        elif isinstance(value, Mapping):
            items = value.items()
        else:
            if attrs.has(type(value)):
                _collect_bound_problems(value, path + (name,), problems)
            continue
        for key, item in items:
            if attrs.has(type(item)):
                _collect_bound_problems(item, path + (name, key), problems)


def _field_problems(value: Any, bounds: Mapping[str, Any], path: Path) -> Iterator[Diagnostic]:
    if isinstance(value, float) and not math.isfinite(value):  # TOML's inf and nan reach no API as numbers
        yield Diagnostic("E014", f"must be a finite number, got {value}", path)
    elif isinstance(value, int) and not isinstance(value, bool):
        if "minimum" in bounds and value < bounds["minimum"]:
            yield Diagnostic("E014", f"must be at least {bounds['minimum']}, got {value}", path)
        if "maximum" in bounds and value > bounds["maximum"]:
            yield Diagnostic("E014", f"must be at most {bounds['maximum']}, got {value}", path)
    elif isinstance(value, str) and "form" in bounds:
        yield from _form_problems(value, bounds["form"], path)
    elif isinstance(value, tuple):
        if len(value) < bounds.get("min_items", 0):
            yield Diagnostic("E014", f"needs at least {bounds['min_items']} item(s)", path)
        for index, item in enumerate(value):
            if isinstance(item, str) and "form" in bounds:
                yield from _form_problems(item, bounds["form"], path + (index,))
    elif isinstance(value, Mapping):
        for key, item in value.items():
            if "keys" in bounds:
                yield from _form_problems(key, bounds["keys"], path + (key,))
            if isinstance(item, str) and "form" in bounds:
                yield from _form_problems(item, bounds["form"], path + (key,))


def _form_problems(text: str, form: Form, path: Path) -> Iterator[Diagnostic]:
    if form.max_length is not None and len(text) > form.max_length:
        yield Diagnostic(form.code, f"'{_shorten(text)}' is too long ({len(text)} characters, at most {form.max_length})",
                         path)
    elif not re.fullmatch(form.pattern, text):
        yield Diagnostic(form.code, f"'{_shorten(text)}' is not {form.what}", path)


def _shorten(text: str) -> str:
    return text if len(text) <= 40 else text[:37] + "..."
