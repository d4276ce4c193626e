"""Kubernetes objects from the plan: one builder per kind, shared by every target.

The manifests and Helm targets emit these objects as they are, KServe reuses the pod parts;
third-party targets get the same builders. Builders only translate: every decision was made
when the plan was lowered.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import attrs

from stackc.diagnostics import Diagnostic, Severity, did_you_mean
from stackc.plan import limits, signals
from stackc.plan.engine import (
    ClaimRequest,
    ConfigMapData,
    Container,
    EnvVar,
    Mount,
    NfsVolumeRequest,
    Probe,
    Volume,
)
from stackc.plan.model import (
    DISAGGREGATION_ROLE_LABEL,
    Autoscaler,
    Component,
    EnginesService,
    KvCacheServer,
    Plan,
    Pod,
    Stack,
)
from stackc.registry import Artifact

#: the pods of KubeRay's operator (its Helm chart's name label)
KUBERAY_OPERATOR = {"app.kubernetes.io/name": "kuberay-operator"}
#: LeaderWorkerSet's annotation giving each group a topology domain of its own
EXCLUSIVE_TOPOLOGY = "leaderworkerset.sigs.k8s.io/exclusive-topology"


def stack_labels(stack: Stack) -> dict[str, str]:
    """Labels of objects that belong to the stack as a whole rather than to one model."""
    return {**stack.labels, "app.kubernetes.io/part-of": stack.name, "app.kubernetes.io/managed-by": "stackc"}


def metadata(stack: Stack, name: str, labels: Mapping[str, str], annotations: Mapping[str, str] | None = None) -> dict:
    meta: dict[str, Any] = {"name": name, "namespace": stack.namespace, "labels": dict(labels)}
    merged = {**stack.annotations, **(annotations or {})}
    if merged:
        meta["annotations"] = merged
    return meta


def env_var(var: EnvVar) -> dict:
    if var.value_from is not None:
        return {"name": var.name, "valueFrom": dict(var.value_from)}
    if var.secret is not None:
        return {"name": var.name, "valueFrom": {"secretKeyRef": {"name": var.secret.name, "key": var.secret.key}}}
    return {"name": var.name, "value": var.value or ""}


def probe(spec: Probe) -> dict:
    if spec.command:
        result: dict[str, Any] = {"exec": {"command": list(spec.command)}}
    elif spec.tcp:
        result = {"tcpSocket": {"port": spec.port}}
    else:
        result = {"httpGet": {"path": spec.path, "port": spec.port}}
    result.update(initialDelaySeconds=spec.initial_delay_seconds, periodSeconds=spec.period_seconds,
                  timeoutSeconds=spec.timeout_seconds, failureThreshold=spec.failure_threshold)
    return result


def container(item: Container) -> dict:
    result: dict[str, Any] = {"name": item.name, "image": item.image}
    if item.command:
        result["command"] = list(item.command)
    if item.args:
        result["args"] = list(item.args)
    if item.env:
        result["env"] = [env_var(v) for v in item.env]
    if item.ports:
        result["ports"] = [{"name": p.name, "containerPort": p.number, "protocol": p.protocol} for p in item.ports]
    mounts = [mount(m) for m in item.mounts] + [dict(m) for m in item.raw_mounts]
    if mounts:
        result["volumeMounts"] = mounts
    for key, item_probe in (("startupProbe", item.startup_probe), ("readinessProbe", item.readiness_probe),
                            ("livenessProbe", item.liveness_probe)):
        if item_probe is not None:
            result[key] = probe(item_probe)
    if item.resources:
        result["resources"] = {kind: dict(table) for kind, table in item.resources.items()}
    if item.image_pull_policy:
        result["imagePullPolicy"] = item.image_pull_policy
    if item.working_dir:
        result["workingDir"] = item.working_dir
    if item.security_context is not None:
        result["securityContext"] = dict(item.security_context)
    if item.restart_policy:
        result["restartPolicy"] = item.restart_policy
    return result


def mount(item: Mount) -> dict:
    result: dict[str, Any] = {"name": item.volume, "mountPath": item.path}
    if item.sub_path:
        result["subPath"] = item.sub_path
    if item.read_only:
        result["readOnly"] = True
    return result


def volume(item: Volume) -> dict:
    if item.raw is not None:
        return dict(item.raw)
    if item.claim is not None:
        return {"name": item.name, "persistentVolumeClaim": {"claimName": item.claim}}
    if item.config_map is not None:
        return {"name": item.name, "configMap": {"name": item.config_map}}
    if item.image is not None:
        return {"name": item.name, "image": {"reference": item.image, "pullPolicy": "IfNotPresent"}}
    return {"name": item.name, "emptyDir": dict(item.empty_dir or {})}


def pod_spec(pod: Pod) -> dict:
    result: dict[str, Any] = {}
    init = [container(c) for c in pod.init_containers]
    if init:
        result["initContainers"] = init
    result["containers"] = [container(c) for c in pod.containers]
    result["volumes"] = [volume(v) for v in pod.volumes]
    result["automountServiceAccountToken"] = False
    result["enableServiceLinks"] = False
    if pod.host_ipc:
        result["hostIPC"] = True
    if pod.host_pid:
        result["hostPID"] = True
    result["securityContext"] = dict(pod.security_context)
    if pod.service_account:
        result["serviceAccountName"] = pod.service_account
    if pod.image_pull_secrets:
        result["imagePullSecrets"] = [{"name": s} for s in pod.image_pull_secrets]
    if pod.node_selector:
        result["nodeSelector"] = dict(pod.node_selector)
    if pod.affinity:
        result["affinity"] = dict(pod.affinity)
    if pod.tolerations:
        result["tolerations"] = [dict(t) for t in pod.tolerations]
    if pod.topology_spread:
        result["topologySpreadConstraints"] = [dict(c) for c in pod.topology_spread]
    for key, value in (("priorityClassName", pod.priority_class), ("runtimeClassName", pod.runtime_class),
                       ("schedulerName", pod.scheduler_name)):
        if value:
            result[key] = value
    if pod.termination_grace_seconds is not None:
        result["terminationGracePeriodSeconds"] = pod.termination_grace_seconds
    return result


def pod_template(pod: Pod, annotations: Mapping[str, str] | None = None) -> dict:
    meta: dict[str, Any] = {"labels": dict(pod.labels)}
    merged = {**pod.annotations, **(annotations or {})}
    if merged:
        meta["annotations"] = merged
    return {"metadata": meta, "spec": pod_spec(pod)}


def config_hash(component: Component) -> dict[str, str]:
    """A pod annotation that changes with the component's ConfigMaps, so pods roll when they change."""
    if not component.config_maps:
        return {}
    contents = [{"name": c.name, "data": dict(c.data)} for c in component.config_maps]
    digest = hashlib.sha256(json.dumps(contents, sort_keys=True).encode())
    return {"stackc.dev/config-hash": digest.hexdigest()[:16]}


