"""Same spec, same bytes: whatever the hash seed, the plugin order, the machine or the time."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from stackc import pipeline
from stackc.output.tree import read_tree
from stackc.plugins import build_registry, discover

REPO = Path(__file__).resolve().parents[2]
SPECS = sorted(p for p in (REPO / "specs").rglob("*.toml") if "invalid" not in p.parts)


def test_builds_are_byte_identical_across_hash_seeds(tmp_path: Path) -> None:
    trees = []
    for seed in ("0", "12345"):
        out = tmp_path / f"out-{seed}"
        for spec in SPECS:
            subprocess.run([sys.executable, "-m", "stackc", "build", str(spec), "-o", str(out)], check=True,
                           cwd=REPO, env={**os.environ, "PYTHONHASHSEED": seed}, capture_output=True)
        trees.append({p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()})
    assert trees[0] == trees[1]


def test_plugin_registration_order_does_not_show() -> None:
    plugins = discover()
    forward, backward = build_registry(plugins), build_registry(list(reversed(plugins)))
    assert list(forward.engines) != list(backward.engines) or len(forward.engines) == 1
    for spec in SPECS:
        a = pipeline.compile_stack([spec], forward)
        b = pipeline.compile_stack([spec], backward)
        assert a.files == b.files, spec


def test_output_has_no_absolute_paths_or_timestamps() -> None:
    for spec in SPECS:
        name = pipeline.check([spec], build_registry(discover())).spec.stack.name
        for path, content in read_tree(REPO / "out" / name).items():
            text = content.decode()
            assert str(REPO) not in text and "/home/" not in text, path
            assert "creationTimestamp" not in text, path
