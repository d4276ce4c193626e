"""Fidelity: each example values file rendered by its chart (``helm template``) against the same
values imported and compiled by stackc, engine container by engine container (production-stack,
LMStack, Doubleword, ai-on-eks' Deployments and LeaderWorkerSets, production-stack's RayCluster by
its head and start script, ai-on-eks' RayServices by the vLLM engine arguments their Serve script builds).

Compared: image, flags and positional arguments, environment, resources, replicas, probe paths
and startup budget, the node namespaces the pod shares, the names each engine serves (not for servers under the command engine, whose
names are the router's alone), and, where the chart has a router, the routing table: every model the
chart's router reaches is in stackc's router table under its served name, routed the same way. Every
difference is either a stackc improvement listed in IMPROVEMENTS with its reason, or reported by
the import as a located W090 on that model's modelSpec entry. Mounts differ by design (stackc's
cache volume and home, see IMPROVEMENTS) and are not compared. Helm and the seed charts are found
as the other seed-chart tests find them; absent, the test skips with the reason.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from stackc.importers.draft import model_key
from stackc.importers.run import import_values
from stackc.testing import charts_dir, compile_text, objects
from tests.stackc.importers.test_seed_charts import NO_MODEL

RELEASE = "rel"
#: what every vLLM engine of stackc's sets for its caches and its non-root user, whatever the chart
ENGINE_HOME = {
    ("env", "VLLM_CACHE_ROOT"): "stackc keeps vLLM's compile cache on the cache volume",
    ("env", "HOME"): "a writable home for a non-root engine (Pod Security restricted)",
    ("env", "USER"): "a writable home for a non-root engine (Pod Security restricted)",
}
#: (field, key) -> why stackc differs from the chart on purpose
IMPROVEMENTS = {
    ("flags", "--served-model-name"): "stackc names the served model explicitly (the same name vLLM defaults to)",
    ("flags", "--tensor-parallel-size"): "1 is vLLM's default: stackc writes the flag only for more",
    ("flags", "--pipeline-parallel-size"): "1 is vLLM's default: stackc writes the flag only for more",
    ("flags", "--host"): "stackc states the address it listens on (vLLM's default, 0.0.0.0)",
    ("flags", "--port"): "stackc states the port it probes and serves (vLLM's default, 8000)",
    ("env", "NEURON_CC_FLAGS"): "stackc keeps Neuron's compile cache on the cache volume, so restarts skip compiling",
    ("env", "NEURON_COMPILED_ARTIFACTS"): "see NEURON_CC_FLAGS",
    ("flags", "--enable-metrics"): "stackc turns SGLang's Prometheus metrics on for monitoring and autoscaling",
    ("flags", "--kv-transfer-config"): "plain CPU offloading is vLLM's --kv-offloading-backend lmcache, the same "
                                       "LMCache buffer; P/D roles name stackc's connector ports",
    ("flags", "--kv-offloading-backend"): "see --kv-transfer-config",
    ("flags", "--kv-offloading-size"): "see --kv-transfer-config",
    ("env", "HF_HOME"): "stackc's cache volume holds the weights (/cache), not the chart's /data or /tmp",
    **ENGINE_HOME,
    ("env", "POD_IP"): "vllm serve reads no POD_IP; stackc sets it only for engines that do",
    ("env", "PYTHONHASHSEED"): "stackc fixes the hash seed where hashes must agree across pods (a shared KV cache)",
    ("env", "PROMETHEUS_MULTIPROC_DIR"): "vLLM manages its multiprocess metrics directory itself",
    ("env", "LMCACHE_USE_EXPERIMENTAL"): "a switch of vLLM's v0 LMCache integration; V1 ignores it",
    ("env", "VLLM_RPC_TIMEOUT"): "a v0-engine RPC timeout; V1 ignores it",
    ("env", "LMCACHE_LOCAL_CPU"): "see --kv-transfer-config: the buffer is sized by --kv-offloading-size",
    ("env", "LMCACHE_MAX_LOCAL_CPU_SIZE"): "see --kv-transfer-config: the buffer is sized by --kv-offloading-size",
    ("env", "LMCACHE_LOG_LEVEL"): "INFO is LMCache's default",
    ("env", "LMCACHE_LMCACHE_INSTANCE_ID"): "read by the LMCache controller only, which is reported (W090)",
    ("env", "LMCACHE_REMOTE_URL"): "stackc's cache server Service has its own name and port",
    ("env", "LMCACHE_REMOTE_SERDE"): "stackc's cache server states its serde",
    ("env", "LMCACHE_NIXL_RECEIVER_HOST"): "stackc's decode Service has its own name",
    ("probes", "timings"): "stackc's startup probe gates the others (no initial delays) and allows at least the "
                           "chart's startup time",
}


#: the same for a model spread over several pods (a LeaderWorkerSet or RayCluster), which the chart joins with Ray
MULTI_NODE = {
    ("flags", "--nnodes"): "stackc runs vLLM's own multi-node mode (docs/spec.md: vLLM runs without Ray)",
    ("flags", "--node-rank"): "see --nnodes",
    ("flags", "--master-addr"): "see --nnodes",
    ("flags", "--ray-cluster-size"): "the chart's Ray launcher script; stackc needs no Ray cluster",
    ("positional", "positional"): "the chart's Ray launcher script around vllm serve (the model is compared by name)",
    ("probes", "readinessProbe path"): "stackc asks vLLM's /health instead of the chart's open-port check",
    ("probes", "startupProbe path"): "the chart's Ray head waits for Ray; stackc's startup probe waits for vLLM",
    ("probes", "livenessProbe path"): "the chart's Ray head probe is a placeholder (echo TBD); stackc asks /health",
    ("kind", "kind"): "stackc spreads a replica over a LeaderWorkerSet's pods, not a RayCluster's",
    ("flags", "--distributed-executor-backend"): "see --nnodes",
    ("env", "VLLM_HOST_IP"): "Ray's address for the node; see --nnodes",
    ("env", "EXPECTED_NODES"): "the chart's wait-for-Ray script; see --nnodes",
}
_CONTROLLER = "lmcacheConfig.enableController"
#: (field, key) -> what the located W090 on the model's entry names (its key or its reason)
REPORTED = {
    ("flags", "--chat-template"): "chatTemplate",  # a template file on the chart's own PVC
    ("env", "VLLM_USE_V1"): "VLLM_USE_V1",  # the RayCluster's pinned v0 engine
    ("env", "HF_TOKEN"): "security",  # a P/D pair's prefill entry with a token of its own
    **{("env", name): _CONTROLLER for name in (
        "LMCACHE_ENABLE_CONTROLLER", "LMCACHE_CONTROLLER_PULL_URL", "LMCACHE_CONTROLLER_REPLY_URL",
        "LMCACHE_LMCACHE_WORKER_HEARTBEAT_TIME", "LMCACHE_LMCACHE_WORKER_PORTS", "LMCACHE_P2P_HOST",
        "LMCACHE_P2P_INIT_PORTS")},
}


def helm() -> str | None:
    return shutil.which("helm") or next((str(p) for p in [Path(sys.prefix) / "bin" / "helm"] if p.exists()), None)


#: chart -> its folder, its example values, the importer, and how its engine Deployments are found:
#: the container's name (None: its only one) and the model's name from the Deployment
CHARTS = {
    "production-stack": ("production-stack/helm", "production-stack/tutorials/assets/values-*.yaml", "production-stack",
                         "vllm", lambda obj: obj["metadata"].get("labels", {}).get("model")),
    "lmstack": ("lmstack/helm", "lmstack/helm/values-example.yaml", "lmstack", "vllm",
                lambda obj: _between(obj["metadata"]["name"], f"{RELEASE}-", "-deployment-vllm")),
    "doubleword": ("doubleword-inference-stack", "doubleword-inference-stack/examples/*.yaml", "doubleword", None,
                   lambda obj: obj["metadata"].get("labels", {}).get("app.kubernetes.io/model-group")),
    "ai-on-eks": ("ai-on-eks-inference-charts/charts/inference-charts",
                  "ai-on-eks-inference-charts/charts/inference-charts/values-*.yaml", "ai-on-eks", None,
                  lambda obj: obj["metadata"]["name"]),
}


def entry(chart: str, values: dict[str, Any], name: str) -> str:
    """Where the chart's model ``name`` is written in the values (what its W090s are located under)."""
    if chart == "doubleword":
        return f"modelGroups.{name}"
    if chart == "ai-on-eks":
        return ""  # one model per file: every key of the file is its
    names = [item.get("name") for item in values["servingEngineSpec"]["modelSpec"]]
    return f"servingEngineSpec.modelSpec[{names.index(name)}]"


