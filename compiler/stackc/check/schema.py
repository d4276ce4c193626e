"""JSON Schema for spec format v1, generated from the IR classes (and plugins' option classes).

Editors use it for completion and checks (taplo / Even Better TOML: `#:schema ./stackc.schema.json`).
"""

from __future__ import annotations

import typing
from collections.abc import Mapping
from types import NoneType, UnionType
from typing import Any, Literal

import attrs

from stackc.registry import Registry
from stackc.spec.model import Form, Quantity, Spec

_SCALARS = {str: {"type": "string"}, int: {"type": "integer"}, float: {"type": "number"}, bool: {"type": "boolean"},
            Quantity: {"anyOf": [{"type": "string"}, {"type": "number", "minimum": 0}]}}


def spec_schema(registry: Registry) -> dict[str, Any]:
    definitions: dict[str, Any] = {}
    root = _object_schema(Spec, definitions)
    root["properties"]["defaults"] = {
        "description": "Values every model inherits (a model's own values win; tables merge).",
        "$ref": "#/$defs/ModelDefaults",
    }
    # a model may take any key, `engine` and `model` included, from [defaults]
    definitions["Model"].pop("required", None)
    definitions["ModelDefaults"] = dict(definitions["Model"])
    engines = sorted(registry.engines)
    definitions["Model"]["properties"]["engine"]["enum"] = engines
    definitions["ModelDefaults"]["properties"]["engine"] = {**definitions["Model"]["properties"]["engine"]}
    engine_options = []
    for name in engines:
        options_type = registry.engines[name].traits.options_type
        if options_type is not None:
            engine_options.append({
                "if": {"properties": {"engine": {"const": name}}, "required": ["engine"]},
                "then": {"properties": {"engine_options": _type_schema(options_type, definitions)}},
            })
    if engine_options:
        definitions["Model"]["allOf"] = engine_options
    target_properties = {}
    for name in sorted(registry.targets):
        options_type = registry.targets[name].traits.options_type
        target_properties[name] = _type_schema(options_type, definitions) if options_type else {
            "type": "object", "additionalProperties": False}
    root["properties"]["targets"] = {"type": "object", "description": root["properties"]["targets"].get("description", ""),
                                     "properties": target_properties, "additionalProperties": False}
    root["properties"]["stack"] = {"$ref": "#/$defs/Stack"}
    definitions["Stack"]["properties"]["targets"]["items"]["enum"] = sorted(registry.targets)
    root["required"] = ["version", "stack", "models"]
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": "https://stackc.dev/schema/v1.json",
            "title": "stackc stack spec, format v1", **root, "$defs": dict(sorted(definitions.items()))}


def _object_schema(cls: type, definitions: dict[str, Any]) -> dict[str, Any]:
    properties = {}
    required = []
    hints = typing.get_type_hints(cls)
    for field in attrs.fields(cls):
        schema = _bounded(dict(_type_schema(hints[field.name], definitions)), field.metadata)
        doc = field.metadata.get("doc")
        if doc:
            schema["description"] = doc
        if field.default is attrs.NOTHING:
            required.append(field.name)
        elif not isinstance(field.default, attrs.Factory) and field.default is not None and not attrs.has(type(field.default)):
            schema["default"] = list(field.default) if isinstance(field.default, tuple) else field.default
        properties[field.name] = schema
    result: dict[str, Any] = {"type": "object", "properties": properties, "additionalProperties": False}
    if cls.__doc__ and cls.__doc__.strip():
        result["description"] = cls.__doc__.strip().split("\n\n")[0].replace("\n", " ")
    if required:
        result["required"] = required
    return result