def _rolling(component: Component) -> dict[str, Any]:
    rollout = component.rollout
    return {k: v for k, v in (("maxSurge", rollout.max_surge), ("maxUnavailable", rollout.max_unavailable))
            if v is not None}


def replicas(count: int, autoscaled: bool) -> dict[str, int]:
    """A workload's ``replicas``, left out when an autoscaler owns the count (an apply would reset it)."""
    return {} if autoscaled else {"replicas": count}


def deployment_strategy(component: Component) -> dict[str, Any]:
    """A Deployment's ``strategy`` from the component's rollout (KServe's ``deploymentStrategy`` too)."""
    strategy: dict[str, Any] = {"type": component.rollout.strategy}
    rolling = _rolling(component)
    if component.rollout.strategy == "RollingUpdate" and rolling:
        strategy["rollingUpdate"] = rolling
    return strategy


def deployment(stack: Stack, component: Component) -> dict:
    template = pod_template(component.pod, config_hash(component))
    strategy = deployment_strategy(component)
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": metadata(stack, component.name, component.labels),
        "spec": {
            **replicas(component.scale.replicas, component.scale.autoscaler is not None),
            "selector": {"matchLabels": dict(component.selector)},
            "strategy": strategy,
            "progressDeadlineSeconds": limits.progress_deadline_seconds(component.pod.containers[0].startup_probe),
            "template": template,
        },
    }


def leader_worker_set(stack: Stack, component: Component) -> dict:
    """A replica as a group of ``topology.size`` pods (LeaderWorkerSet): created, restarted and rolled
    together, the leader first. ``Recreate`` becomes a rollout that may take every group down at once."""
    assert component.worker_pod is not None
    annotations = config_hash(component)
    rolling = _rolling(component) if component.rollout.strategy == "RollingUpdate" else {
        "maxUnavailable": "100%", "maxSurge": 0}
    strategy: dict[str, Any] = {"type": "RollingUpdate"}
    if rolling:
        strategy["rollingUpdateConfiguration"] = rolling
    exclusive = component.topology.exclusive_key
    return {
        "apiVersion": "leaderworkerset.x-k8s.io/v1", "kind": "LeaderWorkerSet",
        "metadata": metadata(stack, component.name, component.labels,
                             {EXCLUSIVE_TOPOLOGY: exclusive} if exclusive else None),
        "spec": {
            **replicas(component.scale.replicas, component.scale.autoscaler is not None),
            "startupPolicy": "LeaderCreated",
            "rolloutStrategy": strategy,
            "leaderWorkerTemplate": {
                "size": component.topology.size,
                "restartPolicy": "RecreateGroupOnPodRestart",
                "leaderTemplate": pod_template(component.pod, annotations),
                "workerTemplate": pod_template(component.worker_pod, annotations),
            },
        },
    }


