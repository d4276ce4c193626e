"""Every image stackc names by default, with where its tag is known to exist: a default tag nobody published
deploys nothing (ImagePullBackOff on every pod). Engines, targets and the core take their defaults from here
(tests/stackc/plan/test_images.py keeps it so); a tag is never derived from a version number alone."""

from __future__ import annotations

from stackc.records import frozen


@frozen
class KnownImage:
    image: str
    #: where the tag is known to exist (a release, a chart that pins it, the project's fact sheets)
    source: str


VLLM = KnownImage("vllm/vllm-openai:v0.33.0",
                  "vLLM v0.33.0 (PyPI vllm 0.33.0); each release is pushed as vllm/vllm-openai:vX.Y.Z "
                  "(shared/docs/engines.md, Images)")
VLLM_CPU = KnownImage("vllm/vllm-openai-cpu:v0.33.0-x86_64",
                      "vLLM v0.33.0's CPU release image, vllm/vllm-openai-cpu:vX.Y.Z-x86_64 "
                      "(shared/docs/engines.md, Images)")
SGLANG = KnownImage("lmsysorg/sglang:v0.5.19",
                    "SGLang v0.5.19 (PyPI sglang 0.5.19); lmsysorg/sglang:vX.Y.Z per release, v0.5.19 the last "
                    "with a CUDA 12 variant (shared/docs/engines.md, SGLang images)")
TRTLLM_SERVE = KnownImage("nvcr.io/nvidia/tensorrt-llm/release:1.2.1",
                          "TensorRT-LLM 1.2.1 (PyPI tensorrt-llm 1.2.1); NGC's release image per version "
                          "(shared/docs/engines.md, trtllm-serve)")
TRITON_TRTLLM = KnownImage("nvcr.io/nvidia/tritonserver:25.12-trtllm-python-py3",
                           "NGC Triton 25.12, TensorRT-LLM backend flavour (shared/docs/engines.md, Triton)")
NEURON = KnownImage("public.ecr.aws/neuron/pytorch-inference-vllm-neuronx:0.16.0-neuronx-py312-sdk2.31.1-ubuntu24.04",
                    "AWS Neuron DLC, the last line covering Inf2/Trn1 (shared/docs/engines.md, Neuron images)")
OLLAMA = KnownImage("ollama/ollama:0.15.2",
                    "pinned by the inference-stack umbrella chart's ollamaRuntime (shared/docs/seed-charts.md)")
LLAMACPP_BUILD = "b10434"
LLAMACPP = {
    "": KnownImage(f"ghcr.io/ggml-org/llama.cpp:server-{LLAMACPP_BUILD}",
                   "llama.cpp build b10434 (commit 7e4c0a9, shared/docs/local-engine.md); ggml-org pushes "
                   "server-bNNNN, server-cuda-bNNNN and server-rocm-bNNNN for each release build"),
    "nvidia.com/": KnownImage(f"ghcr.io/ggml-org/llama.cpp:server-cuda-{LLAMACPP_BUILD}", "as above, CUDA"),
    "amd.com/": KnownImage(f"ghcr.io/ggml-org/llama.cpp:server-rocm-{LLAMACPP_BUILD}", "as above, ROCm"),
}
#: Ray's LLM images by Ray version: those KubeRay's own Serve LLM sample runs (ray-project/kuberay,
#: ray-operator/config/samples/ray-service.llm-serve.yaml, at commits 262a7a12 and 0ca87180). Ray's CUDA
#: suffix changes between releases, so a tag is never derived from a version.
RAY_LLM = {
    "2.46.0": KnownImage("rayproject/ray-llm:2.46.0-py311-cu124", "KubeRay's Serve LLM sample, commit 262a7a12"),
    "2.50.1": KnownImage("rayproject/ray-llm:2.50.1-py311-cu124", "KubeRay's Serve LLM sample, commit 0ca87180"),
}
ENDPOINT_PICKER = KnownImage("ghcr.io/llm-d/llm-d-router-endpoint-picker:v0.10.0",
                             "llm-d/llm-d-router v0.10.0 (shared/docs/targets.md; KServe v0.20 pins v0.9.0)")
PD_SIDECAR = KnownImage("ghcr.io/llm-d/llm-d-router-disagg-sidecar:v0.10.0",
                        "llm-d/llm-d-router v0.10.0, its P/D sidecar (llm-d-modelservice runs it on decode pods; "
                        "shared/docs/targets.md)")
STORAGE_INITIALIZER = KnownImage("kserve/storage-initializer:v0.15.2",
                                 "KServe v0.15.2 (PyPI kserve 0.15.2); KServe pushes its storage initializer per "
                                 "release")
ROUTER = KnownImage("ghcr.io/stackc-dev/stackc-router:0.1.0",
                    "stackc's own router, built from this repository's Dockerfile (docs/router.md; "
                    "tests/test_docs.py keeps the tag and the Dockerfile's together)")
