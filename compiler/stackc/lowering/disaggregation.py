"""Lowering a prefill/decode-disaggregated model: one component per role, and the gateway's P/D proxy.

Each role's pods carry ``llm-d.ai/role: prefill|decode``, the label llm-d's ``prefill-filter`` and
``decode-filter`` select on, also in the role's Deployment and Service selectors so traffic reaches
the right role only. When a stack target reaches decode pods through llm-d's P/D sidecar (the gateway's
``proxies_pd_decode``), the decode pods of a ``kv_transfer_params`` model (vLLM's NixlConnector) get the
sidecar on the serving port: the endpoint picker names a
prefill pod in a header, and the sidecar runs the prefill hop before handing the request to the engine,
which moves to the serving port + ``PROXY_PORT_OFFSET`` (− near the top of the port range).
"""

from __future__ import annotations

from collections.abc import Callable

import attrs

from stackc.plan import images
from stackc.plan import model as plan
from stackc.plan.engine import Container, Port, Probe, RoleRequest
from stackc.plan.model import DISAGGREGATION_ROLE_LABEL
from stackc.spec import disaggregation
from stackc.spec.model import PORT_MAX, Model, Spec

ROLE_LABEL = DISAGGREGATION_ROLE_LABEL
PROXY_IMAGE = images.PD_SIDECAR.image
#: the engine's port behind the proxy: llm-d's own layout (8000 → 8200)
PROXY_PORT_OFFSET = 200
#: the engine's port once the proxy holds the serving port's name
ENGINE_PORT = "engine"

Build = Callable[[Model, RoleRequest], plan.Component]


def role_components(spec: Spec, key: str, protocol: str, proxied: bool, build: Build) -> list[plan.Component]:
    """A disaggregated model's decode and prefill components, each built once by ``build`` from the role's model.

    ``protocol`` is how a router joins the roles (the engine declares it per connector); ``proxied``: a stack
    target reaches decode pods through llm-d's P/D sidecar, which then takes the serving port the prefill
    pods have (one pool, one target port) and the decode engine is built behind it.
    """
    prefill = _role(spec, key, "prefill", protocol, build)
    if not (proxied and protocol == "kv_transfer_params"):
        return [_role(spec, key, "decode", protocol, build), prefill]
    front = prefill.endpoint.port
    behind = front.number + PROXY_PORT_OFFSET if front.number + PROXY_PORT_OFFSET <= PORT_MAX \
        else front.number - PROXY_PORT_OFFSET
    return [with_proxy(_role(spec, key, "decode", protocol, build, port=behind), front), prefill]


def _role(spec: Spec, key: str, role: str, protocol: str, build: Build, port: int | None = None) -> plan.Component:
    model = spec.models[key]
    assert model.disaggregation is not None
    served = disaggregation.role_model(model, role)
    if port is not None:
        served = attrs.evolve(served, port=port)
    request = RoleRequest(role, model.disaggregation.connector, protocol, model.disaggregation.kv_port,
                          f"{spec.stack.name}-{key}-decode")
    return build(served, request)


def with_proxy(component: plan.Component, port: Port) -> plan.Component:
    """The decode component with llm-d's P/D sidecar on ``port``, the engine behind it."""
    pod = component.pod
    engine = pod.containers[0]
    inner = next(p for p in engine.ports if p.name == port.name)
    engine = attrs.evolve(
        engine, ports=tuple(attrs.evolve(p, name=ENGINE_PORT) if p is inner else p for p in engine.ports),
        **{kind: _on_engine(getattr(engine, kind), port.name)
           for kind in ("startup_probe", "readiness_probe", "liveness_probe")})
    proxy = Container(
        "routing-proxy", PROXY_IMAGE,
        args=(f"--port={port.number}", f"--model-server-port={inner.number}", "--kv-connector=nixlv2",
              "--secure-proxy=false"),
        ports=(port,), readiness_probe=Probe(port=port.name, tcp=True, period_seconds=5),
        resources={"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}},
        security_context=engine.security_context, restart_policy="Always")
    pod = attrs.evolve(pod, containers=(engine, *pod.containers[1:]), init_containers=(*pod.init_containers, proxy))
    endpoint = component.endpoint
    metrics = endpoint.metrics
    if metrics is not None and metrics.port == port.name:
        metrics = attrs.evolve(metrics, port=ENGINE_PORT)
    return attrs.evolve(component, pod=pod, endpoint=attrs.evolve(endpoint, port=port, service_port=port.number,
                                                                    metrics=metrics))


def _on_engine(probe: Probe | None, name: str) -> Probe | None:
    return attrs.evolve(probe, port=ENGINE_PORT) if probe is not None and probe.port == name else probe
