"""From the plan's components to processes on this machine (``stackc up``).

The engines' compiled containers are run as they are, with only what a host needs changed:
container paths become folders under a state directory, the serving port becomes a free local
port, ``0.0.0.0`` becomes ``127.0.0.1``, and Secret references come from the user's environment.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import attrs

from stackc.diagnostics import Diagnostic
from stackc.plan.engine import Container, LocalRun
from stackc.lowering.lower import CACHE_VOLUME
from stackc.plan.model import Component

_PORT_FLAGS = {"--port", "-p", "--http-port", "--http_port", "--server-port"}
_HOST_PATHS = {"/dev/shm"}


@attrs.frozen
class LocalProcess:
    """One engine replica to start, or the router."""

    name: str
    model: str
    argv: tuple[str, ...]
    env: Mapping[str, str]
    port: int
    ready_path: str
    log: Path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def accelerator_present(resource: str) -> bool:
    """Whether this machine has the devices a resource name asks for (best effort)."""
    if resource.startswith("nvidia.com/"):
        return Path("/dev/nvidiactl").exists() or shutil.which("nvidia-smi") is not None
    if resource.startswith("amd.com/"):
        return Path("/dev/kfd").exists()
    if resource.startswith("aws.amazon.com/neuron"):
        return Path("/dev/neuron0").exists()
    return False


#: the component lowered again with the engine listening on a given port (None: the engine's port is fixed)
Relisten = Callable[[Component, int], "Component | None"]


def plan(components: Sequence[Component], local_runs: Mapping[str, LocalRun | None], state: Path,
         skip: Iterable[str] = (), environ: Mapping[str, str] | None = None,
         relisten: Relisten | None = None) -> tuple[list[LocalProcess], list[Diagnostic]]:
    """The processes for every replica, or diagnostics saying why a model can't run here.

    Each replica listens on a free port: with ``relisten`` the engine is told so, as the spec's
    ``port`` would; an engine whose port can't be set has it replaced in its arguments.
    """
    environ = os.environ if environ is None else environ
    skipped = set(skip)
    processes: list[LocalProcess] = []
    problems: list[Diagnostic] = []
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
        for replica in range(max(component.scale.replicas, 1)):
            port = free_port()
            listening = relisten(component, port) if relisten is not None else None
            planned = _replica(listening or component, executable, replica, state, environ, port,
                               rewrite_port=listening is None)
            if isinstance(planned, Diagnostic):
                problems.append(planned)
                break
            processes.append(planned)
    return processes, problems


def _find_executable(container: Container, run: LocalRun) -> str | None:
    wanted = container.command[0] if container.command else ""
    for candidate in run.binaries.get(wanted, (wanted,)):
        found = shutil.which(candidate)
        if found:
            return found
    return None


def _replica(component: Component, executable: str, replica: int, state: Path, environ: Mapping[str, str],
             port: int, rewrite_port: bool) -> LocalProcess | Diagnostic:
    container = component.pod.containers[0]
    home = state / component.key
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
    container_port = component.endpoint.port.number

    def substitute(text: str) -> str:
        for inside in sorted(paths, key=len, reverse=True):
            if text == inside or text.startswith(inside + "/"):
                return paths[inside] + text[len(inside):]
        text = text.replace("0.0.0.0", "127.0.0.1")
        if rewrite_port and text.endswith(f":{container_port}"):
            text = text[: -len(str(container_port))] + str(port)
        return text

    args = list(container.args)
    for index, arg in enumerate(args):
        if rewrite_port and index and args[index - 1] in _PORT_FLAGS and arg == str(container_port):
            args[index] = str(port)
        else:
            args[index] = substitute(arg)
    env: dict[str, str] = {}
    for var in container.env:
        if var.value_from is not None:
            continue  # the pod's IP, a ConfigMap key…: nothing to read on this machine
        if var.secret is not None:
            if var.name in environ:
                env[var.name] = environ[var.name]
            continue
        env[var.name] = substitute(var.value or "")
    # Kubernetes expands $(NAME) in args from the container's environment; so do we
    args = [re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), arg) for arg in args]
    probe = container.readiness_probe
    ready_path = probe.path if probe is not None and probe.path else "/"
    name = f"{component.key}-{replica}"
    log = state / "logs" / f"{name}.log"
    return LocalProcess(name, component.key, (executable, *container.command[1:], *args), env, port, ready_path, log)
