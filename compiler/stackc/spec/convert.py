"""Structuring plain spec data into the IR with one private, strict cattrs converter.

Strict means TOML types are taken at their word: ``"2"`` is not an integer and ``true`` is not
one either. Every error cattrs collects becomes a Diagnostic with its spec path.
"""

from __future__ import annotations

import collections.abc
import datetime
import functools
import math
import typing
from collections.abc import Iterator
from types import NoneType, UnionType
from typing import Any, Literal, TypeVar

import attrs
import cattrs
import cattrs.gen
from cattrs.errors import (
    AttributeValidationNote,
    ForbiddenExtraKeysError,
    IterableValidationNote,
)

from stackc.codecache import cache_generated_code
from stackc.diagnostics import Diagnostic, did_you_mean
from stackc.spec.model import Quantity
from stackc.spec.source import Path

cache_generated_code(cattrs.gen)

T = TypeVar("T")

_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "a boolean (true or false)",
               dict: "a table", list: "an array", NoneType: "nothing"}


class _WrongType(TypeError):
    def __init__(self, expected: str, value: Any):
        self.expected = expected
        self.value = value
        super().__init__(f"expected {expected}, got {describe(value)}")


class _NotAChoice(ValueError):
    def __init__(self, value: Any, choices: tuple[Any, ...]):
        self.value = value
        self.choices = choices
        super().__init__(f"{describe(value)} is not one of " + ", ".join(repr(c) for c in choices))


class _NotKubernetesData(TypeError):
    """A TOML date, time, nan or inf inside a table passed to Kubernetes as is: JSON has no such value."""

    def __init__(self, inner_path: Path, value: Any):
        self.inner_path = inner_path
        self.value = value
        kind = f"TOML {type(value).__name__}" if not isinstance(value, float) else f"number {value!r}"
        super().__init__(f"a {kind} cannot go into a Kubernetes object")


def _plain_data(value: Any, inner_path: Path = ()) -> Any:
    if isinstance(value, (datetime.date, datetime.time)) or isinstance(value, float) and not math.isfinite(value):
        raise _NotKubernetesData(inner_path, value)
    if isinstance(value, dict):
        for key, item in value.items():
            _plain_data(item, inner_path + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _plain_data(item, inner_path + (index,))
    return value


def describe(value: Any) -> str:
    """A short, user-facing description of a value and its TOML type."""
    kind = _TYPE_NAMES.get(type(value), type(value).__name__)
    if isinstance(value, (dict, list)):
        return kind
    shown = repr(value) if not isinstance(value, bool) else str(value).lower()
    if isinstance(value, str):
        shown = '"' + value.replace('"', '\\"') + '"'
    if len(shown) > 40:
        shown = shown[:37] + "..."
    return f"{kind} ({shown})"


def _strict_scalar(kind: type) -> Any:
    expected = _TYPE_NAMES[kind]

    def structure(value: Any, _: Any) -> Any:
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if type(value) is not kind:
            raise _WrongType(expected, value)
        return value

    return structure


def _quantity(value: Any, _: Any) -> str:
    """A quantity's text: Kubernetes takes ``cpu: 10`` as readily as ``cpu: "10"``."""
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return str(value) if isinstance(value, int) else repr(value)
    raise _WrongType('a quantity (a string such as "500m", or a number)', value)


def _is_literal(tp: Any) -> bool:
    return typing.get_origin(tp) is Literal


def _literal_hook(tp: Any) -> Any:
    choices = typing.get_args(tp)

    def structure(value: Any, _: Any) -> Any:
        # True == 1 in Python; a literal must match type and value.
        for choice in choices:
            if type(value) is type(choice) and value == choice:
                return value
        raise _NotAChoice(value, choices)

    return structure


def _is_scalar_union(tp: Any) -> bool:
    if typing.get_origin(tp) not in (typing.Union, UnionType):
        return False
    members = [m for m in typing.get_args(tp) if m is not NoneType]
    return len(members) > 1 and all(m in (str, int, float, bool) or _is_literal(m) for m in members)


def _scalar_union_hook(tp: Any) -> Any:
    members = typing.get_args(tp)
    names = " or ".join(_TYPE_NAMES.get(m, "one of " + ", ".join(map(repr, typing.get_args(m)))) for m in members)

    def structure(value: Any, _: Any) -> Any:
        for member in members:
            if member is NoneType:
                if value is None:
                    return None
            elif _is_literal(member):
                if value in typing.get_args(member):
                    return value
            elif type(value) is member:
                return value
        raise _WrongType(names, value)

    return structure


def _is_string_or_table(tp: Any) -> bool:
    """``str | SomeAttrsClass``: a plain value, or a table saying where the value comes from."""
    if typing.get_origin(tp) not in (typing.Union, UnionType):
        return False
    members = typing.get_args(tp)
    return len(members) == 2 and str in members and any(attrs.has(m) for m in members)


def _string_or_table_hook(converter: cattrs.Converter, tp: Any) -> Any:
    table_type = next(m for m in typing.get_args(tp) if attrs.has(m))

    def structure(value: Any, _: Any) -> Any:
        if isinstance(value, str):
            return value
        if isinstance(value, dict):
            return converter.structure(value, table_type)
        raise _WrongType("a string or a table", value)

    return structure


@functools.cache
def _converter() -> cattrs.Converter:
    converter = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)
    for kind in (str, int, float, bool):
        converter.register_structure_hook(kind, _strict_scalar(kind))
    converter.register_structure_hook(Quantity, _quantity)
    converter.register_structure_hook(Any, lambda value, _: _plain_data(value))
    converter.register_structure_hook_factory(_is_literal, _literal_hook)
    converter.register_structure_hook_factory(_is_scalar_union, _scalar_union_hook)
    converter.register_structure_hook_factory(_is_string_or_table,
                                              lambda tp: _string_or_table_hook(converter, tp))
    _guard_containers(converter)
    def unstructure_options(value: Any) -> Any:
        if value is None:  # a plugin without an options class (options_type = None)
            return {}
        return converter.unstructure(value, unstructure_as=type(value)) if attrs.has(type(value)) else dict(value)

    # engine and target options are typed by plugins after structuring; unstructure by value
    converter.register_unstructure_hook_func(
        lambda tp: tp == typing.Mapping[str, Any] or tp == collections.abc.Mapping[str, Any], unstructure_options)
    return converter


