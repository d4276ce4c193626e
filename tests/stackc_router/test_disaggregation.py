"""A prefill/decode-disaggregated model end to end: the real router between a client and fake
prefill and decode engines, for each protocol that joins the two roles, streaming and not."""

from __future__ import annotations

import json
import re
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import orjson
import pytest

from stackc_router.config import ConfigError, parse, to_data
from stackc_router.server import REMOTE_DECODE
from stackc_router.testing import QUIET, running_router, settled
from tests.stackc_router.conftest import free_port
from tests.stackc_router.test_hold import readiness, until

CHAT = {"messages": [{"role": "user", "content": "Say hello."}]}
FAST = {"hold": {"health_interval_s": 0.05}}


def disaggregated(decode: list[str], prefill: list[str], protocol: str, strategy: str = "prefix", **extra) -> dict:
    return {**FAST, "models": {"tiny": {
        "served_name": "served-tiny", "aliases": ["tiny"], "strategy": strategy, "backends": decode,
        "health": {"interval_s": 0.2}, "prefill": {"protocol": protocol, "backends": prefill, **extra}}}}


def received(engine: str) -> list[dict]:
    return httpx.get(f"{engine}/debug/requests").json()["requests"]


def post(base: str, path: str = "/v1/chat/completions", **body) -> httpx.Response:
    return httpx.post(f"{base}{path}", json={"model": "tiny", **CHAT, **body}, timeout=30)


def answered_by(response: httpx.Response, engines, url: str) -> bool:
    """The client's answer is the one this fake engine produced (streamed or whole)."""
    return f"pid-{engines.processes[url].pid}" in response.text


def metric(base: str, name: str, **labels: str) -> float:
    wanted = ",".join(f'{key}="{value}"' for key, value in labels.items())
    found = re.search(rf"^{name}\{{{re.escape(wanted)}\}} (\S+)$", httpx.get(f"{base}/metrics").text, re.M)
    return float(found[1]) if found else 0.0


def body_of(raw: bytes) -> dict:
    return json.loads(raw.split(b"\r\n\r\n", 1)[1])


@pytest.mark.parametrize("stream", [False, True])
def test_kv_transfer_params_go_from_the_prefill_answer_to_decode(engines, stream) -> None:
    prefill, decode = engines.start(), engines.start()
    with running_router(parse(disaggregated([decode], [prefill], "kv_transfer_params"))) as (_, base):
        extra = {"stream": True, "stream_options": {"include_usage": True}} if stream else {}
        response = post(base, max_tokens=50, max_completion_tokens=50, **extra)
        assert response.status_code == 200 and answered_by(response, engines, decode)
        assert ("data: " in response.text) is stream
        (first,) = received(prefill)
        assert first == {"model": "served-tiny", **CHAT, "max_tokens": 1, "max_completion_tokens": 1, "stream": False,
                         "kv_transfer_params": REMOTE_DECODE}
        (second,) = received(decode)
        port = int(prefill.rsplit(":", 1)[1])
        assert second == {"model": "served-tiny", **CHAT, "max_tokens": 50, "max_completion_tokens": 50, **extra,
                          "kv_transfer_params": {"do_remote_prefill": True, "do_remote_decode": False,
                                                 "remote_engine_id": f"engine-{port}", "remote_block_ids": [1, 2, 3],
                                                 "remote_host": "127.0.0.1", "remote_port": port}}
        assert metric(base, "stackc_router_prefill_latency_seconds_count", model="tiny", backend=prefill) == 1
        assert metric(base, "stackc_router_requests_total", model="tiny", backend=decode) == 1


@pytest.mark.parametrize("stream", [False, True])
def test_prefill_then_decode_sends_the_original_request_to_decode(engines, stream) -> None:
    prefill, decode = engines.start(), engines.start()
    with running_router(parse(disaggregated([decode], [prefill], "prefill_then_decode"))) as (_, base):
        response = post(base, max_tokens=50, stream=stream)
        assert response.status_code == 200 and answered_by(response, engines, decode)
        assert received(prefill) == [{"model": "served-tiny", **CHAT, "max_tokens": 1, "stream": False}]
        assert received(decode) == [{"model": "served-tiny", **CHAT, "max_tokens": 50, "stream": stream}]
        # what only decode computes (no generation to split) goes there alone
        assert post(base, "/v1/embeddings", input="hi").status_code == 200
        assert len(received(prefill)) == 1 and len(received(decode)) == 2


