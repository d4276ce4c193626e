"""The KV-transfer flags and environment each engine gives each role of a disaggregated model."""

from __future__ import annotations

import json

import pytest

from stackc.diagnostics import DiagnosticsError
from stackc.testing import compile_text, objects

SPEC = """
version = 1
stack.name = "pd"
[models.m]
engine = "{engine}"
model = "org/m"
accelerators.count = 1
[models.m.disaggregation]
connector = "{connector}"
{extra}
"""


def engines(engine: str, connector: str, extra: str = "") -> dict[str, dict]:
    """role -> its engine container, as the plan has it."""
    plan = compile_text(SPEC.format(engine=engine, connector=connector, extra=extra)).plan
    return {c.disaggregation.role: c.pod.containers[0] for c in plan.components}


def env(container) -> dict[str, object]:
    return {var.name: var.value if var.value is not None else var.value_from for var in container.env}


def after(args: tuple[str, ...], flag: str) -> str:
    return args[args.index(flag) + 1]


def test_vllm_nixl_runs_both_roles_kv_both_with_the_side_channel_at_the_pod_ip() -> None:
    roles = engines("vllm", "nixl")
    for container in roles.values():
        assert json.loads(after(container.args, "--kv-transfer-config")) == {
            "kv_connector": "NixlConnector", "kv_role": "kv_both"}
        assert env(container)["VLLM_NIXL_SIDE_CHANNEL_PORT"] == "5600"
        assert env(container)["VLLM_NIXL_SIDE_CHANNEL_HOST"] == {"fieldRef": {"fieldPath": "status.podIP"}}
        assert ("kv-transfer", 5600) in [(p.name, p.number) for p in container.ports]
    assert roles["prefill"].args == roles["decode"].args


def test_vllm_lmcache_makes_prefill_the_producer_pushing_to_the_decode_service() -> None:
    roles = engines("vllm", "lmcache", "kv_port = 55600")
    prefill, decode = (json.loads(after(roles[r].args, "--kv-transfer-config")) for r in ("prefill", "decode"))
    assert prefill == {"kv_connector": "LMCacheConnectorV1", "kv_role": "kv_producer",
                       "kv_connector_extra_config": {"discard_partial_chunks": False, "lmcache_rpc_port": "producer1"}}
    assert decode["kv_role"] == "kv_consumer" and decode["kv_connector_extra_config"]["lmcache_rpc_port"] == "consumer1"
    sender, receiver = env(roles["prefill"]), env(roles["decode"])
    assert sender["LMCACHE_ENABLE_NIXL"] == receiver["LMCACHE_ENABLE_NIXL"] == "True"
    assert (sender["LMCACHE_NIXL_ROLE"], receiver["LMCACHE_NIXL_ROLE"]) == ("sender", "receiver")
    assert (sender["LMCACHE_NIXL_RECEIVER_HOST"], receiver["LMCACHE_NIXL_RECEIVER_HOST"]) == ("pd-m-decode", "0.0.0.0")
    assert sender["LMCACHE_NIXL_RECEIVER_PORT"] == receiver["LMCACHE_NIXL_RECEIVER_PORT"] == "55600"
    assert sender["LMCACHE_LOCAL_CPU"] == "False"
    assert [p.number for p in roles["decode"].ports] == [8000, 55600]
    assert [p.number for p in roles["prefill"].ports] == [8000]


def test_the_lmcache_receiver_port_is_on_the_decode_service_prefill_pods_push_to() -> None:
    found = objects(compile_text(SPEC.format(engine="vllm", connector="lmcache", extra="kv_port = 55600")).files)
    services = {o["metadata"]["name"]: o for o in found if o["kind"] == "Service"}
    prefill = next(o for o in found if o["kind"] == "Deployment" and o["metadata"]["name"] == "pd-m-prefill")
    told = {e["name"]: e.get("value") for e in prefill["spec"]["template"]["spec"]["containers"][0]["env"]}
    service = services[told["LMCACHE_NIXL_RECEIVER_HOST"]]
    assert {"name": "kv-transfer", "port": 55600, "targetPort": "kv-transfer", "protocol": "TCP"} in \
        service["spec"]["ports"]
    assert int(told["LMCACHE_NIXL_RECEIVER_PORT"]) == 55600
    assert [p["port"] for p in services["pd-m-prefill"]["spec"]["ports"]] == [8000]


