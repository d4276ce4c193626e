"""Random and mutated stack specs, for the property tests, the fuzz benchmark and plugin authors.

Specs are drawn from the IR (``stackc.spec.model``) and the installed plugins' option classes, so a
new field is fuzzed without anyone remembering to add it here. With ``valid=True`` only values
meant to pass are drawn (the strict-validation property); otherwise wrong types, out-of-range
numbers, malformed names and raw junk (TOML dates and times too) are mixed in. With ``extremes=True``
numbers are drawn at the bounds each field declares and text at the sizes the API server limits (a chat
template or annotations around 1 MiB and 256 KiB): the API server limits' property.
"""

from __future__ import annotations

import collections.abc
import copy
import datetime
import random
import re
import typing
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import NoneType, UnionType
from typing import Any, Literal

import attrs
import tomlkit

from stackc.plan.engine import Capability
from stackc.records import frozen
from stackc.registry import Registry
from stackc.spec.model import Model, Quantity, Spec, Stack

INT32_MAX = 2**31 - 1

_NAMES = ("a", "llama", "m1", "x-y", "gpu-pool", "n" * 20, "q" * 44, "z" * 63)
_BAD_NAMES = ("", "Bad_Name", "-x", "x-", "1abc", "a.b", "z" * 64, "é", "a b", "..")
_LABEL_KEYS = ("team", "app.kubernetes.io/version", "example.com/tier", "a_b.c-d", "k" * 63, "x.io/" + "k" * 63)
_BAD_LABEL_KEYS = ("", "-x", "a/b/c", "k" * 64, "/x", "x/", "UP.io/x", "x.io/" + "k" * 64, "a b", "é")
_LABEL_VALUES = ("", "v", "true", "ml-platform", "v1.2_3", "v" * 63)
_BAD_LABEL_VALUES = ("-v", "v-", "a b", "v" * 64, "x/y", "é")
_QUANTITIES = ("1", "2", "500m", "1Gi", "16Gi", "0.5", "100Mi", "1e3", "2k")
_BAD_QUANTITIES = ("", "1GB", "-1", "one", "1.2.3", "Gi", " 1")
_SOURCES = ("org/model", "hf://org/model", "hf://org/repo/model.gguf", "s3://bucket/key", "gs://bucket/key",
            "pvc://claim/path/model.gguf", "oci://registry.example.com/models/m:1", "ollama://llama3.2:3b",
            "/models/m.gguf")
_BAD_SOURCES = ("", "model", "ftp://x", "pvc://", "hf://x", "ollama://", "s3://", "://")
_IMAGES = ("registry.example.com/server:1.0", "server:latest", "img@sha256:" + "0" * 64)
_PATHS = ("/health", "/v1/models", "/metrics", "/")
_STRINGS = ("x", "value", "{model}", "{port}", "--flag", "a=b")
_JUNK_STRINGS = ("", " ", "{model.x}", "{model.upper}", "{0}", "{", "}", "{port!r:>{x}}", "$(X)", "\x00", "é✓",
                 "\n", "a" * 300, "..", "../x", "/", "null", "{{}}")
#: text fields whose size the API server limits (ConfigMap data, annotations), drawn large with ``extremes``
_LARGE_TEXT = ("chat_template", "annotations")
_INTS = (0, 1, 2, 3, 4, 8, 60, 256, 4096)
_BAD_INTS = (-1, -(2**31), INT32_MAX, INT32_MAX + 1, 2**63 - 1, -(2**63))
_FLOATS = (0.5, 0.9, 1.0)
_BAD_FLOATS = (0.0, -0.5, 1.5, float("inf"), float("nan"), 1e300)
_TIMES = (datetime.time(12, 30), datetime.date(2024, 1, 1), datetime.datetime(2024, 1, 1, 12, 0),
          datetime.datetime(2024, 1, 1, 12, 0, tzinfo=datetime.timezone.utc))

# what a built-in engine insists on, so that most random models of it compile
_ENGINE_NEEDS: dict[str, dict[str, Any]] = {
    "command": {"image": _IMAGES[0]},
    "llamacpp": {"model": "hf://org/repo/model.gguf"},
    "neuron": {"accelerators": {"resource": "aws.amazon.com/neuroncore", "count": 2}},
    "ollama": {"model": "ollama://llama3.2:3b"},
}

