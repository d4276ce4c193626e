"""`stackc import`: each chart's values become a spec whose engine pods carry what the chart renders."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stackc.cli import main
from stackc.importers.run import import_values
from stackc.importers.values import ValuesError
from stackc.testing import charts_dir, compile_text, objects

DATA = Path(__file__).parent / "data"


def import_text(tmp_path: Path, chart: str, text: str, **options):
    """Import values written here (a case too small for a file in data/)."""
    (tmp_path / "values.yaml").write_text(text)
    return import_values(chart, [str(tmp_path / "values.yaml")], **options)


def imported(chart: str, name: str) -> tuple[str, list]:
    result = import_values(chart, [str(DATA / name)])
    return result.text, list(result.report)


def pods(text: str, kind: str = "Deployment") -> dict[str, dict]:
    """The engine container and pod spec of each model, by object name."""
    found = {}
    for obj in objects(compile_text(text).files):
        if obj["kind"] == kind and obj["metadata"]["labels"].get("app.kubernetes.io/component") != "router":
            template = obj["spec"]["template"]["spec"] if kind == "Deployment" else obj["spec"]["predictor"]
            found[obj["metadata"]["name"]] = {"obj": obj, "pod": template}
    return found


def engine(entry: dict) -> dict:
    containers = entry["pod"].get("containers") or [entry["pod"]["model"]]
    return containers[0]


def test_production_stack_models_router_and_lora():
    text, report = imported("production-stack", "production-stack.yaml")
    deployments = pods(text)
    llama = deployments["production-stack-llama3"]
    container = engine(llama)
    assert llama["obj"]["spec"]["replicas"] == 2
    assert container["image"] == "vllm/vllm-openai:v0.10.1"
    assert container["imagePullPolicy"] == "Always"  # the chart's default pull policy
    args = container["args"]
    assert args[0] == "meta-llama/Llama-3.1-8B-Instruct"
    for flag in (["--revision", "0e9e39f249a16976918f6564b8830bc894c89659"], ["--max-model-len", "16384"],
                 ["--max-num-seqs", "64"], ["--gpu-memory-utilization", "0.9"], ["--dtype", "bfloat16"],
                 ["--tool-call-parser", "llama3_json"]):
        position = args.index(flag[0])
        assert args[position:position + 2] == flag
    for switch in ("--enable-prefix-caching", "--enable-chunked-prefill", "--enable-auto-tool-choice",
                   "--enable-lora", "--disable-log-requests"):
        assert switch in args
    # lmcacheConfig's CPU offloading is the spec's kv_offload: vLLM sizes the same LMCache buffer
    position = args.index("--kv-offloading-backend")
    assert args[position:position + 4] == ["--kv-offloading-backend", "lmcache", "--kv-offloading-size", "20"]
    env = {e["name"]: e for e in container["env"]}
    assert env["HF_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "hf-token-secret", "key": "token"}
    assert env["VLLM_API_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "vllm-api", "key": "key"}
    assert container["resources"]["requests"] == {"cpu": "6", "memory": "24Gi", "nvidia.com/gpu": "1"}
    assert container["resources"]["limits"]["memory"] == "32Gi"
    tolerations = [t["key"] for t in llama["pod"]["tolerations"]]
    assert tolerations == ["nvidia.com/gpu", "dedicated"]  # global then the model's (append)
    assert llama["pod"]["priorityClassName"] == "inference-high"
    assert env["POD_IP"]["valueFrom"] == {"fieldRef": {"fieldPath": "status.podIP"}}
    assert env["TENANT"]["valueFrom"] == {"configMapKeyRef": {"name": "tenancy", "key": "tenant"}}
    warm = next(c for c in llama["pod"]["initContainers"] if c["name"] == "warm-cache")
    assert warm["image"] == "busybox:1.36" and warm["command"] == ["sh", "-c"] and warm["args"] == ["ls /data"]
    cache = next(v["name"] for v in llama["pod"]["volumes"] if "persistentVolumeClaim" in v)
    assert {"name": cache, "mountPath": "/data"}.items() <= next(
        m for m in warm["volumeMounts"] if m["mountPath"] == "/data").items()  # the chart's mountPvcStorage
    extra = [o for o in objects(compile_text(text).files) if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "tenancy"]
    assert extra and extra[0]["data"] == {"tenant": "research"}

    mistral = deployments["production-stack-mistral"]
    container = engine(mistral)
    # the chart calls LMCache's image's own vllm for the latest tag
    assert container["command"] == ["/opt/venv/bin/vllm", "serve"] and container["image"] == "lmcache/vllm-openai:latest"
    assert container["resources"]["limits"]["nvidia.com/mig-4g.71gb"] == "1"
    assert "--no-enable-prefix-caching" in container["args"]  # vllmConfig without it, as the chart renders
    # disk offloading too: the chart's own LMCache wiring, as it renders it
    args = container["args"]
    assert args[args.index("--kv-transfer-config") + 1] == '{"kv_connector":"LMCacheConnectorV1","kv_role":"kv_both"}'
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["LMCACHE_MAX_LOCAL_CPU_SIZE"] == "10" and env["LMCACHE_MAX_LOCAL_DISK_SIZE"] == "50"
    assert "tolerations" not in mistral["pod"]  # tolerationsPolicy: override with none of its own
    terms = mistral["pod"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert terms["nodeSelectorTerms"][0]["matchExpressions"][0]["values"] == ["NVIDIA-A100-SXM4-80GB"]
    shm = next(v for v in mistral["pod"]["volumes"] if v.get("emptyDir", {}).get("medium") == "Memory")
    assert shm["emptyDir"]["sizeLimit"] == "8Gi"

    spec = tomllib.loads(text)
    # loraAdapters: loaded at run time, as the chart's controller does, by the router
    assert spec["models"]["llama3"]["serving"]["lora_adapters"] == [
        {"name": "sql-lora", "source": "hf://yard1/llama-2-7b-sql-lora-test", "load": "runtime"}]
    router_config = next(o for o in objects(compile_text(text).files) if o["kind"] == "ConfigMap"
                         and o["metadata"]["name"].endswith("router"))
    assert "sql-lora" in str(router_config["data"])
    assert spec["stack"]["targets"] == ["manifests", "helm", "router"]  # a chart's user gets a chart back
    assert spec["targets"]["router"]["ingress"] == {"host": "llm.example.com", "class_name": "nginx",
                                                     "tls_secret": "llm-tls"}
    assert spec["models"]["llama3"]["routing"] == {"strategy": "session", "session_header": "x-user-id"}
    assert report == []
    assert spec["models"]["mistral"]["autoscaling"] == {"min_replicas": 1, "max_replicas": 4, "signal": "waiting",
                                                        "target": 5}  # the chart's default trigger


def test_doubleword_groups_parse_engine_and_flags_from_the_command():
    text, report = imported("doubleword", "doubleword.yaml")
    deployments = pods(text)
    llama = engine(deployments["doubleword-vllm-llama"])
    assert deployments["doubleword-vllm-llama"]["obj"]["spec"]["replicas"] == 2
    assert llama["image"] == "vllm/vllm-openai:v0.6.4" and llama["command"] == ["vllm", "serve"]
    args = llama["args"]
    names = args[args.index("--served-model-name") + 1:args.index("--served-model-name") + 4]
    assert names == ["meta-llama/Meta-Llama-3.1-8B-Instruct", "chat", "llama-3.1-8b"]
    assert args[args.index("--max-model-len") + 1] == "16384"
    assert args[args.index("--gpu-memory-utilization") + 1] == "0.85"
    assert args[args.index("--max-num-seqs") + 1] == "32" and "--enable-prefix-caching" in args
    assert llama["resources"]["limits"] == {"memory": "24Gi", "nvidia.com/gpu": "1"}
    assert {e["name"] for e in llama["env"]} >= {"HF_TOKEN"}

    sglang = engine(deployments["doubleword-sglang-embed"])
    assert sglang["command"] == ["python3", "-m", "sglang.launch_server"]
    assert sglang["args"][sglang["args"].index("--mem-fraction-static") + 1] == "0.7"
    assert sglang["args"][sglang["args"].index("--context-length") + 1] == "512"
    assert "--is-embedding" in sglang["args"]
    assert sglang["startupProbe"]["tcpSocket"] and sglang["startupProbe"]["failureThreshold"] == 45
    assert sglang["ports"][0]["containerPort"] == 30001  # the group's containerPort and Service port
    service = next(o for o in objects(compile_text(text).files)
                   if o["kind"] == "Service" and o["metadata"]["name"] == "doubleword-sglang-embed")
    assert [p["port"] for p in service["spec"]["ports"]][0] == 30001
    assert sglang["args"][sglang["args"].index("--port") + 1] == "30001"
    fetch = next(c for c in deployments["doubleword-sglang-embed"]["pod"]["initContainers"] if c["name"] == "fetch")
    assert fetch["env"] == [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "fetch-token", "key": "token"}}}]

    triton = engine(deployments["doubleword-tensorrt-codegen"])
    assert triton["command"] == ["tritonserver", "--model-repository=/models", "--http-port=8001"]
    assert triton["ports"][0]["containerPort"] == 8001
    assert triton["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"

    assert [d.dotted_path for d in report] == ["modelGroups.tensorrt-codegen.persistentVolumes[0]",
                                               "modelGroups.tensorrt-codegen.apiKey"]


def test_ai_on_eks_neuron_deployment():
    text, report = imported("ai-on-eks", "ai-on-eks-neuron.yaml")
    assert report == []
    entry = pods(text)["ai-on-eks-neuron-llama-31-8b-vllm-nrn"]
    container = engine(entry)
    assert entry["obj"]["metadata"]["namespace"] == "llm" and entry["obj"]["spec"]["replicas"] == 2
    assert container["image"].startswith("public.ecr.aws/neuron/pytorch-inference-vllm-neuronx:")
    assert container["resources"]["limits"] == {"aws.amazon.com/neuron": "1", "memory": "64Gi"}
    args = container["args"]
    assert args[0] == "meta-llama/Llama-3.1-8B-Instruct"
    assert args[args.index("--tensor-parallel-size") + 1] == "2"
    assert args[args.index("--max-model-len") + 1] == "8192" and args[args.index("--max-num-seqs") + 1] == "4"
    assert args[args.index("--block-size") + 1] == "32" and "--enable-prefix-caching" not in args
    pod = entry["pod"]
    assert pod["schedulerName"] == "my-scheduler"
    assert {"key": "aws.amazon.com/neuron", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert pod["nodeSelector"] == {"node.kubernetes.io/instance-type": "inf2.8xlarge"}
    assert pod["topologySpreadConstraints"][0]["topologyKey"] == "topology.kubernetes.io/zone"
    assert {e["name"]: e.get("value") for e in container["env"]}["NEURON_RT_LOG_LEVEL"] == "INFO"


def test_ai_on_eks_ray_vllm_becomes_a_ray_service_with_the_same_model_and_engine_arguments():
    text, report = imported("ai-on-eks", "ai-on-eks-ray.yaml")
    service = next(o for o in objects(compile_text(text).files) if o["kind"] == "RayService")
    (llm,) = yaml.safe_load(service["spec"]["serveConfigV2"])["applications"][0]["args"]["llm_configs"]
    assert llm["model_loading_config"]["model_source"] == "NousResearch/Llama-3.2-1B"
    assert llm["deployment_config"] == {"num_replicas": 2}  # Ray Serve's minActors
    # the chart's Serve script's arguments: the values it reads, its defaults (max_num_seqs) and its fixed ones
    assert llm["engine_kwargs"] == {"gpu_memory_utilization": 0.8, "max_model_len": 8192, "enable_prefix_caching": True,
                                    "max_num_batched_tokens": 8192, "max_num_seqs": 4, "enforce_eager": True,
                                    "trust_remote_code": True, "enable_chunked_prefill": False}
    cluster = service["spec"]["rayClusterConfig"]
    assert cluster["rayVersion"] == "2.50.1"  # ray-vllm's, whose LLM image is known to exist
    worker = cluster["workerGroupSpecs"][0]
    assert worker["replicas"] == 2
    assert worker["template"]["spec"]["containers"][0]["resources"]["limits"] == {"nvidia.com/gpu": "1"}
    # the chart's image runs its own Serve script; Ray's LLM image (of a version it is known for) replaces it
    # and what the chart ignores (numGpus: its script reads no NUM_GPUS) or adds (a Fluent Bit sidecar) is said
    assert {d.dotted_path for d in report} == {"inference.modelServer.image", "inference.rayOptions.rayVersion",
                                               "modelParameters.numGpus", "inference.framework"}
    assert "Fluent Bit sidecar" in next(d.message for d in report if d.dotted_path == "inference.framework")


def test_ai_on_eks_lws_vllm_is_a_leader_worker_group_per_replica():
    text, report = imported("ai-on-eks", "ai-on-eks-lws.yaml")
    assert report == []
    groups = [o for o in objects(compile_text(text).files) if o["kind"] == "LeaderWorkerSet"]
    assert len(groups) == 1
    group = groups[0]["spec"]
    assert group["replicas"] == 1 and group["leaderWorkerTemplate"]["size"] == 2
    assert groups[0]["metadata"]["annotations"]["leaderworkerset.sigs.k8s.io/exclusive-topology"] == \
        "topology.kubernetes.io/zone"
    leader = group["leaderWorkerTemplate"]["leaderTemplate"]["spec"]["containers"][0]
    assert leader["image"] == "vllm/vllm-openai:v0.10.0"
    assert leader["resources"]["limits"] == {"memory": "512Gi", "nvidia.com/gpu": "8"}
    args = leader["args"]
    assert args[args.index("--tensor-parallel-size") + 1] == "8"
    assert args[args.index("--pipeline-parallel-size") + 1] == "2"
    assert args[args.index("--max-model-len") + 1] == "8192"


def test_kserve_services_and_runtimes():
    text, report = imported("kserve", "kserve.yaml")
    assert report == []
    services = {obj["metadata"]["name"]: obj for obj in objects(compile_text(text).files)
                if obj["kind"] == "InferenceService"}
    assert {s["metadata"]["namespace"] for s in services.values()} == {"llm"}
    qwen = services["kserve-qwen"]["spec"]["predictor"]
    assert qwen["minReplicas"] == 1 and qwen["maxReplicas"] == 3 and qwen["scaleMetric"] == "cpu"
    assert qwen["model"]["storageUri"] == "hf://Qwen/Qwen2.5-0.5B-Instruct"
    args = qwen["model"]["args"]
    assert qwen["model"]["command"] == ["vllm", "serve"] and qwen["model"]["image"].startswith("vllm/vllm-openai:")
    for flag, value in (("--served-model-name", "qwen"), ("--max-model-len", "4096"),
                        ("--gpu-memory-utilization", "0.9")):
        assert args[args.index(flag) + 1] == value
    assert qwen["model"]["resources"]["limits"] == {"cpu": "4", "memory": "16Gi", "nvidia.com/gpu": "1"}
    llama = services["kserve-llama"]["spec"]["predictor"]["model"]
    assert llama["image"] == "lmsysorg/sglang:v0.5.2" and llama["command"] == ["python3", "-m", "sglang.launch_server"]
    assert llama["args"][llama["args"].index("--tp-size") + 1] == "2"
    assert llama["args"][llama["args"].index("--served-model-name") + 1] == "llama"
    assert llama["resources"]["limits"] == {"memory": "48Gi", "nvidia.com/gpu": "2"}
    assert services["kserve-llama"]["spec"]["predictor"]["minReplicas"] == 1


def test_cli_exit_codes_stdout_and_report(tmp_path, capsys):
    assert main(["import", "--from", "ai-on-eks", str(DATA / "ai-on-eks-neuron.yaml")]) == 0
    out, err = capsys.readouterr()
    assert tomllib.loads(out)["models"] and "0 values not imported" in err
    target = tmp_path / "spec.toml"
    assert main(["import", "--from", "doubleword", str(DATA / "doubleword.yaml"), "-o", str(target)]) == 1
    out, err = capsys.readouterr()
    assert out == "" and tomllib.loads(target.read_text())["models"]
    line = (DATA / "doubleword.yaml").read_text().splitlines().index("    apiKey: sk-group-key") + 1
    assert f"{DATA / 'doubleword.yaml'}:{line}:5: warning[W090] modelGroups.tensorrt-codegen.apiKey: not imported" in err
    assert main(["check", str(target)]) == 0


@pytest.mark.parametrize(("text", "expected"), [
    ("servingEngineSpec:\n  modelSpec: [\n", "values.yaml:3:1: error[E090]"),
    ("servingEngineSpec:\n  modelSpec:\n  - name: a\n    repository: r\n    tag: t\n    modelURL: m\n"
     "    replicaCount: two\n", "values.yaml:7:5: error[E091] servingEngineSpec.modelSpec[0].replicaCount"),
    ("servingEngineSpec:\n  modelSpec:\n  - name: a\n    tag: t\n    modelURL: m\n",
     "values.yaml:3:5: error[E091] servingEngineSpec.modelSpec[0].repository: missing"),
    ("- just\n- a list\n", "values.yaml:1:1: error[E090]"),
    ("servingEngineSpec:\n  modelSpec:\n  - {name: a, repository: r, tag: t, modelURL: org/a, requestMemory: 16GB}\n",
     "values.yaml:3:5: error[E092] models.a.resources.requests.memory: the imported spec is invalid"),
])
def test_bad_values_are_located(tmp_path, monkeypatch, capsys, text, expected):
    monkeypatch.chdir(tmp_path)
    Path("values.yaml").write_text(text)
    assert main(["import", "--from", "production-stack", "values.yaml"]) == 2
    assert expected in capsys.readouterr().err


def test_later_values_files_override_earlier_ones(tmp_path):
    (tmp_path / "override.yaml").write_text("servingEngineSpec:\n  modelSpec:\n  - name: small\n    repository: r\n"
                                            "    tag: t\n    modelURL: org/small\n    replicaCount: 3\n")
    result = import_values("production-stack", [str(DATA / "production-stack.yaml"), str(tmp_path / "override.yaml")])
    models = tomllib.loads(result.text)["models"]
    assert list(models) == ["small"] and models["small"]["replicas"] == 3  # lists are replaced, as in Helm


def imports_or_locates(chart: str, path: Path) -> None:
    """Either a spec that parses, or diagnostics that each carry a location: never an exception."""
    try:
        result = import_values(chart, [str(path)])
    except ValuesError as error:
        assert error.diagnostics and all(d.location is not None for d in error.diagnostics)
    else:
        assert tomllib.loads(result.text)["version"] == 1


_scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 10**6), st.floats(allow_nan=False), st.text(max_size=8))
_keys = st.sampled_from(["servingEngineSpec", "modelSpec", "name", "repository", "tag", "modelURL", "vllmConfig",
                         "modelGroups", "g", "image", "command", "inference", "modelParameters", "model",
                         "resources", "requests", "enabled", "kind", "metadata", "spec", "predictor", "x"])
def _containers(children: st.SearchStrategy) -> st.SearchStrategy:
    return st.lists(children, max_size=3) | st.dictionaries(_keys, children, max_size=4)


_trees = st.recursive(_scalars, _containers, max_leaves=12)


def test_unreadable_files_are_located_errors(tmp_path, capsys):
    (tmp_path / "latin1.yaml").write_bytes(b"name: caf\xe9\n")
    for chart in ("production-stack", "kserve"):
        assert main(["import", "--from", chart, str(tmp_path / "latin1.yaml"), str(tmp_path / "absent.yaml")]) == 2
        err = capsys.readouterr().err
        assert f"{tmp_path / 'absent.yaml'}:1:1: error[E090]" in err and "error[E090]" in err.split("\n")[0]
    assert main(["import", "--from", "ai-on-eks", str(DATA / "ai-on-eks-neuron.yaml"),
                 "-o", str(tmp_path / "missing" / "spec.toml")]) == 2
    assert "cannot write" in capsys.readouterr().err


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(chart=st.sampled_from(["production-stack", "doubleword", "ai-on-eks", "kserve"]),
       tree=st.one_of(_trees, st.text(max_size=40).map(lambda t: {"raw": t})), raw=st.booleans())
def test_import_never_tracebacks(tmp_path, chart, tree, raw):
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(tree) if not raw else str(tree))
    imports_or_locates(chart, path)


def test_the_importers_stay_out_of_the_compilers_import_path():
    import subprocess
    import sys

    code = ("import sys, stackc, stackc.cli; "
            "print(sorted(m for m in sys.modules if m.startswith('stackc.importers.')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("chart", ["production-stack", "doubleword", "ai-on-eks", "kserve"])
def test_the_migration_guide_shows_what_import_prints(chart, tmp_path, monkeypatch):
    """docs/migrating.md's before/after pairs are real: import each 'before' and find its 'after'."""
    import re

    guide = (Path(__file__).parents[3] / "docs" / "migrating.md").read_text()
    heading = {"production-stack": "## production-stack", "doubleword": "## Doubleword", "ai-on-eks": "## ai-on-eks",
               "kserve": "## KServe"}[chart]
    section = guide[guide.index(heading):]
    section = section[:section.index("\n## ", 3)]
    before = re.search(r"```yaml\n(.*?)```", section, re.S).group(1)
    after = re.search(r"```toml\n(.*?)```", section, re.S).group(1)
    file_name = re.search(r"\((\S+?):\d+:\d+\)", after).group(1)
    monkeypatch.chdir(tmp_path)
    Path(file_name).write_text(before)
    result = import_values(chart, [file_name], name="demo")
    assert after in result.text
    for line in re.findall(r"^\S+:\d+:\d+: warning\[W090\].*$", section, re.M):
        assert line in [d.render() for d in result.report]