def _bounded(node: dict[str, Any], bounds: Mapping[str, Any]) -> dict[str, Any]:
    """The bounds a field declares (``stackc.spec.model.field``), where JSON Schema can say them."""
    kind = node.get("type")
    if kind in ("integer", "number"):
        node.update({key: bounds[key] for key in ("minimum", "maximum") if key in bounds})
    elif kind == "string" and "form" in bounds:
        node.update(_form_schema(bounds["form"]))
    elif kind == "array":
        if "min_items" in bounds:
            node["minItems"] = bounds["min_items"]
        node["items"] = _bounded(dict(node["items"]), bounds)
    elif kind == "object":
        if "keys" in bounds:
            node["propertyNames"] = _form_schema(bounds["keys"])
        if node.get("additionalProperties"):
            node["additionalProperties"] = _bounded(dict(node["additionalProperties"]), bounds)
    if "anyOf" in node:
        node["anyOf"] = [_bounded(dict(member), bounds) for member in node["anyOf"]]
    return node


def _form_schema(form: Form) -> dict[str, Any]:
    return {"pattern": form.pattern, **({"maxLength": form.max_length} if form.max_length else {})}


def _type_schema(tp: Any, definitions: dict[str, Any]) -> dict[str, Any]:
    if tp in _SCALARS:
        return dict(_SCALARS[tp])
    if tp is Any:
        return {}
    if attrs.has(tp):
        name = tp.__name__
        if name not in definitions:
            definitions[name] = {}
            definitions[name] = _object_schema(tp, definitions)
        return {"$ref": f"#/$defs/{name}"}
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is Literal:
        return {"enum": list(args)}
    if origin in (typing.Union, UnionType):
        members = [a for a in args if a is not NoneType]
        if len(members) == 1:
            return _type_schema(members[0], definitions)
        return {"anyOf": [_type_schema(m, definitions) for m in members]}
    if origin in (tuple, list):
        return {"type": "array", "items": _type_schema(args[0], definitions)}
    if origin in (dict, Mapping, typing.Mapping):
        return {"type": "object", "additionalProperties": _type_schema(args[1], definitions) if args else {}}
    raise TypeError(f"no JSON Schema for {tp!r}")





def spec_reference(registry: Registry) -> str:
    """The field reference of ``docs/spec.md``, as Markdown, from the same schema."""
    schema = spec_schema(registry)
    definitions = schema["$defs"]
    lines: list[str] = []

    def describe_type(node: dict[str, Any]) -> str:
        if "$ref" in node:
            name = node["$ref"].rsplit("/", 1)[1]
            return f"table ([{name}](#{name.lower()}))"
        if "enum" in node:
            return " \\| ".join(f"`{_toml(v)}`" for v in node["enum"])
        if "anyOf" in node:
            return " or ".join(describe_type(n) for n in node["anyOf"])
        kind = node.get("type")
        if kind == "array":
            return f"array of {describe_type(node.get('items', {}))}"
        if kind == "object":
            inner = node.get("additionalProperties")
            return f"table of {describe_type(inner)}" if isinstance(inner, dict) and inner else "table"
        return {"string": "string", "integer": "integer", "number": "number", "boolean": "boolean"}.get(kind, "any")

    def table(title: str, node: dict[str, Any], level: str = "###") -> None:
        lines.extend([f"{level} {title}", ""])
        if node.get("description"):
            lines.extend([node["description"], ""])
        lines.extend(["| key | type | default | meaning |", "| --- | --- | --- | --- |"])
        required = set(node.get("required", ()))
        for key, prop in node.get("properties", {}).items():
            default = "required" if key in required else (f"`{_toml(prop['default'])}`" if "default" in prop else "")
            meaning = prop.get("description", "").replace("|", "\\|")
            lines.append(f"| `{key}` | {describe_type(prop)} | {default} | {meaning} |")
        lines.append("")

    table("Top level", {k: v for k, v in schema.items() if k in ("properties", "required")})
    for name in ("Stack", "Model"):
        table(name, definitions[name])
    for name, node in definitions.items():
        if name not in ("Stack", "Model", "ModelDefaults") and "properties" in node:
            table(name, node)
    return "\n".join(lines)


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return str(value)
