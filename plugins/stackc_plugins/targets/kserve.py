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

from collections.abc import Iterator, Mapping
from typing import Any, Literal

import attrs

from stackc import hookimpl, kube
from stackc.diagnostics import Diagnostic, Severity
from stackc.plan import signals
from stackc.plan.engine import Container
from stackc.plan.model import Autoscaler, Candidate, Component, Plan
from stackc.records import frozen
from stackc.registry import Artifact, Registry
from stackc.spec.model import DNS_SUBDOMAIN, INT32_MAX, LABEL_KEY

MODEL_DIR = "/mnt/models"
PREDICTOR_SUFFIX = "-predictor"  # KServe's Deployment and Service
#: the container KServe's multi-node workers run, by the name it merges the runtime's and the predictor's by
WORKER_CONTAINER = "worker-container"
KNATIVE_REVISION_SUFFIX = "-predictor-00001"  # Knative's first revision (up to 99999 keep the length)
#: the signals KServe names itself (``scaleMetric``); Prometheus signals go through KEDA
PLATFORM_SIGNALS = ("concurrency", "rps", "cpu", "memory")


_TIMEOUT = {"minimum": 1, "maximum": INT32_MAX}


@frozen
class KserveModel:
    """``[targets.kserve.models.NAME]``: one model's InferenceService."""

    runtime: str | None = attrs.field(default=None, metadata={
        "doc": "An installed ServingRuntime or ClusterServingRuntime to use, by name, instead of the one stackc "
               "emits. stackc still states the model's container, so the engine serves the names the plan routes.",
        "form": DNS_SUBDOMAIN})
    model_format: str | None = attrs.field(default=None, metadata={
        "doc": "The `modelFormat` name the installed runtime lists in `supportedModelFormats` (default: the engine's "
               "name)."})
    timeout: int | None = attrs.field(default=None, metadata={
        "doc": "Seconds a request may take (the predictor's `timeout`; default: `[targets.kserve] timeout`).",
        **_TIMEOUT})
    annotations: Mapping[str, str] = attrs.field(factory=dict, metadata={
        "doc": "Annotations of the InferenceService, over `[targets.kserve] annotations`.", "keys": LABEL_KEY})


@frozen
class KserveOptions:
    """``[targets.kserve]``."""

    deployment_mode: Literal["Standard", "Knative"] = attrs.field(
        default="Standard", metadata={"doc": "KServe deployment mode (`Standard`: Deployment + HPA; `Knative`)."})
    cluster_runtimes: bool = attrs.field(
        default=False, metadata={"doc": "Emit ClusterServingRuntimes (cluster-wide) instead of ServingRuntimes."})
    timeout: int | None = attrs.field(default=None, metadata={
        "doc": "Seconds a request may take, for every InferenceService (the predictor's `timeout`; KServe's default "
               "when unset).", **_TIMEOUT})
    annotations: Mapping[str, str] = attrs.field(factory=dict, metadata={
        "doc": "Annotations of every InferenceService (stackc's own, such as the deployment mode, win).",
        "keys": LABEL_KEY})
    models: Mapping[str, KserveModel] = attrs.field(factory=dict, metadata={
        "doc": "Per model (by its key in `[models]`): an installed runtime, a timeout, annotations."})


