"""Never silent: every field of a model, set alone, changes the output or is answered with a located
diagnostic, for every engine × target that deploys models. Values are drawn by the fuzzer from the IR, so a
new field is covered without anyone adding it here. (Nested fields, stack fields and target options are
not walked yet.)"""

from __future__ import annotations

import copy
import random
import typing

import attrs
import pytest
import tomlkit

from stackc import pipeline
from stackc.diagnostics import DiagnosticsError
from stackc.fuzzing import SpecGenerator, engine_needs
from stackc.plugins import load_registry
from stackc.spec.model import Model

REGISTRY = load_registry()
#: what every case sets: the field under test is one of the others
GIVEN = ("engine", "model", "engine_options")
TARGETS = sorted(REGISTRY.targets_having("serves_models"))
DRAWS = 4


def _compile(data: dict) -> pipeline.Compilation:
    return pipeline.compile_stack(["spec.toml"], REGISTRY, texts=[("spec.toml", tomlkit.dumps(data))])


def _outcome(data: dict, base: pipeline.Compilation, field: str, value: object) -> str:
    """How a value of ``field`` shows: refused, the default, changed the output, warned where it is set, or silent."""
    text = tomlkit.dumps(data)
    try:
        if pipeline.check(["spec.toml"], REGISTRY, texts=[("spec.toml", text)]).spec.models["m"] == \
                base.spec.models["m"]:
            return "default"
        compilation = _compile(data)
    except DiagnosticsError:
        return "refused"
    if compilation.files != base.files:
        return "changed"
    if any(w.dotted_path.startswith(f"models.m.{field}") for w in compilation.warnings):
        return "warned"
    if isinstance(value, (int, str)) and any(str(value).encode() in content for content in base.files.values()):
        return "already so"  # the engine's own default, written out by the spec
    return "silent"


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("engine", sorted(REGISTRY.engines))
def test_every_model_field_reaches_the_output_or_is_answered(engine: str, target: str) -> None:
    model = {"engine": engine, "model": "org/m", **engine_needs(REGISTRY, engine)}
    data = {"version": 1, "stack": {"name": "s", "targets": [target]}, "models": {"m": model}}
    try:
        base = _compile(data)
    except DiagnosticsError as error:
        pytest.skip(f"{target} does not deploy {engine}: {error.diagnostics[0].message}")
    hints = typing.get_type_hints(Model)
    silent = []
    for field in (f.name for f in attrs.fields(Model) if f.name not in GIVEN):
        for seed in range(DRAWS):
            generator = SpecGenerator(REGISTRY, random.Random(seed), valid=True)
            generator.badness = 0.0
            value = generator.value(hints[field], field)
            trial = copy.deepcopy(data)
            present = trial["models"]["m"].get(field)
            trial["models"]["m"][field] = {**present, **value} if isinstance(present, dict) and isinstance(
                value, dict) else value
            if _outcome(trial, base, field, value) == "silent":
                silent.append(f"{field} = {value!r}")
    assert silent == [], f"{engine} × {target}: set, changed nothing, said nothing"
