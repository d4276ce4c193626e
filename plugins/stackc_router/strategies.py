"""How a replica is picked. Each strategy sees the candidates (healthy backends) and the request.

``prefix`` hashes what identifies a reusable prompt prefix (the system prompt and the first turn
of a conversation) onto a consistent-hash ring, and walks on past replicas loaded above
``load_factor`` × the mean: cache affinity without hot spots.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import math
from collections.abc import Sequence
from typing import Any, Protocol

VIRTUAL_NODES = 64


class Backend(Protocol):
    url: str
    in_flight: int
    waiting: float


def stable_hash(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "big")


class HashRing:
    """Consistent hashing: adding or removing one replica moves only its share of keys."""

    def __init__(self, urls: Sequence[str]):
        points = sorted((stable_hash(f"{url}#{i}"), url) for url in urls for i in range(VIRTUAL_NODES))
        self._hashes = [h for h, _ in points]
        self._urls = [u for _, u in points]

    def walk(self, key: int) -> list[str]:
        """Replicas in ring order starting at ``key``, each once."""
        if not self._urls:
            return []
        start = bisect.bisect(self._hashes, key) % len(self._urls)
        seen: dict[str, None] = {}
        for url in itertools.chain(self._urls[start:], self._urls[:start]):
            seen.setdefault(url)
        return list(seen)


def prompt_prefix(body: dict[str, Any], block_chars: int) -> str:
    """What identifies a reusable KV-cache prefix: the first ``block_chars`` of the system prompt
    and the conversation's first turn.

    Later turns are left out, so every turn of a conversation maps to one key (and replica). A
    long shared system prompt fills the block by itself, so its users share replicas (and its
    cached blocks); with a short one, conversations spread out.
    """
    if isinstance(body.get("messages"), list):
        parts = []
        for message in body["messages"]:
            if not isinstance(message, dict):
                continue
            content = message.get("content")
            if isinstance(content, list):  # multi-part content: keep the text parts
                content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
            parts.append(f"{message.get('role')}:{content}\n")
            if message.get("role") not in ("system", "developer") or sum(map(len, parts)) >= block_chars:
                break
        return "".join(parts)[:block_chars]
    prompt = body.get("prompt", body.get("input", ""))
    return (prompt if isinstance(prompt, str) else str(prompt))[:block_chars]


class Strategy:
    name = "base"

    def __init__(self, load_factor: float = 1.25, block_chars: int = 1024, session_header: str = "x-session-id"):
        self.load_factor = load_factor
        self.block_chars = block_chars
        self.session_header = session_header
        self._ring: HashRing | None = None
        self._ring_urls: tuple[str, ...] = ()

    def ring(self, backends: Sequence[Backend]) -> HashRing:
        urls = tuple(sorted(b.url for b in backends))
        if urls != self._ring_urls:
            self._ring, self._ring_urls = HashRing(urls), urls
        assert self._ring is not None
        return self._ring

    def order(self, backends: Sequence[Backend], body: dict[str, Any], headers: dict[str, str]) -> list[Backend]:
        """Candidates best first; the router tries the next one when one fails."""
        raise NotImplementedError


class RoundRobin(Strategy):
    name = "round_robin"

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self._counter = itertools.count()

    def order(self, backends, body, headers):
        start = next(self._counter) % len(backends)
        return [*backends[start:], *backends[:start]]


class LeastLoaded(Strategy):
    """Fewest requests in flight from this router plus what the engine reports waiting."""

    name = "least_loaded"

    def order(self, backends, body, headers):
        return sorted(backends, key=lambda b: (b.in_flight + b.waiting, b.url))


class Session(Strategy):
    """The same session (a header, else the body's ``user``) always lands on the same replica."""

    name = "session"

    def order(self, backends, body, headers):
        key = headers.get(self.session_header) or body.get("user")
        if not key:
            return LeastLoaded.order(self, backends, body, headers)
        by_url = {b.url: b for b in backends}
        return [by_url[u] for u in self.ring(backends).walk(stable_hash(str(key)))]


class Prefix(Strategy):
    """Consistent hashing of the prompt prefix with bounded loads."""

    name = "prefix"

    def order(self, backends, body, headers):
        by_url = {b.url: b for b in backends}
        walk = [by_url[u] for u in self.ring(backends).walk(stable_hash(prompt_prefix(body, self.block_chars)))]
        total = sum(b.in_flight for b in backends) + 1
        bound = math.ceil(self.load_factor * total / len(backends))  # consistent hashing with bounded loads
        within = [b for b in walk if b.in_flight + 1 <= bound]
        return within + [b for b in walk if b not in within]


STRATEGIES: dict[str, type[Strategy]] = {s.name: s for s in (RoundRobin, LeastLoaded, Session, Prefix)}
