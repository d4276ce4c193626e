"""`.pre-commit-hooks.yaml` works under the real pre-commit, in a temporary git repository.

The hooks declare ``language: python`` (pre-commit installs stackc at the pinned rev); here they
run as ``language: system`` so pre-commit uses this environment's stackc and needs no network.
Everything else — entry, args, pass_filenames, the files filter, exit codes — is the definition's.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
HOOKS = {hook["id"]: hook for hook in yaml.safe_load((REPO / ".pre-commit-hooks.yaml").read_text())}


@pytest.fixture
def project(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    root = tmp_path / "project"
    (root / "specs").mkdir(parents=True)
    shutil.copy(REPO / "specs" / "prod.toml", root / "specs" / "prod.toml")
    shutil.copytree(REPO / "out" / "prod", root / "out" / "prod")
    hooks = [{**hook, "language": "system", "args": ["specs/prod.toml"]} for hook in HOOKS.values()]
    (root / ".pre-commit-config.yaml").write_text(yaml.safe_dump({"repos": [{"repo": "local", "hooks": hooks}]}))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "PRE_COMMIT_HOME": str(tmp_path / "pre-commit-home"), "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t", "GIT_CONFIG_GLOBAL": os.devnull}
    for command in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "stack"]):
        subprocess.run(command, cwd=root, env=env, check=True)
    return root, env


def pre_commit(root: Path, env: dict[str, str], hook: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pre_commit", "run", "--all-files", "--color", "never", hook],
                          cwd=root, env=env, capture_output=True, text=True, timeout=300)


def test_the_hooks_are_stackc_commands_pre_commit_installs_itself():
    assert set(HOOKS) == {"stackc-diff", "stackc-check"}
    for hook in HOOKS.values():
        assert hook["language"] == "python" and hook["entry"].split()[0] == "stackc"
        assert hook["pass_filenames"] is False  # the specs come from args, the whole stack is compared


def test_diff_hook_passes_on_fresh_output_and_fails_on_a_stale_one(project):
    root, env = project
    clean = pre_commit(root, env, "stackc-diff")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    spec = root / "specs" / "prod.toml"
    spec.write_text(spec.read_text().replace("replicas = 2\n", "replicas = 3\n", 1))
    subprocess.run(["git", "add", "-A"], cwd=root, env=env, check=True)
    stale = pre_commit(root, env, "stackc-diff")
    assert stale.returncode == 1
    assert "+    replicas: 3" in stale.stdout and "2 files changed, +2 -2" in stale.stdout
    assert pre_commit(root, env, "stackc-check").returncode == 0
