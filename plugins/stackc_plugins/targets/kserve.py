"""KServe: a ServingRuntime and an InferenceService per model.

The plan for this target is lowered with KServe's storage initializer in mind: weights it can
download without credentials (Hugging Face repositories, S3, GCS, PVCs, OCI images) become the
InferenceService's ``storageUri`` and the engine loads from ``/mnt/models``; anything else the
engine fetches itself, exactly once. KServe merges a runtime's container into the predictor's
field by field (ports by number), so a runtime shared by two models would leak one model's
command or ports into the other: each model gets its own runtime, stating its container, and
the InferenceService states it again with the model's arguments, env, probes and resources.
KServe owns the autoscaler of its workloads: none is emitted here; Prometheus signals become its
KEDA external metrics (``autoscalerClass: keda``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

import attrs

from stackc import hookimpl, kube
from stackc.diagnostics import Diagnostic, Severity
from stackc.plan import signals
from stackc.plan.model import Autoscaler, Component, Plan
from stackc.registry import Artifact, Registry

MODEL_DIR = "/mnt/models"
PREDICTOR_SUFFIX = "-predictor"  # KServe's Deployment and Service
KNATIVE_REVISION_SUFFIX = "-predictor-00001"  # Knative's first revision (up to 99999 keep the length)
#: the signals KServe names itself (``scaleMetric``); Prometheus signals go through KEDA
PLATFORM_SIGNALS = ("concurrency", "rps", "cpu", "memory")


@attrs.frozen
class KserveOptions:
    """``[targets.kserve]``."""

    deployment_mode: Literal["Standard", "Knative"] = attrs.field(
        default="Standard", metadata={"doc": "KServe deployment mode (`Standard`: Deployment + HPA; `Knative`)."})
    cluster_runtimes: bool = attrs.field(
        default=False, metadata={"doc": "Emit ClusterServingRuntimes (cluster-wide) instead of ServingRuntimes."})


class KserveTarget:
    name = "kserve"
    description = "KServe: a ServingRuntime and an InferenceService per model"
    options_type = KserveOptions
    #: KServe's storage initializer downloads weights here before the engine starts
    weights_path = MODEL_DIR

    def model_service(self, component: Component) -> tuple[str, int]:
        """The Service KServe (Standard mode) puts in front of a model's pods, and the pods' port."""
        return f"{component.name}{PREDICTOR_SUFFIX}", component.endpoint.port.number

    def check(self, plan: Plan, options: KserveOptions) -> Iterator[Diagnostic]:
        callers = {"router", "gateway"} & set(plan.stack.targets)
        if options.deployment_mode == "Standard" and plan.stack.network_policy is not None and callers:
            yield Diagnostic("W072", "the NetworkPolicies admit the stack's " + " and ".join(sorted(callers)) +
                             ", not KServe's ingress: the InferenceServices' own URLs are closed",
                             ("stack", "network_policy"), "add your ingress gateway's pods to allow_from to open them",
                             Severity.WARNING)
        if options.deployment_mode == "Knative" and "router" in plan.stack.targets:
            yield Diagnostic("W071", "the router finds replicas through the predictor's EndpointSlices, which Knative "
                             "mode points at its activator", ("targets", "kserve", "deployment_mode"),
                             "use deployment_mode = \"Standard\" with the router target", Severity.WARNING)
        yield from autoscaling_problems(plan, options)
        yield from kube.unscraped_signals(plan)
        knative = options.deployment_mode == "Knative"
        suffix, platform = (KNATIVE_REVISION_SUFFIX, "Knative") if knative else (PREDICTOR_SUFFIX, "KServe")
        for component in plan.components:
            if component.topology.kind == "leader_worker":
                yield Diagnostic("E073", "the kserve target can't run one replica over several nodes yet (its "
                                 "multi-node runtimes drive Ray)", ("models", component.key, "serving", "nodes"),
                                 "deploy this model with the manifests or helm target (a LeaderWorkerSet)")
            # KServe and Knative derive names from the InferenceService's; each must stay a DNS label
            if len(component.name) + len(suffix) > 63:
                yield Diagnostic("E008", f"'{component.name}{suffix}', a name {platform} derives, is longer than 63 "
                                 "characters", ("models", component.key),
                                 f"keep stack name + model name within {62 - len(suffix)} characters")
            if options.deployment_mode == "Knative" and component.rollout != type(component.rollout)():
                yield Diagnostic("W070", "KServe's Knative mode rolls out revisions itself: the rollout settings are "
                                 "not applied", ("models", component.key, "rollout"),
                                 "use deployment_mode = \"Standard\" to keep them", Severity.WARNING)

    def emit(self, plan: Plan, options: KserveOptions) -> Iterator[Artifact]:
        for component in plan.components:
            container = serving_container(component, options)
            yield Artifact(f"{component.key}/servingruntime.yaml", (serving_runtime(plan, component, container, options),))
            for kind, obj in kube.supporting_objects(plan.stack, component):
                yield Artifact(f"{component.key}/{kind}.yaml", (obj,))
            yield Artifact(f"{component.key}/inferenceservice.yaml",
                           (inference_service(plan, component, container, options),))
            if component.disruption_budget is not None:
                yield Artifact(f"{component.key}/poddisruptionbudget.yaml",
                               (kube.pod_disruption_budget(plan.stack, component),))
            if plan.stack.network_policy is not None and options.deployment_mode == "Standard":
                # Knative sends traffic through its activator and queue-proxy: a model-port policy would block it
                yield Artifact(f"{component.key}/networkpolicy.yaml", (kube.network_policy(plan.stack, component),))


def serving_container(component: Component, options: KserveOptions) -> dict[str, Any]:
    """The model's container as KServe takes it: in Knative mode one port, named as Knative requires."""
    container = kube.container(component.pod.containers[0])
    container.pop("name")
    if options.deployment_mode == "Knative":
        port = component.endpoint.port
        container["ports"] = [{"name": "http1", "containerPort": port.number, "protocol": "TCP"}]
        for key in ("startupProbe", "readinessProbe", "livenessProbe"):
            action = container.get(key, {}).get("httpGet")
            if action is not None and action.get("port") == port.name:
                action["port"] = port.number
    return container