def _paths(value, path=()):
    """Every path into a YAML tree, containers included."""
    children = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    return [path, *(found for key, item in children for found in _paths(item, (*path, key)))]


SAMPLES = [("production-stack", "production-stack.yaml"), ("doubleword", "doubleword.yaml"),
           ("ai-on-eks", "ai-on-eks-neuron.yaml"), ("ai-on-eks", "ai-on-eks-ray.yaml"),
           ("ai-on-eks", "ai-on-eks-lws.yaml"), ("kserve", "kserve.yaml")]


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sample=st.sampled_from(SAMPLES), data=st.data())
def test_import_never_tracebacks_on_a_damaged_real_values_file(tmp_path, sample, data):
    """One value of a working values file replaced by anything: a spec or located diagnostics, never a crash."""
    chart, name = sample
    values = list(yaml.safe_load_all((DATA / name).read_text()))  # KServe files hold several documents
    path = data.draw(st.sampled_from(sorted((p for p in _paths(values) if len(p) > 1), key=repr)))
    parent = values
    for part in path[:-1]:
        parent = parent[part]
    parent[path[-1]] = data.draw(_trees)
    target = tmp_path / "values.yaml"
    target.write_text(yaml.safe_dump_all(values))
    imports_or_locates(chart, target)


def test_a_derived_stack_name_fits_beside_the_model_keys_and_a_given_one_is_hinted(tmp_path, capsys):
    values = tmp_path / "values-15-a-minimal-pipeline-parallel-example-raycluster.yaml"
    values.write_text("servingEngineSpec:\n  runtimeClassName: ''\n  modelSpec:\n  - name: distilgpt2-raycluster\n"
                      "    repository: vllm/vllm-openai\n    tag: v0.10.1\n    modelURL: distilbert/distilgpt2\n")
    stack = tomllib.loads(import_values("production-stack", [str(values)]).text)["stack"]
    assert stack["name"] == "a-minimal-pipeline"  # cut at a word to fit KubeRay's 47 with the model key
    assert main(["import", "--from", "production-stack", str(values), "--name", "x" * 40]) == 2
    assert "pass a shorter stack name with --name" in capsys.readouterr().err


