"""The fit check's diagnostics in check/build (located, with the fix) and `stackc plan`'s table and JSON."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from stackc.diagnostics import DiagnosticsError
from stackc.testing import compile_text

REPO = Path(__file__).resolve().parents[3]
SPEC = """version = 1
[stack]
name = "fit"
[models.m]
engine = "{engine}"
model = "{model}"
accelerators = {{ count = {count}, type = "{type}" }}
serving = {{ tensor_parallel = {tp}{extra} }}
"""


def spec(model: str = "meta-llama/Llama-3.1-8B-Instruct", type: str = "H100-80GB", tp: int = 1, extra: str = "",
         engine: str = "vllm") -> str:
    return SPEC.format(engine=engine, model=model, count=tp, type=type, tp=tp, extra=extra)


def problems(text: str) -> list:
    try:
        return list(compile_text(text).warnings)
    except DiagnosticsError as error:
        return error.diagnostics


def codes(text: str) -> list[str]:
    return [d.code for d in problems(text) if d.code.startswith(("E14", "W14"))]


def test_weights_that_leave_no_room_are_e140_with_the_smallest_tp_that_fits() -> None:
    [diagnostic] = [d for d in problems(spec("meta-llama/Llama-3.3-70B-Instruct", extra=", max_context = 4096"))
                    if d.code == "E140"]
    assert diagnostic.dotted_path == "models.m.serving.tensor_parallel"
    assert diagnostic.location.line == 8
    assert "131.5 GiB per device" in diagnostic.message
    assert "tensor_parallel = 2 fits" in diagnostic.hint


def test_a_context_the_kv_cache_cannot_hold_is_e141_with_the_largest_that_fits() -> None:
    [diagnostic] = [d for d in problems(spec(type="L4")) if d.code == "E141"]
    assert diagnostic.dotted_path == "models.m.serving.max_context"
    assert "not one sequence of 131072" in diagnostic.message
    assert "max_context = 39936 fits" in diagnostic.hint


def test_fewer_full_context_sequences_than_asked_is_w140() -> None:
    text = spec(type="L4", extra=", max_context = 16384, min_concurrent_at_context = 8")
    [diagnostic] = [d for d in problems(text) if d.code == "W140"]
    assert "only 2 sequences of 16384 tokens" in diagnostic.message
    assert codes(spec(type="L4", extra=", max_context = 16384")) == []


def test_an_unknown_accelerator_type_is_said_once_with_the_closest_name() -> None:
    [diagnostic] = [d for d in problems(spec(type="H10")) if d.code == "W141"]
    assert diagnostic.dotted_path == "models.m.accelerators.type" and "'H100'" in diagnostic.hint


def test_an_unknown_model_on_known_accelerators_is_w142_and_no_guess() -> None:
    assert codes(spec(model="acme/secret-model")) == ["W142"]


def test_untyped_accelerators_are_not_checked() -> None:
    text = spec("meta-llama/Llama-3.3-70B-Instruct").replace(', type = "H100-80GB"', "")
    assert codes(text) == []


def test_accelerators_memory_and_a_mig_profile_give_the_memory() -> None:
    assert codes(spec(type="X", tp=1).replace('type = "X"', 'memory = "24Gi"')) == ["E141"]
    mig = spec(extra=", max_context = 8192").replace('type = "H100-80GB"', 'resource = "nvidia.com/mig-1g.10gb"')
    assert codes(mig) == ["E140"]  # 15 GiB of weights on a 10 GB slice
    assert codes(spec(extra=", max_context = 8192").replace(
        'type = "H100-80GB"', 'resource = "nvidia.com/mig-3g.40gb"')) == []


def test_a_config_json_beside_the_spec_is_read(tmp_path: Path, run_stackc) -> None:
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "config.json").write_text(json.dumps({
        "hidden_size": 4096, "intermediate_size": 14336, "max_position_embeddings": 131072,
        "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 8, "vocab_size": 128256}))
    (tmp_path / "s.toml").write_text(spec("pvc://weights/llama", type="L4", extra=', model_config = "cfg/config.json"'))
    result = run_stackc("check", str(tmp_path / "s.toml"))
    assert result.returncode == 2 and "error[E141]" in result.stderr
    (tmp_path / "cfg" / "config.json").write_text("{")
    result = run_stackc("check", str(tmp_path / "s.toml"))
    assert result.returncode == 2 and "error[E143] models.m.serving.model_config: cannot read" in result.stderr


def test_each_disaggregated_role_is_checked_with_its_own_accelerators() -> None:
    text = spec(extra=", max_context = 65536") + """[models.m.disaggregation.prefill]
