"""`accelerators.select_nodes`: the node label a catalogue type implies, required of every pod that holds the
accelerators, in every target, merged with the spec's own affinity; and where nothing is added, why."""

from __future__ import annotations

import pytest
import yaml

from stackc.fit.catalogue import ACCELERATORS
from stackc.fit.nodes import node_selection, pod_affinity
from stackc.spec.model import Accelerators, Scheduling
from stackc.testing import compile_text, objects, pod_templates, rejected_objects

H100 = ["NVIDIA-H100-80GB-HBM3", "NVIDIA-H100-PCIe"]
REQUIRED = "requiredDuringSchedulingIgnoredDuringExecution"
ON = Accelerators(count=1, type="H100", select_nodes=True)


def _requirement(key: str = "nvidia.com/gpu.product", values: list[str] = H100) -> dict:
    return {"key": key, "operator": "In", "values": values}


def _terms(affinity: dict | None) -> list[dict]:
    return affinity["nodeAffinity"][REQUIRED]["nodeSelectorTerms"] if affinity else []


def test_every_catalogue_device_has_a_sourced_node_label() -> None:
    for device in ACCELERATORS.values():
        assert device.node_label is not None and device.node_label.values, device.name
        assert device.node_label.source.startswith("https://"), device.name
    assert ACCELERATORS["MI300X"].node_label.key == "amd.com/gpu.device-id"
    assert "74a1" in ACCELERATORS["MI300X"].node_label.values
    assert ACCELERATORS["Inferentia2"].node_label.key == "node.kubernetes.io/instance-type"


def test_off_by_default_the_affinity_is_the_specs_own() -> None:
    own = {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []}}
    assert node_selection(Accelerators(count=1, type="H100"), Scheduling()) is None
    assert pod_affinity(Accelerators(count=1, type="H100"), Scheduling(affinity=own)) == own
    assert pod_affinity(Accelerators(count=1, type="H100"), Scheduling()) is None


def test_without_an_affinity_the_pods_get_one_required_term() -> None:
    assert _terms(pod_affinity(ON, Scheduling())) == [{"matchExpressions": [_requirement()]}]


def test_every_term_of_the_specs_affinity_gets_the_expression_for_kubernetes_ors_them() -> None:
    zone = {"key": "zone", "operator": "In", "values": ["a"]}
    host = {"key": "metadata.name", "operator": "In", "values": ["n1"]}
    own = {"nodeAffinity": {REQUIRED: {"nodeSelectorTerms": [{"matchExpressions": [zone]}, {"matchFields": [host]}]},
                            "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 1, "preference": {}}]},
           "podAffinity": {"x": 1}}
    scheduling = Scheduling(affinity=own)
    merged = pod_affinity(ON, scheduling)
    assert _terms(merged) == [{"matchExpressions": [zone, _requirement()]},
                              {"matchFields": [host], "matchExpressions": [_requirement()]}]
    assert merged["podAffinity"] == {"x": 1} and merged["nodeAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    # the spec's own table is not touched
    assert scheduling.affinity["nodeAffinity"][REQUIRED]["nodeSelectorTerms"][0]["matchExpressions"] == [zone]


def test_a_preferred_only_node_affinity_gains_the_required_part() -> None:
    own = {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 1, "preference": {}}]}}
    merged = pod_affinity(ON, Scheduling(affinity=own))
    assert _terms(merged) == [{"matchExpressions": [_requirement()]}]
    assert "preferredDuringSchedulingIgnoredDuringExecution" in merged["nodeAffinity"]


def test_a_term_that_selects_the_key_itself_keeps_its_own() -> None:
    mine = _requirement(values=["NVIDIA-H100-PCIe"])
    own = {"nodeAffinity": {REQUIRED: {"nodeSelectorTerms": [{"matchExpressions": [mine]}]}}}
    assert _terms(pod_affinity(ON, Scheduling(affinity=own))) == [{"matchExpressions": [mine]}]
    assert node_selection(ON, Scheduling(affinity=own)).contradiction is None


@pytest.mark.parametrize("operator, values", [("NotIn", ["NVIDIA-L4"]), ("Exists", None)])
def test_a_term_that_names_the_key_without_selecting_the_device_gains_the_requirement(operator, values) -> None:
    """NotIn some other value, or Exists, admits other devices' nodes (NotIn even unlabelled ones): the type's
    requirement is ANDed in, and nothing contradicts it."""
    theirs = {"key": "nvidia.com/gpu.product", "operator": operator, **({"values": values} if values else {})}
    own = {"nodeAffinity": {REQUIRED: {"nodeSelectorTerms": [{"matchExpressions": [theirs]}]}}}
    assert _terms(pod_affinity(ON, Scheduling(affinity=own))) == [{"matchExpressions": [theirs, _requirement()]}]
    assert node_selection(ON, Scheduling(affinity=own)).contradiction is None


@pytest.mark.parametrize("operator, values", [
    ("DoesNotExist", None), ("NotIn", ["NVIDIA-H100-80GB-HBM3", "NVIDIA-H100-PCIe"]), ("In", ["NVIDIA-L4"])])
def test_a_term_that_admits_none_of_the_devices_nodes_stands_and_is_a_contradiction(operator, values) -> None:
    theirs = {"key": "nvidia.com/gpu.product", "operator": operator, **({"values": values} if values else {})}
    own = {"nodeAffinity": {REQUIRED: {"nodeSelectorTerms": [{"matchExpressions": [theirs]}]}}}
    assert _terms(pod_affinity(ON, Scheduling(affinity=own))) == [{"matchExpressions": [theirs]}]
    assert node_selection(ON, Scheduling(affinity=own)).contradiction == (("affinity",), (operator, *(values or ())))


