"""Pieces several engines share: served names, model paths, probes, Hugging Face cache env."""

from __future__ import annotations

from collections.abc import Iterator

from stackc.diagnostics import Diagnostic
from stackc.plan.engine import EngineRequest, EnvVar, Mount, Probe
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


def check_parallelism(model: Model) -> Iterator[Diagnostic]:
    """A replica needs one device per tensor × pipeline shard (engines that count GPUs)."""
    parallel = model.serving.tensor_parallel * model.serving.pipeline_parallel
    if model.accelerators.count < parallel and (model.accelerators.count or parallel > 1):
        yield Diagnostic("E030", f"tensor_parallel × pipeline_parallel = {parallel} needs {parallel} accelerators "
                         f"per replica, accelerators.count is {model.accelerators.count}",
                         ("serving", "tensor_parallel"), f"set accelerators.count = {parallel}")
