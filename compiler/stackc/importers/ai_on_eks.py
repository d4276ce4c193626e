"""ai-on-eks inference-charts: one model per release, ``inference`` + ``modelParameters``.

``inference.framework`` vllm (a Deployment running ``vllm serve``), lws-vllm (a LeaderWorkerSet
group of ``pipelineParallelSize`` pods per replica: ``serving.nodes``) or rayVllm (a KubeRay
RayService: engine ``ray-vllm`` on GPUs; on Neuron, whose Ray image is private, a Neuron
Deployment, reported); ``inference.accelerator`` gpu or neuron picks the resources block, the
Neuron engine, its toleration and scheduler. Every ``modelParameters`` key is a vLLM flag
(camelCase to kebab-case), as the chart renders it, or under Ray an engine argument (snake case).
"""

from __future__ import annotations

import json
import re
from typing import Any

from stackc.importers.commandline import DTYPES
from stackc.importers.draft import (
    Draft,
    model_key,
    probe,
    quantity,
    split_resources,
    tolerations,
)
from stackc.importers.values import Path, Values

DEFAULT_NAME = "inference"
NO_MODELS = "set model (or modelParameters.modelId)"
FRAMEWORKS = {"vllm": "vllm", "aibrix": "vllm", "rayVllm": "ray", "ray-vllm": "ray", "lws-vllm": "lws"}
#: AIBrix's gateway finds a model's pods by this label, and asks for the model by the service's name
AIBRIX_LABEL = "model.aibrix.ai/name"
SERVER = ("inference", "modelServer")
DEPLOYMENT = (*SERVER, "deployment")
#: modelParameters the spec types; the rest become flags verbatim
TYPED = {"tensorParallelSize": "tensor_parallel", "pipelineParallelSize": "pipeline_parallel",
         "maxModelLen": "max_context", "gpuMemoryUtilization": "gpu_memory_fraction",
         "maxNumSeqs": "max_concurrent_sequences", "quantization": "quantization"}
ZONE = "topology.kubernetes.io/zone"
NEURON_TOLERATION = {"key": "aws.amazon.com/neuron", "operator": "Exists", "effect": "NoSchedule"}
GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}


