"""The IR: what a stack spec says, as frozen attrs classes (no I/O, no logic).

The same classes describe spec format v1: ``stackc schema`` and ``docs/spec.md`` are generated
from them, each field's ``doc`` metadata being its reference text.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import attrs

from stackc.records import frozen

SPEC_VERSION = 1
INT32_MAX = 2**31 - 1


@frozen
class Form:
    """A form of string Kubernetes insists on: one pattern both the validator and the JSON Schema use."""

    pattern: str
    what: str  # completes "'x' is not …"
    code: str = "E023"
    max_length: int | None = None


_SUBDOMAIN = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
# stackc derives object names from these, so they start with a letter
NAME = Form(r"^[a-z]([-a-z0-9]*[a-z0-9])?$", "a valid name: lowercase letters, digits and '-', starting with a letter",
            "E008", 63)
DNS_LABEL = Form(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", "a DNS label: lowercase letters, digits and '-'", "E008", 63)
DNS_SUBDOMAIN = Form(f"^{_SUBDOMAIN}$", "a DNS subdomain: lowercase letters, digits, '-' and '.'", "E008", 253)
#: a StorageClass's name, or "" (Kubernetes: no class, no dynamic provisioning)
STORAGE_CLASS = Form(f"^({_SUBDOMAIN})?$", "a StorageClass name (a DNS subdomain), or '' for none", "E008", 253)
HOSTNAME = Form(rf"^(\*\.)?{_SUBDOMAIN}$", "a host name (lowercase, an optional leading '*.')", "E008", 253)
LABEL_KEY = Form(rf"^((?=[^/]{{1,253}}/){_SUBDOMAIN}/)?(?=[^/]{{1,63}}$)[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$",
                 "a label or annotation key: an optional DNS-subdomain prefix and '/', then up to 63 letters, "
                 "digits, '-', '_' or '.', starting and ending with a letter or digit", "E019", 317)
LABEL_VALUE = Form(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$",
                   "a label value: up to 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit",
                   "E019", 63)
QUANTITY = Form(r"^(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+|[KMGTPE]i?|m|k|u|n)?$",
                "a Kubernetes quantity (for example '500m', '16Gi' or '2')", "E015")
RESOURCE_NAME = Form(r"^(cpu|memory|ephemeral-storage|hugepages-[0-9A-Za-z]+|[a-z0-9]([-a-z0-9.]*[a-z0-9])?/[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)$",
                     "a resource name: cpu, memory, ephemeral-storage, hugepages-SIZE or DOMAIN/NAME", "E015", 317)
ENV_NAME = Form(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$", "a valid environment variable name", "E016")
SECRET_KEY = Form(r"^[-._a-zA-Z0-9]+$", "a Secret key: letters, digits, '-', '_' or '.'", "E023", 253)
HTTP_HEADER = Form(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$", "an HTTP header name", "E023", 256)
#: a name clients send in requests' ``model`` field, and a gateway matches as a header value
MODEL_NAME = Form(r"^[^\s\x00-\x1f\x7f]([^\x00-\x1f\x7f]*[^\s\x00-\x1f\x7f])?$",
                  "a model name: no control characters, not empty, no blanks at either end", "E023", 256)
HTTP_URL = Form(r"^https?://[^\s/]+(/\S*)?$", "an http:// or https:// URL", "E023")
NFS_SERVER = Form(r"^([0-9]{1,3}(\.[0-9]{1,3}){3}|\[?[0-9a-fA-F:]+\]?|[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*)$",
                  "a host name or an IP address", "E023", 253)
ABSOLUTE_PATH = Form(r"^/[^\x00]*$", "an absolute path", "E023", 4096)
PERCENT = Form(r"^[0-9]+%$", "a whole number or a percentage such as '25%'", "E023")
PORT_NAME = Form(r"^(?=.*[a-z])(?!.*--)[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
                 "a port name: up to 15 lowercase letters, digits and '-', with a letter, no '--'", "E008", 15)
FIELD_PATH = Form(r"^(metadata\.(name|namespace|uid|labels\['[^']+'\]|annotations\['[^']+'\])"
                  r"|spec\.(nodeName|serviceAccountName)|status\.(hostIP|hostIPs|podIP|podIPs))$",
                  "a pod field the downward API offers: metadata.name, metadata.namespace, metadata.uid, "
                  "metadata.labels['KEY'], metadata.annotations['KEY'], spec.nodeName, spec.serviceAccountName, "
                  "status.hostIP, status.hostIPs, status.podIP or status.podIPs")
RESOURCE_FIELD = Form(r"^(limits|requests)\.(cpu|memory|ephemeral-storage|hugepages-[0-9A-Za-z]+)$",
                      "a container resource the downward API offers: limits.cpu, limits.memory, "
                      "limits.ephemeral-storage, requests.cpu, … or limits.hugepages-SIZE")
#: the highest port number; also the bound of ports and Service ports
PORT_MAX = 65535


def field(doc: str, *, minimum: int | None = None, maximum: int | None = None, form: Form | None = None,
          keys: Form | None = None, min_items: int | None = None, **kwargs: Any) -> Any:
    """An attrs field carrying its reference documentation and the bounds Kubernetes puts on it.

    ``form`` applies to a string, to a mapping's values or to an array's items; ``keys`` to a
    mapping's keys. The validator and the JSON Schema both read them from here.
    """
    bounds = {"minimum": minimum, "maximum": maximum, "form": form, "keys": keys, "min_items": min_items}
    return attrs.field(metadata={"doc": doc, **{k: v for k, v in bounds.items() if v is not None}}, **kwargs)


@frozen
class SecretRef:
    """A key in a Kubernetes Secret; stackc never reads or inlines secret values."""

    name: str = field("Name of the Secret, in the stack's namespace.", form=DNS_SUBDOMAIN)
    key: str = field("Key inside the Secret.", form=SECRET_KEY)


@frozen
class EnvSource:
    """A variable's value taken from the pod (Kubernetes `valueFrom`): set exactly one of `field`,
    `resource`, `secret` or `config_map`, for example `env.POD_IP = { field = "status.podIP" }`."""

    resource: str | None = field("A resource of the container, e.g. `limits.memory` or `requests.cpu`.",
                                 default=None, form=RESOURCE_FIELD)
    divisor: Quantity | None = field("Unit `resource` is given in, e.g. `1Mi` (default 1).", default=None,
                                     form=QUANTITY)
    secret: str | None = field("Name of a Secret in the stack's namespace (with `key`).", default=None,
                               form=DNS_SUBDOMAIN)
    config_map: str | None = field("Name of a ConfigMap in the stack's namespace (with `key`).", default=None,
                                   form=DNS_SUBDOMAIN)
    key: str | None = field("Key inside the Secret or ConfigMap.", default=None, form=SECRET_KEY)
    optional: bool | None = field("Start even when the Secret, ConfigMap or key is missing.", default=None)
    # last: the attribute shadows the ``field`` helper in the class body
    field: str | None = field("A pod field (the downward API), e.g. `status.podIP` or `metadata.name`.",
                              default=None, form=FIELD_PATH)


@frozen
class ContainerPort:
    """One more port a container listens on."""

    name: str = field("Port name (the Service's port has the same name).", form=PORT_NAME)
    port: int = field("Port number in the container.", minimum=1, maximum=PORT_MAX)
    protocol: Literal["TCP", "UDP", "SCTP"] = field("Protocol.", default="TCP")
    service: bool = field("Also expose it on the model's Service.", default=True)
    service_port: int | None = field("Its number on the Service (default: `port`).", default=None, minimum=1,
                                     maximum=PORT_MAX)


@frozen
class VolumeMount:
    volume: str = field("A volume of the pod: `model-cache`, `home` or one of `extra_volumes`.", form=DNS_LABEL)
    path: str = field("Absolute path in the container.")
    sub_path: str | None = field("A path inside the volume to mount instead of its root.", default=None)
    read_only: bool = field("Mount read-only.", default=False)


@frozen
class Accelerators:
    count: int = field("Devices per replica (per pod). 0 serves on CPU.", default=0, minimum=0, maximum=INT32_MAX)
    resource: str = field(
        "Extended resource name: `nvidia.com/gpu`, a MIG profile such as "
        "`nvidia.com/mig-1g.10gb`, `amd.com/gpu`, `aws.amazon.com/neuron`, `aws.amazon.com/neuroncore`…",
        default="nvidia.com/gpu", form=RESOURCE_NAME,
    )
    type: str | None = field(
        "Device type, for the fit check (`stackc plan`): `H200`, `H100-80GB`, `A100-80GB`, `A100-40GB`, `L40S`, "
        "`L4`, `A10G`, `V100-32GB`, `V100-16GB`, `MI300X`, `MI325X`, `Inferentia2`, `Trainium`, `Trainium2` "
        "(a MIG profile's memory comes from `resource`).", default=None)
    memory: str | None = field("Memory per device, for a device the catalogue lacks (e.g. `24Gi`).", default=None,
                               form=QUANTITY)
    select_nodes: bool = field(
        "Require nodes holding `type`: every pod of the model gets a required node affinity on the label the "
        "vendor's node labeller sets (NVIDIA GPU feature discovery's `nvidia.com/gpu.product`, AMD's "
        "`amd.com/gpu.device-id`; `node.kubernetes.io/instance-type` for AWS Neuron). Off by default: on a "
        "cluster without that labeller the pods stay Pending. A MIG profile is selected by its `resource` already; "
        "a label `scheduling.node_selector` sets itself is left as written.", default=False)


class Quantity(str):
    """A Kubernetes quantity, written as Kubernetes takes it: a string (`"500m"`, `"16Gi"`) or a number
    (`cpu = 10`, `cpu = 0.5`); stackc keeps its text."""


@frozen
class Resources:
    requests: Mapping[str, Quantity] = field(
        "Container requests (`cpu`, `memory`, `ephemeral-storage`, …) as Kubernetes quantities "
        "(strings, or numbers such as `cpu = 10`).", factory=dict, keys=RESOURCE_NAME, form=QUANTITY,
    )
    limits: Mapping[str, Quantity] = field("Container limits as Kubernetes quantities.", factory=dict,
                                           keys=RESOURCE_NAME, form=QUANTITY)


@frozen
class LoraAdapter:
    """A LoRA adapter on the model's base weights, served under a name of its own."""

    name: str = field("Name clients use in the `model` field to select the adapter; the engine serves it under "
                      "this name (routers and gateways never rewrite it).", form=MODEL_NAME)
    source: str = field("Where the adapter weights are: a Hugging Face id (`org/name`, `hf://org/name`), `s3://`, "
                        "`gs://`, `pvc://CLAIM/PATH` or an absolute path in the container.")
    revision: str | None = field("Revision of a Hugging Face adapter (branch, tag or commit); pinned adapters are "
                                 "downloaded before the engine starts.", default=None)
    load: Literal["startup", "runtime"] = field(
        "`startup`: on the engine's command line; `runtime`: loaded through the engine's API into each replica "
        "once it is healthy (by the `router` target), so the adapter list changes without restarting engines.",
        default="startup")


