"""What the core and engines exchange while lowering: the request, the engine's container, its needs.

Plain frozen data, Kubernetes-shaped but target-neutral; ``stackc.plan.model`` assembles it into components.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum
from typing import TYPE_CHECKING, Any

import attrs

from stackc.records import frozen
from stackc.spec.model import Model, SecretRef
from stackc.spec.sources import ModelSource

if TYPE_CHECKING:
    from stackc.plan.model import Autoscaler
    from stackc.plan.ray import RayApplication


class Capability(str, Enum):
    """Spec features an engine may or may not be able to serve."""

    MULTIPLE_SERVED_NAMES = "multiple_served_names"
    TENSOR_PARALLEL = "tensor_parallel"
    PIPELINE_PARALLEL = "pipeline_parallel"
    GPU_MEMORY_FRACTION = "gpu_memory_fraction"
    DTYPE = "dtype"
    QUANTIZATION = "quantization"
    MAX_CONCURRENT_SEQUENCES = "max_concurrent_sequences"
    PREFIX_CACHING_TOGGLE = "prefix_caching"
    CHAT_TEMPLATE = "chat_template"
    LORA = "lora_adapters"
    #: loads LoRA adapters through its API while it runs (``load = "runtime"``)
    RUNTIME_LORA = "runtime_lora_adapters"
    API_KEY = "api_key"
    MAX_CONTEXT = "max_context"
    ACCELERATORS = "accelerators"
    #: serves without accelerators (on CPUs)
    CPU_ONLY = "cpu_only"
    #: serves models from the Ollama library (``ollama://NAME:TAG``)
    OLLAMA_LIBRARY = "ollama_library"
    #: runs one replica over several pods (``serving.nodes``), returning ``EngineResult.worker``
    MULTI_NODE = "multi_node"
    #: offloads KV-cache blocks to host memory (``kv_offload``)
    KV_OFFLOAD = "kv_offload"
    #: listens on the port the spec sets (``port``)
    PORT = "port"
    #: serves a model as separate prefill and decode roles (``disaggregation``), configuring the KV transfer
    DISAGGREGATION = "disaggregation"
    #: publishes its KV-cache block events (stored, removed, cleared) over ZMQ for a precise prefix-cache
    #: index (``routing.kv_events``), returning ``EngineResult.kv_events_port``
    KV_EVENTS = "kv_events"


@frozen
class EnvVar:
    name: str
    value: str | None = None
    secret: SecretRef | None = None
    #: a Kubernetes ``valueFrom`` other than a Secret key (the downward API, a ConfigMap key)
    value_from: Mapping[str, Any] | None = None


@frozen
class Port:
    name: str
    number: int
    app_protocol: str | None = None
    protocol: str = "TCP"


@frozen
class Probe:
    """An HTTP GET probe on a port (by name or number), a TCP probe when ``tcp``, or an exec probe when
    ``command`` is set."""

    path: str | None = None
    port: str | int = "http"
    command: tuple[str, ...] = ()
    tcp: bool = False
    initial_delay_seconds: int = 0
    period_seconds: int = 10
    timeout_seconds: int = 1
    failure_threshold: int = 3


@frozen
class Mount:
    volume: str
    path: str
    sub_path: str | None = None
    read_only: bool = False


@frozen
class Container:
    name: str
    image: str
    command: tuple[str, ...] = ()
    args: tuple[str, ...] = ()
    env: tuple[EnvVar, ...] = ()
    ports: tuple[Port, ...] = ()
    mounts: tuple[Mount, ...] = ()
    startup_probe: Probe | None = None
    readiness_probe: Probe | None = None
    liveness_probe: Probe | None = None
    resources: Mapping[str, Mapping[str, str]] = attrs.field(factory=dict)
    image_pull_policy: str | None = None
    working_dir: str | None = None
    #: set by lowering from the spec (engines leave these alone)
    security_context: Mapping[str, Any] | None = None
    raw_mounts: tuple[Mapping[str, Any], ...] = ()
    #: ``Always`` makes an init container a native sidecar
    restart_policy: str | None = None
    #: where the spec declares it (``("sidecars", 0)``), for located diagnostics; empty for the engine's own
    spec_path: tuple[str | int, ...] = ()


@frozen
class Volume:
    """One pod volume; exactly one source is set."""

    name: str
    empty_dir: Mapping[str, str] | None = None
    claim: str | None = None
    config_map: str | None = None
    image: str | None = None
    raw: Mapping[str, Any] | None = None


@frozen
class MetricNames:
    """An engine's Prometheus series names, so routers and autoscalers need no engine knowledge."""

    running: str | None = None
    waiting: str | None = None
    kv_cache_usage: str | None = None
    prefix_cache_hits: str | None = None
    prefix_cache_queries: str | None = None
    time_to_first_token: str | None = None
    #: a counter of generated tokens (``tokens_per_second`` autoscaling)
    generation_tokens: str | None = None
    #: the KV cache's capacity in tokens: this series' value times the values of ``kv_cache_capacity_labels``
    #: (vLLM publishes an info gauge of 1 labelled ``block_size`` and ``num_gpu_blocks``; SGLang the tokens)
    kv_cache_capacity: str | None = None
    kv_cache_capacity_labels: tuple[str, ...] = ()


