"""Run a router in-process for tests: ``with running_router(config) as (router, base_url): …``."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager

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


