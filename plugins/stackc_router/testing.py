"""Run a router in-process for tests: ``with running_router(config) as (router, base_url): …``.

``exchange`` speaks raw bytes to it (for requests no well-behaved client would send), from any
loopback address (``connect``: another client to the per-client limits), and ``settled`` reads its
counters once it is quiet, to prove nothing leaked.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import httptools

from stackc_router.config import Config
from stackc_router.server import Router


@contextmanager
def running_router(config: Config, api_keys: tuple[str, ...] = ()) -> Iterator[tuple[Router, str]]:
    """A router on a free loopback port, served by its own event loop in a thread."""
    loop = asyncio.new_event_loop()
    router = Router(config, api_keys)
    started = threading.Event()
    holder: dict = {}

    def run() -> None:
        asyncio.set_event_loop(loop)
        holder["server"] = loop.run_until_complete(router.start("127.0.0.1", 0))
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True, name="stackc-router-test")
    thread.start()
    started.wait(10)
    port = holder["server"].sockets[0].getsockname()[1]
    try:
        yield router, f"http://127.0.0.1:{port}"
    finally:
        async def shutdown() -> None:
            holder["server"].close()
            await router.close()

        asyncio.run_coroutine_threadsafe(shutdown(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()




def connect(base_url: str, source: str | None = None, seconds: float = 5.0) -> socket.socket:
    """A connection to the router from loopback address ``source`` (all of 127/8 is loopback): another
    client, as the router's per-address limits see it."""
    host, port = base_url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=seconds, source_address=(source, 0) if source else None)


def exchange(base_url: str, data: bytes, seconds: float = 5.0, source: str | None = None) -> list[tuple[int, bytes]]:
    """Send ``data`` on one connection (from ``source``, see ``connect``); every (status, body)
    answered until the peer closes it."""
    with connect(base_url, source, seconds) as connection:
        connection.sendall(data)
        return answers(connection, seconds)


def answers(connection: socket.socket, seconds: float = 5.0) -> list[tuple[int, bytes]]:
    """Every (status, body) read off ``connection`` until the peer closes it.

    A response without a length ends with the connection, so one cut short is not told apart.
    """
    found: list[tuple[int, bytes]] = []
    pending: list = []  # the response being read: [status, body chunks]
    framed: list[bytes] = []  # its Content-Length or Transfer-Encoding

    class Collect:
        def on_header(self, name: bytes, _: bytes) -> None:
            if name.lower() in (b"content-length", b"transfer-encoding"):
                framed.append(name)

        def on_headers_complete(self) -> None:
            if parser.get_status_code() >= 200:
                pending[:] = [parser.get_status_code(), []]

        def on_body(self, chunk: bytes) -> None:
            pending[1].append(chunk)

        def on_message_complete(self) -> None:
            if pending:
                found.append((pending[0], b"".join(pending[1])))
            pending.clear()
            framed.clear()

    parser = httptools.HttpResponseParser(Collect())
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            chunk = connection.recv(65536)
        except (TimeoutError, ConnectionResetError):
            break
        if not chunk:
            break
        parser.feed_data(chunk)
    if pending and not framed:  # ended by the close
        found.append((pending[0], b"".join(pending[1])))
    return found


def wait_until(condition: Callable[[], object], seconds: float = 5.0) -> None:
    """Poll ``condition`` until it holds; AssertionError after ``seconds``."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


QUIET = {"connections": 0, "in_flight": 0, "backend_in_flight": 0, "busy_upstream": 0, "request_tasks": 0,
         "clients_counted": 0}


def settled(router: Router, seconds: float = 5.0) -> dict[str, int]:
    """The router's counters once they read ``QUIET`` (polled: cleanup is asynchronous), else as they are."""
    async def snapshot() -> dict[str, int]:
        backends = [b for r in router.routes.values() for role in r.replica_sets() for b in role.backends.values()]
        return {"connections": len(router.listener.connections), "in_flight": router.in_flight,
                "backend_in_flight": sum(b.in_flight for b in backends),
                "busy_upstream": sum(b.open - len(b.idle) for b in backends),
                "request_tasks": len(asyncio.all_tasks() - router.tasks - {asyncio.current_task(),
                                                                             router.listener.sweeper}),
                "clients_counted": len(router.client_in_flight) + len(router.listener.by_address)
                + len(router.listener.by_key)}

    assert router.loop is not None
    deadline = time.monotonic() + seconds
    while True:
        state = asyncio.run_coroutine_threadsafe(snapshot(), router.loop).result(5)
        if state == QUIET or time.monotonic() > deadline:
            return state
        time.sleep(0.05)