def convert(values: Values, name: str) -> Draft:
    framework = values.text(("inference", "framework"), "vllm")
    accelerator = values.text(("inference", "accelerator"), "gpu")
    draft = Draft(name)
    if framework == "nim-container":
        return _nim(values, draft)
    if framework in SERVERS:
        return _server(values, draft, framework)
    if framework not in FRAMEWORKS:
        values.error(("inference", "framework"), f"framework {framework!r} cannot be imported",
                     "the importer reads vllm, aibrix, rayVllm and lws-vllm")
        return draft
    if accelerator not in ("gpu", "neuron"):
        values.error(("inference", "accelerator"), f"accelerator {accelerator!r} cannot be imported",
                     "the importer reads gpu and neuron")
        return draft
    model_id = values.text(("model",)) or values.text(("modelParameters", "modelId"))
    copied = None
    if model_id is None and (copied := _s3_copy(values)) is not None:
        model_id = copied
    if model_id is None:
        values.consumed.add(("model",))
        return draft
    draft.namespace = values.text(("inference", "serviceNamespace"), "default")
    service = values.text(("inference", "serviceName"), "inference")
    key = model_key(service)
    ray = FRAMEWORKS[framework] == "ray" and accelerator == "gpu"
    engine = "neuron" if accelerator == "neuron" else "ray-vllm" if ray else "vllm"
    model: dict[str, Any] = {"engine": engine, "model": model_id}
    if path := values.text(("modelPath",)):
        model.update(model=path, served_name=model_id)
    elif copied is not None:  # the Job's copy in S3, served under the Hugging Face id it was copied from
        model.update(model=_s3_uri(values, copied), served_name=copied)
    repository = values.text((*SERVER, "image", "repository"), "vllm/vllm-openai")
    model["image"] = f"{repository}:{values.text((*SERVER, 'image', 'tag'), 'latest')}"
    model["image_pull_policy"] = values.text(("global", "image", "pullPolicy"), "IfNotPresent")
    if values.has((*DEPLOYMENT, "resources", accelerator)):
        model["accelerators"], model["resources"] = split_resources(values, (*DEPLOYMENT, "resources", accelerator))
    if not model.get("accelerators"):
        # Helm merges the values over the chart's block, which asks for one device: a block that sets only
        # memory (the Neuron examples) still gets it
        resource = "aws.amazon.com/neuron" if accelerator == "neuron" else "nvidia.com/gpu"
        model["accelerators"] = {"count": 1, "resource": resource}
    for other in values.keys((*DEPLOYMENT, "resources")):
        if other != accelerator:
            values.raw((*DEPLOYMENT, "resources", other))  # the chart reads only the accelerator's block
    if FRAMEWORKS[framework] == "ray":  # the chart's Serve script reads modelParameters its own way
        model["serving"], model["engine_args"], model["engine_options"] = _ray_parameters(values, ray)
    else:
        model["serving"], model["engine_args"], model["engine_options"] = _parameters(
            values, model["accelerators"], accelerator)
    if ray:
        _ray_service(values, model)
    elif FRAMEWORKS[framework] == "ray":
        _ray(values, model)
    else:
        model["replicas"] = values.integer((*DEPLOYMENT, "replicas"), 1)
    if FRAMEWORKS[framework] == "lws":
        # a LeaderWorkerSet group of pipelineParallelSize pods per replica, each group in a zone of its own
        model["serving"]["nodes"] = model["serving"].get("pipeline_parallel") or 1
    model["scheduling"] = _scheduling(values, accelerator, framework, draft.name, key)
    model["shm_size"] = quantity(values.get((*DEPLOYMENT, "sharedMemory"), (str, int)))
    model["termination_grace_seconds"] = values.integer((*DEPLOYMENT, "terminationGracePeriodSeconds"))
    if ray:  # KubeRay probes Ray's pods itself
        for kind in ("startup", "liveness", "readiness"):
            values.drop((*DEPLOYMENT, f"{kind}Probe"), "a probe of the Ray pods", "KubeRay probes them itself")
    else:
        model["probes"] = {kind: _probe(values, (*DEPLOYMENT, f"{kind}Probe")) for kind in ("startup", "liveness",
                                                                                              "readiness")}
    env = {k: values.text((*SERVER, "env", k)) or "" for k in values.keys((*SERVER, "env"))}
    model["env"] = env
    model["security"] = _security(values)
    labels = values.mapping(("extraLabels",))
    model["labels"] = {k: values.text(("extraLabels", k)) for k in labels}
    if framework == "aibrix":  # the chart's vLLM Deployment, labelled and named for AIBrix's gateway
        model["labels"][AIBRIX_LABEL] = service
        model["served_name"] = service  # --served-model-name: the model's id is not a name clients send
    _unused(values)
    draft.add_model(key, model, f"inference.serviceName {service!r}", values.location(("inference",)))
    return draft


#: frameworks whose server is not an engine stackc knows: the chart's container under the command engine
SERVERS = {
    "triton-vllm": {"command": ["tritonserver"], "args": [
        "--model-repository=/models", "--grpc-port=8001", "--http-port=8000", "--metrics-port=8002",
        "--allow-grpc=true", "--allow-http=true", "--allow-metrics=true", "--log-verbose=1"],
        "ready_path": "/v2/health/ready", "alive_path": "/v2/health/live", "mount": "/models/vllm_model",
        "config_map": "triton-model-repository", "protocol": "Triton's KServe v2 protocol (/v2/models/…)"},
    "diffusers": {"command": ["/bin/sh", "-c"], "args": [
        "python3 -m uv pip install --no-cache-dir sentencepiece==0.2.0 diffusers==0.34.0 uvicorn==0.35.0 "
        "fastapi==0.116.1 && python3 /app/serve_script.py"],
        # FastAPI answers /docs only once the startup hook has loaded the pipeline
        "ready_path": "/docs", "alive_path": "/docs", "mount": "/app/serve_script.py",
        "config_map": "diffusers-serve", "protocol": "image generation (POST /v1/generations)"},
}


