"""vLLM production-stack (chart ``vllm-stack``): ``servingEngineSpec.modelSpec[]`` and ``routerSpec``.

Mirrors what the chart renders for each entry: ``vllm serve MODEL`` with the ``vllmConfig``
flags, LMCache's KV-transfer config and environment, the simple or raw resources, the PVC cache,
the global tolerations merged by ``tolerationsPolicy``, and the router's routing logic.
"""

from __future__ import annotations

import json
from typing import Any

from stackc.importers.commandline import DTYPES
from stackc.importers.draft import (
    Draft,
    env_list,
    init_container,
    model_key,
    probe,
    quantity,
    split_resources,
    tolerations,
    volume_mounts,
)
from stackc.importers.values import MISSING, Path, Values

DEFAULT_NAME = "vllm-stack"
NO_MODELS = "servingEngineSpec.modelSpec lists none"
ENGINE = ("servingEngineSpec",)
ROUTER = ("routerSpec",)
ROUTING = {"roundrobin": "round_robin", "session": "session", "prefixaware": "prefix"}
HAMI = (("GPUMem", "nvidia.com/gpumem"), ("GPUMemPercentage", "nvidia.com/gpumem-percentage"),
        ("GPUCores", "nvidia.com/gpucores"))


def convert(values: Values, name: str) -> Draft:
    draft = Draft(name)
    shared = _engine_wide(values, draft)
    routing = _router(values, draft)
    enabled = values.get((*ENGINE, "enableEngine"), bool, True)
    if not enabled:
        values.drop((*ENGINE, "modelSpec"), "enableEngine is false: a router-only install has no models to import")
        return draft
    keys = {}
    entries = []
    for index, _ in enumerate(values.sequence((*ENGINE, "modelSpec"))):
        path = (*ENGINE, "modelSpec", index)
        model = _model(values, path, shared, draft.name)
        if model is not None:
            model.update(routing)
            entries.append((values.text((*path, "name")) or f"model-{index}", path, model))
    for chart_name, path, model in _disaggregated(values, entries):
        keys[chart_name] = draft.add_model(model_key(chart_name), model, f"servingEngineSpec.modelSpec[{path[-1]}]",
                                           values.location(path))
    _lora_adapters(values, draft, keys)
    _top_level(values, draft)
    if "router" in draft.targets and (api_key := shared["security"].get("api_key")):
        # the chart's engines refuse requests without the key; stackc's router asks for it in front of them
        draft.target_options["router"]["api_keys"] = api_key
    return draft


#: what a role of a disaggregated model sets for itself (docs/disaggregation.md); the rest is the model's
ROLE_FIELDS = ("replicas", "accelerators", "resources", "engine_args", "env", "annotations", "scheduling")
PD_ROLES = {"kv_producer": "prefill", "kv_consumer": "decode"}
#: the UCX transports the chart gives P/D pods
PD_UCX_TRANSPORTS = "cuda_ipc,cuda_copy,tcp"


def _disaggregated(values: Values, entries: list[tuple[str, Path, dict[str, Any]]]) -> list[tuple[str, Path, dict]]:
    """A prefill entry and a decode entry of one model (LMCache with ``enablePD``) become one model with
    ``disaggregation``: stackc wires the connector, the router joins the roles."""
    roles = {name: model.pop("pd_role") for name, _, model in entries if "pd_role" in model}
    merged = []
    paired: set[str] = set()
    for name, path, model in entries:
        if roles.get(name) != "decode":
            continue
        partner = next((e for e in entries if roles.get(e[0]) == "prefill" and e[0] not in paired
                        and e[2]["model"] == model["model"]), None)
        if partner is None:
            continue
        prefill_name, prefill_path, prefill = partner
        paired |= {name, prefill_name}
        decode_role = {field: model.pop(field) for field in ROLE_FIELDS if field in model}
        prefill_role = {field: prefill.get(field) for field in ROLE_FIELDS if field in prefill}
        for field in sorted((set(model) | set(prefill)) - set(ROLE_FIELDS)):
            if prefill.get(field) != model.get(field):
                values.drop(prefill_path, f"the prefill entry's {field}, which differs from the decode entry's",
                            f"a disaggregated model's roles share everything but {', '.join(ROLE_FIELDS)}")
        model["disaggregation"] = {"connector": "lmcache", "prefill": prefill_role, "decode": decode_role}
        # the chart shares the node's IPC and process namespaces with enablePD pods (CUDA IPC between the GPUs
        # of a node), which only Pod Security "privileged" admits
        model.update(host_ipc=True, host_pid=True)
        model["security"] = {**(model.get("security") or {}), "pod_security": "privileged"}
        common = name.removesuffix("-decode") if name.endswith("-decode") else name
        merged.append((common if prefill_name == f"{common}-prefill" else name, path, model))
    for name, path, model in entries:
        if name in roles and name not in paired:
            values.drop((*path, "lmcacheConfig", "enablePD"), f"a {roles[name]} entry without its partner",
                        "list the prefill (kv_producer) and decode (kv_consumer) entries of one modelURL")
        if name not in paired:
            merged.append((name, path, model))
    return sorted(merged, key=lambda entry: entry[1][-1])


