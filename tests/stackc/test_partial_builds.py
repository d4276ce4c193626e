"""`--target` filters what is written, last: the plan and each target's files are the whole stack's."""

from __future__ import annotations

from pathlib import Path

import pytest

from stackc import cli, pipeline
from stackc.output.tree import read_tree
from stackc.plugins import load_registry

REPO = Path(__file__).resolve().parents[2]
SPECS = sorted(p for p in (REPO / "specs").rglob("*.toml") if "invalid" not in p.parts)


@pytest.fixture(scope="module")
def registry():
    return load_registry()


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.relative_to(REPO / "specs").as_posix())
def test_a_partial_build_writes_what_the_full_build_writes_there(spec: Path, registry) -> None:
    full = pipeline.compile_stack([spec], registry)
    for target in full.targets:
        part = pipeline.compile_stack([spec], registry, targets=[target])
        assert part.files == {path: content for path, content in full.files.items()
                              if path.startswith(f"{target}/")}, target
        assert part.plan == full.plan, target


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.relative_to(REPO / "specs").as_posix())
def test_diff_is_clean_after_any_partial_rebuild(spec: Path, registry, tmp_path: Path, capsys) -> None:
    out = str(tmp_path)
    assert cli.main(["build", str(spec), "-o", out]) == 0
    built = read_tree(tmp_path)
    for target in pipeline.compile_stack([spec], registry).targets:
        assert cli.main(["build", str(spec), "-o", out, "--target", target]) == 0
        assert cli.main(["diff", str(spec), "-o", out]) == 0, (target, capsys.readouterr().out[-2000:])
    assert read_tree(tmp_path) == built


def test_a_target_the_stack_lacks_is_built_as_if_the_stack_listed_it(registry) -> None:
    spec = REPO / "specs" / "prod.toml"
    assert "kserve" not in pipeline.check([spec], registry).spec.stack.targets
    selected = pipeline.compile_stack([spec], registry, targets=["kserve"])
    listed = pipeline.compile_stack([spec], registry, settings=[
        f"stack.targets={[*pipeline.check([spec], registry).spec.stack.targets, 'kserve']}".replace("'", '"')])
    assert selected.files == {path: content for path, content in listed.files.items() if path.startswith("kserve/")}