def _server(values: Values, draft: Draft, framework: str) -> Draft:
    """Triton with its vLLM backend, or the chart's diffusers script: the chart's container, command and
    probes under the ``command`` engine. Triton's model repository is the chart's ConfigMap, written
    here as an extra object; the diffusers script is the chart's own file, which the stack mounts."""
    server = SERVERS[framework]
    found = _gpu_container(values, draft, "the model to serve")
    if found is None:
        return draft
    service, key, model = found
    model_id = model["model"]
    model.update(engine_options={"port": 8000, "command": server["command"], "args": server["args"],
                                 "ready_path": server["ready_path"], "alive_path": server["alive_path"]},
                 shm_size="1Gi", security={}, secret_env={}, env={})
    if framework == "triton-vllm":
        parameters = {_snake(k): values.raw(("modelParameters", k)) for k in values.keys(("modelParameters",))}
        config = {"backend": "vllm", "model.json": json.dumps({**parameters, "model": model_id}, sort_keys=True)}
        draft.extra_objects.append({"apiVersion": "v1", "kind": "ConfigMap",
                                    "metadata": {"name": server["config_map"]},
                                    "data": {"config.pbtxt": TRITON_CONFIG, "model.json": config["model.json"]}})
        items = [{"key": "config.pbtxt", "path": "config.pbtxt"}, {"key": "model.json", "path": "./1/model.json"}]
        mount = {"name": "model-repository", "mountPath": server["mount"]}
        model["secret_env"]["HUGGING_FACE_HUB_TOKEN"] = {"name": "hf-token", "key": "token"}
    else:
        model["env"] = {"MODEL": model_id, "PIPELINE": values.text(("modelParameters", "pipeline")) or ""}
        values.raw(("modelParameters",))
        items = [{"key": "serve_script.py", "path": "serve_script.py"}]
        mount = {"name": "serve-script", "mountPath": server["mount"], "subPath": "serve_script.py"}
        model["secret_env"]["HUGGING_FACE_HUB_TOKEN"] = {"name": "hf-token", "key": "token"}
    script = framework == "diffusers"
    values.drop(("inference", "framework"), f"{framework}: the server speaks {server['protocol']}, not the OpenAI API "
                "stackc's router and gateway route" + ("; its script is the chart's diffusers-serve ConfigMap" if script
                                                       else ""),
                "clients call the model's Service directly" + (
                    "; keep the chart's ConfigMap diffusers-serve in the namespace (templates/diffusers-configmap.yaml):"
                    " the imported stack mounts it" if script else ""))
    model["extra_volumes"] = [{"name": mount["name"], "configMap": {"name": server["config_map"], "items": items}}]
    model["extra_volume_mounts"] = [mount]
    if values.text(("inference", "accelerator"), "gpu") != "gpu":
        values.drop(("inference", "accelerator"), "a Neuron device for a server the chart runs on GPUs only")
    model["scheduling"] = _scheduling(values, "gpu", "vllm", draft.name, key)
    model["security"] = _security(values)
    _unused(values)
    draft.add_model(key, model, f"inference.serviceName {service!r}", values.location(("inference",)))
    return draft


def _gpu_container(values: Values, draft: Draft, what: str) -> tuple[str, str, dict[str, Any]] | None:
    """The service, model key and the command-engine model the chart's own container makes (image, replicas,
    its GPU block merged over the chart's one device)."""
    model_id = values.require(("model",), str, what)
    if model_id is None:
        return None
    draft.namespace = values.text(("inference", "serviceNamespace"), "default")
    service = values.text(("inference", "serviceName"), "inference") or "inference"
    repository = values.text((*SERVER, "image", "repository"), "vllm/vllm-openai")
    model: dict[str, Any] = {
        "engine": "command", "model": model_id,
        "image": f"{repository}:{values.text((*SERVER, 'image', 'tag'), 'latest')}",
        "image_pull_policy": values.text(("global", "image", "pullPolicy"), "IfNotPresent"),
        "replicas": values.integer((*DEPLOYMENT, "replicas"), 1)}
    if values.has((*DEPLOYMENT, "resources", "gpu")):
        model["accelerators"], model["resources"] = split_resources(values, (*DEPLOYMENT, "resources", "gpu"))
    values.raw((*DEPLOYMENT, "resources"))
    model["accelerators"] = model.get("accelerators") or {"count": 1, "resource": "nvidia.com/gpu"}
    return service, model_key(service), model


