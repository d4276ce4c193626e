"""Facts stackc ships: accelerator memory and the architecture of widely deployed open models, each with
its source (a vendor's datasheet, the model's config.json on Hugging Face). Data only."""

from __future__ import annotations

from typing import Literal

from stackc.records import frozen

GIB = 2**30


@frozen
class NodeLabel:
    """A node label that tells the nodes holding a device type apart: a node whose ``key`` has any of ``values``
    holds it. ``source`` documents who sets the label and how its values are written."""

    key: str
    values: tuple[str, ...]
    source: str


@frozen
class Accelerator:
    """One device type: memory as its datasheet states it (in GiB, as nvidia-smi shows it), per device."""

    name: str
    memory_gib: float
    source: str
    #: chips of AWS Neuron expose several cores; ``aws.amazon.com/neuroncore`` counts cores, each with its share
    cores: int = 1
    #: the label the vendor's node labeller (or the cloud) puts on nodes with this device, for
    #: ``accelerators.select_nodes``; None: no such label is known
    node_label: NodeLabel | None = None
    #: the channels NCCL 2.26 gives a ring on the board's NVSwitch form (SXM), from its topology search
    #: (``NVSWITCH_RING_CHANNELS``); 0: not derived for this device, and no NCCL term (docs/fit.md)
    nccl_channels: int = 0


#: NCCL 2.26.2's ring channels on an NVSwitch baseboard, derived from its source: a GPU's NVLinks to the
#: switches (H100/H200: 18 × 20.6 GB/s, ``SM90_NVLINK_BW`` in src/graph/topo.h; A100: 12 × 20 GB/s) fit 6
#: ring channels at the search's top speed (60 GB/s of ``sm90SpeedArrayIntra``, 40 of ``speedArrayIntra``,
#: src/graph/search.cc); ``ncclTopoDupChannels`` doubles them (search.cc:898, the speed being >= 50 resp.
#: 25 GB/s) and ``ncclTopoPostset`` doubles them again (src/graph/connect.cc:452): 24, as NCCL logs say
#: ("24 coll channels", NCCL 2.26.2, 4 ranks: vllm-project/vllm#18567; channels 00-23 on an H100 host,
#: vllm-project/vllm#10453). PCIe boards get fewer channels: for them the term over-counts, on the safe side
NVSWITCH_RING_CHANNELS = 24


#: NVIDIA GPU feature discovery (part of the GPU operator) labels each node with its GPUs' product name, the
#: NVML name with blanks as '-': one value per board variant (SXM, PCIe, …)
_GFD = "https://github.com/NVIDIA/k8s-device-plugin/blob/main/docs/gpu-feature-discovery/README.md"
#: AMD's node labeller (AMD GPU operator, ROCm/k8s-device-plugin) labels a node whose GPUs are all alike with
#: ``amd.com/gpu.device-id`` = their PCI device id without 0x; the ids are amdgpu.ids' (bare metal, HF, VF)
_AMD_LABELLER = "https://github.com/ROCm/k8s-device-plugin/blob/master/cmd/k8s-node-labeller/main.go"
_AMD_IDS = "https://github.com/ROCm/k8s-device-plugin/blob/master/cmd/k8s-node-labeller/amdgpu.ids"
#: Neuron devices come only with their EC2 instance families (inf2, trn1/trn1n, trn2): the well-known
#: ``node.kubernetes.io/instance-type`` label the cloud provider sets tells them apart, as the Neuron Kubernetes
#: set-up guide requires of Neuron nodes
_INSTANCE_TYPE = "node.kubernetes.io/instance-type"
_NEURON_K8S = ("https://kubernetes.io/docs/reference/labels-annotations-taints/#nodekubernetesioinstance-type; "
               "https://awsdocs-neuron.readthedocs-hosted.com/en/v2.9.1/containers/tutorials/k8s-setup.html")


def _products(*names: str) -> NodeLabel:
    return NodeLabel("nvidia.com/gpu.product", names, _GFD)


