"""The compiler's layers: spec → plan and fit (data) → contract → {check, lower, output} → kube → pipeline → front-ends.

Every import executed at run time counts, at module level or inside a function; ``if TYPE_CHECKING:``
imports, which only annotate, don't. No module may import one in a higher layer, and neither files nor
folders may import each other in a cycle. The core also decides by traits, never by a built-in target's
name, so a third-party target gets what a built-in gets.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CORE = REPO / "compiler"
PLUGINS = REPO / "plugins"
#: the core's layers, lowest first: a unit (a folder of stackc, or a module at its top) imports its own layer or lower
LAYERS: tuple[tuple[str, ...], ...] = (
    ("stackc.codecache", "stackc.entry_points", "stackc.records", "stackc.diagnostics"),
    ("stackc.spec",),
    ("stackc.plan", "stackc.fit"),
    ("stackc.registry", "stackc.hookspecs"),
    ("stackc.check", "stackc.lowering", "stackc.output"),
    ("stackc.kube",),
    ("stackc.pipeline",),
    ("stackc.plugins", "stackc.api", "stackc.testing", "stackc.fuzzing", "stackc.importers", "stackc.local"),
    ("stackc.cli", "stackc.__main__", "stackc"),
)
#: what a plugin may import of the core: engines the data an engine lowers with, targets the plan and its builders
PLUGIN_LIMITS = {
    "stackc_plugins.engines": LAYERS[3],
    "stackc_plugins.targets": LAYERS[5],
}
BUILT_IN_TARGETS = {"manifests", "helm", "kserve", "gateway", "router", "monitoring"}
#: core modules that may spell a built-in target's name, and why
NAMES_ALLOWED = {
    "stackc.spec.model": "the spec's defaults (stack.targets = [\"manifests\"]; the monitoring namespace)",
    "stackc.importers": "importers write specs that list the targets a chart deployed",
    "stackc.fuzzing": "the fuzzer writes specs too",
    "stackc.local.up": "stackc up runs the reference router itself, with [targets.router]'s keys",
}


def modules(root: Path) -> dict[str, Path]:
    found = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _runtime_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node but the bodies of ``if TYPE_CHECKING:``."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            yield from (n for child in node.orelse for n in [child, *_runtime_nodes(child)])
            continue
        yield node
        yield from _runtime_nodes(node)


def imported(name: str, path: Path, known: Mapping[str, Path]) -> set[str]:
    """The known modules ``name`` imports at run time (``from stackc import kube`` imports ``stackc.kube``)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in _runtime_nodes(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, *([base] if base else [])])
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
    return {module for module in found if module in known and module != name}


def unit(module: str) -> str:
    """A folder of stackc, or a module at its top level."""
    return ".".join(module.split(".")[:2])


def cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one member (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in sorted(graph.get(node, ())):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def layer(module: str) -> int:
    for number, units in enumerate(LAYERS):
        if unit(module) in units:
            return number
    raise AssertionError(f"{module} is in no layer: add its folder to LAYERS")


@pytest.fixture(scope="module")
def core() -> dict[str, set[str]]:
    known = modules(CORE)
    return {name: imported(name, path, known) for name, path in known.items()}


def test_no_import_cycle_between_files(core) -> None:
    assert cycles(core) == []


def test_no_import_cycle_between_folders(core) -> None:
    folders: dict[str, set[str]] = {}
    for module, targets in core.items():
        folders.setdefault(unit(module), set()).update(unit(t) for t in targets if unit(t) != unit(module))
    assert cycles(folders) == []


def test_no_import_against_the_layer_order(core) -> None:
    upward = sorted(f"{module} imports {target}" for module, targets in core.items() for target in targets
                    if layer(target) > layer(module))
    assert upward == []


@pytest.mark.parametrize("family", sorted(PLUGIN_LIMITS))
def test_plugins_import_only_the_core_they_build_on(family: str) -> None:
    known = {**modules(CORE), **modules(PLUGINS)}
    allowed = {unit for units in LAYERS[: LAYERS.index(PLUGIN_LIMITS[family]) + 1] for unit in units} | {"stackc"}
    found = sorted(f"{name} imports {target}" for name, path in known.items() if name.startswith(family)
                   for target in imported(name, path, known)
                   if target.startswith("stackc.") and unit(target) not in allowed)
    assert found == []


def test_the_core_decides_by_traits_not_by_built_in_target_names() -> None:
    spelled = []
    for name, path in modules(CORE).items():
        if any(name == allowed or name.startswith(allowed + ".") for allowed in NAMES_ALLOWED):
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Constant) and node.value in BUILT_IN_TARGETS:
                spelled.append(f"{path.relative_to(REPO)}:{node.lineno}: {node.value!r}")
    assert spelled == []


def test_the_checks_catch_a_planted_cycle_and_an_upward_import() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert layer("stackc.spec.model") < layer("stackc.kube")
