"""Soak: the router under a hostile client and a replica killed mid-way (issue 26's acceptance).

Run: python tests/bench/soak_router.py [--clients 64] [--seconds 30] [--fd-limit 1024] [--hostile N]

Everything on 127.0.0.1 (and other loopback addresses: all of 127/8 is loopback): two fake
engines (tests/fakes/fake_engine.py, answers delayed and streams spaced out so some of both are
under way at the kill) behind
a router process whose open-file limit is lowered to --fd-limit, so its connection cap is
(fd-limit - 64) / 2. CLIENTS well-behaved clients, each from an address of its own (127.0.1.N),
send requests in a loop on a keep-alive connection, one in four streamed. One hostile client, from
127.0.0.2, opens --hostile half-open connections (default 1.1 x the fd limit: a request line and
Host, never the rest), starting two seconds earlier, and reopens each the router closes a moment
later. Half-way through, one engine is killed (SIGKILL).

PASS when the well-behaved clients saw no 503 from the connection cap, no failed request (a stream
the kill cut must end with an error event, never silently) and were still served after the kill,
while the hostile client did open more connections than the router has files. Prints the counts.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import resource
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httptools
import yaml
from bench_router_overhead import free_port, wait  # this folder is on the path of a script run from it

REPO = Path(__file__).resolve().parents[2]
FAKE_ENGINE = REPO / "tests" / "fakes" / "fake_engine.py"
HOSTILE = "127.0.0.2"
HALF_OPEN = b"POST /v1/chat/completions HTTP/1.1\r\nHost: router\r\n"
JSON_BODY = b'{"model":"fake","max_tokens":8,"messages":[{"role":"user","content":"hello"}]}'
STREAM_BODY = b'{"model":"fake","max_tokens":8,"stream":true,"messages":[{"role":"user","content":"hello"}]}'
SERVED = ("json ok", "stream ok", "stream ended by an error event")
REQUEST_TIMEOUT_S = 15.0
REOPEN_AFTER_S = 0.5  # the hostile client's pause before reopening a connection the router closed


@dataclass
class Soak:
    """What the clients saw; ``failures`` says whether that is a pass."""

    fd_limit: int
    hostile_target: int
    outcomes: Counter = field(default_factory=Counter)
    served_after_kill: int = 0
    hostile_opened: int = 0
    hostile_open: int = 0
    hostile_most_open: int = 0
    router_counters: dict[str, float] = field(default_factory=dict)

    def failures(self) -> list[str]:
        problems = [f"{count} x {outcome}" for outcome, count in sorted(self.outcomes.items()) if outcome not in SERVED]
        if not self.served_after_kill:
            problems.append("no request was served after the kill")
        if self.hostile_opened < self.fd_limit:
            problems.append(f"the hostile client opened only {self.hostile_opened} connections "
                            f"(fewer than the router's {self.fd_limit} files)")
        return problems


class Client:
    """One well-behaved client: requests one after another on a keep-alive connection."""

    def __init__(self, port: int, source: str):
        self.port, self.source = port, source
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, body: bytes) -> tuple[int, bytes, bool]:
        """(status, body, whether the response ended as its framing says); 0 when none came."""
        state = {"status": 0, "body": [], "done": False}

        class Collect:
            def on_headers_complete(self) -> None:
                state["status"] = parser.get_status_code()

            def on_body(self, chunk: bytes) -> None:
                state["body"].append(chunk)

            def on_message_complete(self) -> None:
                state["done"] = True

        parser = httptools.HttpResponseParser(Collect())
        try:
            if self.writer is None:
                self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port,
                                                                        local_addr=(self.source, 0))
            assert self.reader is not None
            self.writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: router\r\nContent-Type: application/json\r\n"
                              b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
            while not state["done"]:
                data = await self.reader.read(65536)
                if not data:
                    break
                parser.feed_data(data)
        except (OSError, httptools.HttpParserError):
            pass
        if not state["done"] or not parser.should_keep_alive():
            self.close()
        return state["status"], b"".join(state["body"]), state["done"]

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


def outcome(stream: bool, status: int, body: bytes, complete: bool) -> str:
    if status == 503 and b"too_many_connections" in body:
        return "503 from the connection cap"
    if not stream:
        return "json ok" if status == 200 and complete else f"json failed ({status or 'no answer'})"
    if status != 200:
        return f"stream failed ({status or 'no answer'})"
    if b'data: {"error"' in body:
        return "stream ended by an error event"
    return "stream ok" if complete and b"data: [DONE]" in body else "stream cut silently"


async def well_behaved(soak: Soak, port: int, source: str, until: float, killed: asyncio.Event, pause: float) -> None:
    client = Client(port, source)
    for n in range(1_000_000):
        if time.monotonic() >= until:
            break
        stream = n % 4 == 3
        try:
            result = await asyncio.wait_for(client.request(STREAM_BODY if stream else JSON_BODY), REQUEST_TIMEOUT_S)
        except TimeoutError:
            client.close()
            result = (0, b"", False)
        seen = outcome(stream, *result)
        soak.outcomes[seen] += 1
        if killed.is_set() and seen in SERVED:
            soak.served_after_kill += 1
        await asyncio.sleep(pause)
    client.close()


async def hostile(soak: Soak, port: int, until: float) -> None:
    """Hold half-open connections; reopen each one the router closes (shed, or past its header deadline)."""
    async def hold_one() -> None:
        while time.monotonic() < until:
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection("127.0.0.1", port, local_addr=(HOSTILE, 0)), 5)
            except (OSError, TimeoutError):
                await asyncio.sleep(REOPEN_AFTER_S)
                continue
            soak.hostile_opened += 1
            soak.hostile_open += 1
            soak.hostile_most_open = max(soak.hostile_most_open, soak.hostile_open)
            try:
                writer.write(HALF_OPEN)
                while await asyncio.wait_for(reader.read(65536), max(0.01, until - time.monotonic())):
                    pass  # a 408 at its deadline, then the close
            except (OSError, TimeoutError):
                pass
            finally:
                soak.hostile_open -= 1
                writer.close()
            await asyncio.sleep(REOPEN_AFTER_S)

    await asyncio.gather(*(hold_one() for _ in range(soak.hostile_target)))


async def drive(soak: Soak, port: int, clients: int, seconds: float, pause: float, kill) -> None:
    start = time.monotonic()
    until = start + 2 + seconds
    attack = asyncio.ensure_future(hostile(soak, port, until))
    await asyncio.sleep(2)  # the hostile client holds what it can before the others come
    killed = asyncio.Event()

    async def kill_half_way() -> None:
        await asyncio.sleep(seconds / 2)
        kill()
        killed.set()

    await asyncio.gather(kill_half_way(), *(well_behaved(soak, port, f"127.0.1.{1 + n}", until, killed, pause)
                                            for n in range(clients)))
    await attack


def router_counters(base: str) -> dict[str, float]:
    """The router's counters of limits and failures, summed per family and label."""
    with urllib.request.urlopen(f"{base}/metrics", timeout=5) as response:
        text = response.read().decode()
    totals: Counter = Counter()
    for name, labels, value in re.findall(r'^(stackc_router_\w+_total)(\{[^}]*\})? (\S+)$', text, re.M):
        limit = re.search(r'limit="([^"]+)"', labels or "")
        totals[f"{name}{{{limit[1]}}}" if limit else name] += float(value)
    return dict(totals)


