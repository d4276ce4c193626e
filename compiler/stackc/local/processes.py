"""From the plan's components to processes on this machine (``stackc up``).

Each replica is lowered for this machine (``EngineRequest.listen``: 127.0.0.1 and a free port of
its own), and its compiled container runs as it is but for what a pod's volumes are: container
paths become folders under a state directory. Secret references come from the user's environment,
and every process starts from the few variables a program needs (``BASE_ENVIRONMENT``), so no
key reaches a process that isn't meant to read it.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import socket
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

from stackc import kube
from stackc.diagnostics import Diagnostic
from stackc.lowering.lower import CACHE_VOLUME
from stackc.plan.engine import Container, Listen, LocalRun
from stackc.plan.model import Component
from stackc.records import frozen

_HOST_PATHS = {"/dev/shm"}
LOOPBACK = "127.0.0.1"
#: what every process gets from the user's environment (their own Secret variables come on top)
BASE_ENVIRONMENT = frozenset({
    "PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TZ", "TMPDIR", "TERM",
    "LD_LIBRARY_PATH", "VIRTUAL_ENV", "PYTHONPATH", "SSL_CERT_FILE", "SSL_CERT_DIR",
    "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy",
})
#: ...and the variables with these prefixes: locale, folders, and the accelerators' runtime settings
BASE_ENVIRONMENT_PREFIXES = ("LC_", "XDG_", "CUDA_", "NVIDIA_", "ROCR_", "HIP_", "OMP_")


@frozen
class LocalProcess:
    """One engine replica to start, or the router."""

    name: str
    model: str
    argv: tuple[str, ...]
    env: Mapping[str, str]
    port: int
    ready_path: str
    log: Path
    #: a replica of the model's candidate version
    candidate: bool = False


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        return probe.getsockname()[1]


def port_in_use(port: int) -> bool:
    """Whether something on this machine holds ``port`` (a server started here would fail to bind it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("0.0.0.0", port))
        except OSError as error:
            return error.errno == errno.EADDRINUSE
    return False


def base_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The part of the user's environment every process may see: no keys, no tokens."""
    return {name: value for name, value in environ.items()
            if name in BASE_ENVIRONMENT or name.startswith(BASE_ENVIRONMENT_PREFIXES)}


def accelerator_present(resource: str) -> bool:
    """Whether this machine has the devices a resource name asks for (best effort)."""
    if resource.startswith("nvidia.com/"):
        return Path("/dev/nvidiactl").exists() or shutil.which("nvidia-smi") is not None
    if resource.startswith("amd.com/"):
        return Path("/dev/kfd").exists()
    if resource.startswith("aws.amazon.com/neuron"):
        return Path("/dev/neuron0").exists()
    return False


#: a model lowered for one replica on this machine, listening where it is told
LowerReplica = Callable[[Component, Listen], Component]


def plan(components: Sequence[Component], local_runs: Mapping[str, LocalRun | None], state: Path,
         lower_replica: LowerReplica, skip: Iterable[str] = (),
         environ: Mapping[str, str] | None = None) -> tuple[list[LocalProcess], list[Diagnostic]]:
    """The processes for every replica, or diagnostics saying why a model can't run here.

    Each replica is lowered to listen on 127.0.0.1 at a free port; an engine that keeps its own
    port can run one replica (on that port, if it is free), not several.
    """
    environ = os.environ if environ is None else environ
    skipped = set(skip)
    processes: list[LocalProcess] = []
    problems: list[Diagnostic] = []
    kept: set[int] = set()  # ports engines keep whatever they are asked, already planned
    for component in components:
        if component.key in skipped:
            continue
        path = ("models", component.key)
        if component.disaggregation is not None:
            if component.disaggregation.role == "decode":
                problems.append(Diagnostic(
                    "E107", "stackc up runs no disaggregated model: its roles pass KV caches over NIXL or Mooncake, "
                    "which needs the accelerators and engines of a cluster", path + ("disaggregation",),
                    f"skip it with --skip {component.key}, or drop disaggregation for local runs"))
            continue
        run = local_runs.get(component.engine)
        if run is None:
            problems.append(Diagnostic("E040", f"engine '{component.engine}' cannot run on this machine with stackc up",
                                       path + ("engine",), f"skip it with --skip {component.key}"))
            continue
        accelerators = component.accelerators
        if accelerators.count and not accelerator_present(accelerators.resource):
            problems.append(Diagnostic(
                "E041", f"model '{component.key}' needs {accelerators.count} × {accelerators.resource} "
                "and this machine has none", path + ("accelerators",),
                f"skip it with --skip {component.key}, or set accelerators.count = 0 if the engine can use the CPU"))
            continue
        container = component.pod.containers[0]
        executable = _find_executable(container, run)
        if executable is None:
            problems.append(Diagnostic("E042", f"'{container.command[0] if container.command else container.image}' "
                                       f"for engine '{component.engine}' is not installed", path + ("engine",),
                                       run.install_hint))
            continue
        # a model of no replicas still runs one here (to try it); a candidate of none is not deployed
        replicas = component.scale.replicas if component.candidate is not None else max(component.scale.replicas, 1)
        for replica in range(replicas):
            listen = Listen(LOOPBACK, free_port())
            lowered = lower_replica(component, listen)
            planned = _port_problem(lowered, listen, replicas, kept) or _replica(lowered, executable, replica, state,
                                                                                  environ)
            if isinstance(planned, Diagnostic):
                problems.append(planned)
                break
            processes.append(planned)
    return processes, problems


