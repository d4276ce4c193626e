"""Hugging Face Text Generation Inference (TGI) as a stackc engine."""

from __future__ import annotations

from stackc import hookimpl
from stackc.plan.engine import (
    Capability,
    Container,
    EngineResult,
    EnvVar,
    MetricNames,
    Metrics,
    Mount,
    Port,
    Probe,
)

IMAGE = "ghcr.io/huggingface/text-generation-inference:3.3.4"


class TgiEngine:
    name = "tgi"
    description = "Hugging Face Text Generation Inference"
    capabilities = frozenset({Capability.TENSOR_PARALLEL, Capability.MAX_CONTEXT, Capability.QUANTIZATION,
                              Capability.ACCELERATORS, Capability.API_KEY})
    options_type = None

    def check(self, key, model, options):
        return ()

    def lower(self, request):
        model = request.model
        args = ["--model-id", request.source.location, "--hostname", "0.0.0.0", "--port", "8080"]
        if model.serving.tensor_parallel > 1:
            args += ["--num-shard", str(model.serving.tensor_parallel)]
        if model.serving.max_context:
            args += ["--max-total-tokens", str(model.serving.max_context)]
        if model.serving.quantization:
            args += ["--quantize", model.serving.quantization]
        env = [EnvVar("HF_HOME", "/data")]
        if model.security.api_key:
            env.append(EnvVar("API_KEY", secret=model.security.api_key))
        port = Port("http", 8080)
        container = Container(
            name="engine", image=model.image or IMAGE, args=tuple(args), env=tuple(env), ports=(port,),
            mounts=(Mount(request.cache_volume, "/data"),),
            startup_probe=Probe("/health", period_seconds=10, failure_threshold=180),
            readiness_probe=Probe("/health", period_seconds=5),
            liveness_probe=Probe("/health", period_seconds=10),
        )
        names = (model.served_name or request.source.location,)
        return EngineResult(container=container, served_names=names, port=port, needs_shm=True,
                            metrics=Metrics("http", "/metrics", MetricNames(running="tgi_batch_current_size",
                                                                           waiting="tgi_queue_size")))


@hookimpl
def stackc_add_engines(registry):
    registry.add_engine(TgiEngine())
