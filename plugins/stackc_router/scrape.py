"""What the router reads in a replica's Prometheus text: its queue, and its KV cache's capacity.

The text is read by prometheus_client's parser (the Prometheus project's own, no dependencies
of its own): labels in any order, quoted values with escapes, timestamps. A series that is
missing or unreadable is unknown, never zero capacity.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator

from prometheus_client.parser import text_string_to_metric_families

from stackc_router.config import CHARS_PER_TOKEN


def samples(text: str, name: str) -> Iterator[tuple[dict[str, str], float]]:
    """Each sample of the series ``name``: its labels and value (none from text that does not parse)."""
    for sample_name, labels, value in _parsed(text):
        if sample_name == name:
            yield labels, value


@functools.lru_cache(maxsize=1)
def _parsed(text: str) -> tuple[tuple[str, dict[str, str], float], ...]:
    """Every sample of a scrape, parsed once: the queue and the capacity are read from the same text."""
    found: list[tuple[str, dict[str, str], float]] = []
    try:
        for family in text_string_to_metric_families(text):
            found += [(sample.name, sample.labels, sample.value) for sample in family.samples]
    except ValueError:
        pass  # what parsed before the error stays readable
    return tuple(found)


def _selector(selector: str) -> tuple[str, dict[str, str]]:
    """``name{label="x"}`` as its name and labels."""
    name, brace, _ = selector.partition("{")
    if not brace:
        return name, {}
    return name, next((labels for labels, _ in samples(f"{selector} 0\n", name)), {})


def metric_value(text: str, selector: str) -> float:
    """Sum of a metric's samples; ``name{label="x"}`` keeps those with these labels."""
    name, wanted = _selector(selector)
    return sum(value for labels, value in samples(text, name) if wanted.items() <= labels.items())


def capacity_chars(text: str, name: str, factor_labels: tuple[str, ...] = ()) -> int | None:
    """Prompt characters a replica's KV cache holds, from the tokens it publishes; None when it publishes none.

    Tokens are the series' value times the values of ``factor_labels`` (vLLM's info gauge of 1
    labelled ``block_size`` and ``num_gpu_blocks``), summed over samples (one per data-parallel engine).
    """
    total, found = 0.0, False
    for labels, value in samples(text, name):
        try:
            tokens = value * math.prod(float(labels[label]) for label in factor_labels)
        except (KeyError, ValueError):  # e.g. num_gpu_blocks="None" before the engine has profiled memory
            continue
        if math.isfinite(tokens) and tokens > 0:
            total, found = total + tokens, True
    return round(total * CHARS_PER_TOKEN) if found else None
