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


@pytest.mark.parametrize("change", ["mode", "group", "link", "symlink", "size"])
def test_a_file_not_exactly_as_a_build_writes_it_is_written_afresh(tmp_path: Path, change: str) -> None:
    """A file the user changed in a way that keeps its content (its mode, another name for it, a symlink in
    its place) is not carried over: the new tree holds only files as a build writes them."""
    root = tmp_path / "out" / "stack"
    content = b"kind: ConfigMap\n"
    write_tree(root, {"f.yaml": content})
    path = root / "f.yaml"
    if change == "mode":
        path.chmod(0o600)
    elif change == "group":  # a file written in a setgid folder, or by another member of a shared project
        others = [gid for gid in ([4321] if os.geteuid() == 0 else os.getgroups()) if gid != os.stat(path).st_gid]
        if not others:
            pytest.skip("this user belongs to no other group to give the file")
        os.chown(path, -1, others[0])
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
    manifest = os.stat(root / tree.MANIFEST)
    assert path.read_bytes() == content and (status.st_mode & 0o777, status.st_gid) == (manifest.st_mode & 0o777,
                                                                                       manifest.st_gid)


def test_a_file_system_without_hard_links_gets_every_file_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "out" / "stack"
    write_tree(root, {"f.yaml": b"a\n", "g.yaml": b"b\n"})

    def refuse(*args: object, **kwargs: object) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(tree.os, "link", refuse)
    write_tree(root, {"f.yaml": b"a\n", "g.yaml": b"c\n"})
    assert (root / "f.yaml").read_bytes() == b"a\n" and (root / "g.yaml").read_bytes() == b"c\n"


def test_a_file_reached_through_a_symlinked_folder_is_written_afresh(tmp_path: Path) -> None:
    """A folder of the old tree replaced by a symbolic link to elsewhere: its files are not the tree's, and
    linking them would tie the new tree to files outside it."""
    root = tmp_path / "out" / "stack"
    write_tree(root, {"a/f.yaml": b"x: 1\n"})
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "f.yaml").write_bytes(b"x: 1\n")
    (root / "a" / "f.yaml").unlink()
    (root / "a").rmdir()
    (root / "a").symlink_to(outside)
    write_tree(root, {"a/f.yaml": b"x: 1\n"})
    assert os.stat(root / "a" / "f.yaml").st_ino != os.stat(outside / "f.yaml").st_ino
    assert not (root / "a").is_symlink() and (outside / "f.yaml").read_bytes() == b"x: 1\n"


def test_a_file_another_build_swapped_in_meanwhile_is_not_linked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The old file is read through its descriptor, then linked by its path: if another build's tree took
    its place in between, the link is the other build's file, and this build writes its own."""
    root = tmp_path / "out" / "stack"
    write_tree(root, {"f.yaml": b"replicas: 1\n"})
    link = os.link

    def swapped_first(source: str, destination: str) -> None:
        os.replace(os.fspath(root / "f.yaml"), os.fspath(tmp_path / "gone.yaml"))
        (root / "f.yaml").write_bytes(b"replicas: 9\n")  # the other build's file, the same size
        os.chmod(root / "f.yaml", os.stat(tmp_path / "gone.yaml").st_mode & 0o777)
        link(source, destination)

    monkeypatch.setattr(tree.os, "link", swapped_first)
    write_tree(root, {"f.yaml": b"replicas: 1\n"})
    assert (root / "f.yaml").read_bytes() == b"replicas: 1\n"