def serving_runtime(plan: Plan, component: Component, container: dict[str, Any], options: KserveOptions) -> dict:
    defaults = {key: container[key] for key in ("image", "command", "ports") if key in container}
    labels = {**plan.stack.labels, "app.kubernetes.io/part-of": plan.stack.name,
              "app.kubernetes.io/managed-by": "stackc", "stackc.dev/engine": component.engine}
    metadata = kube.metadata(plan.stack, component.name, labels)
    spec: dict[str, Any] = {
        "supportedModelFormats": [{"name": component.engine, "autoSelect": False}],
        "containers": [{"name": "kserve-container", **defaults}],
    }
    if options.cluster_runtimes:
        metadata.pop("namespace")
        return {"apiVersion": "serving.kserve.io/v1alpha1", "kind": "ClusterServingRuntime", "metadata": metadata,
                "spec": spec}
    return {"apiVersion": "serving.kserve.io/v1alpha1", "kind": "ServingRuntime", "metadata": metadata, "spec": spec}


def inference_service(plan: Plan, component: Component, container: dict[str, Any], options: KserveOptions) -> dict:
    model_spec: dict[str, Any] = {"modelFormat": {"name": component.engine}, "runtime": component.name,
                                  **container}
    if component.weights.platform_uri:
        model_spec["storageUri"] = component.weights.platform_uri
    scaler = component.scale.autoscaler
    replicas = component.scale.replicas
    predictor: dict[str, Any] = {
        "minReplicas": scaler.min_replicas if scaler is not None else replicas,
        "maxReplicas": scaler.max_replicas if scaler is not None else max(replicas, 1),
        "model": model_spec,
        # the pods carry the model's labels, so the gateway's pools, budgets and policies select them
        "labels": dict(component.pod.labels),
    }
    service_annotations = {"serving.kserve.io/deploymentMode": options.deployment_mode}
    if scaler is not None:
        predictor.update(_autoscaling(plan, component, scaler))
        if "autoScaling" in predictor and "metrics" in predictor["autoScaling"]:
            service_annotations["serving.kserve.io/autoscalerClass"] = "keda"
    pod = kube.pod_spec(component.pod)
    pod.pop("containers")
    predictor.update(pod)
    annotations = {**component.pod.annotations, **kube.config_hash(component)}
    metrics = component.endpoint.metrics
    if metrics is not None:
        port = next(p.number for p in component.pod.containers[0].ports if p.name == metrics.port)
        annotations.update({"prometheus.kserve.io/port": str(port), "prometheus.kserve.io/path": metrics.path})
    if annotations:
        predictor["annotations"] = annotations
    rollout = component.rollout
    if options.deployment_mode == "Standard" and rollout != type(rollout)():
        strategy: dict[str, Any] = {"type": rollout.strategy}
        rolling = {k: v for k, v in (("maxSurge", rollout.max_surge), ("maxUnavailable", rollout.max_unavailable))
                   if v is not None}
        if rolling and rollout.strategy == "RollingUpdate":
            strategy["rollingUpdate"] = rolling
        predictor["deploymentStrategy"] = strategy
    accelerators = component.accelerators
    if accelerators.count and not accelerators.resource.startswith(("nvidia.com/", "amd.com/")):
        service_annotations["serving.kserve.io/gpu-resource-types"] = f'["{accelerators.resource}"]'
    return {
        "apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
        "metadata": kube.metadata(plan.stack, component.name, component.labels, service_annotations),
        "spec": {"predictor": predictor},
    }