def ray_service(stack: Stack, component: Component) -> dict:
    """A Ray cluster and its Serve application (KubeRay's RayService): the head, one worker group Ray's
    autoscaler sizes, and the typed Serve config rendered into the YAML string KubeRay takes.

    KubeRay creates the Services (``NAME-serve-svc`` on Serve's port, ``NAME-head-svc``) and, on a
    changed cluster, a new cluster it switches traffic to once it serves.
    """
    from stackc.output.render import to_yaml

    cluster = component.ray
    assert cluster is not None and component.worker_pod is not None
    annotations = config_hash(component)
    head = pod_template(component.pod, annotations)
    config: dict[str, Any] = {"rayVersion": cluster.version}
    if cluster.autoscaling:
        autoscaler_container: dict[str, Any] = {"idleTimeoutSeconds": cluster.idle_timeout_seconds,
                                                "upscalingMode": "Default"}
        security = component.pod.containers[0].security_context
        if security is not None:  # the autoscaler runs beside the head, under the same Pod Security level
            autoscaler_container["securityContext"] = dict(security)
        config.update(enableInTreeAutoscaling=True, autoscalerOptions=autoscaler_container)
    config["headGroupSpec"] = {"rayStartParams": dict(cluster.head_params), "template": head}
    config["workerGroupSpecs"] = [{
        "groupName": "workers", "replicas": cluster.workers, "minReplicas": cluster.min_workers,
        "maxReplicas": cluster.max_workers, "rayStartParams": {},  # KubeRay derives the GPUs from the limits
        "template": pod_template(component.worker_pod, annotations),
    }]
    serve = attrs.asdict(cluster.serve, filter=lambda _, value: value is not None,
                         value_serializer=lambda _, __, value: dict(value) if isinstance(value, Mapping) else value)
    return {
        "apiVersion": "ray.io/v1", "kind": "RayService",
        "metadata": metadata(stack, component.name, component.labels),
        "spec": {"serveConfigV2": to_yaml(serve), "rayClusterConfig": config},
    }


def workload(stack: Stack, component: Component) -> tuple[str, dict]:
    """(file stem, object) of what runs the component's pods, by its topology."""
    if component.topology.kind == "ray_cluster":
        return "rayservice", ray_service(stack, component)
    if component.topology.kind == "leader_worker":
        return "leaderworkerset", leader_worker_set(stack, component)
    return "deployment", deployment(stack, component)


def service(stack: Stack, component: Component, service_type: str = "ClusterIP") -> dict:
    endpoint = component.endpoint
    port = endpoint.port
    ports = [{"name": port.name, "port": endpoint.public_port or port.number, "targetPort": port.name,
              "protocol": "TCP", **({"appProtocol": port.app_protocol} if port.app_protocol else {})}]
    ports += [{"name": extra.name, "port": extra.number, "targetPort": extra.name, "protocol": extra.protocol}
              for extra in endpoint.extra_service_ports]
    return {
        "apiVersion": "v1", "kind": "Service",
        "metadata": metadata(stack, component.name, component.labels),
        "spec": {"type": service_type, "selector": dict(component.endpoint.selector), "ports": ports},
    }


def nfs_persistent_volume(stack: Stack, labels: Mapping[str, str], volume: NfsVolumeRequest) -> dict:
    """A cluster-scoped volume for an NFS export, kept when its claim goes (the weights stay on the share)."""
    meta = metadata(stack, volume.name, labels)
    del meta["namespace"]
    return {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": meta,
            "spec": {"capacity": {"storage": volume.size}, "accessModes": ["ReadWriteMany"],
                     "persistentVolumeReclaimPolicy": "Retain", "storageClassName": "",
                     "nfs": {"server": volume.server, "path": volume.path}}}


def stack_objects(stack: Stack, engines_service: bool = True) -> Iterator[tuple[str, dict]]:
    """(file stem, object) for what the stack as a whole needs: its shared claims, the KV-cache server, the
    Service over every engine (unless the target's pods can't carry its label), then the spec's extra objects
    as written (already in the stack's namespace)."""
    labels = stack_labels(stack)
    for volume in stack.nfs_volumes:
        yield f"persistentvolume-{volume.name}", nfs_persistent_volume(stack, labels, volume)
    for claim in stack.claims:
        yield f"persistentvolumeclaim-{claim.name}", persistent_volume_claim(stack, labels, claim)
    server = stack.kv_cache_server
    if server is not None:
        yield f"deployment-{server.name}", kv_cache_server_deployment(stack, server)
        yield f"service-{server.name}", kv_cache_server_service(stack, server)
        if stack.network_policy is not None:
            yield f"networkpolicy-{server.name}", kv_cache_server_network_policy(stack, server)
    engines = stack.engines_service
    if engines is not None and engines_service and engines.members:
        yield f"service-{engines.name}", engines_service_object(stack, engines)
    for obj in stack.extra_objects:
        yield f"{obj['kind'].lower()}-{obj['metadata']['name']}", json.loads(json.dumps(obj))


