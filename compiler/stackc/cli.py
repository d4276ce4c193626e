"""The ``stackc`` command. Exit codes and stdout are API:

0 ok · 1 differences found (``diff``) · 2 invalid input or usage · 3 internal error (a bug).
Data goes to stdout, messages to stderr; ``--format json`` wraps data and every diagnostic in a
versioned envelope (docs/cli-output.schema.json).
"""

from __future__ import annotations

import argparse
import enum
import gc
import json
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn

from stackc import __version__
from stackc.importers import CHARTS as IMPORT_CHARTS

#: 2: every envelope names its command and exit code and carries every diagnostic, warnings included
JSON_ENVELOPE_VERSION = 2
SHELLS = ("bash", "zsh", "fish")


class ExitCode(enum.IntEnum):
    OK = 0
    DIFFERENCES = 1
    INVALID = 2
    INTERNAL = 3


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(ExitCode.INVALID, f"{self.prog}: error: {message}\n")


def _parser(files: object = None, folders: object = None) -> argparse.ArgumentParser:
    """``files`` and ``folders`` are shtab's completers, given only by ``stackc completion``."""
    parser = _Parser(prog="stackc", description="Compile an LLM inference stack spec into Kubernetes deployments.")
    parser.add_argument("--version", action="version", version=f"stackc {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser, metavar="COMMAND")

    def path_argument(sub: argparse.ArgumentParser, *names: str, completer: object, **options: Any) -> None:
        action = sub.add_argument(*names, **options)
        if completer is not None:
            action.complete = completer  # type: ignore[attr-defined]  # read by shtab

    def spec_command(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        path_argument(sub, "specs", nargs="+", metavar="SPEC", help="spec files of one stack; later ones override "
                      "earlier ones", completer=files)
        sub.add_argument("--set", dest="settings", action="append", default=[], metavar="PATH=VALUE",
                         help="override one value, e.g. models.llama.replicas=3 (repeatable)")
        sub.add_argument("--disable-plugin", dest="blocked", action="append", default=[], metavar="NAME",
                         help="do not load this plugin entry point (repeatable)")
        sub.add_argument("--format", choices=("text", "json"), default="text", help="output format")
        return sub

    def output_options(sub: argparse.ArgumentParser) -> None:
        path_argument(sub, "-o", "--out", default="out", metavar="DIR", help="output root (default: out)",
                      completer=folders)
        sub.add_argument("--target", dest="targets", action="append", metavar="NAME",
                         help="build only this target, overriding the spec's list (repeatable)")

    output_options(spec_command("build", "compile and write OUT/STACK/TARGET/…"))
    output_options(spec_command("check", "compile and validate; write nothing"))
    output_options(spec_command("diff", "show how OUT/STACK differs from a fresh build (exit 1 if it does)"))
    spec_command("explain", "print the resolved spec after overlays, --set and [defaults]")
    spec_command("plan", "show whether each model fits its accelerators' memory, with its KV cache")
    up = spec_command("up", "run the stack on this machine: engines as processes, the router in front")
    up.add_argument("--port", type=int, default=None, help="the router's port (default: a free one)")
    up.add_argument("--skip", action="append", default=[], metavar="MODEL",
                    help="do not run this model (e.g. a GPU model on a laptop; repeatable)")
    path_argument(up, "--state-dir", default=None, metavar="DIR", help="where caches and logs go (default: a temp dir)",
                  completer=folders)
    importing = commands.add_parser(
        "import", help="turn another chart's Helm values into a spec; report what does not map",
        description="turn another chart's Helm values into a commented spec (stdout or -o FILE) and list, on "
                    "stderr, every value that could not be mapped (exit 1 when there is one)")
    importing.add_argument("--from", dest="chart", required=True, choices=sorted(IMPORT_CHARTS),
                           help="the chart the values are for")
    path_argument(importing, "values", nargs="+", metavar="VALUES", help="values files; later ones override earlier "
                  "ones as with helm -f (kserve: InferenceService and ServingRuntime YAML)", completer=files)
    path_argument(importing, "-o", "--output", metavar="FILE", help="write the spec here (default: stdout)",
                  completer=files)
    importing.add_argument("--name", help="the stack's name (default: from the values file's name)")
    importing.add_argument("--namespace", help="the stack's namespace")
    importing.add_argument("--format", choices=("text", "json"), default="text", help="output format")
    init = commands.add_parser("init", help="write a commented starter spec", description="write a commented starter spec")
    path_argument(init, "path", nargs="?", help="file to create, with its folders (default: print to stdout)",
                  completer=files)
    schema = commands.add_parser("schema", help="print the spec's JSON Schema (or its Markdown reference)",
                                 description="print the spec's JSON Schema (or its Markdown reference)")
    schema.add_argument("--format", choices=("json", "markdown"), default="json")
    schema.add_argument("--disable-plugin", dest="blocked", action="append", default=[], metavar="NAME")
    plugins = commands.add_parser("plugins", help="list engines and targets with their providers",
                                  description="list engines and targets with their providers")
    plugins.add_argument("--format", choices=("text", "json"), default="text")
    plugins.add_argument("--disable-plugin", dest="blocked", action="append", default=[], metavar="NAME")
    completion = commands.add_parser(
        "completion", help="print a shell completion script",
        description="print the completion script of SHELL; for example "
                    "`stackc completion bash > ~/.local/share/bash-completion/completions/stackc`")
    completion.add_argument("shell", choices=SHELLS, metavar="SHELL", help=", ".join(SHELLS))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command (``argv``: its arguments, by default the process's) and return its exit code."""
    return _main(argv, exiting=False)


def run() -> NoReturn:
    """The ``stackc`` command: ``main`` in a process of its own, which exits with its code."""
    sys.exit(_main(None, exiting=True))


def _main(argv: Sequence[str] | None, exiting: bool) -> int:
    args = _parser().parse_args(argv)
    # a compile makes next to no reference cycles (its data are trees), yet it allocates enough for the
    # cyclic garbage collector to walk everything alive again and again, the modules and classes it imports
    # first among them (~5 % of a large build): the collector waits until such a command is done
    collecting = gc.isenabled()
    if args.command in _COMPILING:
        gc.disable()
    try:
        return int(_run(args))
    except KeyboardInterrupt:
        print("stackc: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return ExitCode.OK
    except Exception as error:  # the last line of defence: a bug, never a user mistake
        code = _internal_error(error)
        _failed(args, code, f"internal error: {type(error).__name__}: {error}")
        return code
    finally:
        if exiting:
            # the interpreter's collections at exit would walk every object still alive (a large build's
            # modules, plan and files, ~10 % of the command) only to free what exiting frees anyway: all of
            # it is frozen out of them (atexit handlers and flushing the streams run as usual)
            gc.freeze()
        if collecting:  # main() may run in a long-lived process (tests, a plugin's tooling): collected as before
            gc.enable()


def _run(args: argparse.Namespace) -> ExitCode:
    from stackc.diagnostics import DiagnosticsError
    from stackc.output.tree import OutputError
    from stackc.pipeline import PluginCrash
    from stackc.plugins import PluginConflict, PluginError

    try:
        return _COMMANDS[args.command](args)
    except DiagnosticsError as error:
        return _report(args, ExitCode.INVALID, error.diagnostics)
    except OutputError as error:
        return _report(args, ExitCode.INVALID, [_output_problem(error)])
    except PluginConflict as error:
        print(f"stackc: error: {error}\n(hint: uninstall one of them, or skip one with --disable-plugin NAME)",
              file=sys.stderr)
        return _failed(args, ExitCode.INVALID, str(error))
    except (PluginCrash, PluginError) as error:
        print(f"stackc: error: {error}", file=sys.stderr)
        cause = error.__cause__
        if cause is not None:
            import traceback  # only a failure prints one: not imported by every command

            print("".join(traceback.format_exception(cause)[-6:]), file=sys.stderr, end="")
        print("This is a bug in the plugin, not in your spec: please report it to its authors.", file=sys.stderr)
        return _failed(args, ExitCode.INTERNAL, str(error))


def _internal_error(error: BaseException) -> ExitCode:
    import traceback

    print("".join(traceback.format_exception(error)), file=sys.stderr, end="")
    print(f"stackc {__version__}: internal error: {type(error).__name__}: {error}\n"
          "This is a bug in stackc: please report it with the spec that triggered it.", file=sys.stderr)
    return ExitCode.INTERNAL


def _report(args: argparse.Namespace, code: ExitCode, diagnostics: Sequence[Any],
            shown: Sequence[Any] = ()) -> ExitCode:
    """A command that stopped on errors: every diagnostic (its warnings too) on stderr and in the envelope.

    ``shown``: warnings stderr already holds (a build that compiled, then could not write).
    """
    _print_json(args, code, [*shown, *diagnostics])
    _print_diagnostics(diagnostics)
    count = sum(1 for d in diagnostics if d.severity.value == "error")
    print(f"stackc: {count} error{'s' if count != 1 else ''}", file=sys.stderr)
    return code


def _output_problem(error: Any) -> Any:
    from stackc.diagnostics import Diagnostic

    return Diagnostic("E050", str(error), hint=error.hint)


def _failed(args: argparse.Namespace, code: ExitCode, message: str) -> ExitCode:
    """A failure that is no spec diagnostic (a plugin conflict or crash): the envelope says so too."""
    _print_json(args, code, (), error=message)
    return code


def _print_diagnostics(diagnostics: Sequence[Any]) -> None:
    colour = _colour(sys.stderr)
    for diagnostic in diagnostics:
        print(diagnostic.render(colour), file=sys.stderr)


def _colour(stream: Any) -> bool:
    """Colour only on a terminal, never with NO_COLOR set (https://no-color.org); FORCE_COLOR forces it."""
    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("FORCE_COLOR"):
        return True
    return stream.isatty() and os.environ.get("TERM") != "dumb"


def _print_json(args: argparse.Namespace, code: ExitCode, diagnostics: Sequence[Any], **data: Any) -> None:
    """The envelope (docs/cli-output.schema.json), only with ``--format json``."""
    if getattr(args, "format", "text") != "json":
        return
    envelope = {"stackc": JSON_ENVELOPE_VERSION, "command": args.command, "exit_code": int(code),
                "diagnostics": [d.as_json() for d in diagnostics], **data}
    sys.stdout.write(json.dumps(envelope, indent=2, sort_keys=True) + "\n")


def _registry(args: argparse.Namespace) -> Any:
    from stackc.plugins import load_registry

    return load_registry(args.blocked)


def _compile(args: argparse.Namespace) -> Any:
    from stackc import pipeline

    compilation = pipeline.compile_stack(args.specs, _registry(args), args.settings, args.targets)
    _print_diagnostics(compilation.warnings)
    return compilation


def _stack_root(args: argparse.Namespace, compilation: Any) -> Path:
    return Path(args.out) / compilation.spec.stack.name


def _build(args: argparse.Namespace) -> ExitCode:
    from stackc.output.tree import OutputError, write_tree

    compilation = _compile(args)
    root = _stack_root(args, compilation)
    try:
        keep = () if args.targets is None else _other_targets(root, compilation.targets)
        write_tree(root, compilation.files, keep_prefixes=keep)
    except OutputError as error:
        return _report(args, ExitCode.INVALID, [_output_problem(error)], shown=compilation.warnings)
    _print_json(args, ExitCode.OK, compilation.warnings, stack=compilation.spec.stack.name, out=root.as_posix(),
                targets=list(compilation.targets), files=sorted(compilation.files))
    if args.format == "text":
        print(f"stackc: wrote {root.as_posix()}/ ({len(compilation.files)} files: "
              f"{', '.join(compilation.targets)})", file=sys.stderr)
    return ExitCode.OK


def _other_targets(root: Path, selected: Sequence[str]) -> list[str]:
    """With --target, the folders of the other targets are carried over as they were."""
    from stackc.output.tree import owned_files

    return sorted({name.split("/", 1)[0] for name in owned_files(root)} - set(selected))


def _check(args: argparse.Namespace) -> ExitCode:
    compilation = _compile(args)
    _print_json(args, ExitCode.OK, compilation.warnings, stack=compilation.spec.stack.name,
                targets=list(compilation.targets))
    if args.format == "text":
        print(f"stackc: {', '.join(args.specs)}: ok ({len({c.key for c in compilation.plan.components})} models, "
              f"{len(compilation.files)} files)", file=sys.stderr)
    return ExitCode.OK


def _diff(args: argparse.Namespace) -> ExitCode:
    from stackc.output.tree import diff_trees, file_changes, read_tree

    compilation = _compile(args)
    root = _stack_root(args, compilation)
    prefixes = tuple(f"{t}/" for t in compilation.targets)
    current = {k: v for k, v in read_tree(root).items() if k.startswith(prefixes)}
    text = diff_trees(current, compilation.files, root.as_posix(), root.as_posix())
    changes = file_changes(current, compilation.files)
    added, removed = sum(c.added for c in changes), sum(c.removed for c in changes)
    summary = f"{len(changes)} file{'s' if len(changes) != 1 else ''} changed, +{added} -{removed}"
    code = ExitCode.DIFFERENCES if changes else ExitCode.OK
    _print_json(args, code, compilation.warnings, stack=compilation.spec.stack.name, out=root.as_posix(),
                changed=[c.path for c in changes], files=[c._asdict() for c in changes], summary=summary, diff=text,
                rebuild=_rebuild_command(args))
    if args.format == "text":
        sys.stdout.write(text)
    if changes and args.format == "text":
        width = max(len(c.path) for c in changes)
        print(f"stackc: {root.as_posix()}/ is stale; run `{_rebuild_command(args)}`", file=sys.stderr)
        for change in changes:
            counts = f"+{change.added} -{change.removed}"
            print(f"  {change.status:<7}  {change.path:<{width}}  {counts:<11} {', '.join(change.objects)}".rstrip(),
                  file=sys.stderr)
        print(f"stackc: {summary}", file=sys.stderr)
    return code


def _rebuild_command(args: argparse.Namespace) -> str:
    """The build that refreshes what ``diff`` compared: the same specs, settings, targets and output root."""
    import shlex

    words = ["stackc", "build", *args.specs]
    for setting in args.settings:
        words += ["--set", setting]
    for target in args.targets or ():
        words += ["--target", target]
    for blocked in args.blocked:
        words += ["--disable-plugin", blocked]
    if args.out != "out":
        words += ["-o", args.out]
    return shlex.join(words)


def _explain(args: argparse.Namespace) -> ExitCode:
    import tomlkit

    from stackc import pipeline
    from stackc.spec import convert

    checked = pipeline.check(args.specs, _registry(args), args.settings)
    _print_diagnostics(checked.warnings)
    data = _drop_none(convert.unstructure(checked.spec))
    _print_json(args, ExitCode.OK, checked.warnings, spec=data)
    if args.format == "text":
        sys.stdout.write(tomlkit.dumps(data))
    return ExitCode.OK


def _plan(args: argparse.Namespace) -> ExitCode:
    from stackc import pipeline

    checked = pipeline.check(args.specs, _registry(args), args.settings, fit=False)
    rows, problems = pipeline.plan_fit(checked, _registry(args))
    diagnostics = pipeline.sorted_unique([*checked.warnings, *problems])
    code = ExitCode.INVALID if any(d.severity.value == "error" for d in diagnostics) else ExitCode.OK
    _print_json(args, code, diagnostics, stack=checked.spec.stack.name, models=_fit_json(rows))
    if args.format == "text":
        sys.stdout.write(_fit_table(rows))
    _print_diagnostics(diagnostics)
    return code


_FIT_NUMBERS = ("weights_gib_per_device", "kv_cache_gib_per_device", "kv_tokens_per_replica",
                "max_concurrent_at_context")


def _fit_object(row: Any) -> dict[str, Any]:
    fit = row.fit
    return {"status": fit.status, "reason": fit.reason or None, "accelerators": row.accelerators,
            "max_context": fit.context or None, "facts_source": row.facts_source,
            **{name: getattr(fit, name) for name in _FIT_NUMBERS}}


def _nodes_object(nodes: Any) -> dict[str, Any]:
    """``accelerators.select_nodes``: the node affinity required, or why none is."""
    label = nodes.label
    return {"key": label.key if label else None, "values": list(label.values) if label else [],
            "source": label.source if label else None, "note": nodes.note or None}


def _fit_json(rows: Sequence[Any]) -> dict[str, Any]:
    """``models.NAME.fit``; a disaggregated model's is its worst role's, each role's under ``roles``."""
    models: dict[str, Any] = {}
    for row in rows:
        entry = models.setdefault(row.model, {})
        nodes = {"node_selection": _nodes_object(row.nodes)} if row.nodes is not None else {}
        if row.role is None:
            entry.update(fit=_fit_object(row), **nodes)
            continue
        if row.role == "candidate":  # the candidate version's own (the model's is the stable version's)
            entry["candidate"] = {"fit": _fit_object(row), **nodes}
            continue
        entry.setdefault("roles", {})[row.role] = {"fit": _fit_object(row), **nodes}
        worst = min(entry["roles"].values(), key=lambda r: ("no-fit", "unknown", "fits").index(r["fit"]["status"]))
        entry["fit"] = worst["fit"]
    return models


def _fit_table(rows: Sequence[Any]) -> str:
    def number(value: Any) -> str:
        return "-" if value is None else f"{value:,}" if isinstance(value, int) else f"{value:.2f}"

    header = ("MODEL", "ACCELERATORS", "WEIGHTS GiB/DEV", "KV GiB/DEV", "KV TOKENS/REPLICA", "SEQS@CONTEXT",
              "VERDICT")
    table = [header]
    for row in rows:
        fit = row.fit
        context = f"{number(fit.max_concurrent_at_context)} @ {fit.context:,}" if fit.context else "-"
        verdict = fit.status + (f": {fit.reason}" if fit.reason else "")
        table.append((row.model + (f" ({row.role})" if row.role else ""), row.accelerators,
                      number(fit.weights_gib_per_device), number(fit.kv_cache_gib_per_device),
                      number(fit.kv_tokens_per_replica), context, verdict))
    widths = [max(len(line[i]) for line in table) for i in range(len(header) - 1)]
    return "".join("  ".join(cell.ljust(width) for cell, width in zip(line, widths)) + "  " + line[-1] + "\n"
                   for line in table) + "".join(_rollout_lines(rows)) + "".join(_node_lines(rows))


def _rollout_lines(rows: Sequence[Any]) -> Iterator[str]:
    """What a model with a candidate version holds while both run: each version's replicas × accelerators."""
    for row in rows:
        if row.role != "candidate":
            continue
        versions = [r for r in rows if r.model == row.model and r.role != "candidate"] + [row]
        parts = " + ".join(f"{r.replicas} × ({r.accelerators})" for r in versions)
        yield f"{row.model}: during the rollout the stable and candidate versions hold {parts}\n"


def _node_lines(rows: Sequence[Any]) -> Iterator[str]:
    """The nodes ``accelerators.select_nodes`` requires of each model (a candidate's are its model's)."""
    for row in rows:
        if row.nodes is not None and row.role != "candidate":
            name = row.model + (f" ({row.role})" if row.role else "")
            nodes, label = row.nodes, row.nodes.label
            selected = f"{label.key} in ({', '.join(label.values)})" if label is not None else \
                f"not selected ({nodes.note})" if nodes.unmet else nodes.note
            yield f"{name}: nodes {selected}\n"


def _drop_none(value: Any) -> Any:
    """TOML has no null; empty tables and arrays only add noise to an explanation."""
    if isinstance(value, dict):
        kept = {k: _drop_none(v) for k, v in value.items() if v is not None}
        return {k: v for k, v in kept.items() if v != {} and v != []}
    if isinstance(value, (list, tuple)):
        return [_drop_none(v) for v in value]
    return value


def _up(args: argparse.Namespace) -> int:
    import signal
    import tempfile
    import threading

    from stackc.local import up
    from stackc.local.supervisor import Supervisor

    supervisor = Supervisor()
    supervisor.adopt_orphans()  # this process starts nothing but the supervisor's
    stop = threading.Event()
    stopped_by: list[int] = []

    def on_signal(signum: int, _frame: object) -> None:
        stopped_by.append(signum)
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, on_signal)
    with tempfile.TemporaryDirectory(prefix="stackc-up-") as scratch:  # kept only with --state-dir
        state = Path(args.state_dir) if args.state_dir else Path(scratch)
        try:
            state.mkdir(parents=True, exist_ok=True)
            kept = "" if args.state_dir else " (removed on exit; --state-dir DIR keeps them)"
            print(f"stackc up: logs in {state / 'logs'}{kept}", file=sys.stderr)
            base_url, names = up.run(supervisor, stop, args.specs, _registry(args), args.settings, args.port,
                                     args.skip, state)
            supervisor.settle()
            _print_json(args, ExitCode.OK, (), base_url=base_url, models=names)
            if args.format == "text":
                print(f"OpenAI base URL: {base_url}")
                print("models: " + ", ".join(names))
            sys.stdout.flush()
            print("stackc up: ready; Ctrl-C stops everything", file=sys.stderr)
            while not stop.wait(0.5):
                supervisor.tend()
            return _interrupted(stopped_by)
        except up.StartupFailed as error:
            supervisor.settle()
            print(f"stackc up: {error}", file=sys.stderr)
            return _interrupted(stopped_by) if stopped_by else ExitCode.INVALID
        except OSError as error:
            print(f"stackc up: error: {error.strerror or error}: {error.filename or state}", file=sys.stderr)
            return ExitCode.INVALID
        finally:
            if any(item.popen.poll() is None for item in supervisor.running):
                print("stackc up: stopping", file=sys.stderr)
            supervisor.stop()


def _interrupted(signals: Sequence[int]) -> int:
    """The shell's code for a program its first signal ended: 130 after Ctrl-C (SIGINT), 143 after SIGTERM."""
    return 128 + signals[0]


def _import(args: argparse.Namespace) -> ExitCode:
    from stackc.importers.run import import_values
    from stackc.importers.values import ValuesError

    try:
        imported = import_values(args.chart, args.values, args.name, args.namespace)
    except ValuesError as error:
        return _report(args, ExitCode.INVALID, error.diagnostics)
    if args.output:
        try:
            Path(args.output).write_text(imported.text, "utf-8")
        except OSError as error:
            message = f"cannot write {args.output}: {error.strerror or error}"
            print(f"stackc: error: {message}", file=sys.stderr)
            return _failed(args, ExitCode.INVALID, message)
    count = len(imported.report)
    code = ExitCode.DIFFERENCES if count else ExitCode.OK
    _print_json(args, code, imported.report, chart=args.chart, spec=imported.text, output=args.output)
    if args.format == "text" and not args.output:
        sys.stdout.write(imported.text)
    _print_diagnostics(imported.report)
    where = f"wrote {args.output}" if args.output else "spec on stdout"
    print(f"stackc import: {where}; {count} value{'s' if count != 1 else ''} not imported"
          + (" (listed above)" if count else ""), file=sys.stderr)
    return code


def _init(args: argparse.Namespace) -> ExitCode:
    from stackc.spec.starter import STARTER_SPEC

    if args.path is None:
        sys.stdout.write(STARTER_SPEC)
        return ExitCode.OK
    path = Path(args.path)
    if path.exists():
        print(f"stackc: error: {path} exists; not overwriting it", file=sys.stderr)
        return ExitCode.INVALID
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("x", encoding="utf-8") as file:
            file.write(STARTER_SPEC)
    except OSError as error:
        print(f"stackc: error: cannot write {path}: {error.strerror or error}", file=sys.stderr)
        return ExitCode.INVALID
    print(f"stackc: wrote {path}; next: stackc build {path}", file=sys.stderr)
    return ExitCode.OK


def _schema(args: argparse.Namespace) -> ExitCode:
    from stackc.check.schema import spec_reference, spec_schema

    if args.format == "markdown":
        sys.stdout.write(spec_reference(_registry(args)))
        return ExitCode.OK
    sys.stdout.write(json.dumps(spec_schema(_registry(args)), indent=2, sort_keys=True, ensure_ascii=False) + "\n")
    return ExitCode.OK


def _plugins(args: argparse.Namespace) -> ExitCode:
    registry = _registry(args)
    rows = [(kind, name, entry.provider, entry.traits.description)
            for kind, table in (("engine", registry.engines), ("target", registry.targets))
            for name, entry in sorted(table.items())]
    if args.format == "json":
        _print_json(args, ExitCode.OK, (), plugins=[
            {"kind": kind, "name": name, "distribution": p.distribution, "version": p.version,
             "entry_point": p.plugin, "description": description}
            for kind, name, p, description in rows])
        return ExitCode.OK
    width = max((len(name) for _, name, _, _ in rows), default=4)
    for kind, name, provider, description in rows:
        print(f"{kind:<7} {name:<{width}}  {provider.distribution} {provider.version:<8} {description}")
    return ExitCode.OK


def _completion(args: argparse.Namespace) -> ExitCode:
    import shtab  # generates the script from the parser itself, so completion never lags behind the options

    sys.stdout.write(shtab.complete(_parser(files=shtab.FILE, folders=shtab.DIRECTORY), shell=args.shell))
    return ExitCode.OK


#: commands that compile and end: they run without the cyclic garbage collector (others make cycles, as
#: tomlkit's documents in explain and import do, or serve until stopped, as up does)
_COMPILING = frozenset({"build", "check", "diff", "plan"})
_COMMANDS = {
    "build": _build, "check": _check, "completion": _completion, "diff": _diff, "explain": _explain,
    "import": _import, "init": _init, "plan": _plan, "schema": _schema, "plugins": _plugins, "up": _up,
}

