"""KServe: a ServingRuntime per engine in use and an InferenceService per model.

The runtime holds what models of one engine share (image, command, ports, probes); each
InferenceService names its runtime explicitly and carries the model's own arguments, env,
resources and storage. KServe owns the autoscaler of its workloads: none is emitted here.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

import attrs

from stackc import hookimpl, kube
from stackc.plan import Component, Plan
from stackc.registry import Artifact, Registry

MODEL_DIR = "/mnt/models"
STORAGE_SCHEMES = ("hf", "s3", "gs", "pvc", "oci")


@attrs.frozen
class KserveOptions:
    """``[targets.kserve]``."""

    deployment_mode: Literal["Standard", "Knative"] = attrs.field(
        default="Standard", metadata={"doc": "KServe deployment mode (`Standard`: Deployment + HPA; `Knative`)."})
    cluster_runtimes: bool = attrs.field(
        default=False, metadata={"doc": "Emit ClusterServingRuntimes (cluster-wide) instead of ServingRuntimes."})


class KserveTarget:
    name = "kserve"
    description = "KServe ServingRuntimes (one per engine) and InferenceServices (one per model)"
    options_type = KserveOptions

    def emit(self, plan: Plan, options: KserveOptions) -> Iterator[Artifact]:
        runtimes: dict[str, Component] = {}
        for component in plan.components:
            runtimes.setdefault(component.engine, component)
            for kind, obj in kube.supporting_objects(plan.stack, component):
                yield Artifact(f"{component.key}/{kind}.yaml", (obj,))
            yield Artifact(f"{component.key}/inferenceservice.yaml",
                           (inference_service(plan, component, options),))
        for engine, first in sorted(runtimes.items()):
            yield Artifact(f"runtimes/{engine}.yaml", (serving_runtime(plan, engine, first, options),))


def runtime_name(plan: Plan, engine: str) -> str:
    return f"{plan.stack.name}-{engine}"


def serving_runtime(plan: Plan, engine: str, component: Component, options: KserveOptions) -> dict:
    container = kube.container(component.pod.containers[0])
    shared = {key: container[key] for key in ("image", "command", "ports", "startupProbe", "readinessProbe",
                                               "livenessProbe", "securityContext") if key in container}
    labels = {**plan.stack.labels, "app.kubernetes.io/part-of": plan.stack.name,
              "app.kubernetes.io/managed-by": "stackc", "stackc.dev/engine": engine}
    metadata = kube.metadata(plan.stack, runtime_name(plan, engine), labels)
    spec: dict[str, Any] = {
        "supportedModelFormats": [{"name": engine, "autoSelect": False}],
        "containers": [{"name": "kserve-container", **shared}],
    }
    metrics = component.endpoint.metrics
    if metrics is not None:
        port = next(p.number for p in component.pod.containers[0].ports if p.name == metrics.port)
        spec["annotations"] = {"prometheus.kserve.io/port": str(port), "prometheus.kserve.io/path": metrics.path}
    if options.cluster_runtimes:
        metadata.pop("namespace")
        return {"apiVersion": "serving.kserve.io/v1alpha1", "kind": "ClusterServingRuntime", "metadata": metadata,
                "spec": spec}
    return {"apiVersion": "serving.kserve.io/v1alpha1", "kind": "ServingRuntime", "metadata": metadata, "spec": spec}


def storage_uri(component: Component) -> str | None:
    source = component.weights.source
    if source.scheme not in STORAGE_SCHEMES:
        return None
    if source.scheme == "pvc":
        return f"pvc://{source.claim}{source.location}"
    return source.location if source.scheme in ("s3", "gs") else f"{source.scheme}://{source.location}"


def inference_service(plan: Plan, component: Component, options: KserveOptions) -> dict:
    container = kube.container(component.pod.containers[0])
    uri = storage_uri(component)
    # KServe's storage initializer puts the weights at /mnt/models: the engine loads them there
    source_volumes = {"model-source"}
    args = [MODEL_DIR if uri and arg == component.weights.source.location else arg for arg in container.get("args", [])]
    mounts = [m for m in container.get("volumeMounts", []) if not (uri and m["name"] in source_volumes)]
    pod = kube.pod_spec(component.pod)
    volumes = [v for v in pod["volumes"] if not (uri and v["name"] in source_volumes)]
    model_spec: dict[str, Any] = {"modelFormat": {"name": component.engine},
                                  "runtime": runtime_name(plan, component.engine)}
    if uri:
        model_spec["storageUri"] = uri
    for key, value in (("args", args), ("env", container.get("env")), ("resources", container.get("resources")),
                       ("volumeMounts", mounts)):
        if value:
            model_spec[key] = value
    scaling = component.scale.autoscaling
    replicas = component.scale.replicas
    predictor: dict[str, Any] = {
        "minReplicas": scaling.min_replicas if scaling.min_replicas is not None else replicas,
        "maxReplicas": scaling.max_replicas if scaling.max_replicas is not None else max(replicas, 1),
        "model": model_spec,
    }
    if scaling.metric:
        predictor["scaleMetric"] = scaling.metric
    if scaling.target:
        predictor["scaleTarget"] = scaling.target
    for key in ("serviceAccountName", "nodeSelector", "tolerations", "affinity", "imagePullSecrets",
                "priorityClassName", "schedulerName", "securityContext", "initContainers"):
        if key in pod:
            predictor[key] = pod[key]
    if volumes:
        predictor["volumes"] = volumes
    annotations = {"serving.kserve.io/deploymentMode": options.deployment_mode}
    accelerators = component.accelerators
    if accelerators.count and not accelerators.resource.startswith(("nvidia.com/", "amd.com/")):
        annotations["serving.kserve.io/gpu-resource-types"] = f'["{accelerators.resource}"]'
    return {
        "apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
        "metadata": kube.metadata(plan.stack, component.name, component.labels, annotations),
        "spec": {"predictor": predictor},
    }


@hookimpl
def stackc_add_targets(registry: Registry) -> None:
    registry.add_target(KserveTarget())
