"""Never silent: every field of a model (its tables' fields one level down), set alone, changes the output
or is answered with a located diagnostic, for every engine × target that deploys models. Values are drawn by
the fuzzer from the IR, so a new field is covered without anyone adding it here; the engine's options too.
Not walked yet: deeper fields, `[stack]`, target options, and fields in combination."""

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
    if any(f"models.m.{field}".startswith(w.dotted_path) or w.dotted_path.startswith(f"models.m.{field}")
           for w in compilation.warnings if w.dotted_path != "models.m"):
        return "warned"
    if isinstance(value, (int, str)) and any(str(value).encode() in content for content in base.files.values()):
        return "already so"  # the engine's own default, written out by the spec
    return "silent"


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("engine", sorted(REGISTRY.engines))
def test_every_model_field_reaches_the_output_or_is_answered(engine: str, target: str) -> None:
    # two replicas: a disruption budget, rollout and spread have something to act on
    model = {"engine": engine, "model": "org/m", "replicas": 2, **engine_needs(REGISTRY, engine)}
    data = {"version": 1, "stack": {"name": "s", "targets": [target]}, "models": {"m": model}}
    try:
        base = _compile(data)
    except DiagnosticsError as error:
        # a target that cannot deploy the engine (KServe and a Ray cluster) says so, located: nothing to walk
        assert all(d.location is not None and d.code.startswith("E") for d in error.diagnostics), error.diagnostics
        return
    silent = []
    options_type = REGISTRY.engines[engine].traits.options_type
    for path, hint in (*fields(Model), *(fields(options_type, ("engine_options",)) if options_type else ())):
        outcomes: dict[str, object] = {}
        for seed in range(DRAWS):
            generator = SpecGenerator(REGISTRY, random.Random(seed), valid=True)
            generator.badness = 0.0
            value = generator.value(hint, path[-1])
            trial = copy.deepcopy(data)
            table = trial["models"]["m"]
            for key in path[:-1]:
                table = table.setdefault(key, {})
            present = table.get(path[-1])
            table[path[-1]] = {**present, **value} if isinstance(present, dict) and isinstance(value, dict) else value
            outcomes.setdefault(_outcome(trial, base, ".".join(path), value), value)
        # a value may be what the engine does anyway (prefix caching on): the field must show for another one
        if "silent" in outcomes and not {"changed", "warned", "refused"} & set(outcomes):
            silent.append(f"{'.'.join(path)} = {outcomes['silent']!r}")
    assert silent == [], f"{engine} × {target}: set, changed nothing, said nothing: {silent}"


def fields(cls: type, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], object]]:
    """(path, type) of every field to set: a table's fields one by one (one level down), the others whole."""
    hints = typing.get_type_hints(cls)
    found = []
    for field in attrs.fields(cls):
        if field.name in GIVEN and not prefix:
            continue
        hint = hints[field.name]
        if attrs.has(hint) and (not prefix or prefix == ("engine_options",)):
            found += fields(hint, (field.name,))
        else:
            found.append(((*prefix, field.name), hint))
    return found
