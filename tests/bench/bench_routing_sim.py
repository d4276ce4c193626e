"""Routing simulator: cache hit rate and load balance of each strategy on a synthetic trace.

Run: python tests/bench/bench_routing_sim.py [REQUESTS] [REPLICAS] [PREFIX_CHARS] [LOAD_FACTOR]

The trace is multi-tenant: each tenant has a long system prompt (Zipf popularity) and users
hold multi-turn chats, so prompts share prefixes at two levels. Each replica keeps an LRU cache
of prompt blocks (a block is cached with its whole prefix, as in vLLM's prefix cache). The
router's real strategy classes pick replicas; requests stay in flight for a time that grows with
their uncached blocks, which is what the bounded-load rule sees. The reference, in the same run,
is an oracle: one cache as large as all replicas' together, with no load limits.

Replicas publish their cache's capacity as vLLM does (``vllm:cache_config_info``), and the
router's own reader turns it into what the strategy sees, as its metrics scrape would; the
"default" row is a replica that publishes nothing, the "told" row a config that sets
``cache_chars`` to the truth. The "fit check" rows are a replica that publishes nothing (TensorRT-LLM,
llama.cpp) with the ``cache_chars`` the router target writes from ``stackc plan``'s KV tokens per replica,
off from the truth as much as the fit check's predictions are off from real engines: one row per measured
success of bench_fit.py, its predicted KV cache ÷ the measured one.
"""

from __future__ import annotations

import hashlib
import random
import sys
from collections import OrderedDict
from dataclasses import dataclass

from stackc_router.scrape import capacity_chars
from stackc_router.strategies import STRATEGIES

BLOCK_CHARS = 64  # characters per simulated KV block
CAPACITY_BLOCKS = 600  # per replica
SYSTEM_PROMPT_BLOCKS = 24
TOKEN_BLOCK = 16  # tokens per KV block the simulated engine publishes (vLLM's default block_size)
PREFIX_CHARS = int(sys.argv[3]) if len(sys.argv) > 3 else 1024  # what the prefix strategy hashes
LOAD_FACTOR = float(sys.argv[4]) if len(sys.argv) > 4 else 1.25  # the bound of the bounded loads


@dataclass(eq=False)
class Replica:
    url: str
    in_flight: int = 0
    waiting: float = 0.0
    cache_chars: int | None = None
    served: int = 0


class LruBlocks:
    def __init__(self, capacity: int):
        self.capacity = capacity
        self.blocks: OrderedDict[int, None] = OrderedDict()

    def serve(self, chain: list[int]) -> int:
        """Cached leading blocks of ``chain``; afterwards the whole chain is cached."""
        hits = 0
        for block in chain:
            if block in self.blocks:
                hits += 1
            else:
                break
        for block in chain:
            self.blocks[block] = None
            self.blocks.move_to_end(block)
        while len(self.blocks) > self.capacity:
            self.blocks.popitem(last=False)
        return hits


