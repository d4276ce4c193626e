"""KServe's LLM API: one LLMInferenceService (``serving.kserve.io/v1alpha2``) per model.

The plan is lowered as for KServe's storage initializer: weights it can fetch become ``model.uri``
and the engine loads them from ``/mnt/models``; anything else the engine fetches itself and the
initializer is turned off. The controller builds the pods from ``template`` (the engine's container,
named ``main`` as the controller merges it), a LeaderWorkerSet from ``worker`` for a model over
several nodes, a second Deployment from ``prefill`` for a disaggregated model, and, when the router
is managed, llm-d's scheduler, an InferencePool and an HTTPRoute. Its workload Service fronts the
pods on port 8000, where routers and gateways of the stack reach them.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Literal

import attrs

from stackc import hookimpl, kube
from stackc.diagnostics import Diagnostic, Severity
from stackc.plan.model import DISAGGREGATION_ROLE_LABEL, Component, Plan, Pod
from stackc.records import frozen
from stackc.registry import Artifact, Registry
from stackc.spec.model import DNS_LABEL, DNS_SUBDOMAIN, LABEL_KEY

#: where KServe's storage initializer puts the weights
MODEL_DIR = "/mnt/models"
#: the container the controller merges its defaults into, by name
MAIN_CONTAINER = "main"
#: the controller's workload Service and InferencePool reach the pods on this port
WORKLOAD_PORT = 8000
WORKLOAD_SERVICE_SUFFIX = "-kserve-workload-svc"
#: the longest suffix the controller adds to the service's name (its prefill Deployment's autoscaler)
LONGEST_SUFFIX = "-kserve-prefill-keda"
#: targets of the stack that route to the models themselves
STACK_ROUTERS = ("gateway", "router")
#: the labels KServe selects a service's pods by; it copies ``spec.labels`` over its own pod labels, so a
#: value of ours would part the pods from their Deployment's selector
KSERVE_LABEL_KEYS = ("app.kubernetes.io/name", "app.kubernetes.io/part-of", "app.kubernetes.io/component",
                     "kserve.io/component", DISAGGREGATION_ROLE_LABEL)

#: LeaderWorkerSet's label of a pod's index in its group: the leader's is "0"
LWS_INDEX_LABEL = "leaderworkerset.sigs.k8s.io/worker-index"

_PRESET = {"form": DNS_SUBDOMAIN}


@frozen
class LlmisvcModel:
    """``[targets.llmisvc.models.NAME]``: one model's LLMInferenceService."""

    base_refs: tuple[str, ...] = attrs.field(default=(), metadata={
        "doc": "More LLMInferenceServiceConfig presets for this model, merged after `[targets.llmisvc] base_refs` "
               "(later ones win; the service's own spec wins last).", **_PRESET})
    annotations: Mapping[str, str] = attrs.field(factory=dict, metadata={
        "doc": "Annotations of the LLMInferenceService, over `[targets.llmisvc] annotations`.", "keys": LABEL_KEY})


@frozen
class LlmisvcOptions:
    """``[targets.llmisvc]``."""

    base_refs: tuple[str, ...] = attrs.field(default=(), metadata={
        "doc": "LLMInferenceServiceConfig presets every service merges (`baseRefs`), such as KServe's "
               "`kserve-config-llm-template`.", **_PRESET})
    router: Literal["auto", "managed", "none"] = attrs.field(default="auto", metadata={
        "doc": "`managed`: KServe runs llm-d's scheduler, an InferencePool and an HTTPRoute per model; `none`: "
               "the stack's router target routes to KServe's workload Service; `auto`: `none` when the stack has the "
               "router target, else `managed`."})
    gateway: str | None = attrs.field(default=None, metadata={
        "doc": "The Gateway a managed route attaches to (default: KServe's own).", "form": DNS_SUBDOMAIN})
    gateway_namespace: str | None = attrs.field(default=None, metadata={
        "doc": "Namespace of that Gateway (default: the stack's).", "form": DNS_LABEL})
    annotations: Mapping[str, str] = attrs.field(factory=dict, metadata={
        "doc": "Annotations of every LLMInferenceService.", "keys": LABEL_KEY})
    models: Mapping[str, LlmisvcModel] = attrs.field(factory=dict, metadata={
        "doc": "Per model (by its key in `[models]`): more presets, annotations."})