def engines_service_object(stack: Stack, engines: EnginesService) -> dict:
    """The Service over every model's serving pods; checks refused a stack whose port or port name it can't tell."""
    assert engines.port is not None and engines.target_port is not None
    return {
        "apiVersion": "v1", "kind": "Service", "metadata": metadata(stack, engines.name, engines.labels),
        "spec": {"type": "ClusterIP", "selector": dict(engines.selector),
                 "ports": [{"name": engines.target_port, "port": engines.port, "targetPort": engines.target_port,
                            "protocol": "TCP"}]},
    }


def engines_service_unexpressed(plan: Plan, target: str, pods: str) -> Iterator[Diagnostic]:
    """A target whose platform runs the model pods behind Services of its own (KServe's controllers, a
    Knative queue proxy in front of the engine) emits no engines Service: KServe decides what answers there."""
    engines = plan.stack.engines_service
    if engines is not None and engines.members:
        yield Diagnostic("W190", f"{target}: KServe runs {pods} behind Services of its own (in Knative mode behind "
                         f"its queue proxy): this target emits no Service '{engines.name}'", ("stack", "engines_service"),
                         "the pods still carry the label stackc.dev/engines-service; deploy the models with a target "
                         "that emits their pods (manifests, helm) to have the Service", Severity.WARNING)


def kv_cache_server_deployment(stack: Stack, server: KvCacheServer) -> dict:
    """One replica (a second would be a second, separate store), replaced rather than rolled for the same reason."""
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": metadata(stack, server.name, server.labels),
        "spec": {"replicas": 1, "selector": {"matchLabels": dict(server.selector)}, "strategy": {"type": "Recreate"},
                 "template": pod_template(server.pod)},
    }


def kv_cache_server_service(stack: Stack, server: KvCacheServer) -> dict:
    return {
        "apiVersion": "v1", "kind": "Service",
        "metadata": metadata(stack, server.name, server.labels),
        "spec": {"type": "ClusterIP", "selector": dict(server.selector),
                 "ports": [{"name": server.port.name, "port": server.port.number, "targetPort": server.port.name,
                            "protocol": "TCP"}]},
    }


def kv_cache_server_network_policy(stack: Stack, server: KvCacheServer) -> dict:
    """Only the stack's model servers may store and fetch KV blocks: they hold the users' prompts."""
    return {
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": metadata(stack, server.name, server.labels),
        "spec": {"podSelector": {"matchLabels": dict(server.selector)}, "policyTypes": ["Ingress"],
                 "ingress": [{"from": [{"podSelector": {"matchLabels": dict(server.clients)}}],
                              "ports": [{"port": server.port.name, "protocol": "TCP"}]}]},
    }


def service_account(stack: Stack, component: Component) -> dict:
    assert component.service_account is not None
    account = component.service_account
    return {
        "apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": metadata(stack, account.name, component.labels, account.annotations),
        "automountServiceAccountToken": False,
    }


def api_reader(stack: Stack, name: str, labels: Mapping[str, str],
               rules: list[dict[str, Any]]) -> tuple[dict, dict, dict]:
    """The identity of a target's pods that read the Kubernetes API (the router, an endpoint picker):
    a ServiceAccount, a Role of ``rules`` in the stack's namespace, and the RoleBinding between them."""
    return (
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": metadata(stack, name, labels)},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": metadata(stack, name, labels),
         "rules": rules},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": metadata(stack, name, labels),
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
         "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": stack.namespace}]},
    )


def persistent_volume_claim(stack: Stack, labels: Mapping[str, str], claim: ClaimRequest) -> dict:
    spec: dict[str, Any] = {"accessModes": [claim.access_mode], "resources": {"requests": {"storage": claim.size}}}
    if claim.storage_class is not None:  # "" too: a volume without a class, none provisioned
        spec["storageClassName"] = claim.storage_class
    elif claim.selector or claim.volume_name:
        spec["storageClassName"] = ""  # bind the given volume; the default class would provision another
    if claim.selector:
        spec["selector"] = {"matchLabels": dict(claim.selector)}
    if claim.volume_name:
        spec["volumeName"] = claim.volume_name
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": metadata(stack, claim.name, labels), "spec": spec}


def config_map(stack: Stack, component: Component, data: ConfigMapData) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata(stack, data.name, component.labels),
            "data": dict(data.data)}


