"""One import: read the values, let the chart's module build a draft, render it, and compile the
result with the installed plugins so what ``stackc import`` prints always passes ``stackc check``."""

from __future__ import annotations

import importlib
from collections.abc import Sequence

import attrs

from stackc.diagnostics import (
    Diagnostic,
    DiagnosticsError,
    Location,
    Severity,
    sorted_unique,
)
from stackc.importers import CHARTS
from stackc.importers.draft import render, stack_name
from stackc.importers.values import Values, ValuesError, read_values
from stackc.records import frozen


@frozen
class Imported:
    text: str
    #: every value that was not imported, located in the values files
    report: tuple[Diagnostic, ...]


def import_values(chart: str, paths: Sequence[str], name: str | None = None,
                  namespace: str | None = None) -> Imported:
    """The spec for ``chart`` deployed with ``paths``; raises ValuesError for input it cannot import."""
    module = importlib.import_module(CHARTS[chart])
    def read() -> Values:
        return module.read(paths) if hasattr(module, "read") else Values(*read_values(paths), paths[-1])

    if not name:  # the derived name must fit beside the model keys, which the chart's module finds
        name = stack_name(paths, module.DEFAULT_NAME, list(module.convert(read(), module.DEFAULT_NAME).models))
    values = read()
    draft = module.convert(values, name)
    if namespace:
        draft.namespace = namespace
    if values.errors:
        raise ValuesError(sorted_unique(values.errors))
    if not draft.models:
        raise ValuesError([Diagnostic("E091", f"no model to import: {module.NO_MODELS}",
                                      location=Location(paths[-1]))])
    header = [f"Imported by `stackc import --from {chart} {' '.join(paths)}`.",
              "Values stackc could not map are listed on stderr; review them, then `stackc build` this file."]
    left_out: list[Diagnostic] = []
    while True:
        text = render(draft, header)
        problems = _problems(text, draft.origins, Location(paths[-1]))
        # the chart never renders a disabled model: what stackc can't take of one is left out, not refused
        unrendered = [(table, path[-1], d) for path, d in problems
                      if (table := _disabled_table(draft.models, path)) is not None]
        if not unrendered:  # each pass removes values the draft set: the loop ends
            break
        for table, key, diagnostic in unrendered:
            table.pop(key, None)
            left_out.append(attrs.evolve(diagnostic, code="W090", severity=Severity.WARNING,
                                         message=f"not imported: {diagnostic.message.removeprefix(_INVALID)} (in a "
                                         "disabled model, which the chart never renders)"))
    if problems:
        raise ValuesError([d for _, d in problems])
    return Imported(text, tuple(sorted_unique([*values.report(), *left_out])))


_INVALID = "the imported spec is invalid: "


def _problems(text: str, origins: dict[str, Location], fallback: Location) -> list[tuple[tuple, Diagnostic]]:
    """What stackc rejects in the spec (a spec it would reject is never printed): its problems come from the
    values, so exit 2, each located at the values entry the model came from; with each its spec path."""
    from stackc import pipeline
    from stackc.plugins import load_registry

    name = "<imported spec>"
    try:
        pipeline.compile_stack([name], load_registry(), texts=[(name, text)])
    except DiagnosticsError as error:
        return [(tuple(d.path), attrs.evolve(d, code="E092", message=f"{_INVALID}{d.message}",
                                             location=_origin(d.path, origins, fallback), hint=_hint(d)))
                for d in error.diagnostics if d.severity is Severity.ERROR]
    return []


def _disabled_table(models: dict, path: tuple) -> dict | None:
    """The draft's table holding the value at ``path``, when the draft set it in a model it imports disabled."""
    if len(path) < 3 or path[0] != "models" or models.get(path[1], {}).get("enabled") is not False:
        return None
    table = models[path[1]]
    for key in path[2:-1]:
        table = table.get(key) if isinstance(table, dict) else None
    return table if isinstance(table, dict) and path[-1] in table else None


def _hint(diagnostic: Diagnostic) -> str | None:
    """A name that is too long is fixed on the command line: say how."""
    if "too long" in diagnostic.message or "characters" in diagnostic.message and "stack name" in diagnostic.message:
        return f"{diagnostic.hint}: pass a shorter stack name with --name" if diagnostic.hint else \
            "pass a shorter stack name with --name"
    return diagnostic.hint


def _origin(path: tuple[str | int, ...], origins: dict[str, Location], fallback: Location) -> Location:
    if len(path) > 1 and path[0] == "models" and path[1] in origins:
        return origins[str(path[1])]
    return fallback