def _between(name: str, prefix: str, suffix: str) -> str | None:
    return name[len(prefix):-len(suffix)] if name.startswith(prefix) and name.endswith(suffix) else None


@pytest.fixture(scope="module")
def rendered_charts(tmp_path_factory) -> Path:
    """A writable copy of the seed charts, production-stack's with empty stubs for its two optional remote
    subcharts (SOURCES.md), which are off."""
    root = charts_dir()
    if root is None or helm() is None:
        pytest.skip("helm or the seed charts are not here: set STACKC_CHARTS_DIR, run .ci/install-tools")
    copy = tmp_path_factory.mktemp("charts")
    for chart, (folder, *_) in CHARTS.items():
        shutil.copytree(root / folder, copy / chart)
    for name in ("kube-prometheus-stack", "prometheus-adapter"):
        stub = copy / "production-stack" / "charts" / name
        stub.mkdir(parents=True)
        (stub / "Chart.yaml").write_text(f"apiVersion: v2\nname: {name}\nversion: 0.0.0\n")
    return copy


def examples() -> list:
    root = charts_dir()
    if root is None:
        return [pytest.param(None, None, marks=pytest.mark.skip(reason="the seed charts are not here"))]
    return [pytest.param(chart, path, id=f"{chart}/{path.name}")
            for chart, (_, pattern, *_) in CHARTS.items() for path in sorted(root.glob(pattern))]


