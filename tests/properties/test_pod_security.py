"""Never silent about Pod Security: whenever a pod of an accepted spec's model would be refused by a namespace
enforcing "restricted", `stackc check` warned about that model (W170–W173)."""

from __future__ import annotations

import random

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from stackc.fuzzing import SpecGenerator, with_plain_objects
from stackc.plugins import load_registry
from stackc.testing import compile_text, objects, pod_security_problems, pod_templates

REGISTRY = load_registry()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(st.integers(0, 2**32))
def test_every_model_whose_pods_lose_restricted_was_warned_about(seed: int) -> None:
    text = SpecGenerator(REGISTRY, random.Random(seed), valid=True).valid_spec()
    assume(text is not None)
    compilation = compile_text(with_plain_objects(text, REGISTRY))
    warned = {d.path[1] for d in compilation.warnings if d.code in ("W170", "W171", "W172", "W173")}
    losing = {_model(obj["metadata"]["labels"]) for obj in objects(compilation.files)
              for meta, pod in pod_templates(obj) if pod_security_problems(meta, pod)}
    assert losing <= warned, f"seed {seed}: {sorted(losing - warned)} lose restricted without a warning"


def _model(labels: dict) -> str | None:
    """The model an object's pods serve: a candidate version's are named KEY-candidate."""
    name = labels.get("app.kubernetes.io/name")
    return name.removesuffix("-candidate") if name and labels.get("stackc.dev/version") == "candidate" else name
