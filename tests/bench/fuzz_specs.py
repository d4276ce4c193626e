"""Fuzz the compiler: random specs drawn from the IR, mutations of every file in specs/, and
random specs cleared of what ``stackc check`` rejects (so that every target's emitter runs).

Usage: python tests/bench/fuzz_specs.py [CASES] [--seed N] [--valid COUNT] [--save DIR]

Every case must end in output or in located diagnostics (exit 2), never an internal error
(exit 3) or a hang (over 10 s). ``--valid COUNT`` also compiles COUNT random specs that pass
``stackc check`` with every target on and validates each emitted object strictly (Kubernetes
OpenAPI and the upstream CRDs). Exits 1 when anything fails.
"""

from __future__ import annotations

import argparse
import collections
import random
import signal
import sys
import time
from pathlib import Path

from stackc.fuzzing import SpecGenerator, compile_outcome, mutate, spec_files
from stackc.plugins import load_registry
from stackc.testing import rejected_objects

REPO = Path(__file__).resolve().parents[2]
HANG_SECONDS = 10


class Hang(Exception):
    pass


def _alarm(signum: int, frame: object) -> None:
    raise Hang


def fuzz(cases: int, seed: int, save: Path | None) -> int:
    registry = load_registry()
    texts = [(p.relative_to(REPO).as_posix(), p.read_text()) for p in spec_files(REPO / "specs")]
    counts: collections.Counter[str] = collections.Counter()
    failures = []
    signal.signal(signal.SIGALRM, _alarm)
    started = time.perf_counter()
    for case in range(cases):
        rng = random.Random(f"{seed}-{case}")
        generator = SpecGenerator(registry, rng)
        if case % 3 == 1:
            name, original = rng.choice(texts)
            text, origin = mutate(original, rng, generator), f"mutated {name}"
        elif case % 3 == 2:  # mostly valid, so that the targets' emitters run too
            text, origin = SpecGenerator(registry, rng, valid=True).valid_spec() or generator.text(), "checked"
        else:
            text, origin = generator.text(), "random"
        signal.alarm(HANG_SECONDS)
        try:
            outcome = compile_outcome(registry, text)
            kind, detail = outcome.kind, outcome.detail
        except Hang:
            kind, detail = "hang", f"over {HANG_SECONDS} s"
        finally:
            signal.alarm(0)
        counts[kind] += 1
        if kind in ("internal", "hang"):
            failures.append((case, origin, detail, text))
    elapsed = time.perf_counter() - started
    print(f"{cases} cases (seed {seed}) in {elapsed:.0f} s: {counts['ok']} compiled, {counts['invalid']} located "
          f"diagnostics, {counts['internal']} internal errors, {counts['hang']} hangs")
    for case, origin, detail, text in failures[:20]:
        print(f"  case {case} ({origin}): {detail}")
        if save:
            save.mkdir(parents=True, exist_ok=True)
            (save / f"case-{case}.toml").write_text(text)
    return len(failures)


def validate_random_valid_specs(count: int, seed: int, save: Path | None) -> int:
    registry = load_registry()
    drawn = passed = objects = rejected = 0
    problems = []
    started = time.perf_counter()
    while passed < count and drawn < count * 50:
        text = SpecGenerator(registry, random.Random(f"valid-{seed}-{drawn}"), valid=True).valid_spec()
        drawn += 1
        if text is None:
            continue
        outcome = compile_outcome(registry, text)
        if outcome.kind == "internal":
            problems.append((drawn, outcome.detail, text))
        if outcome.kind != "ok":
            continue
        passed += 1
        found, rejections = rejected_objects(outcome.files)
        objects += found
        if rejections:
            rejected += 1
            problems.append((drawn, rejections[0], text))
    print(f"{drawn} valid-leaning specs drawn, {passed} pass `stackc check` (with the targets each drew); "
          f"{objects} objects validated strictly in {time.perf_counter() - started:.0f} s: {rejected} specs rejected")
    for index, detail, text in problems[:20]:
        print(f"  spec {index}: {detail}")
        if save:
            save.mkdir(parents=True, exist_ok=True)
            (save / f"valid-{index}.toml").write_text(text)
    return len(problems)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("cases", type=int, nargs="?", default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--valid", type=int, default=0, metavar="COUNT")
    parser.add_argument("--save", type=Path, default=None, metavar="DIR", help="write failing specs here")
    args = parser.parse_args()
    failed = fuzz(args.cases, args.seed, args.save)
    if args.valid:
        failed += validate_random_valid_specs(args.valid, args.seed, args.save)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
