"""KServe on the plan: every engine × model source serves the routed names and loads weights once."""

from __future__ import annotations

import json

import pytest
import yaml

from stackc.diagnostics import DiagnosticsError
from stackc.testing import compile_text, is_core_kind, objects, validate_kubernetes

ENGINES = {
    "vllm": "accelerators = { count = 1 }",
    "sglang": "accelerators = { count = 1 }",
    "trtllm": "accelerators = { count = 1 }",
    "neuron": 'accelerators = { count = 1, resource = "aws.amazon.com/neuron" }',
    "llamacpp": "",
    "ollama": "",
    "command": 'image = "example.com/server:1"\nengine_options = { port = 9000, args = ["--model", "{model}", "--name", "{served_name}"] }',
}
SOURCES = {
    "hf-repo": "org/model", "hf-file": "org/repo/model.gguf", "s3": "s3://bucket/model", "gs": "gs://bucket/model",
    "pvc": "pvc://weights/models/m", "oci": "oci://registry.example.com/models/m:1", "ollama": "ollama://llama3:8b",
}


def spec(engine: str, source: str, targets: str = '"kserve", "router", "gateway"') -> str:
    return (f'version = 1\n[stack]\nname = "k"\ntargets = [{targets}]\n[models.m]\nengine = "{engine}"\n'
            f'model = "{source}"\naliases = ["m-alias"]\n{ENGINES[engine]}\n')


@pytest.mark.parametrize("source", SOURCES, ids=str)
@pytest.mark.parametrize("engine", ENGINES, ids=str)
def test_every_engine_and_source_serves_the_routed_names_and_loads_once(engine: str, source: str, crd_validator) -> None:
    try:
        compilation = compile_text(spec(engine, SOURCES[source]))
    except DiagnosticsError as error:  # the engine cannot load that source: said where, never a crash
        assert all(d.location is not None and d.path[:2] == ("models", "m") for d in error.diagnostics), error.diagnostics
        return
    found = objects(compilation.files)
    service = next(o for o in found if o["kind"] == "InferenceService")
    predictor = service["spec"]["predictor"]
    router = yaml.safe_load(next(o for o in found if o["kind"] == "ConfigMap" and "router.yaml" in o.get("data", {}))
                            ["data"]["router.yaml"])["models"]["m"]
    # the engine answers to the name the router and the gateway send it
    assert router["served_name"] in json.dumps(predictor)
    route = next(o for o in found if o["kind"] == "HTTPRoute")
    routed = {m["headers"][0]["value"] for rule in route["spec"]["rules"] for m in rule["matches"]}
    # the router reaches KServe's own Service when no manifests are built
    assert router["discovery"]["kubernetes"]["service"] == "k-m-predictor"
    # weights are fetched once: by KServe's storage initializer into /mnt/models, or by the engine
    names = {router["served_name"], *router["aliases"]}
    assert routed == names
    fetching = [arg for arg in predictor["model"].get("args", []) if arg not in names]  # names are not downloads
    everything = json.dumps(fetching) + json.dumps(predictor.get("initContainers", []))
    if "storageUri" in predictor["model"]:
        assert "/mnt/models" in everything
        assert "--hf-repo" not in everything and SOURCES[source] not in everything
    else:
        assert "/mnt/models" not in everything
    problems = [p for o in found for p in (validate_kubernetes(o) if is_core_kind(o) else crd_validator(o))]
    assert problems == []


def test_two_models_of_one_engine_each_get_their_image_command_and_port() -> None:
    text = ('version = 1\n[stack]\nname = "k"\ntargets = ["kserve"]\n'
            '[models.gpu]\nengine = "vllm"\nmodel = "org/a"\naccelerators = { count = 1 }\n'
            '[models.cpu]\nengine = "vllm"\nmodel = "org/b"\nimage = "example.com/vllm-cpu:1"\n'
            '[models.one]\nengine = "command"\nmodel = "org/c"\nimage = "example.com/one:1"\n'
            'engine_options = { port = 9000, command = ["one"] }\n'
            '[models.two]\nengine = "command"\nmodel = "org/d"\nimage = "example.com/two:1"\n'
            'engine_options = { port = 7000, command = ["two", "serve"] }\n')
    models = {o["metadata"]["name"]: o["spec"]["predictor"]["model"]
              for o in objects(compile_text(text).files) if o["kind"] == "InferenceService"}
    assert models["k-gpu"]["image"] != models["k-cpu"]["image"] == "example.com/vllm-cpu:1"
    assert (models["k-one"]["command"], models["k-one"]["ports"][0]["containerPort"]) == (["one"], 9000)
    assert (models["k-two"]["command"], models["k-two"]["ports"][0]["containerPort"]) == (["two", "serve"], 7000)


