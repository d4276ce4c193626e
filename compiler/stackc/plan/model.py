"""The deployment plan: what the lowering stage decided, and the only thing targets read.

After validation, ``stackc.lowering.lower`` turns the spec into a Plan once: every component with its
fully merged pod (the engine's container with the spec's env, mounts, probes, resources and
security applied), its topology, scale, endpoint and where its weights come from. Targets and
``stackc up`` translate the plan; none of them reads the spec's models or re-derives a pod.
Plain frozen data, Kubernetes-shaped but target-neutral.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import attrs

from stackc.plan.engine import (
    Adapter,
    ClaimRequest,
    ConfigMapData,
    Container,
    Metrics,
    NfsVolumeRequest,
    Port,
    Volume,
    Weights,
)
from stackc.plan.ray import RayCluster
from stackc.records import frozen

# the spec's own data classes where the plan carries the same values
from stackc.spec.model import Accelerators, Rollout, Routing, SecretRef

#: Pod Security "restricted": what every container and pod stackc runs gets unless the spec relaxes it
RESTRICTED_CONTAINER = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}
RESTRICTED_POD = {"seccompProfile": {"type": "RuntimeDefault"}}
#: the stack's KV-cache server is named, and labelled, as a model with this key would be
KV_CACHE_SERVER = "kv-cache-server"
#: the role of a prefill/decode-disaggregated model's pods: llm-d's prefill-filter and decode-filter select on it
DISAGGREGATION_ROLE_LABEL = "llm-d.ai/role"


@frozen
class Pod:
    """A pod template, merged: the serving container is first in ``containers``."""

    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    containers: tuple[Container, ...]
    volumes: tuple[Volume, ...]
    #: the engine's and the spec's init containers, then native sidecars (``restart_policy`` Always)
    init_containers: tuple[Container, ...] = ()
    service_account: str | None = None
    security_context: Mapping[str, Any] = attrs.field(factory=dict)
    image_pull_secrets: tuple[str, ...] = ()
    node_selector: Mapping[str, str] = attrs.field(factory=dict)
    affinity: Mapping[str, Any] | None = None
    #: Kubernetes tolerations and topology spread constraints, ready to emit
    tolerations: tuple[Mapping[str, Any], ...] = ()
    topology_spread: tuple[Mapping[str, Any], ...] = ()
    priority_class: str | None = None
    runtime_class: str | None = None
    scheduler_name: str | None = None
    termination_grace_seconds: int | None = None
    host_ipc: bool = False
    host_pid: bool = False


@frozen
class Topology:
    """How many pods make one replica: one, or a leader/worker group of ``size`` pods (the leader serves).

    ``ray_cluster``: the component is one Ray cluster whose application places its replicas itself
    (``Component.ray``): a head pod and a worker group Ray's autoscaler sizes; ``size`` is unused.
    """

    kind: Literal["single", "leader_worker", "ray_cluster"] = "single"
    size: int = 1
    #: a node label whose domains each group has to itself
    exclusive_key: str | None = None
    #: how the engine divides the model over a group: KServe's workerSpec states both
    tensor_parallel: int = 1
    pipeline_parallel: int = 1
    #: the group is a Ray cluster the workers join at the leader (``EngineRequest.ray_head``)
    ray_group: bool = False


Signal = Literal["waiting", "running", "kv_cache_usage", "tokens_per_second", "router_pending", "cpu", "memory",
                 "custom", "concurrency", "rps"]


@frozen
class Autoscaler:
    """Bounds and the signal of the autoscaler that owns a component's replica count.

    ``signal`` None leaves the choice to a platform that autoscales by itself (KServe);
    ``concurrency`` and ``rps`` are Knative's, from KServe's spelling (``metric``).
    """

    min_replicas: int
    max_replicas: int
    signal: Signal | None = None
    target: int | float | None = None
    #: the user's PromQL for ``signal = "custom"``
    query: str | None = None
    activation: int | float | None = None
    scale_up_seconds: int | None = None
    scale_down_seconds: int | None = None
    #: the Prometheus server Prometheus-signal triggers query
    prometheus: str = ""


@frozen
class Scale:
    """Replicas, or an autoscaler that owns the count (then nothing else sets it)."""

    replicas: int
    autoscaler: Autoscaler | None = None


@frozen
class Endpoint:
    """How clients and routers reach a component."""

    port: Port
    #: names the engine itself answers to, primary first
    served_names: tuple[str, ...]
    #: more names clients may send; routers and gateways rewrite those the engine doesn't serve
    aliases: tuple[str, ...] = ()
    #: LoRA adapters, each served by the engine under its own name (never rewritten)
    adapters: tuple[Adapter, ...] = ()
    #: where a POST of ``{"lora_name", "lora_path"}`` loads a run-time adapter into a replica
    adapter_load_path: str | None = None
    health_path: str | None = None
    metrics: Metrics | None = None
    #: the engine demands this key from callers (and on its metrics when ``metrics.needs_api_key``)
    api_key: SecretRef | None = None
    #: the Service in front of the pods, and its port
    service: str = ""
    service_port: int = 0
    #: labels of the pods that answer (a leader/worker group's leaders); set by lowering
    selector: Mapping[str, str] = attrs.field(factory=dict)
    #: the Service's own port when the spec sets one (routers use the pods' port, ``service_port``)
    public_port: int | None = None
    #: more ports on the Service: each a pod port's name and its number on the Service
    extra_service_ports: tuple[Port, ...] = ()
    #: the spec's own ports (engine ``ports``, sidecars'), which the stack's pods, metric scrapers and
    #: ``allow_from`` peers may reach through the NetworkPolicy
    peer_ports: tuple[Port, ...] = ()
    #: the port the engine publishes its KV events on, which the stack's event consumers reach
    kv_events_port: Port | None = None


@frozen
class ServiceAccount:
    """A ServiceAccount stackc creates."""

    name: str
    annotations: Mapping[str, str] = attrs.field(factory=dict)


PrefillProtocol = Literal["kv_transfer_params", "prefill_then_decode", "bootstrap"]


@frozen
class Candidate:
    """A model's candidate version: a component with the model's ``key``, its own pods, Service and fixed
    scale, beside the model's stable component; the requests it gets, which routing targets give it."""

    #: percent of the model's requests (0–100)
    traffic: int = 0
    #: requests carrying ``header`` with ``header_value`` go to the candidate only
    header: str | None = None
    header_value: str = "true"
    #: a copy of the stable version's requests goes to the candidate, its answer dropped
    mirror: bool = False


