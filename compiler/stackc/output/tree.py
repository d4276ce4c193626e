"""stackc owns ``OUT/STACK/``: it is replaced whole and atomically, or left untouched.

A build is written to a temporary sibling, then swapped in with one ``renameat2
(RENAME_EXCHANGE)`` on Linux. Where the file system can't exchange, it takes two renames
(``STACK`` to ``.STACK.old``, the new tree to ``STACK``); a kill between them leaves only
``.STACK.old``, which readers (``diff``, ``--check``) read as the tree and the next build puts
back before writing. A manifest of the files stackc wrote lets it prune stale files and refuse to
delete anything it didn't write.
"""

from __future__ import annotations

import ctypes
import functools
import os
import shutil
import stat
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import NamedTuple

MANIFEST = ".stackc-manifest"
#: threads creating files, which overlap the file system's waits; a 200-model build (~400 files) here, with
#: one, two and four: anew on a disk 55, 53, 48 ms, again on a disk 15, 15, 16 ms, again on a tmpfs 9, 9-12,
#: 9-15 ms (more threads contend for the interpreter; again, most files are linked from the old tree)
_WRITERS = 2
_MANIFEST_HEADER = "# Files written by stackc; do not edit. stackc replaces this folder on every build.\n"


class OutputError(Exception):
    """The output folder can't be written: it holds files stackc must not overwrite, or the file system refused."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.hint = hint


def read_tree(root: Path, prefixes: tuple[str, ...] = ("",)) -> dict[str, bytes]:
    """The files stackc wrote under ``root`` (per its manifest) whose paths start with one of ``prefixes``."""
    root = _current(root)
    return {name: (root / name).read_bytes() for name in owned_files(root)
            if name.startswith(prefixes) and (root / name).is_file()}


def owned_files(root: Path) -> list[str]:
    """The relative paths stackc wrote under ``root``, from its manifest (the files are not read)."""
    path = _current(root) / MANIFEST
    if not path.exists():
        return []
    return [line for line in path.read_text("utf-8").splitlines() if line and not line.startswith("#")]


def _foreign_files(root: Path) -> list[str]:
    if not root.exists():
        return []
    owned = set(owned_files(root)) | {MANIFEST}
    found = []
    for folder, _, names in os.walk(root):
        prefix = Path(folder).relative_to(root).as_posix()
        found += [name if prefix == "." else f"{prefix}/{name}" for name in names]
    return sorted(name for name in found if name not in owned)


def write_tree(root: Path, files: Mapping[str, bytes], keep_prefixes: Iterable[str] = ()) -> None:
    """Replace ``root`` with exactly ``files`` (plus the kept old files under ``keep_prefixes``).

    Refuses, writing nothing, when ``root`` holds files stackc did not write; a file-system
    failure leaves ``root`` as it was and is an ``OutputError`` naming the path.
    """
    try:
        _write_tree(root, files, keep_prefixes)
    except OSError as error:
        where = os.fsdecode(error.filename or root)
        problem = ("a file is in the way: a folder is needed there"
                   if isinstance(error, (FileExistsError, NotADirectoryError)) else error.strerror or str(error))
        raise OutputError(f"cannot write {where}: {problem}",
                          "choose another --out, or check that folder's permissions") from error


def _write_tree(root: Path, files: Mapping[str, bytes], keep_prefixes: Iterable[str]) -> None:
    _recover(root)
    if root.exists() and not (root / MANIFEST).exists() and any(root.iterdir()):
        raise OutputError(f"{root} exists and was not written by stackc (no {MANIFEST}); "
                          "move it away or choose another --out")
    foreign = _foreign_files(root)
    if foreign:
        raise OutputError(f"{root} holds files stackc did not write: {', '.join(foreign[:5])}"
                          + (" …" if len(foreign) > 5 else "") + "; move them away first")
    merged = dict(files)
    prefixes = tuple(p.rstrip("/") + "/" for p in keep_prefixes)
    if prefixes:
        for name, content in read_tree(root, prefixes).items():
            merged.setdefault(name, content)
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = root.parent / f".{root.name}.new-{os.urandom(6).hex()}"  # as secrets.token_hex, without its imports
    staging.mkdir()  # not tempfile.mkdtemp: the folder swapped in gets the user's umask, not 0700
    try:
        base = os.fspath(staging)  # plain strings: pathlib costs more than creating a file on a tmpfs
        for folder in sorted({os.path.dirname(name) for name in merged}):
            os.makedirs(os.path.join(base, folder), exist_ok=True)
        manifest = os.path.join(base, MANIFEST)
        _write(manifest, (_MANIFEST_HEADER + "".join(f"{n}\n" for n in sorted(merged))).encode())
        fresh = os.stat(manifest)  # what a file written now is like: the previous build's unchanged ones are kept
        previous = _Previous(os.fspath(root), (stat.S_IMODE(fresh.st_mode), fresh.st_uid, fresh.st_gid)) \
            if root.is_dir() and not root.is_symlink() and hasattr(os, "getuid") else None
        # creating files waits on the file system, not the CPU: a few threads overlap the waits, each
        # writing its share (a task per file would cost more in handing over than a file takes)
        items = list(merged.items())
        _write_shares(base, [items[start::_WRITERS] for start in range(_WRITERS)], previous)
        _flush_to_disk(staging)
        _swap_in(staging, root)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def _write_shares(base: str, shares: list[list[tuple[str, bytes]]], previous: _Previous | None) -> None:
    """Each share in a thread of its own (plain threads: ``concurrent.futures`` imports ``logging``);
    the first share's error is raised. A file the previous build wrote exactly so is linked into the new
    tree rather than written again: on a disk, removing the old tree then frees nothing, and the flush
    before the swap has only the changed files to write."""
    errors: list[BaseException | None] = [None] * len(shares)

    def write_share(index: int) -> None:
        try:
            for name, content in shares[index]:
                path = os.path.join(base, name)
                if previous is None or not previous.linked(name, content, path):
                    _write(path, content)
        except BaseException as error:  # raised by the caller's thread, where write_tree reports it
            errors[index] = error

    writers = [threading.Thread(target=write_share, args=(index,)) for index in range(len(shares))]
    try:
        for writer in writers:
            writer.start()
    finally:  # even when interrupted: the staging folder is removed only once nothing writes into it
        for writer in writers:
            if writer.ident is not None:
                writer.join()
    for error in errors:
        if error is not None:
            raise error


class _Previous:
    """The tree a build replaces, whose files that are exactly what the build writes are linked into the new
    one. Exactly: a regular file of that tree alone (one link) inside its folders (no symbolic link on the
    way), of the mode, owner and group a file written now gets (``fresh``), holding the same bytes. Their
    modification times stay; extended attributes (ACLs, security labels) are the old file's, as a file
    written there would get them from the same folder."""

    def __init__(self, root: str, fresh: tuple[int, int, int]):
        self.root = root
        self.real_root = os.path.realpath(root)
        self.fresh = fresh
        self.folders: dict[str, bool] = {}

    def _plain_folder(self, folder: str) -> bool:
        """Whether ``folder`` of the tree is in it (no symbolic link on the way), once per folder."""
        plain = self.folders.get(folder)
        if plain is None:
            real = os.path.realpath(os.path.join(self.root, folder))
            plain = self.folders[folder] = real == os.path.join(self.real_root, folder).rstrip(os.sep)
        return plain

    def linked(self, name: str, content: bytes, path: str) -> bool:
        """Link the previous file of ``name`` at ``path`` when it is exactly ``content``; False: write it."""
        if not self._plain_folder(os.path.dirname(name)):
            return False
        old = os.path.join(self.root, name)
        try:
            descriptor = os.open(old, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except OSError:
            return False
        try:
            status = os.fstat(descriptor)
            if not (stat.S_ISREG(status.st_mode) and status.st_nlink == 1 and status.st_size == len(content)
                    and (stat.S_IMODE(status.st_mode), status.st_uid, status.st_gid) == self.fresh
                    and os.read(descriptor, len(content) + 1) == content):
                return False
            os.link(old, path)
            linked = os.lstat(path)
            if (linked.st_dev, linked.st_ino) == (status.st_dev, status.st_ino):
                return True
            os.unlink(path)  # another build swapped its tree in meanwhile: not the file that was read
            return False
        except OSError:  # a file system without hard links, among others: written as usual
            return False
        finally:
            os.close(descriptor)


def _write(path: str, content: bytes) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies
    try:
        view = memoryview(content)
        while view:
            view = view[os.write(descriptor, view):]
    finally:
        os.close(descriptor)


@functools.cache
def _libc() -> ctypes.CDLL | None:
    """The process's own symbols, the C library's among them (``find_library`` would run ``ldconfig``)."""
    try:
        return ctypes.CDLL(None, use_errno=True)
    except (OSError, TypeError):  # no such handle on this platform: the portable paths are taken
        return None


def _flush_to_disk(root: Path) -> None:
    """Make the new tree durable before it is swapped in: one syncfs(2) on Linux, not an fsync per file."""
    syncfs = getattr(_libc(), "syncfs", None)
    descriptor = os.open(root, os.O_RDONLY)
    try:
        if syncfs is not None and syncfs(descriptor) == 0:
            return
    finally:
        os.close(descriptor)
    for path in sorted(root.rglob("*"), reverse=True):
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2); False where unsupported."""
    renameat2 = getattr(_libc(), "renameat2", None)
    if renameat2 is None:
        return False
    result = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    return result == 0


