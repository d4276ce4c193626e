"""stackc build of a 200-model chart next to `helm template` of the chart it emits.

Run: python tests/bench/bench_helm.py [MODELS]     (needs helm: bash .ci/install-helm.sh)

Both are timed in the same run (best of 3, process start-up included), so the ratio holds on a
noisy machine: how long compiling takes, against how long Helm takes just to render the result.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_spec import make_spec  # noqa: E402


def best_of(repeat: int, command: list[str]) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        times.append(time.perf_counter() - started)
    return min(times)


def main(models: int) -> None:
    helm = os.environ.get("STACKC_HELM") or shutil.which("helm")
    if helm is None:
        sys.exit("helm is not installed: bash .ci/install-helm.sh")
    with tempfile.TemporaryDirectory() as scratch:
        spec = Path(scratch) / "bench.toml"
        spec.write_text(make_spec(models))
        out = Path(scratch) / "out"
        build = [sys.executable, "-m", "stackc", "build", str(spec), "-o", str(out), "--target", "manifests",
                 "--target", "helm"]
        build_seconds = best_of(3, build)
        chart = out / "bench" / "helm" / "bench"
        template_seconds = best_of(3, [helm, "template", "bench", str(chart), "-n", "bench"])
    print(f"{models} models")
    print(f"stackc build (manifests + helm): {build_seconds:.2f} s")
    print(f"helm template (emitted chart):   {template_seconds:.2f} s")
    print(f"ratio build / template:          {build_seconds / template_seconds:.2f}x")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200)