def _engine_wide(values: Values, draft: Draft) -> dict[str, Any]:
    """What ``servingEngineSpec`` gives every model."""
    env: dict[str, str] = {}
    for key, value in values.mapping((*ENGINE, "configs")).items():
        env[key] = values.text((*ENGINE, "configs", key)) or ""
    security: dict[str, Any] = {}
    api_key = values.find((*ENGINE, "vllmApiKey"))
    if isinstance(api_key, str):
        security["api_key"] = _inline_secret(values, (*ENGINE, "vllmApiKey"), draft.name, "vllmApiKey", "API key")
    elif secret := _secret(values, (*ENGINE, "vllmApiKey")):
        security["api_key"] = secret
    security["pod_security_context"] = values.raw((*ENGINE, "securityContext"), dict) or None
    security["container_security_context"] = values.raw((*ENGINE, "containerSecurityContext"), dict) or None
    probes = {kind: probe(values, (*ENGINE, f"{kind}Probe")) for kind in ("startup", "liveness", "readiness")}
    shared = {
        "labels": {k: values.text((*ENGINE, "labels", k)) for k in values.keys((*ENGINE, "labels"))},
        "env": env,
        "security": security,
        "probes": probes,
        "rollout": _strategy(values, (*ENGINE, "strategy")),
        "tolerations": tolerations(values, (*ENGINE, "tolerations")),
        "runtime_class": values.text((*ENGINE, "runtimeClassName"), "nvidia") or None,
        "scheduler_name": values.text((*ENGINE, "schedulerName")),
        "image_pull_policy": values.text((*ENGINE, "imagePullPolicy"), "Always"),
    }
    shared["port"] = values.integer((*ENGINE, "containerPort"))
    shared["service_port"] = values.integer((*ENGINE, "servicePort"))
    values.drop((*ENGINE, "extraPorts"), "extra engine ports")
    values.drop((*ENGINE, "sidecar"), "the LoRA downloader sidecar", "list adapters in serving.lora_adapters")
    if values.get((*ENGINE, "serviceMonitor", "enabled"), bool, False):
        draft.add_target("monitoring")
        options = draft.target_options.setdefault("monitoring", {})
        options["interval"] = values.text((*ENGINE, "serviceMonitor", "interval"))
        labels = values.mapping((*ENGINE, "serviceMonitor", "additionalLabels"))
        options["monitor_labels"] = {k: values.text((*ENGINE, "serviceMonitor", "additionalLabels", k))
                                     for k in labels} or None
        values.drop_unless((*ENGINE, "serviceMonitor", "scrapeTimeout"), "25s", "the scrape timeout")
        values.drop_unless((*ENGINE, "serviceMonitor", "honorLabels"), False, "honorLabels")
        for key in ("metricRelabelings", "relabelings"):
            values.drop((*ENGINE, "serviceMonitor", key), "relabelling rules")
    else:
        values.raw((*ENGINE, "serviceMonitor"))
    return shared


def _model(values: Values, path: Path, shared: dict[str, Any], stack: str) -> dict[str, Any] | None:
    name = values.require((*path, "name"), str, "the model's name")
    repository = values.require((*path, "repository"), str, "the engine image's repository")
    tag = values.text((*path, "tag"))
    if tag is None:
        values.error((*path, "tag"), "missing: the engine image's tag")
    url = values.require((*path, "modelURL"), str, "the model (modelURL)")
    if name is None or repository is None or url is None or tag is None:
        values.raw(path)
        return None
    model: dict[str, Any] = {"engine": "vllm", "model": url, "revision": values.text((*path, "modelRevision")),
                             "enabled": values.get((*path, "enabled"), bool, True) or False,
                             "image": f"{repository}:{tag}", "image_pull_policy": shared["image_pull_policy"],
                             "engine_options": {"executable": _executable(repository, tag)},
                             "replicas": values.integer((*path, "replicaCount"), 1),
                             "port": shared["port"], "service_port": shared["service_port"]}
    serving: dict[str, Any] = {}
    args: list[str] = []
    env = dict(shared["env"])
    secret_env: dict[str, Any] = {}
    _vllm_config(values, (*path, "vllmConfig"), serving, args, env)
    offload = _lmcache(values, path, args, env)
    if offload and "pd_role" in offload:
        model["pd_role"] = offload["pd_role"]
    else:
        model["kv_offload"] = offload
    if values.get((*path, "enableLoRA"), bool, False):
        args.append("--enable-lora")
    if values.get((*path, "enableTool"), bool, False):
        args.append("--enable-auto-tool-choice")
    if parser := values.text((*path, "toolCallParser")):
        args += ["--tool-call-parser", parser]
    _chat_template(values, path, serving)
    model["accelerators"], model["resources"] = _resources(values, path)
    model["cache"] = _cache(values, path)
    if values.has((*path, "vllmConfig", "tensorParallelSize")):
        model["shm_size"] = quantity(values.get((*path, "shmSize"), (str, int))) or "20Gi"
    else:
        values.consumed.add((*path, "shmSize"))  # the chart mounts /dev/shm only with tensor parallelism
    env_list(values, (*path, "env"), env, secret_env)
    values.drop((*path, "envFromSecret"), "every key of a Secret as environment",
                "name each variable in secret_env = { VAR = { name = SECRET, key = KEY } }")
    security = dict(shared["security"])
    hf_token = values.find((*path, "hf_token"))
    if isinstance(hf_token, str):
        security["hf_token"] = _inline_secret(values, (*path, "hf_token"), stack, f"hf_token_{name}",
                                              "Hugging Face token")
    elif secret := _secret(values, (*path, "hf_token")):
        security["hf_token"] = secret
    if pull_secret := values.text((*path, "imagePullSecret")):
        security["image_pull_secrets"] = [pull_secret]
    if account := values.text((*path, "serviceAccountName")):
        security["service_account"] = {"create": False, "name": account}
    model.update(serving=serving, engine_args=args, env=env, secret_env=secret_env, security=security)
    model["scheduling"] = _scheduling(values, path, shared)
    model["probes"] = shared["probes"]
    model["rollout"] = shared["rollout"]
    labels = dict(shared["labels"])
    for key in ("labels", "podLabels"):
        labels.update({k: values.text((*path, key, k)) for k in values.keys((*path, key))})
    model["labels"] = labels
    model["annotations"] = {k: values.text((*path, "podAnnotations", k))
                            for k in values.keys((*path, "podAnnotations"))}
    values.drop((*path, "annotations"), "annotations on the Deployment object",
                "stackc's annotations go on the pods (podAnnotations)")
    values.drop((*path, "serviceAnnotations"), "annotations on the engine Service")
    model["extra_volumes"] = values.raw((*path, "extraVolumes"), list)
    model["extra_volume_mounts"] = values.raw((*path, "extraVolumeMounts"), list)
    model["init_containers"] = _init_container(values, (*path, "initContainer"))
    model["disruption_budget"] = _pdb(values, (*path, "pdb"))
    _ray_cluster(values, (*path, "raySpec"), model)
    model["autoscaling"] = _keda(values, (*path, "keda"), model)
    return model


