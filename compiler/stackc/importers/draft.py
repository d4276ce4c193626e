"""The spec an importer builds, the pieces every chart shares (Kubernetes resources, tolerations,
env, probes), and the commented TOML it becomes."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from stackc.diagnostics import Location
from stackc.importers.values import Path, Values

#: extended resources that are accelerators; anything else stays in ``resources``
ACCELERATOR_RESOURCE = re.compile(r"^(nvidia\.com/(gpu|mig-.+)|amd\.com/gpu|aws\.amazon\.com/neuron(core|device)?"
                                  r"|gpu\.intel\.com/.+|habana\.ai/gaudi|google\.com/tpu)$")


@attrs.define
class Draft:
    """A spec under construction: plain data in the order it will be written, plus table comments."""

    name: str
    namespace: str = "default"
    targets: list[str] = attrs.field(factory=lambda: ["manifests"])
    models: dict[str, dict[str, Any]] = attrs.field(factory=dict)
    target_options: dict[str, dict[str, Any]] = attrs.field(factory=dict)
    comments: dict[tuple[str, ...], str] = attrs.field(factory=dict)
    #: where each model came from in the values, to locate problems with the spec it became
    origins: dict[str, Location] = attrs.field(factory=dict)

    def add_target(self, name: str) -> None:
        if name not in self.targets:
            self.targets.append(name)

    def add_model(self, key: str, model: dict[str, Any], source: str, origin: Location) -> str:
        """Add under a free key (two entries may sanitise to one name) and return the key used."""
        unique, number = key, 2
        while unique in self.models:
            unique, number = f"{key}-{number}", number + 1
        first = {k: model[k] for k in ("engine", "model") if k in model}
        if model.get("enabled") is True:
            model = {k: v for k, v in model.items() if k != "enabled"}  # the spec's default
        self.models[unique] = {**first, **model}
        self.comments[("models", unique)] = f"{source} ({origin})"
        self.origins[unique] = origin
        return unique

    def data(self) -> dict[str, Any]:
        spec: dict[str, Any] = {"version": 1, "stack": {"name": self.name, "namespace": self.namespace,
                                                        "targets": list(self.targets)}}
        spec["models"] = {key: prune(model) for key, model in self.models.items()}
        options = {k: prune(v) for k, v in self.target_options.items() if prune(v)}
        if options:
            spec["targets"] = options
        return spec


def prune(value: Any) -> Any:
    """Drop None and empty tables/arrays: TOML has no null and empty tables are noise."""
    if isinstance(value, Mapping):
        kept = {k: prune(v) for k, v in value.items() if v is not None}
        return {k: v for k, v in kept.items() if v != {} and v != []}
    if isinstance(value, (list, tuple)):
        return [prune(v) for v in value]
    return value


def model_key(name: str) -> str:
    """A spec model name from a chart's name for it: lowercase letters, digits and '-', a letter first."""
    key = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")
    key = re.sub(r"-{2,}", "-", key)
    if not key or not key[0].isalpha():
        key = f"model-{key}".rstrip("-")
    return key[:50].rstrip("-")


def stack_name(paths: Sequence[str], fallback: str) -> str:
    from pathlib import Path as FsPath

    stem = FsPath(paths[-1]).stem if paths else ""
    key = model_key(stem) if stem and stem != "values" else fallback
    return key[:40].rstrip("-") or fallback


def quantity(value: Any) -> str | None:
    """Kubernetes quantities as text (YAML may read `4` as an integer)."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def split_resources(values: Values, path: Path) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """A Kubernetes ``resources`` block as the spec's ``accelerators`` and ``resources``."""
    accelerators: dict[str, Any] | None = None
    spec: dict[str, Any] = {}
    for section in ("requests", "limits"):
        for resource, amount in values.mapping((*path, section)).items():
            item = (*path, section, resource)
            values.consumed.add(item)
            text = quantity(amount)
            if text is None:
                values.error(item, f"expected a quantity, got {amount!r}")
                continue
            if ACCELERATOR_RESOURCE.match(resource):
                if not text.isdigit():
                    values.error(item, f"accelerators are whole devices, got {text!r}")
                    continue
                if accelerators and accelerators["resource"] != resource:
                    values.drop(item, f"a second accelerator resource ({resource}) in one container")
                    continue
                accelerators = {"count": max(int(text), (accelerators or {}).get("count", 0)), "resource": resource}
            else:
                spec.setdefault(section, {})[resource] = text
    for key in values.keys(path):
        if key not in ("requests", "limits"):
            values.drop((*path, key), "only requests and limits are container resources")
    return accelerators, spec


