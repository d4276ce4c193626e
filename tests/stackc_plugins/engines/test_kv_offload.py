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


DISK = """
version = 1
[stack]
name = "kv"
{server}
[models.m]
engine = "{engine}"
model = "org/m"
accelerators = {{ count = 2 }}
resources = {{ requests = {{ memory = "64Gi", ephemeral-storage = "{disk}" }} }}
serving = {{ tensor_parallel = 2 }}
kv_offload = {{ cpu_gib = 24, {offload} }}
{extra}
"""
SERVER = '[stack.kv_cache_server]\nimage = "lmcache/vllm-openai:tested"\n'


def pod(engine: str, offload: str, server: str = "", extra: str = "", disk: str = "200Gi") -> dict:
    compilation = compile_text(DISK.format(engine=engine, offload=offload, server=server, extra=extra, disk=disk))
    deployment = next(o for o in objects(compilation.files) if o["kind"] == "Deployment" and o["metadata"]["name"] == "kv-m")
    return deployment["spec"]["template"]["spec"]


def env_of(spec: dict) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in spec["containers"][0].get("env", [])}


def test_lmcache_spills_to_an_emptydir_of_disk_gib_each_worker_filling_its_share() -> None:
    spec = pod("vllm", 'backend = "lmcache", disk_gib = 100')
    args = spec["containers"][0]["args"]
    # LMCache's connector, configured by its variables: the high-level flag carries host memory only
    assert args[args.index("--kv-transfer-config") + 1] == '{"kv_connector":"LMCacheConnectorV1","kv_role":"kv_both"}'
    assert "--kv-offloading-backend" not in args
    env = env_of(spec)
    # two tensor-parallel workers, one store of each tier per worker
    assert [(k, v) for k, v in env.items() if k.startswith("LMCACHE_")] == [
        ("LMCACHE_LOCAL_CPU", "True"), ("LMCACHE_MAX_LOCAL_CPU_SIZE", "12"),
        ("LMCACHE_LOCAL_DISK", "file:///kv-offload/"), ("LMCACHE_MAX_LOCAL_DISK_SIZE", "50")]
    assert {"name": "kv-offload", "emptyDir": {"sizeLimit": "100Gi"}} in spec["volumes"]
    assert {"name": "kv-offload", "mountPath": "/kv-offload"} in spec["containers"][0]["volumeMounts"]
    assert "LMCACHE_REMOTE_URL" not in env


def test_sglang_spills_hicache_to_its_file_storage() -> None:
    spec = pod("sglang", "disk_gib = 100")
    args = " ".join(spec["containers"][0]["args"])
    assert " --enable-hierarchical-cache --hicache-size 24 --hicache-storage-backend file" in args
    env = env_of(spec)
    assert env["SGLANG_HICACHE_FILE_BACKEND_STORAGE_DIR"] == "/kv-offload"
    assert env["SGLANG_HICACHE_FILE_BACKEND_MAX_SIZE"] == "51200Mi"
    assert {"name": "kv-offload", "emptyDir": {"sizeLimit": "100Gi"}} in spec["volumes"]


def test_a_volume_of_the_users_own_replaces_the_emptydir() -> None:
    nvme = 'extra_volumes = [{ name = "nvme", hostPath = { path = "/mnt/nvme" } }]\n' \
           '[models.m.security]\npod_security = "privileged"'
    spec = pod("vllm", 'backend = "lmcache", disk_gib = 300, disk_volume = "nvme"', extra=nvme, disk="1Gi")
    assert [v["name"] for v in spec["volumes"] if v["name"] in ("nvme", "kv-offload")] == ["nvme"]
    assert {"name": "nvme", "mountPath": "/kv-offload"} in spec["containers"][0]["volumeMounts"]


def test_models_that_opt_in_reach_the_stacks_cache_server() -> None:
    env = env_of(pod("vllm", 'backend = "lmcache", remote = true', server=SERVER))
    assert env["LMCACHE_REMOTE_URL"] == "lm://kv-kv-cache-server:8080"
    assert env["LMCACHE_REMOTE_SERDE"] == "naive"
    assert env["PYTHONHASHSEED"] == "0"  # every replica keys blocks alike
    assert "LMCACHE_LOCAL_DISK" not in env


def errors(engine: str, offload: str, server: str = "", extra: str = "") -> list[tuple[str, str]]:
    with pytest.raises(DiagnosticsError) as error:
        compile_text(DISK.format(engine=engine, offload=offload, server=server, extra=extra, disk="200Gi"))
    return [(d.code, d.dotted_path) for d in error.value.diagnostics if d.severity is Severity.ERROR]


def test_vllms_native_offloading_cannot_use_disk_or_the_server() -> None:
    assert sorted(errors("vllm", "disk_gib = 10, remote = true", server=SERVER)) == [
        ("E120", "models.m.kv_offload.disk_gib"), ("E123", "models.m.kv_offload.remote")]


def test_sglang_has_no_client_for_the_lmcache_server() -> None:
    assert errors("sglang", "remote = true", server=SERVER) == [("E123", "models.m.kv_offload.remote")]


def test_remote_needs_a_server_and_a_named_disk_volume_must_exist() -> None:
    assert sorted(errors("vllm", 'backend = "lmcache", remote = true, disk_volume = "nvme"')) == [
        ("E121", "models.m.kv_offload.disk_volume"), ("E122", "models.m.kv_offload.remote"),
        ("E124", "models.m.kv_offload.disk_volume")]


def test_an_emptydir_the_pod_does_not_request_warns() -> None:
    compilation = compile_text(DISK.format(engine="vllm", offload='backend = "lmcache", disk_gib = 100', server="",
                                           extra="", disk="20Gi"))
    assert [(d.code, d.dotted_path) for d in compilation.warnings] == [("W120", "models.m.kv_offload.disk_gib")]
    assert "requests only 20Gi of ephemeral-storage" in compilation.warnings[0].message


def test_a_server_nobody_uses_warns() -> None:
    compilation = compile_text(DISK.format(engine="vllm", offload='backend = "lmcache"', server=SERVER, extra="",
                                           disk="1Gi"))
    assert [(d.code, d.dotted_path) for d in compilation.warnings] == [("W121", "stack.kv_cache_server")]


@pytest.mark.parametrize("backend", ["native", "lmcache"])
@pytest.mark.parametrize("arg", ['--kv-transfer-config={"kv_connector":"NixlConnector"}', "--kv-offloading-size"])
def test_vllm_refuses_a_second_kv_connector_in_engine_args(backend: str, arg: str) -> None:
    # closes kv_offload's table, adds engine_args (a TOML literal string) and comments out the closing brace
    extra = f', backend = "{backend}" }}\nengine_args = ["--enforce-eager", \'{arg}\']\n#'
    assert ("E150", "models.m.engine_args[1]") in problems("vllm", extra)
