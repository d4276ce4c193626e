"""The spec generator behind the property tests: its "valid" specs must really be valid, and many, or the
properties over random valid specs test next to nothing (they assume a spec was drawn)."""

from __future__ import annotations

import random
import tomllib

from stackc.fuzzing import SpecGenerator
from stackc.plugins import load_registry

REGISTRY = load_registry()


def test_most_drawn_valid_specs_pass_and_together_use_every_target_alone_and_beside_others() -> None:
    drawn = [SpecGenerator(REGISTRY, random.Random(seed), valid=True).valid_spec() for seed in range(30)]
    specs = [tomllib.loads(text) for text in drawn if text is not None]
    assert len(specs) >= 24, f"only {len(specs)} of 30 draws gave a valid spec"
    used = [set(spec["stack"]["targets"]) for spec in specs]
    assert set().union(*used) == set(REGISTRY.targets)
    assert any(len(targets) < len(REGISTRY.targets) for targets in used)
    assert all(spec["models"] for spec in specs)
