"""llama.cpp's ``llama-server``: GGUF models, on CPUs or GPUs, one process per replica."""

from __future__ import annotations

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
)
from stackc.records import frozen
from stackc.registry import Registry
from stackc.spec.model import Model
from stackc_plugins.engines._common import (
    CACHE_PATH,
    TEMPLATE_FILE,
    TEMPLATE_PATH,
    flags,
    http_probes,
    listen_address,
    model_location,
)

BUILD = images.LLAMACPP_BUILD
IMAGES = {prefix: known.image for prefix, known in images.LLAMACPP.items()}
PORT = 8080
BINARY = "/app/llama-server"  # the image entrypoint; not on the image's PATH
METRICS = MetricNames(running="llamacpp:requests_processing", waiting="llamacpp:requests_deferred",
                      generation_tokens="llamacpp:tokens_predicted_total")


@frozen
class LlamacppOptions:
    """``[models.NAME.engine_options]`` for llama.cpp."""

    threads: int | None = attrs.field(default=None, metadata={"doc": "`-t`: CPU threads for generation.", "minimum": 1})
    gpu_layers: int | None = attrs.field(
        default=None, metadata={"doc": "`-ngl`: layers offloaded to accelerators (default: all, when there are any)."})


class LlamacppEngine:
    name = "llamacpp"
    description = "llama.cpp llama-server (GGUF; CPU or GPU)"
    # no LoRA: llama-server applies GGUF adapters by index and scale (`--lora`, a request's `lora`
    # field), never under a model name a client could send, so adapters could not be served names
    capabilities = frozenset({
        Capability.MULTIPLE_SERVED_NAMES, Capability.MAX_CONTEXT, Capability.MAX_CONCURRENT_SEQUENCES,
        Capability.PREFIX_CACHING_TOGGLE, Capability.CHAT_TEMPLATE, Capability.API_KEY, Capability.ACCELERATORS,
        Capability.CPU_ONLY, Capability.PORT,
    })
    options_type = LlamacppOptions
    owned_flags = {"--port": "port", "--alias": "served_name and aliases", "-a": "served_name and aliases"}
    memory_accounting = "llamacpp"  # the fit check sizes its KV cache as llamacpp does
    #: it loads one GGUF file, not a folder a platform (KServe's storage initializer) downloads
    platform_weights = False
    #: a llama-server on the PATH wins; else llama.cpp's server through the portable xllamacpp wheel
    local_run = LocalRun({BINARY: ("llama-server", "stackc-llama-server")},
                         "install stackc's `local` extra (pip install -e '.[local]' in a checkout), "
                         "or put llama.cpp's llama-server on the PATH")

    def check(self, key: str, model: Model, options: LlamacppOptions) -> Iterator[Diagnostic]:
        if model.revision is not None:
            yield Diagnostic("W031", "llama.cpp fetches a Hub file from the default branch (--hf-repo and --hf-file "
                             "take no revision): revision is not applied", ("revision",),
                             "put the pinned file on a claim (pvc://CLAIM/FILE.gguf), or drop revision",
                             Severity.WARNING)
        if model.model.startswith("oci://"):
            yield Diagnostic("E032", "llama.cpp needs the path of one GGUF file, and an OCI image mounts a folder",
                             ("model",), "use hf://ORG/REPO/FILE.gguf, s3://BUCKET/FILE.gguf, pvc://CLAIM/FILE.gguf or a path")
        elif model.model.startswith(("s3://", "gs://")) and not model.model.endswith(".gguf"):
            yield Diagnostic("E032", "llama.cpp loads one GGUF file: name the .gguf object, not a folder", ("model",),
                             "e.g. s3://bucket/models/model-Q4_K_M.gguf")

    def lower(self, request: EngineRequest) -> EngineResult:
        model = request.model
        options: LlamacppOptions = request.options or LlamacppOptions()
        mounts = [Mount(request.cache_volume, CACHE_PATH)]
        names = (model.served_name or request.model_key, *model.aliases)
        host, number = listen_address(request, PORT)
        port = Port("http", number)
        args = [*_model_flags(request, mounts), "--host", host, "--port", str(port.number),
                "--alias", ",".join(dict.fromkeys(names)), "--metrics"]
        gpu_layers = options.gpu_layers if options.gpu_layers is not None else (999 if model.accelerators.count else None)
        args += flags([
            ("-c", model.serving.max_context),
            ("-np", model.serving.max_concurrent_sequences),
            ("-ngl", gpu_layers),
            ("-t", options.threads),
        ])
        if model.serving.prefix_caching is False:
            args.append("--no-cache-prompt")
        if request.chat_template_volume:
            mounts.append(Mount(request.chat_template_volume, TEMPLATE_PATH, read_only=True))
            args += ["--chat-template-file", TEMPLATE_FILE]
        args += model.engine_args
        env = [EnvVar("LLAMA_CACHE", f"{CACHE_PATH}/llama.cpp")]
        if model.security.hf_token:
            env.append(EnvVar("HF_TOKEN", secret=model.security.hf_token))
        if model.security.api_key:
            # read by llama-server itself, so the key never shows in the pod spec or `ps`
            env.append(EnvVar("LLAMA_API_KEY", secret=model.security.api_key))
        resource = model.accelerators.resource if model.accelerators.count else ""
        image = model.image or next(i for prefix, i in sorted(IMAGES.items(), reverse=True) if resource.startswith(prefix))
        container = Container(
            name="engine", image=image, command=(BINARY,), args=tuple(args), env=tuple(env),
            ports=(port,), mounts=tuple(mounts), **http_probes("/health"),
        )
        return EngineResult(container=container, served_names=tuple(dict.fromkeys(names)), port=port,
                            metrics=Metrics("http", "/metrics", METRICS, needs_api_key=True))


def _model_flags(request: EngineRequest, mounts: list[Mount]) -> list[str]:
    """``-m FILE`` for a file on a volume or path; ``--hf-repo`` (and ``--hf-file``) for Hugging Face."""
    if request.source.scheme == "hf" and request.weights.location == request.source.location:
        org, repo, *rest = request.source.location.split("/", 2)
        return ["--hf-repo", f"{org}/{repo}", *(["--hf-file", rest[0]] if rest else [])]
    return ["-m", model_location(request, mounts)]


@hookimpl
def stackc_add_engines(registry: Registry) -> None:
    registry.add_engine(LlamacppEngine())
