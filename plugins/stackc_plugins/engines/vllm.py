"""vLLM: ``vllm serve`` with the OpenAI-compatible server (the reference engine)."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator

import attrs

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
    MetricNames,
    Metrics,
    Mount,
    Port,
    RoleRequest,
)
from stackc.records import frozen
from stackc.registry import Registry
from stackc.spec.model import Form, Model, Serving
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
    http_probes,
    listen_address,
    lora_args,
    model_location,
    ranks_per_pod,
    served_names,
)

IMAGE = images.VLLM.image
#: the images' non-root user ``vllm`` (group 0, which owns what it may write)
USER, GROUP = 2000, 0
#: flags stackc sets from the spec: engine_args repeating them would contradict probes, Service and router
OWNED_FLAGS = {"--port": "port", "--served-model-name": "served_name and aliases"}
CPU_IMAGE = images.VLLM_CPU.image
PORT = 8000
LOAD_ADAPTER_PATH = "/v1/load_lora_adapter"
#: LMCache's vLLM connector, storing and loading blocks in both directions
LMCACHE_CONNECTOR = '{"kv_connector":"LMCacheConnectorV1","kv_role":"kv_both"}'
#: the Ray head's port on a leader (GCS), which the workers join
RAY_PORT = 6379
#: the NixlConnector's side channel (its handshake; the transfer itself goes over UCX) and LMCache's P/D
#: receiver, by default
NIXL_PORT = 5600
LMCACHE_PORT = 55555
#: flags stackc sets from ``disaggregation`` and ``kv_offload``: vLLM runs one KV connector
KV_FLAGS = ("--kv-transfer-config", "--kv-offloading-backend", "--kv-offloading-size")
#: where vLLM publishes KV events by default (its ZMQ PUB socket), which llm-d's picker dials on each pod
KV_EVENTS_PORT = 5557


@frozen
class VllmOptions:
    """``[models.NAME.engine_options]`` for vLLM."""

    load_format: str | None = attrs.field(default=None, metadata={"doc": "`--load-format`, e.g. `runai_streamer`."})
    kv_cache_dtype: str | None = attrs.field(default=None, metadata={"doc": "`--kv-cache-dtype`, e.g. `fp8`."})
    max_num_batched_tokens: int | None = attrs.field(default=None, metadata={"doc": "`--max-num-batched-tokens`.", "minimum": 1})
    enforce_eager: bool = attrs.field(default=False, metadata={"doc": "`--enforce-eager`: skip CUDA graphs (faster start)."})
    executable: str = attrs.field(default="vllm", metadata={
        "doc": "The `vllm` program in the image, e.g. `/opt/venv/bin/vllm` in LMCache's `lmcache/vllm-openai`.",
        "form": Form(r"^\S+$", "a program name or path without spaces")})


METRICS = MetricNames(
    running="vllm:num_requests_running",
    waiting="vllm:num_requests_waiting",
    kv_cache_usage="vllm:kv_cache_usage_perc",
    prefix_cache_hits="vllm:prefix_cache_hits_total",
    prefix_cache_queries="vllm:prefix_cache_queries_total",
    time_to_first_token="vllm:time_to_first_token_seconds",
    generation_tokens="vllm:generation_tokens_total",
    kv_cache_capacity="vllm:cache_config_info",
    kv_cache_capacity_labels=("block_size", "num_gpu_blocks"),
)


class VllmEngine:
    name = "vllm"
    description = "vLLM OpenAI-compatible server (CUDA/ROCm; CPU image without accelerators)"
    capabilities = frozenset(Capability) - {Capability.OLLAMA_LIBRARY}
    options_type = VllmOptions
    local_run = LocalRun({"vllm": ("vllm",)}, "pip install vllm (on a machine with a GPU)")
    #: it streams s3:// and gs:// weights itself (Run:ai model streamer); other engines get them downloaded
    object_storage = True
    owned_flags = OWNED_FLAGS
    memory_accounting = "vllm"  # the fit check sizes its KV cache as vllm does
    #: NIXL hands the decode request the prefill's kv_transfer_params; LMCache's P/D pushes KV to decode
    kv_connectors = {"nixl": "kv_transfer_params", "lmcache": "prefill_then_decode"}

    def check(self, key: str, model: Model, options: VllmOptions) -> Iterator[Diagnostic]:
        yield from check_parallelism(model, multi_node=True)
        yield from check_disaggregation(model)
        for index, arg in enumerate(model.engine_args):
            if model.routing.kv_events and arg.split("=", 1)[0] == "--kv-events-config":
                yield Diagnostic("E132", "engine_args sets --kv-events-config, which stackc sets from routing.kv_events",
                                 ("engine_args", index), "remove it")
        offload = model.kv_offload
        for index, flag in kv_flags(model) if offload is not None and model.disaggregation is None else ():
            yield Diagnostic("E150", f"engine_args sets {flag}, which stackc sets from kv_offload: vLLM would get "
                             "two KV connectors", ("engine_args", index),
                             "remove it; kv_offload.backend chooses the connector (or drop kv_offload)")
        if offload is not None and offload.backend == "native" and offload.disk_gib is not None:
            yield Diagnostic("E120", "vLLM's native offloading (--kv-offloading-backend native) keeps KV blocks in "
                             "host memory only", ("kv_offload", "disk_gib"),
                             'use backend = "lmcache" (an image with LMCache) to offload to disk')
        if offload is not None and offload.backend == "native" and offload.remote:
            yield Diagnostic("E123", "vLLM's native offloading has no client for LMCache's cache server",
                             ("kv_offload", "remote"), 'use backend = "lmcache" (an image with LMCache)')
        image = model.image or IMAGE
        if model.accelerators.resource.startswith("aws.amazon.com/neuron") and image.startswith(IMAGE.split(":")[0]):
            yield Diagnostic("W030", f"the vLLM image '{image}' is built for CUDA: it finds no GPU on Neuron devices",
                             ("accelerators", "resource"), 'use engine = "neuron" (vLLM on the Neuron SDK)',
                             Severity.WARNING)

    def lower(self, request: EngineRequest) -> EngineResult:
        model = request.model
        args, mounts, env = vllm_command_line(request, request.options or VllmOptions())
        port = Port("http", listen_address(request, PORT)[1])
        container = Container(
            name="engine",
            image=model.image or (IMAGE if model.accelerators.count else CPU_IMAGE),
            command=((request.options or VllmOptions()).executable, "serve"),
            args=tuple(args),
            env=tuple(env),
            ports=(port,),
            mounts=tuple(mounts),
            # the server listens only once weights are loaded: 30 minutes for download and load
            **http_probes("/health"),
        )
        worker = None
        nodes = model.serving.nodes
        ray = nodes > 1 and request.ray_head is not None
        if ray:
            assert request.ray_head is not None
            container, worker = ray_group(container, request.ray_head)
        elif nodes > 1:
            # multiprocessing across nodes, no Ray: rank 0 serves the API, the others run headless
            group = ["--nnodes", str(nodes), "--master-addr", LEADER_ADDRESS]
            worker = group_worker(container, [*args, *group, "--node-rank", WORKER_INDEX, "--headless"])
            container = attrs.evolve(container, args=(*args, *group, "--node-rank", "0"))
        kv_port, service_ports = None, ()
        if request.role is not None:
            # NIXL's side channel listens on both roles, reached at the pod's IP; LMCache's receiver on the
            # decode side only, reached at the decode Service (LMCACHE_NIXL_RECEIVER_HOST)
            if request.role.protocol == "kv_transfer_params" or request.role.role == "decode":
                kv_port = Port("kv-transfer", kv_transfer_port(request.role))
                container = attrs.evolve(container, ports=(*container.ports, kv_port))
            if request.role.connector == "lmcache" and kv_port is not None:
                service_ports = (kv_port,)
        events_port = None
        if request.kv_events:
            events_port = Port("kv-events", KV_EVENTS_PORT)
            container = attrs.evolve(container, ports=(*container.ports, events_port))
        return EngineResult(container=container, served_names=served_names(request), port=port,
                            metrics=Metrics("http", "/metrics", METRICS), needs_shm=True, worker=worker,
                            adapter_load_path=LOAD_ADAPTER_PATH, run_as_user=USER, run_as_group=GROUP,
                            kv_port=kv_port, service_ports=service_ports, ray_group=ray,
                            kv_events_port=events_port)


def ray_group(container: Container, head: str) -> tuple[Container, Container]:
    """vLLM over a Ray cluster the platform forms (KServe): the leader starts Ray's head, then ``vllm serve``
    with the Ray executor, which waits for the workers' GPUs; each worker joins the head and blocks.
    Ray and vLLM are told the pod's own address (a pod's hostname does not resolve to it)."""
    env = (*container.env, pod_ip("POD_IP"), pod_ip("VLLM_HOST_IP"))
    start = 'ray start --node-ip-address="$POD_IP" --disable-usage-stats'
    leader = attrs.evolve(
        container, env=env,
        command=("/bin/sh", "-c", f'{start} --head --port={RAY_PORT} && exec "$@"', "ray-head"),
        args=(*container.command, *container.args, "--distributed-executor-backend", "ray"))
    worker = group_worker(attrs.evolve(container, env=env, command=(
        "/bin/sh", "-c", f'exec {start} --address="{head}:{RAY_PORT}" --block')), [])
    return leader, worker


def vllm_command_line(request: EngineRequest, options: VllmOptions) -> tuple[list[str], list[Mount], list[EnvVar]]:
    """``vllm serve`` arguments, mounts and environment (shared with the Neuron engine)."""
    model = request.model
    serving = model.serving
    mounts = [Mount(request.cache_volume, CACHE_PATH)]
    host, port = listen_address(request, PORT)
    args = [model_location(request, mounts), "--host", host, "--port", str(port),
            "--served-model-name", *served_names(request)]
    streamed = request.weights.location.startswith(("s3://", "gs://"))  # the engine streams them itself
    args += flags([
        *((f"--{name.replace('_', '-')}", value) for name, value in engine_arguments(serving, request.weights.revision)),
        ("--load-format", options.load_format or ("runai_streamer" if streamed else None)),
        ("--kv-cache-dtype", options.kv_cache_dtype),
        ("--max-num-batched-tokens", options.max_num_batched_tokens),
    ])
    if serving.prefix_caching is not None:
        args.append("--enable-prefix-caching" if serving.prefix_caching else "--no-enable-prefix-caching")
    env_lmcache = []
    if model.kv_offload is not None and model.kv_offload.backend == "lmcache" and (
            request.kv_disk_path is not None or request.kv_cache_url is not None):
        # the tiers below memory are LMCache's own configuration, which --kv-offloading-backend does not
        # carry (newer vLLM hands that flag to LMCache's multiprocess server): LMCache's connector, configured
        # by its LMCACHE_* variables, as LMCache and production-stack run it
        args += ["--kv-transfer-config", LMCACHE_CONNECTOR]
        env_lmcache = lmcache_env(request)
    elif model.kv_offload is not None:
        # vLLM sizes the buffer over all tensor-parallel ranks of a replica: cpu_gib is per pod
        size = model.kv_offload.cpu_gib * serving.nodes
        args += ["--kv-offloading-backend", model.kv_offload.backend, "--kv-offloading-size", str(size)]
    if options.enforce_eager:
        args.append("--enforce-eager")
    if request.chat_template_volume:
        mounts.append(Mount(request.chat_template_volume, TEMPLATE_PATH, read_only=True))
        args += ["--chat-template", TEMPLATE_FILE]
    args += lora_args(request, "--lora-modules", "--max-loras")
    kv_args, kv_env = kv_transfer(request.role) if request.role is not None else ([], [])
    args += kv_args
    if request.kv_events:
        args += ["--kv-events-config", kv_events_config(served_names(request)[0])]
        kv_env.append(pod_ip("POD_IP"))
    args += model.engine_args
    env = [*hf_env(request), EnvVar("VLLM_CACHE_ROOT", f"{CACHE_PATH}/vllm"), *env_lmcache, *kv_env]
    if any(a.runtime for a in request.adapters):  # opens /v1/load_lora_adapter
        env.append(EnvVar("VLLM_ALLOW_RUNTIME_LORA_UPDATING", "True"))
    if model.security.api_key:
        env.append(EnvVar("VLLM_API_KEY", secret=model.security.api_key))
    return args, mounts, env


def engine_arguments(serving: Serving, revision: str | None) -> list[tuple[str, object]]:
    """vLLM's engine arguments the spec's engine-neutral fields set, by keyword: ``vllm serve`` takes them as
    kebab-case flags, Ray Serve LLM as ``engine_kwargs`` (prefix caching is a pair of flags, so apart)."""
    return [
        ("revision", revision),
        ("tensor_parallel_size", serving.tensor_parallel if serving.tensor_parallel > 1 else None),
        ("pipeline_parallel_size", serving.pipeline_parallel if serving.pipeline_parallel > 1 else None),
        ("max_model_len", serving.max_context),
        ("gpu_memory_utilization", serving.gpu_memory_fraction),
        ("dtype", serving.dtype),
        ("quantization", serving.quantization),
        ("max_num_seqs", serving.max_concurrent_sequences),
    ]


def pod_ip(name: str) -> EnvVar:
    """A variable holding the pod's own address (the downward API): what peers reach it at."""
    return EnvVar(name, value_from={"fieldRef": {"fieldPath": "status.podIP"}})


