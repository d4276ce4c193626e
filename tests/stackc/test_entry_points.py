"""The entry-point cache: what importlib.metadata finds, asked again whenever an installation changes."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
from pathlib import Path

import pytest

from stackc import entry_points as cache
from stackc.entry_points import EntryPoint, entry_points


@pytest.fixture
def writing(monkeypatch):
    """Bytecode (and so the cache) is written, as in an installation (the workplace sets -B)."""
    monkeypatch.setattr(sys, "dont_write_bytecode", False)


def distribution(folder: Path, name: str, entries: dict[str, str], version: str = "1.0") -> Path:
    info = folder / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text("[stackc-test]\n" + "".join(f"{k} = {v}\n" for k, v in entries.items()))
    return info


def fresh(group: str) -> list[tuple]:
    """importlib.metadata's own answer, as the cache records it."""
    return [(e.name, e.value, e.module, e.attr, e.dist.metadata["Name"] if e.dist else None,
             e.dist.metadata["Version"] if e.dist else None) for e in importlib.metadata.entry_points(group=group)]


def test_the_cached_answer_is_importlib_metadatas(tmp_path, writing):
    file = tmp_path / "cache.json"
    first = entry_points("stackc", file)
    assert file.exists() and [tuple(e) for e in first] == fresh("stackc")
    assert entry_points("stackc", file) == first  # read back from the file
    assert {e.name for e in first} >= {"vllm", "manifests", "helm"}
    assert first[0].distribution == "stackc"


def test_installing_removing_and_upgrading_a_distribution_is_seen(tmp_path, writing, monkeypatch):
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    file = tmp_path / "cache.json"
    assert entry_points("stackc-test", file) == []
    info = distribution(site, "acme", {"one": "acme.one:make"})
    assert [(e.name, e.module, e.attr, e.distribution) for e in entry_points("stackc-test", file)] == [
        ("one", "acme.one", "make", "acme")]
    os.rename(info, tmp_path / "gone")  # removed, within the same clock tick as it was installed
    assert entry_points("stackc-test", file) == []
    distribution(site, "acme", {"one": "acme.one:make", "two": "acme.two"}, version="2.0")
    assert [(e.name, e.version) for e in entry_points("stackc-test", file)] == [("one", "2.0"), ("two", "2.0")]


def test_an_entry_points_file_renamed_into_place_is_seen(tmp_path, writing, monkeypatch):
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    file = tmp_path / "cache.json"
    info = distribution(site, "acme", {"one": "acme.one"})
    assert [e.name for e in entry_points("stackc-test", file)] == ["one"]
    (tmp_path / "new.txt").write_text("[stackc-test]\nother = acme.other\n")
    os.replace(tmp_path / "new.txt", info / "entry_points.txt")  # as an editor or an installer writes it
    assert [e.name for e in entry_points("stackc-test", file)] == ["other"]


@pytest.mark.parametrize("content", [b"", b"not json", b'{"format": "other", "keys": {}}',
                                     b'{"format": "stackc-entry-points 1", "keys": {"k": [["x"]]}}'])
def test_a_damaged_or_foreign_file_is_replaced(tmp_path, writing, content):
    file = tmp_path / "cache.json"
    file.write_bytes(content)
    assert [tuple(e) for e in entry_points("stackc", file)] == fresh("stackc")
    assert file.read_bytes() != content


def test_nothing_is_written_without_bytecode_or_where_nothing_may_be(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    assert entry_points("stackc", tmp_path / "cache.json") and not (tmp_path / "cache.json").exists()
    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    assert [tuple(e) for e in entry_points("stackc", blocked / "cache.json")] == fresh("stackc")


def test_a_finder_that_provides_distributions_itself_is_never_cached(tmp_path, writing, monkeypatch):
    class Finder:
        @staticmethod
        def find_distributions(context=None):
            return iter(())

        @staticmethod
        def find_spec(*args):
            return None

    monkeypatch.setattr(sys, "meta_path", [*sys.meta_path, Finder])
    assert [tuple(e) for e in entry_points("stackc", tmp_path / "cache.json")] == fresh("stackc")
    assert not (tmp_path / "cache.json").exists()


def test_a_loaded_entry_point_is_what_importlib_metadata_loads():
    for found, entry in zip(entry_points("stackc", Path(os.devnull)),
                            importlib.metadata.entry_points(group="stackc"), strict=True):
        assert found.load() is entry.load()
    assert EntryPoint("x", "os.path:join", "os.path", "join", None, None).load() is os.path.join


def test_a_warm_command_does_not_import_importlib_metadata(tmp_path):
    """The point of the cache: the email package and every distribution's metadata stay unread."""
    env = {**os.environ, "PYTHONPYCACHEPREFIX": str(tmp_path)}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    code = ("import sys; before = set(sys.modules); from stackc.plugins import discover; discover(); "
            "print(sorted({'importlib.metadata', 'email'} & (set(sys.modules) - before)))")
    runs = [subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
            for _ in range(2)]
    assert runs[1].strip() == "[]", runs
    assert list(tmp_path.rglob("entry-points.*.json")), "the first run wrote the cache under the pycache prefix"


def test_the_default_file_is_beside_the_bytecode():
    path = cache.beside_bytecode("entry-points", ".json")
    assert path is not None and path.parent.name == "__pycache__" and path.suffix == ".json"


def test_an_entry_points_file_rewritten_in_place_is_seen(tmp_path, writing, monkeypatch):
    """setuptools' develop install rewrites an .egg-info's entry_points.txt in place (no rename)."""
    site = tmp_path / "site"
    info = site / "demo.egg-info"
    info.mkdir(parents=True)
    (info / "PKG-INFO").write_text("Metadata-Version: 2.1\nName: demo\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[stackc-test]\nold = demo.old\n")
    monkeypatch.syspath_prepend(str(site))
    file = tmp_path / "cache.json"
    assert [e.name for e in entry_points("stackc-test", file)] == ["old"]
    before = os.stat(info / "entry_points.txt").st_mtime_ns
    with open(info / "entry_points.txt", "w") as rewritten:  # in place, as setuptools' egg_info does
        rewritten.write("[stackc-test]\nnew = demo.new\n")
    os.utime(info / "entry_points.txt", ns=(before + 1, before + 1))  # a later time, even on a coarse clock
    assert [e.name for e in entry_points("stackc-test", file)] == ["new"]
