"""The escape hatch: any OpenAI-compatible server, described by image, command, port and paths.

A new engine never blocks a user: until it has a plugin, ``engine = "command"`` runs it with
probes and metrics the spec names. Arguments may use ``{model}``, ``{served_name}``,
``{aliases}`` (comma-separated), ``{host}`` and ``{port}`` (``0.0.0.0`` and ``engine_options.port``
in a pod; ``stackc up`` gives each replica 127.0.0.1 and a port of its own through them); an API
key from ``security.api_key`` is in the environment as ``STACKC_API_KEY`` (write
``$(STACKC_API_KEY)`` in an argument to pass it).
"""

from __future__ import annotations

import string
from collections.abc import Iterator, Mapping

import attrs

from stackc import hookimpl
from stackc.diagnostics import Diagnostic, Severity, did_you_mean
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
from stackc.spec.model import INT32_MAX, Model
from stackc_plugins.engines._common import (
    ALL_INTERFACES,
    CACHE_PATH,
    http_probes,
    model_location,
    served_names,
)

PLACEHOLDERS = ("model", "served_name", "aliases", "revision", "host", "port")


@frozen
class CommandOptions:
    """``[models.NAME.engine_options]`` for the command engine."""

    port: int = attrs.field(metadata={"doc": "Port the server listens on.", "minimum": 1, "maximum": 65535})
    command: tuple[str, ...] = attrs.field(default=(), metadata={"doc": "Container command (default: the image's)."})
    args: tuple[str, ...] = attrs.field(default=(), metadata={"doc": "Arguments; may use {model}, {served_name}, {aliases}, {revision}, {host}, {port}."})
    ready_path: str = attrs.field(default="/health", metadata={"doc": "HTTP path answering 200 once the model is loaded."})
    alive_path: str | None = attrs.field(default=None, metadata={"doc": "Liveness path (default: ready_path)."})
    metrics_path: str | None = attrs.field(default=None, metadata={"doc": "Prometheus metrics path, if any."})
    metric_names: Mapping[str, str] = attrs.field(
        factory=dict, metadata={"doc": "Series names: running, waiting, kv_cache_usage, time_to_first_token, …"})
    startup_minutes: int = attrs.field(default=30, metadata={"doc": "How long loading may take.", "minimum": 1,
                                                             "maximum": INT32_MAX // 6})
    shared_memory: bool = attrs.field(default=False, metadata={"doc": "Mount an in-memory /dev/shm when parallel."})


class CommandEngine:
    name = "command"
    description = "any server: image, command, port and probe paths from the spec"
    capabilities = frozenset({Capability.ACCELERATORS, Capability.CPU_ONLY, Capability.API_KEY,
                              Capability.MULTIPLE_SERVED_NAMES})
    options_type = CommandOptions
    #: ``stackc up`` runs the command itself when it is on the PATH (the image's entrypoint can't be guessed)
    local_run = LocalRun({}, "install the server so its command is on the PATH, and set engine_options.command")

    def check(self, key: str, model: Model, options: CommandOptions) -> Iterator[Diagnostic]:
        if model.image is None:
            yield Diagnostic("E036", "the command engine needs an image", ("image",), 'image = "REPOSITORY:TAG"')
        # names only: a label list can't be written as one string, so a command's capacity series is read as tokens
        known = set(attrs.fields_dict(MetricNames)) - {"kv_cache_capacity_labels"}
        for name in options.metric_names:
            if name not in known:
                yield Diagnostic("E003", f"unknown key '{name}'", ("engine_options", "metric_names", name),
                                 did_you_mean(name, known))
        if options.metric_names and options.metrics_path is None:
            yield Diagnostic("W034", "metric_names name series of a metrics endpoint, and metrics_path sets none",
                             ("engine_options", "metric_names"), "set metrics_path", Severity.WARNING)
        serving = model.serving
        if options.shared_memory and serving.tensor_parallel * serving.pipeline_parallel // max(serving.nodes, 1) <= 1:
            yield Diagnostic("W034", "shared_memory mounts /dev/shm for the shards of a replica on one pod, and this "
                             "replica has one", ("engine_options", "shared_memory"),
                             "set shm_size for a /dev/shm regardless, or drop it", Severity.WARNING)
        used = {name for arg in options.args for name in _placeholder_names(arg)}
        if "aliases" in used:  # the names, primary first
            used.add("served_name")
        told = {"revision": model.revision is not None, "served_name": model.served_name is not None,
                "aliases": bool(model.aliases)}
        for field in (name for name, given in told.items() if given and name not in used):
            # the server learns names and revision only through its arguments
            yield Diagnostic("W032", f"{field} reaches the server only as {{{field}}} in engine_options.args, "
                             "which do not use it", (field,), f"add {{{field}}} to engine_options.args where the "
                             "server takes it, or drop it", Severity.WARNING)
        for index, arg in enumerate(options.args):
            problem = _placeholder_problem(arg)
            if problem:
                yield Diagnostic("E037", f"{problem} in {arg!r}", ("engine_options", "args", index),
                                 "placeholders: " + ", ".join("{" + p + "}" for p in PLACEHOLDERS) + "; write {{ for {")

    def lower(self, request: EngineRequest) -> EngineResult:
        model = request.model
        options: CommandOptions = request.options
        mounts = [Mount(request.cache_volume, CACHE_PATH)]
        names = served_names(request)
        host, number = _listen(request, options)
        values = {"model": model_location(request, mounts), "served_name": names[0], "aliases": ",".join(names),
                  "revision": model.revision or "", "host": host, "port": str(number)}
        env = [EnvVar("HF_HOME", f"{CACHE_PATH}/huggingface")]
        if model.security.hf_token:
            env.append(EnvVar("HF_TOKEN", secret=model.security.hf_token))
        if model.security.api_key:
            env.append(EnvVar("STACKC_API_KEY", secret=model.security.api_key))
        port = Port("http", number)
        probes = http_probes(options.ready_path, startup_minutes=options.startup_minutes)
        if options.alive_path:
            probes["liveness_probe"] = attrs.evolve(probes["liveness_probe"], path=options.alive_path)
        container = Container(
            name="engine", image=model.image or "", command=options.command,
            args=(*[arg.format(**values) for arg in options.args], *model.engine_args),
            env=tuple(env), ports=(port,), mounts=tuple(mounts), **probes,
        )
        metrics = (Metrics("http", options.metrics_path, MetricNames(**options.metric_names))
                   if options.metrics_path else None)
        return EngineResult(container=container, served_names=names, port=port, metrics=metrics,
                            needs_shm=options.shared_memory)


def _listen(request: EngineRequest, options: CommandOptions) -> tuple[str, int]:
    """In a pod every interface at ``engine_options.port``; on one machine (``stackc up``) where the request
    says, the port only if the arguments take it as ``{port}`` (else it stays fixed)."""
    if request.listen is None:
        return ALL_INTERFACES, options.port
    takes_port = any("port" in _placeholder_names(arg) for arg in options.args)
    return request.listen.host, request.listen.port if takes_port else options.port


def _placeholder_names(arg: str) -> set[str]:
    try:
        return {name for _, name, _, _ in string.Formatter().parse(arg) if name is not None}
    except ValueError:  # check() reported it
        return set()


def _placeholder_problem(arg: str) -> str | None:
    """Only bare ``{name}`` placeholders: ``{model.upper}`` would put a Python object's repr in the output."""
    try:
        fields = [(name, spec, conversion) for _, name, spec, conversion in string.Formatter().parse(arg)
                  if name is not None]
    except ValueError as error:
        return f"a malformed placeholder ({error})"
    for name, spec, conversion in fields:
        if name not in PLACEHOLDERS or spec or conversion:
            return f"unknown placeholder {{{name}{'!' + conversion if conversion else ''}{':' + spec if spec else ''}}}"
    return None


@hookimpl
def stackc_add_engines(registry: Registry) -> None:
    registry.add_engine(CommandEngine())