def _amd(*device_ids: str) -> NodeLabel:
    return NodeLabel("amd.com/gpu.device-id", device_ids, f"{_AMD_LABELLER}; {_AMD_IDS}")


def _ec2(page: str, *instance_types: str) -> NodeLabel:
    return NodeLabel(_INSTANCE_TYPE, instance_types,
                     f"{_NEURON_K8S}; https://aws.amazon.com/ec2/instance-types/{page}/")


_NV_H100 = "https://www.nvidia.com/en-us/data-center/h100/"
_NV_A100 = "https://www.nvidia.com/en-us/data-center/a100/"
_NV_V100 = "https://www.nvidia.com/en-us/data-center/v100/"
_AWS_NEURON = "https://awsdocs-neuron.readthedocs-hosted.com/en/latest/general/arch/neuron-hardware/"

ACCELERATORS: dict[str, Accelerator] = {a.name: a for a in (
    Accelerator("H200", 141, "https://www.nvidia.com/en-us/data-center/h200/",
                node_label=_products("NVIDIA-H200", "NVIDIA-H200-NVL"),
                nccl_channels=NVSWITCH_RING_CHANNELS),
    Accelerator("H100-80GB", 80, _NV_H100, node_label=_products("NVIDIA-H100-80GB-HBM3", "NVIDIA-H100-PCIe"),
                nccl_channels=NVSWITCH_RING_CHANNELS),
    Accelerator("A100-80GB", 80, _NV_A100, node_label=_products("NVIDIA-A100-SXM4-80GB", "NVIDIA-A100-80GB-PCIe"),
                nccl_channels=NVSWITCH_RING_CHANNELS),
    Accelerator("A100-40GB", 40, _NV_A100, node_label=_products("NVIDIA-A100-SXM4-40GB", "NVIDIA-A100-PCIE-40GB"),
                nccl_channels=NVSWITCH_RING_CHANNELS),
    Accelerator("L40S", 48, "https://www.nvidia.com/en-us/data-center/l40s/", node_label=_products("NVIDIA-L40S")),
    Accelerator("L4", 24, "https://www.nvidia.com/en-us/data-center/l4/", node_label=_products("NVIDIA-L4")),
    Accelerator("A10G", 24, "https://aws.amazon.com/ec2/instance-types/g5/", node_label=_products("NVIDIA-A10G")),
    Accelerator("V100-16GB", 16, _NV_V100, node_label=_products("Tesla-V100-SXM2-16GB", "Tesla-V100-PCIE-16GB")),
    Accelerator("V100-32GB", 32, _NV_V100, node_label=_products("Tesla-V100-SXM2-32GB", "Tesla-V100-PCIE-32GB")),
    Accelerator("MI300X", 192, "https://www.amd.com/en/products/accelerators/instinct/mi300/mi300x.html",
                node_label=_amd("74a1", "74a9", "74b5", "74bd")),
    Accelerator("MI325X", 256, "https://www.amd.com/en/products/accelerators/instinct/mi300/mi325x.html",
                node_label=_amd("74a5")),
    Accelerator("Inferentia2", 32, _AWS_NEURON + "inferentia2.html", cores=2,
                node_label=_ec2("inf2", "inf2.xlarge", "inf2.8xlarge", "inf2.24xlarge", "inf2.48xlarge")),
    Accelerator("Trainium", 32, _AWS_NEURON + "trainium.html", cores=2,
                node_label=_ec2("trn1", "trn1.2xlarge", "trn1.32xlarge", "trn1n.32xlarge")),
    Accelerator("Trainium2", 96, _AWS_NEURON + "trainium2.html", cores=8,
                node_label=_ec2("trn2", "trn2.48xlarge")),
)}
#: names people write for the same device
ACCELERATOR_ALIASES = {"H100": "H100-80GB", "A100": "A100-80GB", "V100": "V100-32GB"}


def accelerator(name: str | None) -> Accelerator | None:
    """The catalogue's device that ``accelerators.type`` names (an alias included), or None."""
    return ACCELERATORS.get(ACCELERATOR_ALIASES.get(name, name)) if name is not None else None
