"""What the router adds: latency, throughput ceiling and CPU per request, next to vllm-router.

Run: python tests/bench/bench_router_overhead.py [SECONDS] [REPEATS]

Needs `wrk` (Debian package) and a fake engine: the shared kit's aiohttp engine
(`../shared/bench/router-bench-kit/fake_engine.py`, run with the vllm-router venv's Python, which
has aiohttp) when present, else this repository's stdlib one (slower, so ceilings are lower).
vllm-router is taken from the venv in $VLLM_ROUTER_VENV (default /tmp/vllm-router-venv:
`python3 -m venv /tmp/vllm-router-venv && /tmp/vllm-router-venv/bin/pip install
vllm-router==0.1.17 aiohttp`) and skipped when absent.

Everything runs on 127.0.0.1, in the same run: direct to the engine (the reference),
stackc-router, vllm-router, in an order rotated every repeat; each cell is the median over the
repeats. Added latency is against direct; CPU per request is read from /proc for the router
process only. The last lines hold the results against the goals (issue 12).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
KIT = REPO.parent / "shared" / "bench" / "router-bench-kit"
TICKS = os.sysconf("SC_CLK_TCK")
LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"model":"fake-model","max_tokens":8,' .. (os.getenv("STREAM") == "1" and '"stream":true,' or '') ..
  '"messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"Say hello."}]}'
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait(url: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except Exception:  # noqa: BLE001 - not up yet
            time.sleep(0.1)
    raise RuntimeError(f"{url} never answered")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def wrk(url: str, clients: int, seconds: int, stream: bool, script: str) -> dict:
    out = subprocess.run(["wrk", "-t1", f"-c{clients}", f"-d{seconds}s", "--latency", "-s", script, url],
                         env={**os.environ, "STREAM": "1" if stream else "0"}, capture_output=True, text=True,
                         check=True).stdout

    def ms(text: str) -> float:
        value, unit = re.match(r"([\d.]+)(us|ms|s)", text).groups()
        return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]

    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
            "requests": int(re.search(r"(\d+) requests in", out).group(1)),
            "p50": ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1)),
            "p99": ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1)),
            "errors": int((re.search(r"Non-2xx or 3xx responses: (\d+)", out) or [0, 0])[1])}


def measure(url: str, process: subprocess.Popen | None, clients: int, seconds: int, stream: bool,
            script: str) -> dict:
    """One cell: a 1 s warm-up, then ``seconds`` measured, with the process's CPU time around it."""
    url += "/v1/chat/completions"
    wrk(url, clients, 1, stream, script)
    before = cpu_seconds(process.pid) if process else 0.0
    result = wrk(url, clients, seconds, stream, script)
    result["cpu_us"] = (cpu_seconds(process.pid) - before) / max(result["requests"], 1) * 1e6 if process else 0.0
    return result


def main(seconds: int, repeats: int) -> None:
    engine_port, stackc_port, vllm_port = free_port(), free_port(), free_port()
    processes: dict[str, subprocess.Popen] = {}
    with tempfile.TemporaryDirectory() as scratch:
        script = Path(scratch) / "post.lua"
        script.write_text(LUA)
        venv = Path(os.environ.get("VLLM_ROUTER_VENV", "/tmp/vllm-router-venv"))
        kit_python = venv / "bin" / "python" if (venv / "bin" / "python").exists() else Path(sys.executable)
        if (KIT / "fake_engine.py").exists():  # aiohttp comes with vllm-router
            engine = [str(kit_python), str(KIT / "fake_engine.py"), "--port", str(engine_port)]
        else:
            engine = [sys.executable, str(REPO / "tests/fakes/fake_engine.py"), "--port", str(engine_port),
                      "--served-model-name", "fake-model"]
        backend = f"http://127.0.0.1:{engine_port}"
        commands = {
            "engine": engine,
            "stackc-router": [sys.executable, "-m", "stackc_router", "--backend", f"fake-model={backend}",
                              "--strategy", "round_robin", "--port", str(stackc_port)],
        }
        if (venv / "bin" / "vllm-router").exists():
            commands["vllm-router"] = [str(venv / "bin" / "vllm-router"), "--host", "127.0.0.1", "--port",
                                       str(vllm_port), "--worker-urls", backend, "--policy", "round_robin",
                                       "--prometheus-host", "127.0.0.1", "--prometheus-port", str(free_port())]
        urls = {"direct": backend, "stackc-router": f"http://127.0.0.1:{stackc_port}",
                "vllm-router": f"http://127.0.0.1:{vllm_port}"}
        try:
            for name, command in commands.items():
                processes[name] = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for name in ("direct", *[n for n in commands if n != "engine"]):
                wait(urls[name] + "/v1/models")
            targets = ["direct", *[n for n in ("stackc-router", "vllm-router") if n in commands]]
            print(f"{'mode':<5} {'clients':>7} {'target':<14} {'rps':>8} {'p50 ms':>8} {'p99 ms':>8} "
                  f"{'+p50 ms':>8} {'+p99 ms':>8} {'cpu us/req':>10} {'errors':>6}")
            verdicts = []
            for stream in (False, True):
                for clients in (1, 32):
                    runs: dict[str, list[dict]] = {t: [] for t in targets}
                    for repeat in range(repeats):
                        for target in targets[repeat % len(targets):] + targets[:repeat % len(targets)]:
                            runs[target].append(measure(urls[target], processes.get(target), clients, seconds, stream,
                                                        str(script)))
                    results = {t: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for t, rs in runs.items()}
                    direct = results["direct"]
                    for target, r in results.items():
                        print(f"{'sse' if stream else 'json':<5} {clients:>7} {target:<14} {r['rps']:>8.0f} "
                              f"{r['p50']:>8.2f} {r['p99']:>8.2f} {r['p50'] - direct['p50']:>8.2f} "
                              f"{r['p99'] - direct['p99']:>8.2f} {r['cpu_us']:>10.0f} {r['errors']:>6.0f}")
                    if "vllm-router" in results:
                        ours, theirs = results["stackc-router"], results["vllm-router"]
                        verdicts.append((stream, clients, ours['rps'] / theirs['rps'], ours['cpu_us'] / theirs['cpu_us'],
                                         ours['p50'] - direct['p50']))
            print("\nstackc-router against the goals (throughput >= 1.0x and CPU/request <= 1.0x vllm-router; "
                  "added p50 <= 0.4 ms JSON, 0.6 ms SSE)")
            for stream, clients, throughput, cpu, added in verdicts:
                goal = 0.6 if stream else 0.4
                print(f"{'sse' if stream else 'json':<5} {clients:>2} clients: throughput {throughput:.2f}x "
                      f"{'met' if throughput >= 1 else 'NOT met'}, CPU {cpu:.2f}x {'met' if cpu <= 1 else 'NOT met'}, "
                      f"added p50 {added:+.2f} ms {'met' if added <= goal else 'NOT met'}")
        finally:
            for process in processes.values():
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    process.kill()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 4, int(sys.argv[2]) if len(sys.argv) > 2 else 3)
