"""Ollama: ``ollama serve``, configured by environment; the model is pulled before the pod is ready.

Ollama's ``/`` answers as soon as the server runs, model or not, so an init container pulls
the model (and copies it to every alias) into the cache volume first.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterator

from stackc import hookimpl
from stackc.diagnostics import Diagnostic, Severity
from stackc.plan import images
from stackc.plan.engine import (
    Capability,
    Container,
    EngineRequest,
    EngineResult,
    EnvVar,
    LocalRun,
    Mount,
    Port,
    Probe,
)
from stackc.registry import Registry
from stackc.spec.model import Model
from stackc_plugins.engines._common import CACHE_PATH, listen_address

IMAGE = images.OLLAMA.image
PORT = 11434
BINARY = "/bin/ollama"


class OllamaEngine:
    name = "ollama"
    description = "Ollama (models from the Ollama library; no API key, no metrics, no tensor parallelism)"
    capabilities = frozenset({
        Capability.MULTIPLE_SERVED_NAMES, Capability.MAX_CONTEXT, Capability.MAX_CONCURRENT_SEQUENCES,
        Capability.ACCELERATORS, Capability.CPU_ONLY, Capability.OLLAMA_LIBRARY, Capability.PORT,
    })
    options_type = None
    local_run = LocalRun({BINARY: ("ollama",)}, "install Ollama from ollama.com")

    def check(self, key: str, model: Model, options: None) -> Iterator[Diagnostic]:
        if not model.model.startswith("ollama://"):
            yield Diagnostic("E033", "Ollama serves models from its library: use model = \"ollama://NAME:TAG\"",
                             ("model",), "for example ollama://llama3.2:3b")
        if model.security.hf_token is not None:
            yield Diagnostic("W033", "Ollama pulls from its own library, not the Hugging Face Hub: hf_token is not "
                             "used", ("security", "hf_token"), "drop it", Severity.WARNING)
        if model.served_name is not None and model.served_name != model.model.removeprefix("ollama://"):
            yield Diagnostic("E039", "Ollama answers to the library tag it pulled; it cannot rename the model",
                             ("served_name",), "drop served_name; use aliases (the router or gateway serve them)")

    def lower(self, request: EngineRequest) -> EngineResult:
        model = request.model
        tag = request.source.location
        aliases = [a for a in model.aliases if a != tag]
        env = [EnvVar("OLLAMA_MODELS", f"{CACHE_PATH}/ollama"), EnvVar("OLLAMA_KEEP_ALIVE", "-1")]
        if model.serving.max_context:
            env.append(EnvVar("OLLAMA_CONTEXT_LENGTH", str(model.serving.max_context)))
        if model.serving.max_concurrent_sequences:
            env.append(EnvVar("OLLAMA_NUM_PARALLEL", str(model.serving.max_concurrent_sequences)))
        mounts = (Mount(request.cache_volume, CACHE_PATH),)
        script = "; ".join([
            "set -e",
            f"{BINARY} serve & server=$!",
            f"until {BINARY} list >/dev/null 2>&1; do sleep 1; done",
            f"{BINARY} pull {shlex.quote(tag)}",
            *[f"{BINARY} cp {shlex.quote(tag)} {shlex.quote(alias)}" for alias in aliases],
            "kill $server",
        ])
        pull = Container(name="pull-model", image=model.image or IMAGE, command=("/bin/sh", "-c", script),
                         env=(*env, EnvVar("OLLAMA_HOST", f"127.0.0.1:{PORT}")), mounts=mounts)
        host, number = listen_address(request, PORT)
        port = Port("http", number)
        container = Container(
            name="engine", image=model.image or IMAGE, command=(BINARY, "serve"), args=tuple(model.engine_args),
            env=(*env, EnvVar("OLLAMA_HOST", f"{host}:{port.number}")), ports=(port,), mounts=mounts,
            startup_probe=Probe("/", period_seconds=5, timeout_seconds=5, failure_threshold=60),
            readiness_probe=Probe("/", period_seconds=5, timeout_seconds=5, failure_threshold=3),
            liveness_probe=Probe("/", period_seconds=10, timeout_seconds=5, failure_threshold=3),
        )
        return EngineResult(container=container, served_names=(tag, *aliases), port=port, init_containers=(pull,))


@hookimpl
def stackc_add_engines(registry: Registry) -> None:
    registry.add_engine(OllamaEngine())
