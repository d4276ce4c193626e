"""The "Inference Stack" umbrella (eric-zadara/helm_charts ``inference-stack``): KServe
InferenceServices from ``model-serving``, an endpoint picker from ``inference-gateway``, LiteLLM
in front (installed by a sibling chart).

The chart deploys at most one InferenceService per engine — ``inferenceService`` (vLLM under
KServe's Hugging Face server), ``llamacppInferenceService`` and ``ollamaInferenceService`` —
each configured cluster-wide by its runtime block (``servingRuntime``, ``llamacppRuntime``,
``ollamaRuntime``). The chart's defaults (its values.yaml) fill what the values leave out. The
stack targets ``kserve``, and ``gateway`` when the InferencePool is on; stackc's own router
takes LiteLLM's place of routing by model name.
"""

from __future__ import annotations

from typing import Any

from stackc.diagnostics import Diagnostic, Severity
from stackc.importers.draft import Draft, model_key, quantity, tolerations
from stackc.importers.values import Path, Values

DEFAULT_NAME = "inference-stack"
NO_MODELS = "model-serving enables no inferenceService, llamacppInferenceService or ollamaInferenceService"
SERVING = ("model-serving",)
GATEWAY = ("inference-gateway",)
#: model-serving's values.yaml, as Helm merges it under the values file's
RUNTIME = {"gpuMemoryUtilization": 0.85, "maxModelLen": 16384, "enablePrefixCaching": True,
           "enableAutoToolChoice": True, "toolCallParser": "hermes"}
