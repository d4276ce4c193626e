"""The only place objects become bytes: canonical YAML and JSON.

Canonical means: same data, same bytes. Mapping keys are ordered (Kubernetes' conventional
leading keys first, then alphabetically), no anchors or aliases, no line folding, LF endings,
one trailing newline. Sequences keep their order: it carries meaning (args, containers).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Mapping
from typing import Any

import yaml

from stackc.registry import Artifact

_LEADING_KEYS = {key: rank for rank, key in enumerate(
    ("apiVersion", "kind", "metadata", "name", "namespace", "labels", "annotations", "spec", "data", "stringData")
)}


def _key_order(key: Any) -> tuple[int, str]:
    return (_LEADING_KEYS.get(key, len(_LEADING_KEYS)), str(key))


_MAP, _SEQ, _STR = "tag:yaml.org,2002:map", "tag:yaml.org,2002:seq", "tag:yaml.org,2002:str"
_SCALAR_TAGS = {bool: "tag:yaml.org,2002:bool", int: "tag:yaml.org,2002:int", type(None): "tag:yaml.org,2002:null"}
#: plain-scalar tag resolution depends only on the text: key names and label values repeat thousands of times
_RESOLVED: dict[tuple[str, tuple[bool, bool]], str] = {}


class _CanonicalDumper(getattr(yaml, "CSafeDumper", yaml.SafeDumper)):  # type: ignore[misc]
    """PyYAML's emitter, with a representer made for the data stackc emits (the generic one was half
    of a large build's time): dicts with sorted keys, lists and tuples, str, int, float, bool, None."""

    def ignore_aliases(self, data: Any) -> bool:
        return True

    def represent_data(self, data: Any) -> yaml.Node:
        kind = type(data)
        if kind is dict:
            items = sorted(data.items(), key=_key_order_of_item)
            return yaml.MappingNode(_MAP, [(self.represent_data(k), self.represent_data(v)) for k, v in items],
                                    flow_style=False)
        if kind is str:
            return yaml.ScalarNode(_STR, data, style=_string_style(data))
        if kind is list or kind is tuple:
            return yaml.SequenceNode(_SEQ, [self.represent_data(item) for item in data], flow_style=False)
        if kind is bool:
            return yaml.ScalarNode(_SCALAR_TAGS[bool], "true" if data else "false")
        if kind is int:
            return yaml.ScalarNode(_SCALAR_TAGS[int], str(data))
        if data is None:
            return yaml.ScalarNode(_SCALAR_TAGS[type(None)], "null")
        return super().represent_data(dict(data) if isinstance(data, Mapping) else data)

    def resolve(self, kind: Any, value: Any, implicit: Any) -> str:
        if kind is not yaml.ScalarNode:
            return super().resolve(kind, value, implicit)
        key = (value, implicit)
        tag = _RESOLVED.get(key)
        if tag is None:
            tag = _RESOLVED[key] = super().resolve(kind, value, implicit)
        return tag


def _key_order_of_item(item: tuple[Any, Any]) -> tuple[int, str]:
    return _key_order(item[0])


def _string_style(data: str) -> str | None:
    """Multi-line text as a literal block, when it round-trips (no leading or trailing blanks)."""
    if "\n" in data and not data.startswith(" ") and all(line == line.rstrip() for line in data.splitlines()):
        return "|"
    return None


#: ``to_yaml``'s ``rewrite``: strings holding the marker are written as the function returns them
Rewrite = tuple[str, Callable[[str], str]]


def to_yaml(obj: Any, rewrite: Rewrite | None = None) -> str:
    """``rewrite``: each string (a key or a value) that holds its marker is written as its function returns
    it, as though the data held that (Helm's templates put an expression where the namespace is)."""
    try:
        return _block_yaml(obj, rewrite)
    except _Unusual:
        return _pyyaml_text(obj if rewrite is None else _rewritten(obj, *rewrite))


def _rewritten(node: Any, marker: str, function: Callable[[str], str]) -> Any:
    if isinstance(node, dict):
        return {_rewritten(k, marker, function): _rewritten(v, marker, function) for k, v in node.items()}
    if isinstance(node, (list, tuple)):
        return [_rewritten(item, marker, function) for item in node]
    return function(node) if isinstance(node, str) and marker in node else node


def _pyyaml_text(obj: Any) -> str:
    """PyYAML's canonical text: the reference ``_block_yaml`` reproduces byte for byte (a property test)."""
    return yaml.dump(obj, Dumper=_CanonicalDumper, default_flow_style=False, sort_keys=False,
                     width=2**31 - 1, allow_unicode=True, line_break="\n")


class _Unusual(Exception):
    """Data ``_block_yaml`` leaves to PyYAML: multi-line text, floats, non-string keys, other types."""


def _block_yaml(obj: Any, rewrite: Rewrite | None = None) -> str:
    """PyYAML's output for the common shape of Kubernetes objects, written without building a node
    graph (which was most of a large build's time). Layout is block style with PyYAML's
    conventions (two-space indent, sequences in mappings not indented); every distinct scalar's
    text still comes from PyYAML, once."""
    lines: list[str] = []
    marker, function = rewrite or ("", None)
    if type(obj) is dict and obj:
        _mapping(obj, 0, "", lines, marker, function)
    elif type(obj) in (list, tuple) and obj:
        _sequence(obj, 0, lines, marker, function)
    else:
        raise _Unusual
    return "".join(lines)