replicas = 1
[models.m.disaggregation.decode]
replicas = 1
accelerators = { count = 1, type = "L4" }
"""
    [diagnostic] = [d for d in problems(text) if d.code.startswith("E14")]
    assert diagnostic.code == "E141" and "L4" in diagnostic.message


@pytest.mark.parametrize("spec_file", ["specs/prod.toml", "specs/disaggregated.toml", "specs/gateway.toml",
                                       "specs/autoscaling.toml", "specs/multinode.toml"])
def test_the_examples_with_typed_accelerators_fit(spec_file: str, run_stackc) -> None:
    result = run_stackc("plan", spec_file, "--format", "json")
    assert result.returncode == 0, result.stderr
    models = json.loads(result.stdout)["models"]
    assert {m["fit"]["status"] for m in models.values()} <= {"fits", "unknown"}
    assert any(m["fit"]["status"] == "fits" for m in models.values())


def test_plan_prints_a_table_and_json_the_schema_describes(tmp_path: Path, run_stackc) -> None:
    (tmp_path / "s.toml").write_text(spec(type="L4"))
    table = run_stackc("plan", str(tmp_path / "s.toml"))
    assert table.returncode == 2 and "error[E141]" in table.stderr
    header, row = table.stdout.splitlines()
    assert header.split()[:2] == ["MODEL", "ACCELERATORS"]
    assert row.startswith("m ") and "1 × L4" in row and "40,694" in row and "no-fit" in row
    result = run_stackc("plan", "specs/disaggregated.toml", "--format", "json")
    envelope = json.loads(result.stdout)
    jsonschema.validate(envelope, json.loads((REPO / "docs" / "cli-output.schema.json").read_text()))
    llama = envelope["models"]["llama"]
    assert set(llama["roles"]) == {"prefill", "decode"} and llama["fit"]["status"] == "fits"
    assert llama["roles"]["decode"]["fit"]["weights_gib_per_device"] == 7.48


def test_the_router_sizes_a_silent_engines_prefix_cache_with_the_computed_kv_tokens() -> None:
    text = """version = 1