def view(kind: str, container: dict[str, Any], replicas: Any) -> dict[str, Any]:
    argv = [*(container.get("command") or []), *(container.get("args") or [])]
    if argv[:2] in (["/bin/sh", "-c"], ["sh", "-c"]) and len(argv) > 2:  # a command line in a shell string
        argv = [*shlex.split(argv[2]), *argv[3:]]
    flags: dict[str, Any] = {}
    positional = []
    index = 0
    while index < len(argv):
        word = argv[index]
        if word.startswith("--"):
            name, _, value = word.partition("=")
            name = name.replace("_", "-")
            words = [value] if value else []
            while not value and index + 1 < len(argv) and not argv[index + 1].startswith("--"):
                words.append(argv[index + 1])  # a flag takes every word up to the next (--served-model-name A B)
                index += 1
            flags[name] = _canonical(" ".join(words)) if words else True
        elif word not in LAUNCHERS:
            positional.append(word)
        index += 1
    if "--model" in flags:  # `--model X` and a positional X are one model to vLLM
        positional.insert(0, flags.pop("--model"))
    env = {e["name"]: e.get("value", json.dumps(e.get("valueFrom"), sort_keys=True)) for e in container.get("env", [])}
    # huggingface_hub reads HF_TOKEN; HUGGING_FACE_HUB_TOKEN is its deprecated name for the same token
    if "HUGGING_FACE_HUB_TOKEN" in env and env.get("HF_TOKEN", env["HUGGING_FACE_HUB_TOKEN"]) == env[
            "HUGGING_FACE_HUB_TOKEN"]:
        env["HF_TOKEN"] = env.pop("HUGGING_FACE_HUB_TOKEN")
    resources = {side: {name: str(amount) for name, amount in amounts.items()}  # YAML reads `1` as a number
                 for side, amounts in (container.get("resources") or {}).items() if amounts}
    probes = {kind: container[kind] for kind in ("startupProbe", "livenessProbe", "readinessProbe")
              if kind in container}
    return {"kind": kind, "image": container["image"], "flags": flags, "positional": positional, "env": env,
            "resources": resources, "replicas": replicas, "probes": probes}


