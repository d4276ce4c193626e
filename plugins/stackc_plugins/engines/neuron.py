"""vLLM on AWS Inferentia and Trainium (the Neuron deep-learning container).

Tensor parallelism counts NeuronCores, not devices; the first start compiles the model with
neuronx-cc, so compiled artifacts go to the cache volume and the startup probe allows two hours.
"""

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
    Metrics,
    Port,
    Probe,
)
from stackc.registry import Registry
from stackc.spec.model import Model
from stackc_plugins.engines._common import CACHE_PATH, listen_address, served_names
from stackc_plugins.engines.vllm import (
    METRICS,
    OWNED_FLAGS,
    PORT,
    VllmOptions,
    vllm_command_line,
)

IMAGE = images.NEURON.image
RESOURCES = ("aws.amazon.com/neuron", "aws.amazon.com/neuroncore")
CORES_PER_DEVICE = 2  # Inf2 and Trn1; Trn2 exposes 4 logical cores per device at the default LNC=2


class NeuronEngine:
    name = "neuron"
    description = "vLLM on AWS Inferentia/Trainium (Neuron SDK); tensor parallelism in NeuronCores"
    capabilities = frozenset(Capability) - {Capability.CPU_ONLY, Capability.LORA, Capability.RUNTIME_LORA,
                                            Capability.GPU_MEMORY_FRACTION, Capability.OLLAMA_LIBRARY,
                                            Capability.MULTI_NODE, Capability.KV_OFFLOAD,
                                            Capability.DISAGGREGATION, Capability.KV_EVENTS}
    options_type = VllmOptions
    owned_flags = OWNED_FLAGS

    def check(self, key: str, model: Model, options: VllmOptions) -> Iterator[Diagnostic]:
        accelerators = model.accelerators
        if accelerators.resource not in RESOURCES:
            yield Diagnostic("E034", f"the Neuron engine needs {' or '.join(RESOURCES)}, not '{accelerators.resource}'",
                             ("accelerators", "resource"), 'resource = "aws.amazon.com/neuron"')
            return
        cores = accelerators.count * (CORES_PER_DEVICE if accelerators.resource.endswith("/neuron") else 1)
        if model.serving.tensor_parallel > cores:
            yield Diagnostic("E035", f"tensor_parallel = {model.serving.tensor_parallel} NeuronCores, but "
                             f"{accelerators.count} × {accelerators.resource} give {cores}",
                             ("serving", "tensor_parallel"), "tensor parallelism counts NeuronCores, not devices")

    def lower(self, request: EngineRequest) -> EngineResult:
        model = request.model
        args, mounts, env = vllm_command_line(request, request.options or VllmOptions())
        env += [EnvVar("NEURON_COMPILED_ARTIFACTS", f"{CACHE_PATH}/neuron/{request.model_key}"),
                EnvVar("NEURON_CC_FLAGS", f"--cache_dir={CACHE_PATH}/neuron/compile-cache")]
        port = Port("http", listen_address(request, PORT)[1])
        executable = (request.options or VllmOptions()).executable
        container = Container(
            name="engine", image=model.image or IMAGE, command=(executable, "serve"), args=tuple(args), env=tuple(env),
            ports=(port,), mounts=tuple(mounts),
            # first start compiles every bucket with neuronx-cc: allow two hours
            startup_probe=Probe("/health", period_seconds=10, timeout_seconds=5, failure_threshold=720),
            readiness_probe=Probe("/health", period_seconds=5, timeout_seconds=5, failure_threshold=3),
            liveness_probe=Probe("/health", period_seconds=10, timeout_seconds=5, failure_threshold=3),
        )
        return EngineResult(container=container, served_names=served_names(request), port=port,
                            metrics=Metrics("http", "/metrics", METRICS), needs_shm=True)


@hookimpl
def stackc_add_engines(registry: Registry) -> None:
    registry.add_engine(NeuronEngine())