def kv_events_config(served_name: str) -> str:
    """``--kv-events-config``: publish every stored, removed and cleared block on the pod's ZMQ socket, under
    the topic llm-d's picker parses (``kv@POD@MODEL``; the model part must be the name requests target, as
    the picker keys blocks by model). Kubernetes puts the pod's IP in for ``$(POD_IP)``."""
    config = {"enable_kv_cache_events": True, "publisher": "zmq", "endpoint": f"tcp://*:{KV_EVENTS_PORT}",
              "topic": f"kv@$(POD_IP)@{served_name}"}
    return json.dumps(config, separators=(",", ":"))


def kv_transfer_port(role: RoleRequest) -> int:
    return role.kv_port or (NIXL_PORT if role.connector == "nixl" else LMCACHE_PORT)


def kv_transfer(role: RoleRequest) -> tuple[list[str], list[EnvVar]]:
    """``--kv-transfer-config`` and the environment of one role's KV connector.

    NIXL: both roles ``kv_both``; the decode side pulls blocks the prefill side names in its answer's
    ``kv_transfer_params``, after a handshake on the side channel at the pod's IP. LMCache's P/D over NIXL
    (production-stack's layout): prefill produces and pushes each prompt's KV to the decode role's
    Service, where the decode side receives it.
    """
    port = str(kv_transfer_port(role))
    if role.connector == "nixl":
        config = {"kv_connector": "NixlConnector", "kv_role": "kv_both"}
        env = [pod_ip("VLLM_NIXL_SIDE_CHANNEL_HOST"),
               EnvVar("VLLM_NIXL_SIDE_CHANNEL_PORT", port)]
    else:
        prefill = role.role == "prefill"
        config = {"kv_connector": "LMCacheConnectorV1", "kv_role": "kv_producer" if prefill else "kv_consumer",
                  "kv_connector_extra_config": {"discard_partial_chunks": False,
                                                "lmcache_rpc_port": "producer1" if prefill else "consumer1"}}
        env = [EnvVar("LMCACHE_LOCAL_CPU", "False"), EnvVar("LMCACHE_MAX_LOCAL_CPU_SIZE", "0"),
               EnvVar("LMCACHE_ENABLE_NIXL", "True"), EnvVar("LMCACHE_NIXL_ROLE", "sender" if prefill else "receiver"),
               EnvVar("LMCACHE_NIXL_RECEIVER_HOST", role.decode_service if prefill else "0.0.0.0"),
               EnvVar("LMCACHE_NIXL_RECEIVER_PORT", port),
               EnvVar("LMCACHE_NIXL_BUFFER_SIZE", str(2**30)), EnvVar("LMCACHE_NIXL_BUFFER_DEVICE", "cuda"),
               EnvVar("LMCACHE_NIXL_ENABLE_GC", "True")]
    return ["--kv-transfer-config", json.dumps(config, separators=(",", ":"))], env


