"""Helm values files read with positions, merged as Helm merges them, and read through a ledger.

PyYAML's composer keeps each node's line and column, so every key path maps to
``values.yaml:LINE:COL``. :class:`Values` records which paths a chart module consumed or
dropped; whatever is left at the end is reported too, so an importer cannot lose a value
silently.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator, Sequence
from typing import Any

import attrs
import yaml

from stackc.diagnostics import Diagnostic, Location, Severity, format_path

Path = tuple[str | int, ...]
MISSING = object()
_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false", dict: "a mapping",
               list: "a list"}


class ValuesError(Exception):
    """Values that cannot be imported at all (unreadable, not YAML, wrong shape); carries diagnostics."""

    def __init__(self, diagnostics: list[Diagnostic]):
        self.diagnostics = diagnostics
        super().__init__("\n".join(d.render() for d in diagnostics))


def load_documents(name: str, text: str) -> tuple[list[Any], dict[Path, Location]]:
    """Every YAML document in ``text`` as plain data, and where each key path of each document starts.

    Paths are prefixed by the document's index, so multi-document files (KServe) keep them apart.
    """
    documents: list[Any] = []
    locations: dict[Path, Location] = {}
    try:
        loader = yaml.SafeLoader(text)  # the reader checks the characters here already
    except yaml.YAMLError as error:
        raise ValuesError([Diagnostic("E090", f"invalid YAML: {error}", location=Location(name))]) from None
    try:
        _check_shape(name, text)
        budget = [MAX_NODES]
        while loader.check_node():
            node = loader.get_node()
            index = len(documents)
            documents.append(_plain(loader, node, (index,), name, locations, budget))
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = Location(name, mark.line + 1, mark.column + 1) if mark else Location(name)
        raise ValuesError([Diagnostic("E090", f"invalid YAML: {error.problem or error.context}", location=where)])
    except yaml.YAMLError as error:  # a reader error (a control character, bad encoding)
        raise ValuesError([Diagnostic("E090", f"invalid YAML: {error}", location=Location(name))])
    finally:
        loader.dispose()
    return documents, locations


#: deeper than any chart's values; PyYAML's composer and our reader recurse once per level
MAX_DEPTH = 100
#: values after alias expansion: a few aliases can otherwise stand for billions of nodes
MAX_NODES = 1_000_000


def _check_shape(name: str, text: str) -> None:
    """Refuse, before composing, nesting deeper than MAX_DEPTH and an alias inside its own anchor:
    both would recurse without end (PyYAML's parser is iterative, so it can look first)."""
    depth = 0
    open_anchors: list[str | None] = []
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        mark = event.start_mark
        where = Location(name, mark.line + 1, mark.column + 1)
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            open_anchors.append(event.anchor)
            if depth > MAX_DEPTH:
                raise ValuesError([Diagnostic("E090", f"invalid YAML: nested more than {MAX_DEPTH} levels deep",
                                              location=where)])
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1
            open_anchors.pop()
        elif isinstance(event, yaml.AliasEvent) and event.anchor in open_anchors:
            raise ValuesError([Diagnostic("E090", f"invalid YAML: the alias *{event.anchor} refers to a value "
                                          "that contains it", hint="an anchor cannot include itself",
                                          location=where)])


def _plain(loader: yaml.SafeLoader, node: yaml.Node, path: Path, name: str,
           locations: dict[Path, Location], budget: list[int]) -> Any:
    budget[0] -= 1
    mark = node.start_mark
    if budget[0] < 0:
        raise ValuesError([Diagnostic("E090", f"invalid YAML: more than {MAX_NODES} values once aliases are "
                                      "expanded", location=Location(name, mark.line + 1, mark.column + 1))])
    if len(path) > MAX_DEPTH + 1:  # aliases inside aliases nest deeper than the text does
        raise ValuesError([Diagnostic("E090", f"invalid YAML: nested more than {MAX_DEPTH} levels deep once "
                                      "aliases are expanded", location=Location(name, mark.line + 1, mark.column + 1))])
    locations.setdefault(path, Location(name, node.start_mark.line + 1, node.start_mark.column + 1))
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)  # YAML merge keys (<<: *anchor)
        mapping: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                mark = key_node.start_mark
                raise ValuesError([Diagnostic("E090", "a mapping key must be a plain value, not a list or mapping",
                                              _strip(path), location=Location(name, mark.line + 1, mark.column + 1))])
            key = key_node.value  # as written: Helm keys are strings, `on:` is not a boolean here
            child = (*path, key)
            locations[child] = Location(name, key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            mapping[key] = _plain(loader, value_node, child, name, locations, budget)
        return mapping
    if isinstance(node, yaml.SequenceNode):
        return [_plain(loader, item, (*path, i), name, locations, budget) for i, item in enumerate(node.value)]
    return loader.construct_object(node, deep=True)


def _strip(path: Path) -> Path:
    return path[1:]


def merge(base: Any, override: Any) -> Any:
    """Helm's rule for several ``-f`` files: mappings merge key by key, anything else is replaced,
    and a ``null`` removes the key."""
    if not (isinstance(base, dict) and isinstance(override, dict)):
        return override
    merged = dict(base)
    for key, value in override.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = merge(merged.get(key), value) if key in merged else value
    return merged


def read_values(paths: Sequence[str]) -> tuple[Any, dict[Path, Location]]:
    """The merged values of ``paths`` (later files win) and the position of every key path."""
    merged: Any = {}
    locations: dict[Path, Location] = {}
    problems = []
    for path in paths:
        try:
            text = _read(path)
        except OSError as error:
            problems.append(Diagnostic("E090", f"cannot read the values file: {error.strerror or error}",
                                       location=Location(path, 1, 1)))
            continue
        except UnicodeDecodeError as error:
            problems.append(Diagnostic("E090", f"the values file is not UTF-8 text (byte {error.start})",
                                       location=Location(path, 1, 1)))
            continue
        documents, found = load_documents(path, text)
        documents = [d for d in documents if d is not None]
        if len(documents) > 1:
            raise ValuesError([Diagnostic("E090", "a values file holds one YAML document, this one holds "
                                          f"{len(documents)}", location=Location(path))])
        if documents and not isinstance(documents[0], dict):
            raise ValuesError([Diagnostic("E090", "a values file must be a mapping of keys to values",
                                          location=found.get((0,), Location(path)))])
        merged = merge(merged, documents[0] if documents else {})
        # the file that set a value is where it is: a key the override replaced (a list, a scalar,
        # a null) no longer points into the base file
        located = {_strip(p): loc for p, loc in found.items()}
        locations = {p: loc for p, loc in {**locations, **located}.items() if _holds(merged, p)}
    if problems:
        raise ValuesError(problems)
    return merged, locations


def _holds(data: Any, path: Path) -> bool:
    for part in path:
        if isinstance(data, dict) and isinstance(part, str) and part in data:
            data = data[part]
        elif isinstance(data, list) and isinstance(part, int) and part < len(data):
            data = data[part]
        else:
            return False
    return True


def _read(path: str) -> str:
    with open(path, encoding="utf-8", errors="strict") as handle:
        return handle.read()


class Values:
    """Merged values read by path; remembers what was consumed, dropped or found wrong.

    ``get`` consumes a leaf, ``raw`` a whole subtree passed on as is, ``drop`` a subtree stackc
    cannot express (reported with a reason); ``report`` adds every value nobody asked about.
    """

    def __init__(self, data: Any, locations: dict[Path, Location], default_file: str = "values.yaml"):
        self.data = data
        self.locations = locations
        self.default_file = default_file
        self.consumed: set[Path] = set()  # values read one by one
        self.taken: set[Path] = set()  # subtrees taken (or dropped) whole
        self.dropped: list[Diagnostic] = []
        self.errors: list[Diagnostic] = []
        #: feature -> the key its report is located at, and the other keys it stands for
        self.features: dict[str, tuple[Path, list[Path]]] = {}

    def find(self, path: Path) -> Any:
        node = self.data
        for part in path:
            if isinstance(part, int) and isinstance(node, list) and 0 <= part < len(node):
                node = node[part]
            elif isinstance(part, str) and isinstance(node, dict) and part in node:
                node = node[part]
            else:
                return MISSING
        return node

    def has(self, path: Path) -> bool:
        return self.find(path) not in (MISSING, None)

    def location(self, path: Path) -> Location:
        for end in range(len(path), -1, -1):
            if path[:end] in self.locations:
                return self.locations[path[:end]]
        return Location(self.default_file)

    def get(self, path: Path, kind: type | tuple[type, ...], default: Any = None) -> Any:
        """The value at ``path`` when it has the expected type (bool is never an int here)."""
        value = self.find(path)
        self.consumed.add(path)
        if value is MISSING or value is None:
            return default
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
            if float in kinds and isinstance(value, int) and not isinstance(value, bool):
                return float(value)
            wanted = " or ".join(_TYPE_NAMES.get(k, k.__name__) for k in kinds)
            self.error(path, f"expected {wanted}, got {_describe(value)}")
            return default
        return value

    def text(self, path: Path, default: str | None = None) -> str | None:
        """A string the chart would print as text: numbers and booleans are written as YAML reads them."""
        value = self.get(path, (str, int, float, bool))
        if value is None:
            return default
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(value)

    def texts(self, path: Path) -> list[str]:
        """A list of strings; an empty (null) item is an error, not a hole in the spec."""
        found = []
        for index in range(len(self.sequence(path))):
            item = self.text((*path, index))
            if item is None:
                self.error((*path, index), "an empty item in a list of strings")
            else:
                found.append(item)
        return found

    def integer(self, path: Path, default: int | None = None) -> int | None:
        """A whole number, also when written as a string (charts quote them freely)."""
        value = self.get(path, (int, str))
        if isinstance(value, str):
            if not value.strip().isdigit():
                self.error(path, f"expected a whole number, got {value!r}")
                return default
            return int(value)
        return default if value is None else value

    def number(self, path: Path) -> float | None:
        value = self.get(path, (int, float, str))
        if value is None:
            return None
        try:
            return float(value)
        except ValueError:
            self.error(path, f"expected a number, got {value!r}")
            return None

    def raw(self, path: Path, kind: type = object, default: Any = None) -> Any:
        """A subtree taken whole (Kubernetes objects passed on as is); nulls are left out, as TOML has none."""
        value = self.get(path, kind)
        self._consume_tree(path)
        if value is None:
            return default
        odd = next(((p, v) for p, v in _leaves(value, path) if not isinstance(v, _TOML_SCALARS)), None)
        if odd is not None:
            self.error(odd[0], f"{_describe(odd[1])} cannot be written in a spec")
            return default
        return _without_nulls(value)

    def mapping(self, path: Path) -> dict[str, Any]:
        return self.get(path, dict) or {}

    def sequence(self, path: Path) -> list[Any]:
        return self.get(path, list) or []

    def keys(self, path: Path) -> list[str]:
        value = self.find(path)
        return list(value) if isinstance(value, dict) else []

    def drop(self, path: Path, reason: str, hint: str | None = None) -> None:
        """Report a value stackc has no counterpart for (nothing when it is absent or empty)."""
        value = self.find(path)
        self._consume_tree(path)
        if value in (MISSING, None) or value == {} or value == [] or value == "":
            return
        self.dropped.append(Diagnostic("W090", f"not imported: {reason}", path, hint, Severity.WARNING,
                                       self.location(path)))

    def drop_feature(self, feature: str, paths: Sequence[Path], hint: str | None = None) -> None:
        """One report for one feature spread over several keys: located at the first key set, naming the
        others it stands for; reporting each key would bury the feature in repeats."""
        present = [path for path in paths if self.has(path)]
        for path in paths:
            self._consume_tree(path)
        if not present:
            return
        first, others = self.features.setdefault(feature, (present[0], []))
        others.extend(path for path in present if path != first)
        also = f" (also {', '.join(format_path(path) for path in others)})" if others else ""
        report = Diagnostic("W090", f"not imported: {feature}{also}", first, hint, Severity.WARNING,
                            self.location(first))
        index = next((i for i, d in enumerate(self.dropped) if d.path == first and d.code == "W090"), None)
        if index is None:
            self.dropped.append(report)
        else:
            self.dropped[index] = attrs.evolve(report, hint=self.dropped[index].hint or hint)

    def feature(self, path: Path, reason: str, hint: str | None = None, switch: str = "enabled") -> bool:
        """A switchable block: consumed quietly when off, reported when on. True when it is on."""
        if not self.has(path):
            self._consume_tree(path)
            return False
        enabled = self.get((*path, switch), bool, False)
        if not enabled:
            self._consume_tree(path)
            return False
        self.drop(path, reason, hint)
        return True

    def drop_unless(self, path: Path, harmless: Any, reason: str, hint: str | None = None) -> None:
        """Quiet when the value is the chart's default (or absent); reported otherwise."""
        value = self.find(path)
        if value in (MISSING, None) or value == harmless:
            self._consume_tree(path)
        else:
            self.drop(path, reason, hint)

    def error(self, path: Path, message: str, hint: str | None = None) -> None:
        self.errors.append(Diagnostic("E091", message, path, hint, location=self.location(path)))

    def require(self, path: Path, kind: type | tuple[type, ...], what: str) -> Any:
        value = self.get(path, kind)
        if value is None and self.find(path) in (MISSING, None):
            self.error(path, f"missing: {what}")
        return value

    def _consume_tree(self, path: Path) -> None:
        self.taken.add(path)

    def leftovers(self) -> Iterator[Path]:
        """Leaf paths with a value that no chart module consumed."""
        for leaf, _ in _leaves(self.data, ()):
            if leaf not in self.consumed and not any(leaf[:end] in self.taken for end in range(len(leaf) + 1)):
                yield leaf

    def report(self) -> list[Diagnostic]:
        """Everything not imported: dropped values with their reasons, then those nobody read."""
        unread = [Diagnostic("W090", "not imported: the importer does not know this key", leaf,
                             severity=Severity.WARNING, location=self.location(leaf))
                  for leaf in self.leftovers()]
        return self.dropped + unread


def _leaves(value: Any, path: Path) -> Iterator[tuple[Path, Any]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _leaves(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _leaves(item, (*path, index))
    elif value is not None and value != "":
        yield path, value


_TOML_SCALARS = (str, int, float, bool, datetime.date, datetime.time)


def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value if v is not None]
    return value


def _describe(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return f"a number ({value})"
    if isinstance(value, str):
        return f"a string ({value!r})"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return f"a {type(value).__name__} value"
