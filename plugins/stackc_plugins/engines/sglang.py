"""SGLang: ``python3 -m sglang.launch_server`` (RadixAttention prefix caching on by default)."""

from __future__ import annotations

from collections.abc import Iterator

from stackc import hookimpl
from stackc.diagnostics import Diagnostic
from stackc.plan import images
from stackc.plan.engine import (
    Capability,
    Container,
    EngineRequest,
    EngineResult,
    EnvVar,
    MetricNames,
    Metrics,
    Mount,
    Port,
    Probe,
)
from stackc.registry import Registry
from stackc.spec.model import Model
from stackc_plugins.engines._common import (
    CACHE_PATH,
    LEADER_ADDRESS,
    TEMPLATE_FILE,
    TEMPLATE_PATH,
    WORKER_INDEX,
    check_parallelism,
    flags,
    group_worker,
    hf_env,
    lora_args,
    model_location,
    ranks_per_pod,
    served_names,
)

IMAGE = images.SGLANG.image
PORT = 30000
#: where rank 0 listens for the other ranks of a multi-node replica (``--dist-init-addr``)
DIST_INIT_PORT = 20000
#: where prefill servers answer decode servers' bootstrap requests (``--disaggregation-bootstrap-port``)
BOOTSTRAP_PORT = 8998
METRICS = MetricNames(
    running="sglang:num_running_reqs",
    waiting="sglang:num_queue_reqs",
    kv_cache_usage="sglang:token_usage",
    time_to_first_token="sglang:time_to_first_token_seconds",
    generation_tokens="sglang:generation_tokens_total",
    kv_cache_capacity="sglang:max_total_num_tokens",
)