def _mapping(data: dict[str, Any], indent: int, lead: str, lines: list[str], marker: str,
             rewrite: Callable[[str], str] | None) -> None:
    pad = " " * indent
    start = lead
    keys = _ordered(tuple(data))
    if rewrite is not None and _marked(keys, marker):  # rewritten keys are ordered as written
        data = {rewrite(key) if marker in key else key: value for key, value in data.items()}
        keys = _ordered(tuple(data))
    for key, key_text in keys:
        value = data[key]
        kind = type(value)
        if kind is str:  # most values: no call to _scalar_text
            lines.append(f"{start}{key_text} "
                         f"{_string_text(rewrite(value) if rewrite is not None and marker in value else value)}\n")
        elif kind is dict:
            if value:
                lines.append(f"{start}{key_text}\n")
                _mapping(value, indent + 2, " " * (indent + 2), lines, marker, rewrite)
            else:
                lines.append(f"{start}{key_text} {{}}\n")
        elif kind is list or kind is tuple:
            if value:
                lines.append(f"{start}{key_text}\n")
                _sequence(value, indent, lines, marker, rewrite)
            else:
                lines.append(f"{start}{key_text} []\n")
        else:
            lines.append(f"{start}{key_text} {_scalar_text(value)}\n")
        start = pad


@functools.lru_cache(maxsize=1 << 12)
def _ordered(keys: tuple[Any, ...]) -> tuple[tuple[str, str], ...]:
    """Canonical key order, each key with its text and colon, once per key set (thousands of objects share a
    few dozen)."""
    if any(type(key) is not str for key in keys):
        raise _Unusual
    return tuple((key, _key_text(key) + ":") for key in sorted(keys, key=_key_order))


@functools.lru_cache(maxsize=1 << 12)
def _marked(keys: tuple[tuple[str, str], ...], marker: str) -> bool:
    return any(marker in key for key, _ in keys)


def _sequence(items: list[Any] | tuple[Any, ...], indent: int, lines: list[str], marker: str,
              rewrite: Callable[[str], str] | None) -> None:
    lead = " " * indent + "- "
    for item in items:
        _item(item, indent, lead, lines, marker, rewrite)


def _item(item: Any, indent: int, lead: str, lines: list[str], marker: str,
          rewrite: Callable[[str], str] | None) -> None:
    kind = type(item)
    if kind is dict:
        if item:
            _mapping(item, indent + 2, lead, lines, marker, rewrite)
        else:
            lines.append(f"{lead}{{}}\n")
    elif kind is list or kind is tuple:
        if item:
            inner = lead + "- "
            for sub in item:
                _item(sub, indent + 2, inner, lines, marker, rewrite)
                inner = " " * (indent + 2) + "- "
        else:
            lines.append(f"{lead}[]\n")
    elif kind is str:
        lines.append(f"{lead}{_string_text(rewrite(item) if rewrite is not None and marker in item else item)}\n")
    else:
        lines.append(f"{lead}{_scalar_text(item)}\n")


def _scalar_text(value: Any) -> str:
    kind = type(value)
    if kind is str:
        return _string_text(value)
    if kind is bool:
        return "true" if value else "false"
    if kind is int:
        return str(value)
    if value is None:
        return "null"
    raise _Unusual


#: a word PyYAML always writes plain unless it reads as another type ("true", "1e3", "null")
_PLAIN_WORD = re.compile(r"[A-Za-z0-9_/][A-Za-z0-9_./-]*")
_PLAIN_STR = functools.partial(yaml.resolver.Resolver().resolve, yaml.ScalarNode, implicit=(True, False))


@functools.lru_cache(maxsize=1 << 16)
def _string_text(value: str) -> str:
    if _PLAIN_WORD.fullmatch(value) and _PLAIN_STR(value) == _STR:
        return value
    text = _pyyaml_text({"k": value})
    if not text.startswith("k: ") or text.count("\n") != 1:
        raise _Unusual  # a literal block: its layout depends on where it stands
    return text[3:-1]


@functools.lru_cache(maxsize=1 << 16)
def _key_text(key: str) -> str:
    if _PLAIN_WORD.fullmatch(key) and _PLAIN_STR(key) == _STR:
        return key
    text = _pyyaml_text({key: 0})
    if not text.endswith(": 0\n") or text.count("\n") != 1 or text.startswith("? "):
        raise _Unusual  # a multi-line or long (complex) key
    return text[:-4]


def to_yaml_stream(objects: tuple[Mapping[str, Any], ...]) -> str:
    return "---\n".join(to_yaml(dict(obj)) for obj in objects)


def to_json(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def render(artifact: Artifact) -> bytes:
    if artifact.text is not None:
        text = artifact.text if artifact.text.endswith("\n") else artifact.text + "\n"
    elif artifact.data is not None:
        text = to_json(artifact.data) if artifact.path.endswith(".json") else to_yaml(artifact.data)
    else:
        text = to_yaml_stream(artifact.objects)
    return text.encode("utf-8")
