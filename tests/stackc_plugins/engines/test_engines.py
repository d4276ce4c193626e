"""Each engine's compiled container for one common request, and what each engine refuses.

The request: tensor parallelism 2, max context 8192, an alias, prefix caching off, an API key
from a Secret. Engines that can't serve part of it must say so at the spec's location.
"""

from __future__ import annotations

import pytest

from stackc.diagnostics import DiagnosticsError
from stackc.testing import compile_text, objects, validate_kubernetes

COMMON = """
version = 1
[stack]
name = "e"
targets = {targets}
[models.m]
engine = "{engine}"
model = "{model}"
{extra}
"""


def compile_engine(engine: str, model: str = "org/m", extra: str = "", targets: str = '["manifests"]') -> dict:
    compilation = compile_text(COMMON.format(engine=engine, model=model, extra=extra, targets=targets))
    found = objects(compilation.files)
    assert [p for o in found for p in validate_kubernetes(o)] == []
    deployment = next(o for o in found if o["kind"] == "Deployment")
    return deployment["spec"]["template"]["spec"]


def engine_container(pod: dict) -> dict:
    return next(c for c in pod["containers"] if c["name"] == "engine")


def secret_env(container: dict) -> dict:
    return {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container.get("env", []) if "valueFrom" in e}


FULL = """
aliases = ["m-alias"]
accelerators = {{ count = 2, resource = "{resource}" }}
security.api_key = {{ name = "keys", key = "m" }}
serving = {{ tensor_parallel = 2, max_context = 8192, prefix_caching = false }}
{more}
"""