@frozen
class Serving:
    """Engine-neutral serving parameters; each engine maps them to its own flags."""

    max_context: int | None = field("Maximum context length in tokens.", default=None, minimum=1, maximum=INT32_MAX)
    tensor_parallel: int = field("Tensor-parallel degree (devices one replica shards over).", default=1,
                                 minimum=1, maximum=INT32_MAX)
    pipeline_parallel: int = field("Pipeline-parallel degree.", default=1, minimum=1, maximum=INT32_MAX)
    nodes: int = field(
        "Pods one replica spans, each with `accelerators.count` devices: above 1 every replica is a "
        "leader/worker group (a LeaderWorkerSet) and tensor × pipeline parallelism covers all their devices.",
        default=1, minimum=1, maximum=INT32_MAX)
    gpu_memory_fraction: float | None = field(
        "Fraction of accelerator memory the engine may use (0 < f ≤ 1).", default=None
    )
    dtype: Literal["auto", "half", "float16", "bfloat16", "float32"] | None = field(
        "Weight and activation dtype.", default=None
    )
    quantization: str | None = field("Quantization method, e.g. `awq`, `gptq`, `fp8`.", default=None)
    model_config: str | None = field(
        "The model's `config.json` on this machine (relative to the spec file), for the fit check of a model "
        "stackc's catalogue and the local Hugging Face cache lack.", default=None)
    min_concurrent_at_context: int = field(
        "Fewer sequences of `max_context` tokens fitting in the KV cache at once draws warning W140.", default=1,
        minimum=1, maximum=INT32_MAX)
    max_concurrent_sequences: int | None = field("Upper bound on sequences batched at once.", default=None,
                                                 minimum=1, maximum=INT32_MAX)
    prefix_caching: bool | None = field("Turn automatic prefix caching on or off (engine default when unset).", default=None)
    chat_template: str | None = field(
        "A Jinja chat template (the text itself); mounted from a ConfigMap.", default=None
    )
    lora_adapters: tuple[LoraAdapter, ...] = field("LoRA adapters served next to the base model.", default=())
    max_lora_rank: int | None = field("Largest LoRA rank to reserve memory for.", default=None, minimum=1,
                                      maximum=INT32_MAX)
    max_loras: int | None = field("LoRA adapters one batch may use at once (vLLM `--max-loras`, SGLang "
                                  "`--max-loras-per-batch`).", default=None, minimum=1, maximum=INT32_MAX)


