"""The router against fake engines: the official OpenAI client, failover, and a bad-input matrix."""

from __future__ import annotations

import json
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from openai import OpenAI

from stackc_router.config import parse
from stackc_router.scrape import CHARS_PER_TOKEN
from stackc_router.testing import running_router


def config_for(backends: list[str], **limits) -> dict:
    return {"limits": limits, "models": {"tiny": {"served_name": "served-tiny", "aliases": ["tiny", "gpt-4o-mini"],
                                                  "strategy": "prefix", "backends": backends,
                                                  "health": {"interval_s": 0.2}}}}


def test_openai_client_chat_completions_streaming_and_models(engines) -> None:
    backends = [engines.start(), engines.start()]
    with running_router(parse(config_for(backends))) as (_, base):
        client = OpenAI(base_url=f"{base}/v1", api_key="unused")
        assert {m.id for m in client.models.list()} == {"served-tiny", "tiny", "gpt-4o-mini"}
        chat = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
        assert chat.choices[0].message.content == "hello world" and chat.model == "served-tiny"  # alias rewritten
        completion = client.completions.create(model="tiny", prompt="hi")
        assert completion.choices[0].text == "hello world"
        stream = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hi"}], stream=True)
        assert "".join(c.choices[0].delta.content or "" for c in stream) == "hello world"


def test_prefix_routing_is_sticky_and_both_replicas_serve(engines) -> None:
    backends = [engines.start(), engines.start()]
    with running_router(parse(config_for(backends))) as (_, base):
        def served_by(prompt: str) -> str:
            body = {"model": "tiny", "messages": [{"role": "system", "content": prompt}, {"role": "user", "content": "q"}]}
            return httpx.post(f"{base}/v1/chat/completions", json=body).json()["system_fingerprint"]

        assert len({served_by("system prompt A") for _ in range(5)}) == 1
        assert len({served_by(f"tenant {i}") for i in range(20)}) == 2


def test_a_replica_killed_during_2000_requests_fails_none(engines) -> None:
    backends = [engines.start(), engines.start()]
    with running_router(parse(config_for(backends))) as (_, base):
        failures, done = [], []

        def one(i: int) -> None:
            body = {"model": "tiny", "messages": [{"role": "user", "content": f"request {i % 50}"}]}
            try:
                response = client.post(f"{base}/v1/chat/completions", json=body, timeout=10)
                (done if response.status_code == 200 else failures).append(response.status_code)
            except httpx.HTTPError as error:
                failures.append(repr(error))

        with httpx.Client() as client, ThreadPoolExecutor(8) as pool:
            futures = [pool.submit(one, i) for i in range(2000)]
            while len(done) < 500:
                time.sleep(0.01)
            engines.kill(backends[0])
            for future in futures:
                future.result()
        assert failures == [] and len(done) == 2000


def raw(base: str, data: bytes) -> bytes:
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as connection:
        connection.sendall(data)
        chunks = []
        while chunk := connection.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)


@pytest.mark.parametrize(("request_bytes", "status", "code"), [
    (b"POST /v1/chat/completions HTTP/1.1\r\nHost: r\r\nContent-Length: 5\r\nConnection: close\r\n\r\n{nope", 400, None),
    (b'POST /v1/chat/completions HTTP/1.1\r\nHost: r\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}', 400, None),
    (b'POST /v1/chat/completions HTTP/1.1\r\nHost: r\r\nContent-Length: 16\r\nConnection: close\r\n\r\n{"model":"none"}', 404,
     "model_not_found"),
    (b"POST /v1/chat/completions HTTP/1.1\r\nHost: r\r\nContent-Length: 99999999\r\nConnection: close\r\n\r\n", 413,
     "request_too_large"),
])
def test_bad_input_gets_openai_style_errors(engines, request_bytes: bytes, status: int, code: str | None) -> None:
    with running_router(parse(config_for([engines.start()], max_body_bytes=1000))) as (_, base):
        response = raw(base, request_bytes)
        head, _, body = response.partition(b"\r\n\r\n")
        assert head.split()[1] == str(status).encode()
        error = json.loads(body)["error"]
        assert error["message"] and error["type"] and error.get("code") == code


