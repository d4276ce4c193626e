"""Discovery through entry points: sorted, duplicates named, crashes attributed, order invisible."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest

from stackc import hookimpl
from stackc.cli import ExitCode
from stackc.plugins import LoadedPlugin, PluginConflict, build_registry, discover
from stackc.registry import Provider

REPO = Path(__file__).resolve().parents[2]


def fake_distribution(root: Path, dist: str, entry_points: dict[str, str], modules: dict[str, str]) -> Path:
    """An installed distribution made of a dist-info folder and modules, importable from ``root``."""
    info = root / f"{dist.replace('-', '_')}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[stackc]\n" + "".join(f"{k} = {v}\n" for k, v in entry_points.items()))
    for name, source in modules.items():
        (root / f"{name}.py").write_text(textwrap.dedent(source))
    return root


ENGINE_MODULE = """
    from stackc import hookimpl
    from stackc_plugins.engines.vllm import VllmEngine

    class Other(VllmEngine):
        name = "{name}"

    @hookimpl
    def stackc_add_engines(registry):
        registry.add_engine(Other())
"""


def run_cli(*args: str, path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(path), str(REPO / "compiler"), str(REPO / "plugins")])}
    return subprocess.run([sys.executable, "-m", "stackc", *args], capture_output=True, text=True, env=env, cwd=REPO)


def test_an_entry_point_name_taken_twice_names_both_distributions(tmp_path: Path) -> None:
    path = fake_distribution(tmp_path, "acme-plugins", {"vllm": "acme_vllm"}, {"acme_vllm": ENGINE_MODULE.format(name="x")})
    result = run_cli("plugins", path=path)
    assert result.returncode == ExitCode.INVALID
    assert "plugin 'vllm' is provided twice" in result.stderr
    assert "acme-plugins 1.0" in result.stderr and "stackc 0.1.0" in result.stderr
    assert "Traceback" not in result.stderr
    blocked = run_cli("plugins", "--disable-plugin", "vllm", path=path)
    assert blocked.returncode == 0 and "vllm" not in [line.split()[1] for line in blocked.stdout.splitlines()]


def test_an_engine_name_taken_twice_names_both_distributions(tmp_path: Path) -> None:
    path = fake_distribution(tmp_path, "acme-plugins", {"acme": "acme_engine"}, {"acme_engine": ENGINE_MODULE.format(name="vllm")})
    result = run_cli("plugins", path=path)
    assert result.returncode == ExitCode.INVALID
    assert "engine 'vllm' is provided twice: by acme-plugins 1.0 (acme) and by stackc 0.1.0 (vllm)" in result.stderr
    unblocked = run_cli("plugins", "--disable-plugin", "acme", path=path)
    assert unblocked.returncode == 0 and "acme" not in unblocked.stdout


def test_a_third_party_engine_is_listed_with_its_distribution(tmp_path: Path) -> None:
    path = fake_distribution(tmp_path, "acme-plugins", {"acme": "acme_engine"}, {"acme_engine": ENGINE_MODULE.format(name="acme")})
    result = run_cli("plugins", path=path)
    assert result.returncode == 0
    assert any(line.split()[:4] == ["engine", "acme", "acme-plugins", "1.0"] for line in result.stdout.splitlines())


def test_a_crashing_plugin_is_named_and_exits_3(tmp_path: Path) -> None:
    crash = """
        from stackc import hookimpl

        @hookimpl
        def stackc_add_targets(registry):
            raise RuntimeError("boom")
    """
    path = fake_distribution(tmp_path, "broken-plugin", {"broken": "broken_target"}, {"broken_target": crash})
    result = run_cli("check", "specs/prod.toml", path=path)
    assert result.returncode == ExitCode.INTERNAL
    assert "broken-plugin 1.0 (broken) crashed in stackc_add_targets: RuntimeError('boom')" in result.stderr
    assert "please report it to its authors" in result.stderr


def test_a_misspelt_hook_is_a_load_error() -> None:
    module = types.ModuleType("typo_plugin")

    @hookimpl
    def stackc_add_engine(registry):  # missing "s"
        pass

    module.stackc_add_engine = stackc_add_engine
    with pytest.raises(Exception, match="unknown hook 'stackc_add_engine'"):
        build_registry([LoadedPlugin(module, Provider("typo", "typo-dist", "1"))])


def test_discovery_is_sorted_by_entry_point_name() -> None:
    names = [p.provider.plugin for p in discover()]
    assert names == sorted(names) and "vllm" in names


def test_duplicate_detection_does_not_depend_on_order() -> None:
    plugins = discover()
    first = build_registry(plugins)
    second = build_registry(list(reversed(plugins)))
    assert sorted(first.engines) == sorted(second.engines)
    vllm = next(p for p in plugins if p.provider.plugin == "vllm")
    clone = types.ModuleType("clone")
    clone.stackc_add_engines = vllm.module.stackc_add_engines
    with pytest.raises(PluginConflict, match="engine 'vllm' is provided twice"):
        build_registry([LoadedPlugin(clone, Provider("clone", "clone-dist", "1")), *plugins])


def test_a_plugin_object_registers_its_marked_methods_and_none_of_its_properties_runs() -> None:
    class Plugin:
        @property
        def broken(self):
            raise AssertionError("a property ran while registering")

        @hookimpl
        def stackc_add_engines(self, registry):
            vllm = next(p for p in discover() if p.provider.plugin == "vllm")
            vllm.module.stackc_add_engines(registry)

    registry = build_registry([LoadedPlugin(Plugin(), Provider("object", "object-dist", "1"))])
    assert list(registry.engines) == ["vllm"]