@pytest.mark.parametrize("stream", [False, True])
def test_bootstrap_sends_one_room_to_both_roles_at_once(engines, stream) -> None:
    prefill, decode = engines.start(), engines.start()
    with running_router(parse(disaggregated([decode], [prefill], "bootstrap", bootstrap_port=8998))) as (router, base):
        for _ in range(2):
            response = post(base, max_tokens=50, stream=stream)
            assert response.status_code == 200 and answered_by(response, engines, decode)
        assert received(prefill) == received(decode)  # the same body, room included, to both
        rooms = set()
        for body in received(decode):
            room = body.pop("bootstrap_room")
            assert isinstance(room, int) and 0 <= room < 2**63
            rooms.add(room)
            assert body == {"model": "served-tiny", **CHAT, "max_tokens": 50, "stream": stream,
                            "bootstrap_host": "127.0.0.1", "bootstrap_port": 8998}
        assert len(rooms) == 2  # a fresh room per request
        # the prefill's answer was read to its end and timed
        until(lambda: metric(base, "stackc_router_prefill_latency_seconds_count", model="tiny", backend=prefill) == 2)
        assert settled(router) == QUIET


def failing(replica, connection) -> None:
    connection.sendall(b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 2\r\n\r\n{}")


@pytest.mark.parametrize("protocol", ["kv_transfer_params", "prefill_then_decode"])
def test_a_failed_prefill_goes_to_another_prefill_replica(engines, scripted, protocol) -> None:
    broken, prefill, decode = scripted(failing), engines.start(), engines.start()
    config = parse(disaggregated([decode], [broken.url, prefill], protocol, strategy="round_robin"))
    with running_router(config) as (router, base):
        for _ in range(3):
            response = post(base)
            assert response.status_code == 200 and answered_by(response, engines, decode)
        assert broken.requests and len(received(prefill)) == 3  # every request prefilled once, on the good one
        errors = metric(base, "stackc_router_prefill_errors_total", model="tiny", backend=broken.url)
        assert errors == len(broken.requests) >= 1
        assert settled(router) == QUIET


def test_when_every_prefill_replica_fails_the_client_gets_an_openai_error(engines, scripted) -> None:
    broken, decode = scripted(failing), engines.start()
    with running_router(parse(disaggregated([decode], [broken.url], "kv_transfer_params"))) as (_, base):
        response = post(base)
        assert response.status_code == 502
        error = response.json()["error"]
        assert error["type"] == "server_error" and error["code"] == "upstream_error" and "prefill" in error["message"]
        assert received(decode) == []


def test_a_request_the_prefill_replica_refuses_gets_its_answer(engines, scripted) -> None:
    refusal = b'{"error":{"message":"prompt too long","type":"BadRequestError"}}'

    def refusing(replica, connection) -> None:
        connection.sendall(b"HTTP/1.1 400 Bad Request\r\ncontent-length: %d\r\n\r\n%s" % (len(refusal), refusal))

    refuser, decode = scripted(refusing), engines.start()
    with running_router(parse(disaggregated([decode], [refuser.url], "kv_transfer_params"))) as (_, base):
        response = post(base)
        assert response.status_code == 400 and response.content == refusal
        assert received(decode) == []


def test_bootstrap_retries_the_pair_when_the_prefill_replica_fails_before_decode_answers(engines, scripted) -> None:
    """Decode waits for the KV cache (here: answers after 0.5 s unless the router hangs up first)."""
    def slow_decode(replica, connection) -> str | None:
        replica.wait_for_hangup(connection, 0.5)
        if replica.hangups >= len(replica.requests):
            return "close"
        answer = orjson.dumps({"room": body_of(replica.requests[-1])["bootstrap_room"]})
        connection.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
                           % (len(answer), answer))
        return None

    broken, prefill, decode = scripted(failing), engines.start(), scripted(slow_decode)
    config = parse(disaggregated([decode.url], [broken.url, prefill], "bootstrap", strategy="round_robin",
                                 bootstrap_port=8998))
    with running_router(config) as (router, base):
        response = post(base)
        assert response.status_code == 200
        (good,) = received(prefill)
        first, second = (body_of(raw) for raw in decode.requests)
        until(lambda: decode.hangups == 1)  # the decode request waiting on the failed prefill's room was abandoned
        assert first["bootstrap_room"] != second["bootstrap_room"] == good["bootstrap_room"]
        assert response.json() == {"room": good["bootstrap_room"]}  # the client got the retried pair's answer
        assert metric(base, "stackc_router_prefill_errors_total", model="tiny", backend=broken.url) == 1
        assert settled(router) == QUIET


