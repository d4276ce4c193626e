"""Raw Kubernetes manifests, one folder per model, applied with ``kubectl apply -k``."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any, Literal

import attrs

from stackc import hookimpl, kube
from stackc.registry import Artifact, Build, Registry
from stackc.workload import Workload

# Startup probes allow long model loads; a rollout must not be declared failed before they end.
_PROGRESS_MARGIN_SECONDS = 600


@attrs.frozen
class ManifestsOptions:
    """``[targets.manifests]``."""

    create_namespace: bool = attrs.field(default=False, metadata={"doc": "Also emit the Namespace object."})
    service_type: Literal["ClusterIP", "NodePort", "LoadBalancer"] = attrs.field(
        default="ClusterIP", metadata={"doc": "Type of each model's Service."})


class ManifestsTarget:
    name = "manifests"
    description = "Plain Kubernetes objects with a kustomization.yaml (kubectl apply -k)"
    options_type = ManifestsOptions

    def emit(self, build: Build, options: ManifestsOptions) -> Iterator[Artifact]:
        resources = []
        if options.create_namespace:
            namespace = {"apiVersion": "v1", "kind": "Namespace",
                         "metadata": {"name": build.spec.stack.namespace, "labels": dict(build.spec.stack.labels)}}
            resources.append("namespace.yaml")
            yield Artifact("namespace.yaml", (namespace,))
        for workload in build.workloads:
            for kind, obj in workload_objects(build, workload, options.service_type):
                path = f"{workload.key}/{kind}.yaml"
                resources.append(path)
                yield Artifact(path, (obj,))
        kustomization = {
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
            "resources": sorted(resources),
        }
        yield Artifact("kustomization.yaml", data=kustomization)


def workload_objects(build: Build, workload: Workload, service_type: str = "ClusterIP") -> Iterator[tuple[str, dict]]:
    """(file stem, object) for every object one model needs, in a fixed order."""
    spec = build.spec
    model = workload.model
    labels = workload.labels
    account = model.security.service_account
    if account.create and workload.service_account:
        yield "serviceaccount", {
            "apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": kube.metadata(spec, workload.service_account, labels, account.annotations),
            "automountServiceAccountToken": False,
        }
    for claim in workload.claims:
        claim_spec: dict[str, Any] = {"accessModes": [claim.access_mode], "resources": {"requests": {"storage": claim.size}}}
        if claim.storage_class:
            claim_spec["storageClassName"] = claim.storage_class
        yield "persistentvolumeclaim", {
            "apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": kube.metadata(spec, claim.name, labels), "spec": claim_spec,
        }
    for config_map in workload.config_maps:
        yield "configmap", {
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": kube.metadata(spec, config_map.name, labels), "data": dict(config_map.data),
        }
    yield "deployment", deployment(build, workload)
    port = workload.result.port
    yield "service", {
        "apiVersion": "v1", "kind": "Service",
        "metadata": kube.metadata(spec, workload.name, labels),
        "spec": {
            "type": service_type,
            "selector": dict(workload.selector),
            "ports": [{"name": port.name, "port": port.number, "targetPort": port.name, "protocol": "TCP",
                       **({"appProtocol": port.app_protocol} if port.app_protocol else {})}],
        },
    }
    budget = model.disruption_budget
    if budget.enabled or (budget.enabled is None and model.replicas > 1):
        yield "poddisruptionbudget", {
            "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": kube.metadata(spec, workload.name, labels),
            "spec": {"maxUnavailable": budget.max_unavailable, "selector": {"matchLabels": dict(workload.selector)}},
        }


def deployment(build: Build, workload: Workload) -> dict:
    model = workload.model
    template = kube.pod_template(workload)
    if workload.config_maps:
        digest = hashlib.sha256(json.dumps([attrs.asdict(c) for c in workload.config_maps], sort_keys=True).encode())
        template["metadata"].setdefault("annotations", {})["stackc.dev/config-hash"] = digest.hexdigest()[:16]
    strategy: dict[str, Any] = {"type": model.rollout.strategy}
    if model.rollout.strategy == "RollingUpdate":
        rolling = {k: v for k, v in (("maxSurge", model.rollout.max_surge), ("maxUnavailable", model.rollout.max_unavailable))
                   if v is not None}
        if rolling:
            strategy["rollingUpdate"] = rolling
    startup = template["spec"]["containers"][0].get("startupProbe", {})
    startup_budget = startup.get("initialDelaySeconds", 0) + startup.get("periodSeconds", 10) * startup.get("failureThreshold", 3)
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": kube.metadata(build.spec, workload.name, workload.labels),
        "spec": {
            "replicas": model.replicas,
            "selector": {"matchLabels": dict(workload.selector)},
            "strategy": strategy,
            "progressDeadlineSeconds": startup_budget + _PROGRESS_MARGIN_SECONDS,
            "template": template,
        },
    }


@hookimpl
def stackc_add_targets(registry: Registry) -> None:
    registry.add_target(ManifestsTarget())
