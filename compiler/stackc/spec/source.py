"""Reading spec files: tomli for the values, a small scanner of our own for positions.

TOML readers keep no line/column for values, yet every diagnostic must point at
``file:line:col``. Only valid TOML (already accepted by tomli) is scanned, so the scanner
can stay small: it just records where each key and value starts.
"""

from __future__ import annotations

import copy
import functools
import re
import tomli
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from stackc.diagnostics import Diagnostic, Location
from stackc.records import frozen

if TYPE_CHECKING:
    import tomlkit.exceptions

Path = tuple[str | int, ...]


Positions = tuple[dict[Path, Location], dict[Path, Location]]


class SourceMap:
    """Spec path -> where its key and its value were written (the last writer wins).

    Worked out on first use: scanning the files for positions costs twice what reading them does, and a
    spec that compiles without a diagnostic never asks where anything was written.
    """

    def __init__(self, positions: Callable[[], Positions]):
        self._positions = positions

    @functools.cached_property
    def _tables(self) -> Positions:
        return self._positions()

    @property
    def keys(self) -> Mapping[Path, Location]:
        return self._tables[0]

    @property
    def values(self) -> Mapping[Path, Location]:
        return self._tables[1]

    def locate(self, path: Path, *, key: bool = False) -> Location | None:
        """The nearest known location of ``path``: itself, else its closest ancestor."""
        first, second = (self.keys, self.values) if key else (self.values, self.keys)
        for end in range(len(path), -1, -1):
            prefix = tuple(path[:end])
            for table in (first, second):
                if prefix in table:
                    return table[prefix]
        return None


@frozen
class Document:
    """The merged spec as plain Python data, with its source map."""

    data: dict[str, Any]
    source_map: SourceMap


@frozen
class _Written:
    """What one file or ``--set`` did to the positions: paths whose earlier positions it replaced, then its own."""

    replaced: tuple[Path, ...]
    positions: Callable[[], Positions]


def load_files(named_texts: Iterable[tuple[str, str]], settings: Iterable[str] = ()) -> tuple[Document, list[Diagnostic]]:
    """Parse each file, overlay them in order, then apply ``--set PATH=VALUE`` settings."""
    data: dict[str, Any] = {}
    written: list[_Written] = []
    diagnostics: list[Diagnostic] = []
    stacks: dict[str, str] = {}  # stack name -> the first file naming it
    first_file = None
    for name, text in named_texts:
        parsed, problem = parse_toml(name, text)
        if problem is not None:
            diagnostics.append(problem)
            continue
        diagnostics.extend(_another_stack(name, text, parsed, stacks))
        first_file = first_file or name
        replaced: list[Path] = []
        _overlay(data, parsed, (), replaced)
        written.append(_Written(tuple(replaced), functools.partial(scan_positions, name, text)))
    for index, setting in enumerate(settings, start=1):
        diagnostics.extend(_apply_setting(data, index, setting, written))
    return Document(data, SourceMap(functools.partial(_positions, first_file, written))), diagnostics


def _positions(first_file: str | None, written: Iterable[_Written]) -> Positions:
    keys: dict[Path, Location] = {}
    values: dict[Path, Location] = {}
    if first_file is not None:
        keys[()] = Location(first_file, 1, 1)  # what no key explains is reported at the top
    for step in written:
        for path in step.replaced:
            _forget_below(path, keys, values)
        own_keys, own_values = step.positions()
        keys.update(own_keys)
        values.update(own_values)
    return keys, values


