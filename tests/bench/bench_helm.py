"""stackc build of a 200-model chart next to `helm template` of the chart it emits.

Run: python tests/bench/bench_helm.py [MODELS [ROUNDS]]     (needs helm: bash .ci/install-tools)

Everything is timed in the same run, process start-up included, so the ratios hold on a noisy
machine: how long compiling takes, against how long Helm takes just to render the result to
stdout. The commands take turns, round after round (best of 5 rounds each), so a burst of load
from elsewhere slows them alike instead of the one that happened to run then. The build is timed
into an empty out/ (a first build, into a folder never used: every file created) and again into
its own output (a rebuild: files that did not change are carried over), writing to the
benchmark's disk and, where there is one, to a tmpfs (``/dev/shm``), which separates compile time
from the disk's cost of creating files. Two floors are measured beside them, because they bound
what any Python build can reach here: starting Python and importing the libraries stackc is built
on, and creating the same files with nothing else to do. Bytecode caches are written and used, as
in an installed package (the workplace sets PYTHONDONTWRITEBYTECODE, which users don't): a first,
untimed build writes them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_spec import make_spec  # noqa: E402

_ENV = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}


def timed(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, env=_ENV)
    return time.perf_counter() - started


def best_in_turns(commands: dict[str, Callable[[int], list[str]]], rounds: int) -> dict[str, float]:
    """Each command's best time (a command is made for each round), the commands taking turns round after round."""
    best = dict.fromkeys(commands, float("inf"))
    for round_number in range(rounds):
        for name, command in commands.items():
            best[name] = min(best[name], timed(command(round_number)))
    return best


def create_files(folder: Path, tree: Path, repeat: int = 3) -> float:
    """Best time to create the files of ``tree`` again under ``folder``: the file system's share."""
    files = [(p.relative_to(tree), p.read_bytes()) for p in sorted(tree.rglob("*")) if p.is_file()]
    times = []
    for _ in range(repeat):
        shutil.rmtree(folder, ignore_errors=True)
        started = time.perf_counter()
        for parent in sorted({relative.parent for relative, _ in files}):
            (folder / parent).mkdir(parents=True, exist_ok=True)
        for relative, content in files:
            descriptor = os.open(folder / relative, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            os.write(descriptor, content)
            os.close(descriptor)
        times.append(time.perf_counter() - started)
    shutil.rmtree(folder, ignore_errors=True)
    return min(times)


def main(models: int, rounds: int = 5) -> None:
    helm = os.environ.get("STACKC_HELM") or shutil.which("helm")
    if helm is None:
        sys.exit("helm is not installed: bash .ci/install-tools")
    with tempfile.TemporaryDirectory() as scratch:
        spec = Path(scratch) / "bench.toml"
        spec.write_text(make_spec(models))
        outputs = [("disk", Path(scratch) / "out")]
        if Path("/dev/shm").is_dir() and os.access("/dev/shm", os.W_OK):
            outputs.append(("tmpfs", Path(tempfile.mkdtemp(dir="/dev/shm")) / "out"))
        def build(into: Path) -> list[str]:
            return [sys.executable, "-m", "stackc", "build", str(spec), "-o", str(into), "--target", "manifests",
                    "--target", "helm"]

        builds: dict[str, Callable[[int], list[str]]] = {}
        for where, out in outputs:
            # a first build goes, each round, into a folder never used: removing one just before would time
            # the file system still busy freeing it
            builds[f"stackc build into an empty out/ on {where}"] = \
                lambda n, out=out: build(out.with_name(f"first-{n}"))
            builds[f"stackc build again (a rebuild) on {where}"] = lambda _, out=out: build(out)
        for _, out in outputs:  # writes the bytecode caches, and the out/ the rounds build again
            timed(build(out))
        chart = outputs[0][1] / "bench" / "helm" / "bench"
        best = best_in_turns({**builds, "helm": lambda _: [helm, "template", "bench", str(chart), "-n", "bench"],
                              "floor": lambda _: [sys.executable, "-c", "import attrs, cattrs, pluggy, yaml"]}, rounds)
        rows = []
        for where, out in outputs:
            rows += [(label, best[label]) for label in builds if label.endswith(f" on {where}")]
            rows.append((f"  floor: create its files on {where}", create_files(out.parent / "copy", out / "bench")))
        rows.append(("  floor: python + import attrs, cattrs, pluggy, yaml", best["floor"]))
        template = best["helm"]
        for _, out in outputs[1:]:
            shutil.rmtree(out.parent, ignore_errors=True)
    print(f"{models} models; helm template of the emitted chart (reference): {template:.2f} s")
    for label, seconds in rows:
        print(f"{label:<55} {seconds:5.2f} s  {seconds / template:5.2f}x")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200, int(sys.argv[2]) if len(sys.argv) > 2 else 5)
