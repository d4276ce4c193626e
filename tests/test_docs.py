"""Docs that are generated must be current; every hook must be documented and tested."""

from __future__ import annotations

import inspect
import json
import re
import shlex
from pathlib import Path

import pytest

from stackc import hookspecs
from stackc.check.schema import spec_schema
from stackc.plugins import load_registry
from tests.update_docs import block, generated_blocks

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(("name", "marker"), sorted(generated_blocks()))
def test_generated_docs_are_current(name: str, marker: str) -> None:
    """The spec reference and the plugin contract's tables in docs/ are those the code declares."""
    text = (REPO / "docs" / name).read_text()
    start, end = block(text, marker)
    assert text[start:end] == generated_blocks()[name, marker](load_registry()), "run: python -m tests.update_docs"


def test_schema_file_is_current() -> None:
    committed = json.loads((REPO / "docs" / "stackc.schema.json").read_text())
    assert committed == spec_schema(load_registry()), "run: python -m tests.update_docs"


def test_every_hook_is_documented_and_tested() -> None:
    hooks = [name for name, _ in inspect.getmembers(hookspecs, inspect.isfunction) if name.startswith("stackc_")]
    assert hooks
    reference = (REPO / "docs" / "hooks.md").read_text()
    tests = "\n".join(p.read_text() for p in (REPO / "tests").rglob("test_*.py"))
    for hook in hooks:
        assert getattr(hookspecs, hook).__doc__, hook
        assert hook in reference, f"{hook} is missing from docs/hooks.md"
        assert hook in tests, f"{hook} has no test"