class LlmisvcTarget:
    name = "llmisvc"
    description = "KServe LLMInferenceService: one per model, with llm-d's scheduler, workers and prefill"
    options_type = LlmisvcOptions
    #: KServe deploys the model servers behind its workload Service (``model_service``)
    serves_models = True
    #: KServe's storage initializer downloads ``model.uri`` here before the engine starts
    weights_path = MODEL_DIR

    def model_pods(self, component: Component) -> dict[str, str]:
        """KServe labels the pods itself (``kserve_selector``): monitors select them by those labels, and a
        multi-node group's leaders (LeaderWorkerSet's index 0), which serve, by theirs."""
        leaders = {LWS_INDEX_LABEL: "0"} if component.topology.kind == "leader_worker" else {}
        return {**kserve_selector(component), **leaders}

    def model_service(self, component: Component) -> tuple[str, int]:
        """The workload Service KServe puts in front of a model's (decode) pods, and the pods' port."""
        return f"{service_name(component)}{WORKLOAD_SERVICE_SUFFIX}", component.endpoint.port.number

    def check(self, plan: Plan, options: LlmisvcOptions) -> Iterator[Diagnostic]:
        yield from kube.unknown_models(plan, options.models, "llmisvc", "E160")
        yield from kube.file_clashes(plan, self.name, ("kustomization.yaml", "objects.yaml"),
                                     lambda component: f"{component.key}.yaml")
        yield from kube.engines_service_unexpressed(plan, "llmisvc", "the LLMInferenceServices' pods")
        if options.gateway_namespace is not None and options.gateway is None:
            yield Diagnostic("W194", "gateway_namespace without gateway: the managed routes attach to KServe's own "
                             "Gateway, in no namespace of the spec's", ("targets", "llmisvc", "gateway_namespace"),
                             "set gateway too, or drop gateway_namespace", Severity.WARNING)
        yield from kube.target_annotation_problems(plan, "llmisvc", options.annotations, {
            key: model.annotations for key, model in options.models.items()}, "LLMInferenceService")
        routers = sorted(set(STACK_ROUTERS) & set(plan.stack.targets))
        # the stack's routers reach the models through KServe's Service only when no other target deploys them
        through_kserve = any(reached_through_kserve(component) for component in plan.components)
        if "gateway" in routers and through_kserve:
            yield Diagnostic("E164", "the gateway target's InferencePools select pods by stackc's labels, which KServe "
                             "replaces on an LLMInferenceService's pods with its own", ("stack", "targets"),
                             'drop the gateway target: [targets.llmisvc] router = "managed" has KServe make the pool '
                             "and route, on the Gateway named in [targets.llmisvc] gateway")
        managed = router_mode(plan, options) == "managed"
        closed = any(caller.port == "serving" for caller in plan.stack.callers)
        if plan.stack.network_policy is not None and managed and closed:
            yield Diagnostic("W160", "the NetworkPolicies admit the stack's own callers, not the scheduler and "
                             "gateway KServe manages: the managed route is closed", ("stack", "network_policy"),
                             "add their pods to allow_from, or set [targets.llmisvc] router = \"none\"",
                             Severity.WARNING)
        for component in plan.components:
            path = ("models", component.key)
            if component.topology.kind == "ray_cluster":
                yield Diagnostic("E161", "an LLMInferenceService runs vLLM pods (and LeaderWorkerSets), not a Ray "
                                 "cluster", path + ("engine",), 'use engine = "vllm" with serving.nodes for several '
                                 "nodes, or the manifests or helm target (a RayService)")
                continue
            if component.endpoint.port.number != WORKLOAD_PORT:
                yield Diagnostic("E162", f"KServe's workload Service and InferencePool reach the pods on port "
                                 f"{WORKLOAD_PORT}, the engine listens on {component.endpoint.port.number}",
                                 path + ("port",), f"set port = {WORKLOAD_PORT}")
            roles = component.disaggregation
            if roles is not None and roles.role == "decode":
                if roles.protocol != "kv_transfer_params":
                    yield Diagnostic("E163", f"KServe's prefill/decode runs llm-d's sidecar, which drives vLLM's NIXL "
                                     f"connector; model '{component.key}' joins its roles by '{roles.protocol}'",
                                     path + ("disaggregation", "connector"),
                                     'use engine = "vllm" with connector = "nixl"')
                if not managed and (reached_through_kserve(component) or not routers):
                    others = " and ".join(routers)
                    yield Diagnostic("E163", "a disaggregated LLMInferenceService is reached through the scheduler "
                                     "KServe manages, which picks both roles' pods"
                                     + (f"; the stack's {others} can't" if others else ""), path + ("disaggregation",),
                                     'set [targets.llmisvc] router = "managed"'
                                     + (f" and drop the stack's {others} target" if others else ""))
            topology = component.topology
            if topology.kind == "leader_worker" and topology.size != topology.pipeline_parallel:
                where = ("disaggregation", roles.role) if roles is not None else ("serving",)
                yield Diagnostic("E166", f"KServe sizes a multi-node group by its pipeline parallelism (one node per "
                                 f"stage): {topology.size} nodes, pipeline_parallel = {topology.pipeline_parallel}",
                                 path + where + ("nodes",), "set pipeline_parallel to the number of nodes, "
                                 "tensor_parallel to the accelerators of one node")
            if len(service_name(component)) + len(LONGEST_SUFFIX) > 63:
                yield Diagnostic("E008", f"'{service_name(component)}{LONGEST_SUFFIX}', a name KServe derives, is "
                                 "longer than 63 characters", path,
                                 f"keep stack name + model name within {63 - len(LONGEST_SUFFIX)} characters")
            field = kube.unapplied_service_ports(component)
            if field is not None:
                yield Diagnostic("W161", "KServe makes the workload Service itself, with the serving port only: the "
                                 "Service port and the extra Service ports are not applied", path + (field,),
                                 "reach extra ports through the pods, or use the manifests target", Severity.WARNING)
            version = component.candidate
            if managed and version is not None and (version.traffic or version.header or version.mirror):
                yield Diagnostic("W164", "the route KServe manages for each LLMInferenceService serves it alone: the "
                                 "candidate is a service of its own, and gets no share of the model's requests",
                                 path + ("candidate",), 'set [targets.llmisvc] router = "none" and route with the '
                                 "stack's router or gateway target", Severity.WARNING)
            if component.rollout != type(component.rollout)():
                yield Diagnostic("W162", "KServe rolls its workloads out itself: the rollout settings are not "
                                 "applied", path + ("rollout",), "use the manifests or helm target to keep them",
                                 Severity.WARNING)
            scaler = component.scale.autoscaler
            where = path + (("disaggregation", roles.role) if roles is not None else ()) + ("autoscaling",)
            if scaler is not None and scaler.min_replicas == 0:
                yield Diagnostic("E165", "KServe's Variant Autoscaler keeps at least one replica of an "
                                 "LLMInferenceService (KEDA's idle count is at least 1)", where + ("min_replicas",),
                                 "set min_replicas = 1, or use the manifests or helm target with the router")
            if scaler is not None and (scaler.signal is not None or scaler.activation is not None):
                yield Diagnostic("W163", "KServe scales an LLMInferenceService with its Workload Variant Autoscaler, "
                                 "on the replicas it computes from the servers' saturation: the signal, target and "
                                 "activation are not applied", where + ("signal" if scaler.signal else "activation",),
                                 "keep min_replicas and max_replicas only", Severity.WARNING)

    def emit(self, plan: Plan, options: LlmisvcOptions) -> Iterator[Artifact]:
        return kube.kustomized(self._objects(plan, options))

    def _objects(self, plan: Plan, options: LlmisvcOptions) -> Iterator[Artifact]:
        prefills = {c.key: c for c in plan.components if c.disaggregation and c.disaggregation.role == "prefill"}
        for component in plan.components:
            component = attrs.evolve(component, selector=kserve_selector(component))
            for kind, obj in kube.supporting_objects(plan.stack, component):
                yield Artifact(f"{kube.folder(component)}/{kind}.yaml", (obj,))
            if component.disruption_budget is not None:
                yield Artifact(f"{kube.folder(component)}/poddisruptionbudget.yaml",
                               (kube.pod_disruption_budget(plan.stack, component),))
            if plan.stack.network_policy is not None:
                yield Artifact(f"{kube.folder(component)}/networkpolicy.yaml",
                               (kube.network_policy(plan.stack, component),))
        for component in plan.components:
            if component.disaggregation is None or component.disaggregation.role == "decode":
                # a candidate version is an LLMInferenceService of its own (KEY-candidate)
                yield Artifact(f"{kube.folder(component) if component.candidate else component.key}"
                               "/llminferenceservice.yaml",
                               (inference_service(plan, component, prefills.get(component.key), options),))
        for stem, obj in kube.stack_objects(plan.stack, engines_service=False):
            yield Artifact(f"objects/{stem}.yaml", (obj,))


