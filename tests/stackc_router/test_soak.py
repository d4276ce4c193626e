"""The soak benchmark's scenario, scaled down for CI: a hostile client, a replica killed mid-way."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from soak_router import report, run  # noqa: E402 - the benchmark's own code, not a copy


@pytest.mark.slow
def test_well_behaved_clients_are_served_through_a_hoarding_client_and_a_dying_replica() -> None:
    """16 clients, 281 half-open connections against a router with 256 files, one of two engines killed."""
    soak = run(clients=16, seconds=5, fd_limit=256)
    assert soak.failures() == [], report(soak, 16, 5)
    assert soak.outcomes["json ok"] > 100 and soak.router_counters["stackc_router_shed_connections_total"
                                                                    "{connections_per_address}"] > 0
