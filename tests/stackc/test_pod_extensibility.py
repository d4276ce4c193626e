"""Typed pod extensibility: sidecars, init containers, ports, env sources, probes, host IPC, extra objects.

Each feature is asserted in the emitted pods of every target that deploys models (manifests, Helm
through the manifests, KServe), and each conflict as a located error.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
import yaml

from stackc.diagnostics import DiagnosticsError
from stackc.output.tree import write_tree
from stackc.testing import (
    compile_text,
    is_core_kind,
    objects,
    validate_kubernetes,
)

BASE = """\
version = 1
[stack]
name = "s"
namespace = "llm"
targets = ["manifests", "kserve"]
[models.m]
engine = "vllm"
model = "org/m-1b"
accelerators = { count = 1 }
"""

FEATURES = BASE + """\
port = 9000
service_port = 80
env = { POD_IP = { field = "status.podIP" }, MEM_MB = { resource = "limits.memory", divisor = "1Mi" }, \
MODE = "fast", TOKEN = { secret = "tokens", key = "t" }, LEVEL = { config_map = "settings", key = "level", \
optional = true } }
ports = [{ name = "kv", port = 55555 }, { name = "zmq", port = 5557, service = false }]
probes.liveness = { tcp = true }
probes.readiness = { exec = ["cat", "/tmp/ready"] }
scheduling = { runtime_class = "nvidia", priority_class = "inference-high" }
extra_volumes = [{ name = "logs", emptyDir = {} }]
extra_volume_mounts = [{ name = "logs", mountPath = "/var/log/engine" }]

[[models.m.init_containers]]
name = "warm"
image = "busybox:1.36"
command = ["sh", "-c", "touch /cache/warm"]
volume_mounts = [{ volume = "model-cache", path = "/cache" }]

[[models.m.sidecars]]
name = "shipper"
image = "fluent/fluent-bit:3.2"
env = { NODE = { field = "spec.nodeName" } }
ports = [{ name = "shipper-http", port = 2020, service_port = 2021 }]
volume_mounts = [{ volume = "logs", path = "/logs", read_only = true }]
probes.readiness = { path = "/api/v1/health", port = "shipper-http" }
probes.liveness = { tcp = true, port = 2020 }
resources = { requests = { cpu = "100m", memory = "64Mi" } }

[[models.m.sidecars]]
name = "exporter"
image = "exporter:1"
native = false

[[stack.extra_objects]]
apiVersion = "v1"
kind = "ConfigMap"
metadata = { name = "fluent-bit-config" }
data = { "fluent-bit.conf" = "[INPUT]\\n    Name tail\\n" }