def kserve_selector(component: Component) -> dict[str, str]:
    """The labels KServe gives all pods of a service (a disaggregated model's: of the component's role)."""
    selector = {"app.kubernetes.io/name": service_name(component),
                "app.kubernetes.io/part-of": "llminferenceservice"}
    if component.disaggregation is not None:
        selector[DISAGGREGATION_ROLE_LABEL] = component.disaggregation.role
    return selector


def service_name(component: Component) -> str:
    """The LLMInferenceService's name: the model's, for both roles of a disaggregated model."""
    roles = component.disaggregation
    return component.name.removesuffix(f"-{roles.role}") if roles is not None else component.name


def reached_through_kserve(component: Component) -> bool:
    """Whether the plan's routers reach the component at KServe's workload Service (no other target deploys it)."""
    return component.endpoint.service == f"{service_name(component)}{WORKLOAD_SERVICE_SUFFIX}"


def router_mode(plan: Plan, options: LlmisvcOptions) -> Literal["managed", "none"]:
    if options.router != "auto":
        return options.router
    return "none" if "router" in plan.stack.targets else "managed"


def inference_service(plan: Plan, component: Component, prefill: Component | None, options: LlmisvcOptions) -> dict:
    own = options.models.get(component.key) or LlmisvcModel()
    name = service_name(component)
    spec: dict[str, Any] = {"model": model_spec(component)}
    if not component.weights.platform_uri:
        spec["storageInitializer"] = {"enabled": False}  # the engine fetches the weights itself
    presets = list(dict.fromkeys((*options.base_refs, *own.base_refs)))
    if presets:
        spec["baseRefs"] = [{"name": preset} for preset in presets]
    spec.update(workload(component))
    if prefill is not None:
        spec["prefill"] = workload(prefill)
    if router_mode(plan, options) == "managed":
        spec["router"] = router(plan, options)
    labels = kube.without_role(component.labels) if prefill is not None else component.labels
    annotations = {**options.annotations, **own.annotations}
    return {"apiVersion": "serving.kserve.io/v1alpha2", "kind": "LLMInferenceService",
            "metadata": kube.metadata(plan.stack, name, labels, annotations or None), "spec": spec}