TRITON_CONFIG = 'backend: "vllm"\n\ninstance_group [\n  {\n    kind: KIND_MODEL\n    count: 1\n  }\n]\n'


def _snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()


NIM = (*DEPLOYMENT, "nim")
#: the chart's nim block (values.yaml), which Helm merges under the values file's
NIM_ENV = {"NVIDIA_VISIBLE_DEVICES": "all", "NVIDIA_DRIVER_CAPABILITIES": "compute,utility",
           "NIM_CACHE_PATH": "/opt/nim/.cache"}
NIM_SECRETS = {"ngcApiKey": ("NGC_API_KEY", "ngc-api", "NGC_API_KEY"), "hfToken": ("HF_TOKEN", "hf-token", "HF_TOKEN")}
NIM_PROBES = {"liveness": ("/v1/health/live", 30), "readiness": ("/v1/health/ready", 10)}


def _nim(values: Values, draft: Draft) -> Draft:
    """``nim-container``: NVIDIA's NIM image serves the model baked into it (an OpenAI API on port 8000),
    so it runs under the ``command`` engine as the chart runs it, with the chart's NIM defaults."""
    found = _gpu_container(values, draft, "the model the NIM image serves")
    if found is None:
        return draft
    service, key, model = found
    probes = {}
    for kind, (default, period) in NIM_PROBES.items():
        here = (*NIM, f"{kind}Probe")
        probes[kind] = probe(values, here) or {}
        probes[kind] = {"initial_delay_seconds": 900, "period_seconds": period, "timeout_seconds": 10,
                        "failure_threshold": 3, **{k: v for k, v in probes[kind].items() if v is not None}}
        probes[kind]["path"] = probes[kind].get("path") or default
    model["probes"] = probes
    model["engine_options"] = {"port": 8000, "ready_path": probes["readiness"]["path"],
                               "alive_path": probes["liveness"]["path"], "metrics_path": "/v1/metrics"}
    env = dict(NIM_ENV)
    env.update({k: values.text((*NIM, "env", k)) or "" for k in values.keys((*NIM, "env"))})
    secrets = {}
    for name, (variable, secret, secret_key) in NIM_SECRETS.items():
        here = (*NIM, "secrets", name)
        secrets[variable] = {"name": values.text((*here, "name"), secret), "key": values.text((*here, "key"), secret_key)}
    model["env"], model["secret_env"] = env, secrets
    context = values.raw((*NIM, "podSecurityContext"), dict, {"fsGroup": 1000, "runAsUser": 1000, "runAsGroup": 1000})
    pulls = values.sequence(("imagePullSecrets",))
    model["security"] = {"pod_security_context": context,
                         "container_security_context": values.raw((*NIM, "securityContext"), dict),
                         "image_pull_secrets": [values.text(("imagePullSecrets", i, "name")) for i in range(len(pulls))]}
    if values.get((*NIM, "shm", "enabled"), bool, True):
        model["shm_size"] = quantity(values.get((*NIM, "shm", "sizeLimit"), (str, int))) or "1Gi"
    values.drop_unless((*NIM, "shm", "medium"), "Memory", "a /dev/shm that is not in memory")
    model["annotations"] = {k: values.text((*DEPLOYMENT, "annotations", k))
                            for k in values.keys((*DEPLOYMENT, "annotations"))}
    model["scheduling"] = _scheduling(values, "gpu", "vllm", draft.name, key)
    _unused(values)
    draft.add_model(key, model, f"inference.serviceName {service!r}", values.location(("inference",)))
    return draft


def _s3_copy(values: Values) -> str | None:
    """A file that only copies weights to S3 (``s3ModelCopy``, no ``model``): the chart renders the copy Job
    and no server. The import serves the copy instead, with vLLM streaming it from S3, and says so."""
    copied = values.text(("s3ModelCopy", "model"))
    if copied is None or not values.text(("s3ModelCopy", "s3Path")):
        return None
    values.drop(("s3ModelCopy", "model"),
                f"the chart renders only a Job (s3-copy) that copies {copied} from Hugging Face to "
                f"{_s3_uri(values, copied)}, and no server: the spec serves that copy with vLLM instead",
                "run the chart's copy Job first (stackc does not create it), or set model to an s3:// copy you have")
    return copied