def check_disaggregation(model: Model) -> Iterator[Diagnostic]:
    """What vLLM can't combine with disaggregation: another KV connector, flags stackc sets from it."""
    if model.disaggregation is None:
        return
    if model.kv_offload is not None:
        yield Diagnostic("E103", "vLLM runs one KV connector: kv_offload's and disaggregation's would replace each "
                         "other", ("kv_offload",), "drop kv_offload from a disaggregated vLLM model")
    if model.disaggregation.ib_devices:
        yield Diagnostic("E104", "ib_devices is SGLang's flag; vLLM's NIXL picks devices through UCX",
                         ("disaggregation", "ib_devices"), "set UCX_NET_DEVICES in env instead")
    for index, flag in kv_flags(model):
        yield Diagnostic("E102", f"engine_args sets {flag}, which stackc sets from disaggregation",
                         ("engine_args", index), "remove it; choose the connector with disaggregation.connector")


def kv_flags(model: Model) -> Iterator[tuple[int, str]]:
    """(index, flag) of each ``engine_args`` item that configures a KV connector, which stackc owns."""
    for index, arg in enumerate(model.engine_args):
        if arg.split("=", 1)[0] in KV_FLAGS:
            yield index, arg.split("=", 1)[0]


def lmcache_env(request: EngineRequest) -> list[EnvVar]:
    """LMCache's tiers, which it reads from its ``LMCACHE_*`` variables: host memory and the local disk
    (one store of each per tensor-parallel worker, so each gets its share of the pod's GiB, in GB) and the
    stack's cache server. LMCache keys blocks with Python's ``hash()`` by default, which is salted per
    process unless PYTHONHASHSEED is set: replicas sharing a server must agree on it, or they never hit."""
    offload = request.model.kv_offload
    assert offload is not None
    ranks = ranks_per_pod(request.model)
    env = [EnvVar("LMCACHE_LOCAL_CPU", "True"), EnvVar("LMCACHE_MAX_LOCAL_CPU_SIZE", _gb_share(offload.cpu_gib, ranks))]
    if request.kv_disk_path is not None and offload.disk_gib is not None:
        env += [EnvVar("LMCACHE_LOCAL_DISK", f"file://{request.kv_disk_path}/"),
                EnvVar("LMCACHE_MAX_LOCAL_DISK_SIZE", _gb_share(offload.disk_gib, ranks))]
    if request.kv_cache_url is not None:
        env += [EnvVar("LMCACHE_REMOTE_URL", request.kv_cache_url),
                EnvVar("LMCACHE_REMOTE_SERDE", request.kv_cache_serde), EnvVar("PYTHONHASHSEED", "0")]
    return env


def _gb_share(gib: int, ranks: int) -> str:
    """One worker's share, in LMCache's GB, rounded down so the workers together stay within it."""
    return f"{math.floor(gib * 1000 / ranks) / 1000:g}"


@hookimpl
def stackc_add_engines(registry: Registry) -> None:
    registry.add_engine(VllmEngine())
