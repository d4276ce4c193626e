"""Gateway API Inference Extension: per model an InferencePool with its own endpoint picker (EPP),
an HTTPRoute matching the model's names, and one Gateway for the stack (created or referenced).

Several pools in one stack: each model gets its own pool, picker, config and route. A prefill/decode-
disaggregated model gets one pool over both roles' pods and a picker with a P/D profile: it picks a
decode pod and names a prefill pod to the P/D sidecar lowering put on decode pods.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Literal

import attrs

from stackc import hookimpl, kube
from stackc.diagnostics import Diagnostic, Severity, did_you_mean
from stackc.output.render import to_yaml
from stackc.plan import images
from stackc.plan.model import RESTRICTED_CONTAINER, RESTRICTED_POD, Caller, Component, Exporter, Plan
from stackc.records import frozen
from stackc.registry import Artifact, Registry
from stackc.spec.model import (
    DNS_LABEL,
    DNS_SUBDOMAIN,
    HOSTNAME,
    INT32_MAX,
    LABEL_KEY,
    LABEL_VALUE,
    Form,
)

EPP_IMAGE = images.ENDPOINT_PICKER.image
POOL_GROUP = "inference.networking.k8s.io"
CONFIG_FILE = "default-plugins.yaml"
#: the approximate prefix-cache scorer hashes prompts in blocks of this many characters (its default)
PREFIX_BLOCK_CHARS = 64
#: characters per token the picker's sizing rule assumes (as the router's ``CHARS_PER_TOKEN``)
CHARS_PER_TOKEN = 4
#: llm-d's producer of prefix matches from the engines' KV events, which the prefix-cache scorer reads by name
PRECISE_PRODUCER = "precise-prefix-cache-producer"
#: Gateway API limits: 64 matches in one rule, 128 in one route
MATCHES_PER_RULE = 64
MATCHES_PER_ROUTE = 128
# Gateway API's Duration (GEP-2257), as its CRDs spell the pattern
GATEWAY_DURATION = Form(r"^([0-9]{1,5}(h|m|s|ms)){1,4}$", "a Gateway API duration such as '600s' or '1h30m'")
_WEIGHT = {"minimum": 0, "maximum": INT32_MAX}


@frozen
class Listener:
    name: str = attrs.field(metadata={"doc": "Listener name.", "form": DNS_SUBDOMAIN})
    port: int = attrs.field(metadata={"doc": "Port.", "minimum": 1, "maximum": 65535})
    protocol: Literal["HTTP", "HTTPS"] = attrs.field(default="HTTP", metadata={"doc": "`HTTP` or `HTTPS`."})
    hostname: str | None = attrs.field(default=None, metadata={"doc": "Host name to match.", "form": HOSTNAME})
    tls_secret: str | None = attrs.field(default=None, metadata={"doc": "Certificate Secret for HTTPS.",
                                                                 "form": DNS_SUBDOMAIN})


@frozen
class Scorers:
    """Weights of the endpoint picker's scorers (llm-d's defaults: prefix 3, queue 2, KV 2)."""

    prefix_cache: int = attrs.field(default=3, metadata={"doc": "Prefer replicas holding the prompt's prefix.",
                                                         **_WEIGHT})
    kv_cache_utilization: int = attrs.field(default=2, metadata={"doc": "Prefer replicas with free KV cache.", **_WEIGHT})
    queue: int = attrs.field(default=2, metadata={"doc": "Prefer replicas with short queues.", **_WEIGHT})
    lora_affinity: int = attrs.field(default=1, metadata={
        "doc": "Prefer replicas with the request's LoRA adapter loaded (pickers of models with adapters).", **_WEIGHT})


@frozen
class GatewayOptions:
    """``[targets.gateway]``."""

    gateway_name: str | None = attrs.field(default=None, metadata={"doc": "Gateway name (default: STACK-gateway).",
                                                                   "form": DNS_SUBDOMAIN})
    create_gateway: bool = attrs.field(default=True, metadata={"doc": "Create the Gateway (else reference it)."})
    gateway_namespace: str | None = attrs.field(
        default=None, metadata={"doc": "Namespace of a referenced Gateway (default: the stack's).", "form": DNS_LABEL})
    gateway_class: str = attrs.field(default="istio", metadata={"doc": "GatewayClass of a created Gateway.",
                                                                "form": DNS_SUBDOMAIN})
    listeners: tuple[Listener, ...] = attrs.field(
        factory=lambda: (Listener("http", 80),), metadata={"doc": "Listeners of a created Gateway.", "min_items": 1})
    epp_image: str = attrs.field(default=EPP_IMAGE, metadata={"doc": "Endpoint-picker image."})
    picker_replicas: int = attrs.field(default=1, metadata={
        "doc": "Endpoint-picker pods per model. Above 1 they elect a leader (`--ha-enable-leader-election`, a "
               "Lease), which alone serves: a standby takes over when it fails.", "minimum": 1, "maximum": 10})
    failure_mode: Literal["FailClose", "FailOpen"] = attrs.field(
        default="FailClose", metadata={"doc": "What the gateway does when the picker is down."})
    scorers: Scorers = attrs.field(factory=Scorers, metadata={"doc": "Scorer weights."})
    priorities: Mapping[str, int] = attrs.field(
        factory=dict, metadata={"doc": "Model name -> InferenceObjective priority (higher is served first).",
                                "minimum": -INT32_MAX - 1, "maximum": INT32_MAX})
    envoy_extension_policy: bool = attrs.field(
        default=False, metadata={"doc": "Also attach the picker with an Envoy Gateway EnvoyExtensionPolicy."})
    extension_policy_target: Literal["HTTPRoute", "Gateway"] = attrs.field(default="HTTPRoute", metadata={
        "doc": "What the EnvoyExtensionPolicy attaches to: each model's HTTPRoute, or the Gateway itself (a stack "
               "of one model, with the Gateway in the stack's namespace)."})
    request_timeout: str = attrs.field(default="600s", metadata={"doc": "HTTPRoute request timeout.",
                                                                 "form": GATEWAY_DURATION})
    proxy_labels: Mapping[str, str] = attrs.field(factory=dict, metadata={
        "doc": "Labels of the gateway's proxy pods, which the models' NetworkPolicies admit (default: "
               "`gateway.networking.k8s.io/gateway-name` = the Gateway, as Istio and kgateway label them; with "
               "`envoy_extension_policy`, Envoy Gateway's `gateway.envoyproxy.io/owning-gateway-name`).",
        "keys": LABEL_KEY, "form": LABEL_VALUE})
    proxy_namespace: str | None = attrs.field(default=None, metadata={
        "doc": "Namespace of the proxy pods (default: the Gateway's; `envoy-gateway-system` with "
               "`envoy_extension_policy`).", "form": DNS_LABEL})


class GatewayTarget:
    name = "gateway"
    description = "Gateway API Inference Extension: an InferencePool and endpoint picker per model, HTTPRoutes, a Gateway"
    #: a candidate version gets a pool of its own, and a share of the model's HTTPRoute
    splits_traffic = True
    options_type = GatewayOptions
    #: routes match every alias to the model's pool; an InferenceModelRewrite renames it for the engine
    serves_aliases = True
    #: models with ``routing.kv_events`` publish their KV events to the endpoint picker
    routes_on_kv_events = True
    #: the P/D picker names a prefill pod in a header; llm-d's sidecar on the decode pods runs that hop
    proxies_pd_decode = True

    def check(self, plan: Plan, options: GatewayOptions) -> Iterator[Diagnostic]:
        yield from kube.file_clashes(plan, self.name, ("kustomization.yaml", "gateway.yaml"),
                                     lambda component: f"{component.key}.yaml")
        keys = [component.key for component in plan.components]
        for name in sorted(options.priorities):
            if name not in keys:
                yield Diagnostic("E060", f"unknown model '{name}' in priorities", ("targets", "gateway", "priorities", name),
                                 did_you_mean(name, keys) or "keys are model names from [models]")
        seen_names: set[str] = set()
        seen_bindings: set[tuple[int, str, str | None]] = set()
        for index, listener in enumerate(options.listeners):
            # the Gateway's own rules: names and (port, protocol, hostname) unique, certificates only
            # on HTTPS listeners, and HTTPS needs one
            where = ("targets", "gateway", "listeners", index)
            binding = (listener.port, listener.protocol, listener.hostname)
            if listener.name in seen_names:
                yield Diagnostic("E062", f"a second listener named '{listener.name}'", (*where, "name"),
                                 "give each listener its own name")
            elif binding in seen_bindings:
                yield Diagnostic("E062", "a second listener on the same port, protocol and hostname", (*where, "port"),
                                 "change its port or hostname, or remove it")
            seen_names.add(listener.name)
            seen_bindings.add(binding)
            if listener.tls_secret and listener.protocol != "HTTPS":
                yield Diagnostic("E062", "a certificate Secret needs protocol = \"HTTPS\"",
                                 ("targets", "gateway", "listeners", index, "tls_secret"), 'set protocol = "HTTPS"')
            elif listener.protocol == "HTTPS" and not listener.tls_secret:
                yield Diagnostic("E062", "an HTTPS listener needs its certificate Secret",
                                 ("targets", "gateway", "listeners", index, "protocol"), "set tls_secret")
        for component in plan.components:
            if component.topology.kind == "ray_cluster":
                # the picker chooses a pod by its engine's queue, but Ray Serve's proxy on that pod hands the
                # request to any replica in the cluster: the choice would not hold
                yield Diagnostic("E118", "the gateway's endpoint picker routes to pods by their engine's load; a Ray "
                                 "cluster's proxies route between replicas themselves", ("models", component.key, "engine"),
                                 f"reach it through the router target, or route to KubeRay's Service "
                                 f"'{component.endpoint.service}' (port {component.endpoint.service_port})")
            roles = component.disaggregation
            if roles is not None and roles.protocol != "kv_transfer_params" and roles.role == "decode":
                yield Diagnostic("E106", f"the gateway's P/D sidecar drives vLLM's NIXL connector; model "
                                 f"'{component.key}' joins its roles by '{roles.protocol}' ({component.engine})",
                                 ("models", component.key, "disaggregation", "connector"),
                                 'use engine = "vllm" with connector = "nixl", or the router target instead of gateway')
            if roles is not None and component.topology.kind == "leader_worker":
                # one pool over both roles can't tell a group's leaders from its workers and single pods
                yield Diagnostic("E106", f"the gateway pools both roles of model '{component.key}' by their model "
                                 f"labels; its {roles.role} role spans several nodes, whose workers serve nothing",
                                 ("models", component.key, "disaggregation", roles.role, "nodes"),
                                 "keep disaggregated roles on one node each with the gateway, or use the router target")
        yield from _extension_policy_problems(plan, options)
        for component in pooled(plan):
            version = component.candidate
            if version is not None and version.mirror and version.traffic:
                yield Diagnostic("W061", f"an HTTPRoute mirrors every request of the rule it filters: the "
                                 f"candidate's own {version.traffic} % are sent to it twice", ("models", component.key,
                                                                                           "candidate", "mirror"),
                                 "mirror with traffic = 0 (try the candidate on copies first), or drop mirror",
                                 Severity.WARNING)
        if options.scorers.lora_affinity != Scorers().lora_affinity and not any(
                c.endpoint.adapters for c in kube.models(plan)):
            yield Diagnostic("W060", "no model has LoRA adapters: no picker runs the LoRA-affinity scorer",
                             ("targets", "gateway", "scorers", "lora_affinity"), "drop it", Severity.WARNING)
        for component in kube.models(plan):
            candidate = kube.candidate(plan.components, component.key)
            # a tester's header doubles the matches: each name with it (to the candidate), and without
            count = len(model_names(component)) * (2 if candidate is not None and candidate.candidate.header else 1)
            if count > MATCHES_PER_ROUTE:
                yield Diagnostic("E061", f"{count} names for one model; an HTTPRoute matches at most {MATCHES_PER_ROUTE}",
                                 ("models", component.key, "aliases"), "drop aliases or LoRA adapters, or use the router target")

    def callers(self, plan: Plan, options: GatewayOptions) -> Iterator[Caller]:
        """The gateway's proxies send the requests; each model's endpoint picker scrapes its metrics."""
        yield Caller(*proxy_pods(plan, options))
        for component in pooled(plan):
            # a pool's picker reaches its own version's pods only
            own = {"component": component.key, "candidate": component.candidate is not None}
            yield Caller(picker_selector(plan, component), port="metrics", **own)
            if component.endpoint.kv_events_port is not None:
                # it subscribes to each pod's KV events, and tokenizes prompts through the engine's render API
                yield Caller(picker_selector(plan, component), port="kv_events", **own)
                yield Caller(picker_selector(plan, component), **own)

    def exporters(self, plan: Plan, options: GatewayOptions) -> Iterator[Exporter]:
        """Each model's endpoint picker exports its scheduling metrics on its metrics port."""
        for component in pooled(plan):
            yield Exporter(f"{kube.version_key(component)}-endpoint-picker", picker_selector(plan, component), "metrics")

    def emit(self, plan: Plan, options: GatewayOptions) -> Iterator[Artifact]:
        return kube.kustomized(self._objects(plan, options))

    def _objects(self, plan: Plan, options: GatewayOptions) -> Iterator[Artifact]:
        gateway = gateway_name(plan, options)
        if options.create_gateway:
            yield Artifact("gateway.yaml", (gateway_object(plan, gateway, options),))
        for component in pooled(plan):
            where = component.key if component.candidate is None else kube.folder(component)
            for kind, obj in model_objects(plan, component, gateway, options):
                yield Artifact(f"{where}/{kind}.yaml", (obj,))


