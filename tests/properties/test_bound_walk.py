"""The bound walk skips the fields whose declared type can hold nothing it checks: it reports exactly what
walking every field does, on random specs (bad values included, structured as ``stackc check`` does)."""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Mapping
from typing import Any

import attrs
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from stackc import pipeline
from stackc.check.spec import _BOUND_KEYS, _field_problems, bound_problems
from stackc.diagnostics import Diagnostic
from stackc.fuzzing import SpecGenerator
from stackc.plugins import load_registry

REGISTRY = load_registry()


def every_field_problems(obj: Any, path: tuple[Any, ...] = ()) -> Iterator[Diagnostic]:
    """The reference: every field of every attrs object, whatever its declared type."""
    for f in attrs.fields(type(obj)):
        value = getattr(obj, f.name)
        if value is None:
            continue
        bounds = {k: f.metadata[k] for k in _BOUND_KEYS if k in f.metadata}
        if bounds or isinstance(value, float):
            yield from _field_problems(value, bounds, path + (f.name,))
        items = enumerate(value) if isinstance(value, tuple) else value.items() if isinstance(value, Mapping) else None
        if items is None:
            if attrs.has(type(value)):
                yield from every_field_problems(value, path + (f.name,))
            continue
        for key, item in items:
            if attrs.has(type(item)):
                yield from every_field_problems(item, path + (f.name, key))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**32), st.booleans())
def test_the_bound_walk_reports_what_walking_every_field_does(seed: int, extremes: bool) -> None:
    text = SpecGenerator(REGISTRY, random.Random(seed), extremes=extremes).text()
    document, problems = pipeline.resolve(["spec.toml"], texts=[("spec.toml", text)])
    assume(not problems)
    spec, _ = pipeline.structure(document, REGISTRY)
    assume(spec is not None)
    assert list(bound_problems(spec)) == list(every_field_problems(spec))


def test_a_field_declared_any_is_walked() -> None:
    @attrs.frozen
    class Inner:
        ratio: float = 0.5

    @attrs.frozen
    class Outer:
        anything: Any = None
        names: tuple[str, ...] = ()

    problems = list(bound_problems(Outer(anything=Inner(ratio=math.inf), names=("a",))))
    assert [(d.code, d.path) for d in problems] == [("E014", ("anything", "ratio"))]
