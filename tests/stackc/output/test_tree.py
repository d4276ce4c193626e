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


def test_a_file_the_previous_build_wrote_alike_is_kept_and_a_changed_one_is_new(tmp_path: Path) -> None:
    """Unchanged files are linked from the old tree: on a disk, removing it then frees nothing."""
    root = tmp_path / "out" / "stack"
    write_tree(root, {"a/same.yaml": b"same\n", "a/changed.yaml": b"old\n", "gone.yaml": b"x\n"})
    before = {name: os.stat(root / name).st_ino for name in ("a/same.yaml", "a/changed.yaml")}
    write_tree(root, {"a/same.yaml": b"same\n", "a/changed.yaml": b"new\n", "added.yaml": b"y\n"})
    assert os.stat(root / "a/same.yaml").st_ino == before["a/same.yaml"]
    assert os.stat(root / "a/same.yaml").st_nlink == 1  # the old tree is gone
    assert os.stat(root / "a/changed.yaml").st_ino != before["a/changed.yaml"]
    assert read_tree(root) == {"a/same.yaml": b"same\n", "a/changed.yaml": b"new\n", "added.yaml": b"y\n"}
    assert not (root / "gone.yaml").exists()


@pytest.mark.parametrize("change", ["mode", "link", "symlink", "size"])
def test_a_file_not_exactly_as_a_build_writes_it_is_written_afresh(tmp_path: Path, change: str) -> None:
    """A file the user changed in a way that keeps its content (its mode, another name for it, a symlink in
    its place) is not carried over: the new tree holds only files as a build writes them."""
    root = tmp_path / "out" / "stack"
    content = b"kind: ConfigMap\n"
    write_tree(root, {"f.yaml": content})
    path = root / "f.yaml"
    if change == "mode":
        path.chmod(0o600)
    elif change == "link":
        os.link(path, tmp_path / "elsewhere.yaml")
    elif change == "symlink":
        (tmp_path / "target.yaml").write_bytes(content)
        path.unlink()
        path.symlink_to(tmp_path / "target.yaml")
    else:
        path.write_bytes(content + b"# more\n")
    inode = os.lstat(path).st_ino
    write_tree(root, {"f.yaml": content})
    status = os.lstat(path)
    assert status.st_ino != inode and not path.is_symlink() and status.st_nlink == 1
    assert path.read_bytes() == content and (status.st_mode & 0o777) == (os.stat(root / tree.MANIFEST).st_mode & 0o777)


def test_a_file_system_without_hard_links_gets_every_file_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "out" / "stack"
    write_tree(root, {"f.yaml": b"a\n", "g.yaml": b"b\n"})

    def refuse(*args: object, **kwargs: object) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(tree.os, "link", refuse)
    write_tree(root, {"f.yaml": b"a\n", "g.yaml": b"c\n"})
    assert (root / "f.yaml").read_bytes() == b"a\n" and (root / "g.yaml").read_bytes() == b"c\n"