@frozen
class Metrics:
    port: str
    path: str
    names: MetricNames = attrs.field(factory=MetricNames)
    #: the endpoint demands the model's API key (``security.api_key``) when one is set
    needs_api_key: bool = False


@frozen
class LocalRun:
    """How ``stackc up`` runs an engine's compiled command on this machine."""

    #: container command name -> host executables to try, in order
    binaries: Mapping[str, tuple[str, ...]] = attrs.field(factory=dict)
    #: what to install when none is found
    install_hint: str = ""


@frozen
class Weights:
    """Where the engine loads the model from: decided before the engine builds its command line."""

    source: ModelSource
    #: what the engine is told: an id or URI it fetches itself, or a path inside its container
    location: str
    #: the read-only mount that puts the weights at ``location``, when a stackc-made volume holds them
    mount: Mount | None = None
    #: what the target's platform downloads to ``location`` before the engine starts (KServe's storageUri)
    platform_uri: str | None = None
    #: the revision the engine fetches itself (None when a volume or the platform provides the weights)
    revision: str | None = None


@frozen
class Adapter:
    """A LoRA adapter as the engine gets it, its weights' place decided by the core."""

    #: the name the engine serves it under (clients send it as is)
    name: str
    #: what the engine is told: a Hugging Face id it fetches itself, or a path inside its container
    location: str
    #: loaded through the engine's API once a replica runs, rather than on its command line
    runtime: bool = False


@frozen
class RoleRequest:
    """The role an engine serves of a disaggregated model, and where the other role is."""

    role: str  # "prefill" or "decode"
    connector: str  # the spec's ``disaggregation.connector``
    #: how a router joins the roles with this connector (the engine's ``kv_connectors`` says)
    protocol: str
    #: the KV-transfer port (None: the engine's default)
    kv_port: int | None
    #: the decode role's Service, which a prefill server pushes KV to (LMCache's P/D)
    decode_service: str


@frozen
class Listen:
    """Where an engine listens when it runs on one machine (``stackc up``), not in a pod."""

    host: str
    port: int


