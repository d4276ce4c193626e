"""The spec an importer builds, the pieces every chart shares (Kubernetes resources, tolerations,
env, probes), and the commented TOML it becomes."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from stackc.diagnostics import Location
from stackc.importers.values import Path, Values
from stackc.records import define

#: extended resources that are accelerators; anything else stays in ``resources``
ACCELERATOR_RESOURCE = re.compile(r"^(nvidia\.com/(gpu|mig-.+)|amd\.com/gpu|aws\.amazon\.com/neuron(core|device)?"
                                  r"|gpu\.intel\.com/.+|habana\.ai/gaudi|google\.com/tpu)$")


@define
class Draft:
    """A spec under construction: plain data in the order it will be written, plus table comments."""

    name: str
    namespace: str = "default"
    #: the user came from a Helm chart: they get one back beside the plain manifests
    targets: list[str] = attrs.field(factory=lambda: ["manifests", "helm"])
    models: dict[str, dict[str, Any]] = attrs.field(factory=dict)
    target_options: dict[str, dict[str, Any]] = attrs.field(factory=dict)
    comments: dict[tuple[str, ...], str] = attrs.field(factory=dict)
    #: where each model came from in the values, to locate problems with the spec it became
    origins: dict[str, Location] = attrs.field(factory=dict)
    extra_objects: list[dict[str, Any]] = attrs.field(factory=list)
    kv_cache_server: dict[str, Any] | None = None
    shared_cache: dict[str, Any] | None = None
    engines_service: dict[str, Any] | None = None

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
        spec: dict[str, Any] = {"version": 1, "stack": prune({"name": self.name, "namespace": self.namespace,
                                                              "targets": list(self.targets),
                                                              "kv_cache_server": self.kv_cache_server,
                                                              "shared_cache": self.shared_cache,
                                                              "engines_service": self.engines_service,
                                                              "extra_objects": list(self.extra_objects)})}
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


#: stack name + '-' + model key: KubeRay's RayService names are the tightest limit stackc checks
#: (47 characters), so a derived name that fits it fits every target
NAME_ROOM = 46


def stack_name(paths: Sequence[str], fallback: str, model_keys: Sequence[str]) -> str:
    """A legal stack name from the last values file's name (``values-`` and a number dropped), cut at a '-' so that
    it fits beside the longest model key; the chart's own name when the file tells nothing."""
    from pathlib import Path as FsPath

    stem = FsPath(paths[-1]).stem if paths else ""
    stem = re.sub(r"^(values[-_.]?)?([0-9]+[-_.]?)?", "", stem)
    key = model_key(stem) if stem and stem[0].isalpha() else fallback
    room = max(NAME_ROOM - 1 - max((len(k) for k in model_keys), default=0), 1)
    if len(key) > room:
        cut = key[:room + 1].rfind("-")
        key = key[:cut] if cut > 0 else key[:room]
    return key.rstrip("-") or fallback[:room].rstrip("-") or "s"


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


def env_list(values: Values, path: Path, env: dict[str, Any], secret_env: dict[str, dict[str, str]]) -> None:
    """A Kubernetes ``env`` list: plain values, Secret references, and the other sources (ConfigMap keys,
    pod fields, container resources) as the spec's env tables."""
    for index, item in enumerate(values.sequence(path)):
        here = (*path, index)
        name = values.text((*here, "name")) if isinstance(item, dict) else None
        if name is None:
            values.error(here, "an env entry needs a name")
            continue
        if not isinstance(item.get("valueFrom"), dict):
            env[name] = values.text((*here, "value")) or ""
            continue
        source = (*here, "valueFrom")
        kinds = list(item["valueFrom"])
        if len(kinds) != 1 or kinds[0] not in _ENV_SOURCES:
            values.drop(source, f"{name} comes from a source stackc does not read",
                        "stackc reads plain values, Secret and ConfigMap keys, pod fields and container resources")
            continue
        kind = kinds[0]
        ref = (*source, kind)
        if kind == "secretKeyRef" and not values.get((*ref, "optional"), bool, False):
            secret_env[name] = {"name": values.text((*ref, "name")), "key": values.text((*ref, "key"))}
            continue
        table = {key: values.text((*ref, field)) for key, field in _ENV_SOURCES[kind].items()}
        table["optional"] = values.get((*ref, "optional"), bool)
        env[name] = table
        for extra in values.keys(ref):
            if extra not in (*_ENV_SOURCES[kind].values(), "optional"):
                values.drop((*ref, extra), f"{kind}.{extra}")