def _s3_uri(values: Values, copied: str) -> str:
    """Where the chart's Job syncs the weights: ``s3://$S3_PATH/$HUGGING_FACE_MODEL/``."""
    return f"s3://{(values.text(('s3ModelCopy', 's3Path')) or '').strip('/')}/{copied}"


def _parameters(values: Values, accelerators: dict[str, Any] | None, accelerator: str,
                ray: bool = False) -> tuple[dict[str, Any], list[str], dict[str, Any]]:
    """The spec's serving fields, and the rest as flags, or under Ray as engine arguments."""
    serving: dict[str, Any] = {}
    args: list[str] = []
    options: dict[str, Any] = {}
    kwargs: dict[str, Any] = {}
    path = ("modelParameters",)
    for name in values.keys(path):
        here = (*path, name)
        value = values.get(here, (str, int, float, bool))
        if name in ("modelId", "numGpus"):  # the seed-era model id, and Ray's GPUs per actor
            continue
        if name == "gpuMemoryUtilization" and accelerator == "neuron" and value is not None:
            args += ["--gpu-memory-utilization", values.text(here) or ""]  # a flag vLLM-Neuron takes as is
        elif name in TYPED:
            serving[TYPED[name]] = (values.number(here) if name == "gpuMemoryUtilization"
                                    else value if name == "quantization" else values.integer(here))
        elif name == "enablePrefixCaching" and isinstance(value, bool):
            serving["prefix_caching"] = True if value else None  # false writes no flag: vLLM's default
        elif name == "dtype" and value in DTYPES:
            serving["dtype"] = value
        elif name == "maxNumBatchedTokens" and isinstance(value, int) and not ray:
            options["max_num_batched_tokens"] = value
        elif ray and value is not None:
            kwargs[_kebab(name).replace("-", "_")] = value
        elif isinstance(value, bool):
            if value:
                args.append(f"--{_kebab(name)}")
        elif value is not None:
            args += [f"--{_kebab(name)}", values.text(here) or ""]
    if "tensor_parallel" not in serving and accelerators:
        # the chart derives it from the devices requested (Neuron: two cores per device)
        serving["tensor_parallel"] = accelerators["count"] * (2 if accelerator == "neuron" else 1)
    if load_format := values.text(("vllm", "loadFormat")):
        if ray:
            kwargs["load_format"] = load_format
        else:
            options["load_format"] = load_format
    if kwargs:
        options["engine_kwargs"] = kwargs
    return serving, args, options


#: the chart's Ray Serve script (templates/ray-vllm-configmap.yaml), which builds vLLM's engine arguments from
#: the worker's environment, where each modelParameters key arrives under its snake-case upper name:
#: argument -> (the variable it reads, its default there)
RAY_SCRIPT = {
    "gpu_memory_utilization": ("GPU_MEMORY_UTILIZATION", 0.8), "max_model_len": ("MAX_MODEL_LEN", 8192),
    "max_num_seqs": ("MAX_NUM_SEQ", 4), "max_num_batched_tokens": ("MAX_NUM_BATCHED_TOKENS", 8192),
    "tokenizer_pool_size": ("TOKENIZER_POOL_SIZE", 4), "pipeline_parallel_size": ("PIPELINE_PARALLEL_SIZE", 1),
    "tensor_parallel_size": ("TENSOR_PARALLEL_SIZE", 1), "enable_prefix_caching": ("ENABLE_PREFIX_CACHING", True),
}
#: what the script sets whatever the values say (dtype "auto" is vLLM's default)
RAY_SCRIPT_FIXED = {"trust_remote_code": True, "enable_chunked_prefill": False, "enforce_eager": True}
#: the script's arguments the spec types
RAY_TYPED = {"gpu_memory_utilization": "gpu_memory_fraction", "max_model_len": "max_context",
             "max_num_seqs": "max_concurrent_sequences", "pipeline_parallel_size": "pipeline_parallel",
             "tensor_parallel_size": "tensor_parallel", "enable_prefix_caching": "prefix_caching"}