class KserveTarget:
    name = "kserve"
    description = "KServe: a ServingRuntime and an InferenceService per model"
    options_type = KserveOptions
    #: KServe deploys the model servers, behind its predictor Services (``model_service``)
    serves_models = True
    #: KServe's storage initializer downloads weights here before the engine starts
    weights_path = MODEL_DIR
    #: a multi-node predictor is a Ray cluster: KServe gives each worker HEAD_SVC, its head's headless Service
    ray_head = "$(HEAD_SVC)"

    def model_service(self, component: Component) -> tuple[str, int]:
        """The Service KServe (Standard mode) puts in front of a model's pods, and the pods' port."""
        return f"{component.name}{PREDICTOR_SUFFIX}", component.endpoint.port.number

    def check(self, plan: Plan, options: KserveOptions) -> Iterator[Diagnostic]:
        yield from kube.unknown_models(plan, options.models, "kserve", "E073")
        yield from kube.file_clashes(plan, self.name, ("kustomization.yaml", "objects.yaml"))
        yield from kube.engines_service_unexpressed(plan, "kserve", "the InferenceServices' pods")
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
        yield from kube.target_annotation_problems(plan, "kserve", options.annotations, {
            key: model.annotations for key, model in options.models.items()}, "InferenceService")
        knative = options.deployment_mode == "Knative"
        suffix, platform = (KNATIVE_REVISION_SUFFIX, "Knative") if knative else (PREDICTOR_SUFFIX, "KServe")
        for component in plan.components:
            if component.disaggregation is not None and component.disaggregation.role == "decode":
                yield Diagnostic("E105", "an InferenceService runs one predictor: it can't split a model into "
                                 "prefill and decode roles", ("models", component.key, "disaggregation"),
                                 "deploy it as an LLMInferenceService with the llmisvc target (KServe's llm-d "
                                 "API: the prefill role is its prefill workload), or with the manifests or helm "
                                 "target")
            if component.topology.kind == "ray_cluster":
                yield Diagnostic("E117", "the kserve target cannot deploy a Ray cluster: KServe runs its own pods "
                                 "and Services, where KubeRay's RayService needs its head and worker groups",
                                 ("models", component.key, "engine"),
                                 "deploy this model with the manifests or helm target (a RayService), or use "
                                 'engine = "vllm" under kserve')
                continue
            if component.topology.kind == "leader_worker":
                yield from multi_node_problems(component, options)
            # KServe and Knative derive names from the InferenceService's; each must stay a DNS label
            if len(component.name) + len(suffix) > 63:
                yield Diagnostic("E008", f"'{component.name}{suffix}', a name {platform} derives, is longer than 63 "
                                 "characters", ("models", component.key),
                                 f"keep stack name + model name within {62 - len(suffix)} characters")
            field = kube.unapplied_service_ports(component)
            if field is not None:
                yield Diagnostic("W073", "KServe makes the predictor Service itself, with the serving port only: "
                                 "the Service port and the extra Service ports are not applied",
                                 ("models", component.key, field),
                                 "reach extra ports through the pods, or use the manifests target",
                                 Severity.WARNING)
            if knative and len(component.pod.containers) > 1:
                yield Diagnostic("W074", "Knative runs a second container only with its multi-container feature on, "
                                 "and routes to the serving one only: plain sidecars may be refused",
                                 ("models", component.key, "sidecars"), "keep the sidecars native (native = true)",
                                 Severity.WARNING)
            if knative and component.pod.init_containers:
                first = component.pod.init_containers[0]
                yield Diagnostic("W075", f"Knative accepts init containers ({', '.join(c.name for c in component.pod.init_containers)}) "
                                 "only with its kubernetes.podspec-init-containers feature flag on: without it the "
                                 "revision is refused", ("models", component.key, *_init_container_cause(first)),
                                 "turn the flag on in Knative's config-features ConfigMap, or use "
                                 'deployment_mode = "Standard"', Severity.WARNING)
            metrics = component.endpoint.metrics
            if knative and metrics is not None and metrics.port != component.endpoint.port.name:
                yield Diagnostic("W076", f"Knative opens one port, the serving one: the engine's metrics port "
                                 f"'{metrics.port}' is not declared, so no monitor can scrape it (no metrics, "
                                 "alerts or autoscaling on them)", ("targets", "kserve", "deployment_mode"),
                                 'use deployment_mode = "Standard", or the manifests or helm target, for this model',
                                 Severity.WARNING)
            if knative and component.candidate is not None:
                yield from _knative_candidate_problems(plan, component.key, component.candidate)
            if options.deployment_mode == "Knative" and component.rollout != type(component.rollout)():
                yield Diagnostic("W070", "KServe's Knative mode rolls out revisions itself: the rollout settings are "
                                 "not applied", ("models", component.key, "rollout"),
                                 "use deployment_mode = \"Standard\" to keep them", Severity.WARNING)

    def emit(self, plan: Plan, options: KserveOptions) -> Iterator[Artifact]:
        return kube.kustomized(self._objects(plan, options))

    def _objects(self, plan: Plan, options: KserveOptions) -> Iterator[Artifact]:
        knative = options.deployment_mode == "Knative"
        for component in plan.components:
            if knative and component.candidate is not None:
                continue  # Knative: the candidate is the InferenceService's new revision (``inference_service``)
            folder = kube.folder(component)
            candidate = kube.candidate(plan.components, component.key) if knative else None
            # the spec KServe rolls out: the candidate's, as the next revision of the model's own service
            served = new_revision(component, candidate) if candidate is not None else component
            container = serving_container(served, options)
            if model_options(component, options).runtime is None:
                yield Artifact(f"{folder}/servingruntime.yaml", (serving_runtime(plan, served, container, options),))
            for kind, obj in kube.supporting_objects(plan.stack, component):
                yield Artifact(f"{folder}/{kind}.yaml", (obj,))
            yield Artifact(f"{folder}/inferenceservice.yaml",
                           (inference_service(plan, served, container, options, candidate),))
            if component.disruption_budget is not None:
                yield Artifact(f"{folder}/poddisruptionbudget.yaml",
                               (kube.pod_disruption_budget(plan.stack, component),))
            if plan.stack.network_policy is not None and not knative:
                # Knative sends traffic through its activator and queue-proxy: a model-port policy would block it
                yield Artifact(f"{folder}/networkpolicy.yaml", (kube.network_policy(plan.stack, component),))
        for stem, obj in kube.stack_objects(plan.stack, engines_service=False):
            yield Artifact(f"objects/{stem}.yaml", (obj,))