def _another_stack(name: str, text: str, parsed: Mapping[str, Any], stacks: dict[str, str]) -> list[Diagnostic]:
    """Files passed together are overlays of one stack; one naming another stack would merge two stacks."""
    stack = parsed.get("stack")
    own = stack.get("name") if isinstance(stack, Mapping) else None
    if not isinstance(own, str):
        return []
    stacks.setdefault(own, name)
    if len(stacks) == 1:
        return []
    first_name, first_file = next(iter(stacks.items()))
    return [Diagnostic(
        "E029", f"stack '{own}' here, but {first_file} is stack '{first_name}': the files passed together are "
        "overlays of one stack", ("stack", "name"), location=scan_positions(name, text)[1].get(("stack", "name")),
        hint=f"compile each stack with its own command (`stackc build {first_file}`, then `stackc build {name}`), "
             f"or in a loop: `for spec in {first_file} {name}; do stackc build \"$spec\"; done`")]


def parse_toml(name: str, text: str) -> tuple[dict[str, Any], Diagnostic | None]:
    """The document as plain data, or the located syntax error.

    tomli (the strict TOML 1.0 reader the standard library's tomllib is, compiled with mypyc) reads
    valid files thirty times faster than tomlkit; tomlkit reads the invalid ones again for its
    messages, which say more.
    """
    try:
        return tomli.loads(text), None
    except tomli.TOMLDecodeError as fast_error:
        import tomlkit
        import tomlkit.exceptions

        try:
            tomlkit.parse(text)
        except tomlkit.exceptions.ParseError as error:
            return {}, _syntax_error(name, error)
        except tomlkit.exceptions.TOMLKitError as error:  # e.g. a key defined twice: no position given
            return {}, _semantic_error(name, text, error)
        return {}, _decode_error(name, fast_error)


def _toml_hint(name: str) -> str:
    """A YAML file passed as a spec is most likely a chart's values: ``stackc import`` reads those."""
    if name.lower().endswith((".yaml", ".yml")):
        return (f"{name} looks like YAML, and specs are TOML; for a Helm chart's values (or KServe YAML) run "
                f"`stackc import --from CHART {name} -o stack.toml` (see docs/migrating.md)")
    return "see https://toml.io/en/v1.0.0 for the syntax"


def _decode_error(name: str, error: tomli.TOMLDecodeError) -> Diagnostic:
    """What tomli rejects and tomlkit accepts: tomli's own message and position."""
    match = re.search(r"\(at line (\d+), column (\d+)\)$", str(error))
    line, column = (int(match.group(1)), int(match.group(2))) if match else (1, 1)
    message = re.sub(r"\s*\(at (line \d+, column \d+|end of document)\)$", "", str(error))
    return Diagnostic("E001", f"invalid TOML: {message[:1].lower()}{message[1:]}", location=Location(name, line, column),
                      hint=_toml_hint(name))


def _syntax_error(name: str, error: tomlkit.exceptions.ParseError) -> Diagnostic:
    message = str(error)
    # tomlkit appends " at line L col C"; the location already says it.
    message = re.sub(r"\s+at line \d+ col \d+$", "", message)
    return Diagnostic(
        code="E001",
        message=f"invalid TOML: {message[:1].lower()}{message[1:]}",
        location=Location(name, error.line, max(error.col, 1)),
        hint=_toml_hint(name),
    )


def _semantic_error(name: str, text: str, error: tomlkit.exceptions.TOMLKitError) -> Diagnostic:
    scanner = _Scanner(name, text)
    try:
        scanner.document()
    except (_ScanError, IndexError, ValueError):
        pass
    location = scanner.redefined[0] if scanner.redefined else Location(name, 1, 1)
    return Diagnostic("E001", f"invalid TOML: {str(error)[:1].lower()}{str(error)[1:]}", location=location,
                      hint="each key and table may be defined only once")


def _overlay(base: dict, top: Mapping, prefix: Path, replaced: list[Path]) -> None:
    """Later files override earlier ones: tables merge key by key, anything else replaces (``replaced``
    collects the paths whose earlier values, and so positions, are gone)."""
    for key, value in top.items():
        path = prefix + (key,)
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _overlay(base[key], value, path, replaced)
            continue
        replaced.append(path)
        base[key] = copy.deepcopy(value)