def test_wrong_api_key_is_401_and_health_stays_open(engines, tmp_path) -> None:
    config = parse(config_for([engines.start()]))
    with running_router(config, api_keys=("right-key",)) as (_, base):
        wrong = httpx.post(f"{base}/v1/chat/completions", json={"model": "tiny"}, headers={"Authorization": "Bearer x"})
        assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_api_key"
        assert httpx.get(f"{base}/v1/models").status_code == 401
        assert httpx.get(f"{base}/v1/models", headers={"Authorization": "Bearer right-key"}).status_code == 200
        assert httpx.get(f"{base}/health").status_code == 200


def test_a_client_gone_mid_stream_leaks_no_connection_or_task(engines) -> None:
    backend = engines.start()
    with running_router(parse(config_for([backend]))) as (router, base):
        loop_tasks = lambda: len(router.tasks)  # noqa: E731 - background tasks only (health watchers)
        before = loop_tasks()
        for _ in range(20):
            with httpx.stream("POST", f"{base}/v1/chat/completions",
                              json={"model": "tiny", "stream": True, "messages": [{"role": "user", "content": "x"}]}) as r:
                next(r.iter_raw())  # read the first bytes, then hang up
        time.sleep(0.3)
        route = router.routes["tiny"]
        assert route.backends[backend].in_flight == 0 and router.in_flight == 0
        assert len(route.backends[backend].idle) <= 1  # half-read upstream connections were closed, not pooled
        assert loop_tasks() == before
        assert httpx.post(f"{base}/v1/chat/completions", json={"model": "tiny", "messages": []}).status_code == 200


def test_metrics_count_per_model_and_backend_without_stalling(engines) -> None:
    url = engines.start()
    with running_router(parse(config_for([url]))) as (_, base):
        httpx.post(f"{base}/v1/chat/completions", json={"model": "tiny", "messages": []})
        text = httpx.get(f"{base}/metrics").text
        assert f'stackc_router_requests_total{{model="tiny",backend="{url}"}} 1' in text
        assert "stackc_router_latency_seconds_bucket" in text and "stackc_router_ttft_seconds_count" in text


def learned_capacity(backend, seconds: float = 5.0) -> int | None:
    """The cache size the router read from the replica's metrics, once it has."""
    deadline = time.monotonic() + seconds
    while backend.cache_chars is None and time.monotonic() < deadline:
        time.sleep(0.05)
    return backend.cache_chars


def test_the_router_learns_a_replicas_kv_cache_capacity_from_its_metrics(engines) -> None:
    url = engines.start()
    config = config_for([url])
    config["models"]["tiny"]["metrics"] = {"path": "/metrics", "kv_capacity": "vllm:cache_config_info",
                                           "kv_capacity_labels": ["block_size", "num_gpu_blocks"]}
    with running_router(parse(config)) as (router, _):
        assert learned_capacity(router.routes["tiny"].backends[url]) == 16 * 2048 * CHARS_PER_TOKEN


def test_metrics_on_a_port_of_their_own_are_read_on_the_replicas_host(engines) -> None:
    url = engines.start()
    metrics_url = engines.start()  # stands for the engine's metrics listener beside its serving port
    config = config_for([url])
    config["models"]["tiny"]["metrics"] = {"path": "/metrics", "port": int(metrics_url.rsplit(":", 1)[1]),
                                           "kv_capacity": "vllm:cache_config_info",
                                           "kv_capacity_labels": ["block_size", "num_gpu_blocks"]}
    with running_router(parse(config)) as (router, _):
        assert learned_capacity(router.routes["tiny"].backends[url]) == 16 * 2048 * CHARS_PER_TOKEN
    engines.kill(metrics_url)
    with running_router(parse(config)) as (router, _):  # nothing listens there: the replica is still served
        time.sleep(0.3)
        assert router.routes["tiny"].backends[url].cache_chars is None and router.routes["tiny"].backends[url].healthy


def test_json_nested_100k_deep_is_a_400_not_a_traceback(engines) -> None:
    with running_router(parse(config_for([engines.start()]))) as (_, base):
        response = httpx.post(f"{base}/v1/chat/completions", content=b'{"model":"tiny","x":' + b"[" * 100_000)
        assert response.status_code == 400 and response.json()["error"]["type"] == "invalid_request_error"
