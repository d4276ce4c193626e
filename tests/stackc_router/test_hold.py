"""A model with no ready replica: the router stays ready, holds its requests until a replica
starts (scale from zero), and answers a clear 503 when none does in time or the queue is full."""

from __future__ import annotations

import asyncio
import re
import socket
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from stackc_router.config import Config, ModelRoute, parse
from stackc_router.hold import HoldQueue, QueueFull
from stackc_router.testing import running_router
from tests.stackc_router.conftest import free_port

CHAT = {"messages": [{"role": "user", "content": "hi"}]}


def two_models(a: str, b: str, **hold) -> Config:
    """``a`` with a replica at ``a``, ``b`` with one at ``b`` (which may not run yet); fast health checks."""
    def model(served: str, url: str) -> dict:
        return {"served_name": served, "backends": [url], "health": {"interval_s": 0.2}}

    return parse({"hold": {"health_interval_s": 0.05, **hold},
                  "models": {"a": model("served-a", a), "b": model("served-b", b)}})


def until(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def pending(base: str, model: str) -> int:
    text = httpx.get(f"{base}/metrics").text
    return int(re.search(rf'^stackc_router_pending_requests\{{model="{re.escape(model)}"\}} (\d+)$', text, re.M)[1])


def readiness(base: str) -> tuple[int, dict]:
    response = httpx.get(f"{base}/ready")
    return response.status_code, response.json()


def chat(base: str, model: str, **extra) -> httpx.Response:
    return httpx.post(f"{base}/v1/chat/completions", json={"model": model, **CHAT, **extra}, timeout=30)


def test_a_model_without_replicas_keeps_the_router_ready_and_its_requests_wait_for_one(engines) -> None:
    b_port = free_port()
    config = two_models(engines.start(served="served-a"), f"http://127.0.0.1:{b_port}", timeout_s=30)
    with running_router(config) as (_, base), ThreadPoolExecutor(4) as pool:
        until(lambda: readiness(base)[1]["models"]["served-a"]["ready"] == 1)  # its first health check passed
        status, detail = readiness(base)
        assert status == 200 and detail == {"ready": True, "models": {
            "served-a": {"ready": 1, "total": 1, "pending": 0}, "served-b": {"ready": 0, "total": 1, "pending": 0}}}
        assert chat(base, "served-a").json()["choices"][0]["message"]["content"] == "hello world"
        assert {m["id"] for m in httpx.get(f"{base}/v1/models").json()["data"]} == {"served-a", "served-b"}

        held = [pool.submit(chat, base, "served-b"), pool.submit(chat, base, "served-b")]

        def stream() -> str:
            with httpx.stream("POST", f"{base}/v1/chat/completions", timeout=30,
                              json={"model": "served-b", "stream": True, **CHAT}) as response:
                assert response.status_code == 200
                return response.read().decode()

        held.append(pool.submit(stream))
        until(lambda: pending(base, "served-b") == 3)
        assert readiness(base)[1]["models"]["served-b"]["pending"] == 3
        assert chat(base, "served-a").status_code == 200  # A is served while B's requests wait

        engines.start(served="served-b", port=b_port)  # the autoscaler's new replica
        first, second, streamed = (future.result(timeout=10) for future in held)
        assert first.status_code == second.status_code == 200
        assert first.json()["model"] == "served-b" and "hello" in streamed and "[DONE]" in streamed
        assert pending(base, "served-b") == 0
        assert readiness(base)[1]["models"]["served-b"] == {"ready": 1, "total": 1, "pending": 0}


def test_held_requests_time_out_with_a_503_naming_the_model_and_the_gauge_goes_back_to_0(engines) -> None:
    config = two_models(engines.start(served="served-a"), f"http://127.0.0.1:{free_port()}", timeout_s=1)
    with running_router(config) as (_, base), ThreadPoolExecutor(2) as pool:
        plain = pool.submit(chat, base, "served-b")
        streaming = pool.submit(chat, base, "served-b", stream=True)
        until(lambda: pending(base, "served-b") == 2)
        for response in (plain.result(), streaming.result()):
            assert response.status_code == 503 and response.headers["content-type"] == "application/json"
            assert response.headers["retry-after"] == "1"
            error = response.json()["error"]
            assert error["code"] == "model_not_ready" and error["type"] == "server_error" and error["param"] == "model"
            assert "'served-b'" in error["message"] and "within 1 s" in error["message"]
        assert pending(base, "served-b") == 0
        assert 'stackc_router_hold_rejected_total{model="served-b",reason="timeout"} 2' in httpx.get(f"{base}/metrics").text


def test_a_full_queue_answers_503_at_once(engines) -> None:
    config = two_models(engines.start(served="served-a"), f"http://127.0.0.1:{free_port()}", queue=1, timeout_s=1)
    with running_router(config) as (_, base), ThreadPoolExecutor(1) as pool:
        first = pool.submit(chat, base, "served-b")
        until(lambda: pending(base, "served-b") == 1)
        started = time.monotonic()
        refused = chat(base, "served-b")
        assert time.monotonic() - started < 0.5
        assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
        assert "1 requests already wait" in refused.json()["error"]["message"]
        assert first.result().status_code == 503  # timed out after its second in the queue
        text = httpx.get(f"{base}/metrics").text
        assert 'stackc_router_hold_rejected_total{model="served-b",reason="queue_full"} 1' in text


def test_a_client_that_hangs_up_while_held_leaves_the_queue(engines) -> None:
    config = two_models(engines.start(served="served-a"), f"http://127.0.0.1:{free_port()}", timeout_s=30)
    with running_router(config) as (_, base):
        host, port = base.removeprefix("http://").split(":")
        body = b'{"model":"served-b","messages":[]}'
        with socket.create_connection((host, int(port))) as client:
            client.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: r\r\nContent-Length: %d\r\n\r\n%s"
                           % (len(body), body))
            until(lambda: pending(base, "served-b") == 1)
        until(lambda: pending(base, "served-b") == 0)


