"""The only place objects become bytes: canonical YAML and JSON.

Canonical means: same data, same bytes. Mapping keys are ordered (Kubernetes' conventional
leading keys first, then alphabetically), no anchors or aliases, no line folding, LF endings,
one trailing newline. Sequences keep their order: it carries meaning (args, containers).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
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


def to_yaml(obj: Any) -> str:
    return yaml.dump(obj, Dumper=_CanonicalDumper, default_flow_style=False, sort_keys=False,
                     width=2**31 - 1, allow_unicode=True, line_break="\n")


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