def test_vllm() -> None:
    engine = engine_container(compile_engine("vllm", extra=FULL.format(resource="nvidia.com/gpu", more="")))
    assert engine["args"] == ["org/m", "--host", "0.0.0.0", "--port", "8000", "--served-model-name", "org/m", "m-alias",
                              "--tensor-parallel-size", "2", "--max-model-len", "8192", "--no-enable-prefix-caching"]
    assert secret_env(engine) == {"VLLM_API_KEY": {"name": "keys", "key": "m"}}
    assert engine["readinessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert engine["ports"][0]["containerPort"] == 8000
    assert engine["resources"]["limits"] == {"nvidia.com/gpu": "2"}


def test_sglang_with_the_router_serving_its_alias() -> None:
    engine = engine_container(compile_engine("sglang", extra=FULL.format(resource="nvidia.com/gpu", more=""),
                                             targets='["manifests", "router"]'))
    assert engine["command"] == ["python3", "-m", "sglang.launch_server"]
    assert engine["args"] == ["--model-path", "org/m", "--host", "0.0.0.0", "--port", "30000",
                              "--served-model-name", "org/m", "--enable-metrics", "--tp-size", "2",
                              "--context-length", "8192", "--disable-radix-cache", "--api-key", "$(SGLANG_API_KEY)"]
    assert secret_env(engine) == {"SGLANG_API_KEY": {"name": "keys", "key": "m"}}
    assert engine["readinessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert engine["readinessProbe"]["timeoutSeconds"] > 20  # /health generates one token within 20 s
    assert engine["ports"][0]["containerPort"] == 30000
    assert engine["resources"]["limits"] == {"nvidia.com/gpu": "2"}


def test_trtllm_serve() -> None:
    extra = FULL.format(resource="nvidia.com/gpu", more="").replace('security.api_key = { name = "keys", key = "m" }', "")
    extra = extra.replace('aliases = ["m-alias"]', "")
    engine = engine_container(compile_engine("trtllm", extra=extra))
    assert engine["command"] == ["trtllm-serve"]
    assert engine["args"] == ["org/m", "--host", "0.0.0.0", "--port", "8000", "--tp_size", "2", "--max_seq_len", "8192",
                              "--disable_kv_cache_reuse"]
    assert engine["readinessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert engine["resources"]["limits"] == {"nvidia.com/gpu": "2"}


def test_trtllm_triton_builds_the_engine_in_an_init_container() -> None:
    extra = """
accelerators = { count = 2 }
serving = { tensor_parallel = 2, max_context = 8192 }
engine_options = { mode = "triton", checkpoint_dir = "/cache/ckpt" }
"""
    pod = compile_engine("trtllm", extra=extra)
    (builder,) = pod["initContainers"]
    assert "trtllm-build --checkpoint_dir /cache/ckpt --output_dir /cache/trtllm/m/engine-tp2-pp1.partial" in builder["command"][2]
    assert "--tp_size 2" in builder["command"][2] and "--max_seq_len 8192" in builder["command"][2]
    engine = engine_container(pod)
    assert engine["command"] == ["tritonserver"]
    assert [p["containerPort"] for p in engine["ports"]] == [8000, 8001, 8002]
    assert engine["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": "http"}
    assert engine["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"


TRITON = 'accelerators = { count = 1 }\nengine_options = { mode = "triton", checkpoint_dir = "/c"%s }\n'


def test_triton_serves_http_on_8001_with_grpc_moved_or_off() -> None:
    moved = engine_container(compile_engine("trtllm", extra="port = 8001\n" + TRITON % ", grpc_port = 9001"))
    assert [(p["name"], p["containerPort"]) for p in moved["ports"]] == [("http", 8001), ("grpc", 9001),
                                                                         ("metrics", 8002)]
    assert "--grpc-port=9001" in moved["args"]
    off = engine_container(compile_engine("trtllm", extra="port = 8001\n" + TRITON % ", grpc_port = 0"))
    assert [p["containerPort"] for p in off["ports"]] == [8001, 8002] and "--allow-grpc=false" in off["args"]


@pytest.mark.parametrize("extra, path", [
    ("port = 8001\n" + TRITON % "", "models.m.port"),
    (TRITON % ", metrics_port = 8000", "models.m.engine_options.metrics_port"),
    (TRITON % ", grpc_port = 8002", "models.m.engine_options.grpc_port"),
    (TRITON % ", metrics_port = 8001", "models.m.engine_options.metrics_port"),
])
def test_triton_ports_that_clash_are_located_where_the_spec_set_them(extra: str, path: str) -> None:
    with pytest.raises(DiagnosticsError) as error:
        compile_engine("trtllm", extra=extra)
    assert [(d.code, d.dotted_path) for d in error.value.diagnostics] == [("E151", path)]


def test_llamacpp() -> None:
    extra = FULL.format(resource="nvidia.com/gpu", more="").replace("tensor_parallel = 2, ", "")
    engine = engine_container(compile_engine("llamacpp", model="hf://org/repo/model-q4.gguf", extra=extra))
    assert engine["command"] == ["/app/llama-server"]
    assert engine["args"] == ["--hf-repo", "org/repo", "--hf-file", "model-q4.gguf", "--host", "0.0.0.0", "--port", "8080",
                              "--alias", "m,m-alias", "--metrics", "-c", "8192", "-ngl", "999", "--no-cache-prompt"]
    assert secret_env(engine) == {"LLAMA_API_KEY": {"name": "keys", "key": "m"}}
    assert engine["readinessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert engine["image"].endswith("server-cuda-b10434") and engine["resources"]["limits"] == {"nvidia.com/gpu": "2"}
    cpu = engine_container(compile_engine("llamacpp", model="/models/m.gguf"))
    assert cpu["args"][:2] == ["-m", "/models/m.gguf"] and "-ngl" not in cpu["args"] and "resources" not in cpu


def test_ollama_pulls_before_ready() -> None:
    extra = 'aliases = ["m-alias"]\naccelerators = { count = 1 }\nserving = { max_context = 8192 }'
    pod = compile_engine("ollama", model="ollama://llama3.2:3b", extra=extra)
    (pull,) = pod["initContainers"]
    script = pull["command"][2]
    assert "/bin/ollama pull llama3.2:3b" in script and "/bin/ollama cp llama3.2:3b m-alias" in script
    engine = engine_container(pod)
    env = {e["name"]: e.get("value") for e in engine["env"]}
    assert env["OLLAMA_CONTEXT_LENGTH"] == "8192" and env["OLLAMA_HOST"] == "0.0.0.0:11434"
    assert engine["readinessProbe"]["httpGet"] == {"path": "/", "port": "http"}
    assert engine["resources"]["limits"] == {"nvidia.com/gpu": "1"}


def test_neuron_counts_neuroncores() -> None:
    extra = FULL.format(resource="aws.amazon.com/neuron", more="")
    engine = engine_container(compile_engine("neuron", extra=extra))
    assert engine["image"].startswith("public.ecr.aws/neuron/pytorch-inference-vllm-neuronx:")
    assert "--tensor-parallel-size 2 --max-model-len 8192 --no-enable-prefix-caching" in " ".join(engine["args"])
    assert secret_env(engine) == {"VLLM_API_KEY": {"name": "keys", "key": "m"}}
    assert engine["startupProbe"]["periodSeconds"] * engine["startupProbe"]["failureThreshold"] >= 7200
    assert engine["resources"]["limits"] == {"aws.amazon.com/neuron": "2"}
    env = {e["name"]: e.get("value") for e in engine["env"]}
    assert env["NEURON_COMPILED_ARTIFACTS"] == "/cache/neuron/m"


def test_command_engine_fills_placeholders() -> None:
    extra = """
image = "example/server:1"
aliases = ["m-alias"]
accelerators = { count = 2, resource = "amd.com/gpu" }
security.api_key = { name = "keys", key = "m" }
engine_options = { port = 9000, args = ["--model", "{model}", "--names", "{aliases}", "--port", "{port}", "--key", "$(STACKC_API_KEY)"], ready_path = "/ready" }
"""
    engine = engine_container(compile_engine("command", extra=extra))
    assert engine["args"] == ["--model", "org/m", "--names", "org/m,m-alias", "--port", "9000", "--key", "$(STACKC_API_KEY)"]
    assert engine["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http"}
    assert engine["ports"][0]["containerPort"] == 9000
    assert engine["resources"]["limits"] == {"amd.com/gpu": "2"}


def test_the_command_engine_says_what_its_arguments_never_tell_the_server() -> None:
    text = COMMON.format(engine="command", model="org/m", targets='["manifests"]', extra=(
        'image = "example/server:1"\nrevision = "v2"\nserved_name = "chat"\n'
        'engine_options = { port = 9000, args = ["--model", "{model}"] }\n'))
    found = [(w.code, w.dotted_path) for w in compile_text(text).warnings]
    assert found == [("W032", "models.m.revision"), ("W032", "models.m.served_name")]
    told = text.replace('"{model}"]', '"{model}", "--revision", "{revision}", "--name", "{served_name}"]')
    compilation = compile_text(told)
    assert compilation.warnings == ()
    (deployment,) = [o for o in objects(compilation.files) if o["kind"] == "Deployment"]
    assert deployment["spec"]["template"]["spec"]["containers"][0]["args"][2:] == ["--revision", "v2", "--name", "chat"]


@pytest.mark.parametrize(("engine", "model", "extra", "path", "words"), [
    ("ollama", "ollama://llama3.2", 'serving.lora_adapters = [{ name = "a", source = "org/a" }]',
     "models.m.serving.lora_adapters", "engine 'ollama' does not support LoRA adapters"),
    ("ollama", "ollama://llama3.2", 'security.api_key = { name = "k", key = "k" }',
     "models.m.security.api_key", "engine 'ollama' does not support an API key"),
    ("ollama", "ollama://llama3.2", "accelerators = { count = 2 }\nserving.tensor_parallel = 2",
     "models.m.serving.tensor_parallel", "engine 'ollama' does not support tensor parallelism"),
    ("llamacpp", "/m.gguf", "serving.tensor_parallel = 2",
     "models.m.serving.tensor_parallel", "engine 'llamacpp' does not support tensor parallelism"),
    ("sglang", "org/m", 'aliases = ["second"]\naccelerators = { count = 1 }',
     "models.m.aliases", "engine 'sglang' does not support more than one served name"),
    ("neuron", "org/m", "accelerators = { count = 1 }",
     "models.m.accelerators.resource", "the Neuron engine needs aws.amazon.com/neuron"),
    ("ollama", "org/m", "", "models.m.model", "Ollama serves models from its library"),
])
def test_impossible_requests_are_located_errors(engine: str, model: str, extra: str, path: str, words: str) -> None:
    with pytest.raises(DiagnosticsError) as error:
        compile_engine(engine, model=model, extra=extra)
    matching = [d for d in error.value.diagnostics if d.dotted_path == path]
    assert matching, [d.render() for d in error.value.diagnostics]
    assert words in matching[0].message
    assert matching[0].location is not None and matching[0].location.file == "spec.toml"


def test_sglang_aliases_ask_for_a_router_in_the_hint() -> None:
    with pytest.raises(DiagnosticsError) as error:
        compile_engine("sglang", extra='aliases = ["second"]\naccelerators = { count = 1 }')
    assert "router" in error.value.diagnostics[0].hint


LORA = """
accelerators = {{ count = 1 }}
[models.m.serving]
max_loras = 4
max_lora_rank = 64
lora_adapters = [
  {{ name = "sql", source = "hf://org/sql-lora" }},
  {{ name = "disk", source = "pvc://adapters/team/disk" }},
  {{ name = "guard", source = "org/guard", load = "{load}" }},
]
"""


@pytest.mark.parametrize(("engine", "flags", "runtime_env"), [
    ("vllm", ["--enable-lora", "--lora-modules", "sql=org/sql-lora", "disk=/adapters/claims/adapters/team/disk",
              "--max-loras", "4", "--max-lora-rank", "64"], {"VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True"}),
    ("sglang", ["--enable-lora", "--lora-paths", "sql=org/sql-lora", "disk=/adapters/claims/adapters/team/disk",
                "--lora-target-modules", "all", "--max-loras-per-batch", "4", "--max-lora-rank", "64"], {}),
])
def test_each_engine_gets_its_own_lora_flags(engine: str, flags: list[str], runtime_env: dict) -> None:
    runtime = engine_container(compile_engine(engine, extra=LORA.format(load="runtime"), targets='["manifests", "router"]'))
    args = runtime["args"]
    start = args.index("--enable-lora")
    assert args[start:start + len(flags)] == flags
    plain = {e["name"]: e.get("value") for e in runtime["env"]}
    assert runtime_env.items() <= plain.items()
    assert {"name": "lora-claim-0", "mountPath": "/adapters/claims/adapters", "readOnly": True} in runtime["volumeMounts"]
    at_startup = engine_container(compile_engine(engine, extra=LORA.format(load="startup")))
    listed = at_startup["args"][at_startup["args"].index("--enable-lora") + 2:]
    assert "guard=org/guard" in listed  # on the command line when it loads at start
    assert "VLLM_ALLOW_RUNTIME_LORA_UPDATING" not in {e["name"] for e in at_startup["env"]}
