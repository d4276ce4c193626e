from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from stackc_router.discovery import ready_backends
from stackc_router.strategies import (
    HashRing,
    Prefix,
    Session,
    prompt_prefix,
    stable_hash,
)


@dataclass(eq=False)
class FakeBackend:
    url: str
    in_flight: int = 0
    waiting: float = 0.0
    cache_chars: int | None = None


@settings(max_examples=50, deadline=None)
@given(st.lists(st.text(min_size=1, max_size=20), min_size=200, max_size=200, unique=True))
def test_removing_a_replica_moves_only_its_keys(keys: list[str]) -> None:
    urls = [f"http://10.0.0.{i}:8000" for i in range(5)]
    before = HashRing(urls)
    after = HashRing(urls[:-1])
    for key in keys:
        owner = before.walk(stable_hash(key))[0]
        if owner != urls[-1]:
            assert after.walk(stable_hash(key))[0] == owner


def test_prefix_is_sticky_and_bounded() -> None:
    backends = [FakeBackend(f"http://b{i}") for i in range(4)]
    strategy = Prefix(load_factor=1.25)
    body = {"messages": [{"role": "system", "content": "You are helpful."}, {"role": "user", "content": "hi"}]}
    first = strategy.order(backends, body, {})[0]
    assert all(strategy.order(backends, body, {})[0] is first for _ in range(10))
    first.in_flight = 10  # overloaded: the same prefix spills to the next replica on the ring
    assert strategy.order(backends, body, {})[0] is not first


def test_chat_prefix_includes_the_system_prompt_and_earlier_turns() -> None:
    body = {"messages": [{"role": "system", "content": "S"}, {"role": "user", "content": [{"type": "text", "text": "T"}]},
                         {"role": "assistant", "content": "A"}, {"role": "user", "content": "T2"}]}
    assert prompt_prefix(body, 1024) == "system:S\nuser:T\n"  # later turns keep the conversation's key
    assert prompt_prefix({"prompt": "x" * 5000}, 1024) == "x" * 1024


def test_session_header_pins_a_replica() -> None:
    backends = [FakeBackend(f"http://b{i}") for i in range(3)]
    strategy = Session(session_header="x-session-id")
    picks = {strategy.order(backends, {}, {"x-session-id": "user-7"})[0].url for _ in range(10)}
    assert len(picks) == 1


def test_endpointslices_give_ready_endpoints_only() -> None:
    slices = [{"endpoints": [
        {"addresses": ["10.0.0.1"], "conditions": {"ready": True}},
        {"addresses": ["10.0.0.2"], "conditions": {"ready": False}},
        {"addresses": ["10.0.0.3"], "conditions": {"ready": True, "terminating": True}},
        {"addresses": ["fd00::4"], "conditions": {}},
    ]}, {"endpoints": None}]
    assert ready_backends(slices, 8000) == ["http://10.0.0.1:8000", "http://[fd00::4]:8000"]


def chat(system: str, *turns: str) -> dict:
    return {"messages": [{"role": "system", "content": system}, *({"role": "user", "content": t} for t in turns)]}


def test_prefix_follows_cached_prefixes_within_the_load_bound() -> None:
    backends = [FakeBackend(f"http://b{i}", in_flight=2) for i in range(4)]
    strategy = Prefix(load_factor=1.25)
    system = "You are the assistant of tenant 1. " * 60

    def pick(*turns: str) -> FakeBackend:
        return strategy.order(backends, chat(system, *turns), {})[0]

    first = pick("question A " * 20)
    first.in_flight += 1
    assert pick("question B " * 20) is first  # the system prompt is cached there
    first.in_flight += 1
    second = pick("question C " * 20)  # the first is at the bound (1.25 x the mean): spill
    assert second is not first
    second.in_flight += 1
    assert pick("question D " * 20) is second  # both hold the system prompt: the less loaded one
    first.in_flight -= 1  # one of its requests is done: back within the bound
    for _ in range(3):  # a conversation goes on where its earlier turns are cached
        assert pick("question A " * 20, "more " * 30) is first
        assert pick("question C " * 20, "more " * 30) is second