# raw Kubernetes tables the spec passes through, by field name: valid examples
_RAW_EXAMPLES: dict[str, tuple[Any, ...]] = {
    "affinity": ({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}]}}},),
    "topology_spread": ({"maxSkew": 1, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "ScheduleAnyway"},),
    "pod_security_context": ({"runAsNonRoot": True, "runAsUser": 1000}, {"fsGroup": 2000}, {"runAsNonRoot": False}),
    "container_security_context": ({"readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False},
                                   {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
                                   {"privileged": True}),
    "extra_objects": ({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "extra"}, "data": {"k": "v"}},),
    "allow_from": ({"podSelector": {"matchLabels": {"app": "gateway"}}},),
}


def engine_needs(registry: Registry, engine: str) -> dict[str, Any]:
    """What a model of ``engine`` must set to compile at all: its kind of source, image, required options, and
    an accelerator unless it runs on CPUs."""
    needs = copy.deepcopy(_ENGINE_NEEDS.get(engine, {}))
    if engine == "command":
        needs["engine_options"] = {"port": 8000}  # the only option without a default (drawn in random specs)
    if Capability.CPU_ONLY not in registry.engines[engine].traits.capabilities:
        needs["accelerators"] = {"count": 1, **needs.get("accelerators", {})}
    return needs


def spec_files(root: Path) -> list[Path]:
    """Every spec under ``root`` (the examples, the invalid ones included)."""
    return sorted(root.rglob("*.toml"))


