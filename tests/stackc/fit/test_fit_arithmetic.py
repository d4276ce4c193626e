"""The fit check's sums: weights, KV bytes per token, each engine's KV cache, and the fixes it proposes."""

from __future__ import annotations

import attrs
from hypothesis import given, strategies as st

from stackc.fit import arithmetic
from stackc.fit.arithmetic import Deployment
from stackc.fit.catalogue import ACCELERATORS, GIB, MODELS

LLAMA_8B = MODELS["meta-llama/llama-3.1-8b-instruct"]
LLAMA_70B = MODELS["meta-llama/llama-3.3-70b-instruct"]
H100 = ACCELERATORS["H100-80GB"].memory_gib


def test_kv_bytes_per_token_is_layers_times_kv_heads_times_head_dim_times_two_values() -> None:
    full, sliding = arithmetic.kv_bytes(LLAMA_8B, Deployment(H100, "vllm"))
    assert (full, sliding) == (32 * 8 * 128 * 2 * 2, 0)
    # tensor parallelism splits the heads, pipeline parallelism the layers, an fp8 KV cache halves it
    assert arithmetic.kv_bytes(LLAMA_8B, Deployment(H100, "vllm", 2, 2, kv_cache_dtype="fp8"))[0] == 16 * 4 * 128 * 2


def test_ranks_beyond_the_kv_heads_each_keep_one_head() -> None:
    qwen_7b = MODELS["qwen/qwen2.5-7b-instruct"]  # 4 KV heads
    assert arithmetic.kv_bytes(qwen_7b, Deployment(H100, "vllm", 8))[0] == 28 * 1 * 128 * 2 * 2


def test_mla_caches_one_latent_per_token_and_layer_on_every_rank() -> None:
    deepseek = MODELS["deepseek-ai/deepseek-r1"]
    assert arithmetic.kv_bytes(deepseek, Deployment(141, "sglang", 8))[0] == 61 * 576 * 2


def test_sliding_window_layers_keep_only_their_window_per_sequence() -> None:
    gemma = MODELS["google/gemma-3-27b-it"]
    deployment = Deployment(H100, "sglang")
    full, sliding = arithmetic.kv_bytes(gemma, deployment)
    assert full == 10 * 16 * 128 * 2 * 2 and sliding == 52 * 16 * 128 * 2 * 2
    assert arithmetic.sequence_bytes(gemma, deployment, 100_000) == full * 100_000 + sliding * 1024


def test_quantization_shrinks_every_weight_but_the_embeddings() -> None:
    bf16 = arithmetic.weight_bytes(LLAMA_70B, None, None)
    awq = arithmetic.weight_bytes(LLAMA_70B, None, "awq")
    embeddings = 128256 * 8192 * 2
    assert bf16 == LLAMA_70B.parameters * 2
    assert awq == (LLAMA_70B.parameters - embeddings) * 0.53 + embeddings * 2
    assert arithmetic.weight_bytes(LLAMA_70B, None, "some-new-method") is None


def test_an_unknown_quantization_is_no_guess() -> None:
    result = arithmetic.fit(LLAMA_8B, Deployment(H100, "vllm", quantization="q3_magic"))
    assert result.status == "unknown" and "q3_magic" in result.reason


def test_a_70b_model_in_16_bits_does_not_fit_one_h100_and_four_are_the_fix() -> None:
    deployment = Deployment(H100, "vllm", max_context=32768)
    result = arithmetic.fit(LLAMA_70B, deployment)
    assert result.status == "no-fit" and result.problem == "weights"
    assert result.weights_gib_per_device == round(70.6e9 * 2 / GIB, 2)
    assert arithmetic.smallest_tensor_parallel(LLAMA_70B, deployment) == 4  # at 2 the KV cache holds ~25k tokens
    assert arithmetic.larger_accelerator(LLAMA_70B, deployment) == "MI300X"  # 141 GiB of an H200 is too little


def test_the_default_context_of_llama_3_1_does_not_fit_an_l4_and_the_hint_is_the_largest_that_does() -> None:
    deployment = Deployment(ACCELERATORS["L4"].memory_gib, "vllm")
    result = arithmetic.fit(LLAMA_8B, deployment)
    assert result.status == "no-fit" and result.problem == "context" and result.context == 131072
    largest = arithmetic.largest_context(LLAMA_8B, deployment)
    assert arithmetic.fit(LLAMA_8B, attrs.evolve(deployment, max_context=largest)).status == "fits"
    assert arithmetic.fit(LLAMA_8B, attrs.evolve(deployment, max_context=largest + 1024)).status == "no-fit"