@frozen
class EngineRequest:
    """What the core gives an engine to lower one model."""

    model_key: str
    model: Model
    options: Any
    source: ModelSource
    workload_name: str
    weights: Weights
    cache_volume: str  # name of the volume for downloaded weights and caches
    chat_template_volume: str | None  # a ConfigMap volume holding `chat-template.jinja`, if any
    #: the model's LoRA adapters (the core mounts the volumes their paths are on)
    adapters: tuple[Adapter, ...] = ()
    #: where the core mounted the disk for offloaded KV blocks (``kv_offload.disk_gib``)
    kv_disk_path: str | None = None
    #: the stack's KV-cache server (``lm://HOST:PORT``) and its encoding, for a model with ``kv_offload.remote``
    kv_cache_url: str | None = None
    kv_cache_serde: str = "naive"
    #: set when the target's platform forms a multi-node replica as a Ray cluster (KServe): the host the
    #: workers reach the Ray head at (the engine chooses its port); the leader starts the head and the engine
    ray_head: str | None = None
    #: set when the model is disaggregated: the role this component serves
    role: RoleRequest | None = None
    #: a target indexes the model's KV blocks from its engines' events (``routing.kv_events``): publish them
    kv_events: bool = False
    #: who owns the replica count, as the core decided from ``autoscaling`` (None: ``replicas``), for an
    #: engine whose platform scales the replicas itself (Ray Serve)
    autoscaler: Autoscaler | None = None
    #: set when lowering one replica for this machine (``stackc up``): listen here instead of on every
    #: interface at the spec's port, so replicas side by side never bind one port
    listen: Listen | None = None


@frozen
class EngineResult:
    """What an engine returns for one model."""

    container: Container
    served_names: tuple[str, ...]
    #: the port the engine serves on, also on ``container.ports`` (the Service targets it by name)
    port: Port
    metrics: Metrics | None = None
    init_containers: tuple[Container, ...] = ()
    volumes: tuple[Volume, ...] = ()
    needs_shm: bool = False
    #: the container of a multi-node replica's other pods (ranks 1…nodes-1), which serve no HTTP;
    #: engines with ``Capability.MULTI_NODE`` return it when ``serving.nodes`` > 1
    worker: Container | None = None
    #: the group runs as the Ray cluster ``EngineRequest.ray_head`` asked for (the engine honoured it)
    ray_group: bool = False
    #: where a POST of ``{"lora_name", "lora_path"}`` loads an adapter (engines with ``RUNTIME_LORA``)
    adapter_load_path: str | None = None
    #: for a disaggregated role: the KV-transfer port the engine opened (also on ``container.ports``)
    kv_port: Port | None = None
    #: ports of ``container`` that other pods reach at the component's Service rather than a pod's address
    #: (LMCache's P/D receiver, which prefill servers push to at ``RoleRequest.decode_service``)
    service_ports: tuple[Port, ...] = ()
    #: the prefill servers' bootstrap port (protocol ``bootstrap``), on both roles' results
    bootstrap_port: int | None = None
    #: where the engine publishes its KV events (asked by ``EngineRequest.kv_events``; also on ``container.ports``)
    kv_events_port: Port | None = None
    #: the non-root user and group the image runs under with Pod Security "restricted" (one its image has,
    #: or one its files allow); stackc gives it a writable HOME
    run_as_user: int = 1000
    run_as_group: int = 1000
    #: set by engines that run on a Ray cluster: ``container`` is then the worker group's, this has the
    #: head's and the Ray Serve config (the core deploys the component as topology ``ray_cluster``)
    ray: RayApplication | None = None


@frozen
class ConfigMapData:
    name: str
    data: Mapping[str, str]
    #: where the spec sets the data, relative to ``models.KEY`` (for located diagnostics)
    spec_path: tuple[str | int, ...] = ()


@frozen
class ClaimRequest:
    name: str
    size: str
    access_mode: str
    storage_class: str | None = None
    #: labels of a pre-provisioned PersistentVolume to bind (then no StorageClass unless one is named)
    selector: Mapping[str, str] = attrs.field(factory=dict)
    #: the PersistentVolume to bind by name (one stackc creates)
    volume_name: str | None = None


@frozen
class NfsVolumeRequest:
    """A PersistentVolume stackc creates for an NFS export (cluster-scoped: its name carries the namespace)."""

    name: str
    server: str
    path: str
    size: str
