"""vLLM: ``vllm serve`` with the OpenAI-compatible server (the reference engine)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import attrs

from stackc import hookimpl
from stackc.diagnostics import Diagnostic
from stackc.model import Model
from stackc.registry import Registry
from stackc.workload import (
    Capability,
    Container,
    EngineRequest,
    EngineResult,
    EnvVar,
    LocalRun,
    Metrics,
    MetricNames,
    Mount,
    Port,
    Probe,
)

IMAGE = "vllm/vllm-openai:v0.33.0"
CPU_IMAGE = "vllm/vllm-openai-cpu:v0.33.0-x86_64"
PORT = 8000
CACHE_PATH = "/cache"
MODEL_PATH = "/models"
TEMPLATE_PATH = "/etc/stackc/chat-template"


@attrs.frozen
class VllmOptions:
    """``[models.NAME.engine_options]`` for vLLM."""

    load_format: str | None = attrs.field(default=None, metadata={"doc": "`--load-format`, e.g. `runai_streamer`."})
    kv_cache_dtype: str | None = attrs.field(default=None, metadata={"doc": "`--kv-cache-dtype`, e.g. `fp8`."})
    max_num_batched_tokens: int | None = attrs.field(default=None, metadata={"doc": "`--max-num-batched-tokens`."})
    enforce_eager: bool = attrs.field(default=False, metadata={"doc": "`--enforce-eager`: skip CUDA graphs (faster start)."})


METRICS = MetricNames(
    running="vllm:num_requests_running",
    waiting="vllm:num_requests_waiting",
    kv_cache_usage="vllm:kv_cache_usage_perc",
    prefix_cache_hits="vllm:prefix_cache_hits_total",
    prefix_cache_queries="vllm:prefix_cache_queries_total",
    time_to_first_token="vllm:time_to_first_token_seconds",
)


class VllmEngine:
    name = "vllm"
    description = "vLLM OpenAI-compatible server (CUDA/ROCm; CPU image without accelerators)"
    capabilities = frozenset(Capability)
    options_type = VllmOptions
    local_run = LocalRun({"vllm": ("vllm",)}, "pip install vllm (on a machine with a GPU)")

    def check(self, key: str, model: Model, options: VllmOptions) -> Iterator[Diagnostic]:
        parallel = model.serving.tensor_parallel * model.serving.pipeline_parallel
        if model.accelerators.count and model.accelerators.count < parallel:
            yield Diagnostic(
                "E030",
                f"tensor_parallel × pipeline_parallel = {parallel} needs {parallel} accelerators per replica, "
                f"accelerators.count is {model.accelerators.count}",
                ("serving", "tensor_parallel"),
                f"set accelerators.count = {parallel}",
            )
        for index, adapter in enumerate(model.serving.lora_adapters):
            if "://" in adapter.source and not adapter.source.startswith("hf://"):
                yield Diagnostic("E031", "vLLM loads LoRA adapters from a Hugging Face id or a path",
                                 ("serving", "lora_adapters", index, "source"))

    def lower(self, request: EngineRequest) -> EngineResult:
        model = request.model
        options: VllmOptions = request.options or VllmOptions()
        served = served_names(request)
        mounts = [Mount(request.cache_volume, CACHE_PATH)]
        args = [*model_argument(request, mounts)]
        args += ["--host", "0.0.0.0", "--port", str(PORT), "--served-model-name", *served]
        serving = model.serving
        flags: list[tuple[str, Any]] = [
            ("--revision", model.revision),
            ("--tensor-parallel-size", serving.tensor_parallel if serving.tensor_parallel > 1 else None),
            ("--pipeline-parallel-size", serving.pipeline_parallel if serving.pipeline_parallel > 1 else None),
            ("--max-model-len", serving.max_context),
            ("--gpu-memory-utilization", serving.gpu_memory_fraction),
            ("--dtype", serving.dtype),
            ("--quantization", serving.quantization),
            ("--max-num-seqs", serving.max_concurrent_sequences),
            ("--load-format", options.load_format or ("runai_streamer" if request.source.scheme in ("s3", "gs") else None)),
            ("--kv-cache-dtype", options.kv_cache_dtype),
            ("--max-num-batched-tokens", options.max_num_batched_tokens),
        ]
        args += [part for flag, value in flags if value is not None for part in (flag, str(value))]
        if serving.prefix_caching is not None:
            args.append("--enable-prefix-caching" if serving.prefix_caching else "--no-enable-prefix-caching")
        if options.enforce_eager:
            args.append("--enforce-eager")
        if request.chat_template_volume:
            mounts.append(Mount(request.chat_template_volume, TEMPLATE_PATH, read_only=True))
            args += ["--chat-template", f"{TEMPLATE_PATH}/chat-template.jinja"]
        if serving.lora_adapters:
            args += ["--enable-lora", "--lora-modules"]
            args += [f"{a.name}={a.source.removeprefix('hf://')}" for a in serving.lora_adapters]
            if serving.max_lora_rank:
                args += ["--max-lora-rank", str(serving.max_lora_rank)]
        args += model.engine_args
        env = [
            EnvVar("HF_HOME", f"{CACHE_PATH}/huggingface"),
            EnvVar("VLLM_CACHE_ROOT", f"{CACHE_PATH}/vllm"),
        ]
        if model.security.hf_token:
            env.append(EnvVar("HF_TOKEN", secret=model.security.hf_token))
        if model.security.api_key:
            env.append(EnvVar("VLLM_API_KEY", secret=model.security.api_key))
        if serving.lora_adapters:
            env.append(EnvVar("VLLM_ALLOW_RUNTIME_LORA_UPDATING", "False"))
        port = Port("http", PORT)
        container = Container(
            name="engine",
            image=model.image or (IMAGE if model.accelerators.count else CPU_IMAGE),
            command=("vllm", "serve"),
            args=tuple(args),
            env=tuple(env),
            ports=(port,),
            mounts=tuple(mounts),
            # The server listens only once weights are loaded: allow 30 minutes for download + load.
            startup_probe=Probe("/health", period_seconds=10, timeout_seconds=5, failure_threshold=180),
            readiness_probe=Probe("/health", period_seconds=5, timeout_seconds=5, failure_threshold=3),
            liveness_probe=Probe("/health", period_seconds=10, timeout_seconds=5, failure_threshold=3),
        )
        return EngineResult(container=container, served_names=served, port=port,
                            metrics=Metrics("http", "/metrics", METRICS), needs_shm=True)


def served_names(request: EngineRequest) -> tuple[str, ...]:
    """The primary served name (explicit, else the Hugging Face id, else the model key) and aliases."""
    model = request.model
    primary = model.served_name or (request.source.location if request.source.scheme == "hf" else request.model_key)
    return (primary, *[alias for alias in model.aliases if alias != primary])


def model_argument(request: EngineRequest, mounts: list[Mount]) -> tuple[str]:
    """What ``vllm serve`` loads: an id, a URI (streamed), or a path on a mounted volume."""
    source = request.source
    if source.scheme == "hf":
        return (source.location,)
    if source.scheme in ("s3", "gs", "path"):
        return (source.location,)
    mounts.append(Mount("model-source", MODEL_PATH, read_only=True))
    if source.scheme == "pvc":
        return (MODEL_PATH + source.location.rstrip("/"),)
    return (MODEL_PATH,)


@hookimpl
def stackc_add_engines(registry: Registry) -> None:
    registry.add_engine(VllmEngine())
