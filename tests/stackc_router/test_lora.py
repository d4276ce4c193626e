"""LoRA adapters end to end: compiled from a spec, served by fake engines under their own names through the router."""

from __future__ import annotations

import dataclasses
import time

import httpx

from stackc.testing import compile_text, objects
from stackc_router.config import Config
from stackc_router.from_plan import model_route
from stackc_router.testing import running_router

SPEC = """
version = 1
[stack]
name = "l"
targets = ["manifests", "router", "gateway"]
[models.base]
engine = "vllm"
model = "org/base"
aliases = ["base-alias"]
accelerators = { count = 1 }
[models.base.serving]
lora_adapters = [
  { name = "sql", source = "hf://org/sql-lora" },
  { name = "guard", source = "org/guard-lora", load = "runtime" },
]
"""


def engine_flags(compilation) -> tuple[tuple[str, ...], dict[str, str]]:
    """The adapter part of the compiled engine's command line, and its environment."""
    deployment = next(o for o in objects(compilation.files) if o["kind"] == "Deployment" and o["metadata"]["name"] == "l-base")
    engine = deployment["spec"]["template"]["spec"]["containers"][0]
    args = engine["args"]
    start = args.index("--lora-modules")
    modules = tuple(a for a in args[start + 1:] if not a.startswith("--"))
    return ("--lora-modules", *modules), {e["name"]: e["value"] for e in engine["env"] if "value" in e}


def test_adapters_are_listed_and_served_under_their_own_names(engines) -> None:
    compilation = compile_text(SPEC)
    args, env = engine_flags(compilation)
    assert args == ("--lora-modules", "sql=org/sql-lora")  # the run-time adapter is not on the command line
    assert env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] == "True"
    backends = [engines.start(served="org/base", args=args, env=env) for _ in range(2)]
    route = dataclasses.replace(model_route(compilation.plan.components[0], backends=backends), health_interval_s=0.1)
    with running_router(Config(models=(route,))) as (router, base):
        models = {m["id"]: m for m in httpx.get(f"{base}/v1/models").json()["data"]}
        assert models["sql"]["parent"] == models["guard"]["parent"] == "org/base"
        assert "parent" not in models["org/base"] and "parent" not in models["base-alias"]
        for _ in range(4):  # both replicas serve it, under the adapter's name (never rewritten to the base)
            reply = httpx.post(f"{base}/v1/chat/completions", json={"model": "sql", "messages": [{"role": "user", "content": "q"}]})
            assert reply.status_code == 200 and reply.json()["model"] == "sql"
        alias = httpx.post(f"{base}/v1/completions", json={"model": "base-alias", "prompt": "hi"})
        assert alias.json()["model"] == "org/base"  # an alias still is
        wait_for(lambda: all("guard" in b.adapters for b in router.routes["base"].backends.values()),
                 "the router never loaded the run-time adapter")
        for backend in backends:  # loaded into each replica through the engine's API
            assert "guard" in {m["id"] for m in httpx.get(f"{backend}/v1/models").json()["data"]}
        reply = httpx.post(f"{base}/v1/completions", json={"model": "guard", "prompt": "hi"})
        assert reply.status_code == 200 and reply.json()["model"] == "guard"


def test_a_run_time_adapter_goes_only_to_replicas_it_was_loaded_into(engines) -> None:
    compilation = compile_text(SPEC)
    args, _ = engine_flags(compilation)
    backend = engines.start(served="org/base", args=args)  # run-time loading is closed: the load fails
    route = dataclasses.replace(model_route(compilation.plan.components[0], backends=[backend]), health_interval_s=0.1)
    # held like a model with no ready replica, then a 503 when no replica gets the adapter in time
    with running_router(Config(models=(route,), hold_timeout_s=0.5)) as (router, base):
        time.sleep(0.3)
        assert router.routes["base"].backends[backend].adapters == set()
        reply = httpx.post(f"{base}/v1/completions", json={"model": "guard", "prompt": "hi"})
        assert reply.status_code == 503 and reply.json()["error"]["code"] == "model_not_ready"
        assert "'guard'" in reply.json()["error"]["message"]
        assert httpx.post(f"{base}/v1/completions", json={"model": "sql", "prompt": "hi"}).status_code == 200


def test_a_replica_that_comes_back_gets_its_run_time_adapters_again(engines) -> None:
    compilation = compile_text(SPEC)
    args, env = engine_flags(compilation)
    backend = engines.start(served="org/base", args=args, env=env)
    route = dataclasses.replace(model_route(compilation.plan.components[0], backends=[backend]), health_interval_s=0.1)
    with running_router(Config(models=(route,))) as (router, base):
        replica = router.routes["base"].backends[backend]
        wait_for(lambda: "guard" in replica.adapters, "the adapter was never loaded")
        engines.kill(backend)
        wait_for(lambda: not replica.healthy and not replica.adapters, "the router kept a dead replica's adapters")
        engines.start(served="org/base", args=args, env=env, port=replica.port)  # restarted, without the adapter
        wait_for(lambda: "guard" in replica.adapters, "the adapter was not loaded again")
        reply = httpx.post(f"{base}/v1/completions", json={"model": "guard", "prompt": "hi"})
        assert reply.status_code == 200 and reply.json()["model"] == "guard"


def wait_for(condition, message: str, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, message
        time.sleep(0.05)