class SglangEngine:
    name = "sglang"
    description = "SGLang server (one served name; aliases are served by the router or gateway)"
    capabilities = frozenset(Capability) - {Capability.MULTIPLE_SERVED_NAMES, Capability.CPU_ONLY,
                                            Capability.OLLAMA_LIBRARY, Capability.KV_EVENTS}
    options_type = None
    owned_flags = {"--port": "port", "--served-model-name": "served_name"}
    memory_accounting = "sglang"  # the fit check sizes its KV cache as sglang does
    #: either transfer backend: the router pairs a prefill and a decode server through the bootstrap port
    kv_connectors = {"nixl": "bootstrap", "mooncake": "bootstrap"}

    def check(self, key: str, model: Model, options: None) -> Iterator[Diagnostic]:
        yield from check_parallelism(model, multi_node=True)
        if model.kv_offload is not None and model.kv_offload.backend != "native":
            yield Diagnostic("E020", "SGLang offloads KV blocks with its own hierarchical cache, not LMCache",
                             ("kv_offload", "backend"), 'use backend = "native"')
        if model.kv_offload is not None and model.kv_offload.remote:
            yield Diagnostic("E123", "SGLang's HiCache has no client for LMCache's cache server",
                             ("kv_offload", "remote"), 'serve this model with engine = "vllm" and backend = "lmcache", '
                             "or give HiCache a shared storage backend of its own through engine_args")
        if model.kv_offload is not None and model.serving.prefix_caching is False:
            yield Diagnostic("E020", "SGLang's hierarchical cache extends its radix (prefix) cache, which "
                             "prefix_caching = false turns off", ("kv_offload",), "remove one of them")
        if model.disaggregation is not None:
            for index, arg in enumerate(model.engine_args):
                if arg.startswith("--disaggregation-"):
                    yield Diagnostic("E102", f"engine_args sets {arg.split('=', 1)[0]}, which stackc sets from "
                                     "disaggregation", ("engine_args", index),
                                     "remove it; set disaggregation.connector, kv_port or ib_devices")
        adapters = model.serving.lora_adapters
        if any(a.load == "runtime" for a in adapters) and model.serving.max_lora_rank is None:
            # SGLang sizes its LoRA buffers at start: from the flags, for adapters it hasn't seen yet
            yield Diagnostic("E031", "SGLang needs max_lora_rank to load adapters at run time",
                             ("serving", "max_lora_rank"), "set it to the largest rank of the adapters")

    def lower(self, request: EngineRequest) -> EngineResult:
        model = request.model
        serving = model.serving
        mounts = [Mount(request.cache_volume, CACHE_PATH)]
        primary = served_names(request)[0]
        port = Port("http", model.port or PORT)
        args = ["--model-path", model_location(request, mounts), "--host", "0.0.0.0", "--port", str(port.number),
                "--served-model-name", primary, "--enable-metrics"]
        args += flags([
            ("--revision", request.weights.revision),
            ("--tp-size", serving.tensor_parallel if serving.tensor_parallel > 1 else None),
            ("--pp-size", serving.pipeline_parallel if serving.pipeline_parallel > 1 else None),
            ("--context-length", serving.max_context),
            ("--mem-fraction-static", serving.gpu_memory_fraction),
            ("--dtype", serving.dtype),
            ("--quantization", serving.quantization),
            ("--max-running-requests", serving.max_concurrent_sequences),
        ])
        if serving.prefix_caching is False:
            args.append("--disable-radix-cache")
        if model.kv_offload is not None:
            # HiCache: the radix tree spills to a host-memory tier of this many GB
            args += ["--enable-hierarchical-cache", "--hicache-size", str(model.kv_offload.cpu_gib)]
        env = hf_env(request)
        if model.kv_offload is not None and model.kv_offload.disk_gib is not None and request.kv_disk_path:
            # below host memory, HiCache's file storage: one cap per tensor-parallel rank, sharing the folder
            share = model.kv_offload.disk_gib * 1024 // ranks_per_pod(model)
            args += ["--hicache-storage-backend", "file"]
            env += [EnvVar("SGLANG_HICACHE_FILE_BACKEND_STORAGE_DIR", request.kv_disk_path),
                    EnvVar("SGLANG_HICACHE_FILE_BACKEND_MAX_SIZE", f"{share}Mi")]
        if request.chat_template_volume:
            mounts.append(Mount(request.chat_template_volume, TEMPLATE_PATH, read_only=True))
            args += ["--chat-template", TEMPLATE_FILE]
        args += lora_args(request, "--lora-paths", "--max-loras-per-batch", ("--lora-target-modules", "all"))
        if model.security.api_key:
            # Kubernetes expands $(VAR) from the container's env: the key stays in its Secret
            env.append(EnvVar("SGLANG_API_KEY", secret=model.security.api_key))
            args += ["--api-key", "$(SGLANG_API_KEY)"]
        if serving.nodes > 1:
            # every rank runs the same command; rank 0 (the leader) serves HTTP
            args += ["--nnodes", str(serving.nodes), "--node-rank", WORKER_INDEX,
                     "--dist-init-addr", f"{LEADER_ADDRESS}:{DIST_INIT_PORT}"]
        role, kv_port, bootstrap = request.role, None, None
        if role is not None:
            # the decode server learns the prefill server's address and bootstrap port from each request
            bootstrap = role.kv_port or BOOTSTRAP_PORT
            args += ["--disaggregation-mode", role.role, "--disaggregation-transfer-backend", role.connector]
            if role.role == "prefill":
                args += ["--disaggregation-bootstrap-port", str(bootstrap)]
                kv_port = Port("kv-bootstrap", bootstrap)
            if model.disaggregation is not None and model.disaggregation.ib_devices:
                args += ["--disaggregation-ib-device", ",".join(model.disaggregation.ib_devices)]
        args += model.engine_args
        # /health runs a one-token generation with a 20 s budget: probe timeouts must exceed it
        container = Container(
            name="engine", image=model.image or IMAGE, command=("python3", "-m", "sglang.launch_server"),
            args=tuple(args), env=tuple(env), ports=(port, *([kv_port] if kv_port else [])), mounts=tuple(mounts),
            startup_probe=Probe("/health", period_seconds=10, timeout_seconds=25, failure_threshold=180),
            readiness_probe=Probe("/health", period_seconds=10, timeout_seconds=25, failure_threshold=3),
            liveness_probe=Probe("/health", period_seconds=30, timeout_seconds=25, failure_threshold=5),
        )
        worker = group_worker(container, args) if serving.nodes > 1 else None
        return EngineResult(container=container, served_names=(primary,), port=port,
                            metrics=Metrics("http", "/metrics", METRICS), needs_shm=True, worker=worker,
                            adapter_load_path="/load_lora_adapter",
                            kv_port=kv_port,
                            bootstrap_port=bootstrap)


@hookimpl
def stackc_add_engines(registry: Registry) -> None:
    registry.add_engine(SglangEngine())
