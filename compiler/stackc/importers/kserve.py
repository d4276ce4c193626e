"""KServe: InferenceService and (Cluster)ServingRuntime YAML, one or many documents per file.

Each InferenceService becomes a model for the ``kserve`` target: ``storageUri`` is the model,
the runtime (named, or KServe's Hugging Face server) decides the engine, and the container's
arguments are read like any engine command line. Replica bounds and the scaling metric carry
over to ``autoscaling``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from stackc.diagnostics import Diagnostic, Location
from stackc.importers import commandline
from stackc.importers.draft import (
    Draft,
    env_list,
    model_key,
    split_resources,
    strings,
    tolerations,
)
from stackc.importers.values import Path, Values, ValuesError, load_documents

DEFAULT_NAME = "kserve"
NO_MODELS = "the files hold no InferenceService"
MODES = {"RawDeployment": "Standard", "Standard": "Standard", "Serverless": "Knative", "Knative": "Knative"}
METRICS = {"cpu": "cpu", "memory": "memory", "concurrency": "concurrency", "rps": "rps"}
HF_SERVER = ("kserve-huggingfaceserver", "huggingfaceserver")


def read(paths: Sequence[str]) -> Values:
    """Every document of every file, keyed ``Kind/name`` so reports read like kubectl's."""
    data: dict[str, Any] = {}
    locations = {}
    problems: list[Diagnostic] = []
    for file in paths:
        try:
            with open(file, encoding="utf-8") as handle:
                text = handle.read()
        except (OSError, UnicodeDecodeError) as error:
            problems.append(Diagnostic("E090", f"cannot read the file: {getattr(error, 'strerror', None) or error}",
                                       location=Location(file)))
            continue
        documents, found = load_documents(file, text)
        for index, document in enumerate(documents):
            if document is None:
                continue
            metadata = document.get("metadata") if isinstance(document, dict) else None
            kind = document.get("kind") if isinstance(document, dict) else None
            name = metadata.get("name") if isinstance(metadata, dict) else None
            if not isinstance(kind, str) or not isinstance(name, str):
                where = found.get((index,))
                problems.append(Diagnostic("E090", "a Kubernetes object needs kind and metadata.name", location=where))
                continue
            key = f"{kind}/{name}"
            while key in data:
                key += "'"
            data[key] = document
            for path, location in found.items():
                if path[:1] == (index,):
                    locations[(key, *path[1:])] = location
    if problems:
        raise ValuesError(problems)
    return Values(data, locations, paths[-1] if paths else "kserve.yaml")


def convert(values: Values, name: str) -> Draft:
    draft = Draft(name, targets=["kserve"])
    runtimes = {}
    for key in values.keys(()):
        kind = key.split("/", 1)[0]
        if kind in ("ServingRuntime", "ClusterServingRuntime"):
            runtimes[key.split("/", 1)[1].rstrip("'")] = (key,)
    namespaces = set()
    for key in values.keys(()):
        kind = key.split("/", 1)[0]
        if kind == "InferenceService":
            model, namespace, mode = _service(values, (key,), runtimes)
            if namespace:
                namespaces.add(namespace)
            if mode:
                draft.target_options.setdefault("kserve", {})["deployment_mode"] = mode
            if model is not None:
                draft.add_model(model_key(key.split("/", 1)[1]), model, key, values.location((key,)))
        elif kind not in ("ServingRuntime", "ClusterServingRuntime"):
            values.drop((key,), f"a {kind}", "the importer reads InferenceServices and ServingRuntimes")
    for runtime in runtimes.values():
        values.raw(runtime)  # read through the services that use them
    if len(namespaces) > 1:
        values.error((), f"the services are in several namespaces ({', '.join(sorted(namespaces))})",
                     "a stack lives in one namespace: import each namespace on its own")
    elif namespaces:
        draft.namespace = namespaces.pop()
    return draft