class SpecGenerator:
    """Draws whole specs as plain data (``spec()``) or TOML text (``text()``).

    ``valid=True`` keeps to the right types and keys, but still draws values on both sides of
    every bound: ``valid_spec()`` then drops what ``stackc check`` rejects.
    """

    def __init__(self, registry: Registry, rng: random.Random, *, valid: bool = False, extremes: bool = False):
        self.registry = registry
        self.rng = rng
        self.valid = valid
        self.extremes = extremes
        # how often a drawn value is a bad one: from none (valid specs) to most
        self.badness = 0.1 if valid else rng.choice((0.0, 0.01, 0.03, 0.1, 0.3))
        self._volume_names: list[str] = []

    # -- whole specs -----------------------------------------------------------------------
    def spec(self) -> dict[str, Any]:
        rng = self.rng
        stack = self.object(Stack, "stack")
        targets = sorted(self.registry.targets)
        if self.valid:  # not always all: a model one target refuses would never reach the others
            stack["targets"] = [name for name in targets if rng.random() < 0.6] or [rng.choice(targets)]
        else:
            stack["targets"] = self.subset(targets) + self.maybe_junk_items()
        data: dict[str, Any] = {"version": self.junk() if self._malformed(0.1) else 1, "stack": stack}
        data["models"] = {self.model_key(): self.model() for _ in range(rng.randint(1, 3 if self.valid else 4))}
        if self._bad(2):
            data["defaults"] = {k: v for k, v in self.model().items() if rng.random() < 0.4}
        options = {}
        for name in self.subset(targets):
            options_type = self.registry.targets[name].traits.options_type
            options[name] = self.object(options_type, name) if options_type else {}
        if options:
            data["targets"] = options
        if self._malformed(0.3):
            data[self.rng.choice(("extra", "model", "Stack"))] = self.junk()
        return data

    def text(self) -> str:
        return tomlkit.dumps(self.spec())

    def model_key(self) -> str:
        if self._bad():
            return self.rng.choice(_NAMES + _BAD_NAMES)
        return self.rng.choice(_NAMES[:-3]) + str(self.rng.randint(0, 99))

    def model(self) -> dict[str, Any]:
        engines = sorted(self.registry.engines)
        engine = self.rng.choice(("", "vlm", 3)) if self._malformed(0.2) else self.rng.choice(engines)
        self._volume_names = []
        model = self.object(Model, "model", chance=0.2 if self.valid else 0.3)
        model["engine"] = engine
        registered = self.registry.engines.get(engine) if isinstance(engine, str) else None
        if registered is None:
            return model
        options_type = registered.traits.options_type
        if options_type is not None and (self.rng.random() < 0.6 or _has_required_fields(options_type)):
            model["engine_options"] = self.object(options_type, "engine_options")
        elif options_type is None:
            model.pop("engine_options", None)
        if self._malformed():
            return model
        for key, value in copy.deepcopy(_ENGINE_NEEDS.get(engine, {})).items():
            model[key] = {**model[key], **value} if isinstance(model.get(key), dict) and isinstance(value, dict) else value
        if Capability.CPU_ONLY not in registered.traits.capabilities:
            accelerators = model.setdefault("accelerators", {})
            if isinstance(accelerators, dict):
                accelerators.setdefault("count", 1)
        return model

    def valid_spec(self, attempts: int = 8, draws: int = 3) -> str | None:
        """A spec that passes ``stackc check``: drawn, then cleared of what check rejects (None if it won't).

        An error that removing its value does not clear (a default a target refuses, a value another one
        contradicts) removes one level more each time it comes back, down to the model or stack table;
        a spec that deploys no model gets one enabled again; one that can't be cleared is drawn again.
        """
        for _ in range(draws):
            text = self._cleared(self.spec(), attempts)
            if text is not None:
                return text
        return None

    def _cleared(self, data: dict[str, Any], attempts: int) -> str | None:
        from stackc import pipeline
        from stackc.diagnostics import DiagnosticsError, Severity

        seen: dict[tuple[str, tuple[str | int, ...]], int] = {}
        for _ in range(attempts):
            text = tomlkit.dumps(data)
            try:
                pipeline.compile_stack(["spec.toml"], self.registry, texts=[("spec.toml", text)])
                if _deploys_a_model(data):
                    return text
                self._enable_a_model(data)
                continue
            except DiagnosticsError as error:
                for diagnostic in error.diagnostics:
                    targets = data["stack"].get("targets")
                    if diagnostic.path == ("stack", "targets") and isinstance(targets, list) and len(targets) > 1:
                        targets.remove(self.rng.choice(targets))  # two targets that exclude each other
                    elif diagnostic.severity is Severity.ERROR:
                        times = seen[diagnostic.code, diagnostic.path] = seen.get((diagnostic.code, diagnostic.path), -1) + 1
                        path = diagnostic.path[:max(2, len(diagnostic.path) - times)]
                        pipeline.prune(data, attrs.evolve(diagnostic, path=path))
        return None

    def _enable_a_model(self, data: dict[str, Any]) -> None:
        """A spec that deploys nothing tests no object: one of its models is enabled again (or drawn anew)."""
        models = data.get("models")
        if isinstance(models, dict) and models:
            key = self.rng.choice(sorted(models))
            if isinstance(models[key], dict):
                models[key].pop("enabled", None)
                return
        data["models"] = {"m": self.model()}

    # -- values by type --------------------------------------------------------------------
    def object(self, cls: type, name: str, chance: float = 0.5) -> dict[str, Any]:
        hints = typing.get_type_hints(cls)
        result: dict[str, Any] = {}
        for field in attrs.fields(cls):
            required = field.default is attrs.NOTHING
            if required and not self._malformed(0.2) or self.rng.random() < chance:
                result[field.name] = self.value(hints[field.name], field.name, field.metadata)
        if self._malformed(0.2):
            result[self.rng.choice(("extra", "Name", "replica"))] = self.junk()
        return result

    def value(self, tp: Any, name: str, bounds: Mapping[str, Any] | None = None) -> Any:
        """A value of type ``tp`` for the field ``name``; ``bounds``: the field's metadata (minimum, maximum)."""
        if self._malformed(0.3):
            return self.junk()
        origin, args = typing.get_origin(tp), typing.get_args(tp)
        if attrs.has(tp):
            return self.object(tp, name)
        if origin is Literal:
            return self.rng.choice(args) if not self._malformed() else self.string(name)
        if origin in (typing.Union, UnionType):
            return self.value(self.rng.choice([a for a in args if a is not NoneType]), name, bounds)
        if origin in (tuple, list):
            return [self.value(args[0], name, bounds) for _ in range(self.rng.randint(0, 3))]
        if origin in (dict, collections.abc.Mapping, typing.Mapping):
            return self.mapping(args, name)
        if tp is Any:
            return self.raw(name)
        if tp is int and self.extremes and bounds and "maximum" in bounds and self.rng.random() < 0.5:
            return self.rng.choice((bounds["maximum"], bounds["maximum"] - 1, bounds.get("minimum", 0)))
        if tp is str and self.extremes and name in _LARGE_TEXT and self.rng.random() < 0.5:
            return self.large_text()
        return {str: self.string, int: self.integer, float: self.number, bool: self.boolean,
                Quantity: self.quantity}[tp](name)

    def large_text(self) -> str:
        """Text around the API server's size limits: 256 KiB (annotations), 1 MiB (ConfigMap data)."""
        return "x" * (self.rng.choice((256, 1024)) * 1024 + self.rng.choice((-4096, -1, 1)))

    def quantity(self, name: str) -> str | int | float:
        """Kubernetes quantities are written as strings or as numbers."""
        return self._pick((*_QUANTITIES, 2, 10, 0.5), (*_BAD_QUANTITIES, -1, -0.5, float("inf")))

    def string(self, name: str) -> str:
        pick = self._pick
        if name in ("model", "source"):
            return pick(_SOURCES, _BAD_SOURCES)
        if name in ("image", "epp_image"):
            return pick(_IMAGES, _JUNK_STRINGS)
        if name in ("size", "shm_size"):
            return pick(_QUANTITIES, _BAD_QUANTITIES)
        if name.endswith("path"):
            return pick(_PATHS, _JUNK_STRINGS)
        if name in ("interval", "request_timeout"):
            return pick(("15s", "1m", "600s"), ("", "soon", "-1s"))
        if name in ("version", "app_version"):
            return pick(("0.1.0", "1.2.3-rc.1"), ("x", "1", ""))
        if name in ("key", "value", "hostname", "host", "session_header", "quantization", "load_format", "revision",
                    "kv_cache_dtype", "served_name", "aliases", "args", "engine_args", "command", "description"):
            return pick(("x", "abc", "main", "example.com", "fp8"), _JUNK_STRINGS)
        return pick(_NAMES[:-2], _BAD_NAMES + _JUNK_STRINGS)

    def integer(self, name: str) -> int:
        if name == "port":
            return self._pick((80, 8000, 9000), (0, -1, 65536, INT32_MAX + 1))
        return self._pick(_INTS, _BAD_INTS)

    def number(self, name: str) -> float:
        return self._pick(_FLOATS, _BAD_FLOATS)

    def boolean(self, name: str) -> bool:
        return self.rng.random() < 0.5

    def mapping(self, args: tuple[Any, ...], name: str) -> dict[str, Any]:
        value_type = args[1] if args else Any
        if value_type is Any:
            return self.raw(name)
        if name in ("requests", "limits") or (name == "resources" and value_type is str):
            return {k: self.string("size") for k in self.subset(["cpu", "memory", "ephemeral-storage"])}
        if name == "resources":
            return {k: self.value(value_type, k) for k in self.subset(["requests", "limits"])}
        if name in ("env", "secret_env"):
            keys = [self._pick(("HF_HUB_OFFLINE", "LOG_LEVEL", "A_B", "x.y"), ("1X", "A B", "", "=", "é"))
                    for _ in range(self.rng.randint(0, 3))]
        elif name == "priorities":
            keys = [self.model_key() for _ in range(self.rng.randint(0, 2))]
        elif name == "metric_names":
            keys = self.subset(["running", "waiting", "kv_cache_usage", "time_to_first_token", "queue_length"])
        else:  # labels, annotations, selectors
            keys = [self._pick(_LABEL_KEYS, _BAD_LABEL_KEYS) for _ in range(self.rng.randint(0, 3))]
        if value_type is str and name in _LARGE_TEXT and self.extremes:
            return {k: self.large_text() if self.rng.random() < 0.5 else "v" for k in keys}
        if value_type is str and name not in ("env", "metric_names"):
            return {k: self._pick(_LABEL_VALUES, _BAD_LABEL_VALUES) for k in keys}
        return {k: self.value(value_type, name) for k in keys}

    def raw(self, name: str) -> Any:
        """A raw Kubernetes table (passed through as is) or plugin options typed later."""
        if name == "extra_volumes":
            volume = self.rng.choice(("scratch", "data", "model-cache")) + str(len(self._volume_names))
            self._volume_names.append(volume)
            source = self.rng.choice(({"emptyDir": {}}, {"emptyDir": {}}, {"hostPath": {"path": "/data"}}))
            return self._pick_raw({"name": volume, **source}, {"emptyDir": {}})
        if name == "extra_volume_mounts":
            volume = self.rng.choice(self._volume_names or ["undeclared"])
            return self._pick_raw({"name": volume, "mountPath": f"/mnt/{volume}"}, {"mountPath": "/x"})
        examples = _RAW_EXAMPLES.get(name)
        if examples and not self._malformed(2):
            return copy.deepcopy(self.rng.choice(examples))  # valid_spec prunes what it draws, in place
        if not self._malformed(2):
            return {}
        return {self.rng.choice(("key", "name", "x", "nodeAffinity")): self.junk() for _ in range(self.rng.randint(0, 3))}

    def _pick_raw(self, good: Any, bad: Any) -> Any:
        if not self._bad():
            return good
        return self.rng.choice((bad, self.junk(), {**good, "when": self.rng.choice(_TIMES)}))

    # -- helpers ---------------------------------------------------------------------------
    def _bad(self, scale: float = 1.0) -> bool:
        """Draw a bad value of the right type (valid specs too: check must reject it)."""
        return self.rng.random() < self.badness * scale

    def _malformed(self, scale: float = 1.0) -> bool:
        """Draw a wrong type, a missing or unknown key, junk (never in valid specs)."""
        return not self.valid and self._bad(scale)

    def _pick(self, good: tuple[Any, ...], bad: tuple[Any, ...]) -> Any:
        return self.rng.choice(bad if self._bad() else good)

    def subset(self, items: list[str]) -> list[str]:
        return [item for item in items if self.rng.random() < 0.4]

    def maybe_junk_items(self) -> list[Any]:
        return [self.junk()] if self._malformed(0.3) else []

    def junk(self, depth: int = 0) -> Any:
        """Any TOML value at all."""
        kind = self.rng.randrange(8 if depth < 2 else 6)
        if kind == 0:
            return self.rng.choice(_JUNK_STRINGS + _BAD_NAMES)
        if kind == 1:
            return self.rng.choice(_INTS + _BAD_INTS)
        if kind == 2:
            return self.rng.choice(_FLOATS + _BAD_FLOATS)
        if kind == 3:
            return self.rng.random() < 0.5
        if kind in (4, 5):
            return self.rng.choice(_TIMES)
        if kind == 6:
            return [self.junk(depth + 1) for _ in range(self.rng.randint(0, 3))]
        return {self.rng.choice(("name", "x", "key", "a b")): self.junk(depth + 1) for _ in range(self.rng.randint(0, 3))}


