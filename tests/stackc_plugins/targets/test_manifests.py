from __future__ import annotations

import yaml

from stackc.testing import compile_text, objects, validate_kubernetes

SPEC = """
version = 1
[stack]
name = "t"
namespace = "ns"
labels = { team = "a" }
[models.chat]
engine = "vllm"
model = "org/chat"
replicas = 3
accelerators = { count = 2 }
cache = { size = "10Gi", storage_class = "ssd" }
serving = { tensor_parallel = 2, chat_template = "{{ messages }}" }
security.service_account = { annotations = { "eks.amazonaws.com/role-arn" = "arn:aws:iam::1:role/x" } }
[models.small]
engine = "vllm"
model = "/weights/small"
accelerators = { count = 1 }
enabled = true
[models.off]
engine = "vllm"
model = "org/off"
accelerators = { count = 1 }
enabled = false
"""


def test_every_object_validates_strictly_against_kubernetes_1_35() -> None:
    compilation = compile_text(SPEC, settings=["targets.manifests.create_namespace=true"])
    found = objects(compilation.files)
    assert {o["kind"] for o in found} == {
        "Namespace", "ServiceAccount", "PersistentVolumeClaim", "ConfigMap", "Deployment", "Service", "PodDisruptionBudget",
        "NetworkPolicy"}
    assert [p for o in found for p in validate_kubernetes(o)] == []


def test_a_model_gets_its_objects_and_a_disabled_model_none() -> None:
    files = compile_text(SPEC).files
    # one file per model, its objects in a fixed order
    assert sorted(files) == ["manifests/chat.yaml", "manifests/kustomization.yaml", "manifests/small.yaml"]
    assert [o["kind"] for o in objects({"chat.yaml": files["manifests/chat.yaml"]})] == [
        "ServiceAccount", "PersistentVolumeClaim", "ConfigMap", "Deployment", "Service", "PodDisruptionBudget",
        "NetworkPolicy"]
    assert [o["kind"] for o in objects({"small.yaml": files["manifests/small.yaml"]})] == [
        "ServiceAccount", "Deployment", "Service", "NetworkPolicy"]
    kustomization = yaml.safe_load(files["manifests/kustomization.yaml"])
    assert kustomization["resources"] == sorted(p.removeprefix("manifests/") for p in files if p != "manifests/kustomization.yaml")


def test_selectors_are_stable_and_distinct_per_model() -> None:
    found = objects(compile_text(SPEC).files)
    deployments = {o["metadata"]["name"]: o for o in found if o["kind"] == "Deployment"}
    chat = deployments["t-chat"]["spec"]
    assert chat["selector"]["matchLabels"] == {"app.kubernetes.io/name": "chat", "app.kubernetes.io/instance": "t"}
    assert deployments["t-small"]["spec"]["selector"] != chat["selector"]
    labels = chat["template"]["metadata"]["labels"]
    assert labels["team"] == "a" and labels["app.kubernetes.io/managed-by"] == "stackc"
    services = {o["metadata"]["name"]: o for o in found if o["kind"] == "Service"}
    assert services["t-chat"]["spec"]["selector"] == chat["selector"]["matchLabels"]


def test_secure_defaults_for_engine_pods() -> None:
    deployment = next(o for o in objects(compile_text(SPEC).files) if o["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    context = pod["containers"][0]["securityContext"]
    assert context["allowPrivilegeEscalation"] is False and context["capabilities"] == {"drop": ["ALL"]}


def test_cache_claim_chat_template_and_shm_are_wired() -> None:
    found = objects(compile_text(SPEC).files)
    claim = next(o for o in found if o["kind"] == "PersistentVolumeClaim")
    assert claim["spec"] == {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "10Gi"}},
                             "storageClassName": "ssd"}
    deployment = next(o for o in found if o["kind"] == "Deployment" and o["metadata"]["name"] == "t-chat")
    pod = deployment["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["model-cache"]["persistentVolumeClaim"] == {"claimName": "t-chat-cache"}
    assert volumes["dshm"]["emptyDir"] == {"medium": "Memory", "sizeLimit": "4Gi"}
    assert volumes["chat-template"]["configMap"] == {"name": "t-chat-chat-template"}
    mounts = {m["name"]: m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
    assert mounts["dshm"] == "/dev/shm"
    assert "stackc.dev/config-hash" in deployment["spec"]["template"]["metadata"]["annotations"]
    budget = next(o for o in found if o["kind"] == "PodDisruptionBudget")
    assert budget["spec"]["maxUnavailable"] == 1


def test_progress_deadline_outlasts_the_startup_probe() -> None:
    deployment = next(o for o in objects(compile_text(SPEC).files) if o["kind"] == "Deployment")
    probe = deployment["spec"]["template"]["spec"]["containers"][0]["startupProbe"]
    assert deployment["spec"]["progressDeadlineSeconds"] > probe["periodSeconds"] * probe["failureThreshold"]