#: a MIG profile's memory is in its resource name (nvidia.com/mig-3g.40gb: 40 GB)
MIG_SOURCE = "https://docs.nvidia.com/datacenter/tesla/mig-user-guide/#supported-mig-profiles"

Attention = Literal["full", "sliding", "hybrid", "mla"]


@frozen
class ModelFacts:
    """What a model is made of, as its config.json says (``source``), and its parameter count (its model card)."""

    parameters: float  # total, every expert included
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int  # of a dense MLP, or of one expert (moe_intermediate_size) in a MoE
    vocab: int
    context: int  # max_position_embeddings: the engine's default max_context
    source: str
    dtype: str = "bfloat16"
    attention: Attention = "full"
    #: hybrid: layers that attend over the whole context; the others over ``sliding_window`` tokens
    full_layers: int | None = None
    sliding_window: int | None = None
    #: MLA: the compressed latent cached per token and layer (kv_lora_rank + qk_rope_head_dim)
    latent_dim: int | None = None
    experts: int = 0
    active_experts: int = 0
    #: bytes of the checkpoint when some of it is quantized (gpt-oss's MXFP4 experts, DeepSeek's FP8)
    weight_bytes: int | None = None
    #: the experts are MXFP4 blocks (``quantization_config.quant_method = "mxfp4"``): vLLM lays them out padded
    mxfp4_experts: bool = False
    tied_embeddings: bool = False
    #: a second published source the shapes were checked against (layers, heads, KV heads, head dim, hidden,
    #: intermediate, vocabulary, context, experts); empty: taken from ``source`` alone, not cross-checked
    verified: str = ""


#: NVIDIA's AIConfigurator model table (model_family, layers, heads, KV heads, head dim, hidden, intermediate,
#: vocabulary, context, top-k, experts, MoE intermediate), checked field by field on 2026-12-05. It gives Qwen2.5
#: 1.5B and 7B 131,072 positions, their YaRN-extended length; the catalogue keeps config.json's 32,768
_AICONFIGURATOR = "https://github.com/ai-dynamo/aiconfigurator/blob/main/src/aiconfigurator/sdk/common.py"


def _hf(repo: str) -> str:
    return f"https://huggingface.co/{repo}/blob/main/config.json"


