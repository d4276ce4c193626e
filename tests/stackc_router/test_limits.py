"""One client against the others: per-address and per-key limits, connections without a request head
shed first, and request heads bounded in fields and bytes (431) before they cost more than that."""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest

from stackc_router.config import ConfigError, parse
from stackc_router.metrics import SHED
from stackc_router.server import share
from stackc_router.testing import QUIET, answers, connect, exchange, running_router, settled, wait_until

CHAT = b'{"model":"tiny","messages":[]}'
HEAD_ONLY = b"POST /v1/chat/completions HTTP/1.1\r\nHost: r\r\n"  # a half-open request: never finished
HOARDER, OTHER, THIRD = "127.0.0.2", "127.0.0.3", "127.0.0.4"  # clients on loopback addresses of their own


def request(key: str | None = None, close: bool = True, headers: bytes = b"") -> bytes:
    auth = b"Authorization: Bearer %s\r\n" % key.encode() if key else b""
    return (b"POST /v1/chat/completions HTTP/1.1\r\nHost: r\r\n%s%s%sContent-Length: %d\r\n\r\n%s"
            % (b"Connection: close\r\n" if close else b"", auth, headers, len(CHAT), CHAT))


def config(url: str, **limits):
    return parse({"limits": limits, "models": {"tiny": {"backends": [url], "health": {"interval_s": 60}}}})


def answer_ok(replica, connection) -> None:
    connection.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}")


def closed_by_router(connection: socket.socket) -> bool:
    try:
        return connection.recv(1) == b""
    except ConnectionResetError:
        return True


def codes(found: list[tuple[int, bytes]]) -> list[tuple[int, str]]:
    return [(status, json.loads(body)["error"]["code"]) for status, body in found]


@pytest.fixture
def gated(scripted):
    """A replica that answers once ``gate`` is set, so requests stay in flight until then."""
    gate = threading.Event()

    def wait_then_answer(replica, connection) -> None:
        gate.wait(5)
        answer_ok(replica, connection)

    replica = scripted(wait_then_answer)
    replica.gate = gate
    return replica


def in_background(base: str, data: bytes, source: str) -> tuple[threading.Thread, list]:
    found: list = []
    thread = threading.Thread(target=lambda: found.extend(exchange(base, data, source=source)), daemon=True)
    thread.start()
    return thread, found


def assert_all_served(gated, running: list[tuple[threading.Thread, list]], router) -> None:
    """Open the gate: every request let in gets its answer, and nothing is left counted."""
    gated.gate.set()
    for thread, found in running:
        thread.join(5)
        assert found == [(200, b"{}")]
    assert settled(router) == QUIET


def test_an_address_at_its_limit_makes_room_among_its_own_connections_without_a_head(scripted) -> None:
    replica = scripted(answer_ok)
    with running_router(config(replica.url, max_connections_per_address=4)) as (router, base):
        half_open = [connect(base, HOARDER) for _ in range(4)]
        for connection in half_open:
            connection.sendall(HEAD_ONLY)
        wait_until(lambda: len(router.listener.by_address.get(HOARDER, ())) == 4)
        assert exchange(base, request(), source=HOARDER) == [(200, b"{}")]
        assert closed_by_router(half_open[0])  # the oldest made room
        busy = []
        for _ in range(4):  # each sheds a half-open one, the oldest first
            busy.append(connect(base, HOARDER))
            busy[-1].sendall(request()[:-5])  # a complete head, its body still coming: closing it would lose a request
        wait_until(lambda: len(router.listener.by_address[HOARDER]) == 4
                   and not any(c.sheddable for c in router.listener.by_address[HOARDER]))
        assert all(closed_by_router(connection) for connection in half_open)
        assert codes(exchange(base, request(), source=HOARDER)) == [(429, "client_connection_limit")]
        assert exchange(base, request(), source=OTHER) == [(200, b"{}")]  # other clients are not limited
        for connection in half_open + busy:
            connection.close()
        assert settled(router) == QUIET


def test_when_the_router_is_full_the_address_holding_most_is_shed_and_others_never_see_503(scripted) -> None:
    replica = scripted(answer_ok)
    with running_router(config(replica.url, max_connections=8, max_connections_per_address=8)) as (router, base):
        keep_alive = connect(base, OTHER)
        keep_alive.sendall(request(close=False))
        wait_until(lambda: replica.requests and all(c.idle for c in router.listener.by_address.get(OTHER, ())))
        hoard = [connect(base, HOARDER) for _ in range(30)]
        for connection in hoard:
            connection.sendall(HEAD_ONLY)
        wait_until(lambda: router.metrics.limits[(SHED, "connections")] == 23)  # 1 + 30 connections, room for 8
        assert len(router.listener.by_address[HOARDER]) == 7
        assert exchange(base, request(), source=THIRD) == [(200, b"{}")]  # the hoarder made room again
        keep_alive.sendall(request())  # the well-behaved client's idle connection was left alone
        assert answers(keep_alive) == [(200, b"{}"), (200, b"{}")]
        for connection in hoard + [keep_alive]:
            connection.close()
        assert settled(router) == QUIET


