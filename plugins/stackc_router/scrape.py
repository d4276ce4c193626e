"""What the router reads in a replica's Prometheus text: its queue, and its KV cache's capacity.

A tight reader of the text exposition format, for the few series the router names: labels in any
order, quoted values with escapes, an optional timestamp. (No Prometheus client is among the
router's dependencies, and one would be a large import for a handful of lines.) A series that is
missing or unreadable is unknown, never zero capacity.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator

#: characters per token of the prompts an engine caches: ~4 for English text and code with the
#: common BPE tokenizers (Llama 3, GPT-4's cl100k); fewer for other scripts, so a guess on the short side
CHARS_PER_TOKEN = 4

_LABEL = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?')
_CLOSE = re.compile(r"\s*}")
_ESCAPE = re.compile(r"\\(.)")


def samples(text: str, name: str) -> Iterator[tuple[dict[str, str], float]]:
    """Each sample of the series ``name``: its labels and value."""
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith(name):
            continue
        rest = line[len(name):]
        labels: dict[str, str] | None = {}
        if rest.startswith("{"):
            labels, rest = _labels(rest)
        elif rest[:1] not in (" ", "\t"):  # a longer name that starts with this one
            continue
        fields = rest.split()
        if labels is None or not fields:
            continue
        try:
            yield labels, float(fields[0])
        except ValueError:
            continue


def _labels(text: str) -> tuple[dict[str, str] | None, str]:
    """The ``{…}`` at the start of ``text`` and what follows it; None when it is malformed."""
    labels, position = {}, 1
    while not (closing := _CLOSE.match(text, position)):
        match = _LABEL.match(text, position)
        if match is None:
            return None, ""
        labels[match[1]] = _ESCAPE.sub(lambda m: "\n" if m[1] == "n" else m[1], match[2])
        position = match.end()
    return labels, text[closing.end():]


def metric_value(text: str, selector: str) -> float:
    """Sum of a metric's samples; ``name{label="x"}`` keeps those with these labels."""
    name, brace, _ = selector.partition("{")
    wanted = (_labels(selector[len(name):])[0] or {}) if brace else {}
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