[stack]
name = "fitr"
targets = ["manifests", "router"]
[models.t]
engine = "trtllm"
model = "meta-llama/Llama-3.1-8B-Instruct"
accelerators = { count = 1, type = "{type}" }
serving = { max_context = 8192 }
"""
    compilation = compile_text(text.replace("{type}", "H100-80GB"))
    [component] = compilation.plan.components
    assert component.kv_tokens_per_replica == 442409  # `stackc plan`'s KV TOKENS/REPLICA
    config = compilation.files["router/configmap.yaml"].decode()
    assert f"cache_chars: {442409 * 4}" in config
    untyped = compile_text(text.replace(', type = "{type}"', ""))
    assert untyped.plan.components[0].kv_tokens_per_replica is None
    assert "cache_chars" not in untyped.files["router/configmap.yaml"].decode()


def test_the_endpoint_picker_sizes_its_prefix_index_with_the_computed_kv_tokens() -> None:
    import yaml

    text = spec(extra=", max_context = 8192").replace('name = "fit"', 'name = "fit"\ntargets = ["manifests", "gateway"]')
    compilation = compile_text(text)
    tokens = compilation.plan.components[0].kv_tokens_per_replica
    [config_map] = [o for o in yaml.safe_load_all(compilation.files["gateway/m.yaml"]) if o["kind"] == "ConfigMap"]
    config = yaml.safe_load(config_map["data"]["default-plugins.yaml"])
    [scorer] = [p for p in config["plugins"] if p["type"] == "prefix-cache-scorer"]
    assert scorer["parameters"] == {"lruCapacityPerServer": tokens * 4 // 64}


def test_facts_from_this_machines_hugging_face_cache_never_change_the_output(tmp_path: Path, monkeypatch) -> None:
    snapshot = tmp_path / "models--acme--tiny" / "snapshots" / "abc"
    snapshot.mkdir(parents=True)
    (tmp_path / "models--acme--tiny" / "refs").mkdir()
    (tmp_path / "models--acme--tiny" / "refs" / "main").write_text("abc")
    (snapshot / "config.json").write_text(json.dumps({
        "hidden_size": 2048, "intermediate_size": 8192, "max_position_embeddings": 8192,
        "num_attention_heads": 32, "num_hidden_layers": 16, "num_key_value_heads": 8, "vocab_size": 128256}))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    text = spec("acme/tiny").replace('name = "fit"', 'name = "fit"\ntargets = ["manifests", "gateway"]')
    assert codes(text) == []  # checked with the cache's facts: it fits
    assert compile_text(text).plan.components[0].kv_tokens_per_replica is None
    (snapshot / "config.json").write_text("{")
    assert codes(text) == ["W143"]


def test_select_nodes_where_no_label_is_known_is_w145_at_the_field() -> None:
    text = spec(type="H1000").replace('type = "H1000"', 'type = "H1000", select_nodes = true')
    [diagnostic] = [d for d in problems(text) if d.code == "W145"]
    assert diagnostic.dotted_path == "models.m.accelerators.select_nodes" and diagnostic.location.line == 7
    assert "no node affinity is added: unknown accelerator type 'H1000'" in diagnostic.message
    cpu = spec().replace("count = 1", "count = 0").replace('"H100-80GB"', '"H100-80GB", select_nodes = true')
    assert [d.message for d in problems(cpu) if d.code == "W145"] == [
        "accelerators.select_nodes is set, but no node affinity is added: no accelerators: the model runs on CPU"]


def test_a_roles_own_accelerators_are_where_its_w145_is() -> None:
    text = spec(extra=", max_context = 8192") + """[models.m.disaggregation.prefill]
replicas = 1
[models.m.disaggregation.decode]
replicas = 1
accelerators = { count = 1, memory = "80Gi", select_nodes = true }
"""
    assert [d.dotted_path for d in problems(text) if d.code == "W145"] == [
        "models.m.disaggregation.decode.accelerators.select_nodes"]


def test_the_specs_own_selection_contradicting_the_type_stands_with_w146() -> None:
    typed = '"H100-80GB", select_nodes = true'
    text = spec().replace('"H100-80GB"', typed) + \
        '[models.m.scheduling]\nnode_selector = { "nvidia.com/gpu.product" = "NVIDIA-L4" }\n'
    [diagnostic] = [d for d in problems(text) if d.code == "W146"]
    assert diagnostic.dotted_path == 'models.m.scheduling.node_selector."nvidia.com/gpu.product"'
    assert diagnostic.location.line == 10 and "NVIDIA-L4" in diagnostic.message
    affinity = spec().replace('"H100-80GB"', typed) + """[models.m.scheduling.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution]
