"""Kubernetes objects from Workloads: the pod template and friends every target shares.

Targets call these so a Deployment (manifests), a Helm template and a KServe predictor are the
same pod. Secure defaults follow the "restricted" Pod Security Standard where engines allow it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from stackc.model import Model, ProbeOverride, Spec
from stackc.workload import Container, EnvVar, Probe, Volume, Workload

RESTRICTED_CONTAINER = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}
RESTRICTED_POD = {"seccompProfile": {"type": "RuntimeDefault"}}


def metadata(spec: Spec, name: str, labels: Mapping[str, str], annotations: Mapping[str, str] | None = None) -> dict:
    meta: dict[str, Any] = {"name": name, "namespace": spec.stack.namespace, "labels": dict(labels)}
    merged = {**spec.stack.annotations, **(annotations or {})}
    if merged:
        meta["annotations"] = merged
    return meta


def env_var(var: EnvVar) -> dict:
    if var.secret is not None:
        return {"name": var.name, "valueFrom": {"secretKeyRef": {"name": var.secret.name, "key": var.secret.key}}}
    return {"name": var.name, "value": var.value or ""}


def probe(spec: Probe, override: ProbeOverride | None = None) -> dict:
    path = override.path if override and override.path else spec.path
    result: dict[str, Any] = (
        {"exec": {"command": list(spec.command)}} if spec.command else {"httpGet": {"path": path, "port": spec.port}}
    )
    for field in ("initial_delay_seconds", "period_seconds", "timeout_seconds", "failure_threshold"):
        value = getattr(override, field) if override and getattr(override, field) is not None else getattr(spec, field)
        camel = "".join(part.capitalize() if i else part for i, part in enumerate(field.split("_")))
        result[camel] = value
    return result


def resources(model: Model, extra: Mapping[str, Mapping[str, str]] | None = None) -> dict:
    """Requests and limits; accelerators go into both, as extended resources must."""
    requests = dict(model.resources.requests)
    limits = dict(model.resources.limits)
    if model.accelerators.count > 0:
        count = str(model.accelerators.count)
        requests[model.accelerators.resource] = count
        limits[model.accelerators.resource] = count
    for kind, table in (extra or {}).items():
        (requests if kind == "requests" else limits).update(table)
    out = {}
    if requests:
        out["requests"] = requests
    if limits:
        out["limits"] = limits
    return out


def container(item: Container, model: Model, *, main: bool) -> dict:
    result: dict[str, Any] = {"name": item.name, "image": item.image}
    if item.command:
        result["command"] = list(item.command)
    if item.args:
        result["args"] = list(item.args)
    env = [env_var(v) for v in item.env]
    if main:
        env += [{"name": k, "value": v} for k, v in sorted(model.env.items())]
        env += [env_var(EnvVar(k, secret=ref)) for k, ref in sorted(model.secret_env.items())]
    if env:
        result["env"] = env
    if item.ports:
        result["ports"] = [
            {"name": p.name, "containerPort": p.number, "protocol": "TCP"} for p in item.ports
        ]
    mounts = [_mount(m) for m in item.mounts]
    if main:
        mounts += [dict(m) for m in model.extra_volume_mounts]
    if mounts:
        result["volumeMounts"] = mounts
    overrides = model.probes
    if main and item.startup_probe:
        result["startupProbe"] = probe(item.startup_probe, overrides.startup)
    if main and item.readiness_probe:
        result["readinessProbe"] = probe(item.readiness_probe, overrides.readiness)
    if main and item.liveness_probe:
        result["livenessProbe"] = probe(item.liveness_probe, overrides.liveness)
    container_resources = resources(model, item.resources) if main else {k: dict(v) for k, v in item.resources.items()}
    if container_resources:
        result["resources"] = container_resources
    pull_policy = model.image_pull_policy or item.image_pull_policy
    if pull_policy:
        result["imagePullPolicy"] = pull_policy
    if item.working_dir:
        result["workingDir"] = item.working_dir
    result["securityContext"] = dict(model.security.container_security_context or RESTRICTED_CONTAINER)
    return result


def _mount(mount: Any) -> dict:
    result: dict[str, Any] = {"name": mount.volume, "mountPath": mount.path}
    if mount.sub_path:
        result["subPath"] = mount.sub_path
    if mount.read_only:
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


def pod_spec(workload: Workload) -> dict:
    model = workload.model
    result = workload.result
    init = [container(c, model, main=False) for c in result.init_containers]
    init += [dict(c) for c in model.init_containers]
    pod: dict[str, Any] = {}
    if init:
        pod["initContainers"] = init
    pod["containers"] = [container(result.container, model, main=True)]
    pod["volumes"] = [volume(v) for v in workload.volumes]
    pod["automountServiceAccountToken"] = False
    pod["enableServiceLinks"] = False
    pod["securityContext"] = dict(model.security.pod_security_context or RESTRICTED_POD)
    if workload.service_account:
        pod["serviceAccountName"] = workload.service_account
    if model.security.image_pull_secrets:
        pod["imagePullSecrets"] = [{"name": s} for s in model.security.image_pull_secrets]
    scheduling = model.scheduling
    if scheduling.node_selector:
        pod["nodeSelector"] = dict(scheduling.node_selector)
    if scheduling.affinity:
        pod["affinity"] = dict(scheduling.affinity)
    if scheduling.tolerations:
        pod["tolerations"] = [_toleration(t) for t in scheduling.tolerations]
    if scheduling.topology_spread:
        pod["topologySpreadConstraints"] = [
            {"labelSelector": {"matchLabels": dict(workload.selector)}, **c} for c in scheduling.topology_spread
        ]
    for key, value in (("priorityClassName", scheduling.priority_class), ("runtimeClassName", scheduling.runtime_class),
                       ("schedulerName", scheduling.scheduler_name)):
        if value:
            pod[key] = value
    if model.termination_grace_seconds is not None:
        pod["terminationGracePeriodSeconds"] = model.termination_grace_seconds
    return pod


def _toleration(toleration: Any) -> dict:
    result: dict[str, Any] = {"operator": toleration.operator}
    for field, key in (("key", "key"), ("value", "value"), ("effect", "effect"), ("toleration_seconds", "tolerationSeconds")):
        value = getattr(toleration, field)
        if value is not None:
            result[key] = value
    return result


def pod_template(workload: Workload) -> dict:
    meta: dict[str, Any] = {"labels": dict(workload.labels)}
    if workload.model.annotations:
        meta["annotations"] = dict(workload.model.annotations)
    return {"metadata": meta, "spec": pod_spec(workload)}