def test_a_ray_cluster_is_one_replica_over_the_head_and_worker_pods(tmp_path):
    values = tmp_path / "ray.yaml"
    values.write_text("servingEngineSpec:\n  runtimeClassName: ''\n  modelSpec:\n  - name: gpt\n"
                      "    repository: vllm/vllm-openai\n    tag: v0.10.1\n    modelURL: distilbert/distilgpt2\n"
                      "    replicaCount: 2\n    requestGPU: 1\n    vllmConfig: {pipelineParallelSize: 3}\n"
                      "    raySpec:\n      enabled: true\n      headNode: {requestGPU: 1, requestCPU: 4}\n")
    result = import_values("production-stack", [str(values)])
    model = tomllib.loads(result.text)["models"]["gpt"]
    assert (model["replicas"], model["serving"]["nodes"], model["accelerators"]["count"]) == (1, 3, 1)
    [head] = [d for d in result.report if d.dotted_path == "servingEngineSpec.modelSpec[0].raySpec.headNode"]
    assert "head pod" in head.message and head.location.line == 13  # its CPU differs from the workers'
    [group] = [o for o in objects(compile_text(result.text).files) if o["kind"] == "LeaderWorkerSet"]
    assert group["spec"]["replicas"] == 1 and group["spec"]["leaderWorkerTemplate"]["size"] == 3


