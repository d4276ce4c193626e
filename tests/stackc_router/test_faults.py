"""Replicas that misbehave, clients that stall or vanish: the right status every time, nothing leaked."""

from __future__ import annotations

import asyncio
import json
import resource
import socket
import subprocess
import sys
import time

import pytest

from stackc_router.config import parse
from stackc_router.testing import QUIET, answers, connect, exchange, running_router, settled, wait_until

CHAT = b'{"model":"tiny","messages":[{"role":"user","content":"hi"}]}'
STREAM = b'{"model":"tiny","stream":true,"messages":[{"role":"user","content":"hi"}]}'


def post(body: bytes = CHAT, extra: bytes = b"") -> bytes:
    return (b"POST /v1/chat/completions HTTP/1.1\r\nHost: r\r\nConnection: close\r\nContent-Type: application/json\r\n%s"
            b"Content-Length: %d\r\n\r\n%s" % (extra, len(body), body))


def config(*backends: str, **limits) -> dict:
    return parse({"limits": {"retries": 0, "read_timeout_s": 0.5, **limits},
                  "models": {"tiny": {"served_name": "tiny", "backends": list(backends),
                                      "health": {"interval_s": 60}}}})


def answer(body: bytes, status: int = 200) -> bytes:
    return b"HTTP/1.1 %d OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (status, len(body), body)


def stall(replica, connection) -> str:
    replica.wait_for_hangup(connection)
    return "close"


def head_then_stall(replica, connection) -> str:
    connection.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n" + b"x" * 10)
    return stall(replica, connection)


def head_then_die(replica, connection) -> str:
    connection.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n" + b"x" * 10)
    return "close"


def head_alone_then_die(replica, connection) -> str:
    """Killed between its head and its body, which most servers write apart (http.server, uvicorn)."""
    connection.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n")
    return "close"


@pytest.mark.parametrize(("script", "expected"), [
    pytest.param(lambda r, c: c.sendall(b"HTTP/1.1200 OK\r\ncontent-length: 0\r\n\r\n"), 502, id="status-line-without-space"),
    pytest.param(lambda r, c: c.sendall(b"HTTP/1.1 200 OK\r\nx: " + b"a" * 70_000 + b"\r\n\r\n"), 502, id="head-over-64KiB"),
    pytest.param(lambda r, c: c.sendall(b"hello\r\n\r\n"), 502, id="garbage"),
    pytest.param(lambda r, c: c.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\n{}"), 502,
                 id="conflicting-lengths"),
    pytest.param(lambda r, c: c.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ntransfer-encoding: chunked\r\n\r\n"),
                 502, id="length-and-chunked"),
    pytest.param(lambda r, c: "close", 502, id="killed-before-the-head"),
    pytest.param(stall, 504, id="stalls-before-the-head"),
    pytest.param(head_then_stall, None, id="stalls-mid-body"),
    pytest.param(head_then_die, None, id="killed-mid-body"),
    pytest.param(head_alone_then_die, 502, id="killed-between-head-and-body"),  # nothing reached the client yet
])
def test_a_broken_replica_gets_a_502_or_504_or_a_cut_never_a_hang(scripted, script, expected) -> None:
    """None: the status had already gone out, so the client sees the response cut short."""
    replica = scripted(script)
    with running_router(config(replica.url)) as (router, base):
        answers = exchange(base, post())
        if expected is None:
            assert answers == []  # headers arrived, the body never completed: the connection was closed
        else:
            assert [status for status, _ in answers] == [expected]
            error = json.loads(answers[0][1])["error"]
            assert error["type"] == "server_error" and error["code"] == "upstream_error"
        assert settled(router) == QUIET
        if script in (stall, head_then_stall):
            wait_until(lambda: replica.hangups == 1)  # the router gave up on the stalled replica (seen in its thread)


EVENT_STREAM = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def event_then(rest: bytes, end):
    """A stream: one whole event, then ``rest``, then ``end`` (a death or a stall)."""
    def script(replica, connection) -> str:
        connection.sendall(EVENT_STREAM + chunk(b'data: {"n":1}\n\n') + (chunk(rest) if rest else b""))
        return end(replica, connection)
    return script


