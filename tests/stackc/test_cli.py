"""The CLI as users and CI scripts see it: exit codes, streams, messages."""

from __future__ import annotations

import json
import re
import shlex
import shutil
from pathlib import Path

import pytest

from stackc.cli import ExitCode

REPO = Path(__file__).resolve().parents[2]

TRACEBACK = "Traceback (most recent call last)"
ENVELOPE_SCHEMA = json.loads((REPO / "docs" / "cli-output.schema.json").read_text())


def envelope(stdout: str) -> dict:
    """The JSON a command printed, checked against the envelope's published schema."""
    import jsonschema

    payload = json.loads(stdout)
    jsonschema.Draft202012Validator(ENVELOPE_SCHEMA).validate(payload)
    return payload


def rendered(diagnostic: dict) -> str:
    """A JSON diagnostic as the text output renders it: both must tell the same."""
    where = f"{diagnostic['file']}:{diagnostic['line']}:{diagnostic['column']}: " if diagnostic["file"] else ""
    path = f" {diagnostic['path']}:" if diagnostic["path"] else ""
    hint = f" (hint: {diagnostic['hint']})" if diagnostic["hint"] else ""
    return f"{where}{diagnostic['severity']}[{diagnostic['code']}]{path} {diagnostic['message']}{hint}"


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
    assert "out/prod/manifests/llama-8b.yaml" in changed.stdout
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
    payload = envelope(result.stdout)
    assert payload["stackc"] == 2 and payload["command"] == "check" and payload["exit_code"] == result.returncode == 2
    assert len(payload["diagnostics"]) == 3
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
    assert "manifests/llama-8b.yaml" in envelope(result.stdout)["files"]
    assert (out / "prod" / "manifests" / "llama-8b.yaml").is_file()


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
    rows = {(p["kind"], p["name"]): p for p in envelope(result.stdout)["plugins"]}
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
    assert envelope(capsys.readouterr().out)["spec"] == explained


def test_diff_summarises_each_changed_file_with_its_objects(repo, tmp_path, run_stackc):
    project = copy_project(repo, tmp_path)
    spec = project / "specs" / "prod.toml"
    spec.write_text(spec.read_text().replace("replicas = 2\n", "replicas = 3\n", 1))
    (project / "out" / "prod" / "monitoring" / "dashboard.yaml").unlink()
    changed = run_stackc("diff", "specs/prod.toml", cwd=project)
    assert changed.returncode == ExitCode.DIFFERENCES
    lines = changed.stderr.splitlines()
    # the model's file holds all its objects: the one that changed is named
    assert re.search(r"^  changed  manifests/llama-8b\.yaml +\+1 -1 +Deployment/prod-llama-8b$", changed.stderr,
                     re.M), changed.stderr
    assert re.search(r"^  added    monitoring/dashboard\.yaml +\+\d+ -0 +ConfigMap/prod-dashboard$", changed.stderr, re.M)
    assert lines[-1].startswith("stackc: 3 files changed, +")
    payload = envelope(run_stackc("diff", "specs/prod.toml", "--format", "json", cwd=project).stdout)
    assert payload["changed"] == [f["path"] for f in payload["files"]]
    assert payload["summary"] == lines[-1].removeprefix("stackc: ")


SPECS = sorted(str(p.relative_to(REPO)) for p in (REPO / "specs").rglob("*.toml"))


@pytest.mark.parametrize("spec", SPECS)
@pytest.mark.parametrize("command", ["check", "build", "diff"])
def test_json_carries_every_diagnostic_the_text_shows(spec, command, tmp_path, capsys, monkeypatch):
    from stackc.cli import main

    monkeypatch.chdir(REPO)
    monkeypatch.delenv("FORCE_COLOR", raising=False)
    outputs = {}
    for output_format in ("text", "json"):
        code = main([command, spec, "-o", str(tmp_path / output_format), "--format", output_format])
        outputs[output_format] = code, capsys.readouterr()
    (text_code, text), (json_code, as_json) = outputs["text"], outputs["json"]
    payload = envelope(as_json.out)
    shown = [line for line in text.err.splitlines() if re.search(r"\b(error|warning)\[[EW]\d{3}\]", line)]
    assert [rendered(d) for d in payload["diagnostics"]] == shown
    assert payload["exit_code"] == json_code == text_code and payload["command"] == command
    assert all(d["file"] and d["line"] for d in payload["diagnostics"]), "every spec diagnostic is located"


def test_the_example_specs_show_warnings_so_the_json_test_compares_some():
    from stackc.cli import main

    warned = [spec for spec in ("specs/gateway.toml", "specs/multinode.toml") if "warning[" in _stderr_of(main, spec)]
    assert warned == ["specs/gateway.toml", "specs/multinode.toml"]


def _stderr_of(main, spec: str) -> str:
    import contextlib
    import io

    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
        main(["check", str(REPO / spec)])
    return stderr.getvalue()