VLLM_SERVICE = {"name": "qwen25-1-5b", "storageUri": "hf://Qwen/Qwen2.5-1.5B-Instruct", "gpu": 1,
                "tensorParallelSize": 1, "minReplicas": 1, "maxReplicas": 3, "scaleMetric": "concurrency",
                "scaleTarget": 10, "terminationGracePeriodSeconds": 120,
                "resources": {"requests": {"cpu": "2", "memory": "8Gi"}, "limits": {"cpu": "4", "memory": "16Gi"}},
                "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]}
#: KServe's scaleMetric -> the spec's signal (concurrency: requests in flight per replica)
SIGNALS = {"concurrency": "running", "cpu": "cpu", "memory": "memory"}
PROBES = {"startup": {"initial_delay_seconds": 30, "period_seconds": 30, "timeout_seconds": 10, "failure_threshold": 30},
          "readiness": {"period_seconds": 10, "timeout_seconds": 5, "failure_threshold": 3},
          "liveness": {"period_seconds": 15, "timeout_seconds": 5, "failure_threshold": 3}}
LLAMACPP_SERVICE = {"name": "qwen25-7b-gguf", "storageUri": "s3://models/qwen2.5-7b-instruct-q4_k_m.gguf",
                    "minReplicas": 1, "maxReplicas": 3, "scaleMetric": "concurrency", "scaleTarget": 10,
                    "resources": {"requests": {"cpu": "16", "memory": "32Gi"}, "limits": {"cpu": "16", "memory": "32Gi"}}}
OLLAMA_SERVICE = {"name": "qwen3-4b-ollama", "modelTag": "qwen3:4b", "gpu": 0, "minReplicas": 1, "maxReplicas": 3,
                  "scaleMetric": "concurrency", "scaleTarget": 10}


def convert(values: Values, name: str) -> Draft:
    draft = Draft(name, targets=["kserve", "helm"])
    if not values.get((*SERVING, "enabled"), bool, True):
        values.raw(SERVING)
        return draft
    if _on(values, "inferenceService"):
        _vllm(values, draft)
    if _on(values, "llamacppInferenceService"):
        _service(values, draft, "llamacppInferenceService", LLAMACPP_SERVICE, "llamacpp")
    if _on(values, "ollamaInferenceService"):
        _service(values, draft, "ollamaInferenceService", OLLAMA_SERVICE, "ollama")
    if not draft.models:
        _none_enabled(values, draft)
    _routing(values, draft)
    _rest(values)
    return draft


def _none_enabled(values: Values, draft: Draft) -> None:
    """The chart's own values.yaml enables no InferenceService: the chart renders only its
    ClusterServingRuntimes. The spec keeps the chart's default vLLM service, not deployed (enabled = false),
    so that it builds and deploys nothing, as the chart does, and says so."""
    _vllm(values, draft)
    [(key, model)] = draft.models.items()
    model["enabled"] = False
    path = next((p for p in ((*SERVING, "inferenceService", "enabled"), (*SERVING, "enabled"), SERVING)
                 if values.has(p)), SERVING)
    values.dropped.append(Diagnostic(
        "W090", "the values enable no inferenceService, llamacppInferenceService or ollamaInferenceService: the chart "
        "deploys no model (only its ClusterServingRuntimes); the spec keeps the chart's default vLLM service "
        f"{key!r} with enabled = false", path, f"set models.{key}.enabled = true to deploy it (the chart: "
        "model-serving.inferenceService.enabled)",
        Severity.WARNING, values.location(path)))


def _on(values: Values, block: str) -> bool:
    if values.get((*SERVING, block, "enabled"), bool, False):
        return True
    values.raw((*SERVING, block))  # off, as in the chart's defaults: never rendered
    return False


def _get(values: Values, path: Path, defaults: dict[str, Any], key: str, kind: Any) -> Any:
    """A value of the block, else the chart's default for it."""
    found = values.get((*path, key), kind)
    return defaults.get(key) if found is None else found


def _common(values: Values, path: Path, defaults: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    name = _get(values, path, defaults, "name", str)
    scaling: dict[str, Any] = {"min_replicas": _get(values, path, defaults, "minReplicas", int),
                               "max_replicas": _get(values, path, defaults, "maxReplicas", int),
                               "target": _get(values, path, defaults, "scaleTarget", int)}
    metric = _get(values, path, defaults, "scaleMetric", str)
    if metric in SIGNALS:
        scaling["signal"] = SIGNALS[metric]
    else:  # rps is Knative's alone; the chart runs KServe's Standard mode
        values.drop((*path, "scaleMetric"), f"scaling on {metric}", "autoscaling.signal: running, waiting, cpu, memory")
        scaling["signal"] = "running"
    resources = {side: {k: quantity(v) for k, v in {**defaults.get("resources", {}).get(side, {}),
                                                    **values.mapping((*path, "resources", side))}.items()}
                 for side in ("requests", "limits")}
    values.raw((*path, "resources"))
    model: dict[str, Any] = {"served_name": name, "replicas": scaling["min_replicas"] or 1, "autoscaling": scaling,
                             "resources": {k: v for k, v in resources.items() if v}}
    model["scheduling"] = {
        "node_selector": {k: values.text((*path, "nodeSelector", k)) for k in values.keys((*path, "nodeSelector"))},
        "tolerations": tolerations(values, (*path, "tolerations")) if values.has((*path, "tolerations"))
        else defaults.get("tolerations", []),
        "affinity": values.raw((*path, "affinity"), dict) or None,
        "priority_class": values.text((*path, "priorityClassName")) or None}
    values.consumed.update({(*path, "enabled"), (*path, "name")})
    values.drop((*path, "timeout"), "KServe's request timeout", "stackc's router bounds requests itself")
    values.drop((*path, "annotations"), "annotations on the InferenceService")
    values.drop((*path, "autoscaling"), "Knative's scale-down delay, retention and window",
                "they act only in KServe's Knative mode; stackc's kserve target writes its own")
    return model_key(name or "model"), model


def _vllm(values: Values, draft: Draft) -> None:
    """vLLM under KServe's Hugging Face server: the runtime's flags for every model, the service's own after."""
    path, runtime = (*SERVING, "inferenceService"), (*SERVING, "servingRuntime")
    key, model = _common(values, path, VLLM_SERVICE)
    gpus = _get(values, path, VLLM_SERVICE, "gpu", int)
    model.update(engine="vllm", model=_get(values, path, VLLM_SERVICE, "storageUri", str),
                 accelerators={"count": gpus, "resource": "nvidia.com/gpu"} if gpus else None,
                 termination_grace_seconds=_get(values, path, VLLM_SERVICE, "terminationGracePeriodSeconds", int))
    tool = _get(values, runtime, RUNTIME, "enableAutoToolChoice", bool)
    fraction = _get(values, runtime, RUNTIME, "gpuMemoryUtilization", (int, float))
    model["serving"] = {"gpu_memory_fraction": float(fraction),
                        "max_context": _get(values, runtime, RUNTIME, "maxModelLen", int),
                        "prefix_caching": _get(values, runtime, RUNTIME, "enablePrefixCaching", bool) or None,
                        "tensor_parallel": _get(values, path, VLLM_SERVICE, "tensorParallelSize", int)}
    parser = _get(values, runtime, RUNTIME, "toolCallParser", str)
    extra = [values.text((*path, "extraArgs", i)) or "" for i in range(len(values.sequence((*path, "extraArgs"))))]
    model["engine_args"] = (["--enable-auto-tool-choice", f"--tool-call-parser={parser}"] if tool else []) + extra
    model["env"] = {"SAFETENSORS_FAST_GPU": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}
    model["probes"] = {kind: {"path": "/v1/models", **defaults, **{
        field: values.integer((*runtime, f"{kind}Probe", key_)) for field, key_ in PROBE_KEYS
        if values.has((*runtime, f"{kind}Probe", key_))}} for kind, defaults in PROBES.items()}
    if secret := values.text((*path, "huggingfaceSecret")):
        model["security"] = {"hf_token": {"name": secret, "key": "HF_TOKEN"}}
    elif values.get((*SERVING, "huggingface", "secretEnabled"), bool, False):
        secret = values.text((*SERVING, "huggingface", "secretName"), "hf-secret")
        model["security"] = {"hf_token": {"name": secret, "key": "HF_TOKEN"}}
        values.drop((*SERVING, "huggingface", "token"), f"the Hugging Face token written into the values; the spec "
                    f"reads it from the Secret {secret} (key HF_TOKEN), which you create",
                    f"kubectl create secret generic {secret} --from-literal=HF_TOKEN=…")
    values.raw((*SERVING, "huggingface"))
    for key_ in ("enabled", "name", "image", "tag"):
        values.consumed.add((*runtime, key_))  # stackc's kserve target writes KServe's Hugging Face runtime
    values.drop((*runtime, "resources"), "the runtime's default resources", "each model's resources apply")
    values.raw(runtime)
    draft.add_model(key, model, "model-serving.inferenceService", values.location(path))


PROBE_KEYS = (("initial_delay_seconds", "initialDelaySeconds"), ("period_seconds", "periodSeconds"),
              ("timeout_seconds", "timeoutSeconds"), ("failure_threshold", "failureThreshold"))


def _service(values: Values, draft: Draft, block: str, defaults: dict[str, Any], engine: str) -> None:
    """llama.cpp or Ollama: the model and its scaling; the runtime's tuning (LLAMA_ARG_*, OLLAMA_*) is reported."""
    path = (*SERVING, block)
    key, model = _common(values, path, defaults)
    if engine == "ollama":
        model["model"] = f"ollama://{_get(values, path, defaults, 'modelTag', str)}"
        gpus = _get(values, path, defaults, "gpu", int)
        model["accelerators"] = {"count": gpus, "resource": "nvidia.com/gpu"} if gpus else None
    else:
        model["model"] = _get(values, path, defaults, "storageUri", str)
        if account := values.text((*path, "serviceAccountName")):
            model["security"] = {"service_account": {"create": False, "name": account}}
    model["engine"] = engine
    runtime = (*SERVING, "llamacppRuntime" if engine == "llamacpp" else "ollamaRuntime")
    # the runtime's tuning applies from the chart's defaults even when the values never mention it
    where = runtime if values.has(runtime) else (*path, "enabled")
    values.drop(where, f"the {engine} runtime's tuning (image, threads, context and slots, flash attention: the "
                "chart's or these values')", "set them per model: serving.max_context, engine_args")
    values.raw(runtime)
    draft.add_model(key, model, f"model-serving.{block}", values.location(path))


def _routing(values: Values, draft: Draft) -> None:
    """The InferencePool and its endpoint picker are the gateway target's; LiteLLM's table is stackc's router."""
    if values.get((*SERVING, "inferencePool", "enabled"), bool, False) and values.get((*GATEWAY, "enabled"), bool, True):
        draft.add_target("gateway")
        for model in draft.models.values():
            model["routing"] = {"strategy": "prefix"}  # the endpoint picker's default scorers weigh the prefix
    values.raw((*SERVING, "inferencePool"))
    values.drop((*SERVING, "inferencePoolRoute"), "the chart's HTTPRoute to the pool", "the gateway target writes one")
    values.drop((*SERVING, "inferenceObjective"), "an InferenceObjective's priority")
    epp = (*GATEWAY, "epp")
    values.consumed.add((*epp, "poolName"))  # the pool is the model's, by construction
    for key in values.keys(epp):
        if key != "poolName":
            values.drop((*epp, key), f"the endpoint picker's {key}")
    values.consumed.add((*GATEWAY, "enabled"))
    values.raw((*GATEWAY, "gateway"))
    values.raw((*GATEWAY, "extensionPolicy"))
    values.consumed.add(("infrastructureReleaseName",))  # LiteLLM's release: stackc's router replaces it


def _rest(values: Values) -> None:
    values.consumed.add((*SERVING, "enabled"))
    values.drop((*SERVING, "priorityClasses"), "PriorityClasses the chart creates", "give scheduling.priority_class")
    for block in ("llamacppRuntime", "ollamaRuntime"):
        values.raw((*SERVING, block))  # runtimes of engines no service uses