def model_spec(component: Component) -> dict[str, Any]:
    """What the service serves: the weights' URI, the primary served name and the LoRA adapters KServe fetches."""
    source = component.weights.source
    # KServe wants a scheme even where it fetches nothing: a path in the pod is a file:// URI
    uri = component.weights.platform_uri or f"{'file' if source.scheme == 'path' else source.scheme}://{source.location}"
    model: dict[str, Any] = {"uri": uri, "name": component.endpoint.served_names[0]}
    fetched = [{"name": adapter.name, "uri": f"hf://{adapter.location}"} for adapter in component.endpoint.adapters
               if not adapter.runtime and not adapter.location.startswith("/")]
    if fetched:
        model["lora"] = {"adapters": fetched}
    return model


def workload(component: Component) -> dict[str, Any]:
    """One role's pods as KServe's WorkloadSpec: replicas or scaling, parallelism, template, worker."""
    fields: dict[str, Any] = {}
    scaler = component.scale.autoscaler
    if scaler is None:
        fields["replicas"] = component.scale.replicas
    else:
        behavior = kube.scale_behavior(scaler)
        fields["scaling"] = {"minReplicas": scaler.min_replicas, "maxReplicas": scaler.max_replicas,
                             "wva": {"hpa": {"behavior": behavior} if behavior else {}}}
    topology = component.topology
    parallelism = {key: value for key, value in (("tensor", topology.tensor_parallel),
                                                  ("pipeline", topology.pipeline_parallel)) if value > 1}
    if parallelism:
        fields["parallelism"] = parallelism
    worker_pod = component.worker_pod
    # KServe keeps its own labels and gives a group's leader and workers the same spec.labels: the ones they share
    labels = {key: value for key, value in component.pod.labels.items() if key not in KSERVE_LABEL_KEYS
              and (worker_pod is None or worker_pod.labels.get(key) == value)}
    fields["labels"] = labels
    annotations = {**component.pod.annotations, **kube.config_hash(component)}
    if annotations:
        fields["annotations"] = annotations
    fields["template"] = pod_spec(component.pod)
    if worker_pod is not None:
        fields["worker"] = pod_spec(worker_pod)
    return fields


def pod_spec(pod: Pod) -> dict[str, Any]:
    """The pod as stackc merged it, its serving container named as KServe merges its defaults into."""
    spec = kube.pod_spec(pod)
    spec["containers"][0]["name"] = MAIN_CONTAINER
    return spec


def router(plan: Plan, options: LlmisvcOptions) -> dict[str, Any]:
    """llm-d's scheduler and KServe's HTTPRoute, on the named Gateway or KServe's own."""
    refs = {"refs": [{"name": options.gateway, "namespace": options.gateway_namespace or plan.stack.namespace}]} \
        if options.gateway else {}
    return {"scheduler": {}, "route": {}, "gateway": refs}


@hookimpl
def stackc_add_targets(registry: Registry) -> None:
    registry.add_target(LlmisvcTarget())