def test_files_of_two_stacks_are_a_located_error_that_says_how_to_build_both(run_stackc):
    result = run_stackc("check", "specs/prod.toml", "specs/local.toml")
    assert result.returncode == ExitCode.INVALID and TRACEBACK not in result.stderr
    errors = [line for line in result.stderr.splitlines() if "error[" in line]
    assert len(errors) == 1
    assert errors[0].startswith("specs/local.toml:7:8: error[E029] stack.name: stack 'local' here, "
                                "but specs/prod.toml is stack 'prod'")
    assert "`stackc build specs/prod.toml`, then `stackc build specs/local.toml`" in errors[0]
    assert 'for spec in specs/prod.toml specs/local.toml; do stackc build "$spec"; done' in errors[0]


def test_init_creates_missing_folders_and_refuses_a_file_in_the_way(tmp_path, run_stackc):
    spec = tmp_path / "newdir" / "deeper" / "stack.toml"
    created = run_stackc("init", str(spec))
    assert created.returncode == ExitCode.OK, created.stderr
    assert run_stackc("check", str(spec)).returncode == ExitCode.OK
    (tmp_path / "file").write_text("")
    blocked = run_stackc("init", str(tmp_path / "file" / "stack.toml"))
    assert blocked.returncode == ExitCode.INVALID and TRACEBACK not in blocked.stderr
    assert blocked.stderr.startswith(f"stackc: error: cannot write {tmp_path / 'file' / 'stack.toml'}: ")


def test_a_yaml_file_passed_as_a_spec_points_at_stackc_import(tmp_path, run_stackc):
    values = tmp_path / "values.yaml"
    values.write_text("servingEngineSpec:\n  modelSpec:\n    - name: llama\n")
    result = run_stackc("check", str(values))
    assert result.returncode == ExitCode.INVALID
    assert f"(hint: {values} looks like YAML, and specs are TOML; for a Helm chart's values (or KServe YAML) run " \
           f"`stackc import --from CHART {values} -o stack.toml`" in result.stderr


def test_diff_says_the_build_that_refreshes_the_folder_it_compared(tmp_path, run_stackc):
    out = tmp_path / "my out"
    result = run_stackc("diff", "specs/prod.toml", "-o", str(out), "--set", "models.llama-8b.replicas=3")
    assert result.returncode == ExitCode.DIFFERENCES
    command = f"stackc build specs/prod.toml --set models.llama-8b.replicas=3 -o '{out}'"
    assert f"is stale; run `{command}`" in result.stderr
    assert run_stackc("diff", "specs/prod.toml", "-o", str(out), "--format", "json").returncode == 1
    rebuilt = run_stackc(*shlex.split(command)[1:])  # the command as a shell passes it
    assert rebuilt.returncode == ExitCode.OK, rebuilt.stderr
    assert run_stackc("diff", "specs/prod.toml", "-o", str(out), "--set", "models.llama-8b.replicas=3").returncode == 0


def _on_a_terminal(args: list[str], env: dict[str, str]) -> str:
    """stderr of the CLI run with a pseudo-terminal as stderr (what `isatty()` sees in a shell)."""
    import os
    import pty
    import subprocess
    import sys

    leader, follower = pty.openpty()
    environment = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR")} | env
    try:
        subprocess.run([sys.executable, "-m", "stackc", *args], cwd=REPO, stdout=subprocess.DEVNULL, stderr=follower,
                       env=environment, timeout=120)
        os.close(follower)
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the terminal's other side is closed and drained
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(leader)
    return b"".join(chunks).decode()


def test_colour_on_a_terminal_unless_no_color(run_stackc):
    args = ["check", "specs/invalid/typos.toml"]
    coloured = _on_a_terminal(args, {"TERM": "xterm"})
    assert "\x1b[1;31merror[E010]\x1b[0m" in coloured
    assert "\x1b[" not in _on_a_terminal(args, {"TERM": "xterm", "NO_COLOR": "1"})
    assert "\x1b[" not in _on_a_terminal(args, {"TERM": "dumb"})
    assert "\x1b[" not in run_stackc(*args, env={"NO_COLOR": "", "FORCE_COLOR": ""}).stderr  # not a terminal
    assert "\x1b[1;31merror[E010]" in run_stackc(*args, env={"FORCE_COLOR": "1"}).stderr
    assert "\x1b[" not in run_stackc(*args, env={"FORCE_COLOR": "1", "NO_COLOR": "1"}).stderr