LMCACHE_CONTROLLER = "KV-aware routing through the LMCache controller"
LMCACHE_CONTROLLER_HINT = ("stackc's router does not talk to the controller: it routes by prompt prefix "
                           "(routing.strategy = \"prefix\"; with the gateway target, on the engines' KV events)")
#: vLLM's series in a KEDA trigger's query -> the spec's signal
SIGNALS = {"vllm:num_requests_waiting": "waiting", "vllm:num_requests_running": "running",
           "vllm:gpu_cache_usage_perc": "kv_cache_usage", "vllm:kv_cache_usage_perc": "kv_cache_usage"}
KEDA_PROMETHEUS = "http://prometheus-operated.monitoring.svc:9090"


def _keda(values: Values, path: Path, model: dict[str, Any]) -> dict[str, Any] | None:
    """``keda``: the chart's ScaledObject as the spec's ``autoscaling`` (which stackc emits as a KEDA
    ScaledObject); KEDA's own defaults (min 0, max 100) where the values leave them out."""
    if not values.get((*path, "enabled"), bool, False) or values.has((*path[:-1], "raySpec", "enabled")) and \
            values.get((*path[:-1], "raySpec", "enabled"), bool, False):
        values.raw(path)  # the chart renders no ScaledObject for a RayCluster
        return None
    scaling: dict[str, Any] = {"min_replicas": values.integer((*path, "minReplicaCount"), 0),
                               "max_replicas": values.integer((*path, "maxReplicaCount"), 100),
                               "scale_down_seconds": values.integer((*path, "cooldownPeriod"))}
    triggers = (*path, "triggers")
    found = values.find(triggers)
    trigger = triggers if isinstance(found, dict) else (*triggers, 0)  # values.yaml's sample is a mapping
    if isinstance(found, list) and len(found) > 1:
        values.drop((*triggers, 1), "a second KEDA trigger", "stackc scales a model on one signal")
    if found in (MISSING, None):  # the chart's default trigger: queued requests, 5 per replica
        scaling.update(signal="waiting", target=5)
    elif values.text((*trigger, "type")) != "prometheus":
        values.drop(trigger, f"a {values.text((*trigger, 'type'))} KEDA trigger",
                    "stackc scales on the engines' Prometheus series (autoscaling.signal)")
        scaling.update(signal="waiting", target=5)
    else:
        meta = (*trigger, "metadata")
        query = values.text((*meta, "query")) or ""
        signal = next((signal for series, signal in SIGNALS.items() if query.startswith(series)), None)
        scaling["signal"] = signal or "custom"
        if signal is None:
            scaling["query"] = query
        elif "{" in query:
            values.consumed.add((*meta, "query"))  # stackc selects the model's series by its own labels
        threshold = values.number((*meta, "threshold"))
        scaling["target"] = int(threshold) if threshold is not None and threshold.is_integer() else threshold
        scaling["activation"] = values.number((*meta, "activationThreshold"))
        server = values.text((*meta, "serverAddress"))
        scaling["prometheus"] = server if server and server != KEDA_PROMETHEUS else None
        values.consumed.add((*meta, "metricName"))  # a label of the trigger, not what it reads
        for key in values.keys(meta):
            if key not in ("query", "threshold", "activationThreshold", "serverAddress", "metricName"):
                values.drop((*meta, key), f"the KEDA trigger's {key}")
        for key in values.keys(trigger):
            if key not in ("type", "metadata"):
                values.drop((*trigger, key), f"the KEDA trigger's {key}")
    if scaling["min_replicas"] == 0 and scaling["signal"] not in ("custom", "router_pending"):
        # the engines' series vanish with the last replica, so the chart's model never wakes; stackc's
        # router holds its requests and counts them (plus those in flight), which KEDA wakes it on
        router = values.get((*ROUTER, "enableRouter"), bool, True)
        values.drop((*path, "minReplicaCount") if values.has((*path, "minReplicaCount")) else path,
                    f"scaling to zero on {scaling['signal']} requests, a series that disappears with the last "
                    "replica" + ("; scaled on the requests the router holds instead" if router else ""),
                    "signal = \"router_pending\" wakes the model" if router else
                    "stackc wakes a model at zero through its router: enable it, or keep min_replicas = 1")
        if router:
            scaling["signal"] = "router_pending"
        else:
            scaling["min_replicas"] = 1
    values.drop_unless((*path, "pollingInterval"), 30, "KEDA's polling interval")
    values.drop((*path, "idleReplicaCount"), "KEDA's idle replica count",
                "min_replicas = 0 with signal = \"router_pending\" scales to zero and wakes")
    for key in ("initialCooldownPeriod", "fallback", "advanced"):
        values.drop((*path, key), f"KEDA's {key}")
    return scaling


def _ray_cluster(values: Values, path: Path, model: dict[str, Any]) -> None:
    """``raySpec``: the chart's RayCluster is one replica over a head pod and ``replicaCount`` worker
    pods; stackc spreads a replica over ``serving.nodes`` pods (a LeaderWorkerSet, vLLM without Ray)."""
    if not values.get((*path, "enabled"), bool, False):
        values.raw(path)
        return
    head = (*path, "headNode")
    model["serving"]["nodes"] = model["replicas"] + 1
    model["replicas"] = 1
    if model["serving"].get("prefix_caching") is False:
        model["serving"]["prefix_caching"] = None  # the RayCluster's script writes the flag only to turn it on
    vllm_config = (*path[:-1], "vllmConfig")
    if values.has(vllm_config) and not values.has((*vllm_config, "v1")):
        values.drop(path, "the RayCluster's VLLM_USE_V1=0 (vLLM's v0 engine, which the chart pins unless vllmConfig.v1 "
                    "is set)", "current vLLM has only its V1 engine; stackc runs that")
    head_accelerators, head_resources = _resources(values, head)
    if head_accelerators != model["accelerators"] or head_resources != model["resources"]:
        values.drop(head, "resources for the Ray head pod that differ from the worker pods'",
                    "stackc gives every pod of a multi-node replica the model's resources")
    values.drop((*head, "initContainer"), "an init container for the Ray head pod only",
                "init_containers run in every pod of the replica")
    for key in values.keys(path):
        if key not in ("enabled", "headNode"):
            values.drop((*path, key), f"raySpec.{key}")