# Each entry: the Hugging Face ids it answers to (lower case), then the facts of the first one's config.json.
_MODELS: tuple[tuple[tuple[str, ...], ModelFacts], ...] = (
    (("meta-llama/llama-3.1-8b-instruct", "meta-llama/llama-3.1-8b", "meta-llama/meta-llama-3.1-8b-instruct",
      "meta-llama/meta-llama-3-8b-instruct"),
     ModelFacts(8.03e9, 32, 4096, 32, 8, 128, 14336, 128256, 131072, _hf("meta-llama/Llama-3.1-8B-Instruct"),
                verified=_AICONFIGURATOR)),
    (("meta-llama/llama-3.1-70b-instruct", "meta-llama/llama-3.3-70b-instruct", "meta-llama/llama-3.1-70b",
      "meta-llama/meta-llama-3.1-70b-instruct"),
     ModelFacts(70.6e9, 80, 8192, 64, 8, 128, 28672, 128256, 131072, _hf("meta-llama/Llama-3.3-70B-Instruct"),
                verified=_AICONFIGURATOR)),
    (("meta-llama/llama-3.1-405b-instruct", "meta-llama/meta-llama-3.1-405b-instruct"),
     ModelFacts(405.9e9, 126, 16384, 128, 8, 128, 53248, 128256, 131072, _hf("meta-llama/Llama-3.1-405B-Instruct"),
                verified=_AICONFIGURATOR)),
    (("meta-llama/llama-3.2-1b-instruct", "meta-llama/llama-3.2-1b"),
     ModelFacts(1.24e9, 16, 2048, 32, 8, 64, 8192, 128256, 131072, _hf("meta-llama/Llama-3.2-1B-Instruct"),
                tied_embeddings=True)),
    (("meta-llama/llama-3.2-3b-instruct", "meta-llama/llama-3.2-3b"),
     ModelFacts(3.21e9, 28, 3072, 24, 8, 128, 8192, 128256, 131072, _hf("meta-llama/Llama-3.2-3B-Instruct"),
                tied_embeddings=True)),
    (("qwen/qwen2.5-0.5b-instruct", "qwen/qwen2.5-0.5b"),
     ModelFacts(0.49e9, 24, 896, 14, 2, 64, 4864, 151936, 32768, _hf("Qwen/Qwen2.5-0.5B-Instruct"),
                tied_embeddings=True)),
    (("qwen/qwen2.5-1.5b-instruct", "qwen/qwen2.5-1.5b"),
     ModelFacts(1.54e9, 28, 1536, 12, 2, 128, 8960, 151936, 32768, _hf("Qwen/Qwen2.5-1.5B-Instruct"),
                tied_embeddings=True, verified=_AICONFIGURATOR)),
    (("qwen/qwen2.5-7b-instruct", "qwen/qwen2.5-7b", "qwen/qwen2.5-coder-7b-instruct"),
     ModelFacts(7.62e9, 28, 3584, 28, 4, 128, 18944, 152064, 32768, _hf("Qwen/Qwen2.5-7B-Instruct"),
                verified=_AICONFIGURATOR)),
    (("qwen/qwen2.5-14b-instruct", "qwen/qwen2.5-14b"),  # 32,768 positions; the R1 distillation has 131,072
     ModelFacts(14.8e9, 48, 5120, 40, 8, 128, 13824, 152064, 32768, _hf("Qwen/Qwen2.5-14B-Instruct"))),
    (("deepseek-ai/deepseek-r1-distill-qwen-14b",),
     ModelFacts(14.8e9, 48, 5120, 40, 8, 128, 13824, 152064, 131072,
                _hf("deepseek-ai/DeepSeek-R1-Distill-Qwen-14B"))),
    (("qwen/qwen2.5-32b-instruct", "qwen/qwen2.5-32b", "qwen/qwen2.5-coder-32b-instruct"),
     ModelFacts(32.8e9, 64, 5120, 40, 8, 128, 27648, 152064, 32768, _hf("Qwen/Qwen2.5-32B-Instruct"),
                verified=_AICONFIGURATOR)),
    (("qwen/qwen2.5-72b-instruct", "qwen/qwen2.5-72b"),
     ModelFacts(72.7e9, 80, 8192, 64, 8, 128, 29568, 152064, 32768, _hf("Qwen/Qwen2.5-72B-Instruct"),
                verified=_AICONFIGURATOR)),
    (("qwen/qwen3-8b",),
     ModelFacts(8.19e9, 36, 4096, 32, 8, 128, 12288, 151936, 40960, _hf("Qwen/Qwen3-8B"))),
    (("qwen/qwen3-32b",),
     ModelFacts(32.8e9, 64, 5120, 64, 8, 128, 25600, 151936, 40960, _hf("Qwen/Qwen3-32B"), verified=_AICONFIGURATOR)),
    (("qwen/qwen3-30b-a3b", "qwen/qwen3-30b-a3b-instruct-2507"),
     ModelFacts(30.5e9, 48, 2048, 32, 4, 128, 768, 151936, 40960, _hf("Qwen/Qwen3-30B-A3B"),
                experts=128, active_experts=8)),
    (("qwen/qwen3-235b-a22b", "qwen/qwen3-235b-a22b-instruct-2507"),
     ModelFacts(235e9, 94, 4096, 64, 4, 128, 1536, 151936, 40960, _hf("Qwen/Qwen3-235B-A22B"),
                experts=128, active_experts=8, verified=_AICONFIGURATOR)),
    (("qwen/qwen3-235b-a22b-fp8",),
     ModelFacts(235e9, 94, 4096, 64, 4, 128, 1536, 151936, 40960, _hf("Qwen/Qwen3-235B-A22B-FP8"),
                dtype="fp8", experts=128, active_experts=8, verified=_AICONFIGURATOR)),
    (("openai/gpt-oss-120b",),
     ModelFacts(116.8e9, 36, 2880, 64, 8, 64, 2880, 201088, 131072, _hf("openai/gpt-oss-120b"),
                attention="hybrid", full_layers=18, sliding_window=128, experts=128, active_experts=4,
                weight_bytes=65_200_000_000, mxfp4_experts=True)),
    (("openai/gpt-oss-20b",),
     ModelFacts(20.9e9, 24, 2880, 64, 8, 64, 2880, 201088, 131072, _hf("openai/gpt-oss-20b"),
                attention="hybrid", full_layers=12, sliding_window=128, experts=32, active_experts=4,
                weight_bytes=13_800_000_000, mxfp4_experts=True)),
    (("deepseek-ai/deepseek-v3", "deepseek-ai/deepseek-r1", "deepseek-ai/deepseek-v3-0324",
      "deepseek-ai/deepseek-r1-0528", "deepseek-ai/deepseek-v3.1"),
     ModelFacts(671e9, 61, 7168, 128, 128, 192, 2048, 129280, 163840, _hf("deepseek-ai/DeepSeek-V3"),
                dtype="fp8", attention="mla", latent_dim=512 + 64, experts=256, active_experts=8,
                verified=_AICONFIGURATOR)),
    (("mistralai/mistral-7b-instruct-v0.3", "mistralai/mistral-7b-v0.3"),
     ModelFacts(7.25e9, 32, 4096, 32, 8, 128, 14336, 32768, 32768, _hf("mistralai/Mistral-7B-Instruct-v0.3"))),
    (("mistralai/mistral-small-24b-instruct-2501",),
     ModelFacts(23.6e9, 40, 5120, 32, 8, 128, 32768, 131072, 32768,
                _hf("mistralai/Mistral-Small-24B-Instruct-2501"))),
    (("mistralai/mixtral-8x7b-instruct-v0.1", "mistralai/mixtral-8x7b-v0.1"),
     ModelFacts(46.7e9, 32, 4096, 32, 8, 128, 14336, 32000, 32768, _hf("mistralai/Mixtral-8x7B-Instruct-v0.1"),
                experts=8, active_experts=2, verified=_AICONFIGURATOR)),
    (("google/gemma-2-9b-it", "google/gemma-2-9b"),
     ModelFacts(9.24e9, 42, 3584, 16, 8, 256, 14336, 256000, 8192, _hf("google/gemma-2-9b-it"),
                attention="hybrid", full_layers=21, sliding_window=4096, tied_embeddings=True)),
    (("google/gemma-2-27b-it", "google/gemma-2-27b"),
     ModelFacts(27.2e9, 46, 4608, 32, 16, 128, 36864, 256000, 8192, _hf("google/gemma-2-27b-it"),
                attention="hybrid", full_layers=23, sliding_window=4096, tied_embeddings=True)),
    (("google/gemma-3-12b-it",),
     ModelFacts(12.2e9, 48, 3840, 16, 8, 256, 15360, 262208, 131072, _hf("google/gemma-3-12b-it"),
                attention="hybrid", full_layers=8, sliding_window=1024, tied_embeddings=True)),
    (("google/gemma-3-27b-it",),
     ModelFacts(27.4e9, 62, 5376, 32, 16, 128, 21504, 262208, 131072, _hf("google/gemma-3-27b-it"),
                attention="hybrid", full_layers=10, sliding_window=1024, tied_embeddings=True)),
    (("microsoft/phi-3-mini-4k-instruct",),
     ModelFacts(3.82e9, 32, 3072, 32, 32, 96, 8192, 32064, 4096, _hf("microsoft/Phi-3-mini-4k-instruct"))),
    (("microsoft/phi-4",),
     ModelFacts(14.7e9, 40, 5120, 40, 10, 128, 17920, 100352, 16384, _hf("microsoft/phi-4"))),
)
MODELS: dict[str, ModelFacts] = {name: facts for names, facts in _MODELS for name in names}
