"""The sums of the fit check, per device, as each engine accounts its memory (docs/fit.md says where each
number comes from). Pure functions of data: no spec, no I/O."""

from __future__ import annotations

import math
import re
from typing import Literal

import attrs

from stackc.fit.catalogue import ACCELERATORS, GIB, ModelFacts
from stackc.records import frozen

#: the driver keeps part of a device for itself: CUDA reports about 99 % of the datasheet's memory
#: (79.35 GiB of an 80 GiB A100 in vllm-project/vllm#636, 23.58 of a 24 GiB RTX 3090 in #10517)
DRIVER_SHARE = 0.99
#: memory outside PyTorch's allocator: CUDA context, NCCL, cuBLAS workspaces (vLLM logs 0.25–0.35 GiB)
NON_TORCH_BYTES = int(0.4 * GIB)
#: llama.cpp's compute buffers for a 512-token micro-batch
LLAMACPP_COMPUTE_BYTES = int(0.5 * GIB)
#: vLLM allocates KV in blocks of 16 tokens
VLLM_BLOCK = 16
#: bytes the sampler holds per logit (request × vocabulary entry) at its peak in vLLM's profile run, which
#: samples with top-k and top-p on purpose (vllm/v1/worker/gpu_model_runner.py ``_dummy_sampler_run``); the
#: native top-k/top-p path (vllm/v1/sample/ops/topk_topp_sampler.py ``apply_top_k_top_p``) keeps at once: the
#: model's 16-bit logits (2), their float32 copy (4), the sorted values (4) and int64 sort indices (8), the
#: softmax of the sorted values that cumsum overwrites (4), the top-k and top-p masks (1 + 1), and, at the
#: peak, the float32 tensor its last line allocates while all of those are still held: ``logits_sort.scatter(
#: dim=-1, index=logits_idx, src=logits_sort)`` un-sorts into a new tensor, not in place (4)
SAMPLER_BYTES_PER_LOGIT = 2 + 4 + 4 + 8 + 4 + 1 + 1 + 4
#: MXFP4 experts in vLLM's Marlin layout (the backend of devices without native FP4, vllm#23278's log):
#: each expert's intermediate size per rank rounded up to 128, the hidden size to 256
#: (vllm/model_executor/layers/quantization/mxfp4.py ``create_weights``); 32 weights share one scale byte
MXFP4_INTERMEDIATE_ALIGN = 128
MXFP4_HIDDEN_ALIGN = 256
MXFP4_BLOCK = 32
#: bytes per weight of the quantization methods whose size is known (group scales included in the rounding)
QUANTIZATION_BYTES = {"fp8": 1.0, "fbgemm_fp8": 1.0, "modelopt": 1.0, "compressed-tensors": 1.0, "awq": 0.53,
                      "awq_marlin": 0.53, "gptq": 0.53, "gptq_marlin": 0.53, "bitsandbytes": 0.53,
                      "mxfp4": 0.53, "int8": 1.0, "experts_int8": 1.0}
#: vLLM before 0.11 took its memory snapshot (``init_device`` of vllm/v1/worker/gpu_worker.py) before
#: ``init_worker_distributed_environment``, so the device memory NCCL holds by the end of the profile counts as
#: non-torch memory inside the budget; vllm-project/vllm#25359, first released in 0.11.0, moved the snapshot after
#: it. The sizes below are NCCL 2.26.2's (PyTorch 2.7, which vLLM 0.9.2 to 0.10.2 require), on the NVLink path:
#: each buffer is a cuMem allocation rounded to the 2 MiB granularity (``ncclCuMemAlloc`` in src/include/alloc.h)
SNAPSHOT_AFTER_NCCL = (0, 11)
NCCL_GRANULE = 2 * 2**20
#: a ring channel's connections on one rank: the receive side holds the LL (512 KiB), LL128 (4.6875 MiB) and
#: Simple (4 MiB) buffers plus its header, 10 MiB once rounded; the send side its header, 2 MiB (src/transport/
#: p2p.cc ``p2pRecvSetup``/``p2pSendSetup``; P2P read, which moves Simple to the sender, is on for SM80 only).
#: NVIDIA/nccl#1685 counts allocations of exactly these two sizes on H100
NCCL_RING_CHANNEL_BYTES = 10 * 2**20 + NCCL_GRANULE
#: a communicator's own device allocations per channel at init: the shared and private peer tables and the ring's
#: user ranks, one granule each (``initChannel`` in src/channel.cc)
NCCL_INIT_CHANNEL_BYTES = 3 * NCCL_GRANULE
#: vLLM's custom all-reduce in the TP group: two ``cudaMalloc`` IPC buffers of ``max_size`` (8 MiB), one with its
#: signal block (vllm/distributed/device_communicators/custom_all_reduce.py), in 2 MiB pages
CUSTOM_ALLREDUCE_BYTES = 18 * 2**20
#: the official image's tag, any registry: vllm/vllm-openai:v0.10.0 (a suffix after the version is allowed, v0.10.1.1
#: too); LMCache's lmcache/vllm-openai is tagged with LMCache's versions, not vLLM's
_VLLM_TAG = re.compile(r"(?:^|/)vllm/vllm-openai:v?(\d+)\.(\d+)(?:[.+-][\w.+-]*)?$")
Accounting = Literal["vllm", "sglang", "trtllm", "llamacpp"]
Status = Literal["fits", "no-fit", "unknown"]


