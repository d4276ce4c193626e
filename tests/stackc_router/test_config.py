from __future__ import annotations

import subprocess
import sys

import pytest

from stackc_router.config import ConfigError, parse


def test_every_problem_is_reported_with_its_path() -> None:
    with pytest.raises(ConfigError) as error:
        parse({"version": 2, "listen": {"port": "80"}, "models": {
            "a": {"strategy": "prefx", "backends": ["ftp://x"], "colour": 1},
            "b": {"served_name": "x"},
        }})
    problems = error.value.problems
    assert "version: unsupported config version 2 (expected 1)" in problems
    assert any(p.startswith("models.a.strategy: 'prefx' is not one of") for p in problems)
    assert any(p.startswith("models.a.backends[0]: expected an http:// URL") for p in problems)
    assert any(p.startswith("models.a.colour: unknown key") for p in problems)
    assert "models.b: needs backends or discovery.kubernetes" in problems
    assert any(p.startswith("listen.port: expected int") for p in problems)


def test_the_cli_exits_2_with_readable_errors(tmp_path) -> None:
    path = tmp_path / "router.yaml"
    path.write_text("models:\n  a:\n    strategy: nope\n    backends: [http://127.0.0.1:1]\n")
    result = subprocess.run([sys.executable, "-m", "stackc_router", "--config", str(path)], capture_output=True, text=True)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "config error: models.a.strategy: 'nope' is not one of" in result.stderr


def test_a_missing_key_file_is_a_clear_error_not_a_traceback(tmp_path) -> None:
    path = tmp_path / "router.yaml"
    path.write_text("models:\n  a:\n    backends: [http://127.0.0.1:1]\n    upstream_auth: {api_key_file: /nope/key}\n")
    result = subprocess.run([sys.executable, "-m", "stackc_router", "--config", str(path)], capture_output=True, text=True)
    assert result.returncode == 2 and "Traceback" not in result.stderr and "/nope/key" in result.stderr
