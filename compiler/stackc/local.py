"""From compiled workloads to processes on this machine (``stackc up``).

The engines' compiled containers are run as they are, with only what a host needs changed:
container paths become folders under a state directory, the serving port becomes a free local
port, ``0.0.0.0`` becomes ``127.0.0.1``, and Secret references come from the user's environment.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import attrs

from stackc.diagnostics import Diagnostic
from stackc.workload import Container, LocalRun, Workload

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


def plan(workloads: Sequence[Workload], local_runs: Mapping[str, LocalRun | None], state: Path,
         skip: Iterable[str] = (), environ: Mapping[str, str] | None = None) -> tuple[list[LocalProcess], list[Diagnostic]]:
    """The processes for every replica, or diagnostics saying why a model can't run here."""
    environ = os.environ if environ is None else environ
    skipped = set(skip)
    processes: list[LocalProcess] = []
    problems: list[Diagnostic] = []
    for workload in workloads:
        if workload.key in skipped:
            continue
        path = ("models", workload.key)
        run = local_runs.get(workload.engine)
        if run is None:
            problems.append(Diagnostic("E040", f"engine '{workload.engine}' cannot run on this machine with stackc up",
                                       path + ("engine",), f"skip it with --skip {workload.key}"))
            continue
        model = workload.model
        if model.accelerators.count and not accelerator_present(model.accelerators.resource):
            problems.append(Diagnostic(
                "E041", f"model '{workload.key}' needs {model.accelerators.count} × {model.accelerators.resource} "
                "and this machine has none", path + ("accelerators",),
                f"skip it with --skip {workload.key}, or set accelerators.count = 0 if the engine can use the CPU"))
            continue
        container = workload.result.container
        executable = _find_executable(container, run)
        if executable is None:
            problems.append(Diagnostic("E042", f"'{container.command[0] if container.command else container.image}' "
                                       f"for engine '{workload.engine}' is not installed", path + ("engine",),
                                       run.install_hint))
            continue
        for replica in range(max(model.replicas, 1)):
            planned = _replica(workload, container, executable, replica, state, environ)
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


def _replica(workload: Workload, container: Container, executable: str, replica: int, state: Path,
             environ: Mapping[str, str]) -> LocalProcess | Diagnostic:
    home = state / workload.key
    paths: dict[str, str] = {}
    for mount in container.mounts:
        if mount.path in _HOST_PATHS:
            continue
        volume = next((v for v in workload.volumes if v.name == mount.volume), None)
        host = home / mount.volume
        if volume is not None and volume.config_map is not None:
            config_map = next(c for c in workload.config_maps if c.name == volume.config_map)
            host.mkdir(parents=True, exist_ok=True)
            for name, content in config_map.data.items():
                (host / name).write_text(content)
        elif volume is not None and (volume.claim is not None and mount.volume != "model-cache" or volume.image):
            return Diagnostic(
                "E043", f"model '{workload.key}' loads from {workload.model.model}, which this machine cannot mount",
                ("models", workload.key, "model"), f"--set models.{workload.key}.model=/path/to/local/model")
        host.mkdir(parents=True, exist_ok=True)
        paths[mount.path] = str(host)
    port = free_port()
    container_port = workload.result.port.number

    def substitute(text: str) -> str:
        for inside in sorted(paths, key=len, reverse=True):
            if text == inside or text.startswith(inside + "/"):
                return paths[inside] + text[len(inside):]
        text = text.replace("0.0.0.0", "127.0.0.1")
        if text.endswith(f":{container_port}"):
            text = text[: -len(str(container_port))] + str(port)
        return text

    args = list(container.args)
    for index, arg in enumerate(args):
        if index and args[index - 1] in _PORT_FLAGS and arg == str(container_port):
            args[index] = str(port)
        else:
            args[index] = substitute(arg)
    env: dict[str, str] = {}
    for var in container.env:
        if var.secret is not None:
            if var.name in environ:
                env[var.name] = environ[var.name]
            continue
        env[var.name] = substitute(var.value or "")
    env.update({k: substitute(v) for k, v in workload.model.env.items()})
    env.update({k: environ[k] for k in workload.model.secret_env if k in environ})
    # Kubernetes expands $(NAME) in args from the container's environment; so do we
    args = [re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), arg) for arg in args]
    probe = container.readiness_probe
    ready_path = probe.path if probe is not None and probe.path else "/"
    name = f"{workload.key}-{replica}"
    log = state / "logs" / f"{name}.log"
    return LocalProcess(name, workload.key, (executable, *container.command[1:], *args), env, port, ready_path, log)