def test_requests_wait_until_both_roles_have_a_ready_replica(engines) -> None:
    prefill_port = free_port()
    decode = engines.start()
    config = parse(disaggregated([decode], [f"http://127.0.0.1:{prefill_port}"], "prefill_then_decode"))
    with running_router(config) as (_, base), ThreadPoolExecutor(1) as pool:
        until(lambda: readiness(base)[1]["models"]["served-tiny"]["ready"] == 1)
        assert readiness(base)[1]["models"]["served-tiny"]["prefill"] == {"ready": 0, "total": 1}
        waiting = pool.submit(post, base)
        until(lambda: metric(base, "stackc_router_pending_requests", model="served-tiny") == 1)
        time.sleep(0.3)
        assert not waiting.done() and received(decode) == []  # decode alone does not serve it
        prefill = engines.start(port=prefill_port)
        response = waiting.result(10)
        assert response.status_code == 200 and answered_by(response, engines, decode)
        assert len(received(prefill)) == 1


def test_with_no_hold_queue_a_missing_prefill_role_is_named_in_the_503(engines) -> None:
    decode = engines.start()
    config = disaggregated([decode], [f"http://127.0.0.1:{free_port()}"], "kv_transfer_params")
    config["hold"]["queue"] = 0
    with running_router(parse(config)) as (_, base):
        until(lambda: readiness(base)[1]["models"]["served-tiny"]["ready"] == 1)
        response = post(base)
        assert response.status_code == 503
        assert response.json()["error"]["message"] == "no prefill replica of 'served-tiny' is ready"


def test_the_prefill_part_is_checked_with_every_problem_located() -> None:
    def problems(prefill: object) -> list[str]:
        with pytest.raises(ConfigError) as error:
            parse({"models": {"tiny": {"backends": ["http://decode:8000"], "prefill": prefill}}})
        return error.value.problems

    assert problems({"protocol": "nixl", "bootstrap_port": 70000, "health": {"path": 1, "interval_s": 1},
                     "backends": ["decode:8000"], "extra": 1}) == [
        "models.tiny.prefill.extra: unknown key (expected one of: backends, bootstrap_port, discovery, health, protocol)",
        "models.tiny.prefill.protocol: expected one of kv_transfer_params, prefill_then_decode, bootstrap, got 'nixl'",
        "models.tiny.prefill.backends[0]: expected an http:// URL, got 'decode:8000'",
        "models.tiny.prefill.bootstrap_port: expected a port (1-65535), got 70000",
        "models.tiny.prefill.health.interval_s: unknown key (expected one of: path)",
        "models.tiny.prefill.health.path: expected str, got 1",
    ]
    assert problems({"protocol": "bootstrap", "discovery": {"kubernetes": {"namespace": "ml"}}}) == [
        "models.tiny.prefill.discovery.kubernetes: needs namespace, service and port",
        "models.tiny.prefill: needs backends or discovery.kubernetes",
        "models.tiny.prefill.bootstrap_port: the bootstrap protocol needs the prefill servers' bootstrap port",
    ]
    assert problems({"protocol": "kv_transfer_params", "backends": ["http://p:8000"], "bootstrap_port": 8998}) == [
        "models.tiny.prefill.bootstrap_port: only the bootstrap protocol uses it (protocol is kv_transfer_params)"]
    assert problems("prefill") == ["models.tiny.prefill: expected a mapping, got str",
                                   "models.tiny.prefill.protocol: expected one of kv_transfer_params, "
                                   "prefill_then_decode, bootstrap, got None",
                                   "models.tiny.prefill: needs backends or discovery.kubernetes"]


def test_the_prefill_part_is_written_as_it_is_read() -> None:
    config = parse(disaggregated(["http://decode:8000"], ["http://prefill:8000"], "bootstrap", bootstrap_port=8998,
                                 discovery={"kubernetes": {"namespace": "ml", "service": "p", "port": 8000}},
                                 health={"path": "/healthz"}))
    assert parse(to_data(config)) == config
    assert to_data(config)["models"]["tiny"]["prefill"] == {
        "protocol": "bootstrap", "backends": ["http://prefill:8000"], "bootstrap_port": 8998,
        "discovery": {"kubernetes": {"namespace": "ml", "service": "p", "port": 8000}}, "health": {"path": "/healthz"}}


def test_a_client_that_leaves_during_a_bootstrap_pair_leaves_nothing_behind(engines, scripted) -> None:
    def silent_decode(replica, connection) -> str:
        replica.wait_for_hangup(connection, 5)
        return "close"

    prefill, decode = engines.start(), scripted(silent_decode)
    config = parse(disaggregated([decode.url], [prefill], "bootstrap", bootstrap_port=8998))
    with running_router(config) as (router, base):
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{base}/v1/chat/completions", json={"model": "tiny", **CHAT, "stream": True}, timeout=1)
        assert settled(router) == QUIET
        until(lambda: decode.hangups == 1)  # the decode replica was told, by the router hanging up