def test_the_inference_service_keeps_the_pod_settings_of_the_spec() -> None:
    text = ('version = 1\n[stack]\nname = "k"\ntargets = ["kserve"]\n'
            '[models.a]\nengine = "vllm"\nmodel = "org/a"\naccelerators = { count = 1 }\nreplicas = 2\n'
            'termination_grace_seconds = 120\nannotations = { "team" = "search" }\nenv = { HF_HOME = "/data/hf" }\n'
            'scheduling = { runtime_class = "nvidia", topology_spread = [{ maxSkew = 1, '
            'topologyKey = "kubernetes.io/hostname", whenUnsatisfiable = "ScheduleAnyway" }] }\n'
            'rollout = { strategy = "Recreate" }\n'
            '[models.b]\nengine = "vllm"\nmodel = "org/b"\naccelerators = { count = 1 }\n'
            'probes = { readiness = { period_seconds = 7 } }\n')
    found = objects(compile_text(text).files)
    services = {o["metadata"]["name"]: o["spec"]["predictor"] for o in found if o["kind"] == "InferenceService"}
    a, b = services["k-a"], services["k-b"]
    assert a["terminationGracePeriodSeconds"] == 120 and a["runtimeClassName"] == "nvidia"
    assert a["topologySpreadConstraints"][0]["labelSelector"] == {"matchLabels": {
        "app.kubernetes.io/name": "a", "app.kubernetes.io/instance": "k"}}
    assert a["annotations"]["team"] == "search" and a["deploymentStrategy"] == {"type": "Recreate"}
    assert [e for e in a["model"]["env"] if e["name"] == "HF_HOME"] == [{"name": "HF_HOME", "value": "/data/hf"}]
    assert b["model"]["readinessProbe"]["periodSeconds"] == 7 and a["model"]["readinessProbe"]["periodSeconds"] == 5
    budgets = [o for o in found if o["kind"] == "PodDisruptionBudget"]
    assert [p["metadata"]["name"] for p in budgets] == ["k-a"]
    assert budgets[0]["spec"]["selector"]["matchLabels"].items() <= a["labels"].items()


def test_rollout_settings_knative_cannot_apply_are_a_located_warning() -> None:
    text = ('version = 1\n[stack]\nname = "k"\ntargets = ["kserve"]\n[models.a]\nengine = "vllm"\nmodel = "org/a"\n'
            'accelerators = { count = 1 }\nrollout = { strategy = "Recreate" }\n'
            '[targets.kserve]\ndeployment_mode = "Knative"\n')
    warnings = compile_text(text).warnings
    assert [(w.code, w.dotted_path, w.location.line) for w in warnings] == [("W070", "models.a.rollout", 9)]


@pytest.mark.parametrize("extra, path", [
    ('secret_env = { AWS_ACCESS_KEY_ID = { name = "aws", key = "id" } }\n', "models.a.model"),
    ('engine_options = { mode = "triton", checkpoint_dir = "/c" }\n', "models.a.engine"),
    ('serving.lora_adapters = [{ name = "x", source = "s3://b/x" }]\n', "models.a.serving.lora_adapters"),
])
def test_init_containers_under_knative_are_a_located_warning(extra: str, path: str) -> None:
    engine, model = ("trtllm", "org/a") if "triton" in extra else ("sglang", "s3://b/a")
    text = (f'version = 1\n[stack]\nname = "k"\ntargets = ["kserve"]\n[models.a]\nengine = "{engine}"\n'
            f'model = "{model}"\naccelerators = {{ count = 1 }}\n{extra}')
    knative = text + '[targets.kserve]\ndeployment_mode = "Knative"\n'
    found = [(w.code, w.dotted_path) for w in compile_text(knative).warnings]
    assert ("W075", path) in found, found
    assert "W075" not in [w.code for w in compile_text(text).warnings]


def test_no_runtime_is_shared_so_nothing_leaks_between_models() -> None:
    text = ('version = 1\n[stack]\nname = "k"\ntargets = ["kserve"]\n'
            '[models.a]\nengine = "command"\nmodel = "org/a"\nimage = "example.com/a:1"\n'
            'engine_options = { port = 8000, command = ["python", "-m", "server_a"] }\n'
            '[models.b]\nengine = "command"\nmodel = "org/b"\nimage = "example.com/b:1"\nengine_options = { port = 9000 }\n')
    found = objects(compile_text(text).files)
    runtimes = {o["metadata"]["name"]: o["spec"]["containers"][0] for o in found if o["kind"] == "ServingRuntime"}
    models = {o["metadata"]["name"]: o["spec"]["predictor"]["model"] for o in found if o["kind"] == "InferenceService"}
    assert models["k-a"]["runtime"] == "k-a" and models["k-b"]["runtime"] == "k-b"
    assert "command" not in runtimes["k-b"] and [p["containerPort"] for p in runtimes["k-b"]["ports"]] == [9000]


def test_models_needing_credentials_fetch_their_weights_themselves() -> None:
    text = ('version = 1\n[stack]\nname = "k"\ntargets = ["kserve"]\n[models.a]\nengine = "vllm"\n'
            'model = "meta-llama/Llama-3.1-8B-Instruct"\naccelerators = { count = 1 }\n'
            'security.hf_token = { name = "hf", key = "token" }\n')
    model = next(o for o in objects(compile_text(text).files) if o["kind"] == "InferenceService")["spec"]["predictor"]["model"]
    assert "storageUri" not in model  # KServe's storage initializer would not get the token
    assert model["args"][0] == "meta-llama/Llama-3.1-8B-Instruct"
    assert {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "token"}}} in model["env"]


def test_knative_mode_gets_the_one_port_knative_accepts(crd_validator) -> None:
    text = ('version = 1\n[stack]\nname = "k"\ntargets = ["kserve"]\n[models.a]\nengine = "trtllm"\nmodel = "org/a"\n'
            'accelerators = { count = 1 }\nengine_options = { mode = "triton", checkpoint_dir = "/cache/ckpt" }\n'
            '[targets.kserve]\ndeployment_mode = "Knative"\n')
    found = objects(compile_text(text).files)
    model = next(o for o in found if o["kind"] == "InferenceService")["spec"]["predictor"]["model"]
    assert model["ports"] == [{"name": "http1", "containerPort": 8000, "protocol": "TCP"}]
    assert model["readinessProbe"]["httpGet"]["port"] == 8000
    assert [p for o in found for p in (validate_kubernetes(o) if is_core_kind(o) else crd_validator(o))] == []
