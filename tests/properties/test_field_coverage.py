"""Never silent: every field of the IR set alone — a model's (its tables' fields one level down, set in the
model or in ``[defaults]``), the stack's and each target's options — changes the output or is answered with a
located diagnostic, for every engine × target. Values are drawn by the fuzzer from the IR, so a new field is
covered without anyone adding it here; the engine's and the targets' options too. Not walked: deeper fields
and fields in combination."""

from __future__ import annotations

import copy
import random
import typing
from collections.abc import Sequence

import attrs
import pytest
import tomlkit

from stackc import pipeline
from stackc.diagnostics import DiagnosticsError
from stackc.fuzzing import SpecGenerator, engine_needs
from stackc.plugins import load_registry
from stackc.spec.model import Model, Stack

REGISTRY = load_registry()
#: what every case sets: the field under test is one of the others
GIVEN = {Model: ("engine", "model", "engine_options"), Stack: ("name", "targets")}
SERVING = sorted(REGISTRY.targets_having("serves_models"))
ENGINES = sorted(REGISTRY.engines)
DRAWS = 4
Path = tuple[str, ...]


def _compile(data: dict) -> pipeline.Compilation:
    return pipeline.compile_stack(["spec.toml"], REGISTRY, texts=[("spec.toml", tomlkit.dumps(data))])


def _base(engine: str, targets: Sequence[str]) -> tuple[dict, pipeline.Compilation | None]:
    # two replicas: a disruption budget, rollout and spread have something to act on
    model = {"engine": engine, "model": "org/m", "replicas": 2, **engine_needs(REGISTRY, engine)}
    data = {"version": 1, "stack": {"name": "s", "targets": list(targets)}, "models": {"m": model}}
    try:
        return data, _compile(data)
    except DiagnosticsError as error:
        # a target that cannot deploy the engine (KServe and a Ray cluster) says so, located: nothing to walk
        assert all(d.location is not None and d.code.startswith("E") for d in error.diagnostics), error.diagnostics
        return data, None


def _outcome(data: dict, base: pipeline.Compilation, path: Path, table: Path, value: object) -> str:
    """How a value at ``path`` shows: refused, the default, changed the output, warned where it is set (not
    on its whole ``table``, nor a warning the stack had without it), or silent."""
    text = tomlkit.dumps(data)
    dotted, before = ".".join(path), {(w.code, w.dotted_path, w.message) for w in base.warnings}

    def here(where: str) -> bool:
        """Located at the field (or inside it, or at a table holding it), not at the whole ``table``."""
        return (dotted.startswith(where) or where.startswith(dotted)) and where != ".".join(table)

    try:
        if pipeline.check(["spec.toml"], REGISTRY, texts=[("spec.toml", text)]).spec == base.spec:
            return "default"
        compilation = _compile(data)
    except DiagnosticsError as error:
        # an error elsewhere answers nothing about this field (the drawn value broke another rule)
        return "refused" if any(here(d.dotted_path) for d in error.diagnostics) else "refused elsewhere"
    if compilation.files != base.files:
        return "changed"
    if any(here(w.dotted_path) and (w.code, w.dotted_path, w.message) not in before for w in compilation.warnings):
        return "warned"
    # what the engine or the target does anyway, written out by the spec (a target option's number is compared
    # with its declared default above: a number found in the files by chance says nothing)
    if (isinstance(value, str) or isinstance(value, int) and path[0] == "models") and \
            any(str(value).encode() in content for content in base.files.values()):
        return "already so"
    return "silent"


def _silent(data: dict, base: pipeline.Compilation, walked: Sequence[tuple[Path, object]], table: Path,
            draws: int = DRAWS, defaults: bool = False) -> list[str]:
    """Each field under ``table`` set alone, ``draws`` values each: those no value of which showed. With
    ``defaults``, every other draw sets a model's field in ``[defaults]`` instead of the model."""
    silent = []
    for path, hint in walked:
        outcomes: dict[Path, dict[str, object]] = {}
        for seed in range(draws):
            generator = SpecGenerator(REGISTRY, random.Random(seed), valid=True)
            generator.badness = 0.0
            value = generator.value(hint, path[-1])
            trial = copy.deepcopy(data)
            where = ("defaults",) if defaults and seed % 2 else table
            node = trial
            for key in (*where, *path[:-1]):
                node = node.setdefault(key, {})
            present = node.get(path[-1])
            node[path[-1]] = {**present, **value} if isinstance(present, dict) and isinstance(value, dict) else value
            outcomes.setdefault(where, {}).setdefault(_outcome(trial, base, (*table, *path), table, value), value)
        # a value may be what the engine does anyway (prefix caching on): the field must show for another one,
        # set in the model and set in [defaults] alike
        for where, shown in sorted(outcomes.items()):
            if "silent" in shown and not {"changed", "warned", "refused"} & set(shown):
                silent.append(f"{'.'.join((*where, *path))} = {shown['silent']!r}")
    return silent


@pytest.mark.parametrize("target", SERVING)
@pytest.mark.parametrize("engine", ENGINES)
def test_every_model_field_reaches_the_output_or_is_answered(engine: str, target: str) -> None:
    data, base = _base(engine, [target])
    if base is None:
        return
    options_type = REGISTRY.engines[engine].traits.options_type
    walked = [*fields(Model), *(fields(options_type, ("engine_options",)) if options_type else ())]
    silent = _silent(data, base, walked, ("models", "m"), defaults=True)
    assert silent == [], f"{engine} × {target}: set, changed nothing, said nothing: {silent}"


@pytest.mark.parametrize("target", sorted(REGISTRY.targets))
@pytest.mark.parametrize("engine", ENGINES)
def test_every_stack_and_target_field_reaches_the_output_or_is_answered(engine: str, target: str) -> None:
    # a target that deploys no model routes, scrapes or fronts those the manifests deploy
    data, base = _base(engine, [target] if target in SERVING else [target, "manifests"])
    if base is None:
        return
    # the stack's and targets' fields are mostly the engine's concern only through the models: fewer draws per
    # engine, each engine its own values (the seeds differ), keep the walk to a few seconds
    silent = _silent(data, base, fields(Stack), ("stack",), draws=2)
    options_type = REGISTRY.targets[target].traits.options_type
    if options_type is not None:
        silent += _silent(data, base, fields(options_type), ("targets", target), draws=2)
    assert silent == [], f"{engine} × {target}: set, changed nothing, said nothing: {silent}"


def fields(cls: type, prefix: Path = (), top: bool = True) -> list[tuple[Path, object]]:
    """(path, type) of every field of ``cls`` to set: a table's fields one by one (one level down), the others
    whole; ``prefix`` starts the paths (``engine_options``)."""
    hints = typing.get_type_hints(cls)
    found: list[tuple[Path, object]] = []
    for field in attrs.fields(cls):
        if field.name in GIVEN.get(cls, ()):
            continue
        hint = hints[field.name]
        if attrs.has(hint) and top:
            found += fields(hint, (*prefix, field.name), top=False)
        else:
            found.append(((*prefix, field.name), hint))
    return found