def _vllm_config(values: Values, path: Path, serving: dict[str, Any], args: list[str], env: dict[str, str]) -> None:
    if not values.has(path):
        values.consumed.add(path)
        return
    # the chart writes --no-enable-prefix-caching whenever vllmConfig exists without it
    serving["prefix_caching"] = values.get((*path, "enablePrefixCaching"), bool, False)
    if values.has((*path, "enableChunkedPrefill")):
        chunked = values.get((*path, "enableChunkedPrefill"), bool, False)
        args.append("--enable-chunked-prefill" if chunked else "--no-enable-chunked-prefill")
    serving["max_context"] = values.integer((*path, "maxModelLen"))
    dtype = values.text((*path, "dtype"))
    if dtype in DTYPES:
        serving["dtype"] = dtype
    elif dtype:
        args += ["--dtype", dtype]
    serving["tensor_parallel"] = values.integer((*path, "tensorParallelSize"))
    serving["pipeline_parallel"] = values.integer((*path, "pipelineParallelSize"))
    serving["max_concurrent_sequences"] = values.integer((*path, "maxNumSeqs"))
    serving["gpu_memory_fraction"] = values.number((*path, "gpuMemoryUtilization"))
    if (loras := values.integer((*path, "maxLoras"))) is not None:
        args += ["--max-loras", str(loras)]
    for key, flag in (("runner", "--runner"), ("convert", "--convert")):
        if text := values.text((*path, key)):
            args += [flag, text]
    if values.text((*path, "v0")) == "1":
        env["VLLM_USE_V1"] = "0"
    values.drop_unless((*path, "v1"), "1", "a vLLM engine generation switch")
    if directory := values.text((*path, "prometheusMultiprocDir")):
        env["PROMETHEUS_MULTIPROC_DIR"] = directory
    extra = values.get((*path, "extraArgs"), list, [])
    args += [values.text((*path, "extraArgs", i)) or "" for i in range(len(extra))]


def _lmcache(values: Values, model: Path, args: list[str], env: dict[str, str]) -> dict[str, Any] | None:
    """LMCache KV offloading: ``kv_offload`` when it is plain CPU offloading, else as the chart wires it
    (the vLLM connector flag plus LMCACHE_* variables)."""
    path = (*model, "lmcacheConfig")
    if not values.get((*path, "enabled"), bool, False):
        values.raw(path)
        return None
    role = values.text((*path, "kvRole"), "kv_both")
    v0 = values.text((*model, "vllmConfig", "v0")) == "1"
    if values.get((*path, "enablePD"), bool, False) and role in PD_ROLES and not v0:
        return _pd_role(values, path, role, env)
    cpu = values.text((*path, "cpuOffloadingBufferSize"))
    if not v0 and role == "kv_both" and cpu and cpu.isdigit() and int(cpu) > 0 \
            and set(values.keys(path)) <= {"enabled", "cpuOffloadingBufferSize", "kvRole", "logLevel"}:
        # plain CPU offloading: the spec's typed setting, which vLLM turns into the same LMCache buffer
        if level := values.text((*path, "logLevel")):
            env["LMCACHE_LOG_LEVEL"] = level
        return {"cpu_gib": int(cpu), "backend": "lmcache"}
    connector = "LMCacheConnector" if v0 else "LMCacheConnectorV1"
    args += ["--kv-transfer-config", json.dumps({"kv_connector": connector, "kv_role": role}, separators=(",", ":"))]
    env.update(LMCACHE_USE_EXPERIMENTAL="True", VLLM_RPC_TIMEOUT="1000000")
    if cpu and _positive(cpu):
        env.update(LMCACHE_LOCAL_CPU="True", LMCACHE_MAX_LOCAL_CPU_SIZE=cpu)
    if disk := values.text((*path, "diskOffloadingBufferSize")):
        env["LMCACHE_MAX_LOCAL_DISK_SIZE"] = disk
    if devices := values.text((*path, "cudaVisibleDevices")):
        env["CUDA_VISIBLE_DEVICES"] = devices
    if level := values.text((*path, "logLevel")):
        env["LMCACHE_LOG_LEVEL"] = level
    values.drop_feature("prefill/decode disaggregation without its partner entry", [(*path, key) for key in (
        "enablePD", "enableNixl", "nixlRole", "nixlPeerHost", "nixlPeerPort", "nixlBufferSize", "nixlBufferDevice",
        "nixlEnableGc")], "list a kv_producer and a kv_consumer entry of one modelURL with enablePD: they become "
        "one model with [models.KEY.disaggregation] (docs/disaggregation.md)")
    values.drop_feature(LMCACHE_CONTROLLER, [(*path, key) for key in (
        "enableController", "instanceId", "controllerPort", "controllerReplyPort", "workerPort", "workerPorts",
        "p2pHost", "p2pInitPorts", "workerHeartbeatTime")], LMCACHE_CONTROLLER_HINT)
    return None


def _pd_role(values: Values, path: Path, role: str, env: dict[str, str]) -> dict[str, Any]:
    """One side of a P/D pair: stackc's ``lmcache`` connector writes the chart's NIXL wiring itself."""
    values.drop_unless((*path, "enableNixl"), True, "LMCache's P/D without NIXL",
                       "stackc's lmcache connector uses NIXL")
    values.consumed.update({(*path, "nixlRole"), (*path, "nixlPeerHost")})  # the roles' sender/receiver wiring
    values.drop_unless((*path, "nixlPeerPort"), "55555", "a NIXL port other than LMCache's 55555")
    values.drop_unless((*path, "nixlBufferSize"), str(2**30), "a NIXL buffer other than 1 GiB")
    values.drop_unless((*path, "nixlBufferDevice"), "cuda", "a NIXL buffer off the GPU")
    values.consumed.add((*path, "nixlEnableGc"))
    cpu = values.text((*path, "cpuOffloadingBufferSize"))
    if cpu and _positive(cpu):
        values.drop((*path, "cpuOffloadingBufferSize"), "CPU offloading beside P/D transfer")
    if devices := values.text((*path, "cudaVisibleDevices")):
        env["CUDA_VISIBLE_DEVICES"] = devices
    if level := values.text((*path, "logLevel")):
        env["LMCACHE_LOG_LEVEL"] = level
    env["UCX_TLS"] = PD_UCX_TRANSPORTS  # the chart's: CUDA IPC within a node (host IPC), else TCP
    for key in values.keys(path):
        if key not in ("enabled", "kvRole", "enablePD", "enableNixl", "nixlRole", "nixlPeerHost", "nixlPeerPort",
                       "nixlBufferSize", "nixlBufferDevice", "nixlEnableGc", "cpuOffloadingBufferSize",
                       "cudaVisibleDevices", "logLevel"):
            values.drop((*path, key), f"lmcacheConfig.{key} on a P/D role")
    return {"pd_role": PD_ROLES[role]}