def test_without_holding_a_model_with_no_replica_is_a_503_at_once_and_readiness_needs_one(engines) -> None:
    down = f"http://127.0.0.1:{free_port()}"
    with running_router(two_models(down, down, queue=0)) as (_, base):
        status, detail = readiness(base)
        assert status == 503 and detail["ready"] is False and detail["models"]["served-a"]["ready"] == 0
        assert httpx.get(f"{base}/health").status_code == 200  # liveness is not readiness
        response = chat(base, "served-a")
        assert response.status_code == 503 and "no replica of 'served-a' is ready" in response.json()["error"]["message"]
    with running_router(two_models(down, down)) as (_, base):  # holding: ready while every model sleeps
        assert readiness(base)[0] == 200


def test_a_replica_found_by_discovery_gets_the_held_requests_without_a_health_check(engines) -> None:
    url = engines.start(served="served-b")
    slow_checks = ModelRoute("b", "served-b", health_interval_s=60)  # no replica yet: discovery brings it
    config = Config(models=(slow_checks,), hold_health_interval_s=60)
    with running_router(config) as (router, base), ThreadPoolExecutor(1) as pool:
        held = pool.submit(chat, base, "served-b")
        until(lambda: pending(base, "served-b") == 1)
        assert router.loop is not None
        router.loop.call_soon_threadsafe(router.set_backends, router.routes["b"], [url])
        assert held.result(timeout=5).status_code == 200


def test_held_requests_go_on_in_arrival_order_and_a_cancelled_one_leaves() -> None:
    async def scenario() -> list[int]:
        queue, resumed = HoldQueue(capacity=3), []

        async def request(number: int) -> None:
            await queue.wait(5)
            resumed.append(number)

        tasks = [asyncio.create_task(request(n)) for n in range(3)]
        await asyncio.sleep(0)
        with pytest.raises(QueueFull):
            await queue.wait(5)
        tasks[1].cancel()
        await asyncio.sleep(0)
        assert len(queue) == 2
        queue.release()
        await asyncio.gather(*tasks, return_exceptions=True)
        return resumed

    assert asyncio.run(scenario()) == [0, 2]
