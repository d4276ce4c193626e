"""Every PromQL expression stackc emits runs in a real Prometheus scraping the router and fake engines.

Prometheus (``bash .ci/install-prometheus.sh``) scrapes fake vLLM engines, the reference router
(each target labelled as the monitoring target's PodMonitors label it) and a stand-in for
kube-state-metrics; then each trigger, alert and dashboard expression is evaluated through the
HTTP API.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from stackc.plan import signals
from stackc.testing import compile_text, objects
from stackc_router.config import Config
from stackc_router.from_plan import model_route
from stackc_router.testing import running_router

from .test_monitoring import emitted_expressions

PROMETHEUS = shutil.which("prometheus")
FAKE_ENGINE = Path(__file__).resolve().parents[2] / "fakes" / "fake_engine.py"
SPEC = """\
version = 1
[stack]
name = "p"
namespace = "ns"
targets = ["manifests", "router", "monitoring"]
[defaults]
engine = "vllm"
accelerators = { count = 1 }
[models.chat]
model = "org/chat"
served_name = "chat-model"
autoscaling = { max_replicas = 3, signal = "waiting", target = 5 }
[models.code]
model = "org/code"
served_name = "code-model"
autoscaling = { min_replicas = 0, max_replicas = 2, signal = "router_pending", target = 2, activation = 1 }
[models.kv]
model = "org/kv"
served_name = "kv-model"
autoscaling = { max_replicas = 2, signal = "kv_cache_usage", target = 0.8 }
[models.tokens]
model = "org/tokens"
served_name = "tokens-model"
autoscaling = { max_replicas = 2, signal = "tokens_per_second", target = 100 }
"""
pytestmark = pytest.mark.skipif(PROMETHEUS is None, reason="prometheus is not installed (bash .ci/install-prometheus.sh)")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(url: str, seconds: float = 15) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=0.5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise TimeoutError(url)


@pytest.fixture(scope="module")
def scraped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, str]]:
    """(compilation, Prometheus URL) once every series has a few samples."""
    compilation = compile_text(SPEC)
    plan = compilation.plan
    processes, engines, servers = [], {}, []
    try:
        for component in plan.components:
            port = free_port()
            processes.append(subprocess.Popen(
                [sys.executable, str(FAKE_ENGINE), "--port", str(port), "--served-model-name",
                 *component.endpoint.served_names], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            engines[component.key] = f"127.0.0.1:{port}"
        for address in engines.values():
            wait_for(f"http://{address}/health")
        routes = tuple(model_route(c, backends=(f"http://{engines[c.key]}",)) for c in plan.components)
        with running_router(Config(models=routes, host="127.0.0.1", port=0)) as (_, router_url):
            for _ in range(3):
                for component in plan.components:
                    httpx.post(f"{router_url}/v1/completions", timeout=5,
                               json={"model": component.endpoint.served_names[0], "prompt": "hi"})
            (exporter,) = plan.stack.exporters
            jobs = [{"job_name": c.key, "static_configs": [{"targets": [engines[c.key]], "labels": labels(
                plan.stack.namespace, c.selector)}]} for c in plan.components]
            jobs.append({"job_name": "router", "static_configs": [{"targets": [router_url.removeprefix("http://")],
                                                                   "labels": labels(plan.stack.namespace, exporter.pods)}]})
            state = kube_state_metrics(plan)
            servers.append(state)
            jobs.append({"job_name": "kube-state-metrics", "honor_labels": True,
                         "static_configs": [{"targets": [f"127.0.0.1:{state.server_address[1]}"]}]})
            config = tmp_path_factory.mktemp("prometheus") / "prometheus.yml"
            config.write_text(yaml.safe_dump({"global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                                              "scrape_configs": jobs}))
            port = free_port()
            processes.append(subprocess.Popen(
                [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={config.parent / 'data'}",
                 f"--web.listen-address=127.0.0.1:{port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            prometheus = f"http://127.0.0.1:{port}"
            wait_for(f"{prometheus}/-/ready")
            scraped_twice = wait_for_samples(prometheus, len(jobs), 2)
            for component in plan.components:  # the counters grow between samples, so rates see an increase
                httpx.post(f"{router_url}/v1/completions", timeout=5,
                           json={"model": component.endpoint.served_names[0], "prompt": "hi"})
            wait_for_samples(prometheus, len(jobs), scraped_twice + 2)
            yield compilation, prometheus
    finally:
        for process in processes:
            process.kill()
            process.wait()
        for server in servers:
            server.shutdown()
            server.server_close()


def kube_state_metrics(plan: Any) -> ThreadingHTTPServer:
    """kube-state-metrics' Deployment series for each autoscaled model, as it labels them (one replica)."""
    text = "".join(f'{metric}{{namespace="{plan.stack.namespace}",deployment="{component.name}"}} 1\n'
                   for component in plan.components if component.scale.autoscaler is not None
                   for metric in (signals.DEPLOYMENT_REPLICAS, signals.DEPLOYMENT_AVAILABLE)).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(text)))
            self.end_headers()
            self.wfile.write(text)

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True, name="fake-kube-state-metrics").start()
    return server