#: the script's tokenizer pool, an argument of vLLM's V0 engine that current vLLM no longer takes
RAY_TOKENIZER_POOL = ("tokenizer_pool_size", "tokenizer_pool_type")


def _ray_parameters(values: Values, gpu: bool) -> tuple[dict[str, Any], list[str], dict[str, Any]]:
    """The engine arguments the chart's Ray Serve script runs with: its defaults, the modelParameters it
    reads (as it reads them), and its fixed ones; every modelParameters key it ignores is reported. On
    GPUs they are Ray Serve LLM's engine_kwargs, on Neuron the flags of the vLLM Deployment."""
    effective: dict[str, Any] = {name: default for name, (_, default) in RAY_SCRIPT.items()}
    readers = {variable: name for name, (variable, _) in RAY_SCRIPT.items()}
    path = ("modelParameters",)
    for key in values.keys(path):
        here = (*path, key)
        variable = _snake(key).upper()
        value = values.get(here, (str, int, float, bool))
        name = readers.get(variable)
        if key == "modelId":  # the seed-era model id, which the import serves
            continue
        if name is None:
            why = {"NUM_GPUS": "the chart gives each Serve replica the devices of the accelerator's resources "
                               "requests (num_gpus, or neuron_cores on Neuron), which the spec has as accelerators",
                   "MAX_NUM_SEQS": "the script reads MAX_NUM_SEQ: the chart runs 4 sequences at once; set "
                                   "serving.max_concurrent_sequences for the value meant"}.get(variable, "remove it, or set it in the spec yourself")
            values.drop(here, f"the chart's Ray Serve script reads no {variable} (modelParameters.{key})", why)
        elif name in RAY_TOKENIZER_POOL:
            values.drop(here, f"the chart's Ray tokenizer pool ({key}), an argument of vLLM's V0 engine",
                        "vLLM's V1 engine has no tokenizer pool")
        elif name == "enable_prefix_caching":
            effective[name] = bool(str(value))  # the script's bool(os.getenv(…)): any text, "False" too, is True
            if effective[name] is not value:
                values.drop(here, f"{key}: {str(value).lower()}: the chart's script reads it with bool(), which is "
                            "True for any text, so prefix caching stays on",
                            "set serving.prefix_caching = false for the value meant")
        elif isinstance(value, (int, float, str)) and not isinstance(value, bool):
            try:
                effective[name] = type(RAY_SCRIPT[name][1])(value)  # the script's int(…) or float(…)
            except ValueError:
                values.error(here, f"{value!r} is not a number: the chart's script fails on it")
        else:
            values.error(here, f"{value!r}: the chart's script reads a number here")
    serving = {RAY_TYPED[name]: effective.pop(name) for name in RAY_TYPED}
    effective.update(RAY_SCRIPT_FIXED)
    for name in RAY_TOKENIZER_POOL:
        effective.pop(name, None)
    if values.text(("vllm", "loadFormat")):
        values.drop(("vllm", "loadFormat"), "a load format: the chart's Ray Serve script sets none")
    options: dict[str, Any] = {}
    args: list[str] = []
    if gpu:
        options["engine_kwargs"] = dict(sorted(effective.items()))
    else:
        options["max_num_batched_tokens"] = effective.pop("max_num_batched_tokens")
        args += ["--gpu-memory-utilization", str(serving.pop("gpu_memory_fraction"))]  # vLLM-Neuron takes it as is
        for name, value in sorted(effective.items()):
            if value is True:
                args.append(f"--{name.replace('_', '-')}")
            elif value is False:
                args.append(f"--no-{name.replace('_', '-')}")
    return serving, args, options


def _kebab(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"-\1", name).lower()


