"""Request smuggling and ambiguous framing (RFC 9112), next to uvicorn + h11 as the reference peer.

The replica behind the router is uvicorn with h11, the set-up where a forwarded bare LF used to
inject a second request. For every case: the router answers once, forwards nothing it refused,
never forwards a smuggled request, is at least as strict as uvicorn, and the next, unrelated
client gets its own answer.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time

import pytest
import uvicorn

from stackc_router.config import parse
from stackc_router.testing import QUIET, exchange, running_router, settled

BODY = b'{"model":"tiny","tag":"outer"}'
SMUGGLED = b'POST /smuggled HTTP/1.1\r\nHost: r\r\nContent-Length: 30\r\n\r\n{"model":"tiny","tag":"inner"}'


def request(*fields: bytes, body: bytes = BODY, start: bytes = b"POST /v1/chat/completions HTTP/1.1") -> bytes:
    return start + b"\r\n" + b"".join(f + b"\r\n" for f in fields) + b"\r\n" + body


def chunked(body: bytes) -> bytes:
    return b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)


# (case, bytes, the router's status (None: forwarded and answered), uvicorn+h11's first status (0: none, it waits)).
# h11 serves /smuggled for the bare-LF and CL.TE cases, two answers to the HTTP/2 preface.
CASES = [
    ("bare LF in Accept injects a request", request(b"Host: r", b"Accept: */*\n\n" + SMUGGLED.replace(b"\r\n", b"\n"),
                                                    b"Content-Length: 30"), 400, 200),
    ("bare LF ends a field", request(b"Host: r", b"Accept: */*\nContent-Length: 30"), 400, 200),
    ("bare CR in a value", request(b"Host: r", b"Accept: a\rb", b"Content-Length: 30"), 400, 400),
    ("bare LF request line", b"POST /v1/chat/completions HTTP/1.1\nHost: r\nContent-Length: 30\n\n" + BODY, 400, 200),
    ("Transfer-Encoding: gzip, chunked", request(b"Host: r", b"Transfer-Encoding: gzip, chunked", body=chunked(BODY)),
     501, 400),
    ("Transfer-Encoding: chunked, gzip", request(b"Host: r", b"Transfer-Encoding: chunked, gzip", body=chunked(BODY)),
     400, 400),
    ("Transfer-Encoding twice", request(b"Host: r", b"Transfer-Encoding: chunked", b"Transfer-Encoding: chunked",
                                        body=chunked(BODY)), 400, 400),
    ("Transfer-Encoding: xchunked", request(b"Host: r", b"Transfer-Encoding: xchunked", body=chunked(BODY)), 501, 400),
    ("Transfer-Encoding in HTTP/1.0", request(b"Host: r", b"Transfer-Encoding: chunked", body=chunked(BODY),
                                              start=b"POST /v1/chat/completions HTTP/1.0"), 400, 200),
    ("space before the colon (TE)", request(b"Host: r", b"Transfer-Encoding : chunked", b"Content-Length: 30",
                                            body=chunked(SMUGGLED)), 400, 400),
    ("Content-Length: +30", request(b"Host: r", b"Content-Length: +30"), 400, 400),
    ("Content-Length: -1", request(b"Host: r", b"Content-Length: -1"), 400, 400),
    ("Content-Length with a Unicode digit", request(b"Host: r", "Content-Length: ٣0".encode()), 400, 400),
    ("Content-Length: 30, 30", request(b"Host: r", b"Content-Length: 30, 30"), 400, 200),
    ("two conflicting Content-Lengths", request(b"Host: r", b"Content-Length: 30", b"Content-Length: 0",
                                                body=BODY + SMUGGLED), 400, 400),
    ("two equal Content-Lengths", request(b"Host: r", b"Content-Length: 30", b"Content-Length: 30"), 400, 200),
    ("Content-Length with Transfer-Encoding (CL.TE)", request(b"Host: r", b"Content-Length: 35",
                                                             b"Transfer-Encoding: chunked",
                                                             body=b"0\r\n\r\n" + SMUGGLED), 400, 200),
    ("Transfer-Encoding with Content-Length (TE.CL)", request(b"Host: r", b"Transfer-Encoding: chunked",
                                                             b"Content-Length: 4", body=chunked(BODY)), 400, 200),
    ("obs-fold", request(b"Host: r", b"Accept: a", b" b", b"Content-Length: 30"), 400, 200),
    ("NUL in a value", request(b"Host: r", b"Accept: a\x00b", b"Content-Length: 30"), 400, 400),
    ("chunk size with junk", request(b"Host: r", b"Transfer-Encoding: chunked", body=b"1e;\x00\r\n" + BODY + b"\r\n0\r\n\r\n"),
     400, 200),
    ("chunk lines ended by LF", request(b"Host: r", b"Transfer-Encoding: chunked", body=b"1e\n" + BODY + b"\n0\n\n"),
     400, 0),
    ("no Host", request(b"Content-Length: 30"), 400, 400),
    ("two Hosts", request(b"Host: r", b"Host: s", b"Content-Length: 30"), 400, 400),
    ("space in the target", request(b"Host: r", b"Content-Length: 30", start=b"POST /v1/chat/completions x HTTP/1.1"),
     400, 400),
    ("HTTP/2 preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 400, 200),
    ("Expect: something else", request(b"Host: r", b"Expect: 200-ok", b"Content-Length: 30"), 417, 200),
    ("valid, Content-Length", request(b"Host: r", b"Content-Length: 30"), None, 200),
    ("valid, chunked with an extension", request(b"Host: r", b"Transfer-Encoding: chunked",
                                                 body=b"1e;name=value\r\n" + BODY + b"\r\n0\r\n\r\n"), None, 200),
]


@pytest.fixture(scope="module")
def h11_replica():
    """uvicorn + h11 behind the router, answering every request with what it saw; ``seen`` lists (path, tag)."""
    yield from _h11_server()


@pytest.fixture(scope="module")
def h11_reference():
    """Another uvicorn + h11, sent each case directly: what it makes of a case (a request it may only
    finish when the client gives up) never shows in the router's replica."""
    yield from _h11_server()


