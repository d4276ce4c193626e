"""``frozen`` and ``define``: attrs' decorators for the project's own classes, with one shared ``__repr__``.

attrs writes every class's dunder methods as source and ``compile()``s them when the class is
defined, and nothing caches that (python-attrs/attrs#575), so each of stackc's ~130 classes costs
every CLI start its compile. The repr needs no code of its own per class: ``_repr`` prints what
attrs' generated one prints, byte for byte (tests/stackc/test_records.py holds every class to it),
and leaving attrs' out saves ~17 ms of the ~155 ms it takes to import stackc and its plugins (cold).
Equality and hashing stay attrs' own. Third-party plugins use attrs as they please.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, dataclass_transform

import attrs

#: the objects being printed on this thread, as attrs keeps them: a cycle prints ``...``
_printing = threading.local()


def _repr(self: Any) -> str:
    """attrs' generated ``__repr__`` (attr._make._make_repr_script with no ``repr_ns``), for any attrs class."""
    try:
        printing = _printing.ids
    except AttributeError:
        printing = _printing.ids = set()
    if id(self) in printing:
        return "..."
    printing.add(id(self))
    try:
        shown = ", ".join(_field(self, field) for field in self.__class__.__attrs_attrs__ if field.repr is not False)
        return f"{self.__class__.__qualname__.rsplit('>.', 1)[-1]}({shown})"
    finally:
        printing.remove(id(self))


def _field(self: Any, field: attrs.Attribute) -> str:
    value = getattr(self, field.name) if field.init else getattr(self, field.name, attrs.NOTHING)
    return f"{field.name}={value!r}" if field.repr is True else f"{field.name}={field.repr(value)}"


def _with_repr(decorator: Callable[..., type], cls: type | None, options: dict[str, Any]) -> Any:
    if cls is None:
        return lambda cls: _with_repr(decorator, cls, options)
    own = "__repr__" in cls.__dict__  # a class's own repr stays, as attrs' auto_detect keeps it
    cls = decorator(cls, repr=False, **options)
    if not own:
        cls.__repr__ = _repr
    return cls


@dataclass_transform(frozen_default=True, field_specifiers=(attrs.field,))
def frozen(cls: type | None = None, /, **options: Any) -> Any:
    """``attrs.frozen`` (with its ``options``), the repr shared."""
    return _with_repr(attrs.frozen, cls, options)


@dataclass_transform(field_specifiers=(attrs.field,))
def define(cls: type | None = None, /, **options: Any) -> Any:
    """``attrs.define`` (with its ``options``), the repr shared."""
    return _with_repr(attrs.define, cls, options)