@frozen
class Disaggregation:
    """One role of a prefill/decode-disaggregated model, and how a router joins the two roles.

    A disaggregated model is two components with the same ``key``: its ``prefill`` and ``decode``
    roles, each with its own pods, Service and scale. ``protocol`` says what a router does, so it
    needs no engine knowledge:

    - ``kv_transfer_params`` (vLLM's NixlConnector): send the request to a prefill replica with
      ``max_tokens`` 1, ``stream`` false and ``kv_transfer_params: {"do_remote_decode": true}``; send
      the original request to a decode replica with the ``kv_transfer_params`` the prefill answered;
    - ``prefill_then_decode`` (LMCache's P/D): send it to a prefill replica with ``max_tokens`` 1, then
      the original request to a decode replica, which receives the KV cache from the prefill side;
    - ``bootstrap`` (SGLang): send it to a prefill and a decode replica at once, both with
      ``bootstrap_host`` (the prefill replica's address), ``bootstrap_port`` and one random
      ``bootstrap_room``; the decode replica answers.
    """

    role: Literal["prefill", "decode"]
    protocol: PrefillProtocol
    #: the prefill servers' bootstrap port (``bootstrap``)
    bootstrap_port: int | None = None
    #: the name of the KV-transfer port the engine opened, when the spec's ``disaggregation.kv_port`` set its number
    kv_port: str | None = None


@frozen
class Component:
    """One deployable unit: a model server (a model key, or one role of a disaggregated model)."""

    key: str
    name: str
    engine: str
    labels: Mapping[str, str]
    selector: Mapping[str, str]
    pod: Pod
    endpoint: Endpoint
    weights: Weights
    scale: Scale
    topology: Topology = attrs.field(factory=Topology)
    #: the pod of a leader/worker group's other members (``pod`` is the leader's)
    worker_pod: Pod | None = None
    accelerators: Accelerators = attrs.field(factory=Accelerators)
    routing: Routing = attrs.field(factory=Routing)
    rollout: Rollout = attrs.field(factory=Rollout)
    #: maxUnavailable of its PodDisruptionBudget, or None for no budget
    disruption_budget: int | str | None = None
    service_account: ServiceAccount | None = None
    claims: tuple[ClaimRequest, ...] = ()
    config_maps: tuple[ConfigMapData, ...] = ()
    #: the role this component plays when its model is prefill/decode-disaggregated
    disaggregation: Disaggregation | None = None
    #: set on a model's candidate version (the stable one has None)
    candidate: Candidate | None = None
    #: the Ray cluster and Serve application of topology ``ray_cluster``
    ray: RayCluster | None = None
    #: tokens one replica's KV cache holds, as the fit check computes them (None: unknown); routers size
    #: their view of its prefix cache with it when the engine publishes no capacity
    kv_tokens_per_replica: int | None = None