def _port_problem(component: Component, listen: Listen, replicas: int, kept: set[int]) -> Diagnostic | None:
    """An engine that keeps its port: several replicas would all bind it, as would a model and its candidate
    (``kept``: such ports already planned); one needs it free."""
    port = component.endpoint.port.number
    if port == listen.port:
        return None
    path = ("models", component.key)
    if replicas > 1:
        return Diagnostic(
            "E047", f"model '{component.key}' has {replicas} replicas, but its engine listens on port {port} whatever "
            "stackc up asks: they would all bind that port", path + ("replicas",),
            f"a command engine takes its port where {{port}} stands in engine_options.args; "
            f"or --set models.{component.key}.replicas=1")
    if port in kept and component.candidate is not None:
        return Diagnostic("E047", f"model '{component.key}''s candidate runs an engine that listens on port {port} "
                          "whatever stackc up asks, as the model's does: both would bind it", path + ("candidate",),
                          "a command engine takes its port where {port} stands in engine_options.args; or "
                          f"--set models.{component.key}.candidate.replicas=0")
    kept.add(port)
    if port_in_use(port):
        return Diagnostic("E048", f"port {port}, which model '{component.key}' listens on, is in use on this machine",
                          path + ("engine",), "stop what holds it; a command engine takes a free port where {port} "
                          "stands in engine_options.args")
    return None


def _find_executable(container: Container, run: LocalRun) -> str | None:
    wanted = container.command[0] if container.command else ""
    for candidate in run.binaries.get(wanted, (wanted,)):
        found = shutil.which(candidate)
        if found:
            return found
    return None


def _replica(component: Component, executable: str, replica: int, state: Path,
             environ: Mapping[str, str]) -> LocalProcess | Diagnostic:
    container = component.pod.containers[0]
    own_name = kube.version_key(component)
    home = state / own_name
    paths: dict[str, str] = {}
    source = component.weights.source
    if source.scheme in ("s3", "gs") and component.weights.location != source.location:
        # in the cluster an init container downloads them; this machine runs none
        return Diagnostic("E043", f"model '{component.key}' loads from {source.location}, which stackc up does not "
                          "download", ("models", component.key, "model"),
                          f"--set models.{component.key}.model=/path/to/local/model")
    for mount in container.mounts:
        if mount.path in _HOST_PATHS:
            continue
        volume = next((v for v in component.pod.volumes if v.name == mount.volume), None)
        host = home / mount.volume
        if volume is not None and volume.config_map is not None:
            config_map = next(c for c in component.config_maps if c.name == volume.config_map)
            host.mkdir(parents=True, exist_ok=True)
            for name, content in config_map.data.items():
                (host / name).write_text(content)
        elif volume is not None and (volume.claim is not None and mount.volume != CACHE_VOLUME or volume.image):
            source = component.weights.source
            where = f"pvc://{source.claim}{source.location}" if source.scheme == "pvc" else f"{source.scheme}://{source.location}"
            return Diagnostic(
                "E043", f"model '{component.key}' loads from {where}, which this machine cannot mount",
                ("models", component.key, "model"), f"--set models.{component.key}.model=/path/to/local/model")
        host.mkdir(parents=True, exist_ok=True)
        paths[mount.path] = str(host)

    def on_host(text: str) -> str:
        """A path inside a mounted volume, as the folder that stands for the volume here."""
        for inside in sorted(paths, key=len, reverse=True):
            if text == inside or text.startswith(inside + "/"):
                return paths[inside] + text[len(inside):]
        return text

    if source.scheme == "path" and on_host(source.location) == source.location and not Path(source.location).exists():
        # in the cluster the file is in the image or on a node's disk; here it must be on this machine
        return Diagnostic("E046", f"model '{component.key}' loads from {source.location}, which does not exist on "
                          "this machine", ("models", component.key, "model"),
                          f"--set models.{component.key}.model=/path/to/{Path(source.location).name}")
    own: dict[str, str] = {}
    for var in container.env:
        if var.value_from is not None:
            continue  # the pod's IP, a ConfigMap key…: nothing to read on this machine
        if var.secret is not None:
            if var.name in environ:
                own[var.name] = environ[var.name]
            continue
        own[var.name] = on_host(var.value or "")
    # Kubernetes expands $(NAME) in args from the container's environment; so do we
    args = [re.sub(r"\$\((\w+)\)", lambda m: own.get(m.group(1), m.group(0)), on_host(arg)) for arg in container.args]
    probe = container.readiness_probe
    ready_path = probe.path if probe is not None and probe.path else "/"
    name = f"{own_name}-{replica}"
    log = state / "logs" / f"{name}.log"
    return LocalProcess(name, component.key, (executable, *container.command[1:], *args),
                        {**base_environment(environ), **own},
                        component.endpoint.port.number, ready_path, log, component.candidate is not None)
