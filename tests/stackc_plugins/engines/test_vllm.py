from __future__ import annotations

import pytest

from stackc.diagnostics import DiagnosticsError
from stackc.testing import compile_text, objects, validate_kubernetes

BASE = """
version = 1
[stack]
name = "v"
[models.m]
engine = "vllm"
model = "{model}"
accelerators = {{ count = {count}, resource = "{resource}" }}
{extra}
"""


def container(model: str = "org/m", count: int = 2, resource: str = "nvidia.com/gpu", extra: str = "") -> dict:
    compilation = compile_text(BASE.format(model=model, count=count, resource=resource, extra=extra))
    found = objects(compilation.files)
    assert [p for o in found for p in validate_kubernetes(o)] == []
    deployment = next(o for o in found if o["kind"] == "Deployment")
    return deployment["spec"]["template"]["spec"]


SERVING = """
aliases = ["alias-a", "alias-b"]
security.api_key = { name = "keys", key = "m" }
[models.m.serving]
tensor_parallel = 2
max_context = 8192
prefix_caching = true
"""


def test_flags_for_tp2_context_names_prefix_caching_and_api_key() -> None:
    pod = container(extra=SERVING)
    engine = pod["containers"][0]
    assert engine["command"] == ["vllm", "serve"]
    assert engine["args"] == [
        "org/m", "--host", "0.0.0.0", "--port", "8000", "--served-model-name", "org/m", "alias-a", "alias-b",
        "--tensor-parallel-size", "2", "--max-model-len", "8192", "--enable-prefix-caching",
    ]
    env = {e["name"]: e for e in engine["env"]}
    assert env["VLLM_API_KEY"]["valueFrom"] == {"secretKeyRef": {"name": "keys", "key": "m"}}
    assert engine["resources"]["limits"]["nvidia.com/gpu"] == "2"
    assert engine["readinessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert engine["ports"] == [{"name": "http", "containerPort": 8000, "protocol": "TCP"}]
    assert engine["image"].startswith("vllm/vllm-openai:v")


def test_startup_probe_allows_a_long_model_load_and_can_be_overridden() -> None:
    probe = container()["containers"][0]["startupProbe"]
    assert probe["periodSeconds"] * probe["failureThreshold"] >= 1800
    override = container(extra="probes.startup = { failure_threshold = 600, path = '/ping' }")["containers"][0]["startupProbe"]
    assert override["failureThreshold"] == 600 and override["httpGet"]["path"] == "/ping"


def test_shm_only_with_parallelism_unless_sized() -> None:
    assert "dshm" not in {v["name"] for v in container(count=1)["volumes"]}
    pod = container(extra="serving.tensor_parallel = 2")
    assert {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "4Gi"}} in pod["volumes"]
    sized = container(count=1, extra='shm_size = "1Gi"')
    assert {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "1Gi"}} in sized["volumes"]


def test_hf_token_and_cache_locations() -> None:
    engine = container(extra='security.hf_token = { name = "hf", key = "t" }')["containers"][0]
    env = {e["name"]: e for e in engine["env"]}
    assert env["HF_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "hf", "key": "t"}
    assert env["HF_HOME"]["value"] == "/cache/huggingface"
    assert {"name": "model-cache", "mountPath": "/cache"} in engine["volumeMounts"]


@pytest.mark.parametrize(("source", "argument", "volume"), [
    ("hf://org/m", "org/m", None),
    ("s3://bucket/llama", "s3://bucket/llama", None),
    ("pvc://weights/llama/8b", "/models/llama/8b", {"name": "model-source", "persistentVolumeClaim": {"claimName": "weights"}}),
    ("oci://registry.example/models/llama:1", "/models",
     {"name": "model-source", "image": {"reference": "registry.example/models/llama:1", "pullPolicy": "IfNotPresent"}}),
    ("/mnt/llama", "/mnt/llama", None),
])
def test_model_sources(source: str, argument: str, volume: dict | None) -> None:
    pod = container(model=source, count=1)
    args = pod["containers"][0]["args"]
    assert args[0] == argument
    if source.startswith("s3://"):
        assert args[args.index("--load-format") + 1] == "runai_streamer"
    if volume:
        assert volume in pod["volumes"]


def test_lora_chat_template_and_options() -> None:
    extra = """
[models.m.serving]
chat_template = "{% for m in messages %}{{ m.content }}{% endfor %}"
lora_adapters = [{ name = "sql", source = "hf://org/sql-lora" }]
max_lora_rank = 64
max_loras = 2
[models.m.engine_options]
kv_cache_dtype = "fp8"
enforce_eager = true
"""
    args = container(count=1, extra=extra)["containers"][0]["args"]
    joined = " ".join(args)
    assert "--chat-template /etc/stackc/chat-template/chat-template.jinja" in joined
    assert "--enable-lora --lora-modules sql=org/sql-lora --max-loras 2 --max-lora-rank 64" in joined
    assert "--kv-cache-dtype fp8 --enforce-eager" in joined


def test_cpu_image_without_accelerators() -> None:
    assert "cpu" in container(count=0)["containers"][0]["image"]


def test_parallelism_needs_enough_accelerators() -> None:
    with pytest.raises(DiagnosticsError) as error:
        compile_text(BASE.format(model="org/m", count=1, resource="nvidia.com/gpu", extra="serving.tensor_parallel = 4"))
    (diagnostic,) = error.value.diagnostics
    assert diagnostic.dotted_path == "models.m.serving.tensor_parallel"
    assert "needs 4 accelerators" in diagnostic.message and diagnostic.hint == "set accelerators.count = 4"
    assert diagnostic.location is not None and diagnostic.location.line == 9


def test_unknown_engine_option_is_located() -> None:
    with pytest.raises(DiagnosticsError) as error:
        compile_text(BASE.format(model="org/m", count=1, resource="nvidia.com/gpu", extra="engine_options.enforce_eagr = true"))
    (diagnostic,) = error.value.diagnostics
    assert diagnostic.dotted_path == "models.m.engine_options.enforce_eagr" and "enforce_eager" in diagnostic.hint