#: Kubernetes valueFrom kinds -> the spec's env-table keys and the fields they come from
_ENV_SOURCES = {
    "secretKeyRef": {"secret": "name", "key": "key"},
    "configMapKeyRef": {"config_map": "name", "key": "key"},
    "fieldRef": {"field": "fieldPath"},
    "resourceFieldRef": {"resource": "resource", "divisor": "divisor"},
}


def init_container(values: Values, path: Path, handled: tuple[str, ...] = ()) -> dict[str, Any] | None:
    """A Kubernetes container run before the engine, in the spec's init-container form (``handled``: keys
    the chart's module reads itself)."""
    name, image = values.text((*path, "name")), values.text((*path, "image"))
    if name is None or image is None:
        values.error(path, "an init container needs a name and an image")
        values.raw(path)
        return None
    env: dict[str, Any] = {}
    secrets: dict[str, dict[str, str]] = {}
    env_list(values, (*path, "env"), env, secrets)
    env.update({key: {"secret": ref["name"], "key": ref["key"]} for key, ref in secrets.items()})
    _, resources = split_resources(values, (*path, "resources"))
    container = {"name": name, "image": image,
                 "command": values.texts((*path, "command")), "args": values.texts((*path, "args")),
                 "env": env, "resources": resources,
                 "volume_mounts": volume_mounts(values, (*path, "volumeMounts")),
                 "image_pull_policy": values.text((*path, "imagePullPolicy")),
                 "working_dir": values.text((*path, "workingDir"))}
    for key in values.keys(path):
        if key not in ("name", "image", "command", "args", "env", "resources", "volumeMounts", "imagePullPolicy",
                       "workingDir", *handled):
            values.drop((*path, key), f"an init container's {key}")
    return container


def strings(values: Values, path: Path) -> list[str]:
    """A command or argument list as the container gets it: an empty item stays an empty word."""
    return [values.text((*path, i)) or "" for i in range(len(values.sequence(path)))]


def volume_mounts(values: Values, path: Path) -> list[dict[str, Any]]:
    """Kubernetes volumeMounts in the spec's form (volume, path, sub_path, read_only)."""
    mounts = []
    for index, _ in enumerate(values.sequence(path)):
        here = (*path, index)
        volume, target = values.text((*here, "name")), values.text((*here, "mountPath"))
        if volume is None or target is None:
            values.error(here, "a volume mount needs a name and a mountPath")
            continue
        mounts.append({"volume": volume, "path": target, "sub_path": values.text((*here, "subPath")),
                       "read_only": values.get((*here, "readOnly"), bool)})
        for key in values.keys(here):
            if key not in ("name", "mountPath", "subPath", "readOnly"):
                values.drop((*here, key), f"a volume mount's {key}")
    return mounts


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
        document.add(tomlkit.comment(_comment_text(line)))
    document.add("version", data["version"])
    document.add(tomlkit.nl())
    document.add("stack", _table(data["stack"], ()))
    models = tomlkit.table(is_super_table=True)
    for key, model in data["models"].items():
        table = _table(model, ("models", key))
        comment = draft.comments.get(("models", key))
        if comment:
            table.comment(_comment_text(comment))
        models.add(key, table)
    document.add("models", models)
    if "targets" in data:
        targets = tomlkit.table(is_super_table=True)
        for key, options in data["targets"].items():
            targets.add(key, _table(options, ("targets", key)))
        document.add("targets", targets)
    return tomlkit.dumps(document)


#: what a TOML comment may not hold: control characters but tab
_NOT_IN_COMMENTS = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def _comment_text(text: str) -> str:
    """``text`` (a values file's name for a model, a file's path) as a comment may hold it: a line break or
    another control character in it written as its escape."""
    return _NOT_IN_COMMENTS.sub(lambda match: f"\\x{ord(match.group()):02x}", text)


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