def _h11_server():
    seen: list[tuple[str, str]] = []

    async def app(scope, receive, send) -> None:
        body, more = b"", True
        while more:
            message = await receive()
            body, more = body + message.get("body", b""), message.get("more_body", False)
        try:
            tag = json.loads(body)["tag"]
        except (ValueError, KeyError):
            tag = ""
        if scope["path"] != "/health":
            seen.append((scope["path"], tag))
        data = json.dumps({"path": scope["path"], "tag": tag}).encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(data))]})
        await send({"type": "http.response.body", "body": data})

    listening = socket.create_server(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, http="h11", lifespan="off", log_level="critical", access_log=False))
    thread = threading.Thread(target=asyncio.run, args=(server.serve(sockets=[listening]),), daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    yield f"http://127.0.0.1:{listening.getsockname()[1]}", seen
    server.should_exit = True
    thread.join(10)
    listening.close()


@pytest.fixture(scope="module")
def router_before_h11(h11_replica):
    url, _ = h11_replica
    config = parse({"limits": {"retries": 0}, "models": {"tiny": {"backends": [url], "health": {"interval_s": 60}}}})
    with running_router(config) as (router, base):
        yield router, base


@pytest.mark.parametrize(("data", "router_status", "h11_status"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_no_smuggling_no_double_answer_and_at_least_as_strict_as_uvicorn(h11_replica, h11_reference, router_before_h11,
                                                                          data, router_status, h11_status) -> None:
    url, seen = h11_replica
    router, base = router_before_h11
    if h11_status >= 400:
        assert router_status is not None  # at least as strict as the reference
    seen.clear()
    answers = exchange(base, data, seconds=1)  # refused: answered and closed at once; else kept alive
    if router_status is None:
        assert [s for s, _ in answers] == [200] and json.loads(answers[0][1]) == {"path": "/v1/chat/completions",
                                                                                  "tag": "outer"}
        assert seen == [("/v1/chat/completions", "outer")]
    else:
        assert [s for s, _ in answers] == [router_status]  # one answer, then the connection is closed
        assert json.loads(answers[0][1])["error"]["message"]
        assert seen == []  # nothing reached the replica, least of all /smuggled
    following = request(b"Host: r", b"Connection: close", b"Content-Length: 30", body=b'{"model":"tiny","tag":"next1"}')
    assert [json.loads(b)["tag"] for _, b in exchange(base, following)] == ["next1"]
    assert settled(router) == QUIET
    direct = exchange(h11_reference[0], data, seconds=0.5)
    assert [s for s, _ in direct][:1] == ([h11_status] if h11_status else [])  # the reference still does this
