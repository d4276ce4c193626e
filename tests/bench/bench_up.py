"""Time from `stackc up` to the first generated token, against starting llama-server by hand.

Run: python tests/bench/bench_up.py [REPEATS]

Both are measured in the same run: the reference is one llama-server process started directly
on the same tiny model, timed to its first streamed token. The ratio is what `stackc up` costs
on top (compiling the spec, two replicas, the router in front).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from stackc.testing import local_llama_server, write_tiny_gguf

REPO = Path(__file__).resolve().parents[2]


def first_token(base_url: str, deadline: float) -> None:
    body = {"model": "tiny", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 4, "stream": True}
    while time.monotonic() < deadline:
        try:
            with httpx.stream("POST", f"{base_url}/chat/completions", json=body, timeout=10) as response:
                if response.status_code == 200:
                    for line in response.iter_lines():
                        if line.startswith("data: ") and line != "data: [DONE]":
                            if json.loads(line[6:])["choices"][0]["delta"].get("content"):
                                return
        except httpx.TransportError:
            pass
        time.sleep(0.02)
    raise TimeoutError("no token")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def time_up(model: Path, state: Path) -> float:
    port = free_port()
    started = time.monotonic()
    process = subprocess.Popen([sys.executable, "-m", "stackc", "up", "specs/local.toml", "--set",
                                f"models.tiny.model={model}", "--port", str(port), "--state-dir", str(state)],
                               cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        first_token(f"http://127.0.0.1:{port}/v1", started + 60)
        return time.monotonic() - started
    finally:
        process.send_signal(2)
        process.wait(30)


def time_direct(model: Path) -> float:
    binary = local_llama_server()
    port = free_port()
    started = time.monotonic()
    process = subprocess.Popen([binary, "-m", str(model), "--port", str(port), "--alias", "tiny", "-t", "1"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        first_token(f"http://127.0.0.1:{port}/v1", started + 60)
        return time.monotonic() - started
    finally:
        process.terminate()
        process.wait(30)


def main(repeats: int) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        model = Path(scratch) / "tiny.gguf"
        write_tiny_gguf(model)
        up = [time_up(model, Path(scratch) / f"state-{i}") for i in range(repeats)]
        direct = [time_direct(model) for _ in range(repeats)]
    print(f"stackc up → first token:       best {min(up):.2f} s, worst {max(up):.2f} s ({repeats} runs)")
    print(f"llama-server → first token:    best {min(direct):.2f} s, worst {max(direct):.2f} s")
    print(f"ratio (best / best):           {min(up) / min(direct):.1f}x; goal: up ≤ 5 s")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