def _has_required_fields(cls: type) -> bool:
    return any(field.default is attrs.NOTHING for field in attrs.fields(cls))


def mutate(text: str, rng: random.Random, generator: SpecGenerator) -> str:
    """A few edits to a spec: values replaced by random ones, lines dropped, doubled or garbled."""
    try:
        data = tomlkit.parse(text).unwrap()
    except Exception:
        data = None
    if data is not None and rng.random() < 0.6:
        for _ in range(rng.randint(1, 4)):
            _mutate_data(data, rng, generator)
        return tomlkit.dumps(data)
    lines = text.splitlines() or [""]
    for _ in range(rng.randint(1, 4)):
        index = rng.randrange(len(lines))
        line = lines[index]
        action = rng.randrange(4)
        if action == 0:
            del lines[index]
        elif action == 1:
            lines.insert(index, line)
        elif action == 2 and "=" in line:
            lines[index] = line.split("=", 1)[0] + "= " + tomlkit.item(generator.junk()).as_string()
        else:
            position = rng.randint(0, len(line))
            lines[index] = line[:position] + rng.choice('"[]={}x\\#,.') + line[position:]
        lines = lines or [""]
    return "\n".join(lines) + "\n"


def _mutate_data(data: dict[str, Any], rng: random.Random, generator: SpecGenerator) -> None:
    paths = list(_paths(data, ()))
    if not paths:
        return
    path = rng.choice(paths)
    parent: Any = data
    for part in path[:-1]:
        parent = parent[part]
    action = rng.randrange(4)
    if action == 0 and isinstance(parent, dict):
        del parent[path[-1]]
    elif action == 1 and isinstance(parent, dict):
        parent[rng.choice(("extra", "name", "replicas", "engine_options", "scheduling", str(path[-1]) + "s"))] = \
            generator.junk()
    elif action == 2:
        parent[path[-1]] = generator.value(_field_type(path) or Any, str(path[-1]))
    else:
        parent[path[-1]] = generator.junk()


