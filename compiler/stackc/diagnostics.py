"""Diagnostics: every stage returns them as data; only the CLI prints them."""

from __future__ import annotations

from collections.abc import Iterable
from enum import Enum

from stackc.records import frozen


class Severity(str, Enum):
    ERROR = "error"
    WARNING = "warning"


@frozen(order=True)
class Location:
    """Where a value came from: a spec file (or a ``--set`` argument), 1-based line and column."""

    file: str
    line: int = 1
    column: int = 1

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


_PLAIN = {"bold": "", "error": "", "warning": "", "hint": "", "reset": ""}
_ANSI = {"bold": "\x1b[1m", "error": "\x1b[1;31m", "warning": "\x1b[1;33m", "hint": "\x1b[2m", "reset": "\x1b[0m"}


@frozen
class Diagnostic:
    """One problem found in a spec, located and explained.

    ``path`` is the spec path as a tuple (``("models", "llama", "replicas")``) so it can be
    located after the fact; ``location`` is filled in by the pipeline from the source map.
    """

    code: str
    message: str
    path: tuple[str | int, ...] = ()
    hint: str | None = None
    severity: Severity = Severity.ERROR
    location: Location | None = None

    @property
    def dotted_path(self) -> str:
        return format_path(self.path)

    def sort_key(self) -> tuple:
        loc = self.location or Location("")
        return (loc.file, loc.line, loc.column, self.dotted_path, self.code, self.message)

    def render(self, colour: bool = False) -> str:
        """One line; ``colour`` adds ANSI styles (the CLI decides, from the terminal and NO_COLOR)."""
        style = _ANSI if colour else _PLAIN
        where = f"{style['bold']}{self.location}:{style['reset']} " if self.location else ""
        path = f" {self.dotted_path}:" if self.path else ""
        label = f"{style[self.severity.value]}{self.severity.value}[{self.code}]{style['reset']}"
        text = f"{where}{label}{path} {self.message}"
        if self.hint:
            text += f" {style['hint']}(hint: {self.hint}){style['reset']}"
        return text

    def as_json(self) -> dict:
        return {
            "code": self.code,
            "severity": self.severity.value,
            "path": self.dotted_path,
            "file": self.location.file if self.location else None,
            "line": self.location.line if self.location else None,
            "column": self.location.column if self.location else None,
            "message": self.message,
            "hint": self.hint,
        }


class DiagnosticsError(Exception):
    """Raised only at the boundary between the pipeline and its callers."""

    def __init__(self, diagnostics: Iterable[Diagnostic]):
        self.diagnostics = sorted_unique(diagnostics)
        super().__init__("\n".join(d.render() for d in self.diagnostics))


def format_path(path: Iterable[str | int]) -> str:
    parts: list[str] = []
    for part in path:
        if isinstance(part, int):
            parts.append(f"[{part}]")
        elif part and all(c.isalnum() or c in "-_" for c in part):
            parts.append(("." if parts else "") + part)
        else:
            parts.append(("." if parts else "") + '"' + part.replace('"', '\\"') + '"')
    return "".join(parts)


def sorted_unique(diagnostics: Iterable[Diagnostic]) -> list[Diagnostic]:
    seen: dict[tuple, Diagnostic] = {}
    for diagnostic in diagnostics:
        seen.setdefault(diagnostic.sort_key(), diagnostic)
    return [seen[key] for key in sorted(seen)]


def did_you_mean(word: str, choices: Iterable[str]) -> str | None:
    """The hint for a misspelt name, or the list of valid names when nothing is close."""
    import difflib  # only a mistake needs it: a build without one never imports it

    options = sorted(set(choices))
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    if close:
        return f"did you mean '{close[0]}'?"
    if options:
        return "expected one of: " + ", ".join(f"'{o}'" for o in options)
    return None