def run(clients: int = 64, seconds: float = 30.0, fd_limit: int = 1024, hostile_connections: int | None = None,
        pause: float = 0.1) -> Soak:
    """One soak; every process it starts is stopped by its own id before it returns."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:  # this process holds the hostile client's sockets too
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    soak = Soak(fd_limit, hostile_connections or fd_limit * 11 // 10)
    processes: list[subprocess.Popen] = []
    with tempfile.TemporaryDirectory() as scratch:
        try:
            engines = []
            for _ in range(2):
                port = free_port()
                processes.append(subprocess.Popen(
                    [sys.executable, str(FAKE_ENGINE), "--port", str(port), "--served-model-name", "fake",
                     "--reply-delay", "0.02", "--stream-interval", "0.2"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
                engines.append(f"http://127.0.0.1:{port}")
            for url in engines:
                wait(f"{url}/health")
            config = Path(scratch) / "router.yaml"
            config.write_text(yaml.safe_dump({"listen": {"host": "127.0.0.1", "port": free_port()}, "models": {
                "fake": {"strategy": "round_robin", "backends": engines, "health": {"interval_s": 1}}}}))
            port = yaml.safe_load(config.read_text())["listen"]["port"]
            log = open(Path(scratch) / "router.log", "wb")  # noqa: SIM115 - closed with the scratch folder
            router = subprocess.Popen([sys.executable, "-m", "stackc_router", "--config", str(config)], stderr=log,
                                      preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (fd_limit, fd_limit)))
            processes.append(router)
            base = f"http://127.0.0.1:{port}"
            wait(f"{base}/health")
            asyncio.run(drive(soak, port, clients, seconds, pause, lambda: processes[1].send_signal(signal.SIGKILL)))
            if router.poll() is not None:
                soak.outcomes[f"router exited ({router.returncode})"] += 1
            else:
                soak.router_counters = router_counters(base)
            log.close()
        finally:
            for process in processes:
                process.kill()
                process.wait()
    return soak


def report(soak: Soak, clients: int, seconds: float) -> str:
    from stackc_router.config import Config
    from stackc_router.server import FILES_PER_CLIENT, SPARE_FILES, share

    defaults = Config(models=())
    cap = min(defaults.max_connections, (soak.fd_limit - SPARE_FILES) // FILES_PER_CLIENT)
    per_address = share(defaults.max_connections_per_address, cap, defaults.max_connections)
    lines = [f"soak: {clients} clients for {seconds:g} s, two engines (one killed at {seconds / 2:g} s), "
             f"router open-file limit {soak.fd_limit} (connection cap {cap}, {per_address} per address)",
             "well-behaved clients:"]
    lines += [f"  {count:>7} {name}" for name, count in sorted(soak.outcomes.items())]
    lines += [f"  {soak.served_after_kill:>7} served after the kill",
              f"hostile client ({HOSTILE}): {soak.hostile_opened} half-open connections opened, "
              f"at most {soak.hostile_most_open} open at once (target {soak.hostile_target})",
              "router counters:"]
    lines += [f"  {value:>7g} {name}" for name, value in sorted(soak.router_counters.items())
              if "limited" in name or "shed" in name or "errors" in name or "retries" in name]
    problems = soak.failures()
    lines.append("PASS" if not problems else "FAIL: " + "; ".join(problems))
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--fd-limit", type=int, default=1024)
    parser.add_argument("--hostile", type=int, default=None, help="half-open connections (default 1.1 x fd limit)")
    parser.add_argument("--pause", type=float, default=0.1, help="each client's pause between requests, seconds")
    args = parser.parse_args()
    soak = run(args.clients, args.seconds, args.fd_limit, args.hostile, args.pause)
    print(report(soak, args.clients, args.seconds))
    return 0 if not soak.failures() else 1


if __name__ == "__main__":
    sys.exit(main())