PD_ENTRY = """  - name: llama-{role}
    repository: lmcache/vllm-openai
    tag: v0.3.5
    modelURL: meta-llama/Llama-3.1-8B-Instruct
    requestGPU: 1
    requestCPU: {cpu}
    lmcacheConfig: {{enabled: true, kvRole: {kv_role}, enableNixl: true, nixlRole: {nixl}, enablePD: true,
                    nixlPeerHost: {peer}, nixlPeerPort: "55555"}}
"""
PD_PAIR = ("servingEngineSpec:\n  runtimeClassName: ''\n  modelSpec:\n"
           + PD_ENTRY.format(role="prefill", cpu=12, kv_role="kv_producer", nixl="sender",
                             peer="pd-llama-decode-engine-service")
           + PD_ENTRY.format(role="decode", cpu=8, kv_role="kv_consumer", nixl="receiver", peer="0.0.0.0")
           + "routerSpec:\n  routingLogic: disaggregated_prefill\n  enablePD: true\n"
           "  extraArgs: [--prefill-model-labels, llama-prefill, --decode-model-labels, llama-decode]\n")


def test_a_prefill_and_decode_pair_is_one_disaggregated_model(tmp_path):
    result = import_text(tmp_path, "production-stack", PD_PAIR, name="pd")
    assert not result.report
    [(key, model)] = tomllib.loads(result.text)["models"].items()
    assert key == "llama" and model["disaggregation"]["connector"] == "lmcache"
    roles = model["disaggregation"]
    assert roles["prefill"]["resources"]["requests"]["cpu"] == "12"
    assert roles["decode"]["resources"]["requests"]["cpu"] == "8"
    deployments = {o["metadata"]["name"]: o for o in objects(compile_text(result.text).files) if o["kind"] == "Deployment"}
    assert {"pd-llama-prefill", "pd-llama-decode"} <= set(deployments)
    # as the chart runs enablePD pods: the node's IPC and process namespaces shared, UCX over CUDA IPC
    assert (model["host_ipc"], model["host_pid"], model["security"]["pod_security"]) == (True, True, "privileged")
    for role in ("prefill", "decode"):
        pod = deployments[f"pd-llama-{role}"]["spec"]["template"]["spec"]
        assert pod["hostIPC"] is True and pod["hostPID"] is True
        [engine] = [c for c in pod["containers"] if c["name"] == "engine"]
        assert {"name": "UCX_TLS", "value": "cuda_ipc,cuda_copy,tcp"} in engine["env"]