def _cache_server(values: Values, draft: Draft) -> None:
    """``cacheserverSpec``: LMCache's server as the stack's KV-cache server, which the models whose LMCache
    offloading became ``kv_offload`` share (the chart points every LMCache engine at it)."""
    path = ("cacheserverSpec",)
    if not values.get((*path, "enabled"), bool, False):
        values.feature(path, "the LMCache cache server")  # off: consumed quietly
        return
    for key in ("repository", "tag"):
        values.drop((*path, key), f"cacheserverSpec.{key}, which the chart ignores (it runs image.{key}, by "
                    "default lmcache/vllm-openai:latest)", f"move it to cacheserverSpec.image.{key}")
    # the chart's defaults, as `helm install` fills them in
    repository = values.text((*path, "image", "repository"), "lmcache/vllm-openai")
    tag = values.text((*path, "image", "tag"), "latest")
    accelerators, resources = split_resources(values, (*path, "resources"))
    if accelerators:
        values.drop((*path, "resources"), "accelerators for the cache server, which keeps blocks in memory")
    draft.kv_cache_server = {"image": f"{repository}:{tag}", "port": values.integer((*path, "containerPort")),
                             "serde": values.text((*path, "serde")), "resources": resources,
                             "image_pull_policy": values.text((*path, "imagePullPolicy"), "IfNotPresent")}
    values.drop_unless((*path, "replicaCount"), 1, "more than one cache server replica",
                       "stackc runs one: each replica would be a separate store behind the same Service")
    values.drop_unless((*path, "serviceType"), "ClusterIP", "the cache server's Service type")
    values.drop((*path, "servicePort"), "the cache server's Service port", "stackc's Service listens on its "
                "containerPort, which the engines are told")
    for key in values.keys(path):
        if key not in ("enabled", "image", "imagePullPolicy", "containerPort", "serde", "resources", "repository",
                       "tag", "replicaCount", "serviceType", "servicePort"):
            values.drop((*path, key), f"cacheserverSpec.{key}")
    for model in draft.models.values():
        if (model.get("kv_offload") or {}).get("backend") == "lmcache":
            model["kv_offload"]["remote"] = True


def _executable(repository: str, tag: str) -> str | None:
    """LMCache's images keep vllm in a virtualenv; the chart calls it there for these tags."""
    if tag in ("2025-05-27-v1", "2025-05-17-v1", "latest-nightly") or tag.startswith("nightly-") or (
            tag == "latest" and repository == "lmcache/vllm-openai"):
        return "/opt/venv/bin/vllm"
    return None


def _chat_template(values: Values, path: Path, serving: dict[str, Any]) -> None:
    template = values.text((*path, "chatTemplate"))
    content = values.text((*path, "chatTemplateConfigMap"))
    if content:
        serving["chat_template"] = content
    elif template:
        values.drop((*path, "chatTemplate"), "a chat template file on the chart's vllm-templates PVC",
                    "put the template's text in serving.chat_template")


def _resources(values: Values, path: Path) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    if values.mapping((*path, "resources")):
        for key in ("requestCPU", "requestMemory", "requestGPU", "requestGPUType", "limitCPU", "limitMemory",
                    *(f"{side}{suffix}" for side in ("request", "limit") for suffix, _ in HAMI)):
            values.consumed.add((*path, key))  # the raw block wins, as in the chart
        return split_resources(values, (*path, "resources"))
    resources: dict[str, dict[str, str]] = {"requests": {}, "limits": {}}
    for side, key, resource in (("requests", "requestCPU", "cpu"), ("requests", "requestMemory", "memory"),
                                ("limits", "limitCPU", "cpu"), ("limits", "limitMemory", "memory")):
        if (text := quantity(values.get((*path, key), (str, int, float)))) is not None:
            resources[side][resource] = text
    for suffix, resource in HAMI:
        for side, prefix in (("requests", "request"), ("limits", "limit")):
            if (text := quantity(values.get((*path, f"{prefix}{suffix}"), (str, int, float)))) is not None:
                resources[side][resource] = text
    accelerators = None
    gpus = values.get((*path, "requestGPU"), (int, float, str))
    kind = values.text((*path, "requestGPUType"), "nvidia.com/gpu")
    if gpus is not None:
        text = quantity(gpus) or ""
        if text.isdigit():
            accelerators = {"count": int(text), "resource": kind} if int(text) else None
        else:
            values.drop((*path, "requestGPU"), f"a fraction of a GPU ({text})", "use the HAMi fields or whole GPUs")
    return accelerators, resources


def _cache(values: Values, path: Path) -> dict[str, Any] | None:
    existing = values.text((*path, "pvcExistingClaimName"))
    storage = values.find((*path, "pvcStorage"))
    modes = values.get((*path, "pvcAccessMode"), list, [])
    if len(modes) > 1:
        values.drop((*path, "pvcAccessMode", 1), "more than one access mode", "a claim has one access mode in stackc")
    access = values.text((*path, "pvcAccessMode", 0))
    values.drop((*path, "pvcMatchLabels"), "a selector binding the claim to a prepared volume")
    values.drop((*path, "pvcLabels"), "labels on the claim")
    values.drop((*path, "pvcAnnotations"), "annotations on the claim")
    storage_class = values.text((*path, "storageClass"))
    if existing:
        values.raw((*path, "pvcStorage"))
        return {"existing_claim": existing, "access_mode": access}
    if isinstance(storage, dict):  # {emptyDir: {...}}: stackc's cache is an emptyDir without a claim
        values.raw((*path, "pvcStorage"))
        return None
    size = quantity(values.get((*path, "pvcStorage"), (str, int)))
    if not size:
        return None
    return {"size": size, "storage_class": storage_class, "access_mode": access}