def _forget_below(path: Path, *tables: dict) -> None:
    for table in tables:
        for stale in [p for p in table if len(p) > len(path) and p[: len(path)] == path]:
            del table[stale]


_SETTING = re.compile(r"^(?P<path>[^=]+?)\s*=(?P<value>.*)$", re.DOTALL)


def _apply_setting(data: dict, index: int, setting: str, written: list[_Written]) -> list[Diagnostic]:
    where = Location("--set", index, 1)
    match = _SETTING.match(setting)
    path = _split_dotted(match.group("path").strip()) if match else None
    if not match or not path:
        return [Diagnostic("E002", f"--set expects PATH=VALUE, got {setting!r}", location=where,
                           hint="for example --set models.llama.replicas=3")]
    raw = match.group("value").strip()
    try:
        value = tomli.loads(f"v = {raw}")["v"] if raw else ""
    except tomli.TOMLDecodeError:
        value = raw  # a bare word is a string, as with helm --set
    node = data
    for depth, key in enumerate(path[:-1]):
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            return [Diagnostic("E002", f"--set cannot set below a {type(child).__name__} value",
                               path=path[: depth + 1], location=where)]
        node = child
    node[path[-1]] = value
    value_at = Location("--set", index, setting.index("=") + 2)
    written.append(_Written((path,), lambda: ({path: where}, {path: value_at})))
    return []


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _split_dotted(text: str) -> tuple[str, ...] | None:
    scanner = _Scanner("--set", text)
    try:
        path = tuple(part for part, _ in scanner.key_path())
    except (_ScanError, IndexError, ValueError):  # an unterminated quote runs off the end
        return None
    scanner.skip_blanks()
    return path if scanner.at_end() else None


def scan_positions(name: str, text: str) -> tuple[dict[Path, Location], dict[Path, Location]]:
    """Positions of every key and value in a valid TOML text (best effort, never raises)."""
    scanner = _Scanner(name, text)
    try:
        scanner.document()
    except (_ScanError, IndexError, ValueError):
        pass  # positions found so far stay; lookups fall back to the nearest ancestor
    return scanner.keys, scanner.values


class _ScanError(Exception):
    pass


