"""A model's candidate version (canary), end to end between a client and fake engines: the requests
carrying its header, exactly its share of the others while it is ready, or copies whose answers are
dropped; the stable version serves the rest, and a candidate that is down costs no request."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from stackc_router import server
from stackc_router.config import Config, parse
from stackc_router.testing import QUIET, running_router, settled
from tests.stackc_router.conftest import free_port
from tests.stackc_router.test_disaggregation import CHAT, answered_by, metric, received
from tests.stackc_router.test_hold import pending, readiness, until

HEADER = {"x-candidate": "true"}


def versions(stable: str, candidate: str, hold: dict | None = None, interval_s: float = 0.2, **chosen) -> Config:
    """Model ``tiny`` with its stable replica at ``stable`` and its candidate's at ``candidate``."""
    return parse({"hold": {"health_interval_s": 0.05, **(hold or {})}, "models": {"tiny": {
        "served_name": "served-tiny", "aliases": ["tiny"], "backends": [stable], "health": {"interval_s": interval_s},
        "candidate": {"backends": [candidate], **chosen}}}})


def ready(base: str) -> bool:
    """The stable version and the candidate each have their replica."""
    detail = readiness(base)[1]["models"]["served-tiny"]
    return detail["ready"] == 1 and detail["candidate"]["ready"] == 1


def chat(http: httpx.Client, base: str, headers: dict | None = None, **extra) -> httpx.Response:
    return http.post(f"{base}/v1/chat/completions", json={"model": "tiny", **CHAT, **extra}, headers=headers,
                     timeout=30)


def test_exactly_the_weight_of_every_100_requests_reaches_the_candidate_and_its_header_all(engines) -> None:
    stable, candidate = engines.start(), engines.start()
    config = versions(stable, candidate, weight=10, header={"name": "X-Candidate", "value": "true"})
    with running_router(config) as (router, base):
        until(lambda: ready(base))
        with httpx.Client() as http:
            answers = [chat(http, base) for _ in range(200)]
        assert {response.status_code for response in answers} == {200}
        by_candidate = [n for n, response in enumerate(answers, 1) if answered_by(response, engines, candidate)]
        assert by_candidate == list(range(10, 201, 10))  # 20, spread evenly
        assert (len(received(stable)), len(received(candidate))) == (180, 20)
        assert received(candidate)[0] == {"model": "served-tiny", **CHAT}  # the alias rewritten, as for stable
        # the versions side by side on /metrics
        assert metric(base, "stackc_router_requests_total", model="tiny@candidate", backend=candidate) == 20
        assert metric(base, "stackc_router_requests_total", model="tiny", backend=stable) == 180
        assert metric(base, "stackc_router_backend_healthy", model="tiny@candidate", backend=candidate) == 1
        # the header (any case in its name) picks the candidate every time, outside the split
        with httpx.Client() as http:
            for _ in range(5):
                assert answered_by(chat(http, base, {"x-candidate": "true"}, stream=True), engines, candidate)
            assert not answered_by(chat(http, base, {"x-candidate": "false"}), engines, candidate)  # request 201
        status, detail = readiness(base)
        assert status == 200 and detail["models"]["served-tiny"] == {
            "ready": 1, "total": 1, "pending": 0, "candidate": {"ready": 1, "total": 1, "pending": 0}}
        assert settled(router) == QUIET


def test_with_weight_0_only_requests_with_the_header_reach_the_candidate(engines) -> None:
    stable, candidate = engines.start(), engines.start()
    with running_router(versions(stable, candidate, header={"name": "x-candidate"})) as (_, base), \
            httpx.Client() as http:
        until(lambda: ready(base))
        for _ in range(20):
            assert answered_by(chat(http, base), engines, stable)
        for _ in range(3):
            assert answered_by(chat(http, base, HEADER), engines, candidate)
        assert (len(received(stable)), len(received(candidate))) == (20, 3)


def test_a_candidate_that_is_down_costs_no_request_and_never_the_routers_readiness(engines) -> None:
    stable = engines.start()
    nothing = f"http://127.0.0.1:{free_port()}"
    config = versions(stable, nothing, hold={"queue": 0}, weight=50, header={"name": "x-candidate"})
    with running_router(config) as (_, base), httpx.Client() as http:
        until(lambda: readiness(base)[1]["models"]["served-tiny"]["ready"] == 1)
        status, detail = readiness(base)  # no holding: ready only while a model is servable, the candidate aside
        assert status == 200 and detail["models"]["served-tiny"]["candidate"] == {"ready": 0, "total": 1, "pending": 0}
        for _ in range(20):
            response = chat(http, base)
            assert response.status_code == 200 and answered_by(response, engines, stable)
        refused = chat(http, base, HEADER)  # asked for the candidate alone: its own 503, no stable answer instead
        assert refused.status_code == 503 and "no candidate replica of 'served-tiny' is ready" in refused.text
        assert metric(base, "stackc_router_hold_rejected_total", model="served-tiny@candidate", reason="no_replica") == 1


