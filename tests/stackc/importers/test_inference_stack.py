"""The KServe + endpoint picker + LiteLLM umbrella (eric-zadara/helm_charts ``inference-stack``). Its
chart publishes no license, so these values are our own, written after its values.yaml comments."""

from __future__ import annotations

import tomllib
from pathlib import Path

from stackc.importers.run import import_values
from stackc.testing import compile_text, objects

VALUES = """infrastructureReleaseName: inference-infrastructure
model-serving:
  inferenceService:
    enabled: true
    name: qwen25-1-5b
    storageUri: hf://Qwen/Qwen2.5-1.5B-Instruct
    gpu: 1
    maxReplicas: 4
    huggingfaceSecret: hf-secret
  llamacppInferenceService:
    enabled: true
    name: qwen25-7b-gguf
    storageUri: s3://models/qwen2.5-7b-instruct-q4_k_m.gguf
    serviceAccountName: s3-model-sa
  ollamaInferenceService:
    enabled: false
    modelTag: qwen3:4b
  inferencePool:
    enabled: true
inference-gateway:
  epp:
    poolName: qwen25-1-5b
"""


def test_the_umbrellas_inference_services_with_the_charts_defaults(tmp_path: Path) -> None:
    (tmp_path / "values.yaml").write_text(VALUES)
    result = import_values("inference-stack", [str(tmp_path / "values.yaml")], name="stack")
    spec = tomllib.loads(result.text)
    assert spec["stack"]["targets"] == ["kserve", "helm", "gateway"]
    vllm, gguf = spec["models"]["qwen25-1-5b"], spec["models"]["qwen25-7b-gguf"]
    assert vllm["serving"] == {"gpu_memory_fraction": 0.85, "max_context": 16384, "prefix_caching": True,
                               "tensor_parallel": 1}  # the runtime's defaults
    assert vllm["autoscaling"] == {"min_replicas": 1, "max_replicas": 4, "target": 10, "signal": "running"}
    assert vllm["security"]["hf_token"] == {"name": "hf-secret", "key": "HF_TOKEN"}
    assert (gguf["engine"], gguf["model"]) == ("llamacpp", "s3://models/qwen2.5-7b-instruct-q4_k_m.gguf")
    [tuning] = result.report  # llama.cpp's runtime tuning, cluster-wide in the chart
    assert tuning.dotted_path == "model-serving.llamacppInferenceService.enabled" and tuning.location.line == 11
    kinds = {o["kind"] for o in objects(compile_text(result.text).files)}
    assert {"InferenceService", "InferencePool"} <= kinds


def test_values_that_enable_no_model_keep_the_charts_default_one_disabled(tmp_path: Path) -> None:
    """The umbrella's own values.yaml enables no InferenceService (the chart renders only its
    ClusterServingRuntimes): the import is not refused; the spec keeps the chart's default vLLM service
    with enabled = false, so it builds and deploys no model either, and the report says so."""
    (tmp_path / "values.yaml").write_text("infrastructureReleaseName: inference-infrastructure\n"
                                          "model-serving:\n  enabled: true\n")
    result = import_values("inference-stack", [str(tmp_path / "values.yaml")], name="stack")
    model = tomllib.loads(result.text)["models"]["qwen25-1-5b"]
    assert model["enabled"] is False and model["model"] == "hf://Qwen/Qwen2.5-1.5B-Instruct"
    [note] = result.report
    assert (note.code, note.dotted_path, note.location.line) == ("W090", "model-serving.enabled", 3)
    assert "the chart deploys no model" in note.message
    assert not [o for o in objects(compile_text(result.text).files) if o["kind"] == "InferenceService"]