#: the words that start a server, not arguments to it (stackc runs SGLang with the image's python3)
LAUNCHERS = ("vllm", "serve", "/opt/venv/bin/vllm", "python", "python3", "-m", "sglang.launch_server")


def _canonical(value: str) -> str:
    try:
        return json.dumps(json.loads(value), sort_keys=True)  # JSON flags compare by value, not spacing
    except ValueError:
        return value


def render(folder: Path, values: Path) -> str:
    return subprocess.run([helm(), "template", RELEASE, str(folder), "-f", str(values), "--namespace", "default"],
                          capture_output=True, text=True, check=True).stdout


def chart_engines(chart: str, rendered: str) -> dict[str, dict[str, Any]]:
    _, _, _, container, model_of = CHARTS[chart]
    found = {}
    documents = [obj for obj in yaml.safe_load_all(rendered) if obj]
    for obj in documents:
        if obj["kind"] in WORKLOADS and (name := model_of(obj)):
            [engine] = [c for c in pod(obj)["containers"] if container in (None, c["name"])]
            found[name] = {**view(obj["kind"], engine, obj["spec"].get("replicas")), "host": host(pod(obj))}
        elif obj["kind"] == "RayService" and (name := model_of(obj)):
            found[name] = ray_service(obj, documents)
        elif obj["kind"] == "RayCluster" and (name := model_of(obj)):
            found[name] = {**view("RayCluster", ray_head(obj, documents, name), 1),  # one replica over its pods
                           "host": host(obj["spec"]["headGroupSpec"]["template"]["spec"])}
    return found


def ray_head(cluster: dict[str, Any], documents: list[dict[str, Any]], name: str) -> dict[str, Any]:
    """production-stack's RayCluster head as the engine: its image, env and probes, and the vllm serve
    command its start script (a ConfigMap) builds in a bash array."""
    [head] = cluster["spec"]["headGroupSpec"]["template"]["spec"]["containers"]
    [script] = [d["data"]["vllm-entrypoint.sh"] for d in documents
                if d["kind"] == "ConfigMap" and d["metadata"]["name"] == f"{name}-vllm-start-script"]
    words = []
    for line in script.splitlines():
        line = line.strip()
        if line.startswith("ARGS+=("):
            words += shlex.split(line.removeprefix("ARGS+=(").removesuffix(")"))
        elif line.startswith('"') and words is not None and not line.startswith('"${'):
            words += shlex.split(line.replace('""', '"'))  # an item of the ARGS=( … ) array
    return {**head, "command": [], "args": words}


