"""A model's facts, from the first place that has them: the config.json the spec points at
(``serving.model_config``), the local Hugging Face cache, then stackc's catalogue. None when no place has
them: the fit check then says "unknown" instead of guessing."""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from stackc.fit.catalogue import MODELS, ModelFacts


class ConfigError(Exception):
    """A config.json stackc cannot read: the message says what is wrong."""


def hub_id(model: str) -> str | None:
    """The Hugging Face id of a spec's ``model`` (``hf://org/name`` or ``org/name``), or None for other sources."""
    name = model.removeprefix("hf://")
    if "://" in name or name.startswith("/") or name.count("/") != 1:
        return None
    return name


def catalogue_facts(model: str) -> ModelFacts | None:
    name = hub_id(model)
    return MODELS.get(name.lower()) if name else None


def hub_cache() -> Path:
    """Where huggingface_hub keeps downloads: HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/huggingface/hub."""
    return _hub_cache(os.environ.get("HF_HUB_CACHE"), os.environ.get("HF_HOME"), os.path.expanduser("~"))


@functools.lru_cache(maxsize=8)
def _hub_cache(hub_cache: str | None, hf_home: str | None, home: str) -> Path:
    """Once per environment: a check asks for every model."""
    if hub_cache:
        return Path(hub_cache)
    return Path(hf_home or os.path.join(home, ".cache", "huggingface")) / "hub"


def cached_config(model: str, revision: str | None, cache: Path) -> Path | None:
    """The config.json of ``model`` in the hub cache (the revision's snapshot, or ``main``'s), if downloaded."""
    name = hub_id(model)
    if name is None:
        return None
    repo = os.path.join(cache, f"models--{name.replace('/', '--')}")
    try:  # most models of a large stack are not downloaded here: one failed open says so
        with open(os.path.join(repo, "refs", revision or "main"), encoding="utf-8") as ref:
            commit = ref.read().strip()
    except (OSError, ValueError):  # ValueError: a NUL in the revision
        commit = revision
    if not commit:
        return None
    config = Path(repo, "snapshots", commit, "config.json")
    return config if config.is_file() else None


def read_config(path: Path, source: str) -> ModelFacts:
    """Facts from a transformers config.json (and the safetensors index beside it, for the weights' bytes)."""
    try:
        data = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError) as error:  # ValueError: undecodable text, bad JSON, a NUL in the path
        raise ConfigError(f"cannot read {source}: {error}") from error
    if not isinstance(data, dict):
        raise ConfigError(f"{source} is not a JSON object")
    text = data.get("text_config")  # multimodal configs (Gemma 3, Llama 4) nest the language model
    config: Mapping[str, Any] = {**data, **text} if isinstance(text, dict) else data
    try:
        return _facts(config, source, _index_bytes(path.with_name("model.safetensors.index.json")))
    except (KeyError, TypeError, ValueError, ZeroDivisionError) as error:
        raise ConfigError(f"{source} lacks what the fit check needs ({type(error).__name__}: {error})") from error


def _index_bytes(index: Path) -> int | None:
    try:
        size = json.loads(index.read_text("utf-8"))["metadata"]["total_size"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return size if isinstance(size, int) and size > 0 else None


def _facts(config: Mapping[str, Any], source: str, weight_bytes: int | None) -> ModelFacts:
    hidden = int(config["hidden_size"])
    heads = int(config["num_attention_heads"])
    layers = int(config["num_hidden_layers"])
    kv_heads = int(config.get("num_key_value_heads") or heads)
    head_dim = int(config.get("head_dim") or hidden // heads)
    experts = int(config.get("num_local_experts") or config.get("num_experts") or config.get("n_routed_experts") or 0)
    # Mixtral and gpt-oss size their experts with intermediate_size: they have no moe_intermediate_size
    intermediate = int(experts and config.get("moe_intermediate_size") or config["intermediate_size"])
    vocab = int(config["vocab_size"])
    layer_types = config.get("layer_types")
    window = config.get("sliding_window")
    attention, full_layers, latent = "full", None, None
    if config.get("kv_lora_rank"):
        attention, latent = "mla", int(config["kv_lora_rank"]) + int(config.get("qk_rope_head_dim") or 0)
    elif isinstance(layer_types, list) and window:
        full_layers = sum(1 for kind in layer_types if kind == "full_attention")
        attention = "hybrid" if full_layers < layers else "full"
    elif window and config.get("use_sliding_window", True) and int(window) < int(config["max_position_embeddings"]):
        attention = "sliding"
    quant = config.get("quantization_config")
    dtype = str(config.get("torch_dtype") or config.get("dtype") or "bfloat16")
    if isinstance(quant, dict) and quant.get("quant_method") == "fp8":
        dtype = "fp8"
    tied = bool(config.get("tie_word_embeddings", False))
    return ModelFacts(
        parameters=_parameters(layers, hidden, heads, kv_heads, head_dim, intermediate, vocab, experts,
                               int(config.get("n_shared_experts") or 0), tied),
        layers=layers, hidden=hidden, heads=heads, kv_heads=kv_heads, head_dim=head_dim, intermediate=intermediate,
        vocab=vocab, context=int(config["max_position_embeddings"]), source=source, dtype=dtype,
        attention=attention, full_layers=full_layers,  # type: ignore[arg-type]
        sliding_window=int(window) if attention in ("hybrid", "sliding") else None, latent_dim=latent,
        experts=experts, active_experts=int(config.get("num_experts_per_tok") or 0),
        weight_bytes=weight_bytes, tied_embeddings=tied,
        mxfp4_experts=bool(experts and isinstance(quant, dict) and quant.get("quant_method") == "mxfp4"))


def _parameters(layers: int, hidden: int, heads: int, kv_heads: int, head_dim: int, intermediate: int, vocab: int,
                experts: int, shared: int, tied: bool) -> float:
    """A decoder's parameters counted from its shapes (attention, gated MLP or experts, embeddings)."""
    attention = hidden * head_dim * (2 * heads + 2 * kv_heads)
    mlp = 3 * hidden * intermediate * (experts + shared if experts else 1)
    return layers * (attention + mlp) + vocab * hidden * (1 if tied else 2)