nodeSelectorTerms = [{ matchExpressions = [{ key = "nvidia.com/gpu.product", operator = "In", values = ["NVIDIA-L4"] }] }]
"""
    assert [d.dotted_path for d in problems(affinity) if d.code == "W146"] == ["models.m.scheduling.affinity"]
    agreeing = text.replace("NVIDIA-L4", "NVIDIA-H100-PCIe")
    assert not [d for d in problems(agreeing) if d.code in ("W145", "W146")]


def test_plan_shows_the_nodes_selected_in_a_line_and_in_json(run_stackc) -> None:
    table = run_stackc("plan", "specs/disaggregated.toml")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert "llama (decode): nodes nvidia.com/gpu.product in (NVIDIA-H100-80GB-HBM3, NVIDIA-H100-PCIe)" in lines
    assert "llama (prefill): nodes nvidia.com/gpu.product in (NVIDIA-H100-80GB-HBM3, NVIDIA-H100-PCIe)" in lines
    envelope = json.loads(run_stackc("plan", "specs/disaggregated.toml", "--format", "json").stdout)
    jsonschema.validate(envelope, json.loads((REPO / "docs" / "cli-output.schema.json").read_text()))
    decode = envelope["models"]["llama"]["roles"]["decode"]["node_selection"]
    assert decode["key"] == "nvidia.com/gpu.product" and decode["values"] == ["NVIDIA-H100-80GB-HBM3",
                                                                              "NVIDIA-H100-PCIe"]
    assert "gpu-feature-discovery" in decode["source"]
    # off: no line, no key
    prod = run_stackc("plan", "specs/prod.toml", "--format", "json")
    assert all("node_selection" not in m for m in json.loads(prod.stdout)["models"].values())


def test_a_candidate_and_a_mig_profile_show_their_nodes(tmp_path: Path, run_stackc) -> None:
    text = spec().replace('"H100-80GB"', '"H100-80GB", select_nodes = true') + """[models.m.candidate]
image = "vllm/vllm-openai:v0.12.0"
traffic = 10
[models.mig]
engine = "vllm"
model = "meta-llama/Llama-3.2-1B-Instruct"
accelerators = { count = 1, resource = "nvidia.com/mig-3g.40gb", select_nodes = true }
"""
    (tmp_path / "s.toml").write_text(text)
    result = run_stackc("plan", str(tmp_path / "s.toml"), "--format", "json")
    envelope = json.loads(result.stdout)
    jsonschema.validate(envelope, json.loads((REPO / "docs" / "cli-output.schema.json").read_text()))
    models = envelope["models"]
    assert models["m"]["candidate"]["node_selection"] == models["m"]["node_selection"]
    assert models["mig"]["node_selection"]["key"] is None
    assert "nvidia.com/mig-3g.40gb" in models["mig"]["node_selection"]["note"]
    assert not [d for d in envelope["diagnostics"] if d["code"] in ("W145", "W146")]
    lines = run_stackc("plan", str(tmp_path / "s.toml")).stdout.splitlines()
    assert [line for line in lines if ": nodes " in line] == [
        "m: nodes nvidia.com/gpu.product in (NVIDIA-H100-80GB-HBM3, NVIDIA-H100-PCIe)",
        "mig: nodes by the resource nvidia.com/mig-3g.40gb: only nodes with that MIG profile offer it"]


def test_a_vllm_image_older_than_0_11_leaves_nccls_buffers_out_of_the_kv_cache(tmp_path: Path, run_stackc) -> None:
    def kv(tp: int, image: str = "", model: str = "meta-llama/Llama-3.3-70B-Instruct") -> float:
        (tmp_path / "s.toml").write_text(spec(model, tp=tp)
                                         + (f'image = "{image}"\n' if image else ""))
        result = run_stackc("plan", str(tmp_path / "s.toml"), "--format", "json")
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)["models"]["m"]["fit"]["kv_cache_gib_per_device"]

    assert round(kv(4) - kv(4, "vllm/vllm-openai:v0.10.0"), 2) == 0.86
    assert kv(4) == kv(4, "vllm/vllm-openai:v0.11.0") == kv(4, "vllm/vllm-openai:latest")
    small = "meta-llama/Llama-3.1-8B-Instruct"
    assert kv(2, "vllm/vllm-openai:v0.10.0", small) < kv(2, "", small)
    assert kv(1, "vllm/vllm-openai:v0.10.0", small) == kv(1, "", small)  # one device: no NCCL
