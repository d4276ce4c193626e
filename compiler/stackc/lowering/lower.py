"""Lowering: the checked spec becomes a Plan. The only stage after validation that reads the spec.

For each enabled model the core decides storage (cache, weights, chat template), asks the
engine for its container, and merges the spec's pod-level settings into it once: env (the
spec's values win over the engine's), extra mounts, probe overrides, resources with
accelerators, pull policy and security contexts. Nothing downstream rewrites the result.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from stackc.fit.nodes import pod_affinity
from stackc.lowering import disaggregation as pd
from stackc.plan import images
from stackc.plan import model as plan
from stackc.plan.engine import (
    Adapter,
    Capability,
    ClaimRequest,
    ConfigMapData,
    Container,
    EngineRequest,
    EngineResult,
    EnvVar,
    Listen,
    ModelSource,
    Mount,
    NfsVolumeRequest,
    Port,
    Probe,
    RoleRequest,
    Volume,
    Weights,
)
from stackc.plan.model import KV_CACHE_SERVER, RESTRICTED_CONTAINER, RESTRICTED_POD
from stackc.plan.ray import RayApplication, RayCluster
from stackc.registry import Registry
from stackc.spec import sources
from stackc.spec.candidate import SUFFIX as CANDIDATE, candidate_model
from stackc.spec.model import (
    Autoscaling,
    ContainerPort,
    EnvSource,
    InitContainer,
    Model,
    ProbeOverride,
    Sidecar,
    Spec,
    Toleration,
    VolumeMount,
)

CACHE_VOLUME = "model-cache"
CHAT_TEMPLATE_VOLUME = "chat-template"
SHM_VOLUME = "dshm"
WEIGHTS_VOLUME = "model-source"
WEIGHTS_PATH = "/models"
#: a leader/worker group's pods say which they are; Services and pools select the leaders
ROLE_LABEL = "stackc.dev/role"
#: a candidate version's pods and objects carry it (the stable version's don't)
VERSION_LABEL = "stackc.dev/version"
#: the serving pods behind ``stack.engines_service`` carry it (its value: the Service's name)
ENGINES_LABEL = "stackc.dev/engines-service"
#: Ray Serve's proxies answer health checks here on the Serve port
RAY_SERVE_HEALTH = "/-/healthz"
#: a writable HOME for engines run as a non-root user (their images' HOME is /root or missing)
HOME_VOLUME = "home"
HOME_PATH = "/stackc/home"
HOME_USER = "stackc"
#: the disk offloaded KV blocks go to (``kv_offload.disk_gib``), mounted in the serving container
KV_DISK_VOLUME = "kv-offload"
KV_DISK_PATH = "/kv-offload"
#: kinds without a namespace that an extra object may be (others are put in the stack's namespace)
CLUSTER_SCOPED_KINDS = frozenset({
    "APIService", "CSIDriver", "CSINode", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition",
    "GatewayClass", "IngressClass", "MutatingWebhookConfiguration", "Namespace", "Node", "PersistentVolume",
    "PriorityClass", "RuntimeClass", "StorageClass", "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding", "ValidatingWebhookConfiguration", "VolumeAttachment",
    "VolumeSnapshotClass",
})
#: schemes a platform that downloads weights (KServe's storage initializer) can fetch
PLATFORM_SCHEMES = ("hf", "s3", "gs", "pvc", "oci")
ADAPTERS_PATH = "/adapters"
FETCHED_ADAPTERS_PATH = f"{ADAPTERS_PATH}/fetched"
#: KServe's storage initializer (entrypoint arguments: SOURCE DESTINATION) fetches ``hf://REPO:REVISION``,
#: ``s3://`` and ``gs://`` into a folder (a single object under its own name): what the engines can't do
#: for an adapter, or for weights in object storage
DOWNLOADER_IMAGE = images.STORAGE_INITIALIZER.image

PluginCall = Callable[..., Any]


def workload_name(spec: Spec, key: str) -> str:
    return f"{spec.stack.name}-{key}"


def lower(spec: Spec, registry: Registry, plugin_call: PluginCall,
          platform_weights: str | None = None, ray_head: str | None = None, listen: Listen | None = None) -> plan.Plan:
    """Every enabled model, in key order, as a Component: a function of the spec (its targets included),
    never of which targets one build writes.

    ``platform_weights`` is where a target's platform puts downloaded weights (KServe:
    ``/mnt/models``); engines are then told to load from there instead of fetching themselves.
    ``ray_head`` is where a platform that forms multi-node replicas as Ray clusters has the workers
    join (KServe); engines that can run on Ray are asked to. ``listen`` is where engines listen on one
    machine (``stackc up`` lowers each replica with its own).
    """
    targets = tuple(sorted(set(spec.stack.targets)))
    events_routed = bool(registry.targets_having("routes_on_kv_events", targets))
    components = tuple(component for key in sorted(spec.models) if spec.models[key].enabled
                       for component in _components(spec, key, spec.models[key], registry, plugin_call,
                                                    platform_weights, ray_head, tuple(targets), events_routed,
                                                    listen))
    return plan.Plan(lower_stack(spec, registry, components), components)


def lower_stack(spec: Spec, registry: Registry, components: tuple[plan.Component, ...]) -> plan.Stack:
    """What the stack shares beside its components: the only part of a plan that names the namespace, so a
    platform that picks it at install time (a chart's release) needs only this lowered for its placeholder."""
    targets = tuple(sorted(set(spec.stack.targets)))
    policy = spec.stack.network_policy
    return plan.Stack(spec.stack.name, spec.stack.namespace, dict(spec.stack.labels), dict(spec.stack.annotations),
                      targets,
                      plan.NetworkPolicy(policy.metrics_namespace, tuple(dict(p) for p in policy.allow_from))
                      if policy.enabled else None,
                      extra_objects=tuple(namespaced(obj, spec.stack.namespace) for obj in spec.stack.extra_objects),
                      claims=tuple(shared_claims(spec)), nfs_volumes=tuple(shared_nfs_volumes(spec)),
                      kv_cache_server=kv_cache_server(spec), engines_service=engines_service(spec, components),
                      monitored=bool(registry.targets_having("monitors_models", targets)))


def engines_service_name(spec: Spec) -> str | None:
    table = spec.stack.engines_service
    return None if table is None else table.name or workload_name(spec, "engines")


def engines_service(spec: Spec, components: tuple[plan.Component, ...]) -> plan.EnginesService | None:
    """The Service over every model's serving pods: those ``_component`` labelled (a model answering alone,
    a multi-node group's leaders). Its port is the spec's, else the one the models' Services share."""
    name = engines_service_name(spec)
    if name is None:
        return None
    assert spec.stack.engines_service is not None
    members = [c for c in components if c.pod.labels.get(ENGINES_LABEL) == name]
    ports = {c.endpoint.public_port or c.endpoint.port.number for c in members}
    port = spec.stack.engines_service.port or (ports.pop() if len(ports) == 1 else None)
    labels = {**spec.stack.labels, "app.kubernetes.io/name": "engines", "app.kubernetes.io/instance": spec.stack.name,
              "app.kubernetes.io/component": "model-server", "app.kubernetes.io/part-of": spec.stack.name,
              "app.kubernetes.io/managed-by": "stackc"}
    names = {c.endpoint.port.name for c in members}
    return plan.EnginesService(name, labels, {ENGINES_LABEL: name}, port, names.pop() if len(names) == 1 else None,
                               tuple(c.key for c in members))


def kv_cache_server_name(spec: Spec) -> str:
    return workload_name(spec, KV_CACHE_SERVER)


def kv_cache_server(spec: Spec) -> plan.KvCacheServer | None:
    """LMCache's server as one restricted pod: it keeps blocks in memory and writes nothing but HOME."""
    server = spec.stack.kv_cache_server
    if server is None:
        return None
    name = kv_cache_server_name(spec)
    selector = {"app.kubernetes.io/name": KV_CACHE_SERVER, "app.kubernetes.io/instance": spec.stack.name}
    labels = {**spec.stack.labels, **selector, "app.kubernetes.io/component": KV_CACHE_SERVER,
              "app.kubernetes.io/part-of": spec.stack.name, "app.kubernetes.io/managed-by": "stackc"}
    port = Port("lm", server.port)
    # the server speaks its own protocol on a plain TCP port: probe that it accepts connections
    alive = Probe(port=port.name, tcp=True, period_seconds=10, timeout_seconds=5)
    container = _with_home(Container(
        "kv-cache-server", server.image, command=(server.executable, "0.0.0.0", str(server.port)), ports=(port,),
        readiness_probe=alive, liveness_probe=attrs.evolve(alive, initial_delay_seconds=30),
        resources={kind: dict(table) for kind, table in (("requests", server.resources.requests),
                                                          ("limits", server.resources.limits)) if table},
        image_pull_policy=server.image_pull_policy, security_context=dict(RESTRICTED_CONTAINER)))
    pod = plan.Pod(labels=labels, annotations={}, containers=(container,), volumes=(Volume(HOME_VOLUME, empty_dir={}),),
                   security_context={"runAsNonRoot": True, "runAsUser": server.run_as_user, "runAsGroup": 0,
                                     "fsGroup": 0, "fsGroupChangePolicy": "OnRootMismatch", **RESTRICTED_POD})
    clients = {"app.kubernetes.io/component": "model-server", "app.kubernetes.io/part-of": spec.stack.name}
    return plan.KvCacheServer(name, labels, selector, pod, port, clients)


def kv_offload_storage(spec: Spec, model: Model) -> tuple[list[Volume], list[Mount], dict[str, Any]]:
    """The disk a model offloads KV blocks to and the stack's cache server it shares them through: the pod's
    volume (an emptyDir of ``disk_gib``, unless the spec names its own), the serving container's mount, and
    what the engine is told."""
    offload = model.kv_offload
    if offload is None:
        return [], [], {}
    volumes, mounts, told = [], [], {}
    if offload.disk_gib is not None:
        volume = offload.disk_volume or KV_DISK_VOLUME
        if offload.disk_volume is None:
            volumes.append(Volume(KV_DISK_VOLUME, empty_dir={"sizeLimit": f"{offload.disk_gib}Gi"}))
        mounts.append(Mount(volume, KV_DISK_PATH))
        told["kv_disk_path"] = KV_DISK_PATH
    server = spec.stack.kv_cache_server
    if offload.remote and server is not None:
        told.update(kv_cache_url=f"lm://{kv_cache_server_name(spec)}:{server.port}", kv_cache_serde=server.serde)
    return volumes, mounts, told


def shared_nfs_volumes(spec: Spec) -> list[NfsVolumeRequest]:
    shared = spec.stack.shared_cache
    if shared is None or shared.nfs is None or not shared.size:
        return []
    name = f"{spec.stack.namespace}-{spec.stack.name}-shared-cache"
    return [NfsVolumeRequest(name, shared.nfs.server, shared.nfs.path, shared.size)]


def shared_claims(spec: Spec) -> list[ClaimRequest]:
    """The shared cache's claim: provisioned from its class, bound to a labelled volume, or to the NFS volume."""
    shared = spec.stack.shared_cache
    if shared is None or not shared.size:
        return []
    nfs = shared_nfs_volumes(spec)
    return [ClaimRequest(f"{spec.stack.name}-shared-cache", shared.size, "ReadWriteMany", shared.storage_class,
                         dict(shared.selector), nfs[0].name if nfs else None)]


def shared_cache_volume(spec: Spec) -> Volume | None:
    """The models' cache when the stack shares one: stackc's claim, or an existing one."""
    shared = spec.stack.shared_cache
    if shared is None:
        return None
    claims = shared_claims(spec)
    return Volume(CACHE_VOLUME, claim=shared.existing_claim or (claims[0].name if claims else None))


def namespaced(obj: Mapping[str, Any], namespace: str) -> dict[str, Any]:
    """An extra object in the stack's namespace, unless its kind has none."""
    if obj.get("kind") in CLUSTER_SCOPED_KINDS:
        return dict(obj)
    return {**obj, "metadata": {**obj.get("metadata", {}), "namespace": namespace}}


def weights(source: ModelSource, platform_weights: str | None, revision: str | None = None,
            object_storage: bool = True) -> Weights:
    """Who fetches the weights and where the engine finds them.

    ``platform_weights`` is None for engines that load one file rather than a folder (the
    engine says so with ``platform_weights = False``), and for a Hugging Face *file*
    (ORG/REPO/FILE): a storage initializer would fetch the whole repository, every quantization.
    Without ``object_storage`` (the engine can't read ``s3://``, ``gs://``) stackc downloads them
    into a folder of the cache volume named after the source (``weight_downloads``), mounted
    read-only where the engine loads them: one object (a GGUF file) or the folder.
    """
    hf_file = source.scheme == "hf" and source.location.count("/") >= 2
    if platform_weights and source.scheme in PLATFORM_SCHEMES and not hf_file:
        uri = _platform_uri(source)
        return Weights(source, platform_weights, platform_uri=f"{uri}:{revision}" if revision and source.scheme == "hf" else uri)
    if source.scheme == "pvc":
        return Weights(source, WEIGHTS_PATH + source.location.rstrip("/"), Mount(WEIGHTS_VOLUME, WEIGHTS_PATH, read_only=True))
    if source.scheme == "oci":
        return Weights(source, WEIGHTS_PATH, Mount(WEIGHTS_VOLUME, WEIGHTS_PATH, read_only=True))
    if source.scheme in ("s3", "gs") and not object_storage:
        name = source.location.rstrip("/").rsplit("/", 1)[-1]
        location = f"{WEIGHTS_PATH}/{name}" if "." in name else WEIGHTS_PATH
        return Weights(source, location, _fetched_folder(source, read_only=True))
    return Weights(source, source.location, revision=revision)


def _fetched_folder(source: ModelSource, read_only: bool) -> Mount:
    digest = hashlib.sha256(source.location.encode()).hexdigest()[:16]
    return Mount(CACHE_VOLUME, WEIGHTS_PATH, sub_path=f"weights/{digest}", read_only=read_only)


def adapters(model: Model, cache_volume: str) -> tuple[tuple[Adapter, ...], list[Volume], list[Mount], list[Container]]:
    """Where each LoRA adapter's weights are, decided like the model's: the adapters, the volumes and
    serving-container mounts they need, and the init containers that download them.

    A Hugging Face id without a revision goes to the engine, which fetches it itself (no engine
    pins an adapter's revision); a ``pvc://`` path is on its claim, mounted read-only; a pinned
    revision, ``s3://`` and ``gs://`` are downloaded into the cache volume before the engine starts,
    once per source (the folder is named after it), with the model's Hugging Face token and
    ``secret_env`` as credentials.
    """
    result: list[Adapter] = []
    volumes: list[Volume] = []
    mounts: list[Mount] = []
    downloads: list[Container] = []
    claims: dict[str, str] = {}
    fetched = Mount(cache_volume, FETCHED_ADAPTERS_PATH, sub_path="lora-adapters")
    env = download_env(model)
    for adapter in model.serving.lora_adapters:
        source = sources.parse(adapter.source)
        assert source is not None and source.scheme in sources.ADAPTER_SCHEMES  # validation rejected the others
        if source.scheme == "pvc":
            assert source.claim is not None
            if source.claim not in claims:
                claims[source.claim] = f"lora-claim-{len(claims)}"
                volumes.append(Volume(claims[source.claim], claim=source.claim))
                mounts.append(Mount(claims[source.claim], f"{ADAPTERS_PATH}/claims/{source.claim}", read_only=True))
            location = f"{ADAPTERS_PATH}/claims/{source.claim}{source.location}".rstrip("/")
        elif source.scheme == "path" or (source.scheme == "hf" and adapter.revision is None):
            location = source.location
        else:
            uri = f"hf://{source.location}:{adapter.revision}" if source.scheme == "hf" else source.location
            location = f"{FETCHED_ADAPTERS_PATH}/{hashlib.sha256(uri.encode()).hexdigest()[:16]}"
            if not any(c.args == (uri, location) for c in downloads):
                downloads.append(download_container(f"lora-download-{len(downloads)}", uri, location, env,
                                                    fetched))
        result.append(Adapter(adapter.name, location, runtime=adapter.load == "runtime"))
    if downloads:
        mounts.append(fetched)
    return tuple(result), volumes, mounts, downloads


#: a finished download leaves this file, so a restarted pod (or another replica on a shared cache) skips it
DOWNLOAD_MARKER = ".stackc-complete"


def download_container(name: str, uri: str, destination: str, env: list[EnvVar], mount: Mount) -> Container:
    """An init container that fetches ``uri`` into ``destination`` unless an earlier pod did."""
    script = (f'test -e "$2/{DOWNLOAD_MARKER}" || '
              f'{{ /storage-initializer/scripts/initializer-entrypoint "$1" "$2" && touch "$2/{DOWNLOAD_MARKER}"; }}')
    return Container(name, DOWNLOADER_IMAGE, command=("/bin/sh", "-c", script, "download"),
                     args=(uri, destination), env=tuple(env), mounts=(mount,))


def download_env(model: Model) -> list[EnvVar]:
    """What a downloader reads: the model's ``env`` (an S3 store's ``S3_ENDPOINT``, ``AWS_REGION``,
    ``S3_USE_HTTPS``, ``HF_ENDPOINT``), its Hugging Face token and its ``secret_env`` (cloud keys). It is
    stackc's own init container, so KServe's webhook injects no credentials into it as it does into its
    storage initializer."""
    credentials = [EnvVar("HF_TOKEN", secret=model.security.hf_token)] if model.security.hf_token else []
    return env_vars(model.env) + credentials + [EnvVar(name, secret=ref) for name, ref in sorted(model.secret_env.items())]


def weight_downloads(model: Model, model_weights: Weights) -> list[Container]:
    """The init container fetching weights ``weights`` placed in the cache volume, before the engine starts."""
    mount = model_weights.mount
    if mount is None or mount.volume != CACHE_VOLUME:
        return []
    folder = _fetched_folder(model_weights.source, read_only=False)
    return [download_container("weights-download", model_weights.source.location, WEIGHTS_PATH,
                               download_env(model), folder)]


def _platform_uri(source: ModelSource) -> str:
    if source.scheme == "pvc":
        return f"pvc://{source.claim}{source.location}"
    return source.location if source.scheme in ("s3", "gs") else f"{source.scheme}://{source.location}"


def _components(spec: Spec, key: str, model: Model, registry: Registry, plugin_call: PluginCall,
                platform_weights: str | None, ray_head: str | None, targets: tuple[str, ...],
                events_routed: bool = False, listen: Listen | None = None) -> list[plan.Component]:
    """A model's component, or a disaggregated model's decode and prefill components; ``events_routed``: a
    target routes on KV events, so engines that can publish them for models that ask."""
    if model.disaggregation is None:
        engine = registry.engines[model.engine].obj
        kv_events = events_routed and model.routing.kv_events and Capability.KV_EVENTS in engine.capabilities
        stable = _component(spec, key, model, registry, plugin_call, platform_weights, ray_head, kv_events=kv_events,
                            listen=listen)
        if model.candidate is None:
            return [stable]
        wanted = model.candidate
        version = plan.Candidate(wanted.traffic, wanted.header, wanted.header_value, wanted.mirror)
        # the model's names, whatever weights it serves: routers send it the requests of the model
        served = attrs.evolve(candidate_model(model), served_name=stable.endpoint.served_names[0])
        return [stable, _component(spec, key, served, registry, plugin_call, platform_weights,
                                   ray_head, kv_events=kv_events, listen=listen, candidate=version)]
    protocol = registry.engines[model.engine].traits.kv_connectors[model.disaggregation.connector]
    proxied = bool(registry.targets_having("proxies_pd_decode", targets))
    return pd.role_components(spec, key, protocol, proxied, lambda served, request: _component(
        spec, key, served, registry, plugin_call, platform_weights, ray_head, request))


def _component(spec: Spec, key: str, model: Model, registry: Registry, plugin_call: PluginCall,
               platform_weights: str | None, ray_head: str | None = None,
               role: RoleRequest | None = None, kv_events: bool = False, listen: Listen | None = None,
               candidate: plan.Candidate | None = None) -> plan.Component:
    """One component; a candidate's pods have a name of their own (KEY-candidate), so that the stable
    version's selectors, which a Deployment can never change, don't select them."""
    suffix = f"-{role.role}" if role else f"-{CANDIDATE}" if candidate else ""
    name = workload_name(spec, key) + suffix
    selector = {"app.kubernetes.io/name": key + (suffix if candidate else ""),
                "app.kubernetes.io/instance": spec.stack.name, **({pd.ROLE_LABEL: role.role} if role else {})}
    labels = {
        **spec.stack.labels,
        **model.labels,
        **selector,
        **({VERSION_LABEL: CANDIDATE} if candidate else {}),
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
        volumes.append(shared_cache_volume(spec) or Volume(CACHE_VOLUME, empty_dir={}))
    template_volume = None
    if model.serving.chat_template is not None:
        config_maps.append(ConfigMapData(f"{name}-chat-template", {"chat-template.jinja": model.serving.chat_template},
                                         ("serving", "chat_template")))
        volumes.append(Volume(CHAT_TEMPLATE_VOLUME, config_map=f"{name}-chat-template"))
        template_volume = CHAT_TEMPLATE_VOLUME
    source = sources.parse(model.model)
    assert source is not None  # validation rejected unparsable sources
    registered = registry.engines[model.engine]
    # a platform's downloader gets no credentials from the spec (they reach the engine's env only)
    credentials = model.security.hf_token is not None or bool(model.secret_env)
    loads_folders = registered.traits.platform_weights
    model_weights = weights(source, platform_weights if loads_folders and not credentials else None, model.revision,
                            registered.traits.object_storage)
    if model_weights.mount is not None and model_weights.mount.volume == WEIGHTS_VOLUME:
        volume = Volume(WEIGHTS_VOLUME, claim=source.claim) if source.scheme == "pvc" else Volume(WEIGHTS_VOLUME, image=source.location)
        volumes.append(volume)
    lora, lora_volumes, extra_mounts, lora_downloads = adapters(model, CACHE_VOLUME)
    volumes.extend(lora_volumes)
    kv_volumes, kv_mounts, kv_told = kv_offload_storage(spec, model)
    volumes.extend(kv_volumes)
    extra_mounts.extend(kv_mounts)
    scaler = autoscaler(model, spec.stack.prometheus)
    request = EngineRequest(key, model, model.engine_options, source, name, model_weights, CACHE_VOLUME, template_volume,
                            lora, **kv_told, ray_head=ray_head if model.serving.nodes > 1 else None, role=role,
                            kv_events=kv_events, autoscaler=scaler, listen=listen)
    result: EngineResult = plugin_call(registered.provider, f"engine '{model.engine}' lower()", registered.method("lower"), request)
    # the shards on one pod (a multi-node replica divides them over its pods)
    parallel = model.serving.tensor_parallel * model.serving.pipeline_parallel // model.serving.nodes
    if model.shm_size or (result.needs_shm and parallel > 1):
        size = model.shm_size or f"{2 * parallel}Gi"
        volumes.append(Volume(SHM_VOLUME, empty_dir={"medium": "Memory", "sizeLimit": size}))
        extra_mounts.append(Mount(SHM_VOLUME, "/dev/shm"))
    restricted = model.security.pod_security == "restricted"
    if restricted:
        volumes.append(Volume(HOME_VOLUME, empty_dir={}))
    volumes.extend(result.volumes)
    volumes.extend(Volume(str(raw.get("name", "")), raw=raw) for raw in model.extra_volumes)
    account = model.security.service_account
    account_name = account.name or (name if account.create else None)
    engine_container, engine_init = result.container, result.init_containers
    if restricted:
        engine_container, *engine_init = (_with_home(c) for c in (engine_container, *engine_init))
    serving = _serving_container(engine_container, model, extra_mounts)
    spec_ports = (*model.ports, *(p for s in model.sidecars for p in s.ports))
    budget = model.disruption_budget
    most = scaler.max_replicas if scaler is not None else model.replicas
    wants_budget = budget.enabled or (budget.enabled is None and most > 1)
    probe = serving.readiness_probe
    pod = _pod(model, labels, selector, serving,
               (*weight_downloads(model, model_weights), *engine_init, *lora_downloads), volumes,
               account_name, result)
    topology, worker_pod, answering = plan.Topology(), None, selector
    ray_cluster, service, health = None, name, probe.path if probe is not None else None
    if result.ray is not None:
        # KubeRay makes the Service (its Serve proxies run on every pod of the cluster)
        pod, worker_pod, ray_cluster = _ray_cluster(model, pod, result.ray, restricted, extra_mounts, scaler)
        topology, service, health = plan.Topology("ray_cluster"), f"{name}-serve-svc", RAY_SERVE_HEALTH
    elif model.serving.nodes > 1:
        assert result.worker is not None, f"engine '{model.engine}' returned no worker for a multi-node model"
        topology = plan.Topology("leader_worker", model.serving.nodes, model.scheduling.group_topology,
                                 model.serving.tensor_parallel, model.serving.pipeline_parallel, result.ray_group)
        answering = {**selector, ROLE_LABEL: "leader"}
        worker = _serving_container(_with_home(result.worker) if restricted else result.worker, model, extra_mounts)
        # the worker runs the engine's worker in place of the server, beside the same sidecars
        worker_pod = attrs.evolve(pod, labels={**pod.labels, ROLE_LABEL: "worker"},
                                  containers=(worker, *pod.containers[1:]))
        pod = attrs.evolve(pod, labels={**pod.labels, ROLE_LABEL: "leader"})
    engines = engines_service_name(spec)
    if engines is not None and role is None and ray_cluster is None and candidate is None:
        # the pods that answer alone (a group's leader): a P/D role or a Ray cluster's proxies can't be behind it
        pod = attrs.evolve(pod, labels={**pod.labels, ENGINES_LABEL: engines})
    return plan.Component(
        key=key, name=name, engine=model.engine, labels=labels, selector=selector, pod=pod,
        endpoint=plan.Endpoint(
            port=result.port, served_names=result.served_names, aliases=model.aliases,
            adapters=lora, adapter_load_path=result.adapter_load_path if any(a.runtime for a in lora) else None,
            health_path=health, metrics=result.metrics,
            api_key=model.security.api_key, service=service, service_port=result.port.number, selector=answering,
            public_port=model.service_port,
            extra_service_ports=(*result.service_ports, *(Port(p.name, p.service_port or p.port, protocol=p.protocol)
                                                            for p in spec_ports if p.service)),
            peer_ports=_ports(spec_ports), kv_events_port=result.kv_events_port),
        weights=model_weights,
        scale=plan.Scale(model.replicas, scaler),
        topology=topology, worker_pod=worker_pod,
        accelerators=model.accelerators, routing=model.routing, rollout=model.rollout,
        disruption_budget=budget.max_unavailable if wants_budget else None,
        service_account=plan.ServiceAccount(account_name, dict(account.annotations))
        if account.create and account_name else None,
        claims=tuple(claims), config_maps=tuple(config_maps), ray=ray_cluster,
        disaggregation=_role(role, result), candidate=candidate,
    )


def _ray_cluster(model: Model, pod: plan.Pod, application: RayApplication, restricted: bool,
                 extra_mounts: list[Mount], scaler: plan.Autoscaler | None) -> tuple[plan.Pod, plan.Pod, RayCluster]:
    """The head's pod, the worker group's, and the cluster's bounds.

    The workers are the merged pod (accelerators, the spec's resources and scheduling). The head
    takes the spec's env, mounts, security and sidecars but its own resources and node selector, and
    neither the tolerations, the affinity nor the topology spread: it holds no accelerators, so it should
    not take an accelerator node. It skips the
    weights' download (only workers load them). Ray's autoscaler keeps the worker pods between what
    Serve's fewest and most replicas occupy.
    """
    head = _serving_container(_with_home(application.head) if restricted else application.head, model, extra_mounts)
    head = attrs.evolve(head, resources={kind: dict(table) for kind, table in application.head.resources.items()})
    head_pod = attrs.evolve(pod, labels={**pod.labels, ROLE_LABEL: "head"}, containers=(head, *pod.containers[1:]),
                            init_containers=tuple(c for c in pod.init_containers if c.spec_path),
                            node_selector=dict(application.head_node_selector), tolerations=(), affinity=None,
                            topology_spread=())
    # the spec's topology spread places the workers, counting workers only (not the head beside them)
    spread = tuple({**c, "labelSelector": {**c["labelSelector"], "matchLabels": {
        **c["labelSelector"]["matchLabels"], ROLE_LABEL: "worker"}}} if "matchLabels" in c.get("labelSelector", {})
        else c for c in pod.topology_spread)
    worker_pod = attrs.evolve(pod, labels={**pod.labels, ROLE_LABEL: "worker"}, topology_spread=spread)
    per_replica = application.workers_per_replica
    low, high = (scaler.min_replicas, scaler.max_replicas) if scaler is not None else (model.replicas, model.replicas)
    cluster = RayCluster(
        version=application.version, serve=application.serve,
        workers=min(max(model.replicas, low), high) * per_replica,
        min_workers=low * per_replica, max_workers=high * per_replica, autoscaling=scaler is not None,
        head_params=dict(application.head_params),
        idle_timeout_seconds=application.idle_timeout_seconds)
    return head_pod, worker_pod, cluster


def _role(role: RoleRequest | None, result: EngineResult) -> plan.Disaggregation | None:
    if role is None:
        return None
    return plan.Disaggregation(role.role, role.protocol, result.bootstrap_port,
                               result.kv_port.name if result.kv_port is not None and role.kv_port is not None else None)


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


def _with_home(container: Container) -> Container:
    """A non-root engine writes caches and config under HOME (~/.cache, ~/.triton, ~/.ollama): make it writable.

    USER too: where the image has no passwd entry for the uid, Python's getpass (PyTorch's compile
    caches use it) reads the name from the environment instead of failing.
    """
    return attrs.evolve(container, env=(*container.env, EnvVar("HOME", HOME_PATH), EnvVar("USER", HOME_USER)),
                        mounts=(*container.mounts, Mount(HOME_VOLUME, HOME_PATH)))


def env_vars(env: Mapping[str, str | EnvSource]) -> list[EnvVar]:
    """The spec's variables, sorted: plain values, or ``valueFrom`` sources."""
    return [EnvVar(name, value) if isinstance(value, str) else _env_source(name, value)
            for name, value in sorted(env.items())]


def _env_source(name: str, source: EnvSource) -> EnvVar:
    optional = {"optional": source.optional} if source.optional is not None else {}
    if source.secret is not None:
        return EnvVar(name, value_from={"secretKeyRef": {"name": source.secret, "key": source.key, **optional}})
    if source.config_map is not None:
        return EnvVar(name, value_from={"configMapKeyRef": {"name": source.config_map, "key": source.key,
                                                            **optional}})
    if source.resource is not None:
        ref: dict[str, Any] = {"resource": source.resource}
        if source.divisor is not None:
            ref["divisor"] = source.divisor
        return EnvVar(name, value_from={"resourceFieldRef": ref})
    return EnvVar(name, value_from={"fieldRef": {"fieldPath": source.field}})


def _ports(ports: tuple[ContainerPort, ...]) -> tuple[Port, ...]:
    return tuple(Port(p.name, p.port, protocol=p.protocol) for p in ports)


def _serving_container(engine: Container, model: Model, extra_mounts: list[Mount]) -> Container:
    """The engine's container with the spec's settings merged in."""
    env = {var.name: var for var in engine.env}
    env.update({var.name: var for var in env_vars(model.env)})
    env.update({name: EnvVar(name, secret=ref) for name, ref in sorted(model.secret_env.items())})
    overrides = model.probes
    return attrs.evolve(
        _helper_container(engine, model),
        env=tuple(env.values()),
        ports=(*engine.ports, *_ports(model.ports)),
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
                        security_context=_container_security(model))


def _container_security(model: Model) -> dict[str, Any] | None:
    """Every Pod Security level but ``privileged`` keeps the restricted container context."""
    if model.security.container_security_context is not None:
        return dict(model.security.container_security_context)
    return None if model.security.pod_security == "privileged" else dict(RESTRICTED_CONTAINER)


def _pod_security(model: Model, result: EngineResult) -> dict[str, Any]:
    """Restricted: the engine image's non-root user, owning the volumes (fsGroup) it writes to."""
    if model.security.pod_security_context is not None:
        return dict(model.security.pod_security_context)
    if model.security.pod_security == "privileged":
        return {}
    if model.security.pod_security == "baseline":
        return dict(RESTRICTED_POD)
    # OnRootMismatch: a cache volume of many GB is not re-chowned at every start
    return {"runAsNonRoot": True, "runAsUser": result.run_as_user, "runAsGroup": result.run_as_group,
            "fsGroup": result.run_as_group, "fsGroupChangePolicy": "OnRootMismatch", **RESTRICTED_POD}


def _probe(probe: Probe | None, override: ProbeOverride | None) -> Probe | None:
    if probe is None or override is None:
        return probe
    changes: dict[str, Any] = {name: getattr(override, name) for name in (
        "path", "port", "initial_delay_seconds", "period_seconds", "timeout_seconds", "failure_threshold")
        if getattr(override, name) is not None}
    if override.path is not None:
        changes.update(tcp=False, command=())
    if override.tcp:
        changes.update(tcp=True, path=None, command=())
    if override.exec:
        changes.update(command=override.exec, path=None, tcp=False)
    return attrs.evolve(probe, **changes)


def _own_probe(override: ProbeOverride | None) -> Probe | None:
    """A sidecar's probe: the whole probe comes from the spec."""
    if override is None:
        return None
    return _probe(Probe(port=override.port if override.port is not None else ""), override)


def _mount(mount: VolumeMount) -> Mount:
    return Mount(mount.volume, mount.path, mount.sub_path, mount.read_only)


def _extra_container(item: InitContainer, model: Model, spec_path: tuple[str | int, ...]) -> Container:
    """A spec's init container or sidecar, with the model's security context."""
    container = Container(
        name=item.name, image=item.image, command=item.command, args=item.args, env=tuple(env_vars(item.env)),
        mounts=tuple(_mount(m) for m in item.volume_mounts),
        resources={kind: dict(table) for kind, table in (("requests", item.resources.requests),
                                                          ("limits", item.resources.limits)) if table},
        image_pull_policy=item.image_pull_policy, working_dir=item.working_dir,
        security_context=_container_security(model), spec_path=spec_path,
    )
    if not isinstance(item, Sidecar):
        return container
    return attrs.evolve(
        container, ports=_ports(item.ports), startup_probe=_own_probe(item.probes.startup),
        readiness_probe=_own_probe(item.probes.readiness), liveness_probe=_own_probe(item.probes.liveness),
        restart_policy="Always" if item.native else None)


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
         init_containers: tuple[Container, ...], volumes: list[Volume], account: str | None,
         result: EngineResult) -> plan.Pod:
    scheduling = model.scheduling
    sidecars = [_extra_container(s, model, ("sidecars", i)) for i, s in enumerate(model.sidecars)]
    return plan.Pod(
        labels=dict(labels), annotations=dict(model.annotations),
        containers=(serving, *(s for s in sidecars if s.restart_policy is None)), volumes=tuple(volumes),
        init_containers=(*(_helper_container(c, model) for c in init_containers),
                         *(_extra_container(c, model, ("init_containers", i))
                           for i, c in enumerate(model.init_containers)),
                         *(s for s in sidecars if s.restart_policy is not None)),
        service_account=account,
        security_context=_pod_security(model, result),
        image_pull_secrets=model.security.image_pull_secrets,
        node_selector=dict(scheduling.node_selector),
        affinity=pod_affinity(model.accelerators, scheduling),
        tolerations=tuple(_toleration(t) for t in scheduling.tolerations),
        topology_spread=tuple({"labelSelector": {"matchLabels": dict(selector)}, **c} for c in scheduling.topology_spread),
        priority_class=scheduling.priority_class, runtime_class=scheduling.runtime_class,
        scheduler_name=scheduling.scheduler_name, termination_grace_seconds=model.termination_grace_seconds,
        host_ipc=model.host_ipc, host_pid=model.host_pid,
    )


def _toleration(toleration: Toleration) -> dict[str, Any]:
    result: dict[str, Any] = {"operator": toleration.operator}
    for field, key in (("key", "key"), ("value", "value"), ("effect", "effect"), ("toleration_seconds", "tolerationSeconds")):
        value = getattr(toleration, field)
        if value is not None:
            result[key] = value
    return result
