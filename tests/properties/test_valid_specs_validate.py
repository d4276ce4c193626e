"""What `stackc check` accepts, the API server and the CRDs accept: random specs with every target on."""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from stackc.fuzzing import SpecGenerator, compile_outcome, with_plain_objects
from stackc.plugins import load_registry
from stackc.testing import crds_dir, rejected_objects

REGISTRY = load_registry()


@pytest.mark.skipif(crds_dir() is None, reason="the upstream CRDs are not here: set STACKC_CRDS_DIR")
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(st.integers(0, 2**32))
def test_every_object_of_a_checked_spec_validates_strictly(seed: int) -> None:
    text = SpecGenerator(REGISTRY, random.Random(seed), valid=True).valid_spec()
    assume(text is not None)
    outcome = compile_outcome(REGISTRY, with_plain_objects(text, REGISTRY))
    assert outcome.kind == "ok", f"{outcome.detail}\n{text}"
    found, rejections = rejected_objects(outcome.files)
    assert found and rejections == [], f"{rejections}\n{text}"
