"""Print a stack spec with N models (for benchmarks and large-input tests).

Usage: python tests/bench/make_spec.py N [ENGINE] > spec.toml
"""

from __future__ import annotations

import sys


def make_spec(count: int, engine: str = "vllm") -> str:
    lines = [
        "version = 1",
        "",
        "[stack]",
        'name = "bench"',
        'namespace = "bench"',
        "",
        "[defaults]",
        f'engine = "{engine}"',
        "accelerators = { count = 1 }",
        'resources = { requests = { cpu = "2", memory = "16Gi" } }',
        "",
        "[defaults.scheduling]",
        'tolerations = [{ key = "nvidia.com/gpu", operator = "Exists", effect = "NoSchedule" }]',
    ]
    for index in range(count):
        lines += [
            "",
            f"[models.m{index:05d}]",
            f'model = "org/model-{index}"',
            f'aliases = ["alias-{index}"]',
            f"replicas = {1 + index % 3}",
            f"serving = {{ max_context = {4096 * (1 + index % 4)}, prefix_caching = true }}",
        ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(make_spec(int(sys.argv[1]), *sys.argv[2:3]))
