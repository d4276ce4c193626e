"""Build time for N-model specs, against a reference measured in the same run.

Run: python tests/bench/bench_build.py [N ...]      (default N = 10 100 1000)

Machines here are shared and noisy, so besides seconds it prints each build as a ratio to the
reference: the time to parse the same spec with tomllib and dump it with PyYAML, the floor for
any tool that reads TOML and writes YAML. Start-up (`stackc --version`) is measured too.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_spec import make_spec  # noqa: E402


def best_of(repeat: int, action) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return min(times)


def main(counts: list[int]) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        startup = best_of(5, lambda: subprocess.run([sys.executable, "-m", "stackc", "--version"], check=True,
                                                    capture_output=True))
        bare = best_of(5, lambda: subprocess.run([sys.executable, "-c", "pass"], check=True))
        print(f"start-up: stackc --version {startup * 1000:.0f} ms (bare python {bare * 1000:.0f} ms, "
              f"ratio {startup / bare:.1f}x)")
        print(f"{'models':>7} {'build s':>9} {'reference s':>12} {'ratio':>7} {'per model ms':>13}")
        for count in counts:
            spec = Path(scratch) / f"spec-{count}.toml"
            spec.write_text(make_spec(count))
            out = Path(scratch) / f"out-{count}"
            repeat = 3 if count <= 100 else 1

            def build() -> None:
                subprocess.run([sys.executable, "-m", "stackc", "build", str(spec), "-o", str(out)], check=True,
                               capture_output=True)

            def reference() -> None:
                subprocess.run([sys.executable, "-c",
                                "import sys, tomllib, yaml; d = tomllib.load(open(sys.argv[1], 'rb'));"
                                "[yaml.dump(m) for _ in range(5) for m in d['models'].values()]", str(spec)],
                               check=True)

            seconds = best_of(repeat, build)
            floor = best_of(repeat, reference)
            print(f"{count:>7} {seconds:>9.2f} {floor:>12.2f} {seconds / floor:>6.1f}x {seconds / count * 1000:>13.2f}")


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [10, 100, 1000])