def ray_service(service: dict[str, Any], documents: list[dict[str, Any]]) -> dict[str, Any]:
    """ai-on-eks' RayService as the engine its Serve script starts: the vLLM engine arguments the script
    (the ray-vllm-serve ConfigMap) builds from the worker's environment, evaluated as the script does,
    Serve's replicas, and the devices each replica asks Ray for."""
    [worker] = service["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][:1]
    env = {e["name"]: e["value"] for e in worker.get("env", []) if "value" in e}
    [script] = [d["data"]["vllm_serve.py"] for d in documents if d["kind"] == "ConfigMap"
                and "vllm_serve.py" in d.get("data", {})]
    block = script[script.index("AsyncEngineArgs(") + len("AsyncEngineArgs("):]
    block = block[:re.search(r"\n\s*\)\n", block).start()]  # up to the call's closing parenthesis
    scope = {"os": type("os", (), {"getenv": staticmethod(lambda name, default=None: env.get(name, default))}),
             "int": int, "float": float, "bool": bool}
    arguments = {}
    for line in block.splitlines():
        if (found := re.match(r"\s*(\w+)=(.*?),\s*(#.*)?$", line)) and not line.strip().startswith("#"):
            arguments[found[1]] = eval(found[2], scope)  # noqa: S307 - the chart's own expression, on its own data
    [deployment] = yaml.safe_load(service["spec"]["serveConfigV2"])["applications"][0]["deployments"]
    actor = deployment["ray_actor_options"]
    devices = actor.get("num_gpus") or actor.get("resources", {}).get("neuron_cores", 0) // 2
    return {"kind": "RayService", "image": worker["image"], "arguments": arguments, "model": arguments.pop("model"),
            "served": arguments.pop("served_model_name"), "replicas": deployment["num_replicas"],
            "devices": devices, "host": host({})}


def ray_arguments(engine: dict[str, Any]) -> dict[str, Any]:
    """The vLLM engine arguments of stackc's engine: Ray Serve LLM's engine_kwargs, or vllm serve's flags."""
    if "arguments" in engine:
        return engine["arguments"]
    arguments: dict[str, Any] = {}
    for flag, value in engine["flags"].items():
        name = flag.removeprefix("--").replace("-", "_")
        if value is True and name.startswith("no_"):
            arguments[name.removeprefix("no_")] = False
        else:
            arguments[name] = value if value is True else _number(value)
    arguments.setdefault("enable_prefix_caching", False)
    return arguments


def _number(value: str) -> Any:
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


#: (argument) -> why stackc's engine differs from the chart's Serve script on purpose
RAY_IMPROVEMENTS = {
    "tokenizer_pool_size": "the script's tokenizer pool is an argument of vLLM's V0 engine; V1 has none",
    "tokenizer_pool_type": "see tokenizer_pool_size",
    "dtype": "auto is vLLM's default",
    "host": "stackc states the address it listens on (vLLM's default)",
    "port": "stackc states the port it probes and serves",
    "tensor_parallel_size": None,  # compared below: 1 is vLLM's default, which stackc leaves out
    "pipeline_parallel_size": None,
}


def ray_differences(chart: dict[str, Any], ours: dict[str, Any]) -> list[tuple[str, str, Any, Any]]:
    theirs, mine = chart["arguments"], ray_arguments(ours)
    found = []
    for name in sorted(set(theirs) | set(mine)):
        if RAY_IMPROVEMENTS.get(name) or name == "served_model_name":
            continue
        default = 1 if name in ("tensor_parallel_size", "pipeline_parallel_size") else None
        if theirs.get(name, default) != mine.get(name, default):
            found.append(("arguments", name, theirs.get(name), mine.get(name)))
    if chart["replicas"] != ours["replicas"]:
        found.append(("replicas", "replicas", chart["replicas"], ours["replicas"]))
    if chart["devices"] != ours["devices"]:
        found.append(("devices", "devices", chart["devices"], ours["devices"]))
    if chart["image"] != ours["image"]:
        found.append(("image", "image", chart["image"], ours["image"]))
    return found


#: the workloads that run engines, compared by the pod that serves the API (a LeaderWorkerSet's leader)
WORKLOADS = ("Deployment", "LeaderWorkerSet")


def host(spec: dict[str, Any]) -> dict[str, bool]:
    """The node namespaces the pod shares (production-stack's P/D pods share its IPC and processes)."""
    return {key: bool(spec.get(key)) for key in ("hostIPC", "hostPID", "hostNetwork")}


def pod(obj: dict[str, Any]) -> dict[str, Any]:
    if obj["kind"] == "LeaderWorkerSet":
        group = obj["spec"]["leaderWorkerTemplate"]
        return (group.get("leaderTemplate") or group["workerTemplate"])["spec"]
    return obj["spec"]["template"]["spec"]


#: the production-stack router's --routing-logic -> stackc's routing.strategy for the same behaviour
ROUTING = {"roundrobin": "round_robin", "session": "session", "prefixaware": "prefix"}


def chart_routing(rendered: str) -> str | None:
    """The chart router's --routing-logic (its whole routing table: every discovered engine, one logic)."""
    for obj in yaml.safe_load_all(rendered):
        if obj and obj["kind"] == "Deployment":
            for container in obj["spec"]["template"]["spec"]["containers"]:
                args = container.get("args") or []
                if "--routing-logic" in args:
                    return args[args.index("--routing-logic") + 1]
    return None


def router_table(text: str) -> dict[str, dict[str, Any]]:
    """stackc's router table: served name -> the model's entry (strategy, aliases, …)."""
    for obj in objects(compile_text(text).files):
        if obj["kind"] == "ConfigMap" and "router.yaml" in obj.get("data", {}):
            models = yaml.safe_load(obj["data"]["router.yaml"])["models"]
            return {entry["served_name"]: entry for entry in models.values()}
    return {}


def stackc_engines(text: str) -> dict[str, dict[str, Any]]:
    found = {}
    for obj in objects(compile_text(text).files):
        name = obj["metadata"]["name"]
        if obj["kind"] == "RayService" and name.startswith(f"{RELEASE}-"):
            [llm] = yaml.safe_load(obj["spec"]["serveConfigV2"])["applications"][0]["args"]["llm_configs"]
            [worker] = obj["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][:1]
            found[name.removeprefix(f"{RELEASE}-")] = {
                "kind": "RayService", "image": worker["image"], "arguments": llm["engine_kwargs"],
                "model": llm["model_loading_config"]["model_source"],
                "served": llm["model_loading_config"]["model_id"], "flags": {},
                "replicas": llm["deployment_config"]["num_replicas"],
                "devices": int(worker["resources"]["limits"].get("nvidia.com/gpu", 0))}
            continue
        if obj["kind"] in WORKLOADS and name.startswith(f"{RELEASE}-"):
            engines = [c for c in pod(obj)["containers"] if c["name"] == "engine"]
            if engines:
                replicas = obj["spec"].get("replicas")
                found[name.removeprefix(f"{RELEASE}-")] = {**view(obj["kind"], engines[0], replicas),
                                                           "host": host(pod(obj))}
    return found


def differences(chart: dict[str, Any], ours: dict[str, Any]) -> list[tuple[str, str, Any, Any]]:
    found = []
    for field in ("flags", "env"):
        for key in sorted(set(chart[field]) | set(ours[field])):
            if chart[field].get(key) != ours[field].get(key):
                found.append((field, key, chart[field].get(key), ours[field].get(key)))
    for field in ("kind", "image", "positional", "resources", "replicas", "host"):
        if chart[field] != ours[field]:
            found.append((field, field, chart[field], ours[field]))
    for kind, probe in chart["probes"].items():
        mine = ours["probes"].get(kind, {})
        if probe.get("httpGet", {}).get("path") != mine.get("httpGet", {}).get("path"):
            found.append(("probes", f"{kind} path", probe, mine))
        elif probe != mine:
            found.append(("probes", "timings", probe, mine))
    return found


#: (field, key) of a RayService -> what the located W090 names
RAY_REPORTED = {
    ("image", "image"): "inference.modelServer.image",  # the chart's Ray image runs its own Serve script
    ("arguments", "max_num_seqs"): "modelParameters.maxNumSeqs",  # never read: the script reads MAX_NUM_SEQ
    ("arguments", "enable_prefix_caching"): "modelParameters.enablePrefixCaching",
}


def ray_unexplained(key: str, chart: dict[str, Any], ours: dict[str, Any], reported: list[str]) -> list[str]:
    """A RayService against stackc's engine for it: a ray-vllm RayService on GPUs, a Neuron vLLM Deployment
    (reported) on Neuron; the Serve script's Fluent Bit sidecar and ignored modelParameters are reported."""
    assert any("Fluent Bit sidecar" in text for text in reported), f"{key}: the Fluent Bit sidecar is not reported"
    if ours["kind"] == "Deployment":  # Neuron: the chart's Ray image is private, a vLLM Deployment serves it
        assert any("inference.framework" in text and "Ray Serve" in text for text in reported)
        ours = {**ours, "devices": int(ours["resources"]["limits"]["aws.amazon.com/neuron"]),
                "model": ours["positional"][0], "image": chart["image"]}
    assert ours["model"] == chart["model"], f"{key}: serves {ours['model']}, the chart {chart['model']}"
    return [f"{key} {field} {name}: chart {theirs!r}, stackc {mine!r}"
            for field, name, theirs, mine in ray_differences(chart, ours)
            if not any(RAY_REPORTED.get((field, name), "-") in text for text in reported)]


def _budget(probe: dict[str, Any]) -> int:
    return probe.get("initialDelaySeconds", 0) + probe.get("periodSeconds", 10) * probe.get("failureThreshold", 3)


@pytest.mark.parametrize(("chart", "values"), examples())
def test_engines_match_the_chart_or_say_why(rendered_charts, chart, values):
    rendered = render(rendered_charts / chart, values)
    engines = chart_engines(chart, rendered)
    imported = import_values(CHARTS[chart][2], [str(values)], name=RELEASE)
    logic, table = chart_routing(rendered), router_table(imported.text)
    ours = stackc_engines(imported.text)
    data = yaml.safe_load(values.read_text())
    if values.name in NO_MODEL:  # the chart deploys no server; the import serves what it copies, reported
        assert not engines and ours
        assert any(d.code == "W090" and d.dotted_path == NO_MODEL[values.name][0] for d in imported.report)
        return
    unexplained = []
    for name, engine in engines.items():
        key = model_key(name)
        assert key in ours, f"{key}: the chart deploys it, the imported spec does not"
        here = entry(chart, data, name)
        reported = [f"{d.dotted_path} {d.message}" for d in imported.report
                    if d.code == "W090" and (here in d.dotted_path or here in d.message)]
        if engine["kind"] == "RayService":
            unexplained += ray_unexplained(key, engine, ours[key], reported)
            continue
        served = engine["flags"].get("--served-model-name") or engine["flags"].get("--model-path") or (
            engine["positional"] or [None])[0]
        if "--served-model-name" in ours[key]["flags"]:  # not a server run as written (the command engine)
            assert set(served.split()) <= set(ours[key]["flags"]["--served-model-name"].split())  # names clients send
        if logic is not None:  # the chart's router routes this model: so must stackc's, the same way
            route = table[served.split()[0]]
            explained = logic == "kvaware" and any("routerSpec.routingLogic" in text for text in
                                                   [f"{d.dotted_path} {d.message}" for d in imported.report])
            if logic == "disaggregated_prefill":
                assert "prefill" in route, f"{key}: the P/D pair is not routed as one (prefill, then decode)"
            elif not explained:
                assert route["strategy"] == ROUTING[logic], f"{key}: the chart routes by {logic}"
        for field, name, theirs, mine in differences(engine, ours[key]):
            if (field, name) in IMPROVEMENTS or engine["kind"] != "Deployment" and (field, name) in MULTI_NODE:
                continue
            because = REPORTED.get((field, name))
            if because is None or not any(because in text for text in reported):
                unexplained.append(f"{key} {field} {name}: chart {theirs!r}, stackc {mine!r}")
        startup = engine["probes"].get("startupProbe")
        if startup:
            assert _budget(ours[key]["probes"]["startupProbe"]) >= _budget(startup)  # never gives up sooner
    assert not unexplained, "\n".join(unexplained)