def test_a_request_with_the_header_waits_for_the_candidate_to_start(engines) -> None:
    stable, port = engines.start(), free_port()
    config = versions(stable, f"http://127.0.0.1:{port}", weight=100, header={"name": "x-candidate"})
    with running_router(config) as (_, base), ThreadPoolExecutor(1) as pool, httpx.Client() as http:
        until(lambda: readiness(base)[1]["models"]["served-tiny"]["ready"] == 1)
        held = pool.submit(chat, httpx, base, HEADER)  # httpx.post, on a connection of its own
        until(lambda: readiness(base)[1]["models"]["served-tiny"]["candidate"]["pending"] == 1)
        assert pending(base, "served-tiny@candidate") == 1 and pending(base, "served-tiny") == 0
        assert answered_by(chat(http, base), engines, stable)  # weight 100, but no candidate replica yet
        candidate = engines.start(port=port)
        assert answered_by(held.result(10), engines, candidate)
        assert received(candidate) == [{"model": "served-tiny", **CHAT}]


def test_the_candidates_share_goes_to_the_stable_version_when_the_candidate_dies_or_fails(engines, scripted) -> None:
    stable, candidate = engines.start(), engines.start()
    # no health check during the test but the first
    with running_router(versions(stable, candidate, interval_s=60, weight=50)) as (router, base):
        until(lambda: ready(base))
        engines.kill(candidate)  # between two health checks: the router learns it from a refused connection
        with httpx.Client() as http:
            answers = [chat(http, base) for _ in range(10)]
        assert all(r.status_code == 200 and answered_by(r, engines, stable) for r in answers)
        assert metric(base, "stackc_router_errors_total", model="tiny@candidate", backend=candidate) == 1
        assert settled(router) == QUIET

    def broken(replica, connection) -> None:
        connection.sendall(b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 2\r\n\r\n{}")

    failing = scripted(broken)
    with running_router(versions(stable, failing.url, weight=100)) as (_, base), httpx.Client() as http:
        until(lambda: ready(base))
        for _ in range(3):  # a broken candidate: every answer is the stable version's
            assert answered_by(chat(http, base), engines, stable)
        assert len(failing.requests) == 3
        assert metric(base, "stackc_router_errors_total", model="tiny@candidate", backend=failing.url) == 3


def test_mirrored_copies_reach_the_candidate_and_the_client_gets_the_stable_answer_without_waiting(engines) -> None:
    stable = engines.start()
    candidate = engines.start(args=("--reply-delay", "2"))  # a slow candidate delays no client
    with running_router(versions(stable, candidate, mirror=True)) as (_, base), httpx.Client() as http:
        until(lambda: ready(base))
        started = time.monotonic()
        for stream in (False, True, False):
            assert answered_by(chat(http, base, stream=stream), engines, stable)
        assert time.monotonic() - started < 1.5
        until(lambda: len(received(candidate)) == 3)
        assert received(candidate) == received(stable)  # the same bodies
        assert metric(base, "stackc_router_requests_total", model="tiny@candidate", backend=candidate) == 3


def test_mirrored_copies_beyond_the_bound_are_dropped_and_counted(engines, monkeypatch) -> None:
    monkeypatch.setattr(server, "MAX_MIRRORED", 1)
    stable, candidate = engines.start(), engines.start(args=("--reply-delay", "2"))
    with running_router(versions(stable, candidate, mirror=True)) as (_, base), httpx.Client() as http:
        until(lambda: ready(base))
        for _ in range(3):
            assert answered_by(chat(http, base), engines, stable)
        assert metric(base, "stackc_router_mirror_dropped_total", model="served-tiny@candidate", reason="busy") == 2
        assert len(received(candidate)) == 1


@pytest.mark.parametrize("weight", [0, 1, 7, 33, 50, 99, 100])
def test_the_split_takes_exactly_the_weight_of_every_100_requests_spread_evenly(weight) -> None:
    router = server.Router(versions("http://127.0.0.1:1", "http://127.0.0.1:2", weight=weight))
    route = router.routes["tiny"]
    route.candidate.backends["http://127.0.0.1:2"].healthy = True
    request = server.Request("POST", "/v1/chat/completions", {}, b"", True, True)
    picks = [router._version(route, request, None)[0] is route.candidate for _ in range(300)]
    assert sum(picks) == 3 * weight and all(sum(picks[n:n + 100]) == weight for n in range(200))
    assert all(sum(picks[n:n + 10]) in (weight // 10, -(-weight // 10)) for n in range(290))