def _autoscaling(plan: Plan, component: Component, scaler: Autoscaler) -> dict[str, Any]:
    """KServe's own fields: scaleMetric for the metrics it knows, a KEDA external Prometheus metric otherwise."""
    fields: dict[str, Any] = {}
    auto_scaling: dict[str, Any] = {}
    if scaler.signal in PLATFORM_SIGNALS:
        fields["scaleMetric"] = scaler.signal
    if scaler.target is not None and (scaler.signal in PLATFORM_SIGNALS or scaler.signal is None):
        fields["scaleTarget"] = scaler.target
    trigger = signals.trigger(plan.stack, component)
    if trigger is not None:
        value = kube.number_text(scaler.target)
        target = {"type": "Value", "value": value} if trigger.metric_type == "Value" else \
            {"type": "AverageValue", "averageValue": value}
        auto_scaling["metrics"] = [{"type": "External", "external": {
            "metric": {"backend": "prometheus", "serverAddress": scaler.prometheus, "query": trigger.query},
            "target": target}}]
    behavior = kube.scale_behavior(scaler)
    if behavior:
        auto_scaling["behavior"] = behavior
    if auto_scaling:
        fields["autoScaling"] = auto_scaling
    return fields


def autoscaling_problems(plan: Plan, options: KserveOptions) -> Iterator[Diagnostic]:
    """What KServe's autoscaling cannot do in the chosen deployment mode."""
    knative = options.deployment_mode == "Knative"
    for component in plan.components:
        scaler = component.scale.autoscaler
        if scaler is None:
            continue
        path = ("models", component.key, "autoscaling")
        if knative and scaler.signal not in (*PLATFORM_SIGNALS, None):
            yield Diagnostic("E083", f"KServe's Knative mode scales on {', '.join(PLATFORM_SIGNALS)}, not "
                             f"'{scaler.signal}'", path + ("signal",), 'use deployment_mode = "Standard" (KEDA)')
        if knative and (scaler.scale_up_seconds is not None or scaler.scale_down_seconds is not None):
            yield Diagnostic("E083", "KServe's Knative mode takes no stabilization windows", path,
                             "drop scale_up_seconds and scale_down_seconds, or use deployment_mode = \"Standard\"")
        if not knative and scaler.signal in ("concurrency", "rps"):
            yield Diagnostic("E083", f"'{scaler.signal}' is a Knative metric: KServe's Standard mode has none",
                             path + ("metric",), 'use deployment_mode = "Knative", or signal = "running"')
        if not knative and scaler.min_replicas == 0:
            yield Diagnostic("E082", "the kserve target's Standard mode keeps at least one replica: nothing in it "
                             "holds requests while a model wakes", path + ("min_replicas",),
                             'use deployment_mode = "Knative" (its activator holds them), or the manifests or helm '
                             "target with the router")
        if scaler.activation is not None:
            yield Diagnostic("E083", "KServe's autoscaling has no activation threshold", path + ("activation",))
        if scaler.signal in PLATFORM_SIGNALS and scaler.target is not None and not isinstance(scaler.target, int):
            yield Diagnostic("E083", f"KServe's scaleTarget is a whole number, got {scaler.target}", path + ("target",))


@hookimpl
def stackc_add_targets(registry: Registry) -> None:
    registry.add_target(KserveTarget())
