"""The CLI as users and CI scripts see it: exit codes, streams, messages."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from stackc.cli import ExitCode

REPO = Path(__file__).resolve().parents[2]

TRACEBACK = "Traceback (most recent call last)"


def copy_project(repo: Path, tmp_path: Path) -> Path:
    shutil.copytree(repo / "specs", tmp_path / "specs")
    shutil.copytree(repo / "out", tmp_path / "out")
    return tmp_path


def test_diff_is_clean_on_the_committed_output_and_shows_exactly_a_replicas_change(repo, tmp_path, run_stackc):
    project = copy_project(repo, tmp_path)
    clean = run_stackc("diff", "specs/prod.toml", cwd=project)
    assert clean.returncode == ExitCode.OK, clean.stdout + clean.stderr
    assert clean.stdout == ""
    spec = project / "specs" / "prod.toml"
    text = spec.read_text()
    spec.write_text(text.replace("replicas = 2\n", "replicas = 3\n", 1))
    changed = run_stackc("diff", "specs/prod.toml", cwd=project)
    assert changed.returncode == ExitCode.DIFFERENCES
    removed = [l for l in changed.stdout.splitlines() if l.startswith("-") and not l.startswith("---")]
    added = [l for l in changed.stdout.splitlines() if l.startswith("+") and not l.startswith("+++")]
    # the Deployment and the Helm chart's default value: one change, seen in both places
    assert len(removed) == len(added) == 2
    assert all(re.fullmatch(r"-\s+replicas: 2", line) for line in removed)
    assert all(re.fullmatch(r"\+\s+replicas: 3", line) for line in added)
    assert "out/prod/manifests/llama-8b/deployment.yaml" in changed.stdout
    assert "out/prod/helm/prod/values.yaml" in changed.stdout
    assert "is stale" in changed.stderr


def test_misspelt_engine_is_one_located_line_with_a_suggestion(tmp_path, run_stackc):
    spec = tmp_path / "s.toml"
    spec.write_text('version = 1\n[stack]\nname = "s"\n[models.llama]\nengine = "vlm"\nmodel = "org/m"\n'
                    "accelerators = { count = 1 }\n")
    result = run_stackc("check", str(spec))
    assert result.returncode == ExitCode.INVALID
    errors = [l for l in result.stderr.splitlines() if "error[" in l]
    assert errors == [f"{spec}:5:10: error[E010] models.llama.engine: unknown engine 'vlm' (hint: did you mean 'vllm'?)"]
    assert TRACEBACK not in result.stderr


def test_three_independent_mistakes_are_reported_in_one_run(repo, run_stackc):
    result = run_stackc("build", "specs/invalid/typos.toml", "-o", "/nonexistent/never-written")
    assert result.returncode == ExitCode.INVALID
    errors = [l for l in result.stderr.splitlines() if "error[" in l]
    assert [re.match(r"^\S+:(\d+):(\d+): error\[\w+\] (\S+):", l).groups() for l in errors] == [
        ("8", "10", "models.llama.engine"),
        ("10", "12", "models.llama.replicas"),
        ("11", "29", "models.llama.accelerators.resourse"),
    ]
    assert "did you mean 'resource'?" in errors[2]
    assert result.stderr.rstrip().endswith("stackc: 3 errors")


def test_json_format_is_a_versioned_envelope(repo, run_stackc):
    result = run_stackc("check", "specs/invalid/typos.toml", "--format", "json")
    payload = json.loads(result.stdout)
    assert payload["stackc"] == 1 and len(payload["diagnostics"]) == 3
    assert payload["diagnostics"][0] | {"hint": None} == {
        "code": "E010", "severity": "error", "path": "models.llama.engine", "file": "specs/invalid/typos.toml",
        "line": 8, "column": 10, "message": "unknown engine 'vlm'", "hint": None}


def test_overlays_and_set_override_in_order(tmp_path, run_stackc):
    base = tmp_path / "base.toml"
    base.write_text('version = 1\n[stack]\nname = "app"\n[models.m]\nengine = "vllm"\nmodel = "org/m"\n'
                    "replicas = 1\naccelerators = { count = 1 }\n")
    prod = tmp_path / "prod.toml"
    prod.write_text("[models.m]\nreplicas = 2\n")
    result = run_stackc("explain", str(base), str(prod), "--set", "models.m.replicas=5", "--format", "json")
    assert json.loads(result.stdout)["spec"]["models"]["m"]["replicas"] == 5
    result = run_stackc("explain", str(base), str(prod), "--format", "json")
    assert json.loads(result.stdout)["spec"]["models"]["m"]["replicas"] == 2
    bad = run_stackc("check", str(base), "--set", "models.m.replicas=two")
    assert bad.returncode == ExitCode.INVALID
    assert "--set:1:19: error[E006] models.m.replicas: expected an integer" in bad.stderr


def test_build_writes_check_writes_nothing(tmp_path, repo, run_stackc):
    out = tmp_path / "out"
    assert run_stackc("check", "specs/prod.toml", "-o", str(out)).returncode == 0
    assert not out.exists()
    result = run_stackc("build", "specs/prod.toml", "-o", str(out), "--format", "json")
    assert result.returncode == 0, result.stderr
    assert "manifests/llama-8b/deployment.yaml" in json.loads(result.stdout)["files"]
    assert (out / "prod" / "manifests" / "llama-8b" / "deployment.yaml").is_file()


def test_init_writes_a_spec_that_builds(tmp_path, run_stackc):
    spec = tmp_path / "demo.toml"
    assert run_stackc("init", str(spec)).returncode == 0
    assert run_stackc("init", str(spec)).returncode == ExitCode.INVALID  # never overwrites
    result = run_stackc("build", str(spec), "-o", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr


def test_schema_is_valid_json_schema_and_accepts_the_example_specs(repo, run_stackc):
    import tomllib

    import jsonschema

    result = run_stackc("schema")
    schema = json.loads(result.stdout)
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    for spec in (repo / "specs").rglob("*.toml"):
        if "invalid" in spec.parts:
            continue
        data = tomllib.loads(spec.read_text())
        if "version" not in data:
            continue  # an overlay fragment
        assert list(validator.iter_errors(data)) == [], spec
    assert (repo / "docs" / "stackc.schema.json").read_text() == result.stdout, "run: stackc schema > docs/stackc.schema.json"


def test_plugins_lists_engines_and_targets_with_their_distribution(run_stackc):
    result = run_stackc("plugins", "--format", "json")
    rows = {(p["kind"], p["name"]): p for p in json.loads(result.stdout)["plugins"]}
    assert rows[("engine", "vllm")]["distribution"] == "stackc"
    assert rows[("target", "manifests")]["entry_point"] == "manifests"
    text = run_stackc("plugins").stdout
    assert re.search(r"^engine\s+vllm\s+stackc 0\.1\.0", text, re.M)


def test_usage_errors_exit_2(run_stackc):
    assert run_stackc("build").returncode == ExitCode.INVALID
    assert run_stackc("frobnicate").returncode == ExitCode.INVALID
    missing = run_stackc("check", "no/such.toml")
    assert missing.returncode == ExitCode.INVALID and "spec file not found" in missing.stderr


def test_unknown_target_from_the_command_line(run_stackc):
    result = run_stackc("check", "specs/prod.toml", "--target", "manifest")
    assert result.returncode == ExitCode.INVALID
    assert "unknown target 'manifest'" in result.stderr and "did you mean 'manifests'?" in result.stderr


def test_import_stackc_stays_lean(run_stackc):
    import subprocess
    import sys

    code = ("import sys, stackc; heavy = [m for m in ('kubernetes', 'httpx', 'cattrs', 'tomlkit', 'yaml') "
            "if m in sys.modules]; print(heavy)")
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert output.strip() == "[]"


@pytest.mark.parametrize("spec", sorted(str(p.relative_to(REPO)) for p in (REPO / "specs").rglob("*.toml")
                                        if "invalid" not in p.parts))
def test_explain_works_on_every_example_spec_as_toml_and_json(spec: str, capsys) -> None:
    import tomllib

    from stackc.cli import main

    assert main(["explain", str(REPO / spec)]) == ExitCode.OK
    explained = tomllib.loads(capsys.readouterr().out)
    assert main(["explain", "--format", "json", str(REPO / spec)]) == ExitCode.OK
    assert json.loads(capsys.readouterr().out)["spec"] == explained


def test_diff_summarises_each_changed_file_with_its_objects(repo, tmp_path, run_stackc):
    project = copy_project(repo, tmp_path)
    spec = project / "specs" / "prod.toml"
    spec.write_text(spec.read_text().replace("replicas = 2\n", "replicas = 3\n", 1))
    (project / "out" / "prod" / "monitoring" / "dashboard.yaml").unlink()
    changed = run_stackc("diff", "specs/prod.toml", cwd=project)
    assert changed.returncode == ExitCode.DIFFERENCES
    lines = changed.stderr.splitlines()
    assert re.search(r"^  changed  manifests/llama-8b/deployment\.yaml +\+1 -1 +Deployment/prod-llama-8b$", changed.stderr,
                     re.M), changed.stderr
    assert re.search(r"^  added    monitoring/dashboard\.yaml +\+\d+ -0 +ConfigMap/prod-dashboard$", changed.stderr, re.M)
    assert lines[-1].startswith("stackc: 3 files changed, +")
    envelope = json.loads(run_stackc("diff", "specs/prod.toml", "--format", "json", cwd=project).stdout)
    assert envelope["changed"] == [f["path"] for f in envelope["files"]]
    assert envelope["summary"] == lines[-1].removeprefix("stackc: ")