def _scheduling(values: Values, path: Path, shared: dict[str, Any]) -> dict[str, Any]:
    own = tolerations(values, (*path, "tolerations"))
    policy = values.text((*path, "tolerationsPolicy"), "append")
    if policy not in ("append", "override"):
        values.error((*path, "tolerationsPolicy"), f"expected append or override, got {policy!r}")
    merged = own if policy == "override" else [*shared["tolerations"], *own]
    affinity = values.raw((*path, "affinity"), dict)
    terms = values.raw((*path, "nodeSelectorTerms"), list)
    if not affinity and terms:
        affinity = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}}}
    values.drop((*path, "nodeName"), "pinning pods to one node by name",
                "use scheduling.node_selector = { \"kubernetes.io/hostname\" = NODE }")
    runtime = values.text((*path, "runtimeClassName"))
    return {"tolerations": merged, "tolerations_mode": "replace" if policy == "override" else None,
            "affinity": affinity or None,
            "runtime_class": (runtime or None) if values.has((*path, "runtimeClassName")) else shared["runtime_class"],
            "scheduler_name": shared["scheduler_name"],
            # the chart sets priorityClassName only when it is not empty
            "priority_class": values.text((*path, "priorityClassName")) or None}


def _init_container(values: Values, path: Path) -> list[dict[str, Any]]:
    if not values.has(path):
        values.consumed.add(path)
        return []
    container = init_container(values, path, handled=("extraVolumeMounts", "mountPvcStorage"))
    if container is None:
        return []
    container["volume_mounts"] = volume_mounts(values, (*path, "extraVolumeMounts"))
    if values.get((*path, "mountPvcStorage"), bool, False) and values.has((*path[:-1], "pvcStorage")):
        # the chart mounts the model's volume at /data; stackc's cache volume is that volume
        container["volume_mounts"].insert(0, {"volume": "model-cache", "path": "/data"})
    return [container]


def _pdb(values: Values, path: Path) -> dict[str, Any]:
    if not values.get((*path, "enabled"), bool, False):
        values.raw(path)
        return {}
    values.drop((*path, "minAvailable"), "minAvailable", "stackc's budgets count unavailable pods")
    values.drop((*path, "labels"), "labels on the PodDisruptionBudget")
    values.drop((*path, "annotations"), "annotations on the PodDisruptionBudget")
    unavailable = values.get((*path, "maxUnavailable"), (int, str))
    return {"enabled": True, "max_unavailable": unavailable}


def _strategy(values: Values, path: Path) -> dict[str, Any]:
    if not values.mapping(path):
        return {"max_surge": "100%", "max_unavailable": 0}  # the chart's default engine strategy
    kind = values.text((*path, "type"), "RollingUpdate")
    return {"strategy": kind, "max_surge": values.get((*path, "rollingUpdate", "maxSurge"), (int, str)),
            "max_unavailable": values.get((*path, "rollingUpdate", "maxUnavailable"), (int, str))}


def _router(values: Values, draft: Draft) -> dict[str, Any]:
    """The router's settings: the ``router`` target's options, and each model's routing strategy."""
    if not values.get((*ROUTER, "enableRouter"), bool, True):
        values.raw(ROUTER)
        return {}
    draft.add_target("router")
    options = draft.target_options.setdefault("router", {})
    options["replicas"] = values.integer((*ROUTER, "replicaCount"), 1)
    _, resources = split_resources(values, (*ROUTER, "resources"))
    options["resources"] = resources or None
    values.drop_feature("the production-stack router's image", [(*ROUTER, "repository"), (*ROUTER, "tag")],
                        "stackc deploys its own router ([targets.router] image)")
    values.consumed.add((*ROUTER, "imagePullPolicy"))
    logic = values.text((*ROUTER, "routingLogic"), "roundrobin")
    routing: dict[str, Any] = {}
    if logic in ROUTING:
        routing["strategy"] = ROUTING[logic]
    elif logic == "kvaware":
        routing["strategy"] = "prefix"  # the closest stackc has: where the prompt's prefix was sent before
        values.drop_feature(LMCACHE_CONTROLLER, [(*ROUTER, "routingLogic")], LMCACHE_CONTROLLER_HINT)
        values.drop_feature(LMCACHE_CONTROLLER, [(*ROUTER, key) for key in (
            "lmcacheControllerPort", "lmcacheControllerReplyPort", "lmcacheControllerHeartbeatPort")])
    elif logic == "disaggregated_prefill":
        # stackc's router sends each request to a disaggregated model's prefill role, then its decode role
        values.consumed.add((*ROUTER, "enablePD"))
        _pd_labels(values)
    else:
        values.drop((*ROUTER, "routingLogic"), f"routing logic {logic!r}",
                    "stackc routes by prefix, least_loaded, session or round_robin")
    if logic == "session" and (header := values.text((*ROUTER, "sessionKey"))):
        routing["session_header"] = header
    else:
        values.consumed.add((*ROUTER, "sessionKey"))
    values.drop_unless((*ROUTER, "prefixMinMatchLength"), 0, "a minimum prefix match length")
    _ingress(values, options)
    _routes(values, options)
    defaults = {"serviceType": "ClusterIP", "servicePort": 80, "containerPort": 8000, "serviceDiscovery": "k8s",
                "k8sServiceDiscoveryType": "pod-ip", "engineScrapeInterval": 15, "requestStatsWindow": 60,
                "labels": {"environment": "router", "release": "router"}, "rootPath": ""}
    for key, default in defaults.items():
        values.drop_unless((*ROUTER, key), default, f"the production-stack router's {key}")
    if values.get((*ROUTER, "serviceMonitor", "enabled"), bool, False):
        draft.add_target("monitoring")
    _extra_ports(values, options)
    for key in ("staticBackends", "staticModels", "extraArgs", "env", "extraVolumes",
                "extraVolumeMounts", "podAnnotations", "serviceAnnotations", "nodePort", "strategy", "affinity",
                "nodeSelectorTerms", "nodeSelector", "tolerations", "priorityClassName", "securityContext",
                "containerSecurityContext", "imagePullSecrets", "hf_token", "lmcacheControllerPort",
                "lmcacheControllerReplyPort", "lmcacheControllerHeartbeatPort",
                "serviceAccountName", "livenessProbe", "readinessProbe", "startupProbe", "serviceMonitor"):
        if (*ROUTER, key) not in values.taken:
            values.drop((*ROUTER, key), f"the production-stack router's {key}")
    values.drop_unless((*ROUTER, "lmcacheConfig", "logLevel"), "INFO", "the router's LMCache log level")
    values.drop((*ROUTER, "vllmApiKey", "secretName"), "the key the router forwards to engines",
                "the engines' key is security.api_key; the router's own keys are [targets.router] api_keys")
    values.consumed.add((*ROUTER, "vllmApiKey", "secretKey"))
    values.drop((*ROUTER, "otel", "endpoint"), "OpenTelemetry tracing")
    values.raw((*ROUTER, "otel"))
    values.feature((*ROUTER, "autoscaling"), "a HorizontalPodAutoscaler for the router")
    values.feature((*ROUTER, "pdb"), "a custom PodDisruptionBudget for the router",
                   "stackc gives the router its own budget")
    return {"routing": routing}