def _knative_candidate_problems(plan: Plan, key: str, version: Candidate) -> Iterator[Diagnostic]:
    """Knative rolls a candidate out as the InferenceService's next revision: a percentage split only, no
    Service of its own, the stable version being whatever ran before."""
    where = ("models", key, "candidate")
    unapplied = [name for name, on in (("header", version.header), ("mirror", version.mirror)) if on]
    if unapplied:
        yield Diagnostic("W077", "KServe's Knative mode splits an InferenceService's requests between its "
                         f"revisions by percentage only: the candidate's {' and '.join(unapplied)} "
                         f"{'are' if len(unapplied) > 1 else 'is'} not applied", where,
                         "testers reach the new revision at its own URL with the annotation "
                         "serving.kserve.io/enable-tag-routing = \"true\" (latest-NAME)", Severity.WARNING)
    routers = sorted({"router", "gateway"} & set(plan.stack.targets))
    if routers:
        yield Diagnostic("E075", "KServe's Knative mode makes the candidate the InferenceService's new "
                         "revision, with no Service of its own: the stack's " + " and ".join(routers) +
                         " would send the candidate's requests to a Service that does not exist", where,
                         'use deployment_mode = "Standard" (the candidate is an InferenceService of its own, '
                         f"which the {' and '.join(routers)} reach), or drop the candidate's routing targets")
    yield Diagnostic("W078", "KServe's Knative mode gives canaryTrafficPercent to the InferenceService's "
                     "new spec and the rest to its last ready revision: the candidate's settings become "
                     "the spec, the stable version is whatever ran before", where,
                     "deploy the stable version first; promote with traffic = 100, then fold the "
                     "candidate into the model", Severity.WARNING)


def _init_container_cause(container: Container) -> tuple[str, ...]:
    """The spec key that made an init container: the spec's own, stackc's downloads, else the engine's."""
    if container.spec_path:
        return container.spec_path
    if container.name == "weights-download":
        return ("model",)
    if container.name.startswith("lora-download-"):
        return ("serving", "lora_adapters")
    return ("engine",)