def wait_for_samples(prometheus: str, targets: int, samples: int, seconds: float = 30) -> int:
    """Wait until every target is up and scraped at least ``samples`` times; how often the least scraped was."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        reply = httpx.get(f"{prometheus}/api/v1/query", params={"query": "count_over_time(up[5m]) and up == 1"}, timeout=5).json()
        counts = [int(float(r["value"][1])) for r in reply.get("data", {}).get("result", [])]
        if len(counts) == targets and min(counts) >= samples:
            return min(counts)
        time.sleep(0.2)
    raise TimeoutError(f"Prometheus did not scrape {targets} targets {samples} times in {seconds} s")


def labels(namespace: str, pods: dict[str, str]) -> dict[str, str]:
    """The target labels a PodMonitor with ``podTargetLabels`` gives the series."""
    return {"namespace": namespace, **{signals.label_name(k): v for k, v in pods.items()}}


def query(prometheus: str, expr: str) -> list[dict[str, Any]]:
    reply = httpx.get(f"{prometheus}/api/v1/query", params={"query": expr}, timeout=5).json()
    assert reply["status"] == "success", (expr, reply)
    return reply["data"]["result"]


def selectors(expr: str) -> list[str]:
    return re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*\{[^}]*\}", expr)


def triggers(compilation: Any) -> list[str]:
    return [t["metadata"]["query"] for obj in objects(compilation.files) if obj["kind"] == "ScaledObject"
            for t in obj["spec"]["triggers"]]


def test_every_expression_evaluates_and_every_series_it_reads_has_data(scraped: tuple[Any, str]) -> None:
    compilation, prometheus = scraped
    exprs = sorted(set(emitted_expressions(compilation)))
    assert len(exprs) > 30
    alerts = {rule["expr"] for name, text in compilation.files.items() if name.endswith("prometheusrule.yaml")
              for group in yaml.safe_load(text)["spec"]["groups"] for rule in group["rules"]}
    # the router counts errors, retries and refusals once an attempt fails or a hold gives up; here none does
    # (their expressions must still evaluate)
    (exporter,) = compilation.plan.stack.exporters
    after_failures = (exporter.router.errors, exporter.router.retries, exporter.router.hold_rejected)
    empty = []
    for expr in exprs:
        result = query(prometheus, expr)
        if result or expr in alerts or any(name in expr for name in after_failures):  # an alert has data while it fires
            continue
        empty.append(expr)
    empty += [selector for expr in exprs for selector in selectors(expr)
              if not any(name in selector for name in after_failures) and not query(prometheus, selector)]
    assert empty == [], "\n".join(empty)


def test_trigger_queries_return_exactly_one_series(scraped: tuple[Any, str]) -> None:
    compilation, prometheus = scraped
    checked = triggers(compilation)
    assert len(checked) == 4  # waiting, router_pending (held + in flight), kv_cache_usage, tokens_per_second
    assert {expr: len(query(prometheus, expr)) for expr in checked} == dict.fromkeys(checked, 1)
