"""The installed entry points of a group, remembered between runs beside stackc's bytecode.

Finding them with ``importlib.metadata`` imports the ``email`` package and reads the metadata of
every installed distribution: ~20 ms of every command, as long as compiling a small spec. What it
finds depends only on the distributions on ``sys.path``, and installing, upgrading or removing one
adds or removes a ``.dist-info`` (or ``.egg-info``) folder in a ``sys.path`` folder, which changes
that folder's modification time: importlib.metadata's own lookup cache rests on the same fact
within a process, and stevedore keeps entry points across processes the same way. So what
importlib.metadata found is kept under a key of ``sys.path``, each of its folders' modification
time, and the metadata folders in it with theirs and their ``entry_points.txt``'s (timestamps are
coarse: the names tell a quick install from a removal; setuptools rewrites an ``.egg-info``'s file in
place), and asked again when any of these differs.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import sys
from functools import reduce
from pathlib import Path
from typing import Any, NamedTuple

from stackc.codecache import beside_bytecode, write_cache_file

#: beyond this many keys (environments sharing one checkout, say), a rewrite keeps only the current one
_MAX_KEYS = 8
_FORMAT = "stackc-entry-points 1"
_METADATA = (".dist-info", ".egg-info", ".egg")


class EntryPoint(NamedTuple):
    """An entry point as importlib.metadata finds it, with the name and version of its distribution."""

    name: str
    value: str  # as written: "module:attribute"
    module: str
    attr: str | None
    distribution: str | None  # None: importlib.metadata knows no distribution providing it
    version: str | None

    def load(self) -> Any:
        """What ``importlib.metadata.EntryPoint.load`` returns: the module, or the attribute in it."""
        return reduce(getattr, self.attr.split(".") if self.attr else (), importlib.import_module(self.module))


def entry_points(group: str, cache: Path | None = None) -> list[EntryPoint]:
    """The entry points of ``group`` in importlib.metadata's order, from the cache file when nothing was
    installed or removed since it was written (``cache``: its path, by default beside the bytecode)."""
    path = cache if cache is not None else beside_bytecode("entry-points", ".json")
    key = _key(group) if path is not None else None
    stored = _read(path) if key is not None and path is not None else {}
    if key is not None and key in stored:
        return stored[key]
    found = _found(group)
    if key is not None and path is not None and not sys.dont_write_bytecode:
        _write(path, {**(stored if len(stored) < _MAX_KEYS else {}), key: found})
    return found


def _found(group: str) -> list[EntryPoint]:
    import importlib.metadata

    found = []
    distributions: dict[int, tuple[str, str]] = {}
    for entry in importlib.metadata.entry_points(group=group):
        dist = entry.dist
        if dist is not None and id(dist) not in distributions:  # its metadata file is parsed on every access
            metadata = dist.metadata
            distributions[id(dist)] = (metadata["Name"], metadata["Version"])
        name, version = distributions[id(dist)] if dist is not None else (None, None)
        found.append(EntryPoint(entry.name, entry.value, entry.module, entry.attr, name, version))
    return found


def _key(group: str) -> str | None:
    """What the entry points found depend on, digested; None where a finder other than Python's path finder
    also provides distributions (it may find them anywhere: nothing is cached)."""
    import importlib.machinery

    if any(hasattr(finder, "find_distributions") and finder is not importlib.machinery.PathFinder
           for finder in sys.meta_path):
        return None
    folders = []
    for entry in sys.path:
        folder = os.path.abspath(entry or ".")
        try:
            modified = os.stat(folder).st_mtime_ns
        except OSError:
            folders.append([folder, None, []])
            continue
        folders.append([folder, modified, _metadata_folders(folder)])
    key = json.dumps([_FORMAT, group, folders], separators=(",", ":"))
    return hashlib.blake2b(key.encode("utf-8", "surrogateescape"), digest_size=16).hexdigest()


def _metadata_folders(folder: str) -> list[list[Any]]:
    """The distributions' metadata in ``folder``, each with its modification time and its
    ``entry_points.txt``'s (which setuptools rewrites in place for a ``develop`` install)."""
    try:
        with os.scandir(folder) as entries:
            found = []
            for entry in entries:
                if entry.name.lower().endswith(_METADATA):
                    found.append([entry.name, _modified(entry.path), _modified(os.path.join(entry.path, "entry_points.txt"))])
    except OSError:  # a zip file: its modification time is its content's
        return []
    return sorted(found)


def _modified(path: str) -> int | None:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return None


def _read(path: Path) -> dict[str, list[EntryPoint]]:
    """The stored entry points by key; an absent, damaged or foreign file holds none."""
    try:
        content = json.loads(path.read_bytes())
        if not (isinstance(content, dict) and content.get("format") == _FORMAT and isinstance(content.get("keys"), dict)):
            return {}
        stored = {}
        for key, entries in content["keys"].items():
            if not isinstance(entries, list) or not all(_valid(entry) for entry in entries):
                return {}
            stored[key] = [EntryPoint(*entry) for entry in entries]
        return stored
    except (OSError, ValueError):
        return {}


def _valid(entry: Any) -> bool:
    return (isinstance(entry, list) and len(entry) == len(EntryPoint._fields)
            and all(isinstance(part, str) for part in entry[:3])
            and all(part is None or isinstance(part, str) for part in entry[3:]))


def _write(path: Path, stored: dict[str, list[EntryPoint]]) -> None:
    write_cache_file(path, json.dumps({"format": _FORMAT, "keys": stored}, sort_keys=True).encode())
