"""Prometheus metrics per model and replica, rendered as text on /metrics (no dependency)."""

from __future__ import annotations

import bisect
from collections import defaultdict
from typing import Any

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
COUNTERS = {"requests": "requests routed", "errors": "failed upstream attempts", "retries": "attempts on another replica"}
HISTOGRAMS = {"latency": "request latency through the router, seconds",
              "ttft": "time to the first response byte, seconds"}


def _labels(model: str, backend: str) -> str:
    """Label pairs with values escaped as the text format requires (a model may be named anything)."""
    def escape(value: str) -> str:
        return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

    return f'model="{escape(model)}",backend="{escape(backend)}"'


class Metrics:
    def __init__(self) -> None:
        self.counters: dict[tuple[str, str, str], int] = defaultdict(int)
        self.histograms: dict[tuple[str, str, str], list[float]] = {}

    def count(self, name: str, model: str, backend: str) -> None:
        self.counters[(name, model, backend)] += 1

    def observe(self, name: str, model: str, backend: str, seconds: float) -> None:
        key = (name, model, backend)
        if key not in self.histograms:
            self.histograms[key] = [0.0] * (len(BUCKETS) + 2)  # buckets, +Inf, sum
        values = self.histograms[key]
        values[bisect.bisect_left(BUCKETS, seconds)] += 1
        values[-1] += seconds

    def render(self, router: Any) -> str:
        lines: list[str] = []
        for name, help_text in COUNTERS.items():
            lines += [f"# HELP stackc_router_{name}_total {help_text}", f"# TYPE stackc_router_{name}_total counter"]
            for (kind, model, backend), value in sorted(self.counters.items()):
                if kind == name:
                    lines.append(f"stackc_router_{name}_total{{{_labels(model, backend)}}} {value}")
        backends = [(_labels(route.config.name, backend.url), backend)
                    for route in router.routes.values() for backend in route.backends.values()]
        lines += ["# HELP stackc_router_in_flight requests in flight", "# TYPE stackc_router_in_flight gauge"]
        lines += [f"stackc_router_in_flight{{{labels}}} {backend.in_flight}" for labels, backend in backends]
        lines += ["# HELP stackc_router_backend_healthy 1 while the replica passes its health checks",
                  "# TYPE stackc_router_backend_healthy gauge"]
        lines += [f"stackc_router_backend_healthy{{{labels}}} {int(backend.healthy)}" for labels, backend in backends]
        for name, help_text in HISTOGRAMS.items():
            metric = f"stackc_router_{name}_seconds"
            lines += [f"# HELP {metric} {help_text}", f"# TYPE {metric} histogram"]
            for (kind, model, backend), values in sorted(self.histograms.items()):
                if kind != name:
                    continue
                labels = _labels(model, backend)
                cumulative = 0.0
                for bound, count in zip((*BUCKETS, "+Inf"), values[:-1], strict=True):
                    cumulative += count
                    lines.append(f'{metric}_bucket{{{labels},le="{bound}"}} {int(cumulative)}')
                lines.append(f"{metric}_sum{{{labels}}} {values[-1]:.6f}")
                lines.append(f"{metric}_count{{{labels}}} {int(cumulative)}")
        return "\n".join(lines) + "\n"
