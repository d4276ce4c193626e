"""Any input gives output or located diagnostics, never a traceback."""

from __future__ import annotations

import random
from pathlib import Path

import tomlkit
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stackc import pipeline
from stackc.diagnostics import DiagnosticsError
from stackc.fuzzing import SpecGenerator, compile_outcome, mutate, spec_files
from stackc.plugins import load_registry

REPO = Path(__file__).resolve().parents[2]
REGISTRY = load_registry()
PROD = (REPO / "specs" / "prod.toml").read_text()


def compile_or_diagnose(text: str, settings_: tuple[str, ...] = ()) -> None:
    try:
        pipeline.compile_stack(["spec.toml"], REGISTRY, settings_, texts=[("spec.toml", text)])
    except DiagnosticsError as error:
        assert error.diagnostics
        for diagnostic in error.diagnostics:
            assert diagnostic.location is not None, diagnostic
            assert diagnostic.location.line >= 1 and diagnostic.location.column >= 1


keys = st.sampled_from(["version", "stack", "models", "name", "engine", "model", "replicas", "serving",
                        "tensor_parallel", "accelerators", "count", "defaults", "targets", "cache", "size",
                        "scheduling", "tolerations", "x", "llama", "env", "security", "probes"])
scalars = st.integers(-3, 10) | st.booleans() | st.sampled_from(["vllm", "org/m", "1Gi", "", "manifests", "s"]) | st.floats(-1, 2)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(keys, inner, max_size=4),
                      max_leaves=25)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(keys, values, max_size=6))
def test_random_toml_documents(document: dict) -> None:
    compile_or_diagnose(tomlkit.dumps(document))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_production_spec(data: st.DataObject) -> None:
    lines = PROD.splitlines()
    for _ in range(data.draw(st.integers(1, 4))):
        index = data.draw(st.integers(0, len(lines) - 1))
        action = data.draw(st.sampled_from(["delete", "duplicate", "value", "garbage", "key"]))
        line = lines[index]
        if action == "delete":
            del lines[index]
        elif action == "duplicate":
            lines.insert(index, line)
        elif action == "value" and "=" in line:
            key = line.split("=", 1)[0]
            lines[index] = f"{key}= {tomlkit.item(data.draw(values)).as_string()}"
        elif action == "garbage":
            position = data.draw(st.integers(0, len(line)))
            lines[index] = line[:position] + data.draw(st.sampled_from(['"', "[", "]", "=", "{", "x", "\\", "#"])) + line[position:]
        elif action == "key" and "=" in line:
            lines[index] = data.draw(keys) + " =" + line.split("=", 1)[1]
        if not lines:
            lines = [""]
    compile_or_diagnose("\n".join(lines) + "\n")


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(max_size=30), max_size=3))
def test_arbitrary_set_arguments(settings_: list[str]) -> None:
    compile_or_diagnose(PROD, tuple(settings_))


SPEC_TEXTS = [path.read_text() for path in spec_files(REPO / "specs")]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**32))
def test_random_specs_drawn_from_the_ir(seed: int) -> None:
    text = SpecGenerator(REGISTRY, random.Random(seed)).text()
    outcome = compile_outcome(REGISTRY, text)
    assert outcome.kind != "internal", f"{outcome.detail}\n{text}"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(SPEC_TEXTS), st.integers(0, 2**32))
def test_mutated_spec_files(original: str, seed: int) -> None:
    rng = random.Random(seed)
    text = mutate(original, rng, SpecGenerator(REGISTRY, rng))
    outcome = compile_outcome(REGISTRY, text)
    assert outcome.kind != "internal", f"{outcome.detail}\n{text}"