[[stack.extra_objects]]
apiVersion = "v1"
kind = "PersistentVolume"
metadata = { name = "weights" }
spec = { capacity = { storage = "100Gi" }, accessModes = ["ReadOnlyMany"], nfs = { server = "nfs.local", path = "/w" } }
"""


def errors(text: str) -> list[str]:
    with pytest.raises(DiagnosticsError) as caught:
        compile_text(text)
    return [d.render() for d in caught.value.diagnostics]


def warnings(text: str) -> list[str]:
    return [d.render() for d in compile_text(text).warnings]


def kind(files, name: str, prefix: str = "manifests/") -> list[dict]:
    return [o for o in objects({k: v for k, v in files.items() if k.startswith(prefix)}) if o["kind"] == name]


@pytest.fixture(scope="module")
def built():
    return compile_text(FEATURES).files


def test_every_object_with_every_feature_validates(built, crd_validator) -> None:
    found = objects(built)
    problems = [p for o in found for p in (validate_kubernetes(o) if is_core_kind(o) else crd_validator(o))]
    assert problems == []


def test_sidecars_are_native_init_containers_after_the_init_containers(built) -> None:
    (deployment,) = kind(built, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    warm, shipper = pod["initContainers"]
    assert warm["name"] == "warm" and "restartPolicy" not in warm
    assert warm["volumeMounts"] == [{"name": "model-cache", "mountPath": "/cache"}]
    assert shipper["restartPolicy"] == "Always"
    assert shipper["ports"] == [{"name": "shipper-http", "containerPort": 2020, "protocol": "TCP"}]
    assert shipper["readinessProbe"]["httpGet"] == {"path": "/api/v1/health", "port": "shipper-http"}
    assert shipper["livenessProbe"]["tcpSocket"] == {"port": 2020}
    assert shipper["env"] == [{"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}]
    assert shipper["volumeMounts"] == [{"name": "logs", "mountPath": "/logs", "readOnly": True}]
    assert shipper["resources"] == {"requests": {"cpu": "100m", "memory": "64Mi"}}
    # the spec's containers meet the same Pod Security level as the engine
    assert shipper["securityContext"] == pod["containers"][0]["securityContext"]
    assert [c["name"] for c in pod["containers"]] == ["engine", "exporter"]


def test_env_takes_values_from_the_pod_its_resources_secrets_and_config_maps(built) -> None:
    (deployment,) = kind(built, "Deployment")
    env = {e["name"]: e for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["POD_IP"]["valueFrom"] == {"fieldRef": {"fieldPath": "status.podIP"}}
    assert env["MEM_MB"]["valueFrom"] == {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}
    assert env["TOKEN"]["valueFrom"] == {"secretKeyRef": {"name": "tokens", "key": "t"}}
    assert env["LEVEL"]["valueFrom"] == {"configMapKeyRef": {"name": "settings", "key": "level", "optional": True}}
    assert env["MODE"] == {"name": "MODE", "value": "fast"}


def test_the_engine_port_extra_ports_and_service_ports(built) -> None:
    (deployment,) = kind(built, "Deployment")
    engine = deployment["spec"]["template"]["spec"]["containers"][0]
    assert engine["args"][engine["args"].index("--port") + 1] == "9000"
    assert [(p["name"], p["containerPort"]) for p in engine["ports"]] == [("http", 9000), ("kv", 55555), ("zmq", 5557)]
    (service,) = kind(built, "Service")
    assert [(p["name"], p["port"], p["targetPort"]) for p in service["spec"]["ports"]] == [
        ("http", 80, "http"), ("kv", 55555, "kv"), ("shipper-http", 2021, "shipper-http")]


def test_the_network_policy_opens_the_specs_ports_to_the_stack_and_scrapers(built) -> None:
    (policy,) = kind(built, "NetworkPolicy")
    rule = policy["spec"]["ingress"][-1]
    assert rule["ports"] == [{"port": "kv", "protocol": "TCP"}, {"port": "zmq", "protocol": "TCP"},
                             {"port": "shipper-http", "protocol": "TCP"}]
    assert rule["from"] == [{"podSelector": {"matchLabels": {"app.kubernetes.io/part-of": "s"}}},
                            {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]


def test_probe_overrides_switch_to_tcp_and_exec(built) -> None:
    (deployment,) = kind(built, "Deployment")
    engine = deployment["spec"]["template"]["spec"]["containers"][0]
    assert engine["livenessProbe"]["tcpSocket"] == {"port": "http"} and "httpGet" not in engine["livenessProbe"]
    assert engine["readinessProbe"]["exec"] == {"command": ["cat", "/tmp/ready"]}
    assert engine["startupProbe"]["httpGet"] == {"path": "/health", "port": "http"}


def test_runtime_and_priority_classes_reach_every_target(built) -> None:
    (deployment,) = kind(built, "Deployment")
    (service,) = kind(built, "InferenceService", "kserve/")
    for pod in (deployment["spec"]["template"]["spec"], service["spec"]["predictor"]):
        assert pod["runtimeClassName"] == "nvidia" and pod["priorityClassName"] == "inference-high"


def test_kserve_gets_the_sidecars_where_it_keeps_them(built) -> None:
    (runtime,) = kind(built, "ServingRuntime", "kserve/")
    assert [c["name"] for c in runtime["spec"]["containers"]] == ["kserve-container", "exporter"]
    (service,) = kind(built, "InferenceService", "kserve/")
    predictor = service["spec"]["predictor"]
    assert [c["name"] for c in predictor["initContainers"]] == ["warm", "shipper"]
    assert predictor["model"]["env"] == kind(built, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]["env"]


def test_kserve_warns_that_its_service_has_the_serving_port_only() -> None:
    found = warnings(FEATURES)
    assert any("warning[W073] models.m.service_port: KServe makes the predictor Service itself" in w for w in found)


def test_knative_warns_about_plain_sidecars() -> None:
    text = FEATURES.replace('targets = ["manifests", "kserve"]', 'targets = ["kserve"]') + \
        '[targets.kserve]\ndeployment_mode = "Knative"\n'
    assert any("warning[W074] models.m.sidecars: Knative runs a second container only with its multi-container"
               in w for w in warnings(text))


def test_extra_objects_are_emitted_as_written_in_the_stacks_namespace(built) -> None:
    for prefix in ("manifests/", "kserve/"):
        (config,) = kind(built, "ConfigMap", prefix)
        assert config["metadata"] == {"name": "fluent-bit-config", "namespace": "llm"}
        assert config["data"] == {"fluent-bit.conf": "[INPUT]\n    Name tail\n"}
        (volume,) = kind(built, "PersistentVolume", prefix)
        assert volume["metadata"] == {"name": "weights"}  # cluster-scoped: no namespace
    assert "- objects.yaml" in built["manifests/kustomization.yaml"].decode()


def test_helm_templates_extra_objects_with_the_release_namespace() -> None:
    files = compile_text(FEATURES.replace('["manifests", "kserve"]', '["helm"]')).files
    templates = {text.split("kind: ", 1)[1].split("\n", 1)[0]: text
                 for text in files["helm/s/templates/objects.yaml"].decode().split("---\n")}
    text = templates["ConfigMap"]
    assert "namespace: '{{ .Release.Namespace }}'" in text and "helm.sh/chart" not in text
    assert "namespace" not in templates["PersistentVolume"]


@pytest.mark.skipif(shutil.which("helm") is None and not os.environ.get("STACKC_HELM"), reason="helm is not installed")
def test_the_chart_renders_the_manifests_with_every_feature(tmp_path) -> None:
    files = compile_text(FEATURES.replace('["manifests", "kserve"]', '["manifests", "helm"]')).files
    write_tree(tmp_path, files)
    helm = os.environ.get("STACKC_HELM") or shutil.which("helm")
    result = subprocess.run([helm, "template", "s", str(tmp_path / "helm" / "s"), "-n", "llm"], capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stderr

    def comparable(found: list[dict]) -> list[dict]:
        for obj in found:
            for meta in (obj["metadata"], obj.get("spec", {}).get("template", {}).get("metadata", {})):
                for label in ("helm.sh/chart", "app.kubernetes.io/managed-by"):
                    meta.get("labels", {}).pop(label, None)
        return sorted(found, key=lambda o: (o["kind"], o["metadata"]["name"]))

    rendered = [d for d in yaml.safe_load_all(result.stdout) if d]
    assert comparable(rendered) == comparable(objects({k: v for k, v in files.items() if k.startswith("manifests/")}))


@pytest.mark.parametrize("field, namespace, key", [("host_ipc", "IPC", "hostIPC"), ("host_pid", "process", "hostPID")])
def test_host_namespaces_need_the_privileged_level(field: str, namespace: str, key: str) -> None:
    (error,) = errors(BASE + f"{field} = true\n")
    assert f"E026] models.m.{field}: sharing the node's {namespace} namespace breaks Pod Security 'restricted'" in error
    files = compile_text(BASE + f'{field} = true\nsecurity.pod_security = "privileged"\n').files
    (deployment,) = kind(files, "Deployment")
    assert deployment["spec"]["template"]["spec"][key] is True


@pytest.mark.parametrize("extra, expected", [
    ('[[models.m.sidecars]]\nname = "s"\nimage = "i"\nports = [{ name = "other", port = 8000 }]\n',
     "spec.toml:13:10: error[E024] models.m.sidecars[0].ports[0]: port 8000/TCP ('other') is already opened by "
     "container 'engine'"),
    ('[[models.m.sidecars]]\nname = "s"\nimage = "i"\nports = [{ name = "http", port = 8001 }]\n',
     "error[E024] models.m.sidecars[0].ports[0]: a port named 'http' is already in container 'engine'"),
    ('[[models.m.sidecars]]\nname = "engine"\nimage = "i"\n',
     "error[E024] models.m.sidecars[0].name: a container named 'engine' is already in the pod"),
    ('ports = [{ name = "other", port = 9000 }, { name = "metrics", port = 8000 }]\n',
     "error[E024] models.m.ports[1]: port 8000/TCP ('metrics') is already opened by container 'engine'"),
    # the engine's own ports clash through the spec's port: NIXL's side channel is 5600
    ('port = 5600\ndisaggregation = { connector = "nixl" }\n',
     "error[E024] models.m.port: port 5600/TCP ('kv-transfer') is already opened by container 'engine'"),
    ('env = { A = "1" }\nsecret_env = { A = { name = "s", key = "k" } }\n',
     "error[E024] models.m.secret_env.A: 'A' is set twice, in env and in secret_env"),
    ('env = { A = { field = "status.podIP", secret = "s" } }\n',
     "error[E025] models.m.env.A: names field and secret"),
    ('env = { A = { secret = "s" } }\n', "error[E025] models.m.env.A: a value from a secret needs its key"),
    ('disaggregation = { connector = "nixl", prefill = { env = { A = { secret = "s" } } } }\n',
     "error[E025] models.m.disaggregation.prefill.env.A: a value from a secret needs its key"),
    ('env = { A = { field = "status.nodeIP" } }\n', "error[E023] models.m.env.A.field: 'status.nodeIP' is not a pod field"),
    ('probes.liveness = { tcp = true, path = "/x" }\n',
     "error[E025] models.m.probes.liveness: a probe does one thing: path and tcp are both set"),
    ('[[models.m.sidecars]]\nname = "s"\nimage = "i"\nprobes.readiness = { tcp = true }\n',
     "error[E025] models.m.sidecars[0].probes.readiness.port: a sidecar's probe needs the port it checks"),
    ('[[models.m.init_containers]]\nname = "i"\nimage = "i"\nvolume_mounts = [{ volume = "nope", path = "/x" }]\n',
     "error[E018] models.m.init_containers[0].volume_mounts[0].volume: mounts the volume 'nope'"),
])
def test_conflicts_are_located_errors(extra: str, expected: str) -> None:
    found = errors(BASE + extra)
    assert any(expected in e for e in found), found


@pytest.mark.parametrize("obj, expected", [
    ('{ kind = "ConfigMap", metadata = { name = "x" } }', "E027] stack.extra_objects[0].apiVersion: needs 'apiVersion'"),
    ('{ apiVersion = "v1", kind = "ConfigMap" }', "E027] stack.extra_objects[0].metadata: needs 'metadata.name'"),
    ('{ apiVersion = "v1", kind = "Secret", metadata = { name = "x" }, stringData = { k = "v" } }',
     "E027] stack.extra_objects[0].stringData: a Secret with data would put its values in the output"),
    ('{ apiVersion = "v1", kind = "ConfigMap", metadata = { name = "x", namespace = "other" } }',
     "E027] stack.extra_objects[0].metadata.namespace: is in namespace 'other', not the stack's ('llm')"),
    ('{ apiVersion = "v1", kind = "Service", metadata = { name = "s-m" } }',
     "E027] stack.extra_objects[0].metadata.name: stackc already emits Service 's-m'"),
    ('{ apiVersion = "v1", kind = "ConfigMap", metadata = { name = "Bad_Name" } }',
     "stack.extra_objects[0].metadata.name: 'Bad_Name' is not a DNS subdomain"),
    ('{ apiVersion = "v1", kind = "ConfigMap", metadata = { name = "x" }, data = true }',
     "E027] stack.extra_objects[0].data: a ConfigMap's 'data' must be a table of strings"),
    ('{ apiVersion = "v1", kind = "ConfigMap", metadata = { name = "x", annotations = { a = 1 } } }',
     "E027] stack.extra_objects[0].metadata.annotations: 'metadata.annotations' must be a table of strings"),
])
def test_extra_objects_are_checked_before_they_are_emitted(obj: str, expected: str) -> None:
    text = BASE.replace('targets = ["manifests", "kserve"]\n', f'targets = ["manifests"]\nextra_objects = [{obj}]\n')
    found = errors(text)
    assert any(expected in e for e in found), found


def test_two_extra_objects_of_one_kind_and_name_are_an_error() -> None:
    obj = '{ apiVersion = "v1", kind = "ConfigMap", metadata = { name = "x" } }'
    found = errors(BASE.replace('targets = ["manifests", "kserve"]\n', f'extra_objects = [{obj}, {obj}]\n'))
    assert any("E027] stack.extra_objects[1].metadata.name: a ConfigMap named 'x' is already in extra_objects" in e
               for e in found), found


def test_plain_string_env_still_works_and_a_wrong_type_is_located() -> None:
    (error,) = errors(BASE + "env = { A = 3 }\n")
    assert "E006] models.m.env.A: expected a string or a table, got an integer (3)" in error