def pod_disruption_budget(stack: Stack, component: Component) -> dict:
    return {
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
        "metadata": metadata(stack, component.name, component.labels),
        "spec": {"maxUnavailable": component.disruption_budget, "selector": {"matchLabels": dict(component.selector)}},
    }


def autoscaler(stack: Stack, component: Component) -> tuple[str, dict] | None:
    """(file stem, object) of the one autoscaler owning the component's replicas: an HPA for CPU and
    memory, a KEDA ScaledObject with a Prometheus trigger otherwise (None without an autoscaler)."""
    scaler = component.scale.autoscaler
    if scaler is None or component.topology.kind == "ray_cluster":  # Ray Serve and Ray's autoscaler scale it
        return None
    if scaler.signal in signals.RESOURCE_SIGNALS:
        return "horizontalpodautoscaler", horizontal_pod_autoscaler(
            stack, scale_target(component), component.labels, scaler, [resource_metric(scaler.signal, scaler.target)])
    trigger = signals.trigger(stack, component)
    if trigger is None:
        return None  # no series for the signal: reported with the model's autoscaling (E081)
    return "scaledobject", scaled_object(stack, component, scaler, trigger)


def scale_target(component: Component) -> dict[str, str]:
    """The workload an autoscaler scales: the Deployment, or the LeaderWorkerSet (whole groups)."""
    if component.topology.kind == "leader_worker":
        return {"apiVersion": "leaderworkerset.x-k8s.io/v1", "kind": "LeaderWorkerSet", "name": component.name}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "name": component.name}


def scale_behavior(scaler: Autoscaler) -> dict[str, Any]:
    """The HPA ``behavior`` with the stabilization windows the spec sets."""
    return {direction: {"stabilizationWindowSeconds": seconds}
            for direction, seconds in (("scaleUp", scaler.scale_up_seconds), ("scaleDown", scaler.scale_down_seconds))
            if seconds is not None}