@pytest.mark.parametrize(("script", "relayed", "message"), [
    pytest.param(event_then(b"", lambda r, c: "close"), b'data: {"n":1}\n\n', "closed the connection mid-response",
                 id="killed-after-an-event"),
    pytest.param(event_then(b'data: {"n', lambda r, c: "close"), b'data: {"n":1}\n\ndata: {"n\n\n',
                 "closed the connection mid-response", id="killed-mid-event"),
    pytest.param(event_then(b"", stall), b'data: {"n":1}\n\n', "sent nothing for 0.5 s", id="falls-silent"),
])
@pytest.mark.parametrize("version", [b"1.1", b"1.0"])
def test_a_cut_stream_ends_with_an_error_event(scripted, script, relayed, message, version) -> None:
    """As vLLM ends a stream that fails: ``data: {"error": …}``; chunked framing ends cleanly, then the close."""
    replica = scripted(script)
    with running_router(config(replica.url)) as (router, base):
        with connect(base) as client:
            client.sendall(post(STREAM).replace(b"HTTP/1.1", b"HTTP/" + version, 1))
            received = b""
            while chunk_ := client.recv(65536):
                received += chunk_
        head, _, body = received.partition(b"\r\n\r\n")
        if version == b"1.1":
            assert b"transfer-encoding: chunked" in head and body.endswith(b"0\r\n\r\n")
            (status, body), = exchange(base, post(STREAM))  # the same, through a parser of chunked framing
        assert body.startswith(relayed) and body.endswith(b"\n\n")
        error = json.loads(body.removeprefix(relayed).removeprefix(b"data: "))["error"]
        assert error["type"] == "server_error" and error["code"] == "upstream_error" and message in error["message"]
        assert settled(router) == QUIET


def test_the_openai_client_raises_on_a_cut_stream(scripted) -> None:
    import openai

    replica = scripted(event_then(b"", lambda r, c: "close"))
    with running_router(config(replica.url)) as (router, base):
        client = openai.OpenAI(base_url=f"{base}/v1", api_key="unused", max_retries=0)
        stream = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hi"}], stream=True)
        with pytest.raises(openai.APIError, match="closed the connection mid-response"):
            list(stream)
        assert settled(router) == QUIET


def test_a_replica_refusing_connections_is_down_at_once_until_a_health_check_passes(engines) -> None:
    alive, dead = engines.start(), engines.start()
    config_ = parse({"limits": {"retries": 1}, "models": {"tiny": {
        "served_name": "served-tiny", "strategy": "round_robin", "backends": [alive, dead],
        "health": {"interval_s": 60}}}})  # no health check during the test but the first
    with running_router(config_) as (router, base):
        route = router.routes["tiny"]
        wait_until(lambda: route.ready_replicas() == 2)
        engines.kill(dead)
        request = post(b'{"model":"served-tiny","messages":[]}')
        for _ in range(4):  # round robin: the dead one is first in line for two of them
            assert [status for status, _ in exchange(base, request)] == [200]
        assert not route.backends[dead].healthy and route.backends[alive].healthy
        engines.start(port=int(dead.rsplit(":", 1)[1]))
        for _ in range(4):  # back, but not yet checked: still down
            assert [status for status, _ in exchange(base, request)] == [200]
        assert not route.backends[dead].healthy
        asyncio.run_coroutine_threadsafe(router._check(route, route.backends[dead]), router.loop).result(5)
        assert route.backends[dead].healthy


def test_a_second_response_to_one_request_is_never_relayed(scripted) -> None:
    def two_responses(replica, connection) -> None:
        connection.sendall(answer(b'{"n":%d}' % len(replica.requests)))
        time.sleep(0.1)  # the stray arrives while the connection sits in the pool
        connection.sendall(answer(b'{"n":"stray"}'))

    replica = scripted(two_responses)
    with running_router(config(replica.url)) as (router, base):
        for n in (1, 2, 3):
            answers = exchange(base, post())
            assert answers == [(200, b'{"n":%d}' % n)]
            time.sleep(0.2)
        assert settled(router) == QUIET


@pytest.mark.parametrize("body", [CHAT, STREAM], ids=["json", "sse"])
def test_a_client_gone_during_prefill_stops_the_replica(scripted, body) -> None:
    replica = scripted(stall)
    with running_router(config(replica.url, read_timeout_s=30)) as (router, base):
        with connect(base) as client:
            client.sendall(post(body))
            wait_until(lambda: replica.requests)
        wait_until(lambda: replica.hangups == 1)
        assert settled(router) == QUIET