@frozen
class Cache:
    """The model cache volume: a PersistentVolumeClaim stackc creates, or one that exists."""

    size: str | None = field("Size of the claim stackc creates, e.g. `200Gi`.", default=None, form=QUANTITY)
    storage_class: str | None = field("StorageClass of the claim stackc creates; `\"\"` for none (the claim binds a "
                                      "volume made without a class instead of provisioning one).", default=None,
                                      form=STORAGE_CLASS)
    access_mode: Literal["ReadWriteOnce", "ReadWriteMany", "ReadOnlyMany", "ReadWriteOncePod"] = field(
        "Access mode of the claim; use `ReadWriteMany` to share one cache across replicas.",
        default="ReadWriteOnce",
    )
    existing_claim: str | None = field("Use this existing claim instead of creating one.", default=None,
                                       form=DNS_SUBDOMAIN)


@frozen
class NfsShare:
    """An NFS export, which stackc mounts through a PersistentVolume and a claim."""

    server: str = field("NFS server: a host name or an IP address.", form=NFS_SERVER)
    path: str = field("Exported path on the server.", form=ABSOLUTE_PATH)


@frozen
class SharedCache:
    """One cache every model without a `cache` of its own mounts, shared by all replicas: each model's
    weights are downloaded once per stack instead of once per pod. Its source: a ReadWriteMany claim
    stackc creates (`size`, `storage_class`, `selector`), an existing claim, or an NFS export (stackc
    creates a PersistentVolume for it and a claim bound to it)."""

    size: str | None = field("Size of the claim stackc creates (for `nfs`: the volume's nominal capacity), "
                             "e.g. `2Ti`.", default=None, form=QUANTITY)
    storage_class: str | None = field("StorageClass of that claim (one whose volumes many nodes mount: EFS, "
                                      "Filestore, Azure Files, CephFS, NFS); `\"\"` for none (a volume made "
                                      "without a class).", default=None, form=STORAGE_CLASS)
    selector: Mapping[str, str] = field(
        "Labels of the pre-provisioned PersistentVolume the claim binds to (production-stack's `pvcMatchLabels`); "
        "without `storage_class` the claim then waits for such a volume instead of provisioning one.",
        factory=dict, keys=LABEL_KEY, form=LABEL_VALUE)
    existing_claim: str | None = field("An existing ReadWriteMany claim to mount instead.", default=None,
                                       form=DNS_SUBDOMAIN)
    nfs: NfsShare | None = field("An NFS export, mounted through a PersistentVolume stackc creates (Pod Security "
                                 "restricted admits claims, not inline NFS volumes).", default=None)