def test_bash_completion_completes_commands_options_and_choices(tmp_path, run_stackc):
    import subprocess

    script = tmp_path / "stackc.bash"
    script.write_text(run_stackc("completion", "bash").stdout)

    def complete(*words: str) -> list[str]:
        words_list = " ".join(f"'{w}'" for w in ("stackc", *words))
        probe = (f"source {script}; COMP_WORDS=({words_list}); COMP_CWORD={len(words)}; "
                 f"COMP_LINE='stackc {' '.join(words)}'; COMP_POINT=${{#COMP_LINE}}; "
                 "_shtab_stackc stackc; printf '%s\\n' \"${COMPREPLY[@]}\"")
        result = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, timeout=30, cwd=REPO)
        return sorted(result.stdout.split())

    assert complete("ch") == ["check"]
    assert "completion" in complete("")
    assert complete("check", "--for") == ["--format"]
    assert complete("check", "--format", "") == ["json", "text"]
    assert complete("completion", "") == ["bash", "fish", "zsh"]
    assert "specs/prod.toml" in complete("build", "specs/pro")


@pytest.mark.parametrize("shell", ["zsh", "fish"])
def test_zsh_and_fish_completion_name_every_command(shell, run_stackc):
    result = run_stackc("completion", shell)
    assert result.returncode == ExitCode.OK
    for command in ("build", "check", "diff", "explain", "import", "init", "completion", "--format", "--set"):
        assert command in result.stdout, command


def test_the_cli_module_imports_no_completion_or_spec_machinery():
    import subprocess
    import sys

    code = ("import sys, stackc.cli; print([m for m in ('shtab', 'cattrs', 'tomlkit', 'yaml', 'kubernetes') "
            "if m in sys.modules])")
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert output.strip() == "[]"


def test_import_json_carries_every_value_left_out(run_stackc, tmp_path):
    values = str(tmp_path / "values.yaml")
    Path(values).write_text("servingEngineSpec:\n  modelSpec:\n  - name: m\n    repository: vllm/vllm-openai\n"
                            "    tag: v0.10.1\n    modelURL: org/m\n    requestGPU: 1\n"
                            "    hostIPC: true\n    nodeName: node-1\n")  # two keys the importer leaves out
    text = run_stackc("import", "--from", "production-stack", values)
    as_json = run_stackc("import", "--from", "production-stack", values, "--format", "json")
    payload = envelope(as_json.stdout)
    shown = [line for line in text.stderr.splitlines() if "warning[W090]" in line]
    assert shown and [rendered(d) for d in payload["diagnostics"]] == shown
    assert payload["exit_code"] == as_json.returncode == text.returncode == ExitCode.DIFFERENCES
    assert payload["spec"] == text.stdout
    broken = run_stackc("import", "--from", "production-stack", "specs/prod.toml", "--format", "json")
    assert envelope(broken.stdout)["exit_code"] == broken.returncode == ExitCode.INVALID
    assert [d["code"] for d in envelope(broken.stdout)["diagnostics"]] == ["E090"]


def test_a_build_that_cannot_write_keeps_its_warnings_in_the_json(tmp_path, run_stackc):
    (tmp_path / "gateway").mkdir()
    (tmp_path / "gateway" / "mine.txt").write_text("not stackc's")  # a folder stackc did not write
    text = run_stackc("build", "specs/gateway.toml", "-o", str(tmp_path))
    as_json = run_stackc("build", "specs/gateway.toml", "-o", str(tmp_path), "--format", "json")
    payload = envelope(as_json.stdout)
    assert text.returncode == as_json.returncode == payload["exit_code"] == ExitCode.INVALID
    codes = [d["code"] for d in payload["diagnostics"]]
    assert codes[-1] == "E050" and "W020" in codes[:-1]
    shown = [line for line in text.stderr.splitlines() if re.search(r"(error|warning)\[[EW]\d{3}\]", line)]
    assert [rendered(d) for d in payload["diagnostics"]] == shown


def test_the_command_exits_with_its_code_and_runs_exit_handlers(tmp_path):
    """``run`` (the console script and ``python -m stackc``) freezes what a command made out of the exit's
    garbage collections: the exit code is the command's, and atexit handlers (the code cache's save) still run."""
    import subprocess
    import sys

    marker = tmp_path / "handler-ran"
    code = ("import atexit, sys, stackc.cli as cli; "
            f"atexit.register(lambda: open({str(marker)!r}, 'w').close()); "
            "sys.argv[1:] = ['check', 'no/such.toml']; cli.run()")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == ExitCode.INVALID and "spec file not found" in result.stderr
    assert marker.exists()


def test_main_leaves_the_garbage_collector_as_it_found_it(tmp_path):
    """A command runs without the cyclic collector (its data are trees); a caller's process gets it back."""
    import gc

    from stackc import cli

    assert gc.isenabled()
    assert cli.main(["check", str(tmp_path / "missing.toml")]) == ExitCode.INVALID
    assert gc.isenabled() and gc.get_freeze_count() == 0
    gc.disable()
    try:
        cli.main(["check", str(tmp_path / "missing.toml")])
        assert not gc.isenabled()
    finally:
        gc.enable()
