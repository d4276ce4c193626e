"""Docs that are generated must be current; every hook must be documented and tested."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

from stackc import hookspecs
from stackc.plugins import load_registry
from stackc.spec.schema import spec_reference, spec_schema

REPO = Path(__file__).resolve().parent.parent
START, END = "<!-- reference:start -->\n", "<!-- reference:end -->"


def test_spec_reference_is_current() -> None:
    text = (REPO / "docs" / "spec.md").read_text()
    current = text[text.index(START) + len(START): text.index(END)]
    assert current == spec_reference(load_registry()), "run: python -m tests.update_docs"


def test_schema_file_is_current() -> None:
    committed = json.loads((REPO / "docs" / "stackc.schema.json").read_text())
    assert committed == spec_schema(load_registry()), "run: python -m tests.update_docs"


def test_every_hook_is_documented_and_tested() -> None:
    hooks = [name for name, _ in inspect.getmembers(hookspecs, inspect.isfunction) if name.startswith("stackc_")]
    assert hooks
    reference = (REPO / "docs" / "hooks.md").read_text()
    tests = "\n".join(p.read_text() for p in (REPO / "tests").rglob("test_*.py"))
    for hook in hooks:
        assert getattr(hookspecs, hook).__doc__, hook
        assert hook in reference, f"{hook} is missing from docs/hooks.md"
        assert hook in tests, f"{hook} has no test"


def test_relative_links_resolve() -> None:
    """Every relative link in the README and docs/ names a file that exists (anchors aside)."""
    import re

    root = Path(__file__).resolve().parents[1]
    broken = []
    for page in [root / "README.md", *sorted((root / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
            path = target.split("#", 1)[0]
            if path and "://" not in path and not (page.parent / path).exists():
                broken.append(f"{page.relative_to(root)}: {target}")
    assert broken == []
