from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

FAKE_ENGINE = Path(__file__).resolve().parents[1] / "fakes" / "fake_engine.py"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Engines:
    """Fake engines as real processes on loopback ports."""

    def __init__(self) -> None:
        self.processes: dict[str, subprocess.Popen] = {}

    def start(self, *names: str, served: str = "served-tiny") -> str:
        port = free_port()
        process = subprocess.Popen([sys.executable, str(FAKE_ENGINE), "--port", str(port), "--served-model-name", served],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/health", timeout=0.5).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.05)
        self.processes[url] = process
        return url

    def kill(self, url: str) -> None:
        process = self.processes[url]
        process.kill()
        process.wait()

    def stop(self) -> None:
        for process in self.processes.values():
            process.kill()
            process.wait()


@pytest.fixture
def engines():
    running = Engines()
    yield running
    running.stop()
