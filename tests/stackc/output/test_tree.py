"""A swap cut between its two renames (file systems without RENAME_EXCHANGE) loses nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from stackc.output import tree
from stackc.output.tree import read_tree, write_tree

REPO = Path(__file__).resolve().parents[3]


class Killed(BaseException):
    """Stands for SIGKILL: nothing after it runs, not even ``finally`` clean-up that matters."""


def interrupt_between_the_renames(monkeypatch: pytest.MonkeyPatch, root: Path, files: dict[str, bytes]) -> None:
    """A build on a file system that can't exchange, killed right after the old tree was moved aside."""
    monkeypatch.setattr(tree, "_exchange", lambda a, b: False)
    real_rename = os.rename

    def rename(source: os.PathLike, destination: os.PathLike) -> None:
        if Path(source).name.startswith(f".{root.name}.new-"):
            raise Killed
        real_rename(source, destination)

    monkeypatch.setattr(tree.os, "rename", rename)
    monkeypatch.setattr(tree.shutil, "rmtree", lambda *a, **k: None)  # a killed process removes nothing
    with pytest.raises(Killed):
        write_tree(root, files)
    monkeypatch.undo()


def test_readers_see_the_old_tree_and_the_next_build_restores_it(monkeypatch: pytest.MonkeyPatch,
                                                                 tmp_path: Path) -> None:
    root = tmp_path / "out" / "s"
    write_tree(root, {"a/x.yaml": b"1\n", "b/y.yaml": b"2\n"})
    interrupt_between_the_renames(monkeypatch, root, {"a/x.yaml": b"3\n"})
    assert not root.exists()  # the state the kill left
    assert read_tree(root) == {"a/x.yaml": b"1\n", "b/y.yaml": b"2\n"}
    assert tree.owned_files(root) == ["a/x.yaml", "b/y.yaml"]
    assert not root.exists()  # reading repairs nothing: --check never writes
    write_tree(root, {"a/x.yaml": b"4\n"}, keep_prefixes=["b"])  # a partial build keeps what the old tree had
    assert read_tree(root) == {"a/x.yaml": b"4\n", "b/y.yaml": b"2\n"}
    assert sorted(os.listdir(root.parent)) == ["s"]


def test_diff_after_an_interrupted_swap_compares_with_the_old_tree(monkeypatch: pytest.MonkeyPatch,
                                                                    tmp_path: Path) -> None:
    out = tmp_path / "out"
    built = subprocess.run([sys.executable, "-m", "stackc", "build", "specs/local.toml", "-o", str(out)], cwd=REPO,
                           capture_output=True, text=True, timeout=60)
    assert built.returncode == 0, built.stderr
    root = out / "local"
    interrupt_between_the_renames(monkeypatch, root, read_tree(root))
    diff = subprocess.run([sys.executable, "-m", "stackc", "diff", "specs/local.toml", "-o", str(out)], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert diff.returncode == 0, diff.stderr  # not "every file added"
    assert diff.stdout == ""
