"""Shared fixtures. ``stackc.testing`` (the plugin authors' kit) is loaded as a pytest plugin."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import settings

REPO = Path(__file__).resolve().parent.parent

# CI draws the same examples on every run, so a red build is the change's and reproduces; on a
# developer's machine each run draws new ones (and `python tests/bench/fuzz_specs.py` goes further)
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


@pytest.fixture
def repo() -> Path:
    return REPO


@pytest.fixture
def run_stackc(tmp_path):
    """Run the real CLI in a subprocess (exit codes and streams are API)."""

    def run(*args: str, cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "stackc", *args], cwd=cwd or REPO, capture_output=True, text=True,
            env={**os.environ, **(env or {})}, timeout=120,
        )

    return run