def _ray_service(values: Values, model: dict[str, Any]) -> None:
    """A RayService of the ray-vllm engine: Ray Serve LLM's own application instead of the chart's script,
    Serve's fixed replicas (``minActors``), a worker group stackc sizes to them."""
    options = ("inference", "rayOptions")
    model.pop("image")
    values.drop((*SERVER, "image"), "the chart's Ray image (it pip-installs vLLM to run its own Serve script)",
                "ray-vllm runs Ray's LLM image instead")
    # ray-vllm names only Ray LLM images known to exist: the chart's Ray version may have none
    values.drop((*options, "rayVersion"), "the chart's Ray version (ray-vllm runs a Ray version whose LLM image is "
                "known to exist)", "set engine_options.ray_version with image = a rayproject/ray-llm tag of it")
    model["replicas"] = values.integer((*options, "autoscaling", "actorAutoscaling", "minActors"), 1)
    values.drop_unless((*options, "autoscaling", "actorAutoscaling", "maxActors"), 1, "Ray Serve's max_replicas_per_node")
    # the chart's Serve replicas are fixed; Ray's autoscaler only fits the worker group to them, as stackc does
    values.consumed.add((*options, "autoscaling", "enabled"))
    if (idle := values.integer((*options, "autoscaling", "idleTimeoutSeconds"))) is not None:
        model["engine_options"]["idle_timeout_seconds"] = idle
    values.drop_unless((*options, "autoscaling", "upscalingMode"), "Default", "Ray's autoscaler upscaling mode")
    values.feature((*options, "gcs", "highAvailability"), "Ray GCS fault tolerance")
    values.raw(options)
    for bound in ("minReplicas", "maxReplicas"):
        values.drop((*DEPLOYMENT, bound), "Ray worker group bounds", "stackc sizes the worker group to the Serve replicas")
    _fluent_bit(values)
    values.raw(("inference", "modelServer", "vllmVersion"))
    values.raw(("inference", "modelServer", "pythonVersion"))


def _fluent_bit(values: Values) -> None:
    """The chart runs a Fluent Bit sidecar beside every Ray pod, whatever the values say: reported where the
    values configure it, else on the framework that brings it."""
    where = ("fluentbit",) if values.has(("fluentbit",)) else ("inference", "framework")
    values.raw(("fluentbit",))
    values.drop(where, "the chart's Fluent Bit sidecar in every Ray pod (it ships Ray's logs, configured by the "
                "fluentbit-config ConfigMap)", "add it under [[models.KEY.sidecars]] if you ship logs that way")


def _ray(values: Values, model: dict[str, Any]) -> None:
    """On Neuron, Ray Serve's replicas are Neuron vLLM engines; the RayService around them is not imported
    (the chart's Ray Neuron image is private)."""
    values.drop(("inference", "framework"), "Ray Serve (a RayService with a head node)",
                "the model is served by a vLLM Deployment with the same parameters instead")
    _fluent_bit(values)
    model.pop("image")
    values.drop((*SERVER, "image"), "the Ray image (vLLM is pip-installed into Ray's runtime)",
                "stackc's vLLM image runs the engine")
    options = ("inference", "rayOptions")
    model["replicas"] = values.integer((*options, "autoscaling", "actorAutoscaling", "minActors"), 1)
    values.drop_unless((*options, "autoscaling", "actorAutoscaling", "maxActors"), 1, "Ray Serve's max_replicas_per_node")
    values.feature((*options, "autoscaling"), "Ray's cluster autoscaler")
    values.feature((*options, "gcs", "highAvailability"), "Ray GCS fault tolerance")
    values.raw(options)
    values.drop((*DEPLOYMENT, "minReplicas"), "Ray worker group bounds")
    values.drop((*DEPLOYMENT, "maxReplicas"), "Ray worker group bounds")
    values.raw(("vllm", "logLevel"))
    values.raw(("vllm", "port"))
    values.raw(("inference", "modelServer", "vllmVersion"))
    values.raw(("inference", "modelServer", "pythonVersion"))