def _extra_ports(values: Values, options: dict[str, Any]) -> None:
    """``routerSpec.extraPorts`` (the chart appends them to the router's Service as written) -> the router's
    ``ports``: stackc opens each on the container too, named like the Service's."""
    ports = []
    for index, _ in enumerate(values.sequence((*ROUTER, "extraPorts"))):
        here = (*ROUTER, "extraPorts", index)
        port = {"name": values.text((*here, "name")), "port": values.get((*here, "port"), int)}
        target = values.get((*here, "targetPort"), (int, str))
        if isinstance(target, int) and target != port["port"]:
            port["target_port"] = target
        elif isinstance(target, str):
            values.drop((*here, "targetPort"), "a target port by name",
                        "stackc names the router's container port after the Service's: target_port takes a number")
        if (protocol := values.text((*here, "protocol"))) not in (None, "TCP"):
            port["protocol"] = protocol
        for key in values.keys(here):
            if key not in ("name", "port", "targetPort", "protocol"):
                values.drop((*here, key), f"a router port's {key}")
        ports.append({k: v for k, v in port.items() if v is not None})
    if ports:
        options["ports"] = ports


def _pd_labels(values: Values) -> None:
    """The chart's router finds the P/D pair by label flags; stackc's router knows the roles from the spec."""
    path = (*ROUTER, "extraArgs")
    args = values.find(path)
    if not isinstance(args, list) or len(args) % 2:
        return
    flags = args[0::2]
    if set(flags) <= {"--prefill-model-labels", "--decode-model-labels"}:
        values.raw(path)


def _ingress(values: Values, options: dict[str, Any]) -> None:
    path = (*ROUTER, "ingress")
    if not values.get((*path, "enabled"), bool, False):
        values.raw(path)
        return
    host = values.text((*path, "hosts", 0, "host"))
    if host is None:
        values.error((*path, "hosts"), "an enabled ingress needs hosts[0].host")
        return
    for index, item in enumerate(values.sequence((*path, "hosts", 0, "paths"))):
        here = (*path, "hosts", 0, "paths", index)
        if values.text((*here, "path")) != "/" or index:
            values.drop(here, "an ingress path other than /", "the router's ingress serves /")
        values.consumed.add((*here, "pathType"))
    for index in range(1, len(values.sequence((*path, "hosts")))):
        values.drop((*path, "hosts", index), "a second ingress host")
    tls_secret = values.text((*path, "tls", 0, "secretName"))
    values.consumed.add((*path, "tls", 0, "hosts"))
    values.raw((*path, "tls", 0, "hosts"))
    values.drop((*path, "annotations"), "ingress annotations")
    options["ingress"] = {"host": host, "class_name": values.text((*path, "className")) or None,
                          "tls_secret": tls_secret}


def _routes(values: Values, options: dict[str, Any]) -> None:
    path = (*ROUTER, "route")
    used = False
    for name in values.keys(path):
        here = (*path, name)
        if not values.get((*here, "enabled"), bool, False):
            values.raw(here)
            continue
        kind = values.text((*here, "kind"), "HTTPRoute")
        if used or kind != "HTTPRoute":
            values.drop(here, f"a second route or a {kind}", "stackc exposes the router with one HTTPRoute")
            continue
        used = True
        gateway = values.text((*here, "parentRefs", 0, "name"))
        if gateway is None:
            values.error((*here, "parentRefs"), "an enabled route needs parentRefs[0].name")
            continue
        options["http_route"] = {"gateway": gateway,
                                 "gateway_namespace": values.text((*here, "parentRefs", 0, "namespace")),
                                 "hostnames": values.texts((*here, "hostnames"))}
        values.consumed.add((*here, "apiVersion"))
        values.consumed.add((*here, "kind"))
        values.drop_unless((*here, "matches"), [{"path": {"type": "PathPrefix", "value": "/"}}], "route matches")
        for index in range(1, len(values.sequence((*here, "parentRefs")))):
            values.drop((*here, "parentRefs", index), "a second parent Gateway")
        for extra in values.keys((*here, "parentRefs", 0)):
            if extra not in ("name", "namespace"):
                values.drop((*here, "parentRefs", 0, extra), f"parentRefs {extra}")
        for key in ("annotations", "labels", "filters", "additionalRules"):
            values.drop((*here, key), f"route {key}")
        values.drop_unless((*here, "httpsRedirect"), False, "an HTTPS redirect route")