@frozen
class KvOffload:
    """KV-cache blocks the accelerators evict go to host memory, so a returning prefix (a long system
    prompt, the next turn of a chat) is copied back instead of computed again."""

    cpu_gib: int = field("Host memory per pod for offloaded KV blocks, in GiB (count it in `resources` memory).",
                         minimum=1, maximum=1 << 20)
    backend: Literal["native", "lmcache"] = field(
        "vLLM: its own offloading connector (`native`), or LMCache (`lmcache`, the image must include it); "
        "SGLang uses its hierarchical cache and takes `native` only.", default="native")
    disk_gib: int | None = field(
        "Local disk per pod for KV blocks evicted from host memory, in GiB: LMCache's local disk, SGLang's "
        "HiCache file storage (vLLM's `native` backend offloads to memory only). Without `disk_volume`, an "
        "emptyDir of this size (count it in `resources` ephemeral-storage).", default=None, minimum=1,
        maximum=1 << 20)
    disk_volume: str | None = field(
        "A volume of `extra_volumes` to keep those blocks on (a local NVMe, an ephemeral volume) instead of an "
        "emptyDir.", default=None, form=DNS_LABEL)
    remote: bool = field("Share KV blocks through the stack's `[stack.kv_cache_server]` (LMCache's `lm://` server; "
                         "`backend = \"lmcache\"`).", default=False)


@frozen
class Toleration:
    key: str | None = field("Taint key (empty with `Exists` tolerates everything).", default=None, form=LABEL_KEY)
    operator: Literal["Exists", "Equal"] = field("`Equal` or `Exists`.", default="Equal")
    value: str | None = field("Taint value for `Equal`.", default=None, form=LABEL_VALUE)
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = field("Taint effect.", default=None)
    toleration_seconds: int | None = field("How long a `NoExecute` taint is tolerated.", default=None)


@frozen
class Scheduling:
    node_selector: Mapping[str, str] = field("Node labels a pod must match.", factory=dict, keys=LABEL_KEY,
                                             form=LABEL_VALUE)
    tolerations: tuple[Toleration, ...] = field("Taints the pods tolerate.", default=())
    tolerations_mode: Literal["append", "replace"] = field(
        "How a model's tolerations combine with those in `[defaults]`.", default="append"
    )
    affinity: Mapping[str, Any] | None = field("A Kubernetes `affinity` object, as is.", default=None)
    topology_spread: tuple[Mapping[str, Any], ...] = field(
        "Kubernetes `topologySpreadConstraints`; the pods' selector is filled in when `labelSelector` is absent.",
        default=(),
    )
    priority_class: str | None = field("PriorityClass name.", default=None, form=DNS_SUBDOMAIN)
    runtime_class: str | None = field("RuntimeClass name (e.g. `nvidia`).", default=None, form=DNS_SUBDOMAIN)
    scheduler_name: str | None = field("A scheduler other than the default.", default=None)
    group_topology: str | None = field(
        "For multi-node models (`serving.nodes` > 1): a node label key, e.g. `topology.kubernetes.io/zone`, "
        "whose domains each leader/worker group gets to itself (all of a group's pods in one domain).",
        default=None, form=LABEL_KEY)


@frozen
class ProbeOverride:
    """A probe: an HTTP GET on `path`, a TCP connect (`tcp = true`) or a command (`exec`). On the engine
    it replaces parts of the engine's probe (unset fields keep the engine's values); on a sidecar it is
    the whole probe."""

    path: str | None = field("HTTP path to probe.", default=None)
    tcp: bool | None = field("Probe by opening a TCP connection to the port instead.", default=None)
    exec: tuple[str, ...] | None = field("Probe by running this command in the container (exit 0 is success).",
                                         default=None, min_items=1)
    port: int | str | None = field("Port to probe, by number or name (default: the engine's serving port).",
                                   default=None, minimum=1, maximum=PORT_MAX, form=PORT_NAME)
    initial_delay_seconds: int | None = field("Seconds before the first probe.", default=None, minimum=0,
                                              maximum=INT32_MAX)
    period_seconds: int | None = field("Seconds between probes.", default=None, minimum=1, maximum=INT32_MAX)
    timeout_seconds: int | None = field("Seconds before a probe times out.", default=None, minimum=1, maximum=INT32_MAX)
    failure_threshold: int | None = field("Failures before the probe gives up.", default=None, minimum=1,
                                          maximum=INT32_MAX)


@frozen
class Probes:
    startup: ProbeOverride | None = field("Startup probe (covers download and load).", default=None)
    readiness: ProbeOverride | None = field("Readiness probe.", default=None)
    liveness: ProbeOverride | None = field("Liveness probe.", default=None)