def _scheduling(values: Values, accelerator: str, framework: str, stack: str, key: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = []
    if accelerator == "neuron":
        found.append(NEURON_TOLERATION)
    elif FRAMEWORKS[framework] == "ray":
        found.append(GPU_TOLERATION)  # Ray's GPU workers tolerate the GPU taint
    found += tolerations(values, (*DEPLOYMENT, "tolerations"))
    selector = {k: values.text((*DEPLOYMENT, "nodeSelector", k)) for k in values.keys((*DEPLOYMENT, "nodeSelector"))}
    if instance := values.text((*DEPLOYMENT, "instanceType")):
        selector["node.kubernetes.io/instance-type"] = instance
    spread: list[dict[str, Any]] = []
    lws = FRAMEWORKS[framework] == "lws"  # its groups are kept to one zone each instead
    if values.get((*DEPLOYMENT, "topologySpreadConstraints", "enabled"), bool, True) and not lws:
        # the chart renders one fixed zone spread whenever constraints are on (its default)
        spread.append({"maxSkew": 1, "topologyKey": ZONE, "whenUnsatisfiable": "ScheduleAnyway"})
    values.raw((*DEPLOYMENT, "topologySpreadConstraints"))
    affinity = None
    if values.get((*DEPLOYMENT, "podAffinity", "enabled"), bool, True) and not lws:
        terms = values.raw((*DEPLOYMENT, "podAffinity", "preferredDuringSchedulingIgnoredDuringExecution"), list,
                           [{"weight": 100, "podAffinityTerm": {"topologyKey": ZONE}}])
        pods = {"app.kubernetes.io/name": key, "app.kubernetes.io/instance": stack}
        affinity = {"podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": term.get("weight", 100) if isinstance(term, dict) else 100,
             "podAffinityTerm": {"topologyKey": _topology_key(term),
                                 "labelSelector": {"matchLabels": pods}}}
            for term in terms]}}
    values.raw((*DEPLOYMENT, "podAffinity"))
    return {"tolerations": found, "node_selector": selector, "topology_spread": spread, "affinity": affinity,
            "scheduler_name": "my-scheduler" if accelerator == "neuron" else None,
            "group_topology": ZONE if lws else None}


def _topology_key(term: Any) -> str:
    if isinstance(term, dict) and isinstance(term.get("podAffinityTerm"), dict):
        return str(term["podAffinityTerm"].get("topologyKey") or ZONE)
    return ZONE


def _probe(values: Values, path: Path) -> dict[str, Any] | None:
    if not values.has(path):
        values.consumed.add(path)
        return None
    for kind in ("exec", "tcpSocket", "grpc"):
        values.drop((*path, kind), f"a {kind} probe", "stackc probes the engine over HTTP")
    values.consumed.add((*path, "httpGet", "port"))
    return {"path": values.text((*path, "httpGet", "path")),
            "initial_delay_seconds": values.integer((*path, "initialDelaySeconds")),
            "period_seconds": values.integer((*path, "periodSeconds")),
            "timeout_seconds": values.integer((*path, "timeoutSeconds")),
            "failure_threshold": values.integer((*path, "failureThreshold"))}


def _security(values: Values) -> dict[str, Any]:
    secret = ("hfTokenSecret",)
    security: dict[str, Any] = {}
    if values.get((*secret, "envFrom"), bool, False):
        values.drop(secret, "every key of the token Secret as environment",
                    "give the key: security.hf_token = { name = SECRET, key = KEY }")
    else:
        # the chart always reads HF_TOKEN from a Secret (hf-token/token unless told otherwise)
        security["hf_token"] = {"name": values.text((*secret, "name"), "hf-token"),
                                "key": values.text((*secret, "key"), "token")}
    if account := values.text(("serviceAccountName",)):
        if account != "default":
            security["service_account"] = {"create": False, "name": account}
    return security


def _unused(values: Values) -> None:
    """Keys the chart documents but renders nothing from, and the chart's other frameworks."""
    for path in (("global", "resources"), ("ingress",), ("inference", "modelServer", "pythonVersion")):
        values.raw(path)
    values.drop_unless(("service", "type"), "ClusterIP", "the Service's type")
    values.drop_unless(("service", "port"), 8000, "the Service's port", "stackc's Service listens on the engine's port")
    values.drop(("service", "annotations"), "annotations on the Service")
    values.drop((*DEPLOYMENT, "lifecycle"), "container lifecycle hooks")
    if ("s3ModelCopy", "model") not in values.consumed:
        values.drop(("s3ModelCopy", "model"), "the S3 model copy Job", "point model at the s3:// copy instead")
    values.raw(("s3ModelCopy",))
    for block in ("nimCache", "nimService"):
        values.feature((block,), f"NVIDIA NIM ({block})")
    values.raw(("vllm", "logLevel"))
    values.raw(("vllm", "port"))
