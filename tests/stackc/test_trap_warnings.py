"""Settings Kubernetes accepts that fail at run time: each a located warning, and silence when they are fine."""

from __future__ import annotations

import pytest

from stackc.check.spec import estimated_weight_bytes
from stackc.testing import compile_text

BASE = """\
version = 1
[stack]
name = "s"
[models.m]
engine = "vllm"
model = "org/m-1b"
accelerators = { count = 1 }
"""


def warnings(text: str) -> list[str]:
    return [d.render() for d in compile_text(text).warnings]


@pytest.mark.parametrize("mode", ["ReadWriteOnce", "ReadWriteOncePod"])
def test_a_single_node_cache_with_several_replicas(mode: str) -> None:
    (warning,) = warnings(BASE + f'replicas = 2\ncache = {{ size = "10Gi", access_mode = "{mode}" }}\n')
    assert warning.startswith("spec.toml:9:40: warning[W024] models.m.cache.access_mode:")
    assert "of 2 replicas, " + ("all but one" if mode.endswith("Pod") else "those on other nodes") in warning


@pytest.mark.parametrize("extra", [
    'replicas = 2\ncache = { size = "10Gi", access_mode = "ReadWriteMany" }\n',
    'cache = { size = "10Gi" }\n',
    'replicas = 2\ncache = { existing_claim = "shared" }\n',  # its access mode is not in the spec
])
def test_no_warning_for_a_cache_the_replicas_can_share(extra: str) -> None:
    assert warnings(BASE + extra) == []


def test_an_autoscaled_model_counts_its_most_replicas() -> None:
    found = warnings(BASE + 'cache = { size = "10Gi" }\nautoscaling = { max_replicas = 4, signal = "waiting", target = 4 }\n')
    assert any("W024" in w and "of 4 replicas" in w for w in found), found


@pytest.mark.parametrize("engine, model, arg, field", [
    ("vllm", "org/m-1b", "--port=9000", "port"),
    ("vllm", "org/m-1b", "--served-model-name", "served_name"),
    ("sglang", "org/m-1b", "--port", "port"),
    ("llamacpp", "hf://org/r/m.gguf", "--alias", "served_name"),
    ("trtllm", "org/m-1b", "--port", "port"),
])
def test_engine_args_repeating_what_stackc_sets(engine: str, model: str, arg: str, field: str) -> None:
    text = BASE.replace('"vllm"', f'"{engine}"').replace('"org/m-1b"', f'"{model}"')
    found = warnings(text + f'engine_args = ["--x", "{arg}", "1"]\n')
    flag = arg.split("=")[0]
    assert any(f"warning[W025] models.m.engine_args[1]: engine_args sets {flag}, which stackc sets from" in w
               and f"(hint: set {field} instead)" in w for w in found), found


def test_other_engine_args_are_fine() -> None:
    assert warnings(BASE + 'engine_args = ["--enforce-eager", "--portal"]\n') == []


def test_the_cuda_vllm_image_on_neuron_devices() -> None:
    found = warnings(BASE.replace("count = 1", 'count = 1, resource = "aws.amazon.com/neuron"'))
    assert any("warning[W030] models.m.accelerators.resource: the vLLM image 'vllm/vllm-openai:" in w
               and 'use engine = "neuron"' in w for w in found), found
    with_own_image = BASE.replace("count = 1", 'count = 1, resource = "aws.amazon.com/neuron"') + \
        'image = "public.ecr.aws/neuron/pytorch-inference-vllm-neuronx:0.16.0"\n'
    assert not any("W030" in w for w in warnings(with_own_image))


def test_a_large_model_on_an_emptydir_cache() -> None:
    (warning,) = warnings(BASE.replace("org/m-1b", "meta-llama/Llama-3.1-70B-Instruct"))
    assert warning.startswith("spec.toml:6:9: warning[W026] models.m.model: about 140 GB of weights go to an emptyDir")


@pytest.mark.parametrize("extra", [
    'cache = { size = "200Gi" }\n',
    'resources = { requests = { ephemeral-storage = "200Gi" }, limits = { ephemeral-storage = "200Gi" } }\n',
])
def test_no_warning_when_the_weights_have_room(extra: str) -> None:
    assert warnings(BASE.replace("org/m-1b", "meta-llama/Llama-3.1-70B-Instruct") + extra) == []


@pytest.mark.parametrize("model, quantization, size", [
    ("meta-llama/Llama-3.1-8B-Instruct", None, 16 * 10**9),
    ("mistralai/Mixtral-8x7B-Instruct-v0.1", None, 112 * 10**9),
    ("Qwen/Qwen3-30B-A3B", None, 60 * 10**9),
    ("hugging-quants/Meta-Llama-3.1-70B-Instruct-AWQ-INT4", None, 35 * 10**9),
    ("org/Llama-3.1-70B", "fp8", 70 * 10**9),
    ("hf://Qwen/Qwen2.5-7B-Instruct-GGUF/qwen2.5-7b-instruct-q4_k_m.gguf", None, 3.5 * 10**9),
    ("BAAI/bge-large-en-v1.5", None, None),
])
def test_weight_sizes_come_from_the_parameter_count_in_the_name(model: str, quantization: str | None,
                                                                 size: float | None) -> None:
    from stackc.spec.model import Model, Serving

    found = estimated_weight_bytes(Model(engine="vllm", model=model, serving=Serving(quantization=quantization)))
    assert found == (int(size) if size is not None else None)


