"""``frozen`` and ``define``: attrs' decorators for the project's own classes, with one shared ``__repr__``
and, for frozen classes, one shared ``__hash__``.

attrs writes every class's dunder methods as source and ``compile()``s them when the class is
defined, and nothing caches that (python-attrs/attrs#575), so each of stackc's ~130 classes costs
every CLI start its compile. The repr needs no code of its own per class: ``_repr`` prints what
attrs' generated one prints, byte for byte (tests/stackc/test_records.py holds every class to it),
and leaving attrs' out saves ~17 ms of the ~155 ms it takes to import stackc and its plugins (cold).
Equality stays attrs' own; the code attrs still writes (``__init__``, ``__eq__``) is compiled once and
kept beside the bytecode (``stackc.codecache``). That cache can only hit source that is the same in
every process, and attrs' ``__hash__`` embeds ``hash()`` of a string, which PYTHONHASHSEED changes
per process: ``_hash`` hashes the same fields (those attrs would) without code of its own per class.
Third-party plugins use attrs as they please.
"""

from __future__ import annotations

import functools
import operator
import threading
from collections.abc import Callable
from typing import Any, dataclass_transform

import attr._make
import attrs

from stackc.codecache import cache_generated_code

cache_generated_code(attr._make)

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


def _hash(self: Any) -> int:
    """Equal objects hash equal: the class and the fields attrs would hash (those compared by ``__eq__``)."""
    return hash((self.__class__, _hashed_fields(self.__class__)(self)))


@functools.cache
def _hashed_fields(cls: type) -> Callable[[Any], Any]:
    names = [f.name for f in cls.__attrs_attrs__ if f.hash is True or (f.hash is None and f.eq)]  # type: ignore[attr-defined]
    return operator.attrgetter(*names) if names else lambda obj: ()


def _shared(decorator: Callable[..., type], cls: type | None, options: dict[str, Any], hashed: bool) -> Any:
    """``decorator`` without the methods shared here: a class's own repr or hash stays (as attrs'
    auto_detect keeps them), and a hash is shared only where attrs would write one."""
    if cls is None:
        return lambda cls: _shared(decorator, cls, options, hashed)
    own_repr, own_hash = "__repr__" in cls.__dict__, "__hash__" in cls.__dict__
    hashed = hashed and not own_hash and options.get("eq", True) and "unsafe_hash" not in options
    cls = decorator(cls, repr=False, **options, **({"unsafe_hash": False} if hashed else {}))
    if not own_repr:
        cls.__repr__ = _repr
    if hashed:
        cls.__hash__ = _hash
    return cls


@dataclass_transform(frozen_default=True, field_specifiers=(attrs.field,))
def frozen(cls: type | None = None, /, **options: Any) -> Any:
    """``attrs.frozen`` (with its ``options``), the repr and the hash shared."""
    return _shared(attrs.frozen, cls, options, hashed=True)


@dataclass_transform(field_specifiers=(attrs.field,))
def define(cls: type | None = None, /, **options: Any) -> Any:
    """``attrs.define`` (with its ``options``), the repr shared (its instances are unhashable, as attrs makes them)."""
    return _shared(attrs.define, cls, options, hashed=False)