@frozen
class Rollout:
    strategy: Literal["RollingUpdate", "Recreate"] = field(
        "Deployment strategy; `Recreate` frees accelerators before new pods start.", default="RollingUpdate"
    )
    max_surge: int | str | None = field("Pods above `replicas` during a rolling update.", default=None,
                                        minimum=0, maximum=INT32_MAX, form=PERCENT)
    max_unavailable: int | str | None = field("Pods that may be unavailable during a rolling update.", default=None,
                                              minimum=0, maximum=INT32_MAX, form=PERCENT)


@frozen
class DisruptionBudget:
    enabled: bool | None = field("Emit a PodDisruptionBudget (default: when replicas, or autoscaling.max_replicas, > 1).", default=None)
    max_unavailable: int | str = field("Pods a voluntary disruption may take down.", default=1, minimum=0,
                                       maximum=INT32_MAX, form=PERCENT)


@frozen
class ServiceAccount:
    create: bool = field("Create the ServiceAccount (else it must exist).", default=True)
    name: str | None = field("Name (default: the model's workload name).", default=None, form=DNS_SUBDOMAIN)
    annotations: Mapping[str, str] = field("Annotations, e.g. an IAM role for IRSA.", factory=dict, keys=LABEL_KEY)


@frozen
class Security:
    hf_token: SecretRef | None = field("Hugging Face token for gated models, from a Secret.", default=None)
    api_key: SecretRef | None = field("API key the engine requires from clients, from a Secret.", default=None)
    image_pull_secrets: tuple[str, ...] = field("Secrets for pulling private images.", default=(), form=DNS_SUBDOMAIN)
    service_account: ServiceAccount = field("The pods' ServiceAccount.", factory=ServiceAccount)
    pod_security_context: Mapping[str, Any] | None = field(
        "Replaces stackc's restricted pod `securityContext`.", default=None
    )
    container_security_context: Mapping[str, Any] | None = field(
        "Replaces stackc's restricted container `securityContext`.", default=None
    )
    pod_security: Literal["restricted", "baseline", "privileged"] = field(
        "The Pod Security level the model's pods meet. `restricted`: non-root (the engine image's user), "
        "no capabilities, no privilege escalation, RuntimeDefault seccomp; `baseline`: runs as the image's "
        "user (root for most engine images), capabilities still dropped; `privileged`: stackc sets no "
        "security context at all, and `host_ipc` is allowed. Lower it only for an image that needs root.",
        default="restricted",
    )


@frozen
class Autoscaling:
    """Replica bounds and the signal an autoscaler owning the replica count scales on.

    manifests and helm emit a KEDA ScaledObject (Prometheus signals) or an HPA (`cpu`, `memory`);
    kserve sets its predictor's own autoscaling.
    """

    min_replicas: int | None = field("Fewest replicas; 0 scales to zero (needs `signal = \"router_pending\"` or "
                                     "`custom`, and the router target to hold requests while the model wakes).",
                                     default=None, minimum=0, maximum=INT32_MAX)
    max_replicas: int | None = field("Most replicas.", default=None, minimum=1, maximum=INT32_MAX)
    signal: Literal["waiting", "running", "kv_cache_usage", "tokens_per_second", "router_pending", "cpu", "memory",
                    "custom"] | None = field(
        "What to scale on: `waiting` or `running` requests per replica, `kv_cache_usage` (average fraction), "
        "`tokens_per_second` generated per replica, `router_pending` (requests the router holds for the model), "
        "`cpu` or `memory` (percent of the requests, an HPA), or `custom` (`query`).", default=None)
    metric: Literal["concurrency", "rps", "cpu", "memory"] | None = field(
        "KServe's spelling of the signal (`concurrency` and `rps` need KServe's Knative mode); use `signal` "
        "elsewhere.", default=None)
    target: int | float | None = field(
        "Target value of the signal per replica (`kv_cache_usage`: the average fraction; `cpu`, `memory`: percent).",
        default=None)
    query: str | None = field("PromQL for `signal = \"custom\"`; it must aggregate to one series (`sum(...)`).",
                              default=None)
    activation: int | float | None = field(
        "Activation threshold: the signal must exceed it before the autoscaler wakes a model at zero replicas "
        "(KEDA `activationThreshold`; default 0).", default=None)
    scale_up_seconds: int | None = field("Stabilization window before scaling up, in seconds.", default=None,
                                         minimum=0, maximum=3600)
    scale_down_seconds: int | None = field("Stabilization window before scaling down, in seconds (a cold start "
                                           "costs minutes: keep it long).", default=None, minimum=0, maximum=3600)
    prometheus: str | None = field("Prometheus server the triggers query (default: `stack.prometheus`).",
                                   default=None, form=HTTP_URL)


@frozen
class Routing:
    """How a router in front of the model's replicas picks one (the `router` target)."""

    strategy: Literal["prefix", "least_loaded", "session", "round_robin"] = field(
        "`prefix`: cache-aware, prefix hashing with bounded load; `least_loaded`: in-flight and engine "
        "queue metrics; `session`: consistent hashing on a header; `round_robin`.",
        default="prefix",
    )
    session_header: str = field("Header whose value keys `session` routing.", default="x-session-id", form=HTTP_HEADER)
    kv_events: bool = field(
        "Route on the engines' own KV-cache events (`prefix` strategy, engines that publish them, the `gateway` "
        "target): each engine publishes the blocks it stores and evicts, and the endpoint picker keeps an exact "
        "index of them instead of guessing from the prompts it sent (see `docs/kv-offload.md`).", default=False)