def horizontal_pod_autoscaler(stack: Stack, target: Mapping[str, str], labels: Mapping[str, str], scaler: Autoscaler,
                              metrics: list[dict[str, Any]]) -> dict:
    """An HPA for the workload ``target`` (its apiVersion, kind and name), named like it."""
    name = target["name"]
    spec: dict[str, Any] = {
        "scaleTargetRef": dict(target),
        "minReplicas": scaler.min_replicas, "maxReplicas": scaler.max_replicas, "metrics": metrics,
    }
    behavior = scale_behavior(scaler)
    if behavior:
        spec["behavior"] = behavior
    return {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": metadata(stack, name, labels), "spec": spec}


def resource_metric(resource: str, percent: int | float | None) -> dict[str, Any]:
    """An HPA metric: average utilization of ``resource`` as a percentage of the pods' requests."""
    return {"type": "Resource", "resource": {"name": resource, "target": {"type": "Utilization",
                                                                          "averageUtilization": percent}}}


def scaled_object(stack: Stack, component: Component, scaler: Autoscaler, trigger: signals.Trigger) -> dict:
    """A KEDA ScaledObject whose Prometheus trigger reads one series (``stackc.plan.signals``)."""
    trigger_metadata = {"serverAddress": scaler.prometheus, "query": trigger.query,
                        "threshold": number_text(scaler.target)}
    if scaler.min_replicas == 0:
        trigger_metadata["activationThreshold"] = number_text(scaler.activation or 0)
    spec: dict[str, Any] = {
        "scaleTargetRef": scale_target(component),
        "minReplicaCount": scaler.min_replicas, "maxReplicaCount": scaler.max_replicas,
        "triggers": [{"type": "prometheus", "metricType": trigger.metric_type, "metadata": trigger_metadata}],
    }
    if scaler.min_replicas == 0 and scaler.scale_down_seconds is not None:
        spec["cooldownPeriod"] = scaler.scale_down_seconds  # KEDA waits this long before scaling to zero
    behavior = scale_behavior(scaler)
    if behavior:
        spec["advanced"] = {"horizontalPodAutoscalerConfig": {"behavior": behavior}}
    return {"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
            "metadata": metadata(stack, component.name, component.labels), "spec": spec}


def number_text(value: int | float | None) -> str:
    """A number as KEDA's string metadata and Kubernetes quantities take it (``5``, ``0.8``), exactly."""
    return str(value if value is not None else 0)


def unknown_models(plan: Plan, models: Mapping[str, Any], target: str, code: str) -> Iterator[Diagnostic]:
    """``[targets.TARGET.models]`` keys that name no model of the stack."""
    keys = [component.key for component in plan.components]
    for name in sorted(models):
        if name not in keys:
            yield Diagnostic(code, f"unknown model '{name}' in [targets.{target}.models]",
                             ("targets", target, "models", name),
                             did_you_mean(name, keys) or "keys are model names from [models]")


def unapplied_service_ports(component: Component) -> str | None:
    """The spec field of a Service port a platform that makes the model's Service itself won't apply."""
    endpoint = component.endpoint
    if endpoint.public_port is not None:
        return "service_port"
    engine_ports = {p.name for p in component.pod.containers[0].ports}
    if endpoint.extra_service_ports:
        return "ports" if any(p.name in engine_ports for p in endpoint.extra_service_ports) else "sidecars"
    return None


def workload_problems(plan: Plan, target: str) -> Iterator[Diagnostic]:
    """What the workloads and autoscalers ``component_objects`` writes cannot do with the plan."""
    yield from ray_problems(plan)
    yield from autoscaler_problems(plan, target)


def autoscaler_problems(plan: Plan, target: str) -> Iterator[Diagnostic]:
    """What plain Kubernetes autoscalers (KEDA, the HPA) cannot do with a model's autoscaling."""
    for component in plan.components:
        scaler = component.scale.autoscaler
        path = ("models", component.key, "autoscaling")
        if scaler is None or component.topology.kind == "ray_cluster":
            continue
        if scaler.signal is None:
            yield Diagnostic("E083", f"target '{target}' has no platform that picks a signal: nothing would scale "
                             "this model", path, 'set autoscaling.signal (e.g. "waiting") and autoscaling.target')
        elif scaler.signal in ("concurrency", "rps"):
            yield Diagnostic("E083", f"'{scaler.signal}' is Knative's metric (KServe); target '{target}' has no "
                             "Knative", path + ("metric",), 'use signal = "running" (requests in flight per replica) '
                             'or "router_pending"')
    yield from unscraped_signals(plan)


def target_annotation_problems(plan: Plan, target: str, annotations: Mapping[str, str],
                               per_model: Mapping[str, Mapping[str, str]], kind: str) -> Iterator[Diagnostic]:
    """A target's object per model carries the stack's annotations and the target's, the model's own over them
    (``[targets.T] annotations`` and ``[targets.T.models.KEY] annotations``; stack.annotations alone are
    checked by the core): together within the API server's limit."""
    stack_bytes = limits.annotation_bytes(plan.stack.annotations)
    shared = stack_bytes + limits.annotation_bytes(annotations)
    if stack_bytes <= limits.ANNOTATION_ROOM < shared:
        yield limits.annotations_problem(shared, limits.ANNOTATION_ROOM, ("targets", target, "annotations"),
                                         f"every {kind} (with stack.annotations)")
    for component in plan.components:
        total = shared + limits.annotation_bytes(per_model.get(component.key, {}))
        if shared <= limits.ANNOTATION_ROOM < total:
            yield limits.annotations_problem(total, limits.ANNOTATION_ROOM,
                                             ("targets", target, "models", component.key, "annotations"),
                                             f"the {kind} (with stack.annotations and the target's)")


def extra_object_clashes(plan: Plan) -> list[Diagnostic]:
    """An extra object must not replace one stackc emits for a model (checked once the plan is lowered)."""
    if not plan.stack.extra_objects:
        return []  # nothing to clash: the models' objects need not be built to learn their names
    own = {(obj["kind"], obj["metadata"]["name"]) for c in plan.components
           for _, obj in component_objects(plan.stack, c)}
    return [Diagnostic("E027", f"stackc already emits {obj['kind']} '{obj['metadata']['name']}'",
                       ("stack", "extra_objects", index, "metadata", "name"), "give it another name")
            for index, obj in enumerate(plan.stack.extra_objects) if (obj["kind"], obj["metadata"]["name"]) in own]


def unscraped_signals(plan: Plan) -> Iterator[Diagnostic]:
    """Prometheus triggers select a model's series by the labels the monitoring target's PodMonitors give them."""
    if plan.stack.monitored:
        return
    for component in plan.components:
        if component.topology.kind != "ray_cluster" and signals.trigger(plan.stack, component) is not None:
            yield Diagnostic("W080", "the trigger selects series by namespace and the pods' labels (as the monitoring "
                             "target's PodMonitors copy them); without that target your Prometheus must scrape and "
                             "label them so", ("models", component.key, "autoscaling"),
                             'add "monitoring" to stack.targets', Severity.WARNING)


#: KubeRay refuses longer RayService names: it appends 6 characters for the cluster, then ``-serve-svc``
RAY_SERVICE_NAME_LIMIT = 47
#: Serve autoscales on requests in flight per replica: the one signal a Ray cluster can use
RAY_SIGNALS = (None, "running")


def ray_problems(plan: Plan) -> Iterator[Diagnostic]:
    """What KubeRay and Ray Serve refuse in a component run as a Ray cluster."""
    for component in plan.components:
        if component.topology.kind != "ray_cluster":
            continue
        if len(component.name) > RAY_SERVICE_NAME_LIMIT:
            yield Diagnostic("E110", f"the RayService '{component.name}' (stack name + '-' + model key) has "
                             f"{len(component.name)} characters; KubeRay takes at most {RAY_SERVICE_NAME_LIMIT}",
                             ("models", component.key), f"shorten the stack name or the model key to "
                             f"{RAY_SERVICE_NAME_LIMIT - 1} characters together")
        scaler = component.scale.autoscaler
        if scaler is not None and scaler.signal not in RAY_SIGNALS:
            yield Diagnostic("E116", f"Ray Serve scales replicas on requests in flight per replica, not on "
                             f"'{scaler.signal}'", ("models", component.key, "autoscaling", "signal"),
                             'use signal = "running" with target (requests per replica), or leave signal out '
                             "for Serve's default")


def network_policy(stack: Stack, component: Component) -> dict:
    """The component's pods accept their serving port from the stack's callers, metrics from scrapers.

    With no caller of the serving port (no router or gateway, no ``allow_from``) it stays open:
    clients then call the model's Service directly.
    """
    assert stack.network_policy is not None
    callers = [c for c in stack.callers if c.component in (None, component.key)
               and c.candidate in (None, component.candidate is not None)]
    serving = [_peer(stack, c.pods, c.namespace) for c in callers if c.port == "serving"]
    serving += [dict(peer) for peer in stack.network_policy.allow_from]
    port = component.endpoint.port
    rule: dict[str, Any] = {"ports": [{"port": port.name, "protocol": "TCP"}]}
    rules = [{"from": serving, **rule} if serving else rule]
    metrics = component.endpoint.metrics
    if metrics is not None:
        scrapers = [_peer(stack, c.pods, c.namespace) for c in callers if c.port == "metrics"]
        scrapers.append({"namespaceSelector": {"matchLabels": {
            "kubernetes.io/metadata.name": stack.network_policy.metrics_namespace}}})
        rules.append({"from": scrapers, "ports": [{"port": metrics.port, "protocol": "TCP"}]})
    events = component.endpoint.kv_events_port
    subscribers = [_peer(stack, c.pods, c.namespace) for c in callers if c.port == "kv_events"]
    if events is not None and subscribers:
        # the engine's KV-event socket: only the pickers that index its blocks subscribe
        rules.append({"from": subscribers, "ports": [{"port": events.name, "protocol": events.protocol}]})
    if component.topology.kind in ("leader_worker", "ray_cluster"):
        # the group's collective traffic (NCCL, the engine's rendezvous, Ray's GCS, raylets and object
        # transfer) uses ports chosen at run time
        rules.append({"from": [{"podSelector": {"matchLabels": dict(component.selector)}}]})
    if component.topology.kind == "ray_cluster":
        # KubeRay's operator, wherever it is installed, submits the Serve config to the head's dashboard
        rules.append({"from": [{"namespaceSelector": {}, "podSelector": {"matchLabels": KUBERAY_OPERATOR}}],
                      "ports": [{"port": "dashboard", "protocol": "TCP"}]})
    if component.disaggregation is not None:
        # KV transfer between the model's prefill and decode pods: the connector's port (NIXL's side
        # channel, SGLang's bootstrap) and the transport's, which UCX and Mooncake pick at run time
        rules.append({"from": [{"podSelector": {"matchLabels": model_selector(component)}}]})
    if component.endpoint.peer_ports:
        # the spec's own ports: KV transfer between the stack's engines, a sidecar's API or metrics
        peers = [{"podSelector": {"matchLabels": {"app.kubernetes.io/part-of": stack.name}}},
                 {"namespaceSelector": {"matchLabels": {
                     "kubernetes.io/metadata.name": stack.network_policy.metrics_namespace}}},
                 *(dict(peer) for peer in stack.network_policy.allow_from)]
        rules.append({"from": peers, "ports": [{"port": p.name, "protocol": p.protocol}
                                               for p in component.endpoint.peer_ports]})
    return {
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": metadata(stack, component.name, component.labels),
        "spec": {"podSelector": {"matchLabels": dict(component.selector)}, "policyTypes": ["Ingress"], "ingress": rules},
    }


def model_selector(component: Component) -> dict[str, str]:
    """The labels of all of a model's pods: a disaggregated model's both roles."""
    return without_role(component.selector)


def without_role(labels: Mapping[str, str]) -> dict[str, str]:
    """Labels with a disaggregated model's role left out: what its two roles share."""
    return {k: v for k, v in labels.items() if k != DISAGGREGATION_ROLE_LABEL}


def models(plan: Plan) -> list[Component]:
    """Each model once, as the component clients reach: its stable version, a disaggregated model's decode
    role."""
    return [c for c in plan.components
            if c.candidate is None and (c.disaggregation is None or c.disaggregation.role == "decode")]


def version_key(component: Component) -> str:
    """The model's key, KEY-candidate for its candidate version (no model has that name: E183): what names a
    version's own objects and values."""
    return component.key if component.candidate is None else component.selector["app.kubernetes.io/name"]


def candidate(components: Iterable[Component], key: str) -> Component | None:
    """The candidate version of model ``key`` among ``components`` (a plan's, or ``stackc up``'s), if it has one."""
    return next((c for c in components if c.key == key and c.candidate is not None), None)


def _peer(stack: Stack, pods: Mapping[str, str], namespace: str | None) -> dict:
    peer: dict[str, Any] = {"podSelector": {"matchLabels": dict(pods)}}
    if namespace and namespace != stack.namespace:
        peer["namespaceSelector"] = {"matchLabels": {"kubernetes.io/metadata.name": namespace}}
    return peer


def folder(component: Component) -> str:
    """Where every target puts a component's files: the model's folder, and a disaggregated model's roles
    each and its candidate version in a folder of their own inside it (``llama/prefill``, ``llama/candidate``)."""
    roles = component.disaggregation
    if component.candidate is not None:
        return f"{component.key}/candidate"
    return component.key if roles is None else f"{component.key}/{roles.role}"


def supporting_objects(stack: Stack, component: Component) -> Iterator[tuple[str, dict]]:
    """(file stem, object) for what a component's pods need besides their workload and Service."""
    if component.service_account is not None:
        yield "serviceaccount", service_account(stack, component)
    for claim in component.claims:
        yield "persistentvolumeclaim", persistent_volume_claim(stack, component.labels, claim)
    for data in component.config_maps:
        yield "configmap", config_map(stack, component, data)


def component_objects(stack: Stack, component: Component, service_type: str = "ClusterIP") -> Iterator[tuple[str, dict]]:
    """(file stem, object) for every object one component needs as plain Kubernetes, in a fixed order."""
    yield from supporting_objects(stack, component)
    yield workload(stack, component)
    if component.topology.kind != "ray_cluster":  # KubeRay makes a Ray cluster's Services
        yield "service", service(stack, component, service_type)
    scaling = autoscaler(stack, component)
    if scaling is not None:
        yield scaling
    if component.disruption_budget is not None:
        yield "poddisruptionbudget", pod_disruption_budget(stack, component)
    if stack.network_policy is not None:
        yield "networkpolicy", network_policy(stack, component)


def kustomized(artifacts: Iterable[Artifact]) -> Iterator[Artifact]:
    """The artifacts, one file per component (``per_folder``), then a kustomization.yaml naming each file
    of objects among them, so a target's folder is ``kubectl apply -k``-able."""
    resources = []
    for artifact in per_folder(artifacts):
        if artifact.objects:
            resources.append(artifact.path)
        yield artifact
    yield Artifact("kustomization.yaml", data={
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": sorted(resources),
    })


def per_folder(artifacts: Iterable[Artifact]) -> list[Artifact]:
    """Each folder's files of objects as one file named after the folder, in the order they came: a
    component's objects (``llama/deployment.yaml``, ``llama/service.yaml`` …) become ``llama.yaml``, a
    disaggregated model's roles ``llama/prefill.yaml`` and ``llama/decode.yaml``. One file per component
    reads as well as one per object in review, and a large stack writes a fifth of the files (creating
    files is most of a build's time on a slow disk). Files at the top and files of other data stay."""
    merged: dict[str, list[Mapping[str, Any]]] = {}
    others: list[Artifact] = []
    for artifact in artifacts:
        folder, _, _ = artifact.path.rpartition("/")
        if folder and artifact.objects and artifact.path.endswith(".yaml"):
            merged.setdefault(f"{folder}.yaml", []).extend(artifact.objects)
        else:
            others.append(artifact)
    return [*others, *(Artifact(path, tuple(objects)) for path, objects in merged.items())]


def file_clashes(plan: Plan, target: str, files: Iterable[str], file_of: Callable[[Component], str] | None = None,
                 where: str | None = None) -> Iterator[Diagnostic]:
    """Models whose file (``FOLDER.yaml``: ``per_folder``; ``file_of`` where the target names it otherwise)
    would be one of ``files``, which the target writes beside the models (in ``where``, by default its
    folder) for objects of its own."""
    where = where or target
    taken = set(files)
    clashing = {component.key for component in plan.components
                if (file_of(component) if file_of else f"{folder(component)}.yaml") in taken}
    for key in sorted(clashing):
        yield Diagnostic("E240", f"model '{key}' would be written to {where}/{key}.yaml, a file the {target} "
                         "target writes for objects of its own", ("models", key),
                         f"rename the model: {', '.join(sorted(name.removesuffix('.yaml') for name in taken))} "
                         f"are taken in {where}/")
