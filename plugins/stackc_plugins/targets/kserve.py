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
from stackc.diagnostics import Diagnostic
from stackc.model import Spec
from stackc.pipeline import workload_name
from stackc.registry import Artifact, Build, Registry
from stackc.workload import Workload
from stackc_plugins.targets.manifests import workload_objects

MODEL_DIR = "/mnt/models"
STORAGE_SCHEMES = ("hf", "s3", "gs", "pvc", "oci")
PREDICTOR_SUFFIX = "-predictor"  # KServe's Deployment and Service
KNATIVE_REVISION_SUFFIX = "-predictor-00001"  # Knative's first revision (up to 99999 keep the length)


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

    def check(self, spec: Spec, options: KserveOptions) -> Iterator[Diagnostic]:
        """KServe and Knative derive names from the InferenceService's; each must stay a DNS label."""
        knative = options.deployment_mode == "Knative"
        suffix, platform = (KNATIVE_REVISION_SUFFIX, "Knative") if knative else (PREDICTOR_SUFFIX, "KServe")
        for key in sorted(spec.models):
            name = workload_name(spec, key)
            if len(name) + len(suffix) > 63:
                yield Diagnostic("E008", f"'{name}{suffix}', a name {platform} derives, is longer than 63 characters",
                                 ("models", key), f"keep stack name + model name within {62 - len(suffix)} characters")

    def emit(self, build: Build, options: KserveOptions) -> Iterator[Artifact]:
        runtimes: dict[str, Workload] = {}
        for workload in build.workloads:
            runtimes.setdefault(workload.engine, workload)
            for kind, obj in workload_objects(build, workload):
                if kind in ("serviceaccount", "persistentvolumeclaim", "configmap"):
                    yield Artifact(f"{workload.key}/{kind}.yaml", (obj,))
            yield Artifact(f"{workload.key}/inferenceservice.yaml",
                           (inference_service(build, workload, options),))
        for engine, first in sorted(runtimes.items()):
            yield Artifact(f"runtimes/{engine}.yaml", (serving_runtime(build, engine, first, options),))


def runtime_name(build: Build, engine: str) -> str:
    return f"{build.spec.stack.name}-{engine}"


def serving_runtime(build: Build, engine: str, workload: Workload, options: KserveOptions) -> dict:
    container = kube.container(workload.result.container, workload.model, main=True)
    shared = {key: container[key] for key in ("image", "command", "ports", "startupProbe", "readinessProbe",
                                               "livenessProbe", "securityContext") if key in container}
    labels = {**build.spec.stack.labels, "app.kubernetes.io/part-of": build.spec.stack.name,
              "app.kubernetes.io/managed-by": "stackc", "stackc.dev/engine": engine}
    metadata = kube.metadata(build.spec, runtime_name(build, engine), labels)
    spec: dict[str, Any] = {
        "supportedModelFormats": [{"name": engine, "autoSelect": False}],
        "containers": [{"name": "kserve-container", **shared}],
    }
    metrics = workload.result.metrics
    if metrics is not None:
        port = next(p.number for p in workload.result.container.ports if p.name == metrics.port)
        spec["annotations"] = {"prometheus.kserve.io/port": str(port), "prometheus.kserve.io/path": metrics.path}
    if options.cluster_runtimes:
        metadata.pop("namespace")
        return {"apiVersion": "serving.kserve.io/v1alpha1", "kind": "ClusterServingRuntime", "metadata": metadata,
                "spec": spec}
    return {"apiVersion": "serving.kserve.io/v1alpha1", "kind": "ServingRuntime", "metadata": metadata, "spec": spec}


def storage_uri(workload: Workload) -> str | None:
    source = workload.source
    if source.scheme not in STORAGE_SCHEMES:
        return None
    if source.scheme == "pvc":
        return f"pvc://{source.claim}{source.location}"
    return source.location if source.scheme in ("s3", "gs") else f"{source.scheme}://{source.location}"


def inference_service(build: Build, workload: Workload, options: KserveOptions) -> dict:
    model = workload.model
    container = kube.container(workload.result.container, model, main=True)
    uri = storage_uri(workload)
    # KServe's storage initializer puts the weights at /mnt/models: the engine loads them there
    source_volumes = {"model-source"}
    args = [MODEL_DIR if uri and arg == workload.source.location else arg for arg in container.get("args", [])]
    mounts = [m for m in container.get("volumeMounts", []) if not (uri and m["name"] in source_volumes)]
    pod = kube.pod_spec(workload)
    volumes = [v for v in pod["volumes"] if not (uri and v["name"] in source_volumes)]
    model_spec: dict[str, Any] = {"modelFormat": {"name": workload.engine},
                                  "runtime": runtime_name(build, workload.engine)}
    if uri:
        model_spec["storageUri"] = uri
    if model.image:
        model_spec["image"] = container["image"]
    for key, value in (("args", args), ("env", container.get("env")), ("resources", container.get("resources")),
                       ("volumeMounts", mounts)):
        if value:
            model_spec[key] = value
    scaling = model.autoscaling
    predictor: dict[str, Any] = {
        "minReplicas": scaling.min_replicas if scaling.min_replicas is not None else model.replicas,
        "maxReplicas": scaling.max_replicas if scaling.max_replicas is not None else max(model.replicas, 1),
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
    if model.accelerators.count and not model.accelerators.resource.startswith(("nvidia.com/", "amd.com/")):
        annotations["serving.kserve.io/gpu-resource-types"] = f'["{model.accelerators.resource}"]'
    return {
        "apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
        "metadata": kube.metadata(build.spec, workload.name, workload.labels, annotations),
        "spec": {"predictor": predictor},
    }


@hookimpl
def stackc_add_targets(registry: Registry) -> None:
    registry.add_target(KserveTarget())
