"""Fidelity for the KServe + endpoint picker + LiteLLM umbrella (eric-zadara/helm_charts ``inference-stack``),
as test_fidelity.py does for the seed charts: each values file rendered by the chart (``helm template``)
against the same values imported and compiled by stackc, InferenceService by InferenceService.

The umbrella publishes no license, so ``shared/charts`` does not carry it (see its SOURCES.md): the test
runs where $STACKC_INFERENCE_STACK_CHARTS names a checkout's ``charts/`` folder (inference-stack and its
two subcharts, model-serving and inference-gateway, which it pulls from the same repository), and skips
with that reason elsewhere. Its examples: the chart's values.yaml and ci/default-values.yaml (no model
enabled: the chart renders no InferenceService, nor does the imported spec) and the model its values.yaml
documents (our own values, tests/stackc/importers/test_inference_stack.py).

Compared per InferenceService: the model served, the engine's flags (the ClusterServingRuntime's and the
service's, as KServe joins them), environment, resources, replica bounds and probe paths.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from stackc.importers.draft import model_key
from stackc.importers.run import import_values
from stackc.testing import compile_text, objects
from tests.stackc.importers.test_fidelity import ENGINE_HOME, RELEASE, helm, render, view
from tests.stackc.importers.test_inference_stack import VALUES

SUBCHARTS = ("model-serving", "inference-gateway")
ABSENT = ("the inference-stack umbrella chart is not here: eric-zadara/helm_charts publishes no license, so "
          "shared/charts does not carry it; set STACKC_INFERENCE_STACK_CHARTS to a checkout's charts/ folder")
#: (field, key) -> why stackc differs from the chart on purpose
IMPROVEMENTS = {
    ("image", "image"): "stackc runs vLLM's own server (vllm serve, vllm/vllm-openai) in a ServingRuntime of its "
                        "own, not KServe's Hugging Face server with its vLLM backend: the same engine and flags",
    ("flags", "--model-name"): "KServe's Hugging Face server's; vllm serve takes --served-model-name",
    ("flags", "--backend"): "see image",
    ("flags", "--served-model-name"): "the service's name, as KServe's server serves it (--model_name={{.Name}})",
    ("flags", "--host"): "stackc states the address it listens on (vLLM's default)",
    ("flags", "--port"): "stackc's engine port (KServe's server listens on 8080)",
    ("env", "HF_HOME"): "stackc's cache volume holds the weights",
    **ENGINE_HOME,
}
#: flags vLLM takes by default, which stackc leaves out
DEFAULTS = {"--tensor-parallel-size": "1"}


def umbrella() -> Path | None:
    configured = os.environ.get("STACKC_INFERENCE_STACK_CHARTS")
    found = Path(configured) if configured else None
    return found if found and (found / "inference-stack" / "Chart.yaml").is_file() else None


def examples() -> list:
    root = umbrella()
    if root is None:
        return [pytest.param(None, marks=pytest.mark.skip(reason=ABSENT))]
    return [pytest.param(path, id=name) for name, path in (
        ("values.yaml", root / "inference-stack" / "values.yaml"),
        ("ci-default-values.yaml", root / "inference-stack" / "ci" / "default-values.yaml"),
        ("documented-model.yaml", None))]


@pytest.fixture(scope="module")
def chart(tmp_path_factory) -> Path:
    """The umbrella with its two subcharts in charts/, as `helm dependency build` would put them."""
    root = umbrella()
    if root is None or helm() is None:
        pytest.skip(ABSENT if root is None else "helm is not here: run .ci/install-tools")
    copy = tmp_path_factory.mktemp("umbrella") / "inference-stack"
    shutil.copytree(root / "inference-stack", copy)
    for name in SUBCHARTS:
        if not (copy / "charts" / name).exists():  # a checkout that ran `helm dependency build` has them
            shutil.copytree(root / name, copy / "charts" / name)
    return copy


def chart_services(rendered: str) -> dict[str, dict[str, Any]]:
    """Each InferenceService as KServe runs it: its ClusterServingRuntime's container with the service's
    args appended, env merged and resources taken."""
    documents = [d for d in yaml.safe_load_all(rendered) if d]
    runtimes = {d["metadata"]["name"]: d["spec"]["containers"][0] for d in documents
                if d["kind"] == "ClusterServingRuntime"}
    found = {}
    for service in (d for d in documents if d["kind"] == "InferenceService"):
        predictor = service["spec"]["predictor"]
        model = predictor["model"]
        runtime = runtimes[model["runtime"]]
        env = {e["name"]: e for e in [*runtime.get("env", []), *model.get("env", [])]}
        container = {**runtime, "args": [*runtime.get("args", []), *model.get("args", [])], "env": list(env.values()),
                     "resources": model.get("resources", runtime.get("resources"))}
        found[service["metadata"]["name"]] = {**view("InferenceService", container, None),
                                              "source": model["storageUri"].removeprefix("hf://"),
                                              "bounds": (predictor.get("minReplicas"), predictor.get("maxReplicas"))}
    return found


def stackc_services(text: str) -> dict[str, dict[str, Any]]:
    found = {}
    for service in objects(compile_text(text).files):
        if service["kind"] == "InferenceService":
            predictor = service["spec"]["predictor"]
            engine = view("InferenceService", predictor["model"], None)
            # the weights stackc's storage initializer fetches (llama.cpp), else the model vllm serve loads
            fetched = [c["args"][0] for c in predictor.get("initContainers", []) if c["name"] == "weights-download"]
            found[service["metadata"]["name"].removeprefix(f"{RELEASE}-")] = {
                **engine, "source": (fetched or engine["positional"] or [None])[0],
                "bounds": (predictor.get("minReplicas"), predictor.get("maxReplicas"))}
    return found


def differences(theirs: dict[str, Any], ours: dict[str, Any]) -> list[tuple[str, str, Any, Any]]:
    found = []
    for field in ("flags", "env"):
        for key in sorted(set(theirs[field]) | set(ours[field])):
            if theirs[field].get(key) != ours[field].get(key, DEFAULTS.get(key) if field == "flags" else None):
                found.append((field, key, theirs[field].get(key), ours[field].get(key)))
    for field in ("image", "source", "resources", "bounds"):
        if theirs[field] != ours[field]:
            found.append((field, field, theirs[field], ours[field]))
    for kind, probe in theirs["probes"].items():
        if probe.get("httpGet", {}).get("path") != ours["probes"].get(kind, {}).get("httpGet", {}).get("path"):
            found.append(("probes", kind, probe, ours["probes"].get(kind)))
    return found


@pytest.mark.parametrize("values", examples())
def test_inference_services_match_the_chart_or_say_why(chart, tmp_path, values):
    if values is None:
        values = tmp_path / "documented-model.yaml"
        values.write_text(VALUES)
    theirs = chart_services(render(chart, values))
    imported = import_values("inference-stack", [str(values)], name=RELEASE)
    ours = stackc_services(imported.text)
    if not theirs:  # no model enabled: the chart deploys none, and the spec keeps its default one disabled
        assert not ours
        assert any(d.code == "W090" and "enable no inferenceService" in d.message for d in imported.report)
        return
    reported = [f"{d.dotted_path} {d.message}" for d in imported.report if d.code == "W090"]
    unexplained = []
    for name, service in theirs.items():
        key = model_key(name)
        assert key in ours, f"{key}: the chart deploys it, the imported spec does not"
        runtime_reported = any("runtime's tuning" in text for text in reported)  # llama.cpp, Ollama: reported
        for field, item, chart_value, mine in differences(service, ours[key]):
            if (field, item) in IMPROVEMENTS or field in ("flags", "env", "image") and "vllm" not in str(
                    service["flags"].get("--backend")) and runtime_reported:
                continue
            unexplained.append(f"{key} {field} {item}: chart {chart_value!r}, stackc {mine!r}")
    assert not unexplained, "\n".join(unexplained)
