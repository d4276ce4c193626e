"""production-stack's LMCache cache server (``cacheserverSpec``, after values-06) imports as the stack's
KV-cache server, shared by the models whose LMCache offloading became ``kv_offload``."""

from __future__ import annotations

import tomllib
from pathlib import Path

from stackc.importers.run import import_values
from stackc.testing import compile_text, objects

VALUES = """
servingEngineSpec:
  modelSpec:
  - name: mistral
    repository: lmcache/vllm-openai
    tag: latest-nightly
    modelURL: mistralai/Mistral-7B-Instruct-v0.2
    replicaCount: 2
    requestCPU: 10
    requestMemory: 40Gi
    requestGPU: 1
    lmcacheConfig:
      enabled: true
      cpuOffloadingBufferSize: "20"
cacheserverSpec:
  enabled: true
  replicaCount: 1
  containerPort: 8080
  servicePort: 81
  serde: naive
  image:
    repository: lmcache/vllm-openai
    tag: latest-nightly
  resources:
    requests: {cpu: "4", memory: 8G}
    limits: {cpu: "4", memory: 10G}
  labels:
    environment: cacheserver
"""


def imported(tmp_path: Path, text: str = VALUES):
    values = tmp_path / "values.yaml"
    values.write_text(text)
    return import_values("production-stack", [str(values)])


def test_the_cache_server_and_the_models_that_share_it(tmp_path: Path) -> None:
    result = imported(tmp_path)
    spec = tomllib.loads(result.text)
    assert spec["stack"]["kv_cache_server"] == {
        "image": "lmcache/vllm-openai:latest-nightly", "port": 8080, "serde": "naive",
        "image_pull_policy": "IfNotPresent",  # the chart's cacheserverSpec.imagePullPolicy default
        "resources": {"requests": {"cpu": "4", "memory": "8G"}, "limits": {"cpu": "4", "memory": "10G"}}}
    assert spec["models"]["mistral"]["kv_offload"] == {"cpu_gib": 20, "backend": "lmcache", "remote": True}
    reported = {d.dotted_path for d in result.report}
    assert {"cacheserverSpec.servicePort", "cacheserverSpec.labels"} <= reported
    found = objects(compile_text(result.text).files)
    server = next(o for o in found if o["kind"] == "Deployment" and o["metadata"]["name"].endswith("kv-cache-server"))
    assert server["spec"]["template"]["spec"]["containers"][0]["image"] == "lmcache/vllm-openai:latest-nightly"


def test_an_image_where_the_chart_does_not_read_it_is_reported_and_the_charts_image_runs(tmp_path: Path) -> None:
    """values-06 itself sets cacheserverSpec.repository and tag, which the chart ignores: `helm install`
    runs its default image, and so does the imported spec; the misplaced keys are located W090s."""
    text = VALUES.replace("  image:\n    repository: lmcache/vllm-openai\n    tag: latest-nightly\n",
                          "  repository: lmcache/vllm-openai\n  tag: latest-nightly\n")
    result = imported(tmp_path, text)
    server = tomllib.loads(result.text)["stack"]["kv_cache_server"]
    assert server["image"] == "lmcache/vllm-openai:latest" and server["image_pull_policy"] == "IfNotPresent"
    misplaced = {d.dotted_path: d for d in result.report if d.dotted_path in ("cacheserverSpec.repository",
                                                                            "cacheserverSpec.tag")}
    assert misplaced["cacheserverSpec.tag"].location.line == 22
    assert misplaced["cacheserverSpec.tag"].hint == "move it to cacheserverSpec.image.tag"