@frozen
class InitContainer:
    """A container that runs to completion before the engine starts (Kubernetes init container)."""

    name: str = field("Container name, unique in the pod.", form=DNS_LABEL)
    image: str = field("Image (`repository:tag` or `@sha256:` digest).")
    command: tuple[str, ...] = field("Command (default: the image's entrypoint).", default=())
    args: tuple[str, ...] = field("Arguments.", default=())
    env: Mapping[str, str | EnvSource] = field("Environment variables: strings, or tables taking the value "
                                              "from the pod, a Secret or a ConfigMap.", factory=dict, keys=ENV_NAME)
    resources: Resources = field("CPU and memory requests and limits.", factory=Resources)
    volume_mounts: tuple[VolumeMount, ...] = field("Volumes of the pod this container mounts.", default=())
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] | None = field("Image pull policy.", default=None)
    working_dir: str | None = field("Working directory.", default=None)


@frozen
class Sidecar(InitContainer):
    """A container running next to the engine for the pod's whole life (log shippers, adapter loaders,
    exporters). By default a native sidecar: an init container with `restartPolicy: Always`, which
    starts before the engine and stops after it (Kubernetes 1.29 or later)."""

    ports: tuple[ContainerPort, ...] = field("Ports it listens on.", default=())
    probes: Probes = field("Its probes (each needs `path`, `tcp` or `exec`, and a `port` unless `exec`).",
                           factory=Probes)
    native: bool = field("Run as a native sidecar (an init container with `restartPolicy: Always`); false "
                         "makes it a plain container of the pod, for clusters before Kubernetes 1.29.", default=True)


@frozen
class DisaggregationRole:
    """What one role (prefill or decode) of a disaggregated model sets for itself; unset fields inherit
    the model's."""

    replicas: int | None = field("Replicas (pods) of this role.", default=None, minimum=0, maximum=INT32_MAX)
    accelerators: Accelerators | None = field("Accelerators per pod of this role.", default=None)
    resources: Resources | None = field("CPU, memory and other resources of this role's engine.", default=None)
    tensor_parallel: int | None = field("Tensor-parallel degree of this role (vLLM's NIXL connector transfers "
                                        "between different degrees).", default=None, minimum=1, maximum=INT32_MAX)
    nodes: int | None = field("Pods one replica of this role spans (`serving.nodes`).", default=None, minimum=1,
                              maximum=INT32_MAX)
    autoscaling: Autoscaling | None = field("Autoscaling of this role (replaces the model's).", default=None)
    engine_args: tuple[str, ...] = field("Arguments appended after the model's `engine_args` on this role.",
                                         default=())
    env: Mapping[str, str | EnvSource] = field("Environment variables of this role, over the model's.",
                                              factory=dict, keys=ENV_NAME)
    scheduling: Scheduling | None = field("Where this role's pods may run (replaces the model's).", default=None)
    annotations: Mapping[str, str] = field("Annotations on this role's pods, over the model's.", factory=dict,
                                           keys=LABEL_KEY)


@frozen
class Disaggregation:
    """Prefill/decode disaggregation: the model runs as two roles, prefill pods computing the prompt's KV
    cache and decode pods generating from it, with their own replicas, resources and scale. A router or
    gateway sends each request to both (see `docs/disaggregation.md`)."""

    connector: Literal["nixl", "lmcache", "mooncake"] = field(
        "How the KV cache moves from prefill to decode: vLLM `nixl` (its NixlConnector) or `lmcache` (LMCache's "
        "P/D over NIXL; the image must include LMCache); SGLang `nixl` or `mooncake` "
        "(`--disaggregation-transfer-backend`).", default="nixl")
    kv_port: int | None = field(
        "The KV-transfer port on the pods (default: vLLM NIXL's side channel 5600, LMCache's receiver 55555, "
        "SGLang's bootstrap port 8998).", default=None, minimum=1, maximum=PORT_MAX)
    ib_devices: tuple[str, ...] = field("InfiniBand devices SGLang transfers over (`--disaggregation-ib-device`), "
                                        "e.g. `mlx5_0`; the pods need them as resources.", default=(),
                                        form=Form(r"^[A-Za-z0-9_:.-]+$", "a device name such as 'mlx5_0'"))
    prefill: DisaggregationRole = field("The prefill role's own settings.", factory=DisaggregationRole)
    decode: DisaggregationRole = field("The decode role's own settings.", factory=DisaggregationRole)


