"""KServe's multi-node predictors: vLLM over the Ray cluster KServe forms (a head and a worker Deployment),
located errors where KServe or the engine can't."""

from __future__ import annotations

from pathlib import Path

import pytest

from stackc.diagnostics import DiagnosticsError
from stackc.testing import (
    compile_text,
    is_core_kind,
    objects,
    pod_security_problems,
    validate_kubernetes,
)

REPO = Path(__file__).resolve().parents[3]
#: Llama 4 Scout over 2 nodes × 8 GPUs (tensor 8 × pipeline 2), weights on a claim
SPEC = (REPO / "specs" / "kserve-multinode.toml").read_text()


def built() -> dict[str, dict]:
    found = objects(compile_text(SPEC).files)
    return {o["kind"]: o for o in found if o["kind"] in ("InferenceService", "ServingRuntime", "InferencePool")}


def test_vllm_starts_rays_head_then_serves_over_the_cluster_the_workers_join() -> None:
    predictor = built()["InferenceService"]["spec"]["predictor"]
    head = predictor["model"]
    assert head["command"][:3] == ["/bin/sh", "-c", 'ray start --node-ip-address="$POD_IP" --disable-usage-stats '
                                   '--head --port=6379 && exec "$@"']
    assert head["args"][:3] == ["vllm", "serve", "/mnt/models"]
    assert " --tensor-parallel-size 8 --pipeline-parallel-size 2 " in " ".join(head["args"])
    assert head["args"][-2:] == ["--distributed-executor-backend", "ray"]
    assert not {"--nnodes", "--headless", "--node-rank"} & set(head["args"])
    [worker] = predictor["workerSpec"]["containers"]
    assert worker["name"] == "worker-container"
    assert worker["command"] == ["/bin/sh", "-c", 'exec ray start --node-ip-address="$POD_IP" --disable-usage-stats '
                                 '--address="$(HEAD_SVC):6379" --block']
    assert "args" not in worker and "readinessProbe" not in worker
    for container in (head, worker):
        env = {e["name"]: e for e in container["env"]}
        assert env["POD_IP"]["valueFrom"] == {"fieldRef": {"fieldPath": "status.podIP"}}
        assert container["resources"]["limits"]["nvidia.com/gpu"] == "8"


def test_kserve_gets_the_split_and_no_autoscaler() -> None:
    found = built()
    service = found["InferenceService"]
    worker_spec = service["spec"]["predictor"]["workerSpec"]
    assert (worker_spec["tensorParallelSize"], worker_spec["pipelineParallelSize"]) == (8, 2)
    assert service["metadata"]["annotations"]["serving.kserve.io/autoscalerClass"] == "none"
    assert service["spec"]["predictor"]["model"]["storageUri"] == "pvc://llama-weights/Llama-4-Scout-17B-16E-Instruct"
    runtime = found["ServingRuntime"]["spec"]
    assert runtime["workerSpec"]["containers"][0]["name"] == "worker-container"


def test_traffic_reaches_the_head_only() -> None:
    """KServe gives the predictor's labels to the head and the workers: the roles come from the runtime."""
    found = built()
    predictor_labels = found["InferenceService"]["spec"]["predictor"]["labels"]
    assert "stackc.dev/role" not in predictor_labels
    runtime = found["ServingRuntime"]["spec"]
    assert runtime["labels"] == {"stackc.dev/role": "leader"}
    assert runtime["workerSpec"]["labels"] == {"stackc.dev/role": "worker"}
    selector = found["InferencePool"]["spec"]["selector"]["matchLabels"]
    head = {**runtime["labels"], **predictor_labels}
    worker = {**runtime["workerSpec"]["labels"], **predictor_labels}
    assert selector.items() <= head.items() and not selector.items() <= worker.items()


def test_every_object_validates_and_both_pods_are_restricted(crd_validator) -> None:
    found = objects(compile_text(SPEC).files)
    assert [p for o in found for p in (validate_kubernetes(o) if is_core_kind(o) else crd_validator(o))] == []
    predictor = next(o for o in found if o["kind"] == "InferenceService")["spec"]["predictor"]
    for pod in (predictor, predictor["workerSpec"]):
        containers = [predictor["model"]] if pod is predictor else pod["containers"]
        assert pod_security_problems({}, {**pod, "containers": containers}, "restricted") == []


def errors(text: str, settings: tuple[str, ...] = ()) -> list[tuple[str, str]]:
    with pytest.raises(DiagnosticsError) as error:
        compile_text(text, settings=settings)
    return sorted((d.code, d.dotted_path) for d in error.value.diagnostics if d.code == "E074")


def test_weights_kserve_does_not_mount_and_more_than_one_cluster_are_located() -> None:
    settings = ('models.scout.model="hf://meta-llama/Llama-4-Scout-17B-16E-Instruct"', "models.scout.replicas=2")
    assert errors(SPEC, settings) == [
        ("E074", "models.scout.model"), ("E074", "models.scout.replicas")]


def test_knative_mode_an_installed_runtime_and_plain_sidecars_are_located() -> None:
    text = SPEC + """
sidecars = [{ name = "proxy", image = "envoyproxy/envoy:v1.33.0", native = false }]
[targets.kserve]
deployment_mode = "Knative"
models.scout.runtime = "kserve-huggingfaceserver-multinode"
"""
    assert errors(text) == [
        ("E074", "models.scout.sidecars"), ("E074", "targets.kserve.deployment_mode"),
        ("E074", "targets.kserve.models.scout.runtime")]