@frozen
class Deployment:
    """What one replica (or one P/D role's replica) runs on and with, engine-neutral."""

    memory_gib: float  # per device, as the datasheet states it
    accounting: Accounting
    tensor_parallel: int = 1
    pipeline_parallel: int = 1
    max_context: int | None = None  # None: the model's own
    memory_fraction: float | None = None  # None: the engine's default
    dtype: str | None = None
    quantization: str | None = None
    kv_cache_dtype: str | None = None
    max_batched_tokens: int | None = None
    max_sequences: int | None = None
    engine_version: tuple[int, int] | None = None  # (major, minor) of the engine's image; None: stackc's default's
    nccl_channels: int = 0  # NCCL's ring channels on these devices (``Accelerator.nccl_channels``); 0: not derived


@frozen
class Fit:
    status: Status
    reason: str = ""
    problem: Literal["weights", "context"] | None = None
    context: int = 0
    weights_gib_per_device: float | None = None
    kv_cache_gib_per_device: float | None = None
    kv_tokens_per_replica: int | None = None
    max_concurrent_at_context: int | None = None


def weight_bytes(facts: ModelFacts, dtype: str | None, quantization: str | None) -> float | None:
    """The whole model's weights in memory; None when the quantization's size is unknown."""
    embeddings = facts.vocab * facts.hidden * (1 if facts.tied_embeddings else 2)
    if quantization is not None:
        per_weight = QUANTIZATION_BYTES.get(quantization.lower())
        if per_weight is None:
            return None
        # quantization leaves the embeddings (and the output head) in 16 bits
        return (facts.parameters - embeddings) * per_weight + embeddings * 2
    if facts.weight_bytes is not None:
        return facts.weight_bytes
    if dtype == "float32":
        return facts.parameters * 4
    if facts.dtype == "fp8":
        return (facts.parameters - embeddings) + embeddings * 2
    return facts.parameters * 2


def _round_up(value: float, multiple: int) -> int:
    return int(math.ceil(value / multiple) * multiple)


def mxfp4_expert_bytes(facts: ModelFacts, tensor_parallel: int) -> float:
    """One rank's MXFP4 experts as vLLM allocates them: for each layer and expert, the fused gate/up
    projection (2 × intermediate × hidden) and the down projection (hidden × intermediate) at half a byte a
    weight, one scale byte per 32 weights, and 16-bit biases, with vLLM's padding of both sizes."""
    intermediate = _round_up(facts.intermediate / tensor_parallel, MXFP4_INTERMEDIATE_ALIGN)
    hidden = _round_up(facts.hidden, MXFP4_HIDDEN_ALIGN)
    weights = 3 * intermediate * hidden
    per_expert = weights / 2 + weights / MXFP4_BLOCK + (2 * intermediate + hidden) * 2
    return facts.layers * facts.experts * per_expert


def weight_bytes_per_device(facts: ModelFacts, deployment: Deployment) -> float | None:
    """One device's share of the weights; None when the quantization's size is unknown. vLLM holds MXFP4
    experts padded to its kernels' tiles (``mxfp4_expert_bytes``), the rest of such a model in 16 bits."""
    devices = deployment.tensor_parallel * deployment.pipeline_parallel
    if deployment.accounting == "vllm" and facts.mxfp4_experts and deployment.quantization is None:
        expert_parameters = facts.layers * facts.experts * 3 * facts.hidden * facts.intermediate
        rest = (facts.parameters - expert_parameters) * 2 / devices
        return rest + mxfp4_expert_bytes(facts, deployment.tensor_parallel) / deployment.pipeline_parallel
    weights = weight_bytes(facts, deployment.dtype, deployment.quantization)
    return None if weights is None else weights / devices


