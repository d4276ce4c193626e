"""The code attrs and cattrs generate, compiled once and kept beside stackc's bytecode.

attrs writes the source of each class's methods (``__init__``, ``__eq__``…) and cattrs of each
structure function, then compiles it, in every process: for stackc's ~150 classes that was a
sixth of a build (attrs issue #575 asks for exactly this cache; neither library has one). Python
keeps a module's bytecode in ``__pycache__``; this keeps the generated code there too, keyed by
the hash of its source, so a changed class compiles afresh and a stale entry is never used.

It works through the name both libraries call, ``compile``, bound in their module: should a
release stop calling it by that name, the cache only stops saving time. Only sources that are the
same in every process can hit: attrs' ``__hash__`` carries ``hash()`` of a string, which differs per
process (PYTHONHASHSEED), so a source defining one is compiled as usual, and stackc's models share a
``__hash__`` instead (``stackc.records``). The file is
read once per process and written at exit when something new was compiled, never where Python
would not write bytecode (``-B``, ``PYTHONDONTWRITEBYTECODE``, a read-only install).
"""

from __future__ import annotations

import __future__
import atexit
import contextlib
import hashlib
import importlib.util
import marshal
import os
import sys
from collections.abc import Callable
from pathlib import Path
from types import CodeType, ModuleType
from typing import Any

#: beyond this many entries, a rewrite keeps only what the last process used
_MAX_ENTRIES = 4000
_FORMAT = b"stackc-generated-code 2\n" + importlib.util.MAGIC_NUMBER
#: attrs' ``__hash__`` embeds ``hash()`` of a string, another number in every process: never cached
_PER_PROCESS = "def __hash__("


class CodeCache:
    """Compiled generated code by the digest of its source, loaded from and saved to one file.

    ``entries`` holds each one marshalled, unmarshalled when first used: the file also keeps what other
    commands and earlier versions generated (a build uses a third of it)."""

    def __init__(self, path: Path):
        self.path = path
        self.entries = self._read()
        self.used: set[bytes] = set()
        self.new: dict[bytes, CodeType] = {}
        self.loaded: dict[bytes, CodeType] = {}

    def _read(self) -> dict[bytes, bytes]:
        try:
            content = self.path.read_bytes()
            if content.startswith(_FORMAT):
                entries = marshal.loads(content[len(_FORMAT):])
                if isinstance(entries, dict) and all(type(v) is bytes for v in entries.values()):
                    return entries
        except (OSError, ValueError, EOFError, TypeError):  # absent, or not ours: compile as usual
            pass
        return {}

    def _entry(self, key: bytes) -> CodeType | None:
        code = self.loaded.get(key) or self.new.get(key)
        if code is None and key in self.entries:
            try:
                code = marshal.loads(self.entries[key])
            except (ValueError, EOFError, TypeError):  # a damaged entry: compiled again
                return None
            if type(code) is not CodeType:
                return None
            self.loaded[key] = code
        return code

    def compile_for(self, module: ModuleType) -> Callable[..., Any]:
        """``compile`` as ``module`` calls it (source text, a name, a mode), with the ``__future__`` flags
        its calls inherit, cached."""
        flags = __future__.annotations.compiler_flag if vars(module).get("annotations") is __future__.annotations else 0

        def cached_compile(source: Any, filename: Any, mode: str, *args: Any, **kwargs: Any) -> Any:
            if args or kwargs:
                return compile(source, filename, mode, *args, **kwargs)
            if not isinstance(source, str) or not isinstance(filename, str) or _PER_PROCESS in source:
                return compile(source, filename, mode, flags, True)  # the module's flags, not this one's
            key = hashlib.blake2b(f"{flags}\0{sys.flags.optimize}\0{filename}\0{mode}\0{source}".encode(),
                                  digest_size=16).digest()
            code = self._entry(key)
            if code is None:
                code = self.new[key] = compile(source, filename, mode, flags, True)
                if len(self.new) == 1:
                    atexit.register(self.save)
            self.used.add(key)
            return code

        return cached_compile

    def save(self) -> None:
        """Write the entries atomically; any failure leaves the old file (or none): the cache is optional."""
        if not self.new or sys.dont_write_bytecode:
            return
        entries = {**self.entries, **{key: marshal.dumps(code) for key, code in self.new.items()}}
        if len(entries) > _MAX_ENTRIES:
            entries = {key: code for key, code in entries.items() if key in self.used}
        if not write_cache_file(self.path, _FORMAT + marshal.dumps(entries)):
            return
        self.loaded.update(self.new)
        self.entries, self.new = entries, {}


def beside_bytecode(name: str, suffix: str) -> Path | None:
    """A cache file where Python puts this package's bytecode (PYTHONPYCACHEPREFIX included), under its own
    ``name``; None where this Python keeps no bytecode."""
    if sys.implementation.cache_tag is None:
        return None
    return Path(importlib.util.cache_from_source(str(Path(__file__).with_name(f"{name}.py")))).with_suffix(suffix)


def write_cache_file(path: Path, content: bytes) -> bool:
    """Write atomically; any failure (a read-only install) leaves the old file or none, and says False: a
    cache is optional."""
    partial = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial.write_bytes(content)
        os.replace(partial, path)
    except OSError:
        with contextlib.suppress(OSError):
            partial.unlink(missing_ok=True)
        return False
    return True


_CACHE = CodeCache(beside_bytecode("generated", ".marshal") or Path(os.devnull))


def cache_generated_code(*modules: ModuleType) -> None:
    """Let ``modules`` (attrs' and cattrs' code generators) compile through the cache, where this Python
    keeps bytecode at all (``sys.implementation.cache_tag``)."""
    if sys.implementation.cache_tag is None:
        return
    for module in modules:
        module.compile = _CACHE.compile_for(module)  # type: ignore[attr-defined]