def _paths(node: Any, prefix: tuple[Any, ...]) -> Iterator[tuple[Any, ...]]:
    items: Any = node.items() if isinstance(node, Mapping) else enumerate(node) if isinstance(node, list) else ()
    for key, value in items:
        yield prefix + (key,)
        yield from _paths(value, prefix + (key,))


def _field_type(path: tuple[Any, ...]) -> Any:
    """The IR type at a spec path (None below raw tables and plugin options)."""
    tp: Any = Spec
    for part in path:
        if part == "defaults" and tp is Spec:
            tp = Model
            continue
        if attrs.has(tp):
            fields = attrs.fields_dict(tp)
            if part not in fields:
                return None
            tp = typing.get_type_hints(tp)[part]
        else:
            args = typing.get_args(tp)
            if not args or typing.get_origin(tp) is Literal:  # a literal has no parts to descend into
                return None
            tp = args[0] if typing.get_origin(tp) in (tuple, list) else args[-1]
        while typing.get_origin(tp) in (typing.Union, UnionType):
            tp = next(a for a in typing.get_args(tp) if a is not NoneType)
    return tp


def with_plain_objects(text: str, registry: Any) -> str:
    """``text`` with the manifests target added where its objects would not otherwise be plain files: the
    chart's templates render the manifests' objects (tests/stackc_plugins/targets/test_helm.py), and a stack
    that deploys no model (W155) routes to what another output deploys."""
    data = tomlkit.parse(text)
    targets = data["stack"].setdefault("targets", ["manifests"])
    if "manifests" in targets or ("helm" not in targets and registry.targets_having("serves_models", targets)):
        return text
    targets.append("manifests")
    augmented = tomlkit.dumps(data)
    # deployed, a model may need what the spec's own targets did not ask (a scaling signal): then as it is
    return text if compile_outcome(registry, augmented).kind == "invalid" else augmented


