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


class _CanonicalDumper(getattr(yaml, "CSafeDumper", yaml.SafeDumper)):  # type: ignore[misc]
    def ignore_aliases(self, data: Any) -> bool:
        return True


def _represent_mapping(dumper: yaml.SafeDumper, data: Mapping) -> yaml.Node:
    items = sorted(data.items(), key=lambda item: _key_order(item[0]))
    return dumper.represent_mapping("tag:yaml.org,2002:map", items)


def _represent_str(dumper: yaml.SafeDumper, data: str) -> yaml.Node:
    style = "|" if "\n" in data and not data.startswith(" ") and all(
        line == line.rstrip() for line in data.splitlines()) else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_CanonicalDumper.add_representer(dict, _represent_mapping)
_CanonicalDumper.add_representer(str, _represent_str)
_CanonicalDumper.add_representer(tuple, yaml.SafeDumper.represent_list)


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