def _service(values: Values, path: Path, runtimes: dict[str, Path]) -> tuple[dict | None, str | None, str | None]:
    values.consumed.update({(*path, "apiVersion"), (*path, "kind"), (*path, "metadata", "name")})
    namespace = values.text((*path, "metadata", "namespace"))
    annotations = values.mapping((*path, "metadata", "annotations"))
    mode = None
    for key in annotations:
        here = (*path, "metadata", "annotations", key)
        if key == "serving.kserve.io/deploymentMode":
            mode = MODES.get(values.text(here) or "")
            if mode is None:
                values.error(here, f"unknown deployment mode {values.text(here)!r}")
        else:
            values.drop(here, f"the annotation {key}")
    values.drop((*path, "metadata", "labels"), "labels on the InferenceService",
                "labels = { … } puts them on the model's objects")
    predictor = (*path, "spec", "predictor")
    container = (*predictor, "model")
    if not values.has(container):
        values.error(predictor, "missing: predictor.model (a model format and storageUri)",
                     "older predictor forms (predictor.huggingface, predictor.containers) are not imported")
        values.raw(path)
        return None, namespace, mode
    storage = values.require((*container, "storageUri"), str, "the model's storageUri")
    runtime_name = values.text((*container, "runtime"))
    model_format = values.text((*container, "modelFormat", "name"))
    values.consumed.add((*container, "modelFormat", "version"))
    runtime = runtimes.get(runtime_name or "")
    image = values.text((*container, "image"))
    command = strings(values, (*container, "command"))
    args = strings(values, (*container, "args"))
    if runtime is not None:
        runtime_container = (*runtime, "spec", "containers", 0)
        image = image or values.text((*runtime_container, "image"))
        command = command or strings(values, (*runtime_container, "command"))
        args = [*strings(values, (*runtime_container, "args")), *args]
    elif runtime_name:
        values.consumed.add((*container, "runtime"))
    model: dict[str, Any] = {"model": storage}
    if storage and storage.startswith("hf://") and ":" in storage[5:]:  # KServe pins as hf://org/name:revision
        model["model"], model["revision"] = storage.rsplit(":", 1)
    hf_server = (runtime is None and model_format == "huggingface" and not command) or bool(
        image and any(server in image for server in HF_SERVER))
    parsed = _hf_server(args) if hf_server else commandline.parse(commandline.words(command, args))
    if parsed.engine == "command":
        values.error((*container, "runtime"), "the runtime's server is neither vLLM, SGLang nor KServe's Hugging "
                     "Face server", "write the model with engine = \"command\" by hand")
        return None, namespace, mode
    model["engine"] = parsed.engine
    model["served_name"] = parsed.served_names[0] if parsed.served_names else None
    model["aliases"] = parsed.served_names[1:]
    model["serving"] = {k: v for k, v in parsed.fields.items() if k in commandline.SERVING}
    model["engine_args"] = parsed.extra_args
    if image and not hf_server:
        model["image"] = image
    model["accelerators"], model["resources"] = split_resources(values, (*container, "resources"))
    env: dict[str, str] = {}
    secret_env: dict[str, Any] = {}
    env_list(values, (*container, "env"), env, secret_env)
    security: dict[str, Any] = {}
    if "HF_TOKEN" in secret_env:
        security["hf_token"] = secret_env.pop("HF_TOKEN")
    model.update(env=env, secret_env=secret_env, security=security)
    model["replicas"] = values.integer((*predictor, "minReplicas"), 1) or 1
    scaling: dict[str, Any] = {"min_replicas": values.integer((*predictor, "minReplicas")),
                               "max_replicas": values.integer((*predictor, "maxReplicas"))}
    metric = values.text((*predictor, "scaleMetric"))
    if metric:
        scaling["metric"] = METRICS.get(metric)
        if scaling["metric"] is None:
            values.drop((*predictor, "scaleMetric"), f"scaling on {metric}")
    scaling["target"] = values.integer((*predictor, "scaleTarget"))
    model["autoscaling"] = scaling if scaling.get("max_replicas") else {}
    if not model["autoscaling"]:
        values.consumed.update({(*predictor, "scaleMetric"), (*predictor, "scaleTarget")})
    model["scheduling"] = {
        "node_selector": {k: values.text((*predictor, "nodeSelector", k))
                          for k in values.keys((*predictor, "nodeSelector"))},
        "tolerations": tolerations(values, (*predictor, "tolerations")),
        "affinity": values.raw((*predictor, "affinity"), dict) or None,
        "priority_class": values.text((*predictor, "priorityClassName")),
        "runtime_class": values.text((*predictor, "runtimeClassName")),
        "scheduler_name": values.text((*predictor, "schedulerName")),
    }
    if account := values.text((*predictor, "serviceAccountName")):
        security["service_account"] = {"create": False, "name": account}
    pulls = values.sequence((*predictor, "imagePullSecrets"))
    security["image_pull_secrets"] = [values.text((*predictor, "imagePullSecrets", i, "name"))
                                      for i in range(len(pulls))]
    if (grace := values.integer((*predictor, "terminationGracePeriodSeconds"))) is not None:
        model["termination_grace_seconds"] = grace
    return model, namespace, mode




def _hf_server(args: list[str]) -> commandline.EngineCommand:
    """KServe's Hugging Face server runs vLLM underneath: its vLLM flags pass through to the engine."""
    names = [a.split("=", 1)[1] for a in args if a.startswith("--model_name=")]
    own = ("--model_name", "--model_id", "--model_dir", "--backend")
    found = commandline.parse(["vllm", "serve", *[a for a in args if not a.startswith(own)]])
    found.served_names = names + found.served_names
    return found