def _extension_policy_problems(plan: Plan, options: GatewayOptions) -> Iterator[Diagnostic]:
    """An EnvoyExtensionPolicy on the Gateway sends every request through one picker, and may only name a
    Gateway of its own namespace."""
    where = ("targets", "gateway", "extension_policy_target")
    if options.extension_policy_target != "Gateway":
        return
    if not options.envoy_extension_policy:
        yield Diagnostic("E063", "extension_policy_target places the EnvoyExtensionPolicy, which is off",
                         where, "set envoy_extension_policy = true, or drop extension_policy_target")
    if len(kube.models(plan)) > 1:
        yield Diagnostic("E063", "a policy on the Gateway sends every model's requests to one model's picker: "
                         f"the stack has {len(kube.models(plan))} models", where,
                         'keep extension_policy_target = "HTTPRoute" (a policy per model\'s route)')
    if options.gateway_namespace not in (None, plan.stack.namespace):
        yield Diagnostic("E063", f"an EnvoyExtensionPolicy names a Gateway of its own namespace only; the Gateway is "
                         f"in '{options.gateway_namespace}'", where, 'use extension_policy_target = "HTTPRoute"')


def gateway_name(plan: Plan, options: GatewayOptions) -> str:
    return options.gateway_name or f"{plan.stack.name}-gateway"