def test_vllm_gives_the_kv_cache_its_fraction_less_weights_runtime_and_activations() -> None:
    deployment = Deployment(H100, "vllm", max_context=8192, memory_fraction=0.9)
    result = arithmetic.fit(LLAMA_8B, deployment)
    expected = (H100 * GIB * arithmetic.DRIVER_SHARE * 0.9 - LLAMA_8B.parameters * 2 - arithmetic.NON_TORCH_BYTES
                - arithmetic.activation_bytes(LLAMA_8B, deployment, H100))
    assert result.kv_cache_gib_per_device == round(expected / GIB, 2)
    assert result.kv_tokens_per_replica == int(expected / (131072 * 8192) * 8192)
    assert result.max_concurrent_at_context == int(expected // (131072 * 8192))


def test_sglang_takes_a_static_fraction_that_falls_with_tensor_parallelism() -> None:
    one = arithmetic.fit(LLAMA_8B, Deployment(H100, "sglang", max_context=8192))
    expected = (H100 * GIB * arithmetic.DRIVER_SHARE - arithmetic.NON_TORCH_BYTES) * 0.88 - LLAMA_8B.parameters * 2
    assert one.kv_cache_gib_per_device == round(expected / GIB, 2)
    assert arithmetic.default_fraction("sglang", 8) < arithmetic.default_fraction("sglang", 1)


def test_llama_cpp_holds_exactly_one_context() -> None:
    result = arithmetic.fit(LLAMA_8B, Deployment(ACCELERATORS["L4"].memory_gib, "llamacpp", max_context=8192))
    assert result.status == "fits"
    assert result.kv_tokens_per_replica == 8192 and result.max_concurrent_at_context == 1
    assert result.kv_cache_gib_per_device == round(131072 * 8192 / GIB, 2)


@given(context=st.integers(1, 131072), tp=st.sampled_from([1, 2, 4, 8]),
       accounting=st.sampled_from(["vllm", "sglang", "trtllm", "llamacpp"]))
def test_more_context_never_fits_better(context: int, tp: int, accounting: arithmetic.Accounting) -> None:
    deployment = Deployment(H100, accounting, tp, max_context=context)
    shorter = arithmetic.fit(LLAMA_70B, attrs.evolve(deployment, max_context=max(1, context // 2)))
    longer = arithmetic.fit(LLAMA_70B, deployment)
    assert not (longer.status == "fits" and shorter.status == "no-fit")
    if longer.status == "fits":
        assert longer.max_concurrent_at_context >= 1
        assert longer.kv_tokens_per_replica >= context


@given(tp=st.sampled_from([1, 2, 4, 8, 16]))
def test_weights_per_device_divide_by_the_devices(tp: int) -> None:
    result = arithmetic.fit(LLAMA_70B, Deployment(H100, "vllm", tp, max_context=4096))
    assert result.weights_gib_per_device == round(70.6e9 * 2 / tp / GIB, 2)


def test_vllm_holds_mxfp4_experts_padded_to_its_kernels_tiles() -> None:
    gpt_oss = MODELS["openai/gpt-oss-120b"]
    one = arithmetic.weight_bytes_per_device(gpt_oss, Deployment(H100, "vllm"))
    # vllm#23278 logs "Model loading took 65.9651 GiB" on one H100 (the checkpoint has 60.7 GiB)
    assert abs(one / GIB - 65.97) < 0.1
    # each rank pads its share of the intermediate size: 2880 / 2 = 1440 → 1536
    assert arithmetic.mxfp4_expert_bytes(gpt_oss, 2) == 36 * 128 * (
        3 * 1536 * 3072 / 2 + 3 * 1536 * 3072 / 32 + (2 * 1536 + 3072) * 2)
    # other engines hold the checkpoint as it is
    assert arithmetic.weight_bytes_per_device(gpt_oss, Deployment(H100, "sglang")) == gpt_oss.weight_bytes


def test_the_profiled_sampler_holds_28_bytes_per_logit_of_max_num_seqs_requests() -> None:
    deployment = Deployment(H100, "vllm", max_batched_tokens=8192)
    base = arithmetic.activation_bytes(LLAMA_8B, deployment, H100)
    more = arithmetic.activation_bytes(LLAMA_8B, attrs.evolve(deployment, max_sequences=2048), H100)
    assert round(more - base) == 1024 * LLAMA_8B.vocab * 28
    # never more requests than the batch has tokens
    small = attrs.evolve(deployment, max_batched_tokens=256, max_sequences=1024)
    assert arithmetic.activation_bytes(LLAMA_8B, small, H100) == arithmetic.activation_bytes(
        LLAMA_8B, attrs.evolve(small, max_sequences=256), H100)


def test_a_moe_layer_holds_its_fused_kernels_workspaces() -> None:
    qwen = MODELS["qwen/qwen3-235b-a22b-fp8"]  # hidden 4096, 8 of 128 experts of 1536
    deployment = Deployment(H100, "vllm", 4, max_batched_tokens=1000, max_sequences=1)
    per_token = 8 * (4096 + 4096) + 4096 + 4096 + (64 + 2 * 4) * 128 / 4
    assert arithmetic.activation_bytes(qwen, deployment, H100) == 1000 * per_token * 2 + qwen.vocab * 28
