"""Requests held for a model with no ready replica (scale from zero, a replica still loading).

A bounded queue per model: a request waits here until a replica is ready, then goes on in
arrival order; one that waits too long, or finds the queue full, gets a 503. How many wait is
the ``stackc_router_pending_requests`` gauge, an autoscaler's signal to wake the model.
"""

from __future__ import annotations

import asyncio
from collections import deque


class QueueFull(Exception):
    """``capacity`` requests already wait for this model."""


class HoldQueue:
    def __init__(self, capacity: int):
        self.capacity = capacity
        self.waiters: deque[asyncio.Future[None]] = deque()

    def __len__(self) -> int:
        return len(self.waiters)

    async def wait(self, seconds: float) -> None:
        """Until ``release``; TimeoutError after ``seconds``, QueueFull at once when there is no room.

        A request cancelled while it waits (its client hung up) leaves the queue at once, so the
        pending count only ever counts requests someone still waits for.
        """
        if len(self.waiters) >= self.capacity:
            raise QueueFull
        waiter = asyncio.get_running_loop().create_future()
        self.waiters.append(waiter)
        try:
            async with asyncio.timeout(seconds):
                await waiter
        finally:
            if waiter in self.waiters:  # timed out or cancelled, not released
                self.waiters.remove(waiter)

    def release(self) -> None:
        """Every waiting request goes on, first come first: their tasks resume in this order."""
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():  # one cancelled a moment ago leaves the queue when its task runs
                waiter.set_result(None)