def _swap_in(staging: Path, root: Path) -> None:
    if not root.exists():
        os.rename(staging, root)
        return
    if _exchange(staging, root):
        shutil.rmtree(staging)  # now holds the old tree
        return
    old = _old(root)
    shutil.rmtree(old, ignore_errors=True)
    os.rename(root, old)
    os.rename(staging, root)
    shutil.rmtree(old)


def _old(root: Path) -> Path:
    return root.with_name(f".{root.name}.old")


def _current(root: Path) -> Path:
    """Where the tree is: ``root``, or its old copy when a two-rename swap was cut between the renames.

    Readers don't repair (``--check`` never writes); the next build does (``_recover``)."""
    old = _old(root)
    return old if not root.exists() and old.is_dir() else root


def _recover(root: Path) -> None:
    """Undo a two-rename swap that was interrupted (the old tree comes back), and clear leftover staging folders."""
    old = _old(root)
    if old.exists():
        if root.exists():
            shutil.rmtree(old)
        else:
            os.rename(old, root)
    if root.parent.exists():
        for leftover in root.parent.glob(f".{root.name}.new-*"):
            shutil.rmtree(leftover, ignore_errors=True)


class FileChange(NamedTuple):
    """One file of a stale tree, for the reviewer's summary: what happened, how much, to which objects."""

    path: str
    status: str  # "added", "removed" or "changed"
    added: int
    removed: int
    objects: tuple[str, ...]  # Kind/name of the Kubernetes objects in the file that were added, removed or changed