def proxy_pods(plan: Plan, options: GatewayOptions) -> tuple[dict[str, str], str]:
    """The proxies' labels and namespace: as set, else as the implementation labels them.

    Istio and kgateway put GEP-1762's ``gateway.networking.k8s.io/gateway-name`` on proxies in
    the Gateway's namespace; Envoy Gateway runs them in ``envoy-gateway-system`` with labels of
    its own.
    """
    gateway_namespace = options.gateway_namespace or plan.stack.namespace
    if options.envoy_extension_policy:
        labels = {"gateway.envoyproxy.io/owning-gateway-name": gateway_name(plan, options),
                  "gateway.envoyproxy.io/owning-gateway-namespace": gateway_namespace}
        namespace = "envoy-gateway-system"
    else:
        labels, namespace = {"gateway.networking.k8s.io/gateway-name": gateway_name(plan, options)}, gateway_namespace
    return dict(options.proxy_labels) or labels, options.proxy_namespace or namespace


def pooled(plan: Plan) -> Iterator[Component]:
    """What gets a pool and a picker: each model as clients reach it, and its candidate version."""
    for component in kube.models(plan):
        yield component
        candidate = kube.candidate(plan.components, component.key)
        if candidate is not None:
            yield candidate


def pool_name(plan: Plan, component: Component) -> str:
    return f"{plan.stack.name}-{kube.version_key(component)}"


