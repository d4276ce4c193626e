"""Generated code compiled once: a cached entry is the code ``compile`` makes, and the cache is optional."""

from __future__ import annotations

import __future__
import marshal
import subprocess
import sys
import types
from pathlib import Path

import attr._make
import cattrs.gen
import pytest

from stackc import codecache

SOURCE = "def __init__(self, a):\n    self.a = a\n"


def _generator(with_annotations: bool) -> types.ModuleType:
    module = types.ModuleType("generator")
    if with_annotations:
        module.annotations = __future__.annotations  # what `from __future__ import annotations` binds
    return module


def test_an_entry_is_what_compile_makes_and_is_read_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    cache = codecache.CodeCache(tmp_path / "__pycache__" / "generated.marshal")
    compiled = cache.compile_for(_generator(True))(SOURCE, "<generated A>", "exec")
    assert compiled == compile(SOURCE, "<generated A>", "exec", __future__.annotations.compiler_flag, True)
    cache.save()
    again = codecache.CodeCache(cache.path)
    assert again.compile_for(_generator(True))(SOURCE, "<generated A>", "exec") == compiled
    assert again.new == {}
    # another name, another source or other __future__ flags are other entries
    again.compile_for(_generator(False))(SOURCE, "<generated A>", "exec")
    again.compile_for(_generator(True))(SOURCE, "<generated B>", "exec")
    again.compile_for(_generator(True))(SOURCE + "\n", "<generated A>", "exec")
    assert len(again.new) == 3


def test_the_flags_are_those_the_generating_module_inherits() -> None:
    for module in (attr._make, cattrs.gen):
        cached = codecache.CodeCache(Path("/nonexistent/cache")).compile_for(module)
        code = cached("x: int = 1\n", "<generated>", "exec")
        namespace: dict[str, object] = {}
        exec(code, namespace)
        assert namespace["__annotations__"] == {"x": "int"}  # both modules: from __future__ import annotations


@pytest.mark.parametrize("content", [b"", b"garbage", codecache._FORMAT + b"\x00not marshal", codecache._FORMAT
                                     + marshal.dumps([1, 2])])
def test_a_damaged_or_foreign_file_is_ignored(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "generated.marshal"
    path.write_bytes(content)
    cache = codecache.CodeCache(path)
    assert cache.entries == {}
    assert cache.compile_for(_generator(True))(SOURCE, "<generated>", "exec").co_filename == "<generated>"


def test_nothing_is_written_where_python_writes_no_bytecode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = codecache.CodeCache(tmp_path / "generated.marshal")
    cache.compile_for(_generator(True))(SOURCE, "<generated>", "exec")
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    cache.save()
    assert not cache.path.exists()
    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    (tmp_path / "a-file").write_text("")
    unwritable = codecache.CodeCache(tmp_path / "a-file" / "__pycache__" / "generated.marshal")
    unwritable.new = dict(cache.new)
    unwritable.save()  # no error: the cache is optional
    assert (tmp_path / "a-file").read_text() == ""


def test_a_full_cache_keeps_only_what_was_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    monkeypatch.setattr(codecache, "_MAX_ENTRIES", 2)
    cache = codecache.CodeCache(tmp_path / "generated.marshal")
    cached = cache.compile_for(_generator(True))
    for name in "ABC":
        cached(SOURCE, f"<generated {name}>", "exec")
    cache.save()
    assert len(codecache.CodeCache(cache.path).entries) == 3  # all used by this process
    later = codecache.CodeCache(cache.path)
    later.compile_for(_generator(True))(SOURCE, "<generated D>", "exec")
    later.save()
    assert len(codecache.CodeCache(cache.path).entries) == 1


def test_a_source_that_differs_per_process_is_never_kept(tmp_path: Path) -> None:
    cache = codecache.CodeCache(tmp_path / "generated.marshal")
    code = cache.compile_for(attr._make)("def __hash__(self):\n    return hash((12345, self.a))\n", "<gen>", "exec")
    assert code.co_filename == "<gen>"
    assert cache.new == {} and cache.used == set()


def test_stackc_models_generate_the_same_source_in_every_process() -> None:
    """Only then can a cached entry be hit: attrs' own __hash__ embeds hash() of a string (PYTHONHASHSEED)."""
    script = ("import hashlib, attr._make\n"
              "from stackc.codecache import _CACHE\n"
              "from stackc import pipeline, plugins\n"
              "plugins.load_registry()\n"
              "print(len(_CACHE.used), hashlib.sha256(b''.join(sorted(_CACHE.used))).hexdigest())\n")
    seen = {subprocess.run([sys.executable, "-B", "-c", script], check=True, capture_output=True, text=True,
                           env={**__import__("os").environ, "PYTHONHASHSEED": seed}).stdout
            for seed in ("1", "2")}
    assert len(seen) == 1, seen
    assert int(seen.pop().split()[0]) > 100


def test_a_python_that_keeps_no_bytecode_compiles_as_usual(monkeypatch: pytest.MonkeyPatch) -> None:
    module = _generator(True)
    monkeypatch.setattr(sys.implementation, "cache_tag", None)
    codecache.cache_generated_code(module)
    assert not hasattr(module, "compile")


def test_only_the_entries_used_are_unmarshalled_and_a_damaged_one_is_compiled_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    cache = codecache.CodeCache(tmp_path / "generated.marshal")
    for name in "ABC":
        cache.compile_for(_generator(True))(SOURCE, f"<generated {name}>", "exec")
    cache.save()
    later = codecache.CodeCache(cache.path)
    later.compile_for(_generator(True))(SOURCE, "<generated A>", "exec")
    assert len(later.entries) == 3 and len(later.loaded) == 1 and later.new == {}
    damaged = codecache.CodeCache(cache.path)
    damaged.entries = {key: b"\x00" for key in damaged.entries}
    code = damaged.compile_for(_generator(True))(SOURCE, "<generated B>", "exec")
    assert code.co_filename == "<generated B>" and len(damaged.new) == 1
