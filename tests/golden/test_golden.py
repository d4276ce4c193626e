"""The committed out/ is the compiled form of specs/: a change to either shows up as a diff."""

from __future__ import annotations

from pathlib import Path

import pytest

from stackc import pipeline
from stackc.output.tree import read_tree
from stackc.plugins import load_registry

REPO = Path(__file__).resolve().parents[2]
SPECS = sorted(p for p in (REPO / "specs").rglob("*.toml") if "invalid" not in p.parts)


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.relative_to(REPO / "specs").as_posix())
def test_out_matches_a_fresh_build(spec: Path) -> None:
    compilation = pipeline.compile_stack([spec], load_registry())
    committed = read_tree(REPO / "out" / compilation.spec.stack.name)
    assert committed, f"no golden output for {spec.name}: run `stackc build {spec.relative_to(REPO)}`"
    stale = sorted(k for k in set(committed) | set(compilation.files) if committed.get(k) != compilation.files.get(k))
    assert not stale, f"out/ is stale for {spec.name}: run `stackc build {spec.relative_to(REPO)}`; differs: {stale}"


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.relative_to(REPO / "specs").as_posix())
def test_a_build_in_worker_processes_writes_the_same_files(spec: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The spec validated aside while it is lowered, and the targets emitted side by side."""
    from stackc.output import parallel

    forks: list[int] = []
    fork = parallel.os.fork
    monkeypatch.setattr(parallel, "usable_cpus", lambda: 2)
    monkeypatch.setattr(pipeline, "usable_cpus", lambda: 2)
    monkeypatch.setattr(parallel.os, "fork", lambda: forks.append(1) or fork())
    monkeypatch.setattr(pipeline, "_WORKERS_FROM", 0)  # every spec, however small
    monkeypatch.setattr(pipeline, "_VALIDATE_ASIDE_FROM", 0)
    compilation = pipeline.compile_stack([spec], load_registry())
    assert len(forks) == 1 + (len(compilation.spec.stack.targets) > 1)
    assert compilation.files == read_tree(REPO / "out" / compilation.spec.stack.name)


@pytest.mark.parametrize("spec", sorted((REPO / "specs" / "invalid").glob("*.toml")), ids=lambda p: p.name)
def test_invalid_specs_fail_with_located_errors(spec: Path, run_stackc) -> None:
    result = run_stackc("check", str(spec.relative_to(REPO)))
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert f"specs/invalid/{spec.name}:" in result.stderr


def test_stack_names_are_unique_across_specs() -> None:
    registry = load_registry()
    names = [pipeline.check([spec], registry).spec.stack.name for spec in SPECS]
    assert len(names) == len(set(names)), names


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.relative_to(REPO / "specs").as_posix())
def test_every_built_in_kind_in_out_validates_strictly(spec: Path) -> None:
    from stackc.testing import is_core_kind, objects, validate_kubernetes

    compilation = pipeline.compile_stack([spec], load_registry())
    found = [o for o in objects(compilation.files) if is_core_kind(o)]
    assert found
    assert [problem for o in found for problem in validate_kubernetes(o)] == []


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.relative_to(REPO / "specs").as_posix())
def test_every_custom_resource_in_out_validates_against_its_crd(spec: Path, crd_validator) -> None:
    from stackc.testing import is_core_kind, objects

    compilation = pipeline.compile_stack([spec], load_registry())
    custom = [o for o in objects(compilation.files) if not is_core_kind(o)]
    assert [problem for o in custom for problem in crd_validator(o)] == []


def test_a_planted_mistake_in_a_custom_resource_is_caught(crd_validator) -> None:
    pool = {"apiVersion": "inference.networking.k8s.io/v1", "kind": "InferencePool", "metadata": {"name": "p"},
            "spec": {"selector": {"matchLabels": {"app": "m"}}, "targetPorts": [{"number": 8000}],
                     "endpointPickerRef": {"name": "epp", "port": {"number": 9002}}}}
    assert crd_validator(pool) == []
    pool["spec"]["targetPortNumber"] = 8000  # the v1alpha2 field, gone in v1
    assert any("'targetPortNumber' was unexpected" in problem for problem in crd_validator(pool))


def test_a_broken_cel_rule_of_a_crd_is_caught(crd_validator) -> None:
    pool = {"apiVersion": "inference.networking.k8s.io/v1", "kind": "InferencePool", "metadata": {"name": "p"},
            "spec": {"selector": {"matchLabels": {"app": "m"}}, "targetPorts": [{"number": 8000}, {"number": 8000}],
                     "endpointPickerRef": {"name": "epp", "port": {"number": 9002}}}}
    (problem,) = crd_validator(pool)
    assert "port number must be unique" in problem and "['spec', 'targetPorts']" in problem
    scaled = {"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "metadata": {"name": "s"},
              "spec": {"scaleTargetRef": {"name": "d"}, "minReplicaCount": 5, "maxReplicaCount": 2,
                       "triggers": [{"type": "cpu", "metricType": "Utilization", "metadata": {"value": "60"}}]}}
    assert any("CEL rule" in problem for problem in crd_validator(scaled))
