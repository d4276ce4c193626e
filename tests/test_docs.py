"""Docs that are generated must be current; every hook must be documented and tested."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import pytest

from stackc import hookspecs
from stackc.plugins import load_registry
from stackc.check.schema import spec_schema
from tests.update_docs import block, generated_blocks

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(("name", "marker"), sorted(generated_blocks()))
def test_generated_docs_are_current(name: str, marker: str) -> None:
    """The spec reference and the plugin contract's tables in docs/ are those the code declares."""
    text = (REPO / "docs" / name).read_text()
    start, end = block(text, marker)
    assert text[start:end] == generated_blocks()[name, marker](load_registry()), "run: python -m tests.update_docs"


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


def test_the_plugin_tutorials_classes_follow_the_contract() -> None:
    """docs/plugins.md's engine and target register through the contract and compile a stack."""
    import re
    import types

    from stackc.testing import compile_text, objects

    text = (REPO / "docs" / "plugins.md").read_text()
    blocks = [b for b in re.findall(r"```python\n(.*?)```", text, re.S) if "registry.add_" in b]
    assert len(blocks) == 2
    modules = []
    for index, code in enumerate(blocks):
        module = types.ModuleType(f"tutorial_{index}")
        exec(compile(code, f"docs/plugins.md#{index}", "exec"), module.__dict__)  # noqa: S102 - our own docs
        modules.append(module)
    spec = """
version = 1
[stack]
name = "t"
targets = ["argo-rollouts"]
[models.mistral]
engine = "tgi"
model = "mistralai/Mistral-7B-Instruct-v0.3"
accelerators = { count = 2 }
serving = { tensor_parallel = 2 }
"""
    found = objects(compile_text(spec, plugins=modules).files)
    assert sorted(o["kind"] for o in found) == ["Rollout", "Service"]
