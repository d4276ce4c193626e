"""Checks of the lowered plan: what only shows once engines have lowered the models (names, ports and
volumes of the pods, the series autoscalers read). They run once, after lowering, and build no objects."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import PurePosixPath

from stackc.diagnostics import Diagnostic, Severity
from stackc.plan import signals
from stackc.plan.engine import Container
from stackc.plan.model import Component, Plan
from stackc.spec.model import NetworkPolicy


def served_name_conflicts(plan: Plan) -> list[Diagnostic]:
    """Every name a client may send must lead to one model, or one adapter (engines decide the primary names)."""
    owners: dict[str, str] = {}
    problems = []
    # a candidate version serves its model's names and adapters: the stable version's speak for both
    components = [c for c in plan.components if c.candidate is None]
    for component in components:
        for name in dict.fromkeys((*component.endpoint.served_names, *component.endpoint.aliases)):
            if name in owners and owners[name] != component.key:
                problems.append(Diagnostic("E012", f"'{name}' is already a name of model '{owners[name]}'",
                                           ("models", component.key, "aliases"),
                                           "every served name and alias must be unique in a stack"))
            owners.setdefault(name, component.key)
    for component in components:
        for index, adapter in enumerate(component.endpoint.adapters):
            owner = owners.get(adapter.name)
            if owner is not None:
                what = "an adapter" if owner.startswith("adapter ") else "a name"
                problems.append(Diagnostic("E012", f"'{adapter.name}' is already {what} of model "
                                           f"'{owner.removeprefix('adapter ')}'",
                                           ("models", component.key, "serving", "lora_adapters", index, "name"),
                                           "an adapter's name must differ from every model name, alias and adapter"))
            owners.setdefault(adapter.name, f"adapter {component.key}")
    return problems


def lowered_problems(plan: Plan) -> list[Diagnostic]:
    """Problems only visible once engines have lowered the models: names, ports and volumes of the pods."""
    return served_name_conflicts(plan) + [problem for c in plan.components for problem in (
        *_pod_volume_problems(c), *_pod_conflicts(c))]


def cluster_problems(plan: Plan) -> list[Diagnostic]:
    """Problems of the pods on a cluster (not of one machine's processes, ``stackc up``)."""
    return [problem for c in plan.components for problem in _cache_off_volume(c)] + list(unserved_addresses(plan)) \
        + list(unopened_service_ports(plan)) + list(engines_service_problems(plan)) + list(_unscraped_metrics(plan))


def _unscraped_metrics(plan: Plan) -> Iterator[Diagnostic]:
    """The namespace whose pods may scrape the models' metrics, in a stack whose models export none: no policy
    has a rule to put it in."""
    policy = plan.stack.network_policy
    if policy is not None and policy.metrics_namespace != NetworkPolicy().metrics_namespace \
            and plan.components and all(c.endpoint.metrics is None for c in plan.components):
        yield Diagnostic("W191", f"no model exports metrics: no NetworkPolicy admits scrapers from "
                         f"'{policy.metrics_namespace}'", ("stack", "network_policy", "metrics_namespace"),
                         "drop it", Severity.WARNING)


def unopened_service_ports(plan: Plan) -> Iterator[Diagnostic]:
    """Every port of a Service stackc makes leads to a port its pods open (by name): the model's, each role's
    and the engines' Service. A Ray cluster's Services are KubeRay's."""
    def opened(component: Component) -> set[str]:
        return {p.name for c in (*component.pod.containers, *component.pod.init_containers) for p in c.ports}

    for component in plan.components:
        if component.topology.kind == "ray_cluster":
            continue
        endpoint = component.endpoint
        for port in (endpoint.port, *endpoint.extra_service_ports):
            if port.name not in opened(component):
                yield Diagnostic("E152", f"Service {endpoint.service} port {port.number} targets '{port.name}', which "
                                 f"no container of the pods opens", ("models", component.key),
                                 f"engine '{component.engine}' must list the port it serves on in its container's "
                                 "ports: please report this to the engine plugin's authors")
    engines = plan.stack.engines_service
    for component in plan.components:
        if engines is not None and engines.target_port is not None and component.key in engines.members \
                and engines.target_port not in opened(component):
            yield Diagnostic("E152", f"Service {engines.name} targets '{engines.target_port}', which no container "
                             f"of model '{component.key}' opens", ("stack", "engines_service"),
                             "please report this as a stackc bug")


def engines_service_problems(plan: Plan) -> Iterator[Diagnostic]:
    """The Service over every engine: a name no other Service of the stack has, one port and one port name
    its pods share, and a word on each model it cannot reach."""
    engines = plan.stack.engines_service
    if engines is None:
        return
    path = ("stack", "engines_service")
    taken = {c.endpoint.service: f"model '{c.key}'" for c in plan.components}
    if plan.stack.kv_cache_server is not None:
        taken[plan.stack.kv_cache_server.name] = "the KV-cache server"
    if engines.name in taken:
        yield Diagnostic("E191", f"Service '{engines.name}' is already the Service of {taken[engines.name]}",
                         (*path, "name"), "name the engines' Service differently")
    members = [c for c in plan.components if c.key in engines.members]
    if not members:
        yield Diagnostic("W190", f"no model's pods can be behind Service '{engines.name}' (each is disaggregated or a "
                         "Ray cluster): it is not emitted", path, "drop stack.engines_service", Severity.WARNING)
    if members and engines.port is None:
        ports = ", ".join(f"{c.key}: {c.endpoint.public_port or c.endpoint.port.number}" for c in members)
        yield Diagnostic("E192", f"the models' Services have different ports ({ports}): one Service has one port",
                         (*path, "port"), "set stack.engines_service.port")
    if members and engines.target_port is None:
        names = ", ".join(f"{c.key}: {c.endpoint.port.name}" for c in members)
        yield Diagnostic("E192", f"the models name their serving ports differently ({names}): one Service targets "
                         "one port name", path, "keep models behind one Service that name their ports alike")
    for component in plan.components:
        if component.key in engines.members or component.disaggregation is not None and \
                component.disaggregation.role == "prefill":
            continue
        if component.disaggregation is not None:
            yield Diagnostic("W190", f"model '{component.key}' is disaggregated: its pods are not behind Service "
                             f"'{engines.name}' (a request must reach its prefill role first, then decode)",
                             ("models", component.key, "disaggregation"),
                             "clients reach it through the router, or its own Service", Severity.WARNING)
        else:
            yield Diagnostic("W190", f"model '{component.key}' runs as a Ray cluster whose pods and Services KubeRay "
                             f"makes: its pods are not behind Service '{engines.name}'", ("models", component.key),
                             f"clients reach it through its own Service ({component.endpoint.service})",
                             Severity.WARNING)


#: ``host:port``, or a URL (``scheme://host[:port]``), in a configured value
ADDRESS = re.compile(r"(?:(?P<scheme>[a-z][a-z0-9+.-]*)://)?(?P<host>[a-z0-9](?:[-a-z0-9.]*[a-z0-9])?)"
                     r"(?::(?P<port>\d{1,5}))?(?![-a-z0-9.:])")
DEFAULT_PORTS = {"http": 80, "https": 443}


def addresses(text: str) -> Iterator[tuple[str, int]]:
    """(host, port) of every address in a value: ``host:port``, or a URL with its port or its scheme's."""
    if ":" not in text:  # neither a port nor a scheme: most of a plan's arguments, not searched
        return
    for match in ADDRESS.finditer(text):
        scheme, port = match["scheme"], match["port"]
        number = int(port) if port else DEFAULT_PORTS.get(scheme or "")
        if number is not None and (port or scheme):
            yield match["host"], number


def told_addresses(container: Container) -> Iterator[tuple[str, str]]:
    """(value, what set it) of a container's env and command line, a ``NAME_HOST`` joined with its ``NAME_PORT``."""
    env = {var.name: var.value for var in container.env if var.value is not None}
    for name, value in env.items():
        port = env.get(name.removesuffix("_HOST") + "_PORT") if name.endswith("_HOST") else None
        yield (f"{value}:{port}" if port and ":" not in value else value), f"env {name}"
    for arg in (*container.command, *container.args):
        yield arg, "its command line"


#: KubeRay names a Ray cluster's head Service CLUSTER-head-svc (made by KubeRay, not in the plan)
KUBERAY_HEAD_SUFFIX = "-head-svc"


def unserved_addresses(plan: Plan) -> Iterator[Diagnostic]:
    """A container told to reach a Service of the stack at a port that Service does not serve (the address
    is refused once deployed): the engines' wiring of one another, checked before any target builds."""
    served = {c.endpoint.service: {c.endpoint.public_port or c.endpoint.port.number,
                                   *(p.number for p in c.endpoint.extra_service_ports)} for c in plan.components}
    server = plan.stack.kv_cache_server
    if server is not None:
        served[server.name] = {server.port.number}
    engines = plan.stack.engines_service
    if engines is not None and engines.port is not None:
        served.setdefault(engines.name, {engines.port})
    for component in plan.components:
        pods = (component.pod, *((component.worker_pod,) if component.worker_pod else ()))
        for container in (c for pod in pods for c in (*pod.init_containers, *pod.containers)):
            for text, origin in told_addresses(container):
                for host, port in addresses(text):
                    name = host.split(".")[0] if host.endswith((".svc", ".svc.cluster.local")) or "." not in host \
                        else None
                    if name in served and port not in served[name]:
                        yield Diagnostic("E152", f"container '{container.name}' is told ({origin}) to reach {host}:{port}, "
                                         f"but Service {name} serves {', '.join(map(str, sorted(served[name])))}",
                                         ("models", component.key),
                                         "the Service lacks the port: please report this as a stackc bug, or fix "
                                         "the address set in env or engine_args")
                    elif name is not None and name not in served and name.startswith(f"{plan.stack.name}-") \
                            and not name.endswith(KUBERAY_HEAD_SUFFIX):
                        # a name of the stack's own that no Service of the stack has: nothing answers there
                        yield Diagnostic("E152", f"container '{container.name}' is told ({origin}) to reach {host}:{port}, "
                                         f"but the stack has no Service {name}", ("models", component.key),
                                         f"the Services of its models: {', '.join(sorted(served))}; fix the address "
                                         "set in env or engine_args, or report this as a stackc bug")


#: variables that put the engine's downloads and caches somewhere: engines point them at the cache volume
CACHE_VARIABLES = ("HF_HOME", "HF_HUB_CACHE", "TRANSFORMERS_CACHE", "VLLM_CACHE_ROOT")


def _cache_off_volume(component: Component) -> Iterator[Diagnostic]:
    """A cache variable the spec's ``env`` moved off every volume of the engine's container: the weights then
    land on the container's own file system (lost with the pod, often not writable by a non-root user)."""
    serving = component.pod.containers[0]
    mounted = [m.path for m in serving.mounts] + [str(m.get("mountPath", "")) for m in serving.raw_mounts]
    for var in serving.env:
        if var.name in CACHE_VARIABLES and var.value is not None and not _on_a_mount(var.value, mounted):
            yield Diagnostic("W151", f"{var.name} = '{var.value}' is on no volume of the engine's container: weights "
                             "and caches go to the container's own file system (lost with the pod, often not "
                             "writable by its non-root user)", ("models", component.key, "env", var.name),
                             f"drop it (stackc points it at the cache volume), or mount a volume there "
                             f"(extra_volumes and extra_volume_mounts); mounted: {', '.join(sorted(mounted))}",
                             Severity.WARNING)


def _on_a_mount(value: str, mounted: list[str]) -> bool:
    """``value`` is a mount path or below one, as ``PurePosixPath.is_relative_to`` says; the plain prefix
    answers the common case (an engine pointing the variable at its own mount) without parsing paths."""
    paths = [path for path in mounted if path]
    return "//" not in value and any(value == path or value.startswith(path + "/") for path in paths) \
        or any(PurePosixPath(value).is_relative_to(path) for path in paths)


def _pod_conflicts(component: Component) -> Iterator[Diagnostic]:
    """Containers share the pod's network: a port number, a port name or a container name only once."""
    base = ("models", component.key)
    pod = component.pod
    # the engine's containers first: a clash is reported on the spec's container
    everything = sorted((*pod.containers, *pod.init_containers), key=lambda c: bool(c.spec_path))
    names: set[str] = set()
    for container in everything:
        if container.name in names:
            yield Diagnostic("E024", f"a container named '{container.name}' is already in the pod",
                             base + container.spec_path + ("name",), "stackc's own containers: " +
                             ", ".join(c.name for c in everything if not c.spec_path))
        names.add(container.name)
    numbers: dict[tuple[int, str], str] = {}
    port_names: dict[str, str] = {}
    spec_ports = [p.name for p in component.endpoint.peer_ports]
    # an init container's ports are closed before the others start; a native sidecar's stay open
    for container in (c for c in everything if c.restart_policy or c in pod.containers):
        owner = f"container '{container.name}'"
        for index, port in enumerate(container.ports):
            # the engine's container lists the engine's ports, then the spec's `ports`; the engine's own clash
            # through the spec's `port` (the serving port moved onto another of the engine's)
            roles = component.disaggregation
            if container.spec_path:
                here = base + container.spec_path + ("ports", index)
            elif roles is not None and port.name == roles.kv_port:
                here = base + ("disaggregation", "kv_port")
            else:
                here = base + (("ports", spec_ports.index(port.name)) if port.name in spec_ports else ("port",))
            if (port.number, port.protocol) in numbers:
                yield Diagnostic("E024", f"port {port.number}/{port.protocol} ('{port.name}') is already opened by "
                                 f"{numbers[(port.number, port.protocol)]}", here,
                                 "the containers of a pod share its network: pick another port")
            elif port.name in port_names:
                yield Diagnostic("E024", f"a port named '{port.name}' is already in {port_names[port.name]}", here,
                                 "port names are the Service's too: they must differ")
            numbers.setdefault((port.number, port.protocol), owner)
            port_names.setdefault(port.name, owner)


def _pod_volume_problems(component: Component) -> Iterator[Diagnostic]:
    base = ("models", component.key)
    pod = component.pod
    own = [v.name for v in pod.volumes if v.raw is None]
    declared = set(own)
    for index, volume in enumerate(v for v in pod.volumes if v.raw is not None):
        if volume.name in declared:
            yield Diagnostic("E018", f"a volume named '{volume.name}' is already in the pod",
                             base + ("extra_volumes", index, "name"), f"stackc's own volumes: {', '.join(own)}")
        declared.add(volume.name)
    serving = pod.containers[0]
    for index, mount in enumerate(serving.raw_mounts):
        name = mount.get("name")
        if isinstance(name, str) and name not in declared:
            yield Diagnostic("E018", f"mounts the volume '{name}', which the pod does not have",
                             base + ("extra_volume_mounts", index, "name"),
                             "declare it in extra_volumes; the pod has: " + ", ".join(sorted(declared)))
    paths = [m.path for m in serving.mounts]
    for index, mount in enumerate(serving.raw_mounts):
        path = mount.get("mountPath")
        if path in paths:
            yield Diagnostic("E018", f"'{path}' is already a mount path of the engine container",
                             base + ("extra_volume_mounts", index, "mountPath"))
        paths.append(path)
    for container in (c for c in (*pod.init_containers, *pod.containers) if c.spec_path):
        for index, mount in enumerate(container.mounts):
            if mount.volume not in declared:
                yield Diagnostic("E018", f"mounts the volume '{mount.volume}', which the pod does not have",
                                 base + container.spec_path + ("volume_mounts", index, "volume"),
                                 "declare it in extra_volumes; the pod has: " + ", ".join(sorted(declared)))


def autoscaling_problems(plan: Plan) -> Iterator[Diagnostic]:
    """Signals the lowered plan cannot provide: a series the engine does not export, no router to hold requests."""
    for component in plan.components:
        scaler = component.scale.autoscaler
        if scaler is None:
            continue
        path = ("models", component.key, "autoscaling")
        exporter = signals.router(plan.stack)
        has_pending = exporter is not None and exporter.router is not None and exporter.router.pending
        if scaler.signal in signals.ENGINE_SIGNALS and signals.engine_metric(component, scaler.signal) is None:
            offered = [name for name in signals.ENGINE_SIGNALS if signals.engine_metric(component, name)]
            yield Diagnostic("E081", f"engine '{component.engine}' exports no series for signal '{scaler.signal}'",
                             path + ("signal",), "signals it exports: " + ", ".join(offered) if offered else
                             f"engine '{component.engine}' exports no metrics: scale on cpu or memory")
        if scaler.signal == "router_pending" and not has_pending:
            yield Diagnostic("E081", "signal 'router_pending' counts the requests the router holds: the stack has "
                             "no router", path + ("signal",), 'add "router" to stack.targets')
        elif scaler.min_replicas == 0 and scaler.signal == "custom" and not has_pending:
            yield Diagnostic("E082", "at zero replicas the model's requests need the router target to hold them "
                             "until it wakes; without it they fail", path + ("min_replicas",),
                             'add "router" to stack.targets, or keep min_replicas >= 1')
        if scaler.signal in signals.RESOURCE_SIGNALS and scaler.signal not in \
                component.pod.containers[0].resources.get("requests", {}):
            yield Diagnostic("E080", f"an HPA measures {scaler.signal} against the pods' requests: the model "
                             f"requests no {scaler.signal}", path, f'set resources.requests.{scaler.signal}')
