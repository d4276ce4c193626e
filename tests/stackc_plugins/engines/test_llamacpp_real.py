"""llama.cpp's real server runs exactly the command, args and env the llamacpp engine compiled.

The runner is `llama-server` when on the PATH, else `stackc-llama-server` (the same flags, served by
llama.cpp's C++ server through the portable xllamacpp wheel).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from stackc.testing import compile_text, local_llama_server, objects, write_tiny_gguf

SPEC = """
version = 1
[stack]
name = "real"
[models.tiny]
engine = "llamacpp"
model = "{model}"
aliases = ["tiny-chat", "gpt-4o-mini"]
security.api_key = {{ name = "keys", key = "tiny" }}
serving = {{ max_context = 2048, max_concurrent_sequences = 2 }}
engine_options = {{ threads = 1 }}
"""
API_KEY = "test-key-123"


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("model") / "tiny.gguf"
    write_tiny_gguf(path)
    return path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def server(tiny_model: Path, tmp_path_factory):
    """Start llama-server from the compiled Deployment: only host paths, the port and the secret change."""
    compilation = compile_text(SPEC.format(model=tiny_model))
    deployment = next(o for o in objects(compilation.files) if o["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    cache = tmp_path_factory.mktemp("cache")
    port = free_port()
    container_port = str(next(p["containerPort"] for p in container["ports"] if p["name"] == "http"))

    def host(value: str) -> str:
        return value.replace("/cache", str(cache)).replace("0.0.0.0", "127.0.0.1")

    args = [port if arg == container_port else host(arg) for arg in container["args"]]
    env = {}
    for var in container["env"]:
        if "valueFrom" in var:
            assert var["valueFrom"]["secretKeyRef"] == {"name": "keys", "key": "tiny"}
            env[var["name"]] = API_KEY
        else:
            env[var["name"]] = host(var["value"])
    assert container["command"] == ["/app/llama-server"]
    argv = [local_llama_server(), *map(str, args)]
    process = subprocess.Popen(argv, env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, process.stdout.read().decode()
            time.sleep(0.1)
        yield {"base": base, "argv": argv, "container": container}
    finally:
        process.terminate()
        process.wait(10)


def test_health_and_models_list_the_aliases(server) -> None:
    assert httpx.get(f"{server['base']}/health").json() == {"status": "ok"}
    models = httpx.get(f"{server['base']}/v1/models", headers={"Authorization": f"Bearer {API_KEY}"}).json()
    ids = {m["id"] for m in models["data"]}
    assert {"tiny", "tiny-chat", "gpt-4o-mini"} <= ids | set(json.dumps(models).split('"'))


def test_chat_completion_plain_and_streamed_with_the_openai_client(server) -> None:
    from openai import OpenAI

    client = OpenAI(base_url=f"{server['base']}/v1", api_key=API_KEY)
    reply = client.chat.completions.create(model="tiny-chat", messages=[{"role": "user", "content": "hello"}],
                                           max_tokens=8, temperature=0)
    assert reply.choices[0].message.content.strip()
    assert reply.usage.completion_tokens == 8
    stream = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hello"}],
                                            max_tokens=8, temperature=0, stream=True)
    pieces = [chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices]
    assert "".join(pieces).strip() == reply.choices[0].message.content.strip()


def test_the_api_key_from_the_secret_is_enforced(server) -> None:
    response = httpx.post(f"{server['base']}/v1/chat/completions",
                          json={"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2})
    assert response.status_code == 401


def test_metrics_are_on_and_behind_the_api_key(server) -> None:
    # llama-server guards /metrics with the API key too: the engine declares it, and the
    # monitoring target then scrapes with the key from the same Secret
    assert httpx.get(f"{server['base']}/metrics").status_code == 401
    text = httpx.get(f"{server['base']}/metrics", headers={"Authorization": f"Bearer {API_KEY}"}).text
    assert "llamacpp:requests_processing" in text and "llamacpp:requests_deferred" in text