@frozen
class Candidate:
    """A second version of the model, deployed beside the stable one while it is tried: its own pods
    (named KEY-candidate) with the settings below over the model's, and a share of the model's requests
    that the stack's routing targets give it. Promote it by moving `traffic` to 100, then by writing its
    settings into the model and removing this table (see `docs/versions.md`)."""

    model: str | None = field("Weights of the candidate (a model source, as `model`; default: the model's).",
                              default=None)
    revision: str | None = field("Model revision of the candidate (default: the model's, unless the candidate "
                                 "names weights of its own).", default=None)
    image: str | None = field("Container image of the candidate (default: the model's).", default=None)
    engine_args: tuple[str, ...] | None = field("Engine arguments of the candidate, in place of the model's "
                                                "(default: the model's).", default=None)
    env: Mapping[str, str | EnvSource] = field("Environment variables of the candidate, over the model's.",
                                              factory=dict, keys=ENV_NAME)
    replicas: int = field("Replicas (pods) of the candidate: a fixed count, whatever the model's autoscaling.",
                          default=1, minimum=0, maximum=INT32_MAX)
    traffic: int = field("Percent of the model's requests the candidate answers (0–100).", default=0, minimum=0,
                         maximum=100)
    header: str | None = field("Requests carrying this header with `header_value` go to the candidate only "
                               "(for testers), whatever `traffic` says.", default=None, form=HTTP_HEADER)
    header_value: str = field("The value of `header` that selects the candidate.", default="true", form=LABEL_VALUE)
    mirror: bool = field("Send the candidate a copy of the requests the stable version answers (the copy's "
                         "answer is dropped): load and errors seen before any client is.", default=False)


@frozen
class Model:
    """One served model: what to serve, with which engine, on what."""

    engine: str = field("Engine plugin name (`stackc plugins` lists them), e.g. `vllm`.")
    model: str = field(
        "Model source: a Hugging Face id (`org/name` or `hf://org/name`), `s3://`, `gs://`, "
        "`pvc://CLAIM/PATH`, `oci://IMAGE`, `ollama://NAME:TAG` or an absolute path in the container."
    )
    revision: str | None = field("Model revision (branch, tag or commit).", default=None)
    served_name: str | None = field("Name the engine serves the model as (default: the model id).", default=None,
                                    form=MODEL_NAME)
    aliases: tuple[str, ...] = field("More names clients may use for this model.", default=(), form=MODEL_NAME)
    replicas: int = field("Number of replicas (pods).", default=1, minimum=0, maximum=INT32_MAX)
    port: int | None = field("Port the engine listens on (default: the engine's own).", default=None, minimum=1,
                             maximum=PORT_MAX)
    service_port: int | None = field("Port of the model's Service (default: the engine's port).", default=None,
                                     minimum=1, maximum=PORT_MAX)
    ports: tuple[ContainerPort, ...] = field("More ports the engine container opens (KV transfer, side APIs).",
                                             default=())
    enabled: bool = field("Set false to keep a model in the spec without deploying it.", default=True)
    accelerators: Accelerators = field("Accelerators per replica.", factory=Accelerators)
    resources: Resources = field("CPU, memory and other container resources.", factory=Resources)
    serving: Serving = field("Engine-neutral serving parameters.", factory=Serving)
    engine_args: tuple[str, ...] = field("Arguments appended verbatim to the engine's command line.", default=())
    engine_options: Mapping[str, Any] = field(
        "Options only one engine understands; their keys are listed per engine.", factory=dict
    )
    env: Mapping[str, str | EnvSource] = field(
        "Extra environment variables: strings, or tables taking the value from the pod, a Secret or a ConfigMap "
        "(`env.POD_IP = { field = \"status.podIP\" }`).", factory=dict, keys=ENV_NAME)
    secret_env: Mapping[str, SecretRef] = field("Environment variables read from Secrets.", factory=dict, keys=ENV_NAME)
    image: str | None = field("Container image override (`repository:tag` or `@sha256:` digest).", default=None)
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] | None = field("Image pull policy.", default=None)
    cache: Cache | None = field("Model cache volume; without it the cache is an emptyDir.", default=None)
    kv_offload: KvOffload | None = field("Offload KV-cache blocks to host memory (engines that can).", default=None)
    disaggregation: Disaggregation | None = field(
        "Serve the model as separate prefill and decode roles (engines that can).", default=None)
    candidate: Candidate | None = field("A second version tried beside this one, with a share of its traffic.",
                                        default=None)
    shm_size: str | None = field(
        "Size of the in-memory `/dev/shm` (default: derived from tensor parallelism when > 1).", default=None,
        form=QUANTITY,
    )
    scheduling: Scheduling = field("Where pods may run.", factory=Scheduling)
    probes: Probes = field("Overrides of the engine's probes.", factory=Probes)
    rollout: Rollout = field("How updates roll out.", factory=Rollout)
    termination_grace_seconds: int | None = field("Seconds to drain in-flight requests on shutdown.", default=None,
                                                  minimum=0)
    disruption_budget: DisruptionBudget = field("PodDisruptionBudget settings.", factory=DisruptionBudget)
    routing: Routing = field("How routers pick a replica.", factory=Routing)
    autoscaling: Autoscaling = field("Autoscaling bounds and signal (default: fixed `replicas`).", factory=Autoscaling)
    security: Security = field("Secrets, identities and security contexts.", factory=Security)
    labels: Mapping[str, str] = field("Extra labels on the model's pods and objects.", factory=dict,
                                      keys=LABEL_KEY, form=LABEL_VALUE)
    annotations: Mapping[str, str] = field("Extra annotations on the model's pods.", factory=dict, keys=LABEL_KEY)
    extra_volumes: tuple[Mapping[str, Any], ...] = field("Kubernetes volumes added to the pod, as is.", default=())
    extra_volume_mounts: tuple[Mapping[str, Any], ...] = field(
        "Kubernetes volumeMounts added to the engine container, as is.", default=()
    )
    init_containers: tuple[InitContainer, ...] = field("Containers run to completion before the engine.",
                                                       default=())
    sidecars: tuple[Sidecar, ...] = field("Containers running next to the engine.", default=())
    host_ipc: bool = field("Share the node's IPC namespace (some multi-GPU setups); needs "
                           "`security.pod_security = \"privileged\"`.", default=False)
    host_pid: bool = field("Share the node's process namespace (CUDA IPC between the GPUs of a node, as "
                           "production-stack's P/D pods do); needs `security.pod_security = \"privileged\"`.",
                           default=False)