def test_sglang_sets_mode_backend_and_the_prefill_bootstrap_port() -> None:
    roles = engines("sglang", "mooncake", 'ib_devices = ["mlx5_0", "mlx5_1"]')
    prefill, decode = roles["prefill"].args, roles["decode"].args
    assert prefill[prefill.index("--disaggregation-mode"):] == (
        "--disaggregation-mode", "prefill", "--disaggregation-transfer-backend", "mooncake",
        "--disaggregation-bootstrap-port", "8998", "--disaggregation-ib-device", "mlx5_0,mlx5_1")
    assert decode[decode.index("--disaggregation-mode"):] == (
        "--disaggregation-mode", "decode", "--disaggregation-transfer-backend", "mooncake",
        "--disaggregation-ib-device", "mlx5_0,mlx5_1")
    assert ("kv-bootstrap", 8998) in [(p.name, p.number) for p in roles["prefill"].ports]
    assert [p.name for p in roles["decode"].ports] == ["http"]


def test_the_plan_says_how_a_router_joins_the_roles() -> None:
    for engine, connector, protocol, bootstrap in (("vllm", "nixl", "kv_transfer_params", None),
                                                   ("vllm", "lmcache", "prefill_then_decode", None),
                                                   ("sglang", "nixl", "bootstrap", 8998)):
        plan = compile_text(SPEC.format(engine=engine, connector=connector, extra="")).plan
        assert [(c.disaggregation.role, c.disaggregation.protocol, c.disaggregation.bootstrap_port)
                for c in plan.components] == [("decode", protocol, bootstrap), ("prefill", protocol, bootstrap)]


@pytest.mark.parametrize(("engine", "connector", "extra", "code", "path"), [
    ("vllm", "mooncake", "", "E100", "models.m.disaggregation.connector"),
    ("sglang", "lmcache", "", "E100", "models.m.disaggregation.connector"),
    ("vllm", "nixl", 'ib_devices = ["mlx5_0"]', "E104", "models.m.disaggregation.ib_devices"),
    ("vllm", "nixl", 'decode.engine_args = ["--kv-transfer-config={}"]', "E102",
     "models.m.disaggregation.decode.engine_args[0]"),
    ("sglang", "nixl", 'prefill.engine_args = ["--disaggregation-mode", "decode"]', "E102",
     "models.m.disaggregation.prefill.engine_args[0]"),
    ("llamacpp", "nixl", "", "E020", "models.m.disaggregation"),
])
def test_what_an_engine_cannot_do_is_a_located_error(engine: str, connector: str, extra: str, code: str,
                                                      path: str) -> None:
    with pytest.raises(DiagnosticsError) as error:
        compile_text(SPEC.format(engine=engine, connector=connector, extra=extra))
    found = [(d.code, d.dotted_path) for d in error.value.diagnostics]
    assert (code, path) in found
    if code == "E020":
        problem = next(d for d in error.value.diagnostics if d.code == "E020")
        assert "engine 'llamacpp'" in problem.message and "sglang" in (problem.hint or "")


def test_vllm_cannot_run_kv_offload_beside_a_kv_connector() -> None:
    with pytest.raises(DiagnosticsError) as error:
        compile_text(SPEC.format(engine="vllm", connector="nixl", extra="").replace(
            "accelerators.count = 1", "accelerators.count = 1\nkv_offload = { cpu_gib = 8 }"))
    assert [(d.code, d.dotted_path) for d in error.value.diagnostics if d.code.startswith("E")] == [
        ("E103", "models.m.kv_offload")]