def test_half_open_connections_from_many_addresses_go_before_a_served_keep_alive_connection(scripted) -> None:
    replica = scripted(answer_ok)
    with running_router(config(replica.url, max_connections=8)) as (router, base):
        keep_alive = connect(base, OTHER)
        keep_alive.sendall(request(close=False))
        wait_until(lambda: replica.requests and all(c.idle for c in router.listener.by_address.get(OTHER, ())))
        hoard = [connect(base, f"127.0.2.{n}") for n in range(1, 31)]  # one each: no address holds the most
        for connection in hoard:
            connection.sendall(HEAD_ONLY)
        wait_until(lambda: router.metrics.limits[(SHED, "connections")] == 23)
        keep_alive.sendall(request())
        assert answers(keep_alive) == [(200, b"{}"), (200, b"{}")]
        for connection in hoard:
            connection.close()
        assert settled(router) == QUIET


def test_requests_in_flight_are_limited_per_address(gated) -> None:
    with running_router(config(gated.url, max_in_flight_per_address=2)) as (router, base):
        running = [in_background(base, request(), HOARDER) for _ in range(2)]
        wait_until(lambda: router.client_in_flight.get(HOARDER) == 2)
        assert codes(exchange(base, request(), source=HOARDER)) == [(429, "client_in_flight_limit")]
        running.append(in_background(base, request(), OTHER))
        wait_until(lambda: router.client_in_flight.get(OTHER) == 1)
        assert_all_served(gated, running, router)


def test_requests_in_flight_are_limited_per_api_key_from_any_address(gated) -> None:
    with running_router(config(gated.url, max_in_flight_per_key=1), api_keys=("k1", "k2")) as (router, base):
        running = [in_background(base, request("k1"), HOARDER)]
        wait_until(lambda: sum(router.client_in_flight.values()) == 2)  # its address and its key
        assert codes(exchange(base, request("k1"), source=OTHER)) == [(429, "client_in_flight_limit")]
        running.append(in_background(base, request("k2"), OTHER))
        wait_until(lambda: sum(router.client_in_flight.values()) == 4)
        assert_all_served(gated, running, router)


def test_connections_are_limited_per_api_key(scripted) -> None:
    replica = scripted(answer_ok)
    with running_router(config(replica.url, max_connections_per_key=2), api_keys=("k1", "k2")) as (router, base):
        held = [connect(base, source) for source in (HOARDER, OTHER)]
        for connection in held:
            connection.sendall(request("k1", close=False))
        wait_until(lambda: sum(router.listener.by_key.values()) == 2 and len(replica.requests) == 2)
        assert codes(exchange(base, request("k1"), source=THIRD)) == [(429, "client_connection_limit")]
        assert exchange(base, request("k2"), source=THIRD) == [(200, b"{}")]
        held.pop().close()
        wait_until(lambda: sum(router.listener.by_key.values()) == 1)
        assert exchange(base, request("k1"), source=THIRD) == [(200, b"{}")]
        held[0].close()
        assert settled(router) == QUIET


@pytest.mark.parametrize(("fields", "status"), [(100, 200), (101, 431), (1000, 431)])
def test_more_header_fields_than_max_headers_get_431(scripted, fields, status) -> None:
    replica = scripted(answer_ok)
    with running_router(config(replica.url)) as (router, base):
        extra = b"".join(b"x-%d: v\r\n" % n for n in range(fields - 3))  # Host, Connection, Content-Length
        found = exchange(base, request(headers=extra))
        assert [s for s, _ in found] == [status]
        assert len(replica.requests) == (status == 200)
        assert settled(router) == QUIET


def test_an_unfinished_header_line_is_cut_at_the_head_limit_not_gathered(scripted) -> None:
    """llhttp reports a field only once it ends; the router counts the bytes of reads that are all head."""
    replica = scripted(answer_ok)
    with running_router(config(replica.url)) as (router, base), connect(base) as connection:
        connection.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: r\r\nX-Long: ")
        for _ in range(16):  # up to 256 KiB, each piece a read of its own; the router stops at 64 KiB
            connection.sendall(b"a" * 16384)
            time.sleep(0.05)
            if not router.listener.connections:
                break
        assert [status for status, _ in answers(connection)] == [431]
        assert settled(router) == QUIET and replica.requests == []


def test_a_clients_share_of_connections_falls_with_the_routers_cap() -> None:
    assert share(2048, 4096, 4096) == 2048
    assert share(2048, 480, 4096) == 240  # an open-file limit of 1024
    assert share(1, 10, 4096) == 1


def test_limits_below_one_are_config_errors() -> None:
    with pytest.raises(ConfigError) as error:
        parse({"limits": {"max_headers": 0, "max_in_flight_per_key": -1, "max_connections_per_address": "many"},
               "models": {"a": {"backends": ["http://127.0.0.1:1"]}}})
    assert set(error.value.problems) == {"limits.max_headers: expected 1 or more, got 0",
                                         "limits.max_in_flight_per_key: expected 1 or more, got -1",
                                         "limits.max_connections_per_address: expected int, got 'many'"}
