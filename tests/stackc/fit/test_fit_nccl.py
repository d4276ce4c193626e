"""vLLM before 0.11 counts NCCL's buffers in its budget: the image tag gates the term, the devices size it."""

from __future__ import annotations

import attrs
import pytest

from stackc.fit import arithmetic
from stackc.fit.arithmetic import Deployment
from stackc.fit.catalogue import ACCELERATORS, GIB, MODELS, NVSWITCH_RING_CHANNELS
from stackc.plan import images

LLAMA_70B = MODELS["meta-llama/llama-3.3-70b-instruct"]
H100 = ACCELERATORS["H100-80GB"]
MIB = 2**20


@pytest.mark.parametrize(("image", "version"), [
    ("vllm/vllm-openai:v0.10.0", (0, 10)),
    ("vllm/vllm-openai:v0.11.0", (0, 11)),
    ("docker.io/vllm/vllm-openai:v0.9.2", (0, 9)),
    ("vllm/vllm-openai:v0.10.1.1", (0, 10)),
    ("vllm/vllm-openai:0.8.5", (0, 8)),
    ("vllm/vllm-openai:latest", None),
    ("vllm/vllm-openai:nightly", None),
    ("vllm/vllm-openai", None),
    ("vllm/vllm-openai@sha256:" + "a" * 64, None),
    ("vllm/vllm-openai:v0.10.0@sha256:" + "a" * 64, None),
    ("lmcache/vllm-openai:v0.3.1", None),  # LMCache's image, tagged with LMCache's version
    ("lmcache/vllm-openai:latest", None),
    ("registry.example/team/engine:v0.10.0", None),
    (None, None),
])
def test_the_version_is_read_from_the_official_images_tag_only(image: str | None,
                                                               version: tuple[int, int] | None) -> None:
    assert arithmetic.vllm_image_version(image) == version


def test_stackcs_default_vllm_image_takes_its_snapshot_after_nccl() -> None:
    version = arithmetic.vllm_image_version(images.VLLM.image)
    assert version is not None and version >= arithmetic.SNAPSHOT_AFTER_NCCL


def test_the_term_is_two_communicators_and_the_custom_all_reduce_in_the_tp_group() -> None:
    old = Deployment(H100.memory_gib, "vllm", 4, engine_version=(0, 10), nccl_channels=H100.nccl_channels)
    # per channel: 3 granules at init, a 10 MiB receive and a 2 MiB send buffer once the ring connects
    communicator = NVSWITCH_RING_CHANNELS * (3 * 2 + 10 + 2) * MIB
    assert arithmetic.nccl_bytes(old) == 2 * communicator + 18 * MIB
    assert round(arithmetic.nccl_bytes(old) / GIB, 2) == 0.86
    # pipeline parallelism adds its group's PyNccl communicator
    assert arithmetic.nccl_bytes(attrs.evolve(old, pipeline_parallel=2)) == 3 * communicator + 18 * MIB
    assert arithmetic.nccl_bytes(attrs.evolve(old, tensor_parallel=1, pipeline_parallel=2)) == communicator


@pytest.mark.parametrize("change", [
    {"tensor_parallel": 1},  # one device: no NCCL at all
    {"engine_version": (0, 11)},  # vllm#25359: the snapshot follows NCCL's init
    {"engine_version": None},  # no version known: stackc's default image's behaviour
    {"nccl_channels": 0},  # a device whose channels are not derived
    {"accounting": "sglang"},  # SGLang measures after its own NCCL set-up
])
def test_no_term_outside_old_vllm_on_several_devices_of_known_channels(change: dict[str, object]) -> None:
    old = Deployment(H100.memory_gib, "vllm", 4, engine_version=(0, 10), nccl_channels=H100.nccl_channels)
    assert arithmetic.nccl_bytes(attrs.evolve(old, **change)) == 0


def test_an_old_image_at_tp_4_leaves_less_kv_cache_and_at_tp_1_the_same() -> None:
    new = Deployment(H100.memory_gib, "vllm", 4, nccl_channels=H100.nccl_channels)
    old = attrs.evolve(new, engine_version=(0, 10))
    less = arithmetic.fit(LLAMA_70B, new).kv_cache_gib_per_device - arithmetic.fit(LLAMA_70B, old).kv_cache_gib_per_device
    assert less == pytest.approx(0.86, abs=0.01)
    one = attrs.evolve(new, tensor_parallel=1)
    small = MODELS["meta-llama/llama-3.1-8b-instruct"]
    assert arithmetic.fit(small, one) == arithmetic.fit(small, attrs.evolve(one, engine_version=(0, 10)))


def test_nvswitch_devices_carry_the_derived_channels_and_others_none() -> None:
    assert {name for name, a in ACCELERATORS.items() if a.nccl_channels} == {"H200", "H100-80GB", "A100-80GB",
                                                                              "A100-40GB"}