def picker_selector(plan: Plan, component: Component) -> dict[str, str]:
    return {"app.kubernetes.io/name": f"{kube.version_key(component)}-epp", "app.kubernetes.io/instance": plan.stack.name}


def model_names(component: Component) -> tuple[str, ...]:
    """Every name a client may send for a model: what its engine serves, the aliases, then its LoRA
    adapters (the engine serves those under their own names, so the picker leaves them as they are)."""
    endpoint = component.endpoint
    return tuple(dict.fromkeys((*endpoint.served_names, *endpoint.aliases, *(a.name for a in endpoint.adapters))))


def gateway_object(plan: Plan, name: str, options: GatewayOptions) -> dict:
    listeners = []
    for listener in options.listeners:
        item: dict[str, Any] = {"name": listener.name, "port": listener.port, "protocol": listener.protocol}
        if listener.hostname:
            item["hostname"] = listener.hostname
        if listener.tls_secret:
            item["tls"] = {"mode": "Terminate", "certificateRefs": [{"kind": "Secret", "name": listener.tls_secret}]}
        listeners.append(item)
    labels = kube.stack_labels(plan.stack)
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
            "metadata": kube.metadata(plan.stack, name, labels),
            "spec": {"gatewayClassName": options.gateway_class, "listeners": listeners}}