class _Scanner:
    def __init__(self, name: str, text: str):
        self.name = name
        self.text = text
        self.pos = 0
        self.keys: dict[Path, Location] = {}
        self.values: dict[Path, Location] = {}
        self._array_lengths: dict[Path, int] = {}
        self.redefined: list[Location] = []  # keys or tables defined a second time
        self._line_starts = [0] + [m.end() for m in re.finditer("\n", text)]

    # -- positions -------------------------------------------------------------------------
    def location(self, offset: int) -> Location:
        lo, hi = 0, len(self._line_starts) - 1
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self._line_starts[mid] <= offset:
                lo = mid
            else:
                hi = mid - 1
        return Location(self.name, lo + 1, offset - self._line_starts[lo] + 1)

    def at_end(self) -> bool:
        return self.pos >= len(self.text)

    def peek(self, count: int = 1) -> str:
        return self.text[self.pos : self.pos + count]

    def skip_blanks(self) -> None:
        while self.peek() in (" ", "\t"):
            self.pos += 1

    def skip_trivia(self) -> None:
        """Blanks, newlines and comments."""
        while not self.at_end():
            char = self.peek()
            if char in " \t\r\n":
                self.pos += 1
            elif char == "#":
                end = self.text.find("\n", self.pos)
                self.pos = len(self.text) if end < 0 else end
            else:
                return

    # -- grammar ---------------------------------------------------------------------------
    def document(self) -> None:
        table: Path = ()
        while True:
            self.skip_trivia()
            if self.at_end():
                return
            start = self.pos
            if self.peek(2) == "[[":
                self.pos += 2
                table = self._resolve([p for p, _ in self.key_path()], new_element=True)
                self.keys[table] = self.location(start)
                self.keys.setdefault(table[:-1], self.location(start))
                self.pos = self.text.index("]]", self.pos) + 2
            elif self.peek() == "[":
                self.pos += 1
                table = self._resolve([p for p, _ in self.key_path()], new_element=False)
                if table in self.keys and table not in self.values:
                    self.redefined.append(self.location(start))
                self.keys[table] = self.location(start)
                self.pos = self.text.index("]", self.pos) + 1
            else:
                self.key_value(table)

    def _resolve(self, parts: list[str], *, new_element: bool) -> Path:
        """Map header segments to a path; segments naming arrays of tables get their index."""
        path: Path = ()
        for number, part in enumerate(parts):
            path += (part,)
            is_last = number == len(parts) - 1
            if is_last and new_element:
                index = self._array_lengths.get(path, 0)
                self._array_lengths[path] = index + 1
                path += (index,)
            elif path in self._array_lengths:
                path += (self._array_lengths[path] - 1,)
        return path

    def key_value(self, table: Path) -> None:
        parts = self.key_path()
        path = table + tuple(p for p, _ in parts)
        for end, (_, offset) in enumerate(parts, start=1):
            self.keys.setdefault(table + tuple(p for p, _ in parts[:end]), self.location(offset))
        if path in self.values:
            self.redefined.append(self.location(parts[-1][1]))
        self.keys[path] = self.location(parts[-1][1])
        self.skip_blanks()
        if self.peek() != "=":
            raise _ScanError("expected '='")
        self.pos += 1
        self.skip_blanks()
        self.value(path)

    def key_path(self) -> list[tuple[str, int]]:
        parts: list[tuple[str, int]] = []
        while True:
            self.skip_blanks()
            offset = self.pos
            char = self.peek()
            if char in ('"', "'"):
                parts.append((self._quoted_key(char), offset))
            else:
                match = _BARE_KEY.match(self.text, self.pos)
                if not match:
                    raise _ScanError("expected a key")
                parts.append((match.group(), offset))
                self.pos = match.end()
            self.skip_blanks()
            if self.peek() != ".":
                return parts
            self.pos += 1

    def _quoted_key(self, quote: str) -> str:
        start = self.pos
        self.string()
        raw = self.text[start : self.pos]
        return tomli.loads(f"k = {raw}")["k"] if quote == '"' else raw[1:-1]

    def value(self, path: Path) -> None:
        self.values[path] = self.location(self.pos)
        char = self.peek()
        if char in ('"', "'"):
            self.string()
        elif char == "[":
            self.array(path)
        elif char == "{":
            self.inline_table(path)
        else:
            match = re.compile(r"[^,\]}\s#]+(?: [0-9:.+\-Z]+)?").match(self.text, self.pos)
            if not match:
                raise _ScanError("expected a value")
            self.pos = match.end()

    def string(self) -> None:
        quote = self.peek()
        if self.peek(3) == quote * 3:
            end = self.text.index(quote * 3, self.pos + 3)
            while self.text[end + 3 : end + 4] == quote:  # up to two quotes may close the content
                end += 1
            self.pos = end + 3
            return
        self.pos += 1
        while True:
            char = self.text[self.pos]
            if char == "\\" and quote == '"':
                self.pos += 2
                continue
            self.pos += 1
            if char == quote:
                return

    def array(self, path: Path) -> None:
        self.pos += 1
        index = 0
        while True:
            self.skip_trivia()
            if self.peek() == "]":
                self.pos += 1
                return
            self.value(path + (index,))
            index += 1
            self.skip_trivia()
            if self.peek() == ",":
                self.pos += 1

    def inline_table(self, path: Path) -> None:
        self.pos += 1
        while True:
            self.skip_trivia()
            if self.peek() == "}":
                self.pos += 1
                return
            self.key_value(path)
            self.skip_trivia()
            if self.peek() == ",":
                self.pos += 1
