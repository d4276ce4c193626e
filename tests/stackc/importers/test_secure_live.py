"""An imported secure values file yields a stack that requires the API key, shown live: production-stack's
values-11-secure-vllm is imported and compiled, then its router (the compiled router.yaml, with the key
files its Deployment mounts from the Secret) and a fake engine (given the key as the engine Deployment's
secretKeyRef gives it) run on loopback. Both refuse a request without the key (401) and answer it with
the key (200); through the router, the engine is reached with the router's upstream key."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from stackc.importers.run import import_values
from stackc.testing import charts_dir, compile_text, objects

SECURE = "production-stack/tutorials/assets/values-11-secure-vllm.yaml"
FAKE_ENGINE = Path(__file__).resolve().parents[2] / "fakes" / "fake_engine.py"
#: the value of the Secret the user creates, as the import's report says
KEY = "sk-imported-secure-key"
ROUTER = ("import sys; from stackc_router.cli import main; sys.exit(main())",)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_up(url: str, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        assert process.poll() is None, f"{url}: exited with {process.returncode}"
        try:
            httpx.get(f"{url}/health", timeout=0.5)
            return
        except httpx.TransportError:
            time.sleep(0.05)
    raise AssertionError(f"{url} did not come up")


def container(obj: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in obj["spec"]["template"]["spec"]["containers"] if c["name"] == name)


def mount_secrets(deployment: dict[str, Any], secrets: dict[tuple[str, str], str], root: Path) -> None:
    """Write the files the Deployment's secret volumes put at its container's mount paths, under ``root``."""
    pod = deployment["spec"]["template"]["spec"]
    volumes = {v["name"]: v["secret"] for v in pod.get("volumes", []) if "secret" in v}
    for mount in pod["containers"][0].get("volumeMounts", []):
        if (secret := volumes.get(mount["name"])) is None:
            continue
        items = secret.get("items") or [{"key": key, "path": key} for name, key in secrets
                                        if name == secret["secretName"]]
        for item in items:
            path = root / mount["mountPath"].lstrip("/") / item["path"]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(secrets[(secret["secretName"], item["key"])] + "\n")


@pytest.fixture
def processes():
    started: list[subprocess.Popen] = []
    yield started
    for process in started:
        process.kill()
        process.wait()


def test_an_imported_secure_file_refuses_requests_without_the_key(tmp_path, processes):
    root = charts_dir()
    if root is None or not (root / SECURE).exists():
        pytest.skip("the seed charts are not here: set STACKC_CHARTS_DIR or put shared/charts beside the checkout")
    imported = import_values("production-stack", [str(root / SECURE)], name="secure")
    # the inline key left the values for a Secret the user creates; the spec is never an open endpoint
    assert any(d.dotted_path == "servingEngineSpec.vllmApiKey" and "Secret" in d.message for d in imported.report)
    found = objects(compile_text(imported.text).files)
    [engine] = [o for o in found if o["kind"] == "Deployment" and o["metadata"]["name"] == "secure-opt125m"]
    [router] = [o for o in found if o["kind"] == "Deployment" and o["metadata"]["name"] == "secure-router"]
    [config_map] = [o for o in found if o["kind"] == "ConfigMap" and "router.yaml" in o.get("data", {})]

    # the engine: the key from its Deployment's secretKeyRef, as the kubelet would give it
    engine_container = container(engine, "engine")
    [reference] = [e["valueFrom"]["secretKeyRef"] for e in engine_container["env"] if e["name"] == "VLLM_API_KEY"]
    secrets = {(reference["name"], reference["key"]): KEY}
    args = engine_container["args"]
    served = args[args.index("--served-model-name") + 1]
    port = free_port()
    processes.append(subprocess.Popen(
        [sys.executable, str(FAKE_ENGINE), "--port", str(port), "--served-model-name", served],
        env={**{k: v for k, v in os.environ.items() if k != "VLLM_API_KEY"}, "VLLM_API_KEY": KEY},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    engine_url = f"http://127.0.0.1:{port}"
    wait_until_up(engine_url, processes[-1])

    # the router: its compiled config, its key files where its Deployment mounts them, the engine as backend
    mount_secrets(router, secrets, tmp_path)
    config = yaml.safe_load(config_map["data"]["router.yaml"])
    assert config["auth"]["api_keys_file"]
    config["auth"]["api_keys_file"] = str(tmp_path / config["auth"]["api_keys_file"].lstrip("/"))
    for model in config["models"].values():
        model.pop("discovery")
        model["backends"] = [engine_url]
        model["upstream_auth"]["api_key_file"] = str(tmp_path / model["upstream_auth"]["api_key_file"].lstrip("/"))
    router_port = free_port()
    config["listen"] = {"host": "127.0.0.1", "port": router_port}
    (tmp_path / "router.yaml").write_text(yaml.safe_dump(config))
    processes.append(subprocess.Popen([sys.executable, "-c", *ROUTER, "--config", str(tmp_path / "router.yaml")],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
    router_url = f"http://127.0.0.1:{router_port}"
    wait_until_up(router_url, processes[-1])

    body = {"model": served, "messages": [{"role": "user", "content": "hi"}]}
    for url in (router_url, engine_url):
        assert httpx.post(f"{url}/v1/chat/completions", json=body, timeout=10).status_code == 401, url
        wrong = {"Authorization": "Bearer not-the-key"}
        assert httpx.post(f"{url}/v1/chat/completions", json=body, headers=wrong, timeout=10).status_code == 401, url
        right = {"Authorization": f"Bearer {KEY}"}
        reply = httpx.post(f"{url}/v1/chat/completions", json=body, headers=right, timeout=10)
        assert reply.status_code == 200, (url, reply.text)
        assert reply.json()["choices"][0]["message"]["content"] == "hello world"
