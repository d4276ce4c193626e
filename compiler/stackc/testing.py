"""Test helpers for stackc and for plugin authors (a pytest plugin, like pytest's ``pytester``).

Fixtures:

* ``stackc_compile`` — compile a spec given as TOML text (plus optional extra plugin modules),
  returning a ``Compilation`` or raising ``DiagnosticsError``.
* ``kubernetes_validator`` — validate an object against the Kubernetes OpenAPI schema (strict).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import ModuleType
from typing import Any

import pytest
import yaml

from stackc import pipeline
from stackc.plugins import load_registry

KUBERNETES_VERSION = "1.35.0"


def compile_text(text: str, *, settings: Sequence[str] = (), targets: Sequence[str] | None = None,
                 plugins: Sequence[ModuleType] = (), name: str = "spec.toml") -> pipeline.Compilation:
    """Compile one spec from text with the installed plugins plus ``plugins``."""
    registry = _registry(tuple(plugins))
    return pipeline.compile_stack([name], registry, settings, targets, texts=[(name, text)])


@functools.cache
def _registry(plugins: tuple[ModuleType, ...]) -> Any:
    return load_registry(extra=plugins)


def objects(files: Mapping[str, bytes], suffix: str = ".yaml") -> list[dict]:
    """Every Kubernetes object in the rendered YAML files (kustomization files excluded)."""
    found = []
    for name in sorted(files):
        if not name.endswith(suffix) or name.endswith("kustomization.yaml"):
            continue
        for document in yaml.safe_load_all(files[name]):
            if isinstance(document, dict) and "kind" in document and "apiVersion" in document:
                found.append(document)
    return found


def validate_kubernetes(obj: Mapping[str, Any], version: str = KUBERNETES_VERSION) -> list[str]:
    """Problems with ``obj`` under the Kubernetes OpenAPI schema, strict (unknown fields fail)."""
    import kubernetes_validate

    try:
        kubernetes_validate.validate(dict(obj), version, strict=True)
    except kubernetes_validate.ValidationError as error:
        return [f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}: {error.message} at {list(error.path)}"]
    except kubernetes_validate.SchemaNotFoundError as error:
        return [f"{obj.get('kind')}: no schema ({error})"]
    return []


def is_core_kind(obj: Mapping[str, Any]) -> bool:
    """True for the built-in Kubernetes kinds (validated by OpenAPI, not by a CRD)."""
    group = obj["apiVersion"].rpartition("/")[0]
    return group == "" or not group.count(".") or group.endswith(".k8s.io") and group.split(".")[0] in {
        "rbac", "networking", "policy", "storage", "discovery", "autoscaling", "admissionregistration",
        "apiextensions", "scheduling", "node", "coordination", "certificates", "flowcontrol", "resource"}


@pytest.fixture
def stackc_compile() -> Callable[..., pipeline.Compilation]:
    return compile_text


@pytest.fixture
def kubernetes_validator() -> Callable[[Iterable[Mapping[str, Any]]], list[str]]:
    def validate_all(items: Iterable[Mapping[str, Any]]) -> list[str]:
        return [problem for item in items for problem in validate_kubernetes(item)]

    return validate_all