def trace(requests: int, seed: int = 7) -> list[tuple[list[dict], list[int]]]:
    """(chat messages, block hash chain) per request."""
    rng = random.Random(seed)
    tenants = 48
    weights = [1 / (rank + 1) ** 1.1 for rank in range(tenants)]
    conversations: list[tuple[int, list[str]]] = []
    out = []
    for _ in range(requests):
        if conversations and rng.random() < 0.6:
            index = rng.randrange(len(conversations))
            tenant, turns = conversations[index]
            turns.append(f"turn {len(turns)} of conversation {index}: " + "x" * rng.randint(64, 256))
            if len(turns) > 8:
                conversations.pop(index)
        else:
            tenant = rng.choices(range(tenants), weights)[0]
            turns = [f"opening question {rng.random():.6f} " + "y" * rng.randint(64, 256)]
            conversations.append((tenant, turns))
        system = f"You are the assistant of tenant {tenant}. " * (SYSTEM_PROMPT_BLOCKS * BLOCK_CHARS // 40)
        messages = [{"role": "system", "content": system}] + [{"role": "user", "content": t} for t in turns]
        text = "".join(f"{m['role']}:{m['content']}\n" for m in messages)
        chain, running = [], 0
        for start in range(0, len(text), BLOCK_CHARS):
            digest = hashlib.blake2b(f"{running}|{text[start:start + BLOCK_CHARS]}".encode(), digest_size=8)
            running = int.from_bytes(digest.digest(), "big")
            chain.append(running)
        out.append((messages, chain))
    return out


def published_metrics(chars_per_token: float) -> str:
    """What a replica's /metrics says of its cache, when its text averages ``chars_per_token``."""
    blocks = round(CAPACITY_BLOCKS * BLOCK_CHARS / chars_per_token / TOKEN_BLOCK)
    return f'vllm:cache_config_info{{block_size="{TOKEN_BLOCK}",num_gpu_blocks="{blocks}"}} 1.0\n'


def simulate(strategy_name: str, requests: list, replicas: int, chars_per_token: float | None = None,
             **options) -> tuple[float, float]:
    """Hit rate and peak/mean load; replicas publish their capacity when ``chars_per_token`` is given."""
    pool = [Replica(f"http://replica-{i}") for i in range(replicas)]
    if chars_per_token is not None:
        for replica in pool:  # as the router's health loop does with each scrape
            replica.cache_chars = capacity_chars(published_metrics(chars_per_token), "vllm:cache_config_info",
                                                 ("block_size", "num_gpu_blocks"))
    caches = {r.url: LruBlocks(CAPACITY_BLOCKS) for r in pool}
    strategy = STRATEGIES[strategy_name](load_factor=LOAD_FACTOR, block_chars=PREFIX_CHARS, **options)
    finishing: list[tuple[int, Replica]] = []
    hits = total = 0
    for step, (messages, chain) in enumerate(requests):
        while finishing and finishing[0][0] <= step:
            finishing.pop(0)[1].in_flight -= 1
        replica = strategy.order(pool, {"messages": messages}, {"x-session-id": messages[0]["content"][:40]})[0]
        hit = caches[replica.url].serve(chain)
        hits += hit
        total += len(chain)
        replica.in_flight += 1
        duration = 24 + (len(chain) - hit) // 2  # decode, plus prefill of the uncached blocks
        replica.served += duration
        finishing.append((step + duration, replica))
        finishing.sort(key=lambda item: item[0])
    served = [r.served for r in pool]  # work done: sum of request durations
    return hits / total, max(served) / (sum(served) / len(served))


def oracle(requests: list, replicas: int) -> float:
    cache = LruBlocks(CAPACITY_BLOCKS * replicas)
    hits = sum(cache.serve(chain) for _, chain in requests)
    return hits / sum(len(chain) for _, chain in requests)


def fit_check_errors() -> list[tuple[str, float]]:
    """(row, predicted KV ÷ measured KV) for each measured success of the fit benchmark."""
    import bench_fit

    errors = []
    for row in bench_fit.ROWS:
        if row.fix is None:
            fit, _ = bench_fit.predict(row)
            if fit.kv_cache_gib_per_device is not None:
                errors.append((row.what.split(",")[0] + f" {row.engine}", fit.kv_cache_gib_per_device / row.kv_gib))
    return errors


def main(count: int, replicas: int) -> None:
    requests = trace(count)
    best = oracle(requests, replicas)
    print(f"{count} requests, {replicas} replicas, {CAPACITY_BLOCKS} blocks of cache each")
    print(f"oracle (one cache of {CAPACITY_BLOCKS * replicas} blocks, no load limit): hit rate {best:.3f}")
    print("prefix (learned): default config, replicas publish their capacity (text of N chars/token; the router")
    print("assumes 4); (default): they publish none, so 1 MB is assumed; (told): cache_chars set to the truth")
    errors = fit_check_errors()
    for what, ratio in errors:
        print(f"(fit check ×{ratio:.2f}): publish none, cache_chars from stackc plan as far off as its prediction "
              f"for {what} (bench_fit.py)")
    print(f"{'strategy':<28} {'hit rate':>9} {'of oracle':>10} {'peak/mean load':>15}")
    runs = [("prefix (learned)", "prefix", {"chars_per_token": 4}),
            ("prefix (learned, 3 c/t)", "prefix", {"chars_per_token": 3}),
            ("prefix (learned, 5 c/t)", "prefix", {"chars_per_token": 5}),
            ("prefix (default)", "prefix", {}), ("prefix (told)", "prefix", {"cache_chars": CAPACITY_BLOCKS * BLOCK_CHARS}),
            ("session", "session", {}), ("least_loaded", "least_loaded", {}), ("round_robin", "round_robin", {})]
    truth = CAPACITY_BLOCKS * BLOCK_CHARS
    for _, ratio in sorted(errors, key=lambda error: error[1], reverse=True):
        runs.insert(5, (f"prefix (fit check ×{ratio:.2f})", "prefix", {"cache_chars": round(truth * ratio)}))
    for label, name, options in runs:
        rate, balance = simulate(name, requests, replicas, **options)
        print(f"{label:<28} {rate:>9.3f} {rate / best:>9.1%} {balance:>15.2f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20000, int(sys.argv[2]) if len(sys.argv) > 2 else 8)
