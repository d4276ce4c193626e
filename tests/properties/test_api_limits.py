"""What `stackc check` accepts stays within the API server's limits, with every field drawn at its IR bounds:
int32 fields (also sums and products of fields), ConfigMap data (1 MiB), annotations (256 KiB), names."""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, Phase, assume, given, settings
from hypothesis import strategies as st

from stackc.diagnostics import DiagnosticsError
from stackc.fuzzing import SpecGenerator, compile_outcome
from stackc.plugins import load_registry
from stackc.testing import api_limit_problems, compile_text, crds_dir

REGISTRY = load_registry()
BASE = """\
version = 1
[stack]
name = "s"
targets = ["manifests", "kserve", "monitoring", "router", "gateway"]
[models.m]
engine = "vllm"
model = "org/m-1b"
accelerators = { count = 1 }
"""


@pytest.mark.skipif(crds_dir() is None, reason="the upstream CRDs are not here: set STACKC_CRDS_DIR")
# the input is a seed: shrinking it finds nothing simpler, and each try compiles megabytes
@settings(max_examples=10, deadline=None, phases=[Phase.explicit, Phase.reuse, Phase.generate],
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(st.integers(0, 2**32))
def test_every_object_of_a_spec_at_its_bounds_is_within_the_api_servers_limits(seed: int) -> None:
    text = SpecGenerator(REGISTRY, random.Random(seed), valid=True, extremes=True).valid_spec()
    assume(text is not None)
    outcome = compile_outcome(REGISTRY, text)
    assert outcome.kind == "ok", outcome.detail
    assert api_limit_problems(outcome.files) == [], f"seed {seed}"


def errors(text: str) -> list[str]:
    with pytest.raises(DiagnosticsError) as caught:
        compile_text(text)
    return [d.render() for d in caught.value.diagnostics if d.code.startswith("E")]


def test_a_startup_budget_past_int32_is_located_at_the_startup_probe() -> None:
    (error,) = errors(BASE + "probes.startup = { failure_threshold = 2147483647, period_seconds = 10 }\n")
    assert error.startswith("spec.toml:9:18: error[E014] models.m.probes.startup: ")
    assert "progressDeadlineSeconds 21474837070" in error
    budget = 2**31 - 1 - 600  # the largest budget the margin leaves
    files = compile_text(BASE + f"probes.startup = {{ failure_threshold = {budget}, period_seconds = 1 }}\n").files
    assert api_limit_problems(files) == []


def test_an_engine_option_that_grows_the_startup_budget_past_int32_is_located_too() -> None:
    text = BASE.replace('"vllm"', '"command"') + 'image = "server:1"\nengine_options = { startup_minutes = 357913941, port = 8000 }\n'
    (error,) = errors(text)
    assert error.startswith("spec.toml:5:1: error[E014] models.m.probes.startup: ") and "overrides the engine's" in error


def test_a_chat_template_over_one_mib_is_located_at_it() -> None:
    (error,) = errors(BASE + f'serving.chat_template = "{"x" * 2**20}"\n')
    assert error.startswith("spec.toml:9:25: error[E170] models.m.serving.chat_template: ConfigMap 's-m-chat-template' "
                            "would hold 1048595 bytes")
    fits = compile_text(BASE + f'serving.chat_template = "{"x" * (2**20 - 100)}"\n').files
    assert api_limit_problems(fits) == []


@pytest.mark.parametrize("table, path", [
    ("annotations", "models.m.annotations"),
    ("security.service_account.annotations", "models.m.security.service_account.annotations"),
    ("[targets.kserve]\nannotations", "targets.kserve.annotations"),
    ("[targets.kserve.models.m]\nannotations", "targets.kserve.models.m.annotations"),
    ("[targets.llmisvc]\nannotations", "targets.llmisvc.annotations"),
    ("[targets.llmisvc.models.m]\nannotations", "targets.llmisvc.models.m.annotations"),
])
def test_annotations_over_256_kib_are_located(table: str, path: str) -> None:
    text = BASE.replace('"kserve",', '"kserve", "llmisvc",') if "llmisvc" in table else BASE
    (error,) = errors(text + f'{table} = {{ "example.com/big" = "{"x" * 256 * 1024}" }}\n')
    assert f"error[E170] {path}: annotations of 262159 bytes on " in error


def test_stack_annotations_over_256_kib_are_located() -> None:
    text = BASE.replace('name = "s"\n', f'name = "s"\nannotations = {{ "example.com/big" = "{"x" * 256 * 1024}" }}\n')
    (error,) = errors(text)
    assert error.startswith("spec.toml:4:15: error[E170] stack.annotations: annotations of 262159 bytes on every object")


def test_an_extra_config_map_over_one_mib_is_located() -> None:
    text = BASE + ('[[stack.extra_objects]]\napiVersion = "v1"\nkind = "ConfigMap"\nmetadata = { name = "big" }\n'
                   f'data = {{ k = "{"x" * 2**20}" }}\n')
    (error,) = errors(text)
    assert error.startswith("spec.toml:13:8: error[E170] stack.extra_objects[0].data: ConfigMap 'big' would hold "
                            "1048577 bytes")