def file_changes(old: Mapping[str, bytes], new: Mapping[str, bytes]) -> list[FileChange]:
    """Per file that differs: lines added and removed, and the objects in it (``diff --stat`` with kinds)."""
    import difflib  # only `stackc diff` compares trees: a build never imports it

    changes = []
    for name in sorted(set(old) | set(new)):
        before, after = old.get(name), new.get(name)
        if before == after:
            continue
        a = before.decode("utf-8", "replace").splitlines() if before is not None else []
        b = after.decode("utf-8", "replace").splitlines() if after is not None else []
        body = list(difflib.unified_diff(a, b, n=0, lineterm=""))[2:]
        status = "added" if before is None else "removed" if after is None else "changed"
        changes.append(FileChange(name, status, sum(1 for line in body if line.startswith("+")),
                                  sum(1 for line in body if line.startswith("-")),
                                  _changed_objects(name, before or b"", after or b"")))
    return changes


def _changed_objects(name: str, before: bytes, after: bytes) -> tuple[str, ...]:
    """The objects of a file that were added, removed or changed (a file holds a component's objects)."""
    old, new = _objects(name, before), _objects(name, after)
    return tuple(key for key in [*new, *(key for key in old if key not in new)] if old.get(key) != new.get(key))


def _objects(name: str, content: bytes) -> dict[str, object]:
    """Each object of a YAML file by ``Kind/name``."""
    if not content or not name.endswith(".yaml") or b"{{" in content:  # Helm templates are not YAML until rendered
        return {}
    import yaml

    try:
        documents = list(yaml.load_all(content, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)))
    except yaml.YAMLError:
        return {}
    return {f"{d['kind']}/{d['metadata']['name']}": d for d in documents
            if isinstance(d, dict) and isinstance(d.get("metadata"), dict) and "kind" in d
            and "name" in d["metadata"] and d["kind"] != "Kustomization"}


def diff_trees(old: Mapping[str, bytes], new: Mapping[str, bytes], old_label: str, new_label: str) -> str:
    """A unified diff of two file trees; empty when they are identical."""
    import difflib  # only `stackc diff` compares trees: a build never imports it

    chunks = []
    for name in sorted(set(old) | set(new)):
        before, after = old.get(name), new.get(name)
        if before == after:
            continue
        a = before.decode("utf-8", "replace").splitlines(keepends=True) if before is not None else []
        b = after.decode("utf-8", "replace").splitlines(keepends=True) if after is not None else []
        chunks.extend(difflib.unified_diff(
            a, b,
            fromfile=f"{old_label}/{name}" if before is not None else "/dev/null",
            tofile=f"{new_label}/{name}" if after is not None else "/dev/null",
        ))
    return "".join(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in chunks)