KEDA = """servingEngineSpec:
  runtimeClassName: ""
  modelSpec:
  - name: llama
    repository: vllm/vllm-openai
    tag: v0.10.1
    modelURL: meta-llama/Llama-3.1-8B-Instruct
    requestGPU: 1
    keda:
      enabled: true
      minReplicaCount: {low}
      maxReplicaCount: 4
      cooldownPeriod: 600
      triggers:
      - type: prometheus
        metadata:
          serverAddress: http://prometheus-operated.monitoring.svc:9090
          metricName: vllm:num_requests_running
          query: vllm:num_requests_running{{model="llama"}}
          threshold: "8"
"""


def test_keda_is_the_models_autoscaling(tmp_path):
    result = import_text(tmp_path, "production-stack", KEDA.format(low=1))
    assert not result.report
    assert tomllib.loads(result.text)["models"]["llama"]["autoscaling"] == {
        "min_replicas": 1, "max_replicas": 4, "scale_down_seconds": 600, "signal": "running", "target": 8}
    [scaled] = [o for o in objects(compile_text(result.text).files) if o["kind"] == "ScaledObject"]
    assert (scaled["spec"]["minReplicaCount"], scaled["spec"]["maxReplicaCount"]) == (1, 4)


def test_keda_to_zero_wakes_on_the_requests_the_router_holds(tmp_path):
    result = import_text(tmp_path, "production-stack", KEDA.format(low=0))
    scaling = tomllib.loads(result.text)["models"]["llama"]["autoscaling"]
    assert (scaling["min_replicas"], scaling["signal"]) == (0, "router_pending")
    [changed] = result.report
    assert changed.dotted_path == "servingEngineSpec.modelSpec[0].keda.minReplicaCount" and changed.location.line == 11
    compile_text(result.text)


