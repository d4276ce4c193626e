"""Pieces several engines share: served names, model paths, probes, Hugging Face cache env."""

from __future__ import annotations

from collections.abc import Iterator

import attrs

from stackc.diagnostics import Diagnostic
from stackc.plan.engine import Container, EngineRequest, EnvVar, Mount, Probe
from stackc.spec.model import Model

CACHE_PATH = "/cache"
TEMPLATE_PATH = "/etc/stackc/chat-template"
TEMPLATE_FILE = f"{TEMPLATE_PATH}/chat-template.jinja"


def served_names(request: EngineRequest) -> tuple[str, ...]:
    """The primary served name (explicit, else the Hugging Face id, else the model key) and aliases."""
    model = request.model
    primary = model.served_name or (request.source.location if request.source.scheme == "hf" else request.model_key)
    return (primary, *[alias for alias in model.aliases if alias != primary])


def model_location(request: EngineRequest, mounts: list[Mount]) -> str:
    """Where the engine finds the weights (the core decided): an id, a URI, or a path on a mounted volume."""
    if request.weights.mount is not None:
        mounts.append(request.weights.mount)
    return request.weights.location


#: a pod's engine listens on every interface: the Service, probes and other pods reach it by the pod's IP
ALL_INTERFACES = "0.0.0.0"


def listen_address(request: EngineRequest, default_port: int) -> tuple[str, int]:
    """The host and port the engine listens on: in a pod every interface at the spec's port (else the
    engine's default); on one machine where ``request.listen`` says (``stackc up``, one per replica)."""
    if request.listen is not None:
        return request.listen.host, request.listen.port
    return ALL_INTERFACES, request.model.port or default_port


def hf_env(request: EngineRequest) -> list[EnvVar]:
    env = [EnvVar("HF_HOME", f"{CACHE_PATH}/huggingface")]
    if request.model.security.hf_token:
        env.append(EnvVar("HF_TOKEN", secret=request.model.security.hf_token))
    return env


def http_probes(path: str, *, startup_minutes: int = 30, timeout: int = 5) -> dict[str, Probe]:
    """Startup long enough for download and load, then cheap readiness and liveness on one path."""
    return {
        "startup_probe": Probe(path, period_seconds=10, timeout_seconds=timeout, failure_threshold=startup_minutes * 6),
        "readiness_probe": Probe(path, period_seconds=5, timeout_seconds=timeout, failure_threshold=3),
        "liveness_probe": Probe(path, period_seconds=10, timeout_seconds=timeout, failure_threshold=3),
    }


def flags(pairs: list[tuple[str, object]]) -> list[str]:
    """``--flag value`` for every pair whose value is set."""
    return [part for flag, value in pairs if value is not None for part in (flag, str(value))]


#: variables LeaderWorkerSet sets in every container of a group (Kubernetes expands ``$(NAME)`` in args)
LEADER_ADDRESS = "$(LWS_LEADER_ADDRESS)"
WORKER_INDEX = "$(LWS_WORKER_INDEX)"


def group_worker(leader: Container, args: list[str]) -> Container:
    """A multi-node replica's worker: the leader's container with its own args, no ports, no probes
    (only the leader serves HTTP; the group restarts together when a worker fails)."""
    return attrs.evolve(leader, args=tuple(args), ports=(), startup_probe=None, readiness_probe=None,
                        liveness_probe=None)


def lora_args(request: EngineRequest, list_flag: str, max_loras_flag: str,
              runtime_extra: tuple[str, ...] = ()) -> list[str]:
    """The LoRA flags vLLM and SGLang share in form: adapters loaded at start as ``NAME=PATH`` after
    ``list_flag``, ``runtime_extra`` when some are loaded at run time, then the limits."""
    if not request.adapters:
        return []
    args = ["--enable-lora"]
    at_startup = [a for a in request.adapters if not a.runtime]
    if at_startup:
        args += [list_flag, *(f"{a.name}={a.location}" for a in at_startup)]
    if any(a.runtime for a in request.adapters):
        args += runtime_extra
    serving = request.model.serving
    return args + flags([(max_loras_flag, serving.max_loras), ("--max-lora-rank", serving.max_lora_rank)])


def check_parallelism(model: Model, multi_node: bool = False) -> Iterator[Diagnostic]:
    """A replica needs one device per tensor × pipeline shard (engines that count GPUs); a
    multi-node replica shards over exactly the devices of its pods (``multi_node``: the engine can)."""
    parallel = model.serving.tensor_parallel * model.serving.pipeline_parallel
    count, nodes = model.accelerators.count, model.serving.nodes
    if nodes > 1:
        if count == 0:
            yield Diagnostic("E030", f"serving.nodes = {nodes} spreads a replica over accelerators, but "
                             "accelerators.count is 0", ("accelerators", "count"),
                             "set accelerators.count to the devices of each pod")
        elif parallel != count * nodes:
            yield Diagnostic("E030", f"{nodes} nodes × {count} accelerators = {count * nodes} devices per replica, "
                             f"but tensor_parallel × pipeline_parallel = {parallel}", ("serving", "nodes"),
                             "make tensor_parallel × pipeline_parallel equal nodes × accelerators.count")
    elif count < parallel and (count or parallel > 1):
        hint = f"set accelerators.count = {parallel}"
        if multi_node and count > 1 and parallel % count == 0:
            hint += f", or serving.nodes = {parallel // count} to spread each replica over {parallel // count} pods"
        yield Diagnostic("E030", f"tensor_parallel × pipeline_parallel = {parallel} needs {parallel} accelerators "
                         f"per replica, accelerators.count is {count}", ("serving", "tensor_parallel"), hint)


def ranks_per_pod(model: Model) -> int:
    """The engine's workers on one pod: tensor × pipeline parallelism, divided over a multi-node replica's pods."""
    serving = model.serving
    return max(1, serving.tensor_parallel * serving.pipeline_parallel // serving.nodes)