def _lora_adapters(values: Values, draft: Draft, keys: dict[str, str]) -> None:
    """``loraAdapters[]`` (LoraAdapter resources) as adapters served next to their base model."""
    for index, _ in enumerate(values.sequence(("loraAdapters",))):
        path = ("loraAdapters", index)
        if not values.get((*path, "enabled"), bool, True):
            values.raw(path)
            continue
        base = values.text((*path, "baseModel"))
        key = keys.get(base or "") or next((k for k, m in zip(keys.values(), draft.models.values())
                                            if m["model"] == base), None)
        kind = values.text((*path, "adapterSource", "type"))
        name = values.text((*path, "adapterSource", "adapterName")) or values.text((*path, "name"))
        if kind == "huggingface":
            source = f"hf://{values.text((*path, 'adapterSource', 'repository'))}"
        elif kind == "local":
            source = values.text((*path, "adapterSource", "adapterPath")) or ""
        else:
            values.drop(path, f"a LoRA adapter from {kind or 'an unknown source'}",
                        "stackc loads adapters from Hugging Face or a path")
            continue
        if key is None:
            values.drop(path, f"an adapter for {base!r}, which no modelSpec entry serves")
            continue
        # the chart's LoRA controller loads adapters into running engines: with a router, so does stackc
        load = "runtime" if "router" in draft.targets else "startup"
        draft.models[key].setdefault("serving", {}).setdefault("lora_adapters", []).append(
            {"name": name, "source": source, "load": load})
        if "--enable-lora" in draft.models[key]["engine_args"]:
            draft.models[key]["engine_args"].remove("--enable-lora")  # stackc's adapters turn it on
        values.consumed.add((*path, "name"))
        values.drop((*path, "vllmApiKey"), "a per-adapter API key")
        values.drop((*path, "loraAdapterDeploymentConfig"), "adapter placement (algorithm, replicas)",
                    "stackc loads each adapter on every replica of its model")
        for extra in ("pattern", "maxAdapters", "credentials"):
            values.drop((*path, "adapterSource", extra), f"adapterSource.{extra}")


def _top_level(values: Values, draft: Draft) -> None:
    values.feature(("loraController",), "the LoRA controller", "adapters are loaded at start "
                   "(serving.lora_adapters)", switch="enableLoraController")
    _cache_server(values, draft)
    _shared_storage(values, draft)
    values.feature(("kube-prometheus-stack",), "the bundled Prometheus")
    values.feature(("prometheus-adapter",), "the bundled Prometheus adapter")
    if values.get(("grafanaDashboards", "enabled"), bool, False):
        draft.add_target("monitoring")
        options = draft.target_options.setdefault("monitoring", {})
        labels = values.mapping(("grafanaDashboards", "labels"))
        options["dashboard_labels"] = {k: values.text(("grafanaDashboards", "labels", k)) for k in labels} or None
        values.drop(("grafanaDashboards", "annotations"), "annotations on the dashboards")
    else:
        values.raw(("grafanaDashboards",))
    for index, item in enumerate(values.sequence(("extraObjects",))):
        if isinstance(item, dict):
            draft.extra_objects.append(values.raw(("extraObjects", index), dict))
        else:  # a string the chart passes through tpl
            values.drop(("extraObjects", index), "a templated extra object", "write it out as a mapping")
    values.drop_unless(("nameOverride",), "", "a name override", "stackc names objects STACK-MODEL")
    values.drop_unless(("fullnameOverride",), "", "a name override", "stackc names objects STACK-MODEL")


def _inline_secret(values: Values, path: Path, stack: str, key: str, what: str) -> dict[str, str]:
    """A secret written into the values: the chart stores it in the Secret RELEASE-secrets under ``key``;
    the spec reads the same key from STACK-secrets, which the user creates (stackc never inlines one),
    so the endpoint stays closed."""
    name = f"{stack}-secrets"
    values.drop(path, f"the {what} written into the values; the spec reads it from the Secret {name} "
                f"(key {key}), which you create", f"kubectl create secret generic {name} "
                f"--from-literal={key}=… (the chart kept it in RELEASE-secrets under the same key)")
    return {"name": name, "key": key}


def _shared_storage(values: Values, draft: Draft) -> None:
    """``sharedPvcStorage``: one ReadWriteMany volume every engine keeps its weights on (the chart's HF_HOME),
    which is the stack's shared cache; a model's own claim then caches nothing in the chart."""
    path = ("sharedPvcStorage",)
    if not values.get((*path, "enabled"), bool, False):
        values.raw(path)
        return
    server, export = values.text((*path, "nfs", "server")), values.text((*path, "nfs", "path"))
    draft.shared_cache = {"size": quantity(values.get((*path, "size"), (str, int))) or "100Gi",
                          "storage_class": values.text((*path, "storageClass")) or None,
                          "nfs": {"server": server, "path": export} if server and export else None}
    values.raw((*path, "nfs"))
    values.drop((*path, "hostPath"), "a hostPath volume shared by the models",
                "Pod Security \"restricted\" admits claims only: use nfs, a storageClass, or an existing claim")
    values.drop_unless((*path, "accessModes"), ["ReadWriteMany"], "an access mode other than ReadWriteMany",
                       "a shared cache is mounted by every replica")
    values.raw((*path, "image"))  # the LoRA controller's permission fixer, which stackc does not run
    for key, model in draft.models.items():
        if model.pop("cache", None):
            index = next(i for i, origin in enumerate(values.sequence((*ENGINE, "modelSpec")))
                         if values.location((*ENGINE, "modelSpec", i)) == draft.origins[key])
            values.drop((*ENGINE, "modelSpec", index, "pvcStorage"), "the model's own claim, which holds no weights "
                        "while sharedPvcStorage is on (the chart's HF_HOME is the shared volume)",
                        "the model uses [stack.shared_cache]")


def _secret(values: Values, path: Path) -> dict[str, str] | None:
    name = values.text((*path, "secretName"))
    key = values.text((*path, "secretKey"))
    if name and key:
        return {"name": name, "key": key}
    if name or key:
        values.error(path, "a Secret reference needs both secretName and secretKey")
    return None


def _positive(text: str) -> bool:
    try:
        return float(text) > 0
    except ValueError:
        return False