def kv_bytes(facts: ModelFacts, deployment: Deployment) -> tuple[float, float]:
    """Bytes one token costs on one device: (in full-attention layers, in sliding-window layers)."""
    if (deployment.kv_cache_dtype or "").startswith("fp8"):
        per_value = 1
    else:
        per_value = 4 if deployment.dtype == "float32" else 2
    stage_layers = facts.layers / deployment.pipeline_parallel
    if facts.attention == "mla":  # one latent per token and layer, replicated on every TP rank
        return stage_layers * (facts.latent_dim or 0) * per_value, 0.0
    heads = max(1, facts.kv_heads // deployment.tensor_parallel)  # fewer heads than ranks: each keeps one
    per_layer = heads * facts.head_dim * 2 * per_value
    if facts.attention == "hybrid" and facts.full_layers is not None:
        full = facts.full_layers / deployment.pipeline_parallel
        return full * per_layer, (stage_layers - full) * per_layer
    if facts.attention == "sliding":
        return 0.0, stage_layers * per_layer
    return stage_layers * per_layer, 0.0


def sequence_bytes(facts: ModelFacts, deployment: Deployment, context: int) -> float:
    """KV bytes of one sequence of ``context`` tokens on one device (sliding layers keep their window)."""
    full, sliding = kv_bytes(facts, deployment)
    blocks = math.ceil(context / VLLM_BLOCK) * VLLM_BLOCK if deployment.accounting == "vllm" else context
    return full * blocks + sliding * min(blocks, facts.sliding_window or blocks)


def vllm_image_version(image: str | None) -> tuple[int, int] | None:
    """(major, minor) of an official vLLM image's tag (``vllm/vllm-openai:v0.10.0``); None for no image (stackc's
    default), a digest, ``latest`` or nightly tags, and any other repository, whose tag need not be vLLM's."""
    if image is None or "@" in image:
        return None
    found = _VLLM_TAG.search(image)
    return (int(found.group(1)), int(found.group(2))) if found else None


def nccl_bytes(deployment: Deployment) -> float:
    """The device memory NCCL holds by the end of vLLM's profile that a vLLM before 0.11 counts in its budget: 0
    for later versions (and stackc's default image), one device, or devices whose channels are not derived. In
    the TP group, vLLM 0.9.2 to 0.10.2 hold two NCCL communicators over the same ranks: PyNccl's, which connects
    its rings with a warm-up all-reduce when it starts (vllm/distributed/device_communicators/pynccl.py), and
    PyTorch's process group, which NCCL creates at its first collective, the logits' all-gather of the profile's
    sampler run (``all_gather`` of base_device_communicator.py); NCCL 2.22 and later connect a ring only at the
    first collective that uses it (``NCCL_RUNTIME_CONNECT``, src/init.cc), on every channel at once
    (``ncclTransportRingConnect``, src/transport/generic.cc). The PP group holds PyNccl's, rings connected alike.
    A lower bound: tree and NVLS buffers (if NCCL picks them), the PP group's send/receive connections and NCCL's
    kernels are not counted (docs/fit.md)."""
    version = deployment.engine_version
    if deployment.accounting != "vllm" or version is None or version >= SNAPSHOT_AFTER_NCCL \
            or not deployment.nccl_channels:
        return 0.0
    communicator = deployment.nccl_channels * (NCCL_INIT_CHANNEL_BYTES + NCCL_RING_CHANNEL_BYTES)
    tensor = 2 * communicator + CUSTOM_ALLREDUCE_BYTES if deployment.tensor_parallel > 1 else 0
    pipeline = communicator if deployment.pipeline_parallel > 1 else 0
    return float(tensor + pipeline)


def activation_bytes(facts: ModelFacts, deployment: Deployment, device_gib: float) -> float:
    """vLLM's profiled peak: one forward pass of ``max_num_batched_tokens`` in 16 bits, then the sampler over
    ``max_num_seqs`` requests (``SAMPLER_BYTES_PER_LOGIT`` per vocabulary entry). The forward pass holds the
    hidden state and q/k/v per token, and the MLP's gate, up and output (3 × intermediate); a MoE layer holds
    instead its fused kernel's workspaces: tokens × top-k × (max(intermediate, hidden) + max(2 × intermediate,
    hidden)) plus the tokens' output (``workspace_shapes`` of vLLM's fused MoE experts,
    vllm/model_executor/layers/fused_moe/fused_moe.py)."""
    high_end = device_gib >= 70  # vLLM's defaults for H100-class devices (vllm/engine/arg_utils.py)
    tokens = deployment.max_batched_tokens or (8192 if high_end else 2048)
    sequences = min(deployment.max_sequences or (1024 if high_end else 256), tokens)
    tp = deployment.tensor_parallel
    if facts.experts:
        intermediate = facts.intermediate / tp
        mlp = facts.active_experts * (max(intermediate, facts.hidden) + max(2 * intermediate, facts.hidden)) \
            + facts.hidden
    else:
        mlp = 3 * facts.intermediate / tp
    attention = (facts.heads + 2 * facts.kv_heads) * facts.head_dim / tp
    return tokens * (mlp + facts.hidden + attention) * 2 + sequences * facts.vocab * SAMPLER_BYTES_PER_LOGIT


def default_fraction(accounting: Accounting, tensor_parallel: int) -> float:
    """The share of memory an engine takes when the spec sets none."""
    if accounting == "sglang":  # mem_fraction_static by TP size (sglang/srt/server_args.py)
        return 0.79 if tensor_parallel >= 16 else 0.81 if tensor_parallel >= 8 else \
            0.85 if tensor_parallel >= 4 else 0.87 if tensor_parallel >= 2 else 0.88
    return 0.9  # vLLM gpu_memory_utilization; TensorRT-LLM kv_cache_free_gpu_memory_fraction


def fit(facts: ModelFacts, deployment: Deployment) -> Fit:
    """Whether the weights and one ``max_context`` sequence fit, and what the KV cache then holds."""
    context = deployment.max_context or facts.context
    per_device = weight_bytes_per_device(facts, deployment)
    if per_device is None:
        return Fit("unknown", f"the size of quantization '{deployment.quantization}' is unknown", context=context)
    total = deployment.memory_gib * GIB * DRIVER_SHARE
    fraction = deployment.memory_fraction or default_fraction(deployment.accounting, deployment.tensor_parallel)
    if deployment.accounting == "llamacpp":  # KV for exactly n_ctx tokens, no fraction
        budget = total - LLAMACPP_COMPUTE_BYTES
        kv = sequence_bytes(facts, deployment, context)
        return _with_capacity(_result(per_device, min(kv, budget - per_device), context), facts, deployment,
                              min(kv, budget - per_device), context)
    if deployment.accounting == "sglang":  # free memory after start-up (less CUDA context, NCCL) × fraction − weights
        available = (total - NON_TORCH_BYTES) * fraction - per_device
    elif deployment.accounting == "trtllm":
        available = (total - per_device - activation_bytes(facts, deployment, deployment.memory_gib)) * fraction
    else:
        available = total * fraction - per_device - NON_TORCH_BYTES - nccl_bytes(deployment) - activation_bytes(
            facts, deployment, deployment.memory_gib)
    return _with_capacity(_result(per_device, available, context), facts, deployment, available, context)


def _result(per_device: float, available: float, context: int) -> Fit:
    weights = round(per_device / GIB, 2)
    if available <= 0:
        return Fit("no-fit", "the weights leave no memory for the KV cache", "weights", context, weights,
                   round(max(available, 0) / GIB, 2), 0, 0)
    return Fit("fits", "", None, context, weights, round(available / GIB, 2))


def _with_capacity(result: Fit, facts: ModelFacts, deployment: Deployment, available: float, context: int) -> Fit:
    if result.status != "fits":
        return result
    one = sequence_bytes(facts, deployment, context)
    concurrent = int(available // one) if one else 0
    tokens = int(available / one * context) if one else 0
    if concurrent < 1:
        return attrs.evolve(result, status="no-fit", problem="context", kv_tokens_per_replica=tokens,
                            max_concurrent_at_context=0,
                            reason=f"the KV cache holds {tokens} tokens: less than one sequence of {context}")
    return attrs.evolve(result, kv_tokens_per_replica=tokens, max_concurrent_at_context=concurrent)


def largest_context(facts: ModelFacts, deployment: Deployment) -> int:
    """The longest ``max_context`` with which one sequence fits (0 when none does), rounded down to 1024."""
    low, high = 0, deployment.max_context or facts.context
    while low < high:  # fitting is monotonic in the context: bisect
        middle = (low + high + 1) // 2
        if fit(facts, attrs.evolve(deployment, max_context=middle)).status == "fits":
            low = middle
        else:
            high = middle - 1
    return low // 1024 * 1024 if low >= 1024 else low


def smallest_tensor_parallel(facts: ModelFacts, deployment: Deployment, limit: int = 64) -> int | None:
    """The smallest power-of-two tensor parallelism above the spec's with which the model fits."""
    degree = deployment.tensor_parallel * 2
    while degree <= limit:
        if fit(facts, attrs.evolve(deployment, tensor_parallel=degree)).status == "fits":
            return degree
        degree *= 2
    return None


def larger_accelerator(facts: ModelFacts, deployment: Deployment) -> str | None:
    """The catalogue's smallest device type on which the same parallelism fits."""
    for accelerator in sorted(ACCELERATORS.values(), key=lambda a: (a.memory_gib, a.name)):
        if accelerator.cores == 1 and accelerator.memory_gib > deployment.memory_gib and fit(
                facts, attrs.evolve(deployment, memory_gib=accelerator.memory_gib)).status == "fits":
            return accelerator.name
    return None