@frozen
class NetworkPolicy:
    """A NetworkPolicy per model: its pods accept only the stack's own callers and metric scrapers."""

    enabled: bool = field("Emit the policies (with the targets that deploy models).", default=True)
    metrics_namespace: str = field("Namespace whose pods may scrape the models' metrics.", default="monitoring",
                                   form=DNS_LABEL)
    allow_from: tuple[Mapping[str, Any], ...] = field(
        "More NetworkPolicy peers allowed to call the models (with a router or gateway in the stack, only these "
        "and them; without either, the serving port stays open).", default=())


@frozen
class KvCacheServer:
    """LMCache's cache server: one store of KV blocks the stack's models share (`kv_offload.remote`), so a
    prefix one replica computed is fetched by the others instead of computed again. One replica: a second
    would hold a separate store behind the same Service."""

    image: str = field("Image with LMCache's `lmcache_server` (e.g. `lmcache/vllm-openai:TAG`; pin a tested tag).")
    executable: str = field("The server program in the image.", default="/opt/venv/bin/lmcache_server",
                            form=Form(r"^\S+$", "a program name or path without spaces"))
    port: int = field("Port the server listens on (and its Service's).", default=8080, minimum=1, maximum=PORT_MAX)
    serde: Literal["naive", "cachegen"] = field(
        "How engines encode blocks for the server (`LMCACHE_REMOTE_SERDE`): raw tensors, or CacheGen-compressed.",
        default="naive")
    resources: Resources = field("CPU and memory of the server (it keeps the blocks in memory: size its memory "
                                 "for them).", factory=Resources)
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] | None = field("Image pull policy.", default=None)
    run_as_user: int = field("Non-root user the server runs as (Pod Security restricted).", default=1000,
                             minimum=1, maximum=INT32_MAX)


@frozen
class EnginesService:
    """``[stack.engines_service]``: one Service over the serving pods of every model of the stack (LMStack's
    ``engine-service``), next to each model's own. It balances without knowing models apart: a client
    reaching it must send a model each engine serves, or put a router in front."""

    name: str | None = field("Name of the Service (default: `<stack>-engines`).", default=None, form=DNS_LABEL)
    port: int | None = field("Its port (default: the models' Service port, which must then agree).", default=None,
                             minimum=1, maximum=PORT_MAX)


@frozen
class Stack:
    name: str = field("Stack name: prefixes object names and names the output folder.", form=NAME)
    namespace: str = field("Namespace every object goes to.", default="default", form=NAME)
    labels: Mapping[str, str] = field("Labels added to every object.", factory=dict, keys=LABEL_KEY, form=LABEL_VALUE)
    annotations: Mapping[str, str] = field("Annotations added to every object.", factory=dict, keys=LABEL_KEY)
    targets: tuple[str, ...] = field("Target plugins to build (`stackc plugins` lists them).", default=("manifests",))
    network_policy: NetworkPolicy = field("Who may reach the model servers.", factory=NetworkPolicy)
    prometheus: str = field("Prometheus server the models' KEDA triggers query.",
                            default="http://prometheus-operated.monitoring.svc:9090", form=HTTP_URL)
    shared_cache: SharedCache | None = field("A cache volume the models share (weights downloaded once per stack).",
                                             default=None)
    kv_cache_server: KvCacheServer | None = field(
        "A KV-cache server the models share (`kv_offload.remote`), deployed with the models.", default=None)
    engines_service: EnginesService | None = field(
        "One Service over every model's serving pods (each pod labelled `stackc.dev/engines-service`).",
        default=None)
    extra_objects: tuple[Mapping[str, Any], ...] = field(
        "Kubernetes objects stackc does not model, emitted as written into the stack's namespace (each needs "
        "`apiVersion`, `kind` and `metadata.name`; no Secrets with data: reference Secrets instead).", default=())


@frozen
class Spec:
    """A whole stack spec after overlays, `--set` and `[defaults]` have been applied."""

    version: Literal[1] = field("Spec format version; must be 1.")
    stack: Stack = field("The stack as a whole.")
    models: Mapping[str, Model] = field("Models keyed by name (lowercase letters, digits and '-').")
    targets: Mapping[str, Mapping[str, Any]] = field(
        "Per-target options, e.g. `[targets.manifests]`; keys are listed per target.", factory=dict
    )