def _deploys_a_model(data: Mapping[str, Any]) -> bool:
    """Whether a spec keeps a model enabled."""
    models = data.get("models")
    return isinstance(models, Mapping) and any(isinstance(m, Mapping) and m.get("enabled", True) is not False
                                               for m in models.values())


@frozen
class Outcome:
    """How one spec fared: ``ok``, ``invalid`` (located diagnostics) or ``internal`` (a bug)."""

    kind: Literal["ok", "invalid", "internal"]
    detail: str = ""
    files: Mapping[str, bytes] = attrs.field(factory=dict)


_ADDRESS = re.compile(rb" at 0x[0-9a-fA-F]+>")


def compile_outcome(registry: Registry, text: str, name: str = "spec.toml") -> Outcome:
    """Compile ``text``; anything but output or located diagnostics is an ``internal`` outcome."""
    from stackc import pipeline
    from stackc.diagnostics import DiagnosticsError

    try:
        compilation = pipeline.compile_stack([name], registry, texts=[(name, text)])
    except DiagnosticsError as error:
        unlocated = [d.render() for d in error.diagnostics if d.location is None or d.location.file != name]
        if not error.diagnostics or unlocated:
            return Outcome("internal", "unlocated diagnostics: " + "; ".join(unlocated))
        return Outcome("invalid", error.diagnostics[0].render())
    except pipeline.PluginCrash as error:
        return Outcome("internal", str(error))
    except Exception as error:  # what the CLI would report as an internal error (exit 3)
        return Outcome("internal", f"{type(error).__name__}: {error}")
    leaked = sorted(path for path, data in compilation.files.items() if _ADDRESS.search(data))
    if leaked:
        return Outcome("internal", f"a Python object's address in {leaked[0]} (output not deterministic)")
    return Outcome("ok", files=compilation.files)
