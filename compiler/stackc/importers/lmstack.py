"""LMStack (``lmstack`` 0.0.1, production-stack's first chart): the ``servingEngineSpec`` /
``routerSpec`` shape vllm-stack grew from, with far fewer keys.

The keys both charts share are read by :mod:`production_stack`; before that, every key LMStack's
templates never read is reported (the chart ignores it, so must the import), and after it, what
LMStack renders differently replaces vllm-stack's defaults: ``IfNotPresent`` pulls, limits equal to
requests, no runtime class unless one is named (then ``nvidia``), prefix caching only when asked
for, and one PodDisruptionBudget whatever the values say.
"""

from __future__ import annotations

from typing import Any

from stackc.diagnostics import Diagnostic, Severity
from stackc.importers import production_stack
from stackc.importers.draft import Draft
from stackc.importers.values import Path, Values

DEFAULT_NAME = "lmstack"
NO_MODELS = "servingEngineSpec.modelSpec lists none"
#: the engines' Service port of the chart's values.yaml
SERVICE_PORT = 80
ENGINE = production_stack.ENGINE
ROUTER = production_stack.ROUTER
#: what LMStack's templates read, by block; anything else in the values is ignored by the chart
READ = {
    (): {"servingEngineSpec", "routerSpec"},
    ENGINE: {"labels", "modelSpec", "containerPort", "servicePort", "configs", "startupProbe", "livenessProbe",
             "maxUnavailablePodDisruptionBudget", "tolerations", "runtimeClassName"},
    ROUTER: {"replicaCount", "containerPort", "servicePort", "routingLogic", "sessionKey", "extraArgs",
             "engineScrapeInterval", "requestStatsWindow", "labels"},
}
MODEL_READ = {"name", "repository", "tag", "modelURL", "replicaCount", "vllmConfig", "lmcacheConfig", "env",
              "requestCPU", "requestMemory", "requestGPU", "pvcStorage", "pvcMatchLabels", "nodeSelectorTerms"}
VLLM_READ = {"enableChunkedPrefill", "enablePrefixCaching", "maxModelLen", "dtype", "extraArgs"}
LMCACHE_READ = {"enabled", "cpuOffloadingBufferSize", "diskOffloadingBufferSize"}
IGNORED_HINT = "production-stack's vllm-stack chart reads it: stackc import --from production-stack"


def convert(values: Values, name: str) -> Draft:
    _ignored(values)
    runtime = values.text((*ENGINE, "runtimeClassName"))
    budget = values.get((*ENGINE, "maxUnavailablePodDisruptionBudget"), (int, str)) or 1
    draft = production_stack.convert(values, name)
    for index, entry in enumerate(values.sequence((*ENGINE, "modelSpec"))):
        path = (*ENGINE, "modelSpec", index)
        key = next((k for k, origin in draft.origins.items() if origin == values.location(path)), None)
        if key is None or not isinstance(entry, dict):
            continue
        _as_lmstack(values, path, draft.models[key], runtime, budget)
    if not draft.models:
        _documented_example(values, draft)
    elif any(model.get("enabled", True) for model in draft.models.values()):
        # LMStack's one Service selects every engine pod (its own Services per model stackc adds beside it),
        # on the chart's servicePort (80 in its values.yaml)
        draft.engines_service = {"name": f"{draft.name}-engine-service",
                                 "port": values.get((*ENGINE, "servicePort"), int, SERVICE_PORT)}
    return draft


#: the model the chart's values.yaml documents (commented out) for modelSpec
EXAMPLE = {"engine": "vllm", "model": "mistralai/Mistral-7B-Instruct-v0.2", "image": "lmcache/vllm-openai:latest",
           "image_pull_policy": "IfNotPresent", "enabled": False}


def _documented_example(values: Values, draft: Draft) -> None:
    """Values with no model (the chart's own values.yaml): the chart deploys its router alone. A spec has
    models, so it keeps the chart's documented example, not deployed (enabled = false), and says so."""
    path = (*ENGINE, "modelSpec")
    key = draft.add_model("mistral", dict(EXAMPLE), "the chart's documented modelSpec example", values.location(path))
    values.dropped.append(Diagnostic(
        "W090", "the values list no model: the chart deploys its router alone; the spec keeps the chart's documented "
        f"example {key!r} with enabled = false", path, f"set models.{key} to your model and enabled = true",
        Severity.WARNING, values.location(path)))


def _ignored(values: Values) -> None:
    """Report each key LMStack's templates never read, and take it out of the values: what the chart
    ignores must not reach the spec through vllm-stack's reading of the same name."""
    blocks = list(READ.items())
    for index, _ in enumerate(values.sequence((*ENGINE, "modelSpec"))):
        path = (*ENGINE, "modelSpec", index)
        blocks += [(path, MODEL_READ), ((*path, "vllmConfig"), VLLM_READ), ((*path, "lmcacheConfig"), LMCACHE_READ)]
    for block, known in blocks:
        for key in values.keys(block):
            if key not in known:
                values.drop((*block, key), "a key the lmstack chart ignores", IGNORED_HINT)
                del values.find(block)[key]


#: the chart's own probes, which Helm merges under the values' (it has no readiness probe)
PROBES = {"startup": {"path": "/health", "initial_delay_seconds": 15, "period_seconds": 10, "failure_threshold": 60},
          "liveness": {"path": "/health", "initial_delay_seconds": 15, "period_seconds": 10, "failure_threshold": 3}}


def _as_lmstack(values: Values, path: Path, model: dict[str, Any], runtime: str | None, budget: Any) -> None:
    model["image_pull_policy"] = "IfNotPresent"
    model.pop("engine_options", None)  # LMStack runs `vllm serve` from the PATH whatever the image
    given = model.get("probes") or {}
    model["probes"] = {kind: {**default, **{k: v for k, v in (given.get(kind) or {}).items() if v is not None}}
                       for kind, default in PROBES.items()}
    model["scheduling"]["runtime_class"] = "nvidia" if runtime else None
    serving = model.get("serving", {})
    if serving.get("prefix_caching") is False:
        serving["prefix_caching"] = None  # LMStack writes the flag only to turn caching on
    requests = model["resources"].get("requests", {})
    model["resources"] = {"requests": requests, "limits": dict(requests)} if requests else {}
    model["disruption_budget"] = {"enabled": True, "max_unavailable": budget}
    if values.get((*path, "lmcacheConfig", "enabled"), bool, False):
        values.drop((*path, "lmcacheConfig", "enabled"), "LMCache through vLLM's v0 connector (LMCacheConnector), "
                    "which LMStack wires", "stackc wires LMCache for vLLM's V1 engine (kv_offload or "
                    "LMCacheConnectorV1)")
