"""Multi-node replicas: a model over several pods becomes a LeaderWorkerSet whose leaders alone serve."""

from __future__ import annotations

import pytest

from stackc.diagnostics import DiagnosticsError, Severity
from stackc.testing import compile_text, objects, validate_kubernetes

SPEC = """
version = 1
[stack]
name = "mn"
targets = ["manifests", "gateway", "monitoring"]
[models.m]
engine = "{engine}"
model = "org/m"
replicas = 2
accelerators = {{ count = 8 }}
serving = {{ tensor_parallel = {tp}, pipeline_parallel = {pp}, nodes = 2 }}
scheduling.group_topology = "topology.kubernetes.io/zone"
"""
LEADER_SELECTOR = {"app.kubernetes.io/instance": "mn", "app.kubernetes.io/name": "m", "stackc.dev/role": "leader"}


def built(engine: str, tp: int, pp: int = 1) -> dict[str, dict]:
    """The model's own objects by kind (the endpoint picker's are named differently)."""
    found = objects(compile_text(SPEC.format(engine=engine, tp=tp, pp=pp)).files)
    return {obj["kind"]: obj for obj in found if obj["metadata"]["name"] == "mn-m"}


def group_pods(lws: dict) -> tuple[dict, dict]:
    group = lws["spec"]["leaderWorkerTemplate"]
    return group["leaderTemplate"], group["workerTemplate"]


def test_vllm_runs_rank_0_serving_and_the_other_ranks_headless() -> None:
    lws = built("vllm", tp=8, pp=2)["LeaderWorkerSet"]
    leader, worker = (template["spec"]["containers"][0] for template in group_pods(lws))
    group = ["--tensor-parallel-size", "8", "--pipeline-parallel-size", "2", "--nnodes", "2",
             "--master-addr", "$(LWS_LEADER_ADDRESS)"]
    assert " ".join(leader["args"]).endswith(" ".join([*group, "--node-rank", "0"]))
    assert " ".join(worker["args"]).endswith(" ".join([*group, "--node-rank", "$(LWS_WORKER_INDEX)", "--headless"]))
    assert leader["ports"] and "readinessProbe" in leader and "startupProbe" in leader
    assert "ports" not in worker and not {"readinessProbe", "livenessProbe", "startupProbe"} & set(worker)
    # each pod holds its own 8 devices and a /dev/shm sized for them
    for template in group_pods(lws):
        pod = template["spec"]
        assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "8"
        assert next(v for v in pod["volumes"] if v["name"] == "dshm")["emptyDir"]["sizeLimit"] == "16Gi"


def test_sglang_runs_the_same_command_on_every_rank() -> None:
    lws = built("sglang", tp=16)["LeaderWorkerSet"]
    leader, worker = (template["spec"]["containers"][0] for template in group_pods(lws))
    group = ["--tp-size", "16", "--nnodes", "2", "--node-rank", "$(LWS_WORKER_INDEX)",
             "--dist-init-addr", "$(LWS_LEADER_ADDRESS):20000"]
    assert " ".join(leader["args"]).endswith(" ".join(group))
    assert worker["args"] == leader["args"]
    assert "ports" not in worker and "readinessProbe" not in worker


def test_the_group_is_one_leader_worker_set_and_only_leaders_take_traffic() -> None:
    kinds = built("vllm", tp=8, pp=2)
    assert "Deployment" not in kinds and "StatefulSet" not in kinds
    lws = kinds["LeaderWorkerSet"]
    assert lws["spec"]["replicas"] == 2
    assert lws["spec"]["leaderWorkerTemplate"]["size"] == 2
    assert lws["spec"]["leaderWorkerTemplate"]["restartPolicy"] == "RecreateGroupOnPodRestart"
    assert lws["metadata"]["annotations"]["leaderworkerset.sigs.k8s.io/exclusive-topology"] == "topology.kubernetes.io/zone"
    leader, worker = group_pods(lws)
    assert leader["metadata"]["labels"]["stackc.dev/role"] == "leader"
    assert worker["metadata"]["labels"]["stackc.dev/role"] == "worker"
    assert kinds["Service"]["spec"]["selector"] == LEADER_SELECTOR
    assert kinds["InferencePool"]["spec"]["selector"]["matchLabels"] == LEADER_SELECTOR
    assert kinds["PodMonitor"]["spec"]["selector"]["matchLabels"] == LEADER_SELECTOR
    # the group's pods reach each other on any port (NCCL and the rendezvous pick theirs at run time)
    group_rule = kinds["NetworkPolicy"]["spec"]["ingress"][-1]
    assert group_rule == {"from": [{"podSelector": {"matchLabels": {"app.kubernetes.io/instance": "mn",
                                                                    "app.kubernetes.io/name": "m"}}}]}


def test_both_pod_templates_pass_kubernetes_strict_validation() -> None:
    lws = built("vllm", tp=8, pp=2)["LeaderWorkerSet"]
    for template in group_pods(lws):
        template_object = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "t"}, "template": template}
        assert validate_kubernetes(template_object) == []


def test_leader_worker_set_validates_against_its_crd(crd_validator) -> None:
    assert crd_validator(built("sglang", tp=16)["LeaderWorkerSet"]) == []


def located(text: str, targets: list[str] | None = None) -> list[tuple[str, str, str]]:
    with pytest.raises(DiagnosticsError) as error:
        compile_text(text, targets=targets)
    return [(d.code, d.dotted_path, d.message) for d in error.value.diagnostics]


def test_an_engine_that_cannot_span_nodes_is_a_located_error() -> None:
    text = SPEC.format(engine="trtllm", tp=16, pp=1)
    assert any(code == "E020" and path == "models.m.serving.nodes" for code, path, _ in located(text))


def test_devices_per_replica_must_match_the_parallelism() -> None:
    problems = located(SPEC.format(engine="vllm", tp=8, pp=1))
    assert ("E030", "models.m.serving.nodes",
            "2 nodes × 8 accelerators = 16 devices per replica, but tensor_parallel × pipeline_parallel = 8") in problems


def test_too_few_accelerators_suggests_spreading_over_nodes() -> None:
    text = SPEC.format(engine="vllm", tp=16, pp=1).replace(", nodes = 2", "").replace("scheduling.group_topology", "#")
    with pytest.raises(DiagnosticsError) as error:
        compile_text(text)
    (problem,) = error.value.diagnostics
    assert problem.code == "E030" and "serving.nodes = 2" in (problem.hint or "")


def test_kserve_says_which_engine_cannot_run_over_its_ray_cluster() -> None:
    problems = [p for p in located(SPEC.format(engine="sglang", tp=16, pp=1), targets=["kserve"]) if p[0][0] == "E"]
    assert [(code, path) for code, path, _ in problems] == [("E074", "models.m.serving.nodes")]
    assert "engine 'sglang'" in problems[0][2]
    with pytest.raises(DiagnosticsError) as error:
        compile_text(SPEC.format(engine="sglang", tp=16, pp=1), targets=["kserve"])
    hints = [d.hint or "" for d in error.value.diagnostics if d.code == "E074"]
    assert hints and all("llmisvc target" in hint for hint in hints)  # a target stackc has


def test_group_topology_on_a_single_pod_model_warns() -> None:
    text = SPEC.format(engine="vllm", tp=8, pp=1).replace(", nodes = 2", "")
    warnings = [d for d in compile_text(text).warnings if d.severity is Severity.WARNING]
    assert [(d.code, d.dotted_path) for d in warnings] == [("W021", "models.m.scheduling.group_topology")]
