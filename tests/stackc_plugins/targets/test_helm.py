"""The chart is the whole stack: for every spec, `helm template` renders exactly the objects of the manifests
and of the stack's router, monitoring and gateway folders, compiled for the release's namespace."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import jsonschema
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from stackc import pipeline
from stackc.output.render import to_yaml
from stackc.output.tree import write_tree
from stackc.plugins import load_registry
from stackc.testing import compile_text
from stackc_plugins.targets.helm import (NOT_PLAIN_LABELS, OBSERVABILITY_GROUPS, RELEASE_NAMESPACE, addon_template,
                                         template)

REPO = Path(__file__).resolve().parents[3]
HELM = os.environ.get("STACKC_HELM") or shutil.which("helm")
SPECS = sorted(p for p in (REPO / "specs").rglob("*.toml") if "invalid" not in p.parts)
needs_helm = pytest.mark.skipif(HELM is None, reason="helm is not installed (bash .ci/install-helm.sh)")
CHART_ONLY_LABELS = ("helm.sh/chart", "app.kubernetes.io/managed-by")
#: a release and a namespace that no spec names
OTHER_RELEASE, OTHER_NAMESPACE = "other-release", "other-ns"


def build(spec: Path, out: Path, *settings: str) -> tuple[pipeline.Compilation, Path]:
    """The spec's own targets with the chart and the manifests it equals (KServe's targets deploy models another
    way: every other target that serves them is left out)."""
    registry = load_registry()
    own = pipeline.check([spec], registry).spec.stack.targets
    elsewhere = set(registry.targets_having("serves_models", own)) - {"manifests", "helm"}
    targets = sorted({*own, "manifests", "helm"} - elsewhere)
    compilation = pipeline.compile_stack([spec], registry, settings, targets=targets)
    root = out / compilation.spec.stack.name
    write_tree(root, compilation.files)
    return compilation, root / "helm" / compilation.spec.stack.name


def helm(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([HELM, *args], capture_output=True, text=True)


def comparable(objects: list[dict]) -> list[dict]:
    found = []
    for obj in objects:
        obj = json.loads(json.dumps(obj))
        spec = obj.get("spec", {})
        group = spec.get("leaderWorkerTemplate", {})
        cluster = spec.get("rayClusterConfig", {})
        templates = [spec.get("template", {}), group.get("leaderTemplate", {}), group.get("workerTemplate", {}),
                     cluster.get("headGroupSpec", {}).get("template", {}),
                     *(workers["template"] for workers in cluster.get("workerGroupSpecs", []))]
        for meta in (obj["metadata"], *(pod.get("metadata", {}) for pod in templates)):
            for label in CHART_ONLY_LABELS:
                meta.get("labels", {}).pop(label, None)
        found.append(obj)
    return sorted(found, key=lambda o: (o["kind"], o["metadata"]["name"]))


def manifests_objects(compilation: pipeline.Compilation, folders: tuple[str, ...] = ("manifests/",)) -> list[dict]:
    return [d for name, content in sorted(compilation.files.items())
            if name.startswith(folders) and name.endswith(".yaml") and not name.endswith("kustomization.yaml")
            for d in yaml.safe_load_all(content) if d]


def whole_stack(compilation: pipeline.Compilation) -> list[dict]:
    """What one release of the chart installs: the manifests and every add-on target of the stack."""
    return manifests_objects(compilation, tuple(f"{t}/" for t in compilation.targets if t != "helm"))


def api_versions(objects: list[dict]) -> list[str]:
    """--api-versions for every kind of ``objects``: a cluster that serves them all."""
    kinds = sorted({f"{o['apiVersion']}/{o['kind']}" for o in objects})
    return [arg for kind in kinds for arg in ("--api-versions", kind)]


def observability(obj: dict) -> bool:
    return obj["apiVersion"].rpartition("/")[0] in OBSERVABILITY_GROUPS


def rendered(chart: Path, release: str, namespace: str, *extra: str) -> list[dict]:
    result = helm("template", release, str(chart), "-n", namespace, *extra)
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


@needs_helm
@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.relative_to(REPO / "specs").as_posix())
def test_lint_is_clean_and_template_equals_the_whole_stack_in_any_namespace(spec: Path, tmp_path: Path) -> None:
    compilation, chart = build(spec, tmp_path / "chart")
    lint = helm("lint", "--strict", str(chart))
    assert lint.returncode == 0, lint.stdout + lint.stderr
    schema = json.loads((chart / "values.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    defaults = yaml.safe_load((chart / "values.yaml").read_text())
    assert list(jsonschema.Draft202012Validator(schema).iter_errors(defaults)) == []
    stack = compilation.spec.stack
    expected = whole_stack(compilation)
    assert comparable(rendered(chart, stack.name, stack.namespace, *api_versions(expected))) == comparable(expected)
    # another release in another namespace: the objects, the router's discovery, RBAC subjects, NetworkPolicy
    # peers and every PromQL query (dashboards, alerts, autoscalers) are those compiled for that namespace
    elsewhere = whole_stack(build(spec, tmp_path / "elsewhere", f"stack.namespace={OTHER_NAMESPACE!r}")[0])
    assert RELEASE_NAMESPACE not in json.dumps(elsewhere)
    everything = api_versions(elsewhere)
    assert comparable(rendered(chart, OTHER_RELEASE, OTHER_NAMESPACE, *everything)) == comparable(elsewhere)
    # a cluster without the custom resources' APIs: only the observability add-ons are left out (NOTES.txt
    # names them); whatever serves the models renders, so such an install fails naming the missing API
    assert comparable(rendered(chart, OTHER_RELEASE, OTHER_NAMESPACE)) == comparable(
        [o for o in elsewhere if not observability(o)])


@needs_helm
@pytest.mark.parametrize("namespace", ["true", "null"])  # a spec's namespace starts with a letter
def test_a_namespace_yaml_reads_as_another_type_stays_a_string_in_objects_and_config_files(namespace: str,
                                                                                           tmp_path: Path) -> None:
    _, chart = build(REPO / "specs" / "prod.toml", tmp_path / "chart")
    compiled = whole_stack(build(REPO / "specs" / "prod.toml", tmp_path / "there", f"stack.namespace={namespace!r}")[0])
    assert comparable(rendered(chart, "prod", namespace, *api_versions(compiled))) == comparable(compiled)


@settings(max_examples=300, deadline=None)
@given(st.from_regex(r"\A[a-z0-9]([-a-z0-9]{0,10}[a-z0-9])?\Z") | st.sampled_from(
    ["yes", "no", "true", "false", "on", "off", "null", "0", "07", "08", "0b101", "0x1f", "1e3", "2024-01-02"]))
def test_the_chart_quotes_exactly_the_namespaces_stackc_quotes(label: str) -> None:
    assert (re.fullmatch(NOT_PLAIN_LABELS, label) is not None) == (to_yaml({"a": label}) != f"a: {label}\n")


@needs_helm
def test_notes_name_the_observability_objects_a_cluster_without_their_api_skips(tmp_path: Path) -> None:
    _, chart = build(REPO / "specs" / "prod.toml", tmp_path)
    bare = helm("install", "prod", str(chart), "-n", "llm-prod", "--dry-run=client")
    assert bare.returncode == 0, bare.stderr
    assert "Skipped 3 PodMonitor object(s): the cluster does not serve monitoring.coreos.com/v1/PodMonitor" \
        in bare.stdout
    assert "Skipped 1 PrometheusRule object(s)" in bare.stdout and "kind: PodMonitor" not in bare.stdout


@needs_helm
def test_set_replicas_changes_that_deployment_only_and_the_schema_guards_types(tmp_path: Path) -> None:
    compilation, chart = build(REPO / "specs" / "prod.toml", tmp_path)
    before = comparable(rendered(chart, "prod", "llm-prod"))
    after = comparable(rendered(chart, "prod", "llm-prod", "--set", "models.llama-8b.replicas=5"))
    changed = [(a["kind"], a["metadata"]["name"]) for a, b in zip(after, before, strict=True) if a != b]
    assert changed == [("Deployment", "prod-llama-8b")]
    deployment = next(o for o in after if o["metadata"]["name"] == "prod-llama-8b" and o["kind"] == "Deployment")
    reverted = json.loads(json.dumps(deployment))
    reverted["spec"]["replicas"] = 2
    assert reverted == next(o for o in before if o["metadata"]["name"] == "prod-llama-8b" and o["kind"] == "Deployment")
    bad = helm("template", "prod", str(chart), "-n", "llm-prod", "--set-string", "models.llama-8b.replicas=two")
    assert bad.returncode != 0 and "replicas" in bad.stderr


@needs_helm
def test_values_tune_images_args_and_global_labels(tmp_path: Path) -> None:
    _, chart = build(REPO / "specs" / "prod.toml", tmp_path)
    objects = rendered(chart, "prod", "llm-prod", "--set", "models.llama-8b.image.tag=v9", "--set",
                       "models.llama-8b.extraArgs={--enforce-eager}", "--set", "global.labels.env=staging")
    deployment = next(o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "prod-llama-8b")
    engine = deployment["spec"]["template"]["spec"]["containers"][0]
    assert engine["image"] == "vllm/vllm-openai:v9" and engine["args"][-1] == "--enforce-eager"
    assert all(o["metadata"]["labels"]["env"] == "staging" for o in objects)
    assert all(o["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm" for o in objects)


def test_only_observability_add_ons_are_guarded_by_their_api() -> None:
    compilation = compile_text('version = 1\n[stack]\nname = "g"\n[models.m]\nengine = "vllm"\nmodel = "org/m"\n'
                               'accelerators = { count = 1 }\n')
    monitor = {"apiVersion": "monitoring.coreos.com/v1", "kind": "PodMonitor",
               "metadata": {"name": "x", "namespace": "g", "labels": {"a": "b"}}, "spec": {}}
    text = template("g", compilation.plan.components[0], monitor)
    assert text.startswith('{{- if .Capabilities.APIVersions.Has "monitoring.coreos.com/v1/PodMonitor" }}')
    assert text.rstrip().endswith("{{- end }}")
    for api_version, kind in (("keda.sh/v1alpha1", "ScaledObject"), ("inference.networking.k8s.io/v1", "InferencePool")):
        serving = {"apiVersion": api_version, "kind": kind, "metadata": {"name": "x", "namespace": "g"}, "spec": {}}
        assert "Capabilities" not in template("g", compilation.plan.components[0], serving)


def test_the_placeholder_namespace_becomes_the_release_namespace_wherever_it_is_written() -> None:
    config = f"discovery:\n  namespace: {RELEASE_NAMESPACE}\n  literal: '{{{{ x }}}}'\n"
    digest = hashlib.sha256(config.encode()).hexdigest()
    obj = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "namespace": RELEASE_NAMESPACE},
           "data": {"config.yaml": config, "query": f"up{{namespace=\"{RELEASE_NAMESPACE}\", job='a'}}",
                    "url": f"http://x.{RELEASE_NAMESPACE}.svc:80", "hash": digest[:16]}}
    text = addon_template("c", obj, {digest: config})
    assert RELEASE_NAMESPACE not in text
    assert "  namespace: '{{ .Release.Namespace }}'" in text  # quoted: a namespace such as 123 stays a string
    assert """query: 'up{namespace="{{ .Release.Namespace }}", job=''a''}'""" in text
    assert "url: 'http://x.{{ .Release.Namespace }}.svc:80'" in text
    # inside the config file's literal block: quoted only where YAML would read another type
    assert '    namespace: {{ include "c.plainNamespace" . }}' in text
    assert """literal: '{{ "{{" }} x {{ "}}" }}'""" in text
    assert f'hash: {{{{ include "c.namespaced.{digest[:16]}" . | sha256sum | trunc 16 | quote }}}}' in text


@needs_helm
def test_an_autoscaled_model_takes_its_bounds_from_values_and_no_replicas(tmp_path: Path) -> None:
    _, chart = build(REPO / "specs" / "autoscaling.toml", tmp_path)
    keda = ("--api-versions", "keda.sh/v1alpha1/ScaledObject")
    objects = rendered(chart, "autoscaling", "llm-scale", *keda, "--set", "models.llama.autoscaling.maxReplicas=12")
    scaled = next(o for o in objects if o["kind"] == "ScaledObject" and o["metadata"]["name"] == "autoscaling-llama")
    assert (scaled["spec"]["minReplicaCount"], scaled["spec"]["maxReplicaCount"]) == (1, 12)
    deployment = next(o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "autoscaling-llama")
    assert "replicas" not in deployment["spec"]
    bad = helm("template", "autoscaling", str(chart), "-n", "llm-scale", *keda, "--set", "models.llama.replicas=3")
    assert bad.returncode != 0 and "replicas" in bad.stderr


@needs_helm
def test_a_ray_models_values_tune_its_worker_group_and_replicas_are_not_one(tmp_path: Path) -> None:
    _, chart = build(REPO / "specs" / "ray-vllm.toml", tmp_path)
    ray = ("--api-versions", "ray.io/v1/RayService")
    objects = rendered(chart, "ray", "llm-ray", *ray, "--set", "models.llama-1b.image.tag=nightly",
                       "--set-string", "models.llama-1b.resources.limits.nvidia\\.com/gpu=2")
    cluster = next(o for o in objects if o["kind"] == "RayService")["spec"]["rayClusterConfig"]
    worker = cluster["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]
    head = cluster["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert worker["image"] == "rayproject/ray-llm:nightly" and worker["resources"]["limits"]["nvidia.com/gpu"] == "2"
    assert head["image"] == "rayproject/ray-llm:2.50.1-py311-cu124" and "nvidia.com/gpu" not in head["resources"]["limits"]
    for value in ("replicas=3", "extraArgs={--x}"):  # Serve's replicas and KubeRay's command line
        bad = helm("template", "ray", str(chart), "-n", "llm-ray", *ray, "--set", f"models.llama-1b.{value}")
        assert bad.returncode != 0 and value.split("=")[0] in bad.stderr


def test_add_on_targets_land_in_the_chart_in_the_release_namespace() -> None:
    files = pipeline.compile_stack([REPO / "specs" / "prod.toml"], load_registry()).files
    router = files["helm/prod/templates/router/deployment.yaml"].decode()
    assert "namespace: '{{ .Release.Namespace }}'" in router and 'include "prod.chartLabels"' in router
    assert {name.split("/")[3] for name in files if name.startswith("helm/prod/templates/") and name.count("/") == 4} \
        == {"router", "monitoring"}
    assert not any(name.startswith("helm/prod/templates/manifests/") for name in files)  # templated per model instead


@needs_helm
def test_a_disaggregated_models_roles_are_tuned_apart(tmp_path: Path) -> None:
    _, chart = build(REPO / "specs" / "disaggregated-sglang.toml", tmp_path)
    before = comparable(rendered(chart, "sglang-pd", "llm-pd"))
    after = comparable(rendered(chart, "sglang-pd", "llm-pd", "--set", "models.qwen.prefill.replicas=4"))
    changed = [(a["kind"], a["metadata"]["name"], a["spec"].get("replicas")) for a, b in zip(after, before, strict=True)
               if a != b]
    assert changed == [("Deployment", "sglang-pd-qwen-prefill", 4)]
    bad = helm("template", "sglang-pd", str(chart), "-n", "llm-pd", "--set", "models.qwen.replicas=4")
    assert bad.returncode != 0 and "replicas" in bad.stderr


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.relative_to(REPO / "specs").as_posix())
def test_no_component_object_watches_the_stack(spec: Path) -> None:
    """NOTES.txt counts the observability objects a cluster may skip among the spec's own objects and the
    add-ons' only: a component's objects must never be one (else a cluster without the API would skip it
    unannounced)."""
    from stackc import kube

    registry = load_registry()
    plan = pipeline.compile_stack([spec], registry).plan
    found = [obj["kind"] for component in plan.components for _, obj in kube.component_objects(plan.stack, component)
             if obj["apiVersion"].rpartition("/")[0] in OBSERVABILITY_GROUPS]
    assert found == []
