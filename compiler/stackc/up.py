"""``stackc up``: the stack's engines as local processes, the reference router in front."""

from __future__ import annotations

import shutil
import sys
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from stackc import pipeline
from stackc.diagnostics import DiagnosticsError
from stackc.local import LocalProcess, free_port, plan
from stackc.registry import Registry
from stackc.render import to_yaml
from stackc.supervisor import Supervisor
from stackc.validate import served_name_conflicts
from stackc.workload import Workload

ENGINE_TIMEOUT_SECONDS = 600.0
ROUTER_TIMEOUT_SECONDS = 30.0


class StartupFailed(Exception):
    """An engine or the router did not become ready."""


def router_process(workloads: Sequence[Workload], replicas: Sequence[LocalProcess], state: Path, port: int) -> LocalProcess:
    models: dict[str, Any] = {}
    for workload in workloads:
        backends = [f"http://127.0.0.1:{p.port}" for p in replicas if p.model == workload.key]
        if not backends:
            continue
        primary, *others = workload.result.served_names
        entry: dict[str, Any] = {
            "served_name": primary,
            "aliases": sorted(set(others) | set(workload.model.aliases) - {primary}),
            "strategy": workload.model.routing.strategy,
            "backends": backends,
        }
        if workload.model.routing.strategy == "session":
            entry["session"] = {"header": workload.model.routing.session_header}
        probe = workload.result.container.readiness_probe
        if probe is not None and probe.path:
            entry["health"] = {"path": probe.path}
        models[workload.key] = entry
    config = {"version": 1, "listen": {"host": "127.0.0.1", "port": port}, "models": models}
    path = state / "router.yaml"
    path.write_text(to_yaml(config))
    return LocalProcess("router", "", (sys.executable, "-m", "stackc_router", "--config", str(path)), {}, port,
                        "/ready", state / "logs" / "router.log")


def run(supervisor: Supervisor, stop: threading.Event, specs: Sequence[str], registry: Registry,
        settings: Sequence[str], port: int | None, skip: Sequence[str], state_dir: str | None) -> tuple[str, list[str]]:
    """Start everything under ``supervisor``; returns the base URL and the served names.

    The caller stops the supervisor, whatever happens here.
    """
    checked = pipeline.check(specs, registry, settings)
    spec, source_map = checked.spec, checked.source_map
    workloads = pipeline.lower(spec, registry)
    conflicts = served_name_conflicts(workloads)
    if conflicts:
        raise DiagnosticsError(pipeline.locate(conflicts, source_map))
    state = Path(state_dir) if state_dir else Path(tempfile.mkdtemp(prefix=f"stackc-up-{spec.stack.name}-"))
    local_runs = {name: getattr(entry.obj, "local_run", None) for name, entry in registry.engines.items()}
    processes, problems = plan(workloads, local_runs, state, skip)
    if problems:
        if not state_dir:
            shutil.rmtree(state, ignore_errors=True)
        raise DiagnosticsError(pipeline.locate(problems, source_map))
    if not processes:
        raise StartupFailed("no model left to run (all skipped)")
    print(f"stackc up: logs in {state / 'logs'}", file=sys.stderr)
    supervisor.start(processes)
    if not supervisor.wait_ready(ENGINE_TIMEOUT_SECONDS, interrupted=stop.is_set):
        raise StartupFailed("engines did not become ready" if not stop.is_set() else "interrupted")
    router = router_process(workloads, processes, state, port or free_port())
    supervisor.start([router])
    if not supervisor.wait_ready(ROUTER_TIMEOUT_SECONDS, names=["router"], interrupted=stop.is_set):
        raise StartupFailed("the router did not become ready" if not stop.is_set() else "interrupted")
    names = sorted({name for w in workloads if any(p.model == w.key for p in processes)
                    for name in (*w.result.served_names, *w.model.aliases)})
    return f"http://127.0.0.1:{router.port}/v1", names
