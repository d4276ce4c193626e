"""vLLM under Ray Serve LLM on a KubeRay cluster (``ray.serve.llm:build_openai_app``).

The model runs as a Serve application on a Ray cluster: a head pod (Serve's controller, the GCS,
the dashboard KubeRay talks to) and a worker group whose pods hold the accelerators. Serve places
each replica's shards on the workers and scales the replicas; Ray's autoscaler adds and removes
worker pods to match. The spec's engine-neutral fields become vLLM ``engine_kwargs`` of one typed
``LLMConfig``; stackc renders it into the RayService's ``serveConfigV2``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any

import attrs

from stackc import hookimpl
from stackc.diagnostics import Diagnostic, Severity
from stackc.plan import images
from stackc.plan import ray
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
)
from stackc.plan.model import Autoscaler
from stackc.records import frozen
from stackc.registry import Registry
from stackc.spec.model import ENV_NAME, QUANTITY, Autoscaling, Form, Model, Probes, Quantity, Rollout
from stackc_plugins.engines._common import (
    CACHE_PATH,
    hf_env,
    model_location,
    served_names,
)
from stackc_plugins.engines.vllm import engine_arguments

RAY_VERSION = "2.50.1"
#: Ray's LLM images (Ray Serve LLM and vLLM) known to exist, by Ray version (``stackc.plan.images.RAY_LLM``)
IMAGES = {version: known.image for version, known in images.RAY_LLM.items()}
IMPORT_PATH = "ray.serve.llm:build_openai_app"
#: the image's user ``ray`` (uid 1000, group 100 owns its home)
USER, GROUP = 1000, 100
#: vLLM engine arguments stackc sets from the spec; ``engine_kwargs`` may not repeat them
OWNED_KWARGS = {
    "tensor_parallel_size": "serving.tensor_parallel", "pipeline_parallel_size": "serving.pipeline_parallel",
    "max_model_len": "serving.max_context", "gpu_memory_utilization": "serving.gpu_memory_fraction",
    "dtype": "serving.dtype", "quantization": "serving.quantization", "max_num_seqs": "serving.max_concurrent_sequences",
    "enable_prefix_caching": "serving.prefix_caching", "revision": "revision", "model": "model",
    "served_model_name": "served_name",
}
#: vLLM's engine metrics as Ray exports them (``log_engine_metrics``): Ray prefixes them with ``ray_``
METRICS = MetricNames(
    running="ray_vllm:num_requests_running",
    waiting="ray_vllm:num_requests_waiting",
    time_to_first_token="ray_vllm:time_to_first_token_seconds",
)


@frozen
class RayVllmOptions:
    """``[models.NAME.engine_options]`` for ray-vllm."""

    ray_version: str = attrs.field(default=RAY_VERSION, metadata={
        "doc": "The Ray version of the cluster (KubeRay's `rayVersion`) and of the default image.",
        "form": Form(r"^\d+\.\d+\.\d+$", "a Ray version such as 2.50.1")})
    accelerator_type: str | None = attrs.field(default=None, metadata={
        "doc": "The GPU type Serve places replicas on (`L4`, `A10G`, `H100`), as Ray labels nodes.",
        "form": Form(r"^[A-Za-z0-9][-A-Za-z0-9_]*$", "an accelerator type such as L4")})
    max_ongoing_requests: int | None = attrs.field(default=None, metadata={
        "doc": "Requests one replica takes at once before Serve queues them.", "minimum": 1})
    engine_kwargs: Mapping[str, str | int | float | bool] = attrs.field(factory=dict, metadata={
        "doc": "More vLLM engine arguments, in snake case (`enforce_eager = true`); those the spec sets "
               "(`tensor_parallel_size`, `max_model_len`, …) are written in the spec's own fields."})
    head_cpu: Quantity = attrs.field(default=Quantity("4"), metadata={
        "doc": "CPU the head pod requests (it runs Serve's controller and takes no replicas).", "form": QUANTITY})
    head_memory: Quantity = attrs.field(default=Quantity("20Gi"), metadata={
        "doc": "Memory the head pod requests and is limited to.", "form": QUANTITY})
    head_node_selector: Mapping[str, str] = attrs.field(factory=dict, metadata={
        "doc": "Node labels for the head pod; the model's `scheduling` (accelerator nodes) applies to the workers."})
    head_env: Mapping[str, str] = attrs.field(factory=dict, metadata={
        "doc": "Environment of the head pod only (the model's `env` reaches the head and the workers, and wins).",
        "keys": ENV_NAME})
    idle_timeout_seconds: int = attrs.field(default=60, metadata={
        "doc": "Seconds an idle worker pod stays before Ray's autoscaler removes it.", "minimum": 0})


class RayVllmEngine:
    name = "ray-vllm"
    description = "vLLM under Ray Serve LLM on a KubeRay RayService (head and worker group, Ray autoscaling)"
    capabilities = frozenset({
        Capability.TENSOR_PARALLEL, Capability.PIPELINE_PARALLEL, Capability.GPU_MEMORY_FRACTION, Capability.DTYPE,
        Capability.QUANTIZATION, Capability.MAX_CONCURRENT_SEQUENCES, Capability.PREFIX_CACHING_TOGGLE,
        Capability.MAX_CONTEXT, Capability.ACCELERATORS,
        # serving.nodes is answered by check(): Ray places a replica's shards itself
        Capability.MULTI_NODE,
    })
    options_type = RayVllmOptions
    local_run = None
    memory_accounting = "vllm"  # the fit check sizes its KV cache as vllm does

    def check(self, key: str, model: Model, options: RayVllmOptions) -> Iterator[Diagnostic]:
        serving = model.serving
        parallel = serving.tensor_parallel * serving.pipeline_parallel
        count = model.accelerators.count
        if serving.nodes > 1:
            yield Diagnostic("E111", "Ray places a replica's shards on the worker pods itself: serving.nodes (a "
                             "LeaderWorkerSet group) does not apply", ("serving", "nodes"),
                             "remove serving.nodes; with tensor_parallel × pipeline_parallel above accelerators.count "
                             "a replica spans several worker pods")
        elif count and parallel > count and parallel % count:
            yield Diagnostic("E112", f"tensor_parallel × pipeline_parallel = {parallel} shards do not fill whole "
                             f"worker pods of {count} accelerators", ("serving", "tensor_parallel"),
                             f"make it a multiple of accelerators.count ({count})")
        if model.engine_args:
            yield Diagnostic("E113", "ray-vllm starts vLLM inside Ray Serve: there is no command line for "
                             "engine_args", ("engine_args",), "write vLLM's arguments in engine_options.engine_kwargs "
                             "(snake case: enforce_eager = true)")
        for name in sorted(set(options.engine_kwargs) & set(OWNED_KWARGS)):
            yield Diagnostic("E114", f"'{name}' is set from {OWNED_KWARGS[name]}", ("engine_options", "engine_kwargs",
                             name), f"set {OWNED_KWARGS[name]} instead")
        if model.probes != Probes():
            yield Diagnostic("E115", "KubeRay probes Ray's pods itself (the raylet, the GCS, Serve's proxy)",
                             ("probes",), "remove probes")
        if model.service_port is not None or any(p.service for p in model.ports):
            field = "service_port" if model.service_port is not None else "ports"
            yield Diagnostic("E115", "KubeRay makes the model's Service (NAME-serve-svc, port 8000) itself: stackc "
                             "cannot add ports to it", (field,), "remove it; reach other ports through the pods")
        if model.image is None and options.ray_version not in IMAGES:
            yield Diagnostic("E119", f"no Ray LLM image is known for Ray {options.ray_version}: a tag derived from "
                             "the version may not exist", ("engine_options", "ray_version"),
                             f"set image to a rayproject/ray-llm tag of that version, or use a Ray version "
                             f"stackc knows: {', '.join(IMAGES)}")
        if model.accelerators.resource != "nvidia.com/gpu" and model.image is None:
            yield Diagnostic("W111", f"Ray's LLM image is built for CUDA: it finds no GPU on "
                             f"'{model.accelerators.resource}' devices", ("accelerators", "resource"),
                             "set image to a Ray image with vLLM built for these devices", Severity.WARNING)
        if options.idle_timeout_seconds != RayVllmOptions().idle_timeout_seconds and model.autoscaling == Autoscaling():
            yield Diagnostic("W113", "idle_timeout_seconds tells Ray's autoscaler when to remove idle workers, and "
                             "the model does not autoscale", ("engine_options", "idle_timeout_seconds"),
                             "set autoscaling, or drop it", Severity.WARNING)
        if model.autoscaling.activation is not None:
            yield Diagnostic("W112", "Ray Serve starts a replica on the first request: the activation threshold "
                             "(KEDA's) is not applied", ("autoscaling", "activation"), "remove activation",
                             Severity.WARNING)
        if model.rollout != Rollout():
            yield Diagnostic("W110", "a RayService rolls out a changed cluster by starting a new one and switching "
                             "traffic when it is ready: the rollout settings are not applied", ("rollout",),
                             "remove rollout", Severity.WARNING)

    def lower(self, request: EngineRequest) -> EngineResult:
        model = request.model
        options: RayVllmOptions = request.options or RayVllmOptions()
        image = model.image or IMAGES[options.ray_version]
        mounts = [Mount(request.cache_volume, CACHE_PATH)]
        source = model_location(request, mounts)
        env = tuple(hf_env(request))
        serve_port = Port("serve", ray.SERVE_PORT)
        metrics_port = Port("metrics", ray.METRICS_PORT)
        worker = Container(name="ray-worker", image=image, env=env, ports=(serve_port, metrics_port),
                           mounts=tuple(mounts))
        head_env = tuple(EnvVar(name, value) for name, value in sorted(options.head_env.items()))
        head = Container(
            name="ray-head", image=image, env=(*env, *head_env), mounts=(Mount(request.cache_volume, CACHE_PATH),),
            ports=(Port("gcs-server", ray.GCS_PORT), Port("dashboard", ray.DASHBOARD_PORT),
                   Port("client", ray.CLIENT_PORT), serve_port, metrics_port),
            resources={"requests": {"cpu": str(options.head_cpu), "memory": str(options.head_memory)},
                       "limits": {"memory": str(options.head_memory)}})
        names = served_names(request)
        config = ray.LLMConfig(
            model_loading_config=ray.ModelLoadingConfig(model_id=names[0], model_source=source),
            deployment_config=deployment_config(model, options, request.autoscaler),
            engine_kwargs={**engine_kwargs(model, request.weights.revision), **options.engine_kwargs},
            accelerator_type=options.accelerator_type,
            log_engine_metrics=True,
        )
        serve = ray.ServeConfig((ray.ServeApplication("llm", IMPORT_PATH, ray.LLMApplicationArgs((config,))),))
        parallel = model.serving.tensor_parallel * model.serving.pipeline_parallel
        application = ray.RayApplication(
            head=head, version=options.ray_version, serve=serve,
            workers_per_replica=max(1, math.ceil(parallel / max(model.accelerators.count, 1))),
            # the head schedules no replicas: it keeps Serve's controller and the GCS responsive
            head_params={"num-cpus": "0", "num-gpus": "0", "dashboard-host": "0.0.0.0"},
            idle_timeout_seconds=options.idle_timeout_seconds, head_node_selector=dict(options.head_node_selector))
        return EngineResult(container=worker, served_names=names[:1], port=serve_port,
                            metrics=Metrics("metrics", "/metrics", METRICS), needs_shm=True,
                            run_as_user=USER, run_as_group=GROUP, ray=application)


def engine_kwargs(model: Model, revision: str | None) -> dict[str, Any]:
    """vLLM's engine arguments from the spec's engine-neutral fields (those it sets), as ``vllm serve`` gets them."""
    pairs = (*engine_arguments(model.serving, revision), ("enable_prefix_caching", model.serving.prefix_caching))
    return {name: value for name, value in pairs if value is not None}


def deployment_config(model: Model, options: RayVllmOptions, scaler: Autoscaler | None) -> ray.DeploymentConfig:
    """Serve's replicas: a fixed count, or Serve's autoscaler within the model's bounds (it scales on
    requests in flight per replica: ``signal = "running"`` sets its target)."""
    if scaler is None:
        return ray.DeploymentConfig(num_replicas=model.replicas, max_ongoing_requests=options.max_ongoing_requests)
    initial = model.replicas if scaler.min_replicas <= model.replicas <= scaler.max_replicas else None
    return ray.DeploymentConfig(
        autoscaling_config=ray.AutoscalingConfig(
            min_replicas=scaler.min_replicas, max_replicas=scaler.max_replicas,
            initial_replicas=initial if initial != scaler.min_replicas else None,
            target_ongoing_requests=scaler.target if scaler.signal == "running" else None,
            upscale_delay_s=scaler.scale_up_seconds, downscale_delay_s=scaler.scale_down_seconds),
        max_ongoing_requests=options.max_ongoing_requests)


@hookimpl
def stackc_add_engines(registry: Registry) -> None:
    registry.add_engine(RayVllmEngine())