def test_a_key_written_into_the_values_is_a_secret_the_router_and_engines_require(tmp_path):
    result = import_text(
        tmp_path, "production-stack",
        "servingEngineSpec:\n  runtimeClassName: ''\n  vllmApiKey: abc123XYZ987\n  modelSpec:\n  - name: opt\n"
        "    repository: vllm/vllm-openai\n    tag: v0.10.1\n    modelURL: facebook/opt-125m\n    hf_token: hf_x\n",
        name="secure")
    assert "abc123XYZ987" not in result.text and "hf_x" not in result.text
    spec = tomllib.loads(result.text)
    key = {"name": "secure-secrets", "key": "vllmApiKey"}  # the chart's RELEASE-secrets layout
    assert spec["models"]["opt"]["security"] == {"api_key": key, "hf_token": {"name": "secure-secrets",
                                                                              "key": "hf_token_opt"}}
    assert spec["targets"]["router"]["api_keys"] == key
    told = {d.dotted_path: d.message for d in result.report}
    assert "Secret secure-secrets (key vllmApiKey), which you create" in told["servingEngineSpec.vllmApiKey"]
    assert "key hf_token_opt" in told["servingEngineSpec.modelSpec[0].hf_token"]
    found = objects(compile_text(result.text).files)
    router = next(o for o in found if o["kind"] == "Deployment" and o["metadata"]["name"] == "secure-router")
    assert {"secretName": "secure-secrets"}.items() <= next(
        v["secret"] for v in router["spec"]["template"]["spec"]["volumes"] if v["name"] == "api-keys").items()


def test_one_feature_spread_over_many_keys_is_one_report(tmp_path):
    result = import_text(
        tmp_path, "production-stack",
        "servingEngineSpec:\n  runtimeClassName: ''\n  modelSpec:\n  - name: opt\n    repository: vllm/vllm-openai\n"
        "    tag: v0.10.1\n    modelURL: facebook/opt-125m\n    lmcacheConfig:\n      enabled: true\n"
        "      cpuOffloadingBufferSize: '4'\n      enableController: true\n      controllerPort: '9000'\n"
        "      p2pHost: localhost\nrouterSpec:\n  routingLogic: kvaware\n  lmcacheControllerPort: 9000\n")
    [report] = result.report
    assert (report.dotted_path, report.location.line) == ("routerSpec.routingLogic", 15)
    assert "also routerSpec.lmcacheControllerPort, servingEngineSpec.modelSpec[0].lmcacheConfig.enableController" \
        in report.message
    assert tomllib.loads(result.text)["models"]["opt"]["routing"] == {"strategy": "prefix"}