def test_an_affinity_kubernetes_would_reject_is_left_as_written_for_the_schema_check_to_report() -> None:
    for broken in ({"nodeAffinity": "x"}, {"nodeAffinity": {REQUIRED: {"nodeSelectorTerms": "x"}}},
                   {"nodeAffinity": {REQUIRED: {"nodeSelectorTerms": [{"matchExpressions": "x"}]}}}):
        assert pod_affinity(ON, Scheduling(affinity=broken)) == broken


@pytest.mark.parametrize("accelerators, note", [
    (Accelerators(count=0, type="H100", select_nodes=True), "CPU"),
    (Accelerators(count=1, memory="24Gi", select_nodes=True), "accelerators.type is unset"),
    (Accelerators(count=1, type="H1000", select_nodes=True), "unknown accelerator type 'H1000'"),
])
def test_nothing_is_added_where_no_label_is_known(accelerators: Accelerators, note: str) -> None:
    selection = node_selection(accelerators, Scheduling())
    assert selection.label is None and selection.unmet and note in selection.note
    assert pod_affinity(accelerators, Scheduling()) is None


def test_a_mig_profile_is_selected_by_its_resource_and_gets_no_affinity() -> None:
    mig = Accelerators(count=1, type="A100", resource="nvidia.com/mig-3g.40gb", select_nodes=True)
    selection = node_selection(mig, Scheduling())
    assert selection.label is None and not selection.unmet and "nvidia.com/mig-3g.40gb" in selection.note
    assert pod_affinity(mig, Scheduling()) is None


def test_the_specs_node_selector_on_the_same_key_stands() -> None:
    mine = Scheduling(node_selector={"nvidia.com/gpu.product": "NVIDIA-H100-PCIe"})
    assert pod_affinity(ON, mine) is None and node_selection(ON, mine).contradiction is None
    other = Scheduling(node_selector={"nvidia.com/gpu.product": "NVIDIA-L4"})
    assert pod_affinity(ON, other) is None
    assert node_selection(ON, other).contradiction == (("node_selector", "nvidia.com/gpu.product"), ("In", "NVIDIA-L4"))


SPEC = """version = 1
[stack]
name = "sel"
targets = {targets}
[models.m]
engine = "{engine}"
model = "{model}"
replicas = 1
accelerators = {{ count = 1, type = "H100", select_nodes = true }}
serving = {{ nodes = {nodes}, pipeline_parallel = {nodes} }}
{extra}"""
PD = """[models.m.disaggregation]
connector = "nixl"
[models.m.disaggregation.prefill]
replicas = 1
[models.m.disaggregation.decode]
replicas = 1
accelerators = { count = 2, type = "H100", select_nodes = true }
tensor_parallel = 2
"""
CANDIDATE = """[models.m.candidate]
image = "vllm/vllm-openai:v0.12.0"
traffic = 10
"""


HF = "hf://meta-llama/Llama-3.1-8B-Instruct"


@pytest.mark.parametrize("targets, engine, nodes, extra, model", [
    ('["manifests", "router"]', "vllm", 1, CANDIDATE, HF),
    ('["manifests"]', "vllm", 2, "", HF),
    ('["manifests"]', "ray-vllm", 1, "", HF),
    ('["manifests", "router"]', "vllm", 1, PD, HF),
    ('["kserve"]', "vllm", 1, "", HF),
    # KServe's multi-node predictors load weights from a claim every node mounts
    ('["kserve"]', "vllm", 2, "", "pvc://weights/llama"),
    ('["llmisvc"]', "vllm", 1, "", HF),
    ('["llmisvc"]', "vllm", 2, "", HF),
    ('["llmisvc"]', "vllm", 1, PD, HF),
], ids=["candidate", "leader-worker", "kuberay", "prefill-decode", "kserve", "kserve-multinode", "llmisvc",
        "llmisvc-multinode", "llmisvc-prefill-decode"])
def test_every_pod_holding_the_accelerators_requires_the_types_nodes_in_every_target(
        targets: str, engine: str, nodes: int, extra: str, model: str) -> None:
    files = compile_text(SPEC.format(targets=targets, engine=engine, nodes=nodes, extra=extra, model=model)).files
    count, problems = rejected_objects(files)
    assert count and problems == []
    found = objects(files)
    # KServe's multi-node predictor: the workers' pod spec beside the predictor's
    workers = [o["spec"]["predictor"]["workerSpec"] for o in found if "workerSpec" in o.get("spec", {}).get("predictor", {})]
    pods = [*(pod for obj in found for _, pod in pod_templates(obj)), *workers]
    holding = [pod for pod in pods if any("nvidia.com/gpu" in (c.get("resources") or {}).get("limits", {})
                                          for c in pod.get("containers", []))]
    assert holding
    for pod in holding:
        assert _terms(pod.get("affinity")) == [{"matchExpressions": [_requirement()]}], pod.get("containers")
    # a KubeRay head holds no accelerators: it takes no accelerator node
    assert all("affinity" not in pod for pod in pods if pod not in holding)


def test_the_helm_values_carry_the_affinity_the_manifests_have() -> None:
    files = compile_text(SPEC.format(targets='["manifests", "helm"]', engine="vllm", nodes=1, extra="", model=HF)).files
    values = yaml.safe_load(files["helm/sel/values.yaml"])
    assert _terms(values["models"]["m"]["affinity"]) == [{"matchExpressions": [_requirement()]}]