LWS_HINT = ("deploy this model with the llmisvc target (KServe's LLMInferenceService runs it as a LeaderWorkerSet, "
            "without Ray), or with the manifests or helm target")


def multi_node_problems(component: Component, options: KserveOptions) -> Iterator[Diagnostic]:
    """What KServe's multi-node predictors (a Ray cluster: a head Deployment, a worker Deployment) can't do."""
    path = ("models", component.key)
    if not component.topology.ray_group:
        yield Diagnostic("E074", f"engine '{component.engine}' can't run over the Ray cluster KServe's multi-node "
                         "predictors form", path + ("serving", "nodes"), LWS_HINT)
        return
    uri = component.weights.platform_uri or ""
    if not uri.startswith(("pvc://", "oci://")):
        yield Diagnostic("E074", "KServe's multi-node predictors load weights only from a claim or an OCI image "
                         "(storageUri pvc:// or oci://), which every node mounts", path + ("model",),
                         "put the weights on a ReadWriteMany claim: model = \"pvc://CLAIM/PATH\" (without "
                         "credentials: KServe mounts it), or " + LWS_HINT)
    if component.scale.autoscaler is not None or component.scale.replicas != 1:
        yield Diagnostic("E074", "KServe runs one Ray cluster per multi-node InferenceService: one replica, no "
                         "autoscaler (autoscalerClass none)", path + (
                             "autoscaling" if component.scale.autoscaler is not None else "replicas",),
                         "set replicas = 1 and no autoscaling, or " + LWS_HINT)
    if options.deployment_mode != "Standard":
        yield Diagnostic("E074", "KServe runs multi-node predictors in Standard mode only",
                         ("targets", "kserve", "deployment_mode"), 'use deployment_mode = "Standard"')
    if model_options(component, options).runtime is not None:
        yield Diagnostic("E074", "a multi-node model needs stackc's own runtime: it labels the head and the "
                         "workers, so traffic reaches the head only", ("targets", "kserve", "models", component.key,
                                                                       "runtime"), "drop runtime for this model")
    if len(component.pod.containers) > 1:
        yield Diagnostic("E074", "KServe runs one container in a multi-node predictor's workers: plain sidecars "
                         "can't follow them", path + ("sidecars",), "make the sidecars native (native = true)")


def model_options(component: Component, options: KserveOptions) -> KserveModel:
    return options.models.get(component.key) or KserveModel()


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
    labels = {**kube.stack_labels(plan.stack), "stackc.dev/engine": component.engine}
    metadata = kube.metadata(plan.stack, component.name, labels)
    # plain (not native) sidecars: KServe keeps a runtime's containers after kserve-container
    sidecars = [kube.container(c) for c in component.pod.containers[1:]]
    spec: dict[str, Any] = {
        "supportedModelFormats": [{"name": component.engine, "autoSelect": False}],
        "containers": [{"name": "kserve-container", **defaults}, *sidecars],
    }
    if component.worker_pod is not None:
        # the head's and the workers' own labels (their role) go on the runtime: KServe gives the predictor's
        # labels to both
        worker = kube.container(component.worker_pod.containers[0])
        spec["labels"] = own_labels(component.pod.labels, component.worker_pod.labels)
        spec["workerSpec"] = {
            "containers": [{"name": WORKER_CONTAINER, **{key: worker[key] for key in ("image", "command")}}],
            "labels": own_labels(component.worker_pod.labels, component.pod.labels),
            **parallel_sizes(component),
        }
    if options.cluster_runtimes:
        metadata.pop("namespace")
        return {"apiVersion": "serving.kserve.io/v1alpha1", "kind": "ClusterServingRuntime", "metadata": metadata,
                "spec": spec}
    return {"apiVersion": "serving.kserve.io/v1alpha1", "kind": "ServingRuntime", "metadata": metadata, "spec": spec}