def tolerations(values: Values, path: Path) -> list[dict[str, Any]]:
    found = []
    for index, item in enumerate(values.sequence(path)):
        here = (*path, index)
        if not isinstance(item, dict):
            values.error(here, "a toleration is a mapping")
            continue
        found.append({"key": values.text((*here, "key")), "operator": values.text((*here, "operator")),
                      "value": values.text((*here, "value")), "effect": values.text((*here, "effect")),
                      "toleration_seconds": values.get((*here, "tolerationSeconds"), int)})
        for key in values.keys(here):
            if key not in ("key", "operator", "value", "effect", "tolerationSeconds"):
                values.drop((*here, key), "not a toleration field")
    return found


def env_list(values: Values, path: Path, env: dict[str, str], secret_env: dict[str, dict[str, str]]) -> None:
    """A Kubernetes ``env`` list into plain variables and Secret references (other sources are reported)."""
    for index, item in enumerate(values.sequence(path)):
        here = (*path, index)
        name = values.text((*here, "name")) if isinstance(item, dict) else None
        if name is None:
            values.error(here, "an env entry needs a name")
            continue
        if isinstance(item.get("valueFrom"), dict):
            ref = values.mapping((*here, "valueFrom", "secretKeyRef"))
            if ref and set(item["valueFrom"]) == {"secretKeyRef"}:
                secret = {"name": values.text((*here, "valueFrom", "secretKeyRef", "name")),
                          "key": values.text((*here, "valueFrom", "secretKeyRef", "key"))}
                values.drop_unless((*here, "valueFrom", "secretKeyRef", "optional"), False,
                                   "optional Secret references")
                secret_env[name] = secret
            else:
                values.drop(here, f"{name} comes from a source other than a Secret key",
                            "stackc reads plain values and Secret keys")
            continue
        env[name] = values.text((*here, "value")) or ""


def env_map(values: Values, path: Path, env: dict[str, str]) -> None:
    for key in values.keys(path):
        text = values.text((*path, key))
        if text is not None:
            env[key] = text


def probe(values: Values, path: Path, kube_style: bool = True) -> dict[str, Any] | None:
    """A Kubernetes probe (``httpGet``) as a probe override; other handlers are reported."""
    if not values.has(path):
        values.consumed.add(path)
        return None
    override: dict[str, Any] = {}
    for key, field in (("initialDelaySeconds", "initial_delay_seconds"), ("periodSeconds", "period_seconds"),
                       ("timeoutSeconds", "timeout_seconds"), ("failureThreshold", "failure_threshold")):
        override[field] = values.get((*path, key), int)
    if kube_style:
        override["path"] = values.text((*path, "httpGet", "path"))
        values.consumed.add((*path, "httpGet", "port"))  # stackc probes the engine's own port
        values.drop_unless((*path, "successThreshold"), 1, "a probe's successThreshold")
        for key in values.keys(path):
            if key in ("exec", "tcpSocket", "grpc"):
                values.drop((*path, key), f"a {key} probe", "stackc probes the engine over HTTP")
        for key in values.keys((*path, "httpGet")):
            if key not in ("path", "port"):
                values.drop((*path, "httpGet", key), f"httpGet.{key} in a probe")
    return override


def render(draft: Draft, header: Sequence[str]) -> str:
    """The draft as TOML: top-level tables, one table per model, small tables inline, comments kept."""
    import tomlkit

    data = draft.data()
    document = tomlkit.document()
    for line in header:
        document.add(tomlkit.comment(line))
    document.add("version", data["version"])
    document.add(tomlkit.nl())
    document.add("stack", _table(data["stack"], ()))
    models = tomlkit.table(is_super_table=True)
    for key, model in data["models"].items():
        table = _table(model, ("models", key))
        comment = draft.comments.get(("models", key))
        if comment:
            table.comment(comment)
        models.add(key, table)
    document.add("models", models)
    if "targets" in data:
        targets = tomlkit.table(is_super_table=True)
        for key, options in data["targets"].items():
            targets.add(key, _table(options, ("targets", key)))
        document.add("targets", targets)
    return tomlkit.dumps(document)


def _table(values: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    import tomlkit

    table = tomlkit.table()
    nested = []
    for key, value in values.items():
        if isinstance(value, Mapping) and len(path) < 3 and not _inline(value):
            nested.append((key, value))
        else:
            table.add(key, _item(value))
    for key, value in nested:
        table.add(key, _table(value, (*path, key)))
    return table


def _inline(value: Mapping[str, Any]) -> bool:
    """Short flat tables read best inline (`accelerators = { count = 1, … }`)."""
    text = repr(value)
    return len(text) <= 90 and all(not isinstance(v, list) or len(v) <= 3 for v in value.values())


def _item(value: Any, nested: bool = False) -> Any:
    import tomlkit

    if isinstance(value, Mapping):
        inline = tomlkit.inline_table()
        for key, item in value.items():
            inline.append(key, _item(item, nested=True))
        return inline
    if isinstance(value, (list, tuple)):
        array = tomlkit.array()
        array.extend(_item(v, nested=True) for v in value)
        if not nested and sum(len(repr(v)) for v in value) > 80:
            array.multiline(True)
        return array
    return value
