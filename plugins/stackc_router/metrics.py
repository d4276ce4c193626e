"""Prometheus metrics per model and replica, rendered as text on /metrics (no dependency).

Every family the router exports is declared once here, as data: targets that query the router
(dashboards, alerts, an autoscaler's trigger) read the names from ``FAMILIES`` instead of typing
them.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from typing import Any, NamedTuple

#: a model's candidate version is told apart by its model label: the model's with this suffix
CANDIDATE_SUFFIX = "@candidate"
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


class Family(NamedTuple):
    """One metric family: the name as queried (histograms add ``_bucket``, ``_sum``, ``_count``).

    A named tuple, not a dataclass: the compiler imports this module for the names, and a dataclass
    compiles its methods in every process (~2 ms of each command)."""

    name: str
    type: str  # counter | gauge | histogram
    help: str
    labels: tuple[str, ...] = ("model", "backend")


REQUESTS = Family("stackc_router_requests_total", "counter", "requests routed")
ERRORS = Family("stackc_router_errors_total", "counter", "failed upstream attempts")
RETRIES = Family("stackc_router_retries_total", "counter", "attempts on another replica")
IN_FLIGHT = Family("stackc_router_in_flight", "gauge", "requests in flight")
BACKEND_HEALTHY = Family("stackc_router_backend_healthy", "gauge", "1 while the replica passes its health checks")
LATENCY = Family("stackc_router_latency_seconds", "histogram", "request latency through the router, seconds")
TTFT = Family("stackc_router_ttft_seconds", "histogram", "time to the first response byte, seconds")
#: a disaggregated model's prefill hop (backend: the prefill replica)
PREFILL_LATENCY = Family("stackc_router_prefill_latency_seconds", "histogram",
                         "prefill requests of disaggregated models, from sending to the whole answer, seconds")
PREFILL_ERRORS = Family("stackc_router_prefill_errors_total", "counter", "failed prefill attempts")
#: the scale-from-zero signal: requests held because the model has no ready replica (label: primary served name)
PENDING_REQUESTS = Family("stackc_router_pending_requests", "gauge",
                          "requests held until the model has a ready replica", ("model",))
HOLD_REJECTED = Family("stackc_router_hold_rejected_total", "counter",
                       "requests answered 503 for want of a ready replica (reason: timeout, queue_full, no_replica)",
                       ("model", "reason"))
#: copies of requests not sent to a model's candidate version (reason: busy, too many in flight; no_replica)
MIRROR_DROPPED = Family("stackc_router_mirror_dropped_total", "counter",
                        "copies for a candidate version not sent (reason: busy, no_replica)", ("model", "reason"))
#: one client against the others (limit: connections, in_flight, or either per address or per key)
LIMITED = Family("stackc_router_limited_total", "counter",
                 "connections and requests refused by a limit (limit: connections, connections_per_address, "
                 "connections_per_key, in_flight, in_flight_per_address, in_flight_per_key)", ("limit",))
SHED = Family("stackc_router_shed_connections_total", "counter",
              "connections without a complete request head closed to make room for a new one (limit: the one "
              "reached, connections or connections_per_address)", ("limit",))

FAMILIES = (REQUESTS, ERRORS, RETRIES, PREFILL_ERRORS, IN_FLIGHT, BACKEND_HEALTHY, LATENCY, TTFT, PREFILL_LATENCY,
            PENDING_REQUESTS, HOLD_REJECTED, MIRROR_DROPPED, LIMITED, SHED)
COUNTERS = (REQUESTS, ERRORS, RETRIES, PREFILL_ERRORS)
HISTOGRAMS = (LATENCY, TTFT, PREFILL_LATENCY)


def _labels(**values: str) -> str:
    """Label pairs with values escaped as the text format requires (a model may be named anything)."""
    def escape(value: str) -> str:
        return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

    return ",".join(f'{name}="{escape(value)}"' for name, value in values.items())


def _header(family: Family) -> list[str]:
    return [f"# HELP {family.name} {family.help}", f"# TYPE {family.name} {family.type}"]


class Metrics:
    def __init__(self) -> None:
        self.counters: dict[tuple[Family, str, str], int] = defaultdict(int)
        self.histograms: dict[tuple[Family, str, str], list[float]] = {}
        self.rejected: dict[tuple[str, str], int] = defaultdict(int)  # (model, reason)
        self.dropped: dict[tuple[str, str], int] = defaultdict(int)  # mirrored copies: (model, reason)
        self.limits: dict[tuple[Family, str], int] = defaultdict(int)  # (LIMITED or SHED, limit)

    def count(self, family: Family, model: str, backend: str) -> None:
        self.counters[(family, model, backend)] += 1

    def observe(self, family: Family, model: str, backend: str, seconds: float) -> None:
        key = (family, model, backend)
        if key not in self.histograms:
            self.histograms[key] = [0.0] * (len(BUCKETS) + 2)  # buckets, +Inf, sum
        values = self.histograms[key]
        values[bisect.bisect_left(BUCKETS, seconds)] += 1
        values[-1] += seconds

    def reject(self, model: str, reason: str) -> None:
        self.rejected[(model, reason)] += 1

    def drop(self, model: str, reason: str) -> None:
        self.dropped[(model, reason)] += 1

    def limit(self, family: Family, limit: str) -> None:
        self.limits[(family, limit)] += 1

    def render(self, router: Any) -> str:
        lines: list[str] = []
        for family in COUNTERS:
            lines += _header(family)
            lines += [f"{family.name}{{{_labels(model=model, backend=backend)}}} {value}"
                      for (kind, model, backend), value in sorted(self.counters.items(), key=_by_name) if kind == family]
        # a candidate version's replicas under its own model label
        backends = [(_labels(model=role.config.name, backend=backend.url), backend)
                    for route in router.routes.values() for role in route.replica_sets()
                    for backend in role.backends.values()]
        lines += _header(IN_FLIGHT)
        lines += [f"{IN_FLIGHT.name}{{{labels}}} {backend.in_flight}" for labels, backend in backends]
        lines += _header(BACKEND_HEALTHY)
        lines += [f"{BACKEND_HEALTHY.name}{{{labels}}} {int(backend.healthy)}" for labels, backend in backends]
        lines += _header(PENDING_REQUESTS)  # every model, 0 included: an autoscaler's query always finds its series
        lines += [f"{PENDING_REQUESTS.name}{{{_labels(model=name)}}} {len(held)}"
                  for name, held in _held(router)]
        for family, counted in ((HOLD_REJECTED, self.rejected), (MIRROR_DROPPED, self.dropped)):
            lines += _header(family)
            lines += [f"{family.name}{{{_labels(model=model, reason=reason)}}} {value}"
                      for (model, reason), value in sorted(counted.items())]
        for family in (LIMITED, SHED):
            lines += _header(family)
            lines += [f"{family.name}{{{_labels(limit=limit)}}} {value}"
                      for (kind, limit), value in sorted(self.limits.items(), key=lambda item: item[0][1]) if kind == family]
        for family in HISTOGRAMS:
            lines += _header(family)
            for (kind, model, backend), values in sorted(self.histograms.items(), key=_by_name):
                if kind != family:
                    continue
                labels = _labels(model=model, backend=backend)
                cumulative = 0.0
                for bound, count in zip((*BUCKETS, "+Inf"), values[:-1], strict=True):
                    cumulative += count
                    lines.append(f'{family.name}_bucket{{{labels},le="{bound}"}} {int(cumulative)}')
                lines.append(f"{family.name}_sum{{{labels}}} {values[-1]:.6f}")
                lines.append(f"{family.name}_count{{{labels}}} {int(cumulative)}")
        return "\n".join(lines) + "\n"


def _held(router: Any) -> list[tuple[str, Any]]:
    """(model label, hold queue) of every model, and of its candidate version (``name@candidate``)."""
    held = []
    for route in router.routes.values():
        held.append((route.config.served_name, route.held))
        if route.candidate is not None:
            held.append((route.candidate.config.served_name + CANDIDATE_SUFFIX, route.candidate.held))
    return held


def _by_name(item: tuple[tuple[Family, str, str], Any]) -> tuple[str, str, str]:
    (family, model, backend), _ = item
    return family.name, model, backend
