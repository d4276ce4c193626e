"""Lowering: the checked spec becomes a Plan. The only stage after validation that reads the spec.

For each enabled model the core decides storage (cache, weights, chat template), asks the
engine for its container, and merges the spec's pod-level settings into it once: env (the
spec's values win over the engine's), extra mounts, probe overrides, resources with
accelerators, pull policy and security contexts. Nothing downstream rewrites the result.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import attrs

from stackc.kube import RESTRICTED_CONTAINER, RESTRICTED_POD
from stackc.plan import model as plan
from stackc.plan.engine import (
    ClaimRequest,
    ConfigMapData,
    Container,
    EngineRequest,
    EngineResult,
    EnvVar,
    ModelSource,
    Mount,
    Probe,
    Volume,
    Weights,
)
from stackc.registry import Registry
from stackc.spec import sources
from stackc.spec.model import Autoscaling, Model, ProbeOverride, Spec, Toleration

CACHE_VOLUME = "model-cache"
CHAT_TEMPLATE_VOLUME = "chat-template"
SHM_VOLUME = "dshm"
WEIGHTS_VOLUME = "model-source"
WEIGHTS_PATH = "/models"
#: a leader/worker group's pods say which they are; Services and pools select the leaders
ROLE_LABEL = "stackc.dev/role"
#: schemes a platform that downloads weights (KServe's storage initializer) can fetch
PLATFORM_SCHEMES = ("hf", "s3", "gs", "pvc", "oci")

PluginCall = Callable[..., Any]


def workload_name(spec: Spec, key: str) -> str:
    return f"{spec.stack.name}-{key}"


def lower(spec: Spec, registry: Registry, plugin_call: PluginCall, targets: tuple[str, ...] = (),
          platform_weights: str | None = None) -> plan.Plan:
    """Every enabled model, in key order, as a Component.

    ``platform_weights`` is where a target's platform puts downloaded weights (KServe:
    ``/mnt/models``); engines are then told to load from there instead of fetching themselves.
    """
    components = tuple(_component(spec, key, spec.models[key], registry, plugin_call, platform_weights)
                       for key in sorted(spec.models) if spec.models[key].enabled)
    policy = spec.stack.network_policy
    stack = plan.Stack(spec.stack.name, spec.stack.namespace, dict(spec.stack.labels), dict(spec.stack.annotations),
                       tuple(sorted(set(targets))),
                       plan.NetworkPolicy(policy.metrics_namespace, tuple(dict(p) for p in policy.allow_from))
                       if policy.enabled else None)
    return plan.Plan(stack, components)


def weights(source: ModelSource, platform_weights: str | None, revision: str | None = None) -> Weights:
    """Who fetches the weights and where the engine finds them.

    ``platform_weights`` is None for engines that load one file rather than a folder (the
    engine says so with ``platform_weights = False``), and for a Hugging Face *file*
    (ORG/REPO/FILE): a storage initializer would fetch the whole repository, every quantization.
    """
    hf_file = source.scheme == "hf" and source.location.count("/") >= 2
    if platform_weights and source.scheme in PLATFORM_SCHEMES and not hf_file:
        uri = _platform_uri(source)
        return Weights(source, platform_weights, platform_uri=f"{uri}:{revision}" if revision and source.scheme == "hf" else uri)
    if source.scheme == "pvc":
        return Weights(source, WEIGHTS_PATH + source.location.rstrip("/"), Mount(WEIGHTS_VOLUME, WEIGHTS_PATH, read_only=True))
    if source.scheme == "oci":
        return Weights(source, WEIGHTS_PATH, Mount(WEIGHTS_VOLUME, WEIGHTS_PATH, read_only=True))
    return Weights(source, source.location, revision=revision)


def _platform_uri(source: ModelSource) -> str:
    if source.scheme == "pvc":
        return f"pvc://{source.claim}{source.location}"
    return source.location if source.scheme in ("s3", "gs") else f"{source.scheme}://{source.location}"


def _component(spec: Spec, key: str, model: Model, registry: Registry, plugin_call: PluginCall,
               platform_weights: str | None) -> plan.Component:
    name = workload_name(spec, key)
    selector = {"app.kubernetes.io/name": key, "app.kubernetes.io/instance": spec.stack.name}
    labels = {
        **spec.stack.labels,
        **model.labels,
        **selector,
        "app.kubernetes.io/component": "model-server",
        "app.kubernetes.io/part-of": spec.stack.name,
        "app.kubernetes.io/managed-by": "stackc",
        "stackc.dev/engine": model.engine,
    }
    volumes: list[Volume] = []
    claims: list[ClaimRequest] = []
    config_maps: list[ConfigMapData] = []
    cache = model.cache
    if cache is not None and cache.existing_claim:
        volumes.append(Volume(CACHE_VOLUME, claim=cache.existing_claim))
    elif cache is not None and cache.size:
        claims.append(ClaimRequest(f"{name}-cache", cache.size, cache.access_mode, cache.storage_class))
        volumes.append(Volume(CACHE_VOLUME, claim=f"{name}-cache"))
    else:
        volumes.append(Volume(CACHE_VOLUME, empty_dir={}))
    template_volume = None
    if model.serving.chat_template is not None:
        config_maps.append(ConfigMapData(f"{name}-chat-template", {"chat-template.jinja": model.serving.chat_template}))
        volumes.append(Volume(CHAT_TEMPLATE_VOLUME, config_map=f"{name}-chat-template"))
        template_volume = CHAT_TEMPLATE_VOLUME
    source = sources.parse(model.model)
    assert source is not None  # validation rejected unparsable sources
    registered = registry.engines[model.engine]
    # a platform's downloader gets no credentials from the spec (they reach the engine's env only)
    credentials = model.security.hf_token is not None or bool(model.secret_env)
    loads_folders = getattr(registered.obj, "platform_weights", True)
    model_weights = weights(source, platform_weights if loads_folders and not credentials else None, model.revision)
    if model_weights.mount is not None:
        volume = Volume(WEIGHTS_VOLUME, claim=source.claim) if source.scheme == "pvc" else Volume(WEIGHTS_VOLUME, image=source.location)
        volumes.append(volume)
    request = EngineRequest(key, model, model.engine_options, source, name, model_weights, CACHE_VOLUME, template_volume)
    result: EngineResult = plugin_call(registered.provider, f"engine '{model.engine}' lower()", registered.obj.lower, request)
    extra_mounts: list[Mount] = []
    # the shards on one pod (a multi-node replica divides them over its pods)
    parallel = model.serving.tensor_parallel * model.serving.pipeline_parallel // model.serving.nodes
    if model.shm_size or (result.needs_shm and parallel > 1):
        size = model.shm_size or f"{2 * parallel}Gi"
        volumes.append(Volume(SHM_VOLUME, empty_dir={"medium": "Memory", "sizeLimit": size}))
        extra_mounts.append(Mount(SHM_VOLUME, "/dev/shm"))
    volumes.extend(result.volumes)
    volumes.extend(Volume(str(raw.get("name", "")), raw=raw) for raw in model.extra_volumes)
    account = model.security.service_account
    account_name = account.name or (name if account.create else None)
    serving = _serving_container(result.container, model, extra_mounts)
    budget = model.disruption_budget
    scaler = autoscaler(model, spec.stack.prometheus)
    most = scaler.max_replicas if scaler is not None else model.replicas
    wants_budget = budget.enabled or (budget.enabled is None and most > 1)
    probe = serving.readiness_probe
    pod = _pod(model, labels, selector, serving, result.init_containers, volumes, account_name)
    topology, worker_pod, answering = plan.Topology(), None, selector
    if model.serving.nodes > 1:
        assert result.worker is not None, f"engine '{model.engine}' returned no worker for a multi-node model"
        topology = plan.Topology("leader_worker", model.serving.nodes, model.scheduling.group_topology)
        answering = {**selector, ROLE_LABEL: "leader"}
        worker_pod = attrs.evolve(pod, labels={**pod.labels, ROLE_LABEL: "worker"},
                                  containers=(_serving_container(result.worker, model, extra_mounts),))
        pod = attrs.evolve(pod, labels={**pod.labels, ROLE_LABEL: "leader"})
    return plan.Component(
        key=key, name=name, engine=model.engine, labels=labels, selector=selector, pod=pod,
        endpoint=plan.Endpoint(
            port=result.port, served_names=result.served_names, aliases=model.aliases,
            health_path=probe.path if probe is not None else None, metrics=result.metrics,
            api_key=model.security.api_key, service=name, service_port=result.port.number, selector=answering),
        weights=model_weights,
        scale=plan.Scale(model.replicas, scaler),
        topology=topology, worker_pod=worker_pod,
        accelerators=model.accelerators, routing=model.routing, rollout=model.rollout,
        disruption_budget=budget.max_unavailable if wants_budget else None,
        service_account=plan.ServiceAccount(account_name, dict(account.annotations))
        if account.create and account_name else None,
        claims=tuple(claims), config_maps=tuple(config_maps),
    )


def autoscaler(model: Model, prometheus: str) -> plan.Autoscaler | None:
    """Who owns the replica count: None (``replicas``) unless the spec says anything about autoscaling.

    Unset bounds default to ``replicas``; KServe's ``metric`` is a spelling of the signal.
    """
    scaling = model.autoscaling
    if scaling == Autoscaling():
        return None
    low = scaling.min_replicas if scaling.min_replicas is not None else model.replicas
    high = scaling.max_replicas if scaling.max_replicas is not None else max(model.replicas, 1)
    return plan.Autoscaler(low, high, scaling.signal or scaling.metric, scaling.target, scaling.query,
                           scaling.activation, scaling.scale_up_seconds, scaling.scale_down_seconds,
                           scaling.prometheus or prometheus)


def _serving_container(engine: Container, model: Model, extra_mounts: list[Mount]) -> Container:
    """The engine's container with the spec's settings merged in."""
    env = {var.name: var for var in engine.env}
    env.update({name: EnvVar(name, value) for name, value in sorted(model.env.items())})
    env.update({name: EnvVar(name, secret=ref) for name, ref in sorted(model.secret_env.items())})
    overrides = model.probes
    return attrs.evolve(
        _helper_container(engine, model),
        env=tuple(env.values()),
        mounts=(*engine.mounts, *extra_mounts),
        raw_mounts=tuple(dict(m) for m in model.extra_volume_mounts),
        startup_probe=_probe(engine.startup_probe, overrides.startup),
        readiness_probe=_probe(engine.readiness_probe, overrides.readiness),
        liveness_probe=_probe(engine.liveness_probe, overrides.liveness),
        resources=resources(model, engine.resources),
    )


def _helper_container(item: Container, model: Model) -> Container:
    """The spec's pull policy and security context on one of the engine's containers."""
    return attrs.evolve(item, image_pull_policy=model.image_pull_policy or item.image_pull_policy,
                        security_context=dict(model.security.container_security_context or RESTRICTED_CONTAINER))


def _probe(probe: Probe | None, override: ProbeOverride | None) -> Probe | None:
    if probe is None or override is None:
        return probe
    changes = {name: getattr(override, name) for name in ("path", "initial_delay_seconds", "period_seconds",
                                                          "timeout_seconds", "failure_threshold")
               if getattr(override, name) is not None}
    return attrs.evolve(probe, **changes)


def resources(model: Model, extra: Mapping[str, Mapping[str, str]]) -> dict[str, dict[str, str]]:
    """Requests and limits; accelerators go into both, as extended resources must."""
    requests = dict(model.resources.requests)
    limits = dict(model.resources.limits)
    if model.accelerators.count > 0:
        count = str(model.accelerators.count)
        requests[model.accelerators.resource] = count
        limits[model.accelerators.resource] = count
    for kind, table in extra.items():
        (requests if kind == "requests" else limits).update(table)
    return {kind: table for kind, table in (("requests", requests), ("limits", limits)) if table}


def _pod(model: Model, labels: Mapping[str, str], selector: Mapping[str, str], serving: Container,
         init_containers: tuple[Container, ...], volumes: list[Volume], account: str | None) -> plan.Pod:
    scheduling = model.scheduling
    return plan.Pod(
        labels=dict(labels), annotations=dict(model.annotations),
        containers=(serving,), volumes=tuple(volumes),
        init_containers=tuple(_helper_container(c, model) for c in init_containers),
        raw_init_containers=tuple(dict(c) for c in model.init_containers),
        service_account=account,
        security_context=dict(model.security.pod_security_context or RESTRICTED_POD),
        image_pull_secrets=model.security.image_pull_secrets,
        node_selector=dict(scheduling.node_selector),
        affinity=dict(scheduling.affinity) if scheduling.affinity else None,
        tolerations=tuple(_toleration(t) for t in scheduling.tolerations),
        topology_spread=tuple({"labelSelector": {"matchLabels": dict(selector)}, **c} for c in scheduling.topology_spread),
        priority_class=scheduling.priority_class, runtime_class=scheduling.runtime_class,
        scheduler_name=scheduling.scheduler_name, termination_grace_seconds=model.termination_grace_seconds,
    )


def _toleration(toleration: Toleration) -> dict[str, Any]:
    result: dict[str, Any] = {"operator": toleration.operator}
    for field, key in (("key", "key"), ("value", "value"), ("effect", "effect"), ("toleration_seconds", "tolerationSeconds")):
        value = getattr(toleration, field)
        if value is not None:
            result[key] = value
    return result