def test_relative_links_resolve() -> None:
    """Every relative link in the README and docs/ names a file that exists (anchors aside)."""
    root = Path(__file__).resolve().parents[1]
    broken = []
    for page in [root / "README.md", *sorted((root / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
            path = target.split("#", 1)[0]
            if path and "://" not in path and not (page.parent / path).exists():
                broken.append(f"{page.relative_to(root)}: {target}")
    assert broken == []


def test_the_plugin_tutorials_classes_follow_the_contract() -> None:
    """docs/plugins.md's engine and target register through the contract and compile a stack."""
    import types

    from stackc.testing import compile_text, objects

    text = (REPO / "docs" / "plugins.md").read_text()
    blocks = [b for b in re.findall(r"```python\n(.*?)```", text, re.S) if "registry.add_" in b]
    assert len(blocks) == 2
    modules = []
    for index, code in enumerate(blocks):
        module = types.ModuleType(f"tutorial_{index}")
        exec(compile(code, f"docs/plugins.md#{index}", "exec"), module.__dict__)  # noqa: S102 - our own docs
        modules.append(module)
    spec = """
version = 1
[stack]
name = "t"
targets = ["argo-rollouts"]
[models.mistral]
engine = "tgi"
model = "mistralai/Mistral-7B-Instruct-v0.3"
accelerators = { count = 2 }
serving = { tensor_parallel = 2 }
"""
    found = objects(compile_text(spec, plugins=modules).files)
    assert sorted(o["kind"] for o in found) == ["Rollout", "Service"]


# -- shell commands in the README and docs/ (the convention: README.md, "Shell commands in the docs") ------------

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(?P<info>[^\n`]*)\n(?P<body>.*?)^```[ \t]*$", re.M | re.S)
SHELL_LANGUAGES = {"sh", "bash", "shell", "console", "zsh"}
MARKERS = {"cluster", "network", "server", "template"}  # why a block cannot run in the docs test
REPO_PATH = re.compile(r"(?<![\w/.$-])((?:specs|out|docs|\.ci|tests)/[\w./-]*[\w/])")


def fences(page: Path) -> list[tuple[str, list[str], str]]:
    """(language, the info string's other words, body) of each fenced block, in page order."""
    found = []
    for match in FENCE.finditer(page.read_text()):
        language, *words = match.group("info").split() or [""]
        found.append((language, words, match.group("body")))
    return found


def test_every_shell_block_is_sh_with_known_markers() -> None:
    wrong = [f"{page.name}: ```{language} {' '.join(words)}" for page in PAGES for language, words, _ in fences(page)
             if language in SHELL_LANGUAGES and (language != "sh" or not set(words) <= MARKERS)]
    assert wrong == [], "shell blocks are ```sh, optionally followed by " + ", ".join(sorted(MARKERS))


def stackc_commands(body: str) -> list[list[str]]:
    """The ``stackc …`` commands of a shell block, as argv (pipelines, ``&&``, ``;`` and loops split)."""
    separators, redirections = {"&&", "||", ";", "|", "&"}, {">", ">>", "<"}
    commands = []
    for line in body.replace("\\\n", " ").splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)  # '#' starts a comment
        lexer.whitespace_split = True
        command: list[str] = []
        skip_target = False
        for word in [*lexer, ";"]:
            if skip_target:
                skip_target = False
            elif word in separators:
                if command[:1] == ["stackc"]:
                    commands.append(command)
                command = []
            elif word in redirections:
                skip_target = True
            elif command or word not in {"do", "then", "else", "time"}:
                command.append(word)
    return commands


def parse_problem(argv: list[str]) -> str | None:
    """What stackc's own parser says of a documented command: None when it accepts it."""
    import contextlib
    import io

    from stackc.cli import _parser

    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            _parser().parse_args(argv[1:])
    except SystemExit as exit_:
        return None if exit_.code == 0 else stderr.getvalue().strip().splitlines()[-1]
    return None


@pytest.mark.parametrize("page", [p for p in PAGES if any(lang == "sh" for lang, _, _ in fences(p))],
                         ids=lambda p: p.name)
def test_shell_blocks_run_or_are_marked(page: Path, tmp_path: Path) -> None:
    """Unmarked ``sh`` blocks run, in order, in a scratch copy of specs/ and out/ and must exit 0;
    marked ones (cluster, network, server, template) must at least name real options and paths."""
    import os
    import shutil
    import subprocess
    import sys

    shutil.copytree(REPO / "specs", tmp_path / "specs")
    shutil.copytree(REPO / "out", tmp_path / "out")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", "NO_COLOR": "1"}
    problems = []
    for language, words, body in fences(page):
        written = [w.removeprefix("file=") for w in words if w.startswith("file=")]
        if written:
            (tmp_path / written[0]).write_text(body)
        if language != "sh":
            continue
        if not words:
            result = subprocess.run(["bash", "-euo", "pipefail", "-c", body], cwd=tmp_path, env=env,
                                    capture_output=True, text=True, timeout=300)
            if result.returncode != 0:
                problems.append(f"exit {result.returncode}: {body.strip()}\n{result.stderr[-2000:]}")
            continue
        problems += [f"{' '.join(argv)}: {problem}" for argv in stackc_commands(body)
                     if (problem := parse_problem(argv)) is not None]
        problems += [f"{path}: no such file (in {' '.join(words)} block: {body.strip()[:80]})"
                     for path in REPO_PATH.findall(body)
                     if not (tmp_path / path).exists() and not (path.split("/")[0] not in ("specs", "out")
                                                                 and (REPO / path).exists())]
    assert problems == []


def test_the_marked_blocks_checks_catch_a_stale_option_and_path() -> None:
    assert parse_problem(["stackc", "build", "specs/prod.toml", "--output-dir", "x"]) is not None
    assert parse_problem(["stackc", "build", "specs/prod.toml", "-o", "x"]) is None
    assert stackc_commands('for s in a b; do stackc check "$s"; done\nstackc completion bash > f  # c\n') == [
        ["stackc", "check", "$s"], ["stackc", "completion", "bash"]]
    assert REPO_PATH.findall("kubectl apply -k out/prod/manifests; cat specs/base.toml") == [
        "out/prod/manifests", "specs/base.toml"]


def test_every_spec_file_the_docs_name_exists() -> None:
    named = {(page.name, path) for page in [*PAGES, REPO / ".pre-commit-hooks.yaml"]
             for path in re.findall(r"(?<![\w/.-])specs/[\w/-]+\.toml", page.read_text())}
    assert sorted(f"{page}: {path}" for page, path in named if not (REPO / path).is_file()) == []


def test_no_doc_pins_a_release_that_does_not_exist() -> None:
    """Installs and pre-commit revs name a commit (no release is tagged yet) or a tag that exists."""
    import subprocess

    # outside a git checkout (a source archive) no tag is known, so only commit SHAs pass
    tags = set(subprocess.run(["git", "tag"], cwd=REPO, capture_output=True, text=True).stdout.split())
    refs = []
    for page in [*PAGES, REPO / ".pre-commit-hooks.yaml"]:
        text = page.read_text()
        refs += [(page.name, ref) for ref in re.findall(r"git\+https?://[^\s\"'@]+@([^\s\"']+)", text)]
        refs += [(page.name, ref) for ref in re.findall(r"^[#\s]*rev:\s*(\S+)", text, re.M)]
    assert refs, "the CI recipe and the pre-commit examples pin stackc"
    unknown = [(page, ref) for page, ref in refs
               if not (re.fullmatch(r"[0-9a-f]{40}", ref) or ref.startswith("${{") or ref in tags)]
    assert unknown == []


def pre_commit_examples() -> list[dict]:
    """The .pre-commit-config.yaml examples: docs/cli.md's and the one in .pre-commit-hooks.yaml's comment."""
    import yaml

    cli = next(body for language, _, body in fences(REPO / "docs" / "cli.md")
               if language == "yaml" and "repos:" in body)
    comment = (REPO / ".pre-commit-hooks.yaml").read_text().split("\n#\n")[1]  # after "In your …:"
    commented = "\n".join(line[2:] for line in comment.splitlines() if line.startswith("#   "))
    return [yaml.safe_load(cli)["repos"][0], yaml.safe_load(commented)[0]]


@pytest.mark.parametrize("example", pre_commit_examples(), ids=["docs/cli.md", ".pre-commit-hooks.yaml"])
def test_pre_commit_examples_give_each_hook_one_stack(example: dict, run_stackc) -> None:
    import yaml

    hooks = {hook["id"] for hook in yaml.safe_load((REPO / ".pre-commit-hooks.yaml").read_text())}
    assert len(example["hooks"]) >= 2, "the example shows how a second stack is added"
    for hook in example["hooks"]:
        assert hook["id"] in hooks
        result = run_stackc("check", *hook["args"])
        assert result.returncode == 0, result.stderr


def test_deploy_creates_every_secret_and_priority_class_the_prod_stack_references() -> None:
    import yaml

    needed: set[tuple[str, str]] = set()

    def walk(node: object) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "secretKeyRef" or (key == "imagePullSecrets"):
                    for ref in value if isinstance(value, list) else [value]:
                        needed.add(("secret", ref["name"]))
                elif key in ("secretName",) and isinstance(value, str):
                    needed.add(("secret", value))
                elif key == "priorityClassName":
                    needed.add(("priorityclass", value))
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    for folder in ("manifests", "router"):
        for file in sorted((REPO / "out" / "prod" / folder).rglob("*.yaml")):
            for document in yaml.safe_load_all(file.read_text()):
                walk(document)
    block = next(body for language, words, body in fences(REPO / "docs" / "deploy.md")
                 if language == "sh" and "create secret" in body)
    created = {("secret", name) for name in re.findall(r"create secret \w+ ([\w.-]+)", block)}
    created |= {("priorityclass", name) for name in re.findall(r"create priorityclass ([\w.-]+)", block)}
    assert needed and created == needed


def test_the_router_image_recipe_builds_the_tag_the_target_emits() -> None:
    import yaml

    from stackc_plugins.targets.router import IMAGE

    recipe = next(body for language, _, body in fences(REPO / "docs" / "router.md")
                  if language == "sh" and "docker build" in body)
    assert re.search(r"^image=(\S+)", recipe, re.M).group(1) == IMAGE
    assert re.search(r"docker build --pull -t (\S+) \.", (REPO / "Dockerfile").read_text()).group(1) == IMAGE
    emitted = yaml.safe_load((REPO / "out" / "prod" / "router" / "deployment.yaml").read_text())
    assert emitted["spec"]["template"]["spec"]["containers"][0]["image"] == IMAGE


def test_the_json_example_in_cli_md_is_the_real_output(run_stackc) -> None:
    blocks = fences(REPO / "docs" / "cli.md")
    command = next(i for i, (language, _, body) in enumerate(blocks) if language == "sh" and "--format json" in body)
    argv = shlex.split(blocks[command][2], comments=True)
    assert blocks[command + 1][0] == "json"
    assert json.loads(blocks[command + 1][2]) == json.loads(run_stackc(*argv[1:]).stdout)


def test_the_readme_names_every_program_the_tool_installers_need() -> None:
    """`.ci/install-tools` stops when a program it needs is missing: the README says which, before."""
    needed = set()
    for script in sorted((REPO / ".ci").glob("install-*.sh")):
        needed |= set(re.findall(r"if ! command -v (\S+) >/dev/null", script.read_text()))
        needed |= set(re.findall(r"\|\| ! command -v (\S+) >/dev/null", script.read_text()))
    readme = (REPO / "README.md").read_text()
    assert needed >= {"npm", "apt-get", "dpkg"}
    assert sorted(program for program in needed if f"`{program}`" not in readme) == []