def picker_config(options: GatewayOptions, adapters: bool = False, disaggregated: bool = False,
                  kv_events: tuple[dict, ...] = (), kv_tokens: int | None = None) -> dict:
    """The picker's scorers; with LoRA adapters, also the one that reads which replica has which loaded.

    With ``kv_events`` (the plugins ``precise_prefix`` returns), the prefix-cache scorer reads the precise
    producer's index of the engines' KV events instead of guessing from the prompts the picker sent.

    Disaggregated: a ``prefill`` and a ``decode`` profile, each filtering pods by their ``llm-d.ai/role``,
    and the disaggregation profile handler running both for every request (``always-disagg-pd-decider``,
    declared before the handler); the headers handler tells the decode pod's sidecar the prefill pod.

    ``kv_tokens`` (the fit check's KV tokens per replica) sizes the approximate prefix index per pod as
    the picker's docs say: tokens × characters per token ÷ characters per block, not its fixed default.
    """
    scorers = options.scorers
    lora = [("lora-affinity-scorer", scorers.lora_affinity)] if adapters else []
    weighted = [("queue-scorer", scorers.queue), ("kv-cache-utilization-scorer", scorers.kv_cache_utilization),
                ("prefix-cache-scorer", scorers.prefix_cache), *lora]
    scored = [*({"pluginRef": name, "weight": weight} for name, weight in weighted), {"pluginRef": "max-score-picker"}]
    plugins = [*({"type": name} for name, _ in weighted), {"type": "max-score-picker"}]
    if kv_tokens and not kv_events:
        capacity = {"lruCapacityPerServer": max(1, kv_tokens * CHARS_PER_TOKEN // PREFIX_BLOCK_CHARS)}
        plugins = [{**plugin, "parameters": capacity} if plugin["type"] == "prefix-cache-scorer" else plugin
                   for plugin in plugins]
    if kv_events:
        plugins = [*kv_events, *({**plugin, "parameters": {"prefixMatchInfoProducerName": PRECISE_PRODUCER}}
                                 if plugin["type"] == "prefix-cache-scorer" else plugin for plugin in plugins)]
    if not disaggregated:
        return {"apiVersion": "llm-d.ai/v1alpha1", "kind": "EndpointPickerConfig",
                "plugins": [*plugins, {"type": "single-profile-handler"}],
                **({"dataLayer": {"sources": [{"pluginRef": "endpoint-notification-source",
                                               "extractors": [{"pluginRef": PRECISE_PRODUCER}]}]}}
                   if kv_events else {}),
                "schedulingProfiles": [{"name": "default", "plugins": scored}]}
    return {
        "apiVersion": "llm-d.ai/v1alpha1", "kind": "EndpointPickerConfig",
        "plugins": [*plugins, {"type": "prefill-filter"}, {"type": "decode-filter"},
                    {"type": "disagg-headers-handler"}, {"type": "always-disagg-pd-decider"},
                    {"type": "disagg-profile-handler",
                     "parameters": {"deciders": {"prefill": "always-disagg-pd-decider"}}}],
        "schedulingProfiles": [{"name": role, "plugins": [{"pluginRef": f"{role}-filter"}, *scored]}
                               for role in ("prefill", "decode")],
    }


def precise_prefix(plan: Plan, component: Component) -> tuple[dict, ...]:
    """llm-d's precise prefix-cache pipeline for a model whose engines publish KV events: the token producer
    tokenizes each prompt through the engine's own render API (the model's Service; the engine's tokenizer and
    its credentials, none in the picker), and the producer dials every pod of the pool on its KV-event port,
    keeping an index of the blocks each holds. It recomputes block keys from the events' tokens, so the
    engines' block size and hash seed need not match its own."""
    events = component.endpoint.kv_events_port
    if events is None:
        return ()
    endpoint = component.endpoint
    url = f"http://{endpoint.service}.{plan.stack.namespace}.svc:{endpoint.public_port or endpoint.service_port}"
    return ({"type": "token-producer", "parameters": {"modelName": endpoint.served_names[0], "vllm": {"url": url}}},
            {"type": "endpoint-notification-source"},
            {"type": PRECISE_PRODUCER, "parameters": {"kvEventsConfig": {
                "topicFilter": "kv@", "discoverPods": True, "podDiscoveryConfig": {"socketPort": events.number}}}})


def model_objects(plan: Plan, component: Component, gateway: str, options: GatewayOptions) -> Iterator[tuple[str, dict]]:
    stack = plan.stack
    pool = pool_name(plan, component)
    epp = f"{pool}-epp"
    # a disaggregated model's pool holds both roles' pods: the picker's filters tell them apart
    pods = kube.without_role(component.endpoint.selector)
    labels_of_pool = kube.without_role(component.labels)
    selector = picker_selector(plan, component)
    labels = {**kube.stack_labels(stack), **selector, "app.kubernetes.io/component": "endpoint-picker"}
    yield "inferencepool", {
        "apiVersion": f"{POOL_GROUP}/v1", "kind": "InferencePool",
        "metadata": kube.metadata(stack, pool, labels_of_pool),
        "spec": {
            "selector": {"matchLabels": pods},
            "targetPorts": [{"number": component.endpoint.port.number}],
            "endpointPickerRef": {"name": epp, "port": {"number": 9002}, "failureMode": options.failure_mode},
        },
    }
    yield "epp-configmap", {"apiVersion": "v1", "kind": "ConfigMap", "metadata": kube.metadata(stack, epp, labels),
                            "data": {CONFIG_FILE: to_yaml(picker_config(options, bool(component.endpoint.adapters),
                                                                         component.disaggregation is not None,
                                                                         precise_prefix(plan, component),
                                                                         component.kv_tokens_per_replica))}}
    account, role, binding = kube.api_reader(stack, epp, labels, [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": [POOL_GROUP], "resources": ["inferencepools"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": ["llm-d.ai", "inference.networking.x-k8s.io"],
         "resources": ["inferenceobjectives", "inferencemodelrewrites"], "verbs": ["get", "list", "watch"]},
        # standby pickers wait on the leader's Lease
        *([{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
            "verbs": ["get", "list", "watch", "create", "update", "patch"]}] if options.picker_replicas > 1 else []),
    ])
    yield "epp-serviceaccount", account
    yield "epp-role", role
    yield "epp-rolebinding", binding
    yield "epp-deployment", epp_deployment(plan, pool, epp, labels, selector, options)
    yield "epp-service", {
        "apiVersion": "v1", "kind": "Service", "metadata": kube.metadata(stack, epp, labels),
        "spec": {"selector": dict(selector), "ports": [
            {"name": "grpc-ext-proc", "port": 9002, "targetPort": 9002, "protocol": "TCP",
             "appProtocol": "kubernetes.io/h2c"},
            {"name": "http-metrics", "port": 9090, "targetPort": 9090, "protocol": "TCP"}]},
    }
    if component.candidate is None:  # a candidate is reached through its model's route
        yield "httproute", http_route(plan, component, pool, labels_of_pool, gateway, options)
    unserved = [name for name in component.endpoint.aliases if name not in component.endpoint.served_names]
    if unserved:  # the engine answers to one name: the picker rewrites the aliases to it
        yield "inferencemodelrewrite", {
            "apiVersion": "llm-d.ai/v1alpha2", "kind": "InferenceModelRewrite",
            "metadata": kube.metadata(stack, pool, labels_of_pool),
            "spec": {"poolRef": {"group": POOL_GROUP, "kind": "InferencePool", "name": pool},
                     "rules": [{"matches": [{"model": {"type": "Exact", "value": name}} for name in unserved],
                                "targets": [{"modelRewrite": component.endpoint.served_names[0], "weight": 1}]}]},
        }
    for name, priority in sorted(options.priorities.items()):
        if name == component.key:
            yield "inferenceobjective", {
                "apiVersion": "llm-d.ai/v1alpha2", "kind": "InferenceObjective",
                "metadata": kube.metadata(stack, pool, labels_of_pool),
                "spec": {"poolRef": {"group": POOL_GROUP, "kind": "InferencePool", "name": pool}, "priority": priority},
            }
    if options.envoy_extension_policy:
        yield "envoyextensionpolicy", {
            "apiVersion": "gateway.envoyproxy.io/v1alpha1", "kind": "EnvoyExtensionPolicy",
            "metadata": kube.metadata(stack, pool, labels_of_pool),
            "spec": {"targetRefs": [{"group": "gateway.networking.k8s.io", "kind": options.extension_policy_target,
                                     "name": pool if options.extension_policy_target == "HTTPRoute" else gateway}],
                     "extProc": [{"backendRefs": [{"name": epp, "port": 9002}],
                                  "processingMode": {"request": {"body": "Buffered"}, "response": {}}}]},
        }


def http_route(plan: Plan, component: Component, pool: str, labels: dict, gateway: str,
               options: GatewayOptions) -> dict:
    """The model's route: each of its names to its pool; with a candidate version, a share to the candidate's
    pool (backend weights), a tester's header to the candidate's pool only, and mirrored copies to its Service."""
    names = list(model_names(component))
    # the gateway (body-based routing) sets this header from the request's model
    matches = [{"headers": [{"type": "Exact", "name": "X-Gateway-Model-Name", "value": name}],
                "path": {"type": "PathPrefix", "value": "/v1/"}} for name in names]
    stable = {"group": POOL_GROUP, "kind": "InferencePool", "name": pool}
    backends, filters, tried = [stable], {}, []
    candidate = kube.candidate(plan.components, component.key)
    if candidate is not None:
        version = candidate.candidate
        reached = {"group": POOL_GROUP, "kind": "InferencePool", "name": pool_name(plan, candidate)}
        if version.traffic:
            backends = [{**stable, "weight": 100 - version.traffic}, {**reached, "weight": version.traffic}]
        if version.mirror:
            service = candidate.endpoint
            filters = {"filters": [{"type": "RequestMirror", "requestMirror": {"backendRef": {
                "name": service.service, "port": service.public_port or service.service_port}}}]}
        if version.header:
            header = {"type": "Exact", "name": version.header, "value": version.header_value}
            with_header = [{**match, "headers": [*match["headers"], header]} for match in matches]
            tried = _rules(with_header, {"backendRefs": [reached]}, options)
    return {
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": kube.metadata(plan.stack, pool, labels),
        "spec": {
            "parentRefs": [{"name": gateway, **({"namespace": options.gateway_namespace}
                                                if options.gateway_namespace else {})}],
            "rules": [*tried, *_rules(matches, {"backendRefs": backends, **filters}, options)],
        },
    }


def _rules(matches: list[dict], action: dict, options: GatewayOptions) -> list[dict]:
    """Rules of at most ``MATCHES_PER_RULE`` matches, each sending them on as ``action`` says."""
    return [{"matches": matches[start:start + MATCHES_PER_RULE], **action, "timeouts": {"request": options.request_timeout}}
            for start in range(0, len(matches), MATCHES_PER_RULE)]


def epp_deployment(plan: Plan, pool: str, name: str, labels: dict, selector: dict,
                   options: GatewayOptions) -> dict:
    grpc_probe = {"grpc": {"port": 9003, "service": "inference-extension"}, "periodSeconds": 10}
    container = {
        "name": "epp", "image": options.epp_image,
        "args": ["--pool-name", pool, "--pool-namespace", plan.stack.namespace,
                 "--pool-group", POOL_GROUP, "--config-file", f"/config/{CONFIG_FILE}", "--zap-encoder", "json",
                 "--grpc-port", "9002", "--grpc-health-port", "9003", "--metrics-port", "9090",
                 *(["--ha-enable-leader-election"] if options.picker_replicas > 1 else [])],
        "env": [{"name": "NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
        "ports": [{"name": "grpc", "containerPort": 9002, "protocol": "TCP"},
                  {"name": "grpc-health", "containerPort": 9003, "protocol": "TCP"},
                  {"name": "metrics", "containerPort": 9090, "protocol": "TCP"}],
        "readinessProbe": grpc_probe, "livenessProbe": {**grpc_probe, "initialDelaySeconds": 5},
        "resources": {"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"memory": "4Gi"}},
        "volumeMounts": [{"name": "config", "mountPath": "/config", "readOnly": True}],
        "securityContext": {**RESTRICTED_CONTAINER, "runAsNonRoot": True, "readOnlyRootFilesystem": True},
    }
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": kube.metadata(plan.stack, name, labels),
        "spec": {
            # prefix-cache state lives in the picker's memory: one serves, the others stand by
            "replicas": options.picker_replicas,
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": dict(selector)},
            "template": {"metadata": {"labels": dict(labels)}, "spec": {
                "serviceAccountName": name, "terminationGracePeriodSeconds": 130,
                "securityContext": {**RESTRICTED_POD, "runAsNonRoot": True},
                "containers": [container],
                "volumes": [{"name": "config", "configMap": {"name": name}}],
            }},
        },
    }


@hookimpl
def stackc_add_targets(registry: Registry) -> None:
    registry.add_target(GatewayTarget())
