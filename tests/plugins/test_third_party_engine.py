"""A third-party engine, installed from its own distribution, appears and disappears with it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from stackc.testing import compile_text, objects, validate_kubernetes

HERE = Path(__file__).resolve().parent
SPEC = """
version = 1
[stack]
name = "tgi"
[models.mistral]
engine = "tgi"
model = "mistralai/Mistral-7B-Instruct-v0.3"
accelerators = { count = 2 }
serving = { tensor_parallel = 2, max_context = 8192 }
"""


@pytest.fixture(scope="module")
def environment(tmp_path_factory) -> Path:
    """A throw-away environment: the plugin's wheel built and installed into its own folder."""
    target = tmp_path_factory.mktemp("site")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--no-index", "--target", str(target), str(HERE / "stackc_tgi")], check=True)
    return target


def stackc(*args: str, site: Path | None, cwd: Path) -> subprocess.CompletedProcess:
    paths = [str(site)] if site else []
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([*paths, os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "stackc", *args], capture_output=True, text=True, env=env, cwd=cwd)


def test_plugins_lists_the_installed_engine_with_its_distribution(environment: Path, tmp_path: Path) -> None:
    result = stackc("plugins", site=environment, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert any(line.split()[:4] == ["engine", "tgi", "stackc-tgi", "1.0.0"] for line in result.stdout.splitlines())


def test_a_spec_using_it_compiles_and_validates(environment: Path, tmp_path: Path) -> None:
    spec = tmp_path / "tgi.toml"
    spec.write_text(SPEC)
    result = stackc("build", str(spec), "-o", str(tmp_path / "out"), site=environment, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    model = tmp_path / "out" / "tgi" / "manifests" / "mistral.yaml"
    [deployment] = [o for o in objects({"mistral.yaml": model.read_bytes()}) if o["kind"] == "Deployment"]
    assert validate_kubernetes(deployment) == []
    assert "--num-shard" in deployment["spec"]["template"]["spec"]["containers"][0]["args"]


def test_without_it_the_same_spec_fails_naming_the_known_engines(tmp_path: Path) -> None:
    spec = tmp_path / "tgi.toml"
    spec.write_text(SPEC)
    result = stackc("check", str(spec), site=None, cwd=tmp_path)
    assert result.returncode == 2
    line = next(l for l in result.stderr.splitlines() if "E010" in l)
    assert "unknown engine 'tgi'" in line
    assert "expected one of: 'command', 'llamacpp', 'neuron', 'ollama', 'ray-vllm', 'sglang', 'trtllm', 'vllm'" in line


def test_plugin_authors_test_it_in_process_with_stackc_testing() -> None:
    sys.path.insert(0, str(HERE / "stackc_tgi"))
    try:
        import stackc_tgi
    finally:
        sys.path.remove(str(HERE / "stackc_tgi"))
    compilation = compile_text(SPEC, plugins=[stackc_tgi])
    assert [c.engine for c in compilation.plan.components] == ["tgi"]