def test_a_client_gone_after_the_first_token_stops_the_replica(scripted) -> None:
    def one_token_then_wait(replica, connection) -> str:
        connection.sendall(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n6\r\ndata: \r\n")
        return stall(replica, connection)

    replica = scripted(one_token_then_wait)
    with running_router(config(replica.url, read_timeout_s=30)) as (router, base):
        with connect(base) as client:
            client.sendall(post(STREAM))
            received = b""
            while b"data: " not in received:
                received += client.recv(65536)
        wait_until(lambda: replica.hangups == 1)
        assert settled(router) == QUIET


def test_a_client_gone_mid_upload_never_reaches_a_replica(scripted) -> None:
    replica = scripted(lambda r, c: c.sendall(answer(b"{}")))
    with running_router(config(replica.url)) as (router, base):
        with connect(base) as client:
            client.sendall(post()[:-10])
        assert settled(router) == QUIET and replica.requests == []


@pytest.mark.parametrize(("data", "limits"), [
    pytest.param(b"POST /v1/chat/completions HTTP/1.1\r\nHost: r\r\n", {"header_timeout_s": 0.3}, id="slow-head"),
    pytest.param(post()[:-10], {"body_timeout_s": 0.3}, id="slow-body"),
])
def test_slowloris_gets_408(scripted, data, limits) -> None:
    replica = scripted(lambda r, c: c.sendall(answer(b"{}")))
    with running_router(config(replica.url, **limits)) as (router, base):
        assert [status for status, _ in exchange(base, data)] == [408]
        assert settled(router) == QUIET and replica.requests == []


def test_a_silent_connection_is_closed_after_the_header_timeout(scripted) -> None:
    replica = scripted(lambda r, c: c.sendall(answer(b"{}")))
    with running_router(config(replica.url, header_timeout_s=0.3)) as (router, base):
        assert exchange(base, b"") == []
        assert settled(router) == QUIET


def test_the_connection_cap_sheds_connections_without_a_head_and_refuses_with_503_when_all_have_one(scripted) -> None:
    replica = scripted(lambda r, c: c.sendall(answer(b"{}")))
    with running_router(config(replica.url, max_connections=8, max_connections_per_address=9)) as (router, base):
        idle = [connect(base) for _ in range(4)]
        half_open = [connect(base) for _ in range(4)]
        for connection in half_open:
            connection.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: r\r\n")
        wait_until(lambda: len(router.listener.connections) == 8)
        assert exchange(base, post()) == [(200, b"{}")]  # the oldest connection without a head made room
        busy = [connect(base) for _ in range(8)]
        for connection in busy:  # a complete head, the body still coming: closing it would lose a request
            connection.sendall(post()[:-10])
        wait_until(lambda: len(router.listener.connections) == 8 and not any(c.sheddable for c in router.listener.connections))
        answers = exchange(base, post())
        assert [status for status, _ in answers] == [503]
        assert json.loads(answers[0][1])["error"]["code"] == "too_many_connections"
        for connection in idle + half_open + busy:
            connection.close()
        assert settled(router) == QUIET


def test_idle_sockets_beyond_the_open_file_limit_do_not_starve_requests(scripted, tmp_path) -> None:
    """The issue's 1,100 idle sockets at 1,024 files, scaled down: 300 sockets at 256 files."""
    replica = scripted(lambda r, c: c.sendall(answer(b"{}")))
    port = _free_port()
    router = subprocess.Popen([sys.executable, "-m", "stackc_router", "--backend", f"tiny={replica.url}",
                               "--port", str(port)], stderr=subprocess.PIPE,
                              preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256)))
    sockets = []
    try:
        assert b"listening" in router.stderr.readline()
        base = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                sockets.append(connect(base))
            except OSError:
                break
        assert [status for status, _ in exchange(base, post())] == [200]
    finally:
        for connection in sockets:
            connection.close()
        router.kill()
        router.wait()
        router.stderr.close()


def test_expect_100_continue_is_answered_before_the_body(scripted) -> None:
    replica = scripted(lambda r, c: c.sendall(answer(b"{}")))
    with running_router(config(replica.url, max_body_bytes=1000)) as (router, base):
        head, _, body = post(extra=b"Expect: 100-continue\r\n").partition(b"\r\n\r\n")
        with connect(base) as client:
            client.sendall(head + b"\r\n\r\n")
            assert client.recv(65536) == b"HTTP/1.1 100 Continue\r\n\r\n"
            client.sendall(body)
            assert client.recv(65536).startswith(b"HTTP/1.1 200")
        too_large = b"POST /v1/chat/completions HTTP/1.1\r\nHost: r\r\nExpect: 100-continue\r\nContent-Length: 5000\r\n\r\n"
        assert [status for status, _ in exchange(base, too_large)] == [413]
        assert settled(router) == QUIET


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_pipelined_requests_are_answered_once_each_in_order(scripted) -> None:
    replica = scripted(lambda r, c: c.sendall(answer(b'{"n":%d}' % len(r.requests))))
    with running_router(config(replica.url)) as (router, base):
        keep_alive = post().replace(b"Connection: close\r\n", b"")
        answers = exchange(base, keep_alive * 3 + post())  # one write: parsed together, served one by one
        assert answers == [(200, b'{"n":%d}' % n) for n in (1, 2, 3, 4)]
        assert settled(router) == QUIET


