"""KV-cache offloading: each engine's own flags, and located errors where it can't."""

from __future__ import annotations

import pytest

from stackc.diagnostics import DiagnosticsError, Severity
from stackc.testing import compile_text, objects

SPEC = """
version = 1
[stack]
name = "kv"
[models.m]
engine = "{engine}"
model = "org/m"
accelerators = {{ count = 2 }}
resources = {{ requests = {{ memory = "{memory}" }} }}
serving = {{ tensor_parallel = 2 }}
kv_offload = {{ cpu_gib = 24{extra} }}
"""


def engine_args(engine: str, extra: str = "") -> list[str]:
    compilation = compile_text(SPEC.format(engine=engine, memory="64Gi", extra=extra))
    deployment = next(o for o in objects(compilation.files) if o["kind"] == "Deployment")
    return deployment["spec"]["template"]["spec"]["containers"][0]["args"]


def test_vllm_offloads_natively_by_default_and_to_lmcache_when_asked() -> None:
    assert " --kv-offloading-backend native --kv-offloading-size 24" in " ".join(engine_args("vllm"))
    lmcache = " ".join(engine_args("vllm", ', backend = "lmcache"'))
    assert " --kv-offloading-backend lmcache --kv-offloading-size 24" in lmcache


def test_sglang_extends_its_radix_cache_into_host_memory() -> None:
    assert " --enable-hierarchical-cache --hicache-size 24" in " ".join(engine_args("sglang"))


def problems(engine: str, extra: str = "", memory: str = "64Gi") -> list[tuple[str, str]]:
    with pytest.raises(DiagnosticsError) as error:
        compile_text(SPEC.format(engine=engine, memory=memory, extra=extra))
    return [(d.code, d.dotted_path) for d in error.value.diagnostics if d.severity is Severity.ERROR]


def test_engines_without_offloading_say_so_where_it_is_asked() -> None:
    assert ("E020", "models.m.kv_offload") in problems("trtllm")


def test_sglang_takes_only_its_own_offloading() -> None:
    assert problems("sglang", ', backend = "lmcache"') == [("E020", "models.m.kv_offload.backend")]


def test_a_memory_request_below_the_buffer_warns() -> None:
    compilation = compile_text(SPEC.format(engine="vllm", memory="16Gi", extra=""))
    assert [(d.code, d.dotted_path) for d in compilation.warnings] == [("W022", "models.m.kv_offload.cpu_gib")]
    assert "requests only 16Gi of memory" in compilation.warnings[0].message


def test_the_vllm_program_can_be_the_one_in_lmcaches_image() -> None:
    text = SPEC.format(engine="vllm", memory="64Gi", extra="") + 'engine_options = { executable = "/opt/venv/bin/vllm" }\n'
    deployment = next(o for o in objects(compile_text(text).files) if o["kind"] == "Deployment")
    assert deployment["spec"]["template"]["spec"]["containers"][0]["command"] == ["/opt/venv/bin/vllm", "serve"]
