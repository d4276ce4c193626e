from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httptools
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

    def start(self, *names: str, served: str = "served-tiny", args: tuple[str, ...] = (),
              env: dict[str, str] | None = None, port: int | None = None) -> str:
        """An engine, ready when this returns; on ``port`` to bring up a replica a router already knows."""
        port = port or free_port()
        process = subprocess.Popen([sys.executable, str(FAKE_ENGINE), "--port", str(port), "--served-model-name", served,
                                    *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                   env={**os.environ, **(env or {})})
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


class ScriptedReplica:
    """A replica on a loopback port that answers every POST with ``script(connection)`` (GETs get 200).

    ``requests`` holds each POST as received; ``hangups`` counts connections the router closed
    while a script waited for it (``wait_for_hangup``). Every socket has a timeout, so nothing
    outlives the test.
    """

    def __init__(self, script) -> None:
        self.script = script
        self.requests: list[bytes] = []
        self.hangups = 0
        self.listening = socket.create_server(("127.0.0.1", 0))
        self.listening.settimeout(0.1)
        self.url = f"http://127.0.0.1:{self.listening.getsockname()[1]}"
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True, name="scripted-replica")
        self.thread.start()

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                connection, _ = self.listening.accept()
            except TimeoutError:
                continue
            connection.settimeout(5)
            threading.Thread(target=self._serve, args=(connection,), daemon=True).start()

    def _serve(self, connection: socket.socket) -> None:
        with connection:
            while not self.stopping.is_set():
                request = read_request(connection)
                if request is None:
                    return
                if request.startswith(b"GET"):
                    connection.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}")
                    continue
                self.requests.append(request)
                if self.script(self, connection) == "close":
                    return

    def wait_for_hangup(self, connection: socket.socket, seconds: float = 5.0) -> None:
        connection.settimeout(seconds)
        try:
            if connection.recv(1) == b"":
                self.hangups += 1
        except ConnectionResetError:
            self.hangups += 1
        except TimeoutError:
            pass

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(5)
        self.listening.close()


def read_request(connection: socket.socket) -> bytes | None:
    """One request off the socket, framed by llhttp; None when the peer closed."""
    done, data = [], b""
    parser = httptools.HttpRequestParser(type("Done", (), {"on_message_complete": lambda _: done.append(1)})())
    while not done:
        try:
            chunk = connection.recv(65536)
        except (ConnectionError, TimeoutError):
            return None
        if not chunk:
            return None
        data += chunk
        parser.feed_data(chunk)
    return data


@pytest.fixture
def scripted():
    replicas: list[ScriptedReplica] = []

    def start(script) -> ScriptedReplica:
        replicas.append(ScriptedReplica(script))
        return replicas[-1]

    yield start
    for replica in replicas:
        replica.stop()