@frozen
class Caller:
    """Pods that call model servers, which their NetworkPolicies admit (a target says who its pods are)."""

    pods: Mapping[str, str]
    #: their namespace, when not the stack's
    namespace: str | None = None
    #: what they reach: the serving port, the metrics port, or the port the engine publishes KV events on
    port: Literal["serving", "metrics", "kv_events"] = "serving"
    #: one model's key, or None for every model
    component: str | None = None
    #: of that model, its stable version only (False), its candidate only (True), or both (None)
    candidate: bool | None = None


@frozen
class NetworkPolicy:
    metrics_namespace: str
    allow_from: tuple[Mapping[str, Any], ...] = ()


@frozen
class RouterMetricNames:
    """The per-model series a router in front of the models exports, labelled ``model_label``.

    Held requests (``pending``, ``hold_rejected``) are labelled with the served name, the others
    with the model's key. Autoscalers wake a model at zero replicas on ``pending``; alerts and dashboards use the rest.
    """

    model_label: str = "model"
    pending: str | None = None
    #: requests in flight to the model's replicas (a gauge)
    in_flight: str | None = None
    #: requests answered 503 while the model had no ready replica (a counter labelled with the name asked
    #: for: the primary served name or an adapter's)
    hold_rejected: str | None = None
    requests: str | None = None
    errors: str | None = None
    retries: str | None = None
    #: histograms (the ``_bucket`` series are queried)
    latency: str | None = None
    time_to_first_token: str | None = None


@frozen
class Exporter:
    """Pods a target adds (a router, an endpoint picker) that export Prometheus metrics."""

    name: str
    pods: Mapping[str, str]
    port: str
    path: str = "/metrics"
    #: set when the pods route requests to the models
    router: RouterMetricNames | None = None


@frozen
class KvCacheServer:
    """A KV-cache server the stack's model servers share: one pod behind a Service, admitting only them."""

    name: str
    labels: Mapping[str, str]
    selector: Mapping[str, str]
    pod: Pod
    port: Port
    #: labels of the pods that may call it (the stack's model servers)
    clients: Mapping[str, str]


@frozen
class EnginesService:
    """One Service over the serving pods of every model that can be behind it: lowering labels those pods
    with ``selector``. ``port`` is None when the spec names none and the models' Service ports disagree."""

    name: str
    labels: Mapping[str, str]
    selector: Mapping[str, str]
    port: int | None
    #: the name of the pods' serving port, None when the models name theirs differently
    target_port: str | None
    #: the models whose pods it selects, by key
    members: tuple[str, ...] = ()


@frozen
class Stack:
    name: str
    namespace: str
    labels: Mapping[str, str] = attrs.field(factory=dict)
    annotations: Mapping[str, str] = attrs.field(factory=dict)
    #: the stack's targets, so one target can make room for another
    targets: tuple[str, ...] = ()
    #: policies for the model servers' pods, or None when the spec turns them off
    network_policy: NetworkPolicy | None = None
    #: a stack target has Prometheus scrape every model's metrics labelled with the pods' labels
    #: (``monitors_models``), which autoscaler triggers select
    monitored: bool = False
    #: every target's pods that call the model servers
    callers: tuple[Caller, ...] = ()
    #: every target's pods that export metrics, sorted by name
    exporters: tuple[Exporter, ...] = ()
    #: objects the spec carries as written (``stack.extra_objects``), namespaced into the stack
    extra_objects: tuple[Mapping[str, Any], ...] = ()
    #: claims of the stack as a whole (the shared cache), created once by each target that deploys models,
    #: and the NFS volumes they bind
    claims: tuple[ClaimRequest, ...] = ()
    nfs_volumes: tuple[NfsVolumeRequest, ...] = ()
    #: the shared KV-cache server, created once by each target that deploys models
    kv_cache_server: KvCacheServer | None = None
    #: one Service over every model's serving pods (``stack.engines_service``)
    engines_service: EnginesService | None = None


@frozen
class Plan:
    """Everything targets get: the stack and its components, sorted by key (a disaggregated model's
    prefill and decode components share it: decode, then prefill)."""

    stack: Stack
    components: tuple[Component, ...]
