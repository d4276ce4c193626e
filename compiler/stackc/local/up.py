"""``stackc up``: the stack's engines as local processes, the reference router in front.

API keys are enforced as in the cluster: what the router's and the engines' pods read from
Secrets comes from environment variables here, and a missing one is an error, not an open door.
Each process sees only its own: the router reads keys from files, an engine gets its own variable.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

import attrs

from stackc import kube, pipeline
from stackc.diagnostics import Diagnostic, DiagnosticsError, Location, did_you_mean
from stackc.local.processes import LOOPBACK, LocalProcess, base_environment, free_port, plan, port_in_use
from stackc.local.supervisor import READY, Supervisor, last_lines
from stackc.output.render import to_yaml
from stackc.plan.engine import Listen
from stackc.plan.model import Component
from stackc.registry import Registry
from stackc.spec.model import SecretRef, Spec
from stackc.check.plan import lowered_problems

ENGINE_TIMEOUT_SECONDS = 600.0
ROUTER_TIMEOUT_SECONDS = 30.0
#: how often the router checks the replicas here (cheap on loopback): one that died, or came back, is seen within it
HEALTH_INTERVAL_SECONDS = 1.0
#: the keys clients must send when ``[targets.router] api_keys`` is set (comma- or newline-separated)
ROUTER_KEYS_ENV = "STACKC_ROUTER_API_KEYS"


class StartupFailed(Exception):
    """An engine or the router did not become ready."""


def _write_secret(path: Path, text: str) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(text)
    return str(path)


def _router_keys(spec: Spec) -> SecretRef | None:
    """The Secret of the keys the router demands (``[targets.router] api_keys``), if any."""
    return getattr(spec.targets.get("router"), "api_keys", None)


def api_key_problems(spec: Spec, components: Sequence[Component], environ: Mapping[str, str]) -> list[Diagnostic]:
    """Every API key the cluster would enforce must be given here too."""
    problems = []
    router_keys = _router_keys(spec)
    if router_keys is not None and not environ.get(ROUTER_KEYS_ENV, "").strip():
        problems.append(Diagnostic(
            "E044", f"the router requires API keys (Secret '{router_keys.name}', key '{router_keys.key}' in the "
            f"cluster); set {ROUTER_KEYS_ENV} to the keys clients may send", ("targets", "router", "api_keys"),
            f"export {ROUTER_KEYS_ENV}=my-key (comma-separated for several)"))
    for component in components:
        variable = _engine_key_variable(component)
        if variable is not None and not environ.get(variable):
            secret = component.endpoint.api_key
            problems.append(Diagnostic(
                "E044", f"model '{component.key}' requires an API key (Secret '{secret.name}', key '{secret.key}' in "
                f"the cluster); set {variable}", ("models", component.key, "security", "api_key"),
                f"export {variable}=the-engine-key"))
    return problems


def _engine_key_variable(component: Component) -> str | None:
    """The environment variable the engine reads its API key from, when it demands one."""
    secret = component.endpoint.api_key
    if secret is None:
        return None
    return next((var.name for var in component.pod.containers[0].env if var.secret == secret), None)


def router_process(components: Sequence[Component], replicas: Sequence[LocalProcess], state: Path, port: int,
                   spec: Spec, environ: Mapping[str, str]) -> LocalProcess:
    """The reference router in front of the local replicas, configured as in the cluster."""
    from stackc_router.config import Config, to_data
    from stackc_router.from_plan import candidate_route, model_route

    def backends_of(component: Component) -> list[str]:
        return [f"http://{LOOPBACK}:{p.port}" for p in replicas
                if p.model == component.key and p.candidate == (component.candidate is not None)]

    routes = []
    for component in components:
        backends = backends_of(component)
        if not backends or component.candidate is not None:
            continue
        variable = _engine_key_variable(component)
        key_file = _write_secret(state / "keys" / component.key, environ[variable]) if variable else None
        candidate = kube.candidate(components, component.key)
        tried = backends_of(candidate) if candidate is not None else []
        route = model_route(component, backends=backends, upstream_key_file=key_file,
                            candidate=candidate_route(candidate, backends=tried) if candidate and tried else None)
        routes.append(dataclasses.replace(route, health_interval_s=HEALTH_INTERVAL_SECONDS))
    keys_file = None
    if _router_keys(spec) is not None:
        keys = [key.strip() for key in environ[ROUTER_KEYS_ENV].replace(",", "\n").splitlines() if key.strip()]
        keys_file = _write_secret(state / "keys" / "router", "\n".join(keys) + "\n")
    path = state / "router.yaml"
    path.write_text(to_yaml(to_data(Config(models=tuple(routes), host=LOOPBACK, port=port, api_keys_file=keys_file))))
    return LocalProcess("router", "", (sys.executable, "-m", "stackc_router", "--config", str(path)),
                        base_environment(environ), port, "/ready", state / "logs" / "router.log")


def run(supervisor: Supervisor, stop: threading.Event, specs: Sequence[str], registry: Registry,
        settings: Sequence[str], port: int | None, skip: Sequence[str], state: Path,
        environ: Mapping[str, str] = os.environ) -> tuple[str, list[str]]:
    """Start everything under ``supervisor``; returns the base URL and the served names.

    The caller owns ``state`` and stops the supervisor, whatever happens here.
    """
    checked = pipeline.check(specs, registry, settings)
    spec, source_map = checked.spec, checked.source_map
    lowered = pipeline.lower(spec, registry)
    components = lowered.components
    problems = lowered_problems(lowered)
    problems += [Diagnostic("E045", f"unknown model '{name}' in --skip", (), did_you_mean(name, spec.models),
                            location=Location("--skip", 1, 1)) for name in sorted(set(skip) - set(spec.models))]
    if port is not None and port_in_use(port):
        problems.append(Diagnostic("E048", f"port {port} is in use on this machine: the router can't listen there",
                                   (), "choose another --port, or leave --port out for a free one",
                                   location=Location("--port", 1, 1)))
    local_runs = {name: entry.traits.local_run for name, entry in registry.engines.items()}
    running = [c for c in components if c.key not in skip]
    processes, unrunnable = plan(running, local_runs, state, lambda c, listen: lower_replica(spec, registry, c, listen),
                                 environ=environ)
    problems += unrunnable + api_key_problems(spec, running, environ) + kv_cache_server_problems(spec, running)
    if problems:
        raise DiagnosticsError(pipeline.locate(problems, source_map))
    if not processes:
        raise StartupFailed("no model left to run (all skipped)")
    supervisor.start(processes)
    if not supervisor.wait_ready(ENGINE_TIMEOUT_SECONDS, interrupted=stop.is_set):
        raise StartupFailed(_not_ready(supervisor, "engines", stop))
    router = router_process(components, processes, state, port or free_port(), spec, environ)
    supervisor.start([router])
    if not supervisor.wait_ready(ROUTER_TIMEOUT_SECONDS, names=["router"], interrupted=stop.is_set):
        raise StartupFailed(_not_ready(supervisor, "the router", stop))
    names = sorted({name for c in components if any(p.model == c.key for p in processes)
                    for name in (*c.endpoint.served_names, *c.endpoint.aliases)})
    return f"http://{LOOPBACK}:{router.port}/v1", names


def kv_cache_server_problems(spec: Spec, running: Sequence[Component]) -> list[Diagnostic]:
    """This machine runs no KV-cache server: an engine told to share blocks through it would find nothing there."""
    return [Diagnostic("E125", f"stackc up runs no KV-cache server, which model '{c.key}' shares KV blocks through",
                       ("models", c.key, "kv_offload", "remote"),
                       f"--set models.{c.key}.kv_offload.remote=false, or --skip {c.key}")
            for c in running if (offload := spec.models[c.key].kv_offload) is not None and offload.remote]


def lower_replica(spec: Spec, registry: Registry, component: Component, listen: Listen) -> Component:
    """The model lowered for one replica on this machine: its engine listens at ``listen``, so its own
    arguments, probes and endpoint agree on the address (nothing is rewritten after lowering)."""
    alone = attrs.evolve(spec, models={component.key: spec.models[component.key]})
    return next(c for c in pipeline.lower(alone, registry, listen=listen).components if c.name == component.name)


def _not_ready(supervisor: Supervisor, what: str, stop: threading.Event) -> str:
    """Why start-up ended, with the failed processes' causes and log tails (the logs may be removed)."""
    if stop.is_set():
        return "interrupted"
    lines = [f"{what} did not become ready"]
    for item in supervisor.running:
        tail = last_lines(item.spec.log, 8) if item.state != READY else []
        if tail:
            lines.append(f"the log of {item.spec.name} ends with:")
            lines += [f"  | {line}" for line in tail]
    return "\n".join(lines)
