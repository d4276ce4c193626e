"""Targets translate the plan: none imports another target, the spec's Model, or the lowering stage."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

TARGETS = Path(__file__).resolve().parents[3] / "plugins" / "stackc_plugins" / "targets"
FORBIDDEN_NAMES = {("stackc.spec.model", "Model"), ("stackc.spec.model", "Spec")}
FORBIDDEN_MODULES = ("stackc.lowering", "stackc.check", "stackc.pipeline", "stackc_plugins.engines")


def imports(path: Path) -> list[tuple[str, str | None]]:
    """(module, name) for every import in a file; name is None for ``import module``."""
    found: list[tuple[str, str | None]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, None) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            found += [(node.module, alias.name) for alias in node.names]
    return found


def target_package(path: Path) -> str:
    relative = path.relative_to(TARGETS)
    return "stackc_plugins.targets." + relative.parts[0].removesuffix(".py")


def layering_problems(path: Path, own: str) -> list[str]:
    problems = []
    for module, name in imports(path):
        if module.startswith("stackc_plugins.targets") and not module.startswith(own):
            problems.append(f"imports another target: {module}")
        if (module, name) in FORBIDDEN_NAMES or (name is None and module == "stackc.spec.model"):
            problems.append(f"reads the spec: {module}.{name}")
        if module.startswith(FORBIDDEN_MODULES):
            problems.append(f"imports a stage before the plan: {module}")
    return problems


@pytest.mark.parametrize("path", sorted(TARGETS.rglob("*.py")), ids=lambda p: p.relative_to(TARGETS).as_posix())
def test_a_target_reads_only_the_plan(path: Path) -> None:
    if path.name == "__init__.py" and path.parent == TARGETS:
        return
    assert layering_problems(path, target_package(path)) == []


def test_the_check_catches_planted_imports(tmp_path: Path) -> None:
    planted = tmp_path / "manifests.py"
    planted.write_text((TARGETS / "manifests.py").read_text() + "\nfrom stackc_plugins.targets.helm import template\n"
                       "from stackc.spec.model import Model\nimport stackc.lowering.lower\n")
    assert layering_problems(planted, "stackc_plugins.targets.manifests") == [
        "imports another target: stackc_plugins.targets.helm", "reads the spec: stackc.spec.model.Model",
        "imports a stage before the plan: stackc.lowering.lower"]
