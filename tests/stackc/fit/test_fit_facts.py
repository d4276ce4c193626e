"""A model's facts: a local config.json, the Hugging Face cache, the catalogue; never a guess."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from stackc.fit import facts
from stackc.fit.catalogue import ACCELERATORS, MODELS

LLAMA_CONFIG = {
    "architectures": ["LlamaForCausalLM"], "hidden_size": 4096, "intermediate_size": 14336,
    "max_position_embeddings": 131072, "num_attention_heads": 32, "num_hidden_layers": 32,
    "num_key_value_heads": 8, "torch_dtype": "bfloat16", "vocab_size": 128256, "tie_word_embeddings": False,
}


def test_every_catalogue_fact_carries_its_source() -> None:
    for model in MODELS.values():
        assert re.fullmatch(r"https://huggingface\.co/[\w.-]+/[\w.-]+/blob/main/config\.json", model.source)
    for accelerator in ACCELERATORS.values():
        assert accelerator.source.startswith("https://")


def test_a_config_json_gives_the_same_facts_as_the_catalogue(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps(LLAMA_CONFIG))
    read = facts.read_config(config, "config.json")
    known = MODELS["meta-llama/llama-3.1-8b-instruct"]
    for name in ("layers", "hidden", "heads", "kv_heads", "head_dim", "intermediate", "vocab", "context", "attention"):
        assert getattr(read, name) == getattr(known, name), name
    assert read.parameters == pytest.approx(known.parameters, rel=0.01)  # counted from the shapes


def test_the_safetensors_index_beside_it_gives_the_weights_exact_size(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps(LLAMA_CONFIG))
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"metadata": {"total_size": 16060522496}}))
    assert facts.read_config(tmp_path / "config.json", "x").weight_bytes == 16060522496


def test_layer_types_make_a_hybrid_and_a_kv_lora_rank_makes_mla(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps({**LLAMA_CONFIG, "sliding_window": 128,
                                  "layer_types": ["sliding_attention", "full_attention"] * 16}))
    hybrid = facts.read_config(config, "x")
    assert (hybrid.attention, hybrid.full_layers, hybrid.sliding_window) == ("hybrid", 16, 128)
    config.write_text(json.dumps({**LLAMA_CONFIG, "kv_lora_rank": 512, "qk_rope_head_dim": 64,
                                  "n_routed_experts": 256, "moe_intermediate_size": 2048,
                                  "num_experts_per_tok": 8, "quantization_config": {"quant_method": "fp8"}}))
    mla = facts.read_config(config, "x")
    assert (mla.attention, mla.latent_dim, mla.experts, mla.dtype) == ("mla", 576, 256, "fp8")


@pytest.mark.parametrize("text", ["{", "[]", json.dumps({"hidden_size": 8})])
def test_a_config_that_cannot_be_read_says_why(tmp_path: Path, text: str) -> None:
    config = tmp_path / "config.json"
    config.write_text(text)
    with pytest.raises(facts.ConfigError, match="config.json"):
        facts.read_config(config, "config.json")


@pytest.mark.parametrize("name", ["missing.json", "bad\x00name.json"])
def test_a_config_path_that_names_no_file_says_so(tmp_path: Path, name: str) -> None:
    with pytest.raises(facts.ConfigError, match="cannot read"):
        facts.read_config(tmp_path / name, name)


def test_the_hugging_face_cache_is_read_at_the_revision_main_points_to(tmp_path: Path) -> None:
    repo = tmp_path / "models--acme--tiny"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc123")
    (repo / "snapshots" / "abc123").mkdir(parents=True)
    (repo / "snapshots" / "abc123" / "config.json").write_text(json.dumps(LLAMA_CONFIG))
    assert facts.cached_config("hf://acme/tiny", None, tmp_path) == repo / "snapshots" / "abc123" / "config.json"
    assert facts.cached_config("acme/tiny", "v2", tmp_path) is None
    assert facts.cached_config("acme/other", None, tmp_path) is None


def test_hub_cache_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    assert facts.hub_cache() == tmp_path
    monkeypatch.delenv("HF_HUB_CACHE")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    assert facts.hub_cache() == tmp_path / "hub"


@pytest.mark.parametrize("model", ["s3://bucket/llama", "/models/x", "ollama://llama3:8b", "acme/unknown"])
def test_models_the_catalogue_lacks_have_no_facts(model: str) -> None:
    assert facts.catalogue_facts(model) is None


def test_catalogue_ids_match_without_regard_to_case_or_the_hf_prefix() -> None:
    assert facts.catalogue_facts("hf://Meta-Llama/Llama-3.1-8B-Instruct") is MODELS["meta-llama/llama-3.1-8b-instruct"]


def test_the_cross_checked_models_say_against_what() -> None:
    verified = {model.source for model in MODELS.values() if model.verified}
    assert all(model.verified.startswith("https://") for model in MODELS.values() if model.verified)
    assert len(verified) >= 12
    # the R1 distillation and the Qwen2.5 it is made from differ in their context (config.json of each)
    assert MODELS["qwen/qwen2.5-14b-instruct"].context == 32768
    assert MODELS["deepseek-ai/deepseek-r1-distill-qwen-14b"].context == 131072


def test_a_config_json_with_mxfp4_experts_is_laid_out_as_vllm_pads_them(tmp_path: Path) -> None:
    gpt_oss = {"hidden_size": 2880, "intermediate_size": 2880, "max_position_embeddings": 131072,
               "num_attention_heads": 64, "num_hidden_layers": 36, "num_key_value_heads": 8, "head_dim": 64,
               "vocab_size": 201088, "num_local_experts": 128, "num_experts_per_tok": 4, "sliding_window": 128,
               "layer_types": ["sliding_attention", "full_attention"] * 18,
               "quantization_config": {"quant_method": "mxfp4"}}
    (tmp_path / "config.json").write_text(json.dumps(gpt_oss))
    read = facts.read_config(tmp_path / "config.json", "config.json")
    known = MODELS["openai/gpt-oss-120b"]
    assert read.mxfp4_experts and (read.attention, read.full_layers, read.experts) == ("hybrid", 18, 128)
    assert read.parameters == pytest.approx(known.parameters, rel=0.01)
    (tmp_path / "config.json").write_text(json.dumps({**gpt_oss, "quantization_config": None}))
    assert not facts.read_config(tmp_path / "config.json", "config.json").mxfp4_experts


def test_hub_cache_follows_home_and_an_unreadable_ref_is_no_download(monkeypatch: pytest.MonkeyPatch,
                                                                      tmp_path: Path) -> None:
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HF_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert facts.hub_cache() == tmp_path / ".cache" / "huggingface" / "hub"
    (tmp_path / "models--acme--tiny" / "refs" / "main").mkdir(parents=True)  # a folder where the ref should be
    assert facts.cached_config("acme/tiny", None, tmp_path) is None