def _guard_containers(converter: cattrs.Converter) -> None:
    """Tables and arrays must be what the spec says: cattrs would iterate a string otherwise."""

    def is_mapping(tp: Any) -> bool:
        return typing.get_origin(tp) in (dict, collections.abc.Mapping)

    def is_sequence(tp: Any) -> bool:
        return typing.get_origin(tp) in (tuple, list)

    def guarded(expected_type: type, make_hook: Any) -> Any:
        def factory(tp: Any) -> Any:
            hook = make_hook(converter, tp)

            def structure(value: Any, cl: Any) -> Any:
                if not isinstance(value, expected_type):
                    raise _WrongType(_TYPE_NAMES[expected_type], value)
                return hook(value, cl)

            return structure

        return factory

    converter.register_structure_hook_factory(attrs.has, guarded(dict, _attrs_hook))
    converter.register_structure_hook_factory(is_mapping, guarded(dict, _mapping_hook))
    converter.register_structure_hook_factory(is_sequence, guarded(list, _sequence_hook))


def _attrs_hook(converter: cattrs.Converter, tp: Any) -> Any:
    return cattrs.gen.make_dict_structure_fn(
        tp, converter, _cattrs_forbid_extra_keys=True, _cattrs_detailed_validation=True
    )


def _mapping_hook(converter: cattrs.Converter, tp: Any) -> Any:
    key_type, value_type = typing.get_args(tp) or (str, Any)
    return cattrs.gen.make_mapping_structure_fn(
        tp, converter, structure_to=dict, key_type=key_type, val_type=value_type, detailed_validation=True
    )


def _sequence_hook(converter: cattrs.Converter, tp: Any) -> Any:
    """Homogeneous tuples and lists, reporting every bad item (cattrs stops at the first)."""
    item_type = typing.get_args(tp)[0]
    as_list = typing.get_origin(tp) is list

    def structure(value: list, _: Any) -> Any:
        hook = converter.get_structure_hook(item_type)
        items, errors = [], []
        for index, item in enumerate(value):
            try:
                items.append(hook(item, item_type))
            except Exception as error:  # collected, so that every item is reported
                error.__notes__ = [*getattr(error, "__notes__", []), IterableValidationNote(f"@ index {index}", index, item_type)]
                errors.append(error)
        if errors:
            raise cattrs.IterableValidationError("invalid items", errors, tp)
        return items if as_list else tuple(items)

    return structure


def structure(data: Any, cls: type[T], prefix: Path = ()) -> tuple[T | None, list[Diagnostic]]:
    """Structure ``data`` as ``cls``; on failure return every problem as a Diagnostic."""
    try:
        return _converter().structure(data, cls), []
    except Exception as error:  # cattrs raises exception groups of many kinds
        return None, sorted(_diagnostics(error, prefix, cls), key=lambda d: d.sort_key())


def unstructure(value: Any) -> Any:
    return _converter().unstructure(value)


def _diagnostics(error: BaseException, path: Path, cls: Any) -> Iterator[Diagnostic]:
    if isinstance(error, ForbiddenExtraKeysError):
        known = [a.name for a in attrs.fields(error.cl)] if attrs.has(error.cl) else []
        for key in sorted(error.extra_fields):
            yield Diagnostic("E003", f"unknown key '{key}'", path + (key,), did_you_mean(key, known))
        return
    if isinstance(error, BaseExceptionGroup):
        for sub in error.exceptions:
            sub_path, sub_cls = path, cls
            for note in getattr(sub, "__notes__", []):
                if isinstance(note, AttributeValidationNote):
                    sub_path, sub_cls = path + (note.name,), note.type
                elif isinstance(note, IterableValidationNote):
                    sub_path, sub_cls = path + (note.index,), note.type
            yield from _diagnostics(sub, sub_path, sub_cls)
        return
    if isinstance(error, KeyError):
        yield Diagnostic("E004", f"missing required key '{path[-1]}'", path, _example(cls))
    elif isinstance(error, _NotAChoice):
        hint = did_you_mean(error.value, map(str, error.choices)) if isinstance(error.value, str) else (
            "expected one of: " + ", ".join(repr(c) for c in error.choices))
        yield Diagnostic("E005", f"{describe(error.value)} is not allowed", path, hint)
    elif isinstance(error, _NotKubernetesData):
        hint = f'quote it: "{error.value.isoformat()}"' if not isinstance(error.value, float) else "use a finite number"
        yield Diagnostic("E018", str(error), path + error.inner_path, hint)
    elif isinstance(error, _WrongType):
        hint = None
        if error.expected == "a string" and isinstance(error.value, (int, float, bool)):
            hint = "quote the value to make it a string"
        elif error.expected.startswith("an integer") and isinstance(error.value, str) and error.value.strip().isdigit():
            hint = f"write {error.value.strip()} without quotes"
        yield Diagnostic("E006", f"expected {error.expected}, got {describe(error.value)}", path, hint)
    else:
        yield Diagnostic("E006", str(error) or type(error).__name__, path)


def _example(cls: Any) -> str | None:
    if cls in _TYPE_NAMES:
        return f"it takes {_TYPE_NAMES[cls]}"
    return None
