"""How a replica is picked. Each strategy sees the candidates (healthy backends) and the request.

``prefix`` remembers, per replica, the prompt blocks it was sent lately (an approximate picture
of its KV cache, as SGLang's cache-aware router keeps, as large as the capacity the replica
publishes) and sends a request where the longest part of its prompt is likely cached, passing
over replicas loaded above ``load_factor`` × the mean. A prompt no replica has seen goes where
consistent hashing of its opening puts it, so several routers in front of one pool agree.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import math
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, Protocol

VIRTUAL_NODES = 64
CHUNK_CHARS = 128  # prompt characters per remembered block
MAX_CHUNKS = 512  # the first 64 kB of a prompt are matched
CACHE_CHARS = 1_000_000  # a replica's prefix cache when it publishes none: ~250k tokens, one large GPU


class Backend(Protocol):
    url: str
    in_flight: int
    waiting: float
    cache_chars: int | None  # learned from the replica; None: the strategy's ``cache_chars``


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
            parts.append(f"{message.get('role')}:{_content(message.get('content'))}\n")
            if message.get("role") not in ("system", "developer") or sum(map(len, parts)) >= block_chars:
                break
        return "".join(parts)[:block_chars]
    prompt = body.get("prompt", body.get("input", ""))
    return (prompt if isinstance(prompt, str) else str(prompt))[:block_chars]


class Strategy:
    name = "base"

    def __init__(self, load_factor: float = 1.25, block_chars: int = 1024, session_header: str = "x-session-id",
                 cache_chars: int = CACHE_CHARS):
        self.load_factor = load_factor
        self.cache_chars = cache_chars
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
    """The replica that most likely holds the longest cached prefix, with bounded loads."""

    name = "prefix"

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self._sent: dict[str, OrderedDict[int, None]] = {}  # per replica URL: block chain hashes, oldest first

    def order(self, backends, body, headers):
        by_url = {b.url: b for b in backends}
        walk = [by_url[u] for u in self.ring(backends).walk(stable_hash(prompt_prefix(body, self.block_chars)))]
        total = sum(b.in_flight for b in backends) + 1
        bound = math.ceil(self.load_factor * total / len(backends))  # consistent hashing with bounded loads
        within = [b for b in walk if b.in_flight + 1 <= bound]
        chain = prompt_chain(body)
        matched = {b.url: self._matched(b.url, chain) for b in within}
        if within and max(matched.values()) > 0:  # most cached first; ties keep ring order
            within.sort(key=lambda b: (-matched[b.url], b.in_flight))
        ordered = within + [b for b in walk if b not in within]
        self._remember(ordered[0], chain)
        return ordered

    def _matched(self, url: str, chain: list[int]) -> int:
        """Leading blocks of ``chain`` sent to ``url`` lately; binary search, as a prefix is remembered whole."""
        sent = self._sent.get(url)
        if not sent:
            return 0
        low, high = 0, len(chain)
        while low < high:
            middle = (low + high + 1) // 2
            if chain[middle - 1] in sent:
                low = middle
            else:
                high = middle - 1
        return low

    def _remember(self, backend: Backend, chain: list[int]) -> None:
        sent = self._sent.setdefault(backend.url, OrderedDict())
        for block in chain:
            sent[block] = None
            sent.move_to_end(block)
        capacity = backend.cache_chars or self.cache_chars
        while len(sent) > capacity // CHUNK_CHARS:  # forget what the replica has likely evicted
            sent.popitem(last=False)


def prompt_chain(body: dict[str, Any]) -> list[int]:
    """Hashes of the prompt's blocks, each covering everything before it (as an engine's prefix cache does)."""
    if isinstance(body.get("messages"), list):
        text = "".join(f"{m.get('role')}:{_content(m.get('content'))}\n" for m in body["messages"] if isinstance(m, dict))
    else:
        prompt = body.get("prompt", body.get("input", ""))
        text = prompt if isinstance(prompt, str) else str(prompt)
    chain, previous = [], 0
    for start in range(0, min(len(text), CHUNK_CHARS * MAX_CHUNKS), CHUNK_CHARS):
        previous = hash((previous, text[start:start + CHUNK_CHARS]))
        chain.append(previous)
    return chain


def _content(content: Any) -> Any:
    if isinstance(content, list):  # multi-part content: keep the text parts
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return content


STRATEGIES: dict[str, type[Strategy]] = {s.name: s for s in (RoundRobin, LeastLoaded, Session, Prefix)}