def test_doubleword_readme_image_form_and_disabled_incomplete_groups(tmp_path):
    result = import_text(
        tmp_path, "doubleword",
        "modelGroups:\n  vllm-llama:\n    enabled: true\n    image: vllm/vllm-openai\n    tag: v0.10.1\n"
        "    modelAlias: [llama]\n    command: [vllm, serve, --model, meta-llama/Llama-3.1-8B-Instruct]\n"
        "    resources: {limits: {nvidia.com/gpu: 1}}\n"
        "  draft:\n    enabled: false\n    modelAlias: [draft]\n")
    models = tomllib.loads(result.text)["models"]
    assert list(models) == ["vllm-llama"] and models["vllm-llama"]["image"] == "vllm/vllm-openai:v0.10.1"
    [skipped] = result.report
    assert (skipped.dotted_path, skipped.location.line) == ("modelGroups.draft", 9)
    compile_text(result.text)


def test_doubleword_init_container_mount_of_an_undeclared_volume_is_reported(tmp_path):
    result = import_text(
        tmp_path, "doubleword",
        "modelGroups:\n  g:\n    enabled: true\n    image: {repository: vllm/vllm-openai, tag: v0.10.1}\n"
        "    command: [vllm, serve, --model, org/m]\n    initContainers:\n    - name: fetch\n      image: busybox\n"
        "      volumeMounts:\n      - {name: model-data, mountPath: /models}\n")
    [mount] = result.report
    assert mount.dotted_path == "modelGroups.g.initContainers[0].volumeMounts[0]" and mount.location.line == 10
    compile_text(result.text)


def test_ai_on_eks_aibrix_is_the_vllm_deployment_labelled_and_named_for_aibrix(tmp_path):
    result = import_text(tmp_path, "ai-on-eks", "model: NousResearch/Llama-3.2-1B\ninference:\n"
                         "  serviceName: llama-aibrix\n  framework: aibrix\n")
    model = tomllib.loads(result.text)["models"]["llama-aibrix"]
    assert model["labels"] == {"model.aibrix.ai/name": "llama-aibrix"} and model["served_name"] == "llama-aibrix"
    [deployment] = [o for o in objects(compile_text(result.text).files) if o["kind"] == "Deployment"]
    assert deployment["spec"]["template"]["metadata"]["labels"]["model.aibrix.ai/name"] == "llama-aibrix"


def test_ai_on_eks_neuron_values_that_set_only_memory_keep_the_charts_device(tmp_path):
    result = import_text(tmp_path, "ai-on-eks", "model: meta-llama/Llama-3.1-8B-Instruct\nmodelParameters:\n"
                         "  gpuMemoryUtilization: 0.8\ninference:\n  accelerator: neuron\n  framework: vllm\n"
                         "  modelServer:\n    deployment:\n      resources:\n        neuron:\n"
                         "          requests: {memory: 50Gi}\n")
    model = tomllib.loads(result.text)["models"]["inference"]
    assert model["accelerators"] == {"count": 1, "resource": "aws.amazon.com/neuron"}  # Helm merges the default
    assert model["engine_args"][-2:] == ["--gpu-memory-utilization", "0.8"]  # vLLM-Neuron's flag, as the chart
    compile_text(result.text)


