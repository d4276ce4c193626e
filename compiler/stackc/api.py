"""The programmatic entry point: compile spec files with the installed plugins."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from stackc import pipeline
from stackc.plugins import load_registry


def compile_stack(paths: Sequence[str | Path], settings: Sequence[str] = (),
                  targets: Sequence[str] | None = None) -> pipeline.Compilation:
    """Compile spec files (later ones overlay earlier ones) to rendered files.

    Raises ``stackc.diagnostics.DiagnosticsError`` with every located problem.
    """
    return pipeline.compile_stack(paths, load_registry(), settings, targets)