@pytest.mark.parametrize("limit", ["max_loras", "max_lora_rank"])
def test_a_lora_limit_without_adapters(limit: str) -> None:
    (warning,) = warnings(BASE + f"serving = {{ {limit} = 4 }}\n")
    assert f"warning[W150] models.m.serving.{limit}: serving.{limit} limits LoRA adapters" in warning


def test_a_lora_limit_with_adapters_is_passed_on() -> None:
    text = BASE + 'serving = { max_loras = 4, lora_adapters = [{ name = "a", source = "org/a" }] }\n'
    assert warnings(text) == []
    (engine,) = [c for c in compile_text(text).plan.components[0].pod.containers if c.name == "engine"]
    assert engine.args[engine.args.index("--max-loras") + 1] == "4"


def test_hf_home_off_every_volume_warns_where_env_sets_it() -> None:
    (warning,) = warnings(BASE + 'env = { HF_HOME = "/data" }\n')
    assert "warning[W151] models.m.env.HF_HOME: HF_HOME = '/data' is on no volume of the engine's container" in warning
    assert "mounted: /cache" in warning


@pytest.mark.parametrize("extra", [
    'env = { HF_HOME = "/cache/hf" }\n',
    'env = { HF_HOME = "/data" }\nextra_volumes = [{ name = "data", emptyDir = {} }]\n'
    'extra_volume_mounts = [{ name = "data", mountPath = "/data" }]\n',
])
def test_hf_home_on_a_volume_is_honoured(extra: str) -> None:
    assert warnings(BASE + extra) == []
    (engine,) = [c for c in compile_text(BASE + extra).plan.components[0].pod.containers if c.name == "engine"]
    assert {v.name: v.value for v in engine.env}["HF_HOME"] == extra.split('"')[1]


def test_a_disabled_budget_with_a_size_warns() -> None:
    (warning,) = warnings(BASE + "disruption_budget = { enabled = false, max_unavailable = 2 }\n")
    assert "warning[W152] models.m.disruption_budget.max_unavailable:" in warning


def test_llamacpp_cannot_pin_a_hub_revision() -> None:
    text = BASE.replace('"vllm"', '"llamacpp"').replace('"org/m-1b"', '"hf://org/r/m.gguf"')
    (warning,) = warnings(text + 'revision = "abc"\n')
    assert "warning[W031] models.m.revision: llama.cpp fetches a Hub file from the default branch" in warning


def test_routing_without_a_router_warns_where_it_is_set() -> None:
    found = warnings(BASE + 'routing = { strategy = "session", session_header = "x-user" }\n')
    assert [w.split(": ")[1].split("]")[-1].strip() for w in found] == ["models.m.routing.strategy",
                                                                         "models.m.routing.session_header"]
    assert warnings(BASE.replace('name = "s"', 'name = "s"\ntargets = ["manifests", "router"]') +
                    'routing = { strategy = "session" }\n') == []


def test_replacing_tolerations_with_none_warns() -> None:
    (warning,) = warnings(BASE + 'scheduling = { tolerations_mode = "replace" }\n')
    assert "warning[W154] models.m.scheduling.tolerations_mode:" in warning


def test_ollama_has_no_use_for_a_hub_token() -> None:
    text = BASE.replace('"vllm"', '"ollama"').replace('"org/m-1b"', '"ollama://llama3.2:3b"')
    (warning,) = warnings(text + 'security.hf_token = { name = "hf", key = "token" }\n')
    assert "warning[W033] models.m.security.hf_token: Ollama pulls from its own library" in warning


@pytest.mark.parametrize("engine, options, code, path", [
    ("command", 'port = 9000, metric_names = { running = "r" }', "W034", "models.m.engine_options.metric_names"),
    ("command", "port = 9000, shared_memory = true", "W034", "models.m.engine_options.shared_memory"),
    ("trtllm", 'checkpoint_dir = "/c"', "W035", "models.m.engine_options.checkpoint_dir"),
    ("ray-vllm", "idle_timeout_seconds = 600", "W113", "models.m.engine_options.idle_timeout_seconds"),
])
def test_engine_options_that_act_on_nothing_warn(engine: str, options: str, code: str, path: str) -> None:
    text = BASE.replace('"vllm"', f'"{engine}"') + 'image = "example/server:1"\n' * (engine == "command")
    found = warnings(text + f"engine_options = {{ {options} }}\n")
    assert any(f"warning[{code}] {path}:" in w for w in found), found


def test_a_stack_whose_targets_deploy_no_model_warns() -> None:
    routed = BASE.replace('name = "s"', 'name = "s"\ntargets = ["router", "monitoring"]')
    (warning,) = warnings(routed)
    assert warning.startswith("spec.toml:4:11: warning[W155] stack.targets: no target of the stack deploys the models")
    assert not any("W155" in w for w in warnings(routed.replace('"monitoring"]', '"kserve"]')))