def test_ai_on_eks_nim_runs_the_nim_image_with_the_charts_nim_defaults(tmp_path):
    result = import_text(tmp_path, "ai-on-eks", "model: meta/llama3-8b-instruct\ninference:\n  serviceName: nim-llama\n"
                         "  framework: nim-container\n  modelServer:\n    image: {repository: nvcr.io/nim/meta/llama3-8b-instruct,"
                         " tag: '1.0'}\n    deployment:\n      nim:\n        env: {NIM_MAX_MODEL_LEN: '4096'}\n"
                         "imagePullSecrets: [{name: ngc-secret}]\n")
    assert not result.report
    [deployment] = [o for o in objects(compile_text(result.text).files) if o["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    env = {e["name"]: e.get("value") or e["valueFrom"]["secretKeyRef"] for e in container["env"]}
    assert env["NIM_MAX_MODEL_LEN"] == "4096" and env["NIM_CACHE_PATH"] == "/opt/nim/.cache"
    assert env["NGC_API_KEY"] == {"name": "ngc-api", "key": "NGC_API_KEY"}
    assert container["readinessProbe"]["httpGet"]["path"] == "/v1/health/ready"
    assert container["livenessProbe"]["initialDelaySeconds"] == 900
    assert pod["imagePullSecrets"] == [{"name": "ngc-secret"}] and pod["securityContext"]["runAsUser"] == 1000


def test_ai_on_eks_triton_runs_tritonserver_over_the_charts_model_repository(tmp_path):
    result = import_text(tmp_path, "ai-on-eks", "model: Qwen/Qwen3-1.7B\nmodelParameters:\n  maxModelLen: 8192\n"
                         "inference:\n  serviceName: qwen-triton\n  framework: triton-vllm\n  modelServer:\n"
                         "    image: {repository: nvcr.io/nvidia/tritonserver, tag: 25.06-vllm-python-py3}\n")
    [protocol] = result.report
    assert protocol.dotted_path == "inference.framework" and "KServe v2 protocol" in protocol.message
    found = objects(compile_text(result.text).files)
    [repository] = [o for o in found if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "triton-model-repository"]
    assert json.loads(repository["data"]["model.json"]) == {"max_model_len": 8192, "model": "Qwen/Qwen3-1.7B"}
    [deployment] = [o for o in found if o["kind"] == "Deployment"]
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["tritonserver"] and "--model-repository=/models" in container["args"]
    assert {"name": "model-repository", "mountPath": "/models/vllm_model"}.items() <= next(
        m for m in container["volumeMounts"] if m["name"] == "model-repository").items()


def test_shared_pvc_storage_is_the_stacks_shared_cache(tmp_path):
    model = "  - {{name: {name}, repository: vllm/vllm-openai, tag: v0.10.1, modelURL: org/{name}, requestGPU: 1{own}}}\n"
    result = import_text(
        tmp_path, "production-stack",
        "servingEngineSpec:\n  runtimeClassName: ''\n  modelSpec:\n" + model.format(name="a", own=", pvcStorage: 50Gi")
        + model.format(name="b", own="") + "sharedPvcStorage:\n  enabled: true\n  size: 200Gi\n"
        "  nfs: {server: 10.0.0.2, path: /exports/models}\n")
    spec = tomllib.loads(result.text)
    assert spec["stack"]["shared_cache"] == {"size": "200Gi", "nfs": {"server": "10.0.0.2", "path": "/exports/models"}}
    assert "cache" not in spec["models"]["a"]  # the chart keeps weights on the shared volume, not the own claim
    [own] = result.report
    assert own.dotted_path == "servingEngineSpec.modelSpec[0].pvcStorage" and own.location.line == 4
    kinds = [o["kind"] for o in objects(compile_text(result.text).files)]
    assert "PersistentVolume" in kinds


def test_the_routers_extra_ports_become_its_ports_on_the_service_and_container(tmp_path):
    result = import_text(tmp_path, "production-stack", """servingEngineSpec:
  modelSpec:
  - name: opt
    repository: vllm/vllm-openai
    tag: latest
    modelURL: facebook/opt-125m
    requestGPU: 1
routerSpec:
  extraPorts:
  - name: controller
    port: 9100
    targetPort: 9101
  - name: named
    port: 9200
    targetPort: some-name
""")
    assert tomllib.loads(result.text)["targets"]["router"]["ports"] == [
        {"name": "controller", "port": 9100, "target_port": 9101}, {"name": "named", "port": 9200}]
    [named] = [d for d in result.report if d.dotted_path == "routerSpec.extraPorts[1].targetPort"]
    assert "a target port by name" in named.message and named.location.line == 15
    found = objects(compile_text(result.text).files)
    [service] = [o for o in found if o["kind"] == "Service" and o["metadata"]["name"].endswith("-router")]
    assert {"name": "controller", "port": 9100, "targetPort": "controller", "protocol": "TCP"} in service["spec"]["ports"]
    [router] = [o for o in found if o["kind"] == "Deployment" and o["metadata"]["name"].endswith("-router")]
    assert {"name": "controller", "containerPort": 9101, "protocol": "TCP"} in \
        router["spec"]["template"]["spec"]["containers"][0]["ports"]


@pytest.mark.parametrize("chart, values", [
    ("production-stack", "production-stack/helm/values.yaml"),
    ("lmstack", "lmstack/helm/values.yaml"),
    ("doubleword", "doubleword-inference-stack/values.yaml"),
])
def test_each_charts_own_values_import_and_build(chart: str, values: str) -> None:
    """The file a new user tries first: the chart deploys it as it is, so it is never refused; what the chart
    never renders (a disabled example model, no model at all) is kept disabled and said."""
    root = charts_dir()
    if root is None:
        pytest.skip("the seed charts are not here: set STACKC_CHARTS_DIR or put shared/charts beside the checkout")
    result = import_values(chart, [str(root / values)])
    spec = tomllib.loads(result.text)
    assert all(d.severity.value == "warning" for d in result.report)
    compile_text(result.text)
    if chart != "doubleword":  # its values enable groups; the other two deploy no model as they are
        assert all(model.get("enabled") is False for model in spec["models"].values())
        assert any("disabled model" in d.message or "documented example" in d.message for d in result.report)


def test_a_disabled_model_keeps_what_stackc_can_take_and_reports_the_rest(tmp_path: Path) -> None:
    result = import_text(tmp_path, "production-stack", (
        "servingEngineSpec:\n  modelSpec:\n  - name: spare\n    enabled: false\n    repository: vllm/vllm-openai\n"
        "    tag: v0.11.0\n    modelURL: org/m\n    requestGPU: 1\n    pvcStorage: 10Gi\n    storageClass: \"\"\n    priorityClassName: \"\"\n"
        "    vllmConfig:\n      tensorParallelSize: 2\n"))
    model = tomllib.loads(result.text)["models"]["spare"]
    assert model["enabled"] is False and model["cache"]["storage_class"] == ""  # the chart's "": no class
    assert "priority_class" not in model.get("scheduling", {})  # the chart sets it only when not empty
    assert "tensor_parallel" not in model.get("serving", {})
    [left] = [d for d in result.report if "disabled model" in d.message]
    assert left.code == "W090" and "tensor_parallel × pipeline_parallel = 2 needs 2 accelerators" in left.message


def test_a_line_break_in_a_comment_is_written_as_its_escape() -> None:
    """A table's comment names where the model came from (a KServe object's name, say) and the header the
    files read: a line break or another control character in them (which TOML comments can't hold) is
    written as its escape."""
    from stackc.diagnostics import Location
    from stackc.importers.draft import Draft, render

    draft = Draft("s")
    draft.add_model("m", {"engine": "vllm", "model": "org/m"}, "metadata.name: llama\r\nx\x1f", Location("v.yaml", 1, 1))
    text = render(draft, ["Imported from a\nfile"])
    assert "llama\\x0d\\x0ax\\x1f" in text and "a\\x0afile" in text
    assert tomllib.loads(text)["models"]["m"]["model"] == "org/m"
