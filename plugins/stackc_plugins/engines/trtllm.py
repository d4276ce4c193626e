"""NVIDIA TensorRT-LLM, two ways: ``trtllm-serve`` (OpenAI API, no engine build) or Triton with
the TensorRT-LLM backend (an init container builds the engine onto the cache volume once).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

import attrs

from stackc import hookimpl
from stackc.diagnostics import Diagnostic, Severity
from stackc.plan import images
from stackc.plan.engine import (
    Capability,
    Container,
    EngineRequest,
    EngineResult,
    MetricNames,
    Metrics,
    Mount,
    Port,
    Probe,
)
from stackc.records import frozen
from stackc.registry import Registry
from stackc.spec.model import PORT_MAX, Model
from stackc_plugins.engines._common import (
    CACHE_PATH,
    TEMPLATE_FILE,
    TEMPLATE_PATH,
    check_parallelism,
    flags,
    hf_env,
    model_location,
)

SERVE_IMAGE = images.TRTLLM_SERVE.image
TRITON_IMAGE = images.TRITON_TRTLLM.image
TRITON_USER = 1000  # the Triton images' user triton-server
PORT = 8000
SERVE_METRICS = MetricNames(
    running="trtllm_num_requests_running", waiting="trtllm_num_requests_waiting",
    kv_cache_usage="trtllm_kv_cache_utilization", time_to_first_token="trtllm_time_to_first_token_seconds",
    generation_tokens="trtllm_generation_tokens_total",
)
TRITON_METRICS = MetricNames(
    running='nv_trt_llm_request_metrics{request_type="active"}',
    waiting='nv_trt_llm_request_metrics{request_type="waiting"}',
    kv_cache_usage='nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type="fraction"}',
)


@frozen
class TrtllmOptions:
    """``[models.NAME.engine_options]`` for TensorRT-LLM."""

    mode: Literal["serve", "triton"] = attrs.field(
        default="serve", metadata={"doc": "`serve`: trtllm-serve, OpenAI API; `triton`: Triton + TensorRT-LLM backend."})
    checkpoint_dir: str | None = attrs.field(
        default=None, metadata={"doc": "triton: the TensorRT-LLM checkpoint the engine is built from (a path)."})
    model_repository: str | None = attrs.field(
        default=None, metadata={"doc": "triton: the Triton model repository whose config.pbtxt names the engine dir "
                                       "(default: CACHE/trtllm/MODEL/repository)."})
    max_batch_size: int | None = attrs.field(default=None, metadata={"doc": "Largest batch the engine is built for.",
                                                                                 "minimum": 1})
    grpc_port: int = attrs.field(default=8001, metadata={
        "doc": "triton: Triton's gRPC port (`--grpc-port`); 0 turns gRPC off (`--allow-grpc=false`).",
        "minimum": 0, "maximum": PORT_MAX})
    metrics_port: int = attrs.field(default=8002, metadata={
        "doc": "triton: Triton's metrics port (`--metrics-port`).", "minimum": 1, "maximum": PORT_MAX})


#: options only Triton mode reads
TRITON_ONLY = ("checkpoint_dir", "model_repository", "grpc_port", "metrics_port")


class TrtllmEngine:
    name = "trtllm"
    description = "TensorRT-LLM: trtllm-serve (OpenAI) or Triton with an engine built at first start"
    capabilities = frozenset({
        Capability.TENSOR_PARALLEL, Capability.PIPELINE_PARALLEL, Capability.MAX_CONTEXT,
        Capability.GPU_MEMORY_FRACTION, Capability.MAX_CONCURRENT_SEQUENCES, Capability.PREFIX_CACHING_TOGGLE,
        Capability.CHAT_TEMPLATE, Capability.ACCELERATORS, Capability.PORT,
    })
    options_type = TrtllmOptions
    owned_flags = {"--port": "port", "--http-port": "port"}
    memory_accounting = "trtllm"  # the fit check sizes its KV cache as trtllm does
    #: trtllm-serve answers to the model argument it loaded: a platform's /mnt/models would become the name
    platform_weights = False

    def check(self, key: str, model: Model, options: TrtllmOptions) -> Iterator[Diagnostic]:
        if options.mode == "triton" and options.checkpoint_dir is None:
            yield Diagnostic("E038", "Triton mode builds the engine from a TensorRT-LLM checkpoint: set checkpoint_dir",
                             ("engine_options", "checkpoint_dir"))
        if options.mode == "serve" and model.served_name and model.served_name != model.model.removeprefix("hf://"):
            yield Diagnostic("E039", "trtllm-serve answers to its model argument only; it cannot rename the model",
                             ("served_name",), "drop served_name; use aliases with the router target")
        if options.mode == "triton":
            yield from _triton_port_clashes(model, options)
        else:
            for name in TRITON_ONLY:
                if getattr(options, name) != attrs.fields_dict(TrtllmOptions)[name].default:
                    yield Diagnostic("W035", f"engine_options.{name} is Triton's: trtllm-serve does not use it",
                                     ("engine_options", name), 'set mode = "triton", or drop it', Severity.WARNING)
        yield from check_parallelism(model)

    def lower(self, request: EngineRequest) -> EngineResult:
        options: TrtllmOptions = request.options or TrtllmOptions()
        return _triton(request, options) if options.mode == "triton" else _serve(request, options)


def _serve(request: EngineRequest, options: TrtllmOptions) -> EngineResult:
    model = request.model
    serving = model.serving
    mounts = [Mount(request.cache_volume, CACHE_PATH)]
    location = model_location(request, mounts)
    port = Port("http", model.port or PORT)
    args = [location, "--host", "0.0.0.0", "--port", str(port.number)]
    args += flags([
        ("--revision", request.weights.revision),
        ("--tp_size", serving.tensor_parallel if serving.tensor_parallel > 1 else None),
        ("--pp_size", serving.pipeline_parallel if serving.pipeline_parallel > 1 else None),
        ("--max_seq_len", serving.max_context),
        ("--kv_cache_free_gpu_memory_fraction", serving.gpu_memory_fraction),
        ("--max_batch_size", serving.max_concurrent_sequences or options.max_batch_size),
    ])
    if serving.prefix_caching is False:
        args.append("--disable_kv_cache_reuse")
    if request.chat_template_volume:
        mounts.append(Mount(request.chat_template_volume, TEMPLATE_PATH, read_only=True))
        args += ["--chat_template", TEMPLATE_FILE]
    args += model.engine_args
    container = Container(
        name="engine", image=model.image or SERVE_IMAGE, command=("trtllm-serve",), args=tuple(args),
        env=tuple(hf_env(request)), ports=(port,), mounts=tuple(mounts),
        startup_probe=Probe("/health", period_seconds=10, timeout_seconds=5, failure_threshold=180),
        readiness_probe=Probe("/health", period_seconds=5, timeout_seconds=5, failure_threshold=3),
        liveness_probe=Probe("/health", period_seconds=10, timeout_seconds=5, failure_threshold=3),
    )
    return EngineResult(container=container, served_names=(location,), port=port,
                        metrics=Metrics("http", "/prometheus/metrics", SERVE_METRICS), needs_shm=True)


def _triton_port_clashes(model: Model, options: TrtllmOptions) -> Iterator[Diagnostic]:
    """Triton opens its HTTP, gRPC and metrics ports side by side: each must differ (located at what set it)."""
    http = model.port or PORT
    for name, number in (("grpc_port", options.grpc_port), ("metrics_port", options.metrics_port)):
        if number == http:
            yield Diagnostic("E151", f"Triton's {name.split('_')[0]} port {number} is also its HTTP port",
                             ("port",) if model.port else ("engine_options", name),
                             f"set engine_options.{name} to another port" + (" (grpc_port = 0 turns gRPC off)"
                                                                             if name == "grpc_port" else ""))
    if options.grpc_port == options.metrics_port:
        # the one the spec moved onto the other's default
        moved = "grpc_port" if options.grpc_port != TrtllmOptions().grpc_port else "metrics_port"
        yield Diagnostic("E151", f"Triton's gRPC and metrics ports are both {options.metrics_port}",
                         ("engine_options", moved), f"set engine_options.{moved} to another port")


def _triton(request: EngineRequest, options: TrtllmOptions) -> EngineResult:
    model = request.model
    serving = model.serving
    home = f"{CACHE_PATH}/trtllm/{request.model_key}"
    engine_dir = f"{home}/engine-tp{serving.tensor_parallel}-pp{serving.pipeline_parallel}"
    build = ["trtllm-build", "--checkpoint_dir", options.checkpoint_dir or "", "--output_dir", f"{engine_dir}.partial"]
    build += flags([
        ("--tp_size", serving.tensor_parallel), ("--pp_size", serving.pipeline_parallel),
        ("--max_seq_len", serving.max_context),
        ("--max_batch_size", serving.max_concurrent_sequences or options.max_batch_size),
    ])
    # built once per (model, parallelism) and kept on the cache volume; a partial build is redone
    script = (f'set -e; if [ ! -f {engine_dir}/config.json ]; then rm -rf {engine_dir}.partial; '
              f'{" ".join(build)}; mv {engine_dir}.partial {engine_dir}; fi')
    mounts = (Mount(request.cache_volume, CACHE_PATH),)
    image = model.image or TRITON_IMAGE
    builder = Container(name="build-engine", image=image, command=("/bin/sh", "-c", script),
                        env=tuple(hf_env(request)), mounts=mounts)
    repository = options.model_repository or f"{home}/repository"
    http, metrics_port = Port("http", model.port or PORT), Port("metrics", options.metrics_port)
    grpc = (Port("grpc", options.grpc_port, "grpc"),) if options.grpc_port else ()
    grpc_flag = f"--grpc-port={options.grpc_port}" if grpc else "--allow-grpc=false"
    container = Container(
        name="engine", image=image, command=("tritonserver",),
        args=(f"--model-repository={repository}", f"--http-port={http.number}", grpc_flag,
              f"--metrics-port={metrics_port.number}", *model.engine_args),
        env=(*hf_env(request),), ports=(http, *grpc, metrics_port), mounts=mounts,
        startup_probe=Probe("/v2/health/ready", period_seconds=10, timeout_seconds=5, failure_threshold=180),
        readiness_probe=Probe("/v2/health/ready", period_seconds=5, timeout_seconds=5, failure_threshold=3),
        liveness_probe=Probe("/v2/health/live", period_seconds=10, timeout_seconds=5, failure_threshold=3),
    )
    return EngineResult(container=container, served_names=(request.model_key,), port=http,
                        metrics=Metrics("metrics", "/metrics", TRITON_METRICS), init_containers=(builder,),
                        needs_shm=True, run_as_user=TRITON_USER, run_as_group=TRITON_USER)


@hookimpl
def stackc_add_engines(registry: Registry) -> None:
    registry.add_engine(TrtllmEngine())