def new_revision(stable: Component, candidate: Component) -> Component:
    """The model's InferenceService as Knative rolls the candidate out: the candidate's containers and weights in
    the stable version's service (its name, labels, scale, account, claims and volumes, a new weights volume
    excepted), so the revision it replaces keeps all it uses."""
    weights = candidate.weights.mount.volume if candidate.weights.mount is not None else None
    volumes = {volume.name: volume for volume in stable.pod.volumes}
    volumes.update({v.name: v for v in candidate.pod.volumes if v.name == weights or v.name not in volumes})
    pod = attrs.evolve(stable.pod, containers=candidate.pod.containers, init_containers=candidate.pod.init_containers,
                       volumes=tuple(volumes.values()))
    return attrs.evolve(stable, pod=pod, weights=candidate.weights, endpoint=attrs.evolve(
        stable.endpoint, metrics=candidate.endpoint.metrics))


def inference_service(plan: Plan, component: Component, container: dict[str, Any], options: KserveOptions,
                      candidate: Component | None = None) -> dict:
    """The model's InferenceService; in Knative mode with a ``candidate``, ``component`` is its ``new_revision``
    with ``canaryTrafficPercent``: Knative keeps the last ready revision (the stable version) for the rest."""
    own = model_options(component, options)
    model_spec: dict[str, Any] = {"modelFormat": {"name": own.model_format or component.engine},
                                  "runtime": own.runtime or component.name, **container}
    if component.weights.platform_uri:
        model_spec["storageUri"] = component.weights.platform_uri
    scaler = component.scale.autoscaler
    replicas = component.scale.replicas
    worker_pod = component.worker_pod
    predictor: dict[str, Any] = {
        "minReplicas": scaler.min_replicas if scaler is not None else replicas,
        "maxReplicas": scaler.max_replicas if scaler is not None else max(replicas, 1),
        "model": model_spec,
        # the pods carry the model's labels, so the gateway's pools, budgets and policies select them
        "labels": dict(component.pod.labels) if worker_pod is None else {
            key: value for key, value in component.pod.labels.items() if worker_pod.labels.get(key) == value},
    }
    timeout = own.timeout or options.timeout
    if timeout is not None:
        predictor["timeout"] = timeout
    service_annotations = {**options.annotations, **own.annotations,
                           "serving.kserve.io/deploymentMode": options.deployment_mode}
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
        predictor["deploymentStrategy"] = kube.deployment_strategy(component)
    if worker_pod is not None:
        worker = kube.pod_spec(worker_pod)
        worker["containers"] = [{**kube.container(worker_pod.containers[0]), "name": WORKER_CONTAINER}]
        predictor["workerSpec"] = {**parallel_sizes(component), **worker}
        service_annotations["serving.kserve.io/autoscalerClass"] = "none"  # the only class KServe allows it
    accelerators = component.accelerators
    if accelerators.count and not accelerators.resource.startswith(("nvidia.com/", "amd.com/")):
        service_annotations["serving.kserve.io/gpu-resource-types"] = f'["{accelerators.resource}"]'
    if candidate is not None and candidate.candidate is not None:
        predictor["canaryTrafficPercent"] = candidate.candidate.traffic
    return {
        "apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
        "metadata": kube.metadata(plan.stack, component.name, component.labels, service_annotations),
        "spec": {"predictor": predictor},
    }


def own_labels(labels: Mapping[str, str], others: Mapping[str, str]) -> dict[str, str]:
    """The labels one member of a group has and the other hasn't (its role)."""
    return {key: value for key, value in labels.items() if others.get(key) != value}


def parallel_sizes(component: Component) -> dict[str, int]:
    """KServe's split of a multi-node model: it runs tensor × pipeline GPUs over pods of the worker's GPU count."""
    return {"tensorParallelSize": component.topology.tensor_parallel,
            "pipelineParallelSize": component.topology.pipeline_parallel}


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
        if scaler.signal in (*PLATFORM_SIGNALS, None) and scaler.target is not None and not isinstance(scaler.target, int):
            yield Diagnostic("E083", f"KServe's scaleTarget is a whole number, got {scaler.target}", path + ("target",))


@hookimpl
def stackc_add_targets(registry: Registry) -> None:
    registry.add_target(KserveTarget())
