"""The shared repr of stackc's attrs classes prints what attrs' generated repr prints, byte for byte.

The reference is attrs itself: for each class, attrs generates a repr from the class's fields (a twin
class made with ``attrs.make_class``), and ``reference`` puts those in place of the shared one on every
class at once, so nested objects are printed by attrs too.
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

import attrs
import pytest
from hypothesis import given, settings, strategies as st

import stackc
import stackc_plugins
from stackc import records
from stackc.diagnostics import Diagnostic, Location, Severity
from stackc.pipeline import compile_stack
from stackc.plugins import load_registry
from stackc.records import define, frozen

REPO = Path(__file__).resolve().parents[2]


def _classes() -> list[type]:
    found = set()
    for package in (stackc, stackc_plugins):
        for module in pkgutil.walk_packages(package.__path__, f"{package.__name__}."):
            if module.name.endswith("__main__"):
                continue
            for value in vars(importlib.import_module(module.name)).values():
                if isinstance(value, type) and attrs.has(value) and value.__module__.startswith(("stackc.", "stackc_plugins.")):
                    found.add(value)
    return sorted(found, key=lambda cls: (cls.__module__, cls.__qualname__))


CLASSES = _classes()


def attrs_repr(cls: type):
    """The ``__repr__`` attrs generates for ``cls``'s fields."""
    twin = attrs.make_class(cls.__name__, {field.name: attrs.field(repr=field.repr, init=field.init)
                                           for field in attrs.fields(cls)})
    return twin.__repr__


ATTRS_REPRS = {cls: attrs_repr(cls) for cls in CLASSES}


def reference(value) -> str:
    """``repr(value)`` with attrs' generated reprs in place on every class of stackc."""
    with pytest.MonkeyPatch.context() as patch:
        for cls, generated in ATTRS_REPRS.items():
            patch.setattr(cls, "__repr__", generated)
        return repr(value)


def test_every_attrs_class_of_stackc_and_its_plugins_shares_the_repr() -> None:
    assert len(CLASSES) > 120
    generated = [cls.__qualname__ for cls in CLASSES if cls.__repr__ is not records._repr]
    assert generated == []


def _bare(cls: type, values: dict):
    """An instance of ``cls`` holding ``values``, whatever their types (``__init__`` is not called)."""
    instance = object.__new__(cls)
    for name, value in values.items():
        object.__setattr__(instance, name, value)
    return instance


_SCALARS = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
            | st.text(alphabet=st.sampled_from("ab'\"\\\n é{}"), max_size=6) | st.sampled_from(list(Severity)))


def _instances(children):
    def fill(cls):
        return st.fixed_dictionaries({field.name: children for field in attrs.fields(cls)}).map(
            lambda values: _bare(cls, values))
    return st.sampled_from(CLASSES).flatmap(fill)


_VALUES = st.recursive(_SCALARS, lambda children: (
    st.tuples(children, children) | st.lists(children, max_size=3).map(tuple)
    | st.dictionaries(st.text(max_size=3), children, max_size=2) | _instances(children)), max_leaves=12)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(CLASSES).flatmap(
    lambda cls: st.fixed_dictionaries({field.name: _VALUES for field in attrs.fields(cls)}).map(
        lambda values: _bare(cls, values))))
def test_any_instance_of_any_class_prints_as_attrs_prints_it(instance) -> None:
    assert repr(instance) == reference(instance)


def test_the_plans_of_the_example_specs_print_as_attrs_prints_them() -> None:
    registry = load_registry()
    for path in sorted([*REPO.glob("specs/*.toml"), *REPO.glob("specs/engines/*.toml")]):
        compiled = compile_stack([path], registry)
        shown = (compiled.spec, compiled.plan, compiled.warnings)
        assert repr(shown) == reference(shown), path


@pytest.mark.parametrize("cls", [Location, Diagnostic])
def test_a_cycle_prints_dots_as_attrs_does(cls) -> None:
    instance = _bare(cls, {field.name: None for field in attrs.fields(cls)})
    object.__setattr__(instance, attrs.fields(cls)[0].name, ("it's", [instance], {"me": instance}))
    assert "..." in repr(instance)
    assert repr(instance) == reference(instance)


def test_fields_printed_otherwise_or_not_at_all_and_a_local_class_as_attrs_prints_them() -> None:
    def body() -> type:
        class Outer:
            class Local:
                shown: str = attrs.field(default="a'b\"c")
                hidden: int = attrs.field(default=1, repr=False)
                hexadecimal: int = attrs.field(default=255, repr=hex)
                unset: int = attrs.field(init=False)
                later: tuple = attrs.field(init=False, default=(None, "x"))
        return Outer.Local

    ours, theirs = frozen(body())(), attrs.frozen(body())()
    assert type(ours).__qualname__.endswith("<locals>.Outer.Local")
    assert repr(ours) == repr(theirs) == (
        "Outer.Local(shown='a\\'b\"c', hexadecimal=0xff, unset=NOTHING, later=(None, 'x'))")


def test_the_decorators_keep_everything_else_attrs_makes_and_a_class_s_own_repr() -> None:
    @frozen(order=True)
    class Ordered:
        a: int

    @define
    class Mutable:
        items: list

        def __repr__(self) -> str:
            return "mine"

    assert Ordered(1) < Ordered(2) and Ordered(1) == Ordered(1) and hash(Ordered(1)) == hash(Ordered(1))
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        Ordered(1).a = 2
    mutable = Mutable([])
    mutable.items.append(1)
    assert mutable == Mutable([1]) and repr(mutable) == "mine"
    assert str(Location("f", 2, 3)) == "f:2:3" and repr(Location("f")) == "Location(file='f', line=1, column=1)"


def test_every_frozen_class_shares_a_hash_that_follows_equality() -> None:
    hashable = [cls for cls in CLASSES if cls.__hash__ is not None]
    assert len(hashable) > 100
    assert [cls.__qualname__ for cls in hashable if cls.__hash__ is not records._hash] == []
    assert hash(Location("f", 2, 3)) == hash(Location("f", 2, 3)) != hash(Location("f", 2, 4))


@settings(max_examples=100, deadline=None)
@given(st.sampled_from([cls for cls in CLASSES if cls.__hash__ is not None]).flatmap(
    lambda cls: st.fixed_dictionaries({f.name: _SCALARS for f in attrs.fields(cls)}).map(
        lambda values: (_bare(cls, values), _bare(cls, dict(values))))))
def test_equal_instances_hash_equal(pair) -> None:
    first, second = pair
    assert first == second and hash(first) == hash(second)


def test_fields_left_out_of_equality_are_left_out_of_the_hash_and_a_class_s_own_hash_stays() -> None:
    @frozen
    class Cached:
        key: str
        note: str = attrs.field(eq=False)

    @frozen
    class Own:
        a: int

        def __hash__(self) -> int:
            return 7

    assert Cached("k", "x") == Cached("k", "y") and hash(Cached("k", "x")) == hash(Cached("k", "y"))
    assert hash(Own(1)) == 7
    with pytest.raises(TypeError):
        hash(Location("f", 1, ["unhashable"]))