def test_head_is_answered_without_a_body(scripted) -> None:
    replica = scripted(lambda r, c: c.sendall(answer(b"{}")))
    with running_router(config(replica.url)) as (router, base):
        with connect(base) as client:
            client.sendall(b"HEAD /health HTTP/1.1\r\nHost: r\r\n\r\nGET /health HTTP/1.1\r\nHost: r\r\nConnection: close\r\n\r\n")
            received = b""
            while chunk := client.recv(65536):
                received += chunk
        first, second = received.split(b"\r\n\r\n", 1)
        assert first.startswith(b"HTTP/1.1 200") and second.startswith(b"HTTP/1.1 200")  # nothing in between
        assert settled(router) == QUIET


def test_a_slow_reader_gets_every_byte_and_the_replica_connection_is_reused(scripted) -> None:
    big = b"x" * (16 << 20)  # more than the socket buffers hold: the router must pause the replica
    replica = scripted(lambda r, c: c.sendall(answer(big if len(r.requests) == 1 else b"{}")))
    with running_router(config(replica.url, read_timeout_s=5)) as (router, base):
        with connect(base) as client:
            client.sendall(post().replace(b"Connection: close\r\n", b""))
            time.sleep(0.5)  # the client does not read yet
            received = client.recv(1 << 20)
            head, _, body = received.partition(b"\r\n\r\n")
            while len(body) < len(big):
                body += client.recv(1 << 20)
            assert head.startswith(b"HTTP/1.1 200") and body == big
            client.sendall(post())
            assert client.recv(65536).startswith(b"HTTP/1.1 200")
        assert settled(router) == QUIET and len(replica.requests) == 2
        assert router.routes["tiny"].backends[replica.url].open == 1  # one replica connection served both


def test_a_pooled_connection_the_replica_closed_unanswered_is_retried_on_a_new_one(scripted) -> None:
    # the replica's keep-alive timeout crosses the router's second request on the connection
    def second_request_crosses_the_close(replica, connection) -> str | None:
        if len(replica.requests) == 2:
            return "close"
        connection.sendall(answer(b'{"n":%d}' % len(replica.requests)))
        return None

    replica = scripted(second_request_crosses_the_close)
    with running_router(config(replica.url)) as (router, base):
        assert exchange(base, post()) == [(200, b'{"n":1}')]
        assert exchange(base, post()) == [(200, b'{"n":3}')]
        backend = router.routes["tiny"].backends[replica.url]
        assert (backend.failures, backend.healthy) == (0, True)
        assert settled(router) == QUIET


@pytest.mark.parametrize(("body", "head"), [
    (CHAT, b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n"),
    (STREAM, EVENT_STREAM),  # the replica died during prefill
], ids=["json", "sse"])
def test_a_replica_killed_between_its_head_and_its_body_is_retried_on_another(scripted, body, head) -> None:
    # the flake of test_router's killed replica: the client got the head, then the cut, with a replica to spare
    def first_dies_after_its_head(replica, connection) -> str | None:
        if len(first.requests) + len(second.requests) == 1:
            connection.sendall(head)
            return "close"
        connection.sendall(answer(b'{"ok":1}'))
        return None

    first, second = scripted(first_dies_after_its_head), scripted(first_dies_after_its_head)
    with running_router(config(first.url, second.url, retries=1)) as (router, base):
        wait_until(lambda: all(b.healthy for b in router.routes["tiny"].backends.values()))
        with connect(base) as client:  # one keep-alive connection: the retried request, then another on it
            client.sendall(post(body).replace(b"Connection: close\r\n", b"") + post(body))
            assert answers(client) == [(200, b'{"ok":1}')] * 2
        assert len(first.requests) + len(second.requests) == 3
        assert settled(router) == QUIET


def test_a_connection_idle_longer_than_replicas_keep_it_is_not_reused(scripted, monkeypatch) -> None:
    monkeypatch.setattr("stackc_router.upstream.POOLED_IDLE_S", 0.0)
    connections: list = []  # the objects themselves: a closed one's id() may be reused by the next

    def answer_noting_the_connection(replica, connection) -> None:
        if not any(seen is connection for seen in connections):
            connections.append(connection)
        connection.sendall(answer(b"{}"))

    replica = scripted(answer_noting_the_connection)
    with running_router(config(replica.url)) as (router, base):
        for _ in range(3):
            assert exchange(base, post()) == [(200, b"{}")]
            time.sleep(0.01)
        assert len(connections) == 3 and len(replica.requests) == 3
