"""Lowering: one merged pod per model, and the weights decided before the engine builds its command."""

from __future__ import annotations

from pathlib import Path

import attrs
import pytest

from stackc import pipeline
from stackc.plan.engine import Mount
from stackc.plugins import load_registry
from stackc.lowering.lower import weights
from stackc.spec import sources
from stackc.testing import compile_text, objects, pod_templates

SPEC = ('version = 1\n[stack]\nname = "s"\n[models.m]\nengine = "vllm"\nmodel = "org/m"\naccelerators = { count = 2 }\n'
        'serving = { tensor_parallel = 2 }\nenv = { HF_HOME = "/data/hf", EXTRA = "1" }\n')


def test_spec_env_wins_over_the_engines_and_every_name_appears_once() -> None:
    deployment = next(o for o in objects(compile_text(SPEC).files) if o["kind"] == "Deployment")
    env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    names = [e["name"] for e in env]
    assert len(names) == len(set(names))
    assert {"name": "HF_HOME", "value": "/data/hf"} in env and {"name": "EXTRA", "value": "1"} in env


def test_the_merged_pod_is_in_the_plan() -> None:
    component = compile_text(SPEC).plan.components[0]
    serving = component.pod.containers[0]
    assert Mount("dshm", "/dev/shm") in serving.mounts  # parallel engines get shared memory
    assert serving.resources["limits"]["nvidia.com/gpu"] == "2"
    assert serving.security_context["allowPrivilegeEscalation"] is False
    assert component.endpoint.served_names == ("org/m",) and component.endpoint.service == "s-m"


@pytest.mark.parametrize(("model", "platform", "location", "mounted", "uri"), [
    ("org/m", None, "org/m", False, None),
    ("org/m", "/mnt/models", "/mnt/models", False, "hf://org/m"),
    ("org/repo/file.gguf", "/mnt/models", "org/repo/file.gguf", False, None),  # not the whole repository
    ("s3://b/m", "/mnt/models", "/mnt/models", False, "s3://b/m"),
    ("pvc://claim/dir/m", None, "/models/dir/m", True, None),
    ("pvc://claim/dir/m", "/mnt/models", "/mnt/models", False, "pvc://claim/dir/m"),
    ("oci://example.com/m:1", None, "/models", True, None),
    ("/opt/m", "/mnt/models", "/opt/m", False, None),
])
def test_who_fetches_the_weights(model: str, platform: str | None, location: str, mounted: bool, uri: str | None) -> None:
    decided = weights(sources.parse(model), platform)
    assert (decided.location, decided.mount is not None, decided.platform_uri) == (location, mounted, uri)


def test_a_revision_goes_to_whoever_fetches() -> None:
    source = sources.parse("org/m")
    assert weights(source, None, "v2").revision == "v2"
    platform = weights(source, "/mnt/models", "v2")
    assert (platform.revision, platform.platform_uri) == (None, "hf://org/m:v2")


def test_quantities_may_be_numbers_as_in_kubernetes() -> None:
    spec = SPEC.replace("env = ", 'resources = { requests = { cpu = 10, memory = "16Gi" }, limits = { cpu = 12.5 } }\nenv = ')
    serving = compile_text(spec).plan.components[0].pod.containers[0]
    assert serving.resources["requests"]["cpu"] == "10" and serving.resources["limits"]["cpu"] == "12.5"


LORA = """version = 1
[stack]
name = "s"
targets = ["router"]
[models.m]
engine = "vllm"
model = "org/m"
accelerators = { count = 1 }
security.hf_token = { name = "hf", key = "token" }
[models.m.serving]
lora_adapters = [
  { name = "hub", source = "hf://org/hub-lora" },
  { name = "pinned", source = "org/pinned-lora", revision = "v3" },
  { name = "bucket", source = "s3://bucket/lora" },
  { name = "disk-a", source = "pvc://adapters/a" },
  { name = "disk-b", source = "pvc://adapters/b/" },
  { name = "local", source = "/opt/lora", load = "runtime" },
]
"""


def test_where_each_adapter_comes_from_is_decided_like_the_models_weights() -> None:
    component = compile_text(LORA).plan.components[0]
    where = {a.name: a.location for a in component.endpoint.adapters}
    assert where["hub"] == "org/hub-lora" and where["local"] == "/opt/lora"  # the engine fetches, or it is there
    assert where["disk-a"] == "/adapters/claims/adapters/a" and where["disk-b"] == "/adapters/claims/adapters/b"
    assert where["pinned"].startswith("/adapters/fetched/") and where["bucket"].startswith("/adapters/fetched/")
    downloads = {c.args[0]: c for c in component.pod.init_containers if c.name.startswith("lora-download-")}
    assert set(downloads) == {"hf://org/pinned-lora:v3", "s3://bucket/lora"}  # the revision is pinned
    assert downloads["hf://org/pinned-lora:v3"].args[1] == where["pinned"]
    assert [e.name for e in downloads["s3://bucket/lora"].env] == ["HF_TOKEN"]
    claims = [v for v in component.pod.volumes if v.claim == "adapters"]
    assert len(claims) == 1  # one volume per claim, mounted read-only
    serving = component.pod.containers[0]
    assert Mount(claims[0].name, "/adapters/claims/adapters", read_only=True) in serving.mounts
    assert [a.name for a in component.endpoint.adapters if a.runtime] == ["local"]
    assert component.endpoint.adapter_load_path == "/v1/load_lora_adapter"
    assert "local=/opt/lora" not in serving.args and "hub=org/hub-lora" in serving.args


def test_no_load_path_without_run_time_adapters() -> None:
    spec = LORA.split("lora_adapters", 1)[0] + 'lora_adapters = [{ name = "a", source = "org/a" }]\n'
    endpoint = compile_text(spec).plan.components[0].endpoint
    assert endpoint.adapter_load_path is None and [a.name for a in endpoint.adapters] == ["a"]


OBJECT_STORE = """
version = 1
[stack]
name = "o"
[models.m]
engine = "{engine}"
model = "{model}"
accelerators = {{ count = {count} }}
secret_env = {{ AWS_ACCESS_KEY_ID = {{ name = "aws", key = "id" }}, AWS_SECRET_ACCESS_KEY = {{ name = "aws", key = "key" }} }}
"""


def object_store_pod(engine: str, model: str, count: int = 1) -> dict:
    from stackc.testing import pod_security_problems, validate_kubernetes

    found = objects(compile_text(OBJECT_STORE.format(engine=engine, model=model, count=count)).files)
    deployment = next(o for o in found if o["kind"] == "Deployment")
    assert validate_kubernetes(deployment) == []
    template = deployment["spec"]["template"]
    assert pod_security_problems(template["metadata"], template["spec"]) == []
    return template["spec"]


def test_object_storage_is_downloaded_once_for_engines_that_cannot_read_it() -> None:
    pod = object_store_pod("llamacpp", "s3://bucket/models/q4.gguf", count=0)
    (download,) = pod["initContainers"]
    assert download["name"] == "weights-download" and download["args"] == ["s3://bucket/models/q4.gguf", "/models"]
    assert download["command"][:2] == ["/bin/sh", "-c"] and ".stackc-complete" in download["command"][2]
    assert [e["name"] for e in download["env"]] == ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"]
    folder = download["volumeMounts"][0]
    assert folder["name"] == "model-cache" and folder["subPath"].startswith("weights/")
    engine = pod["containers"][0]
    assert engine["args"][:2] == ["-m", "/models/q4.gguf"]
    assert {**folder, "readOnly": True} in engine["volumeMounts"]
    folder_pod = object_store_pod("sglang", "gs://bucket/models/qwen")
    assert folder_pod["containers"][0]["args"][:2] == ["--model-path", "/models"]


@pytest.mark.parametrize("target", ["manifests", "kserve"])
def test_the_download_reaches_an_s3_store_of_its_own(target: str) -> None:
    """A store other than AWS's needs the model's env (endpoint, region, HTTPS) in stackc's downloader too:
    under KServe it is not KServe's storage initializer, so KServe's webhook injects nothing into it."""
    text = OBJECT_STORE.format(engine="sglang", model="s3://bucket/models/qwen", count=1).replace(
        "[stack]", f'[stack]\ntargets = ["{target}"]') + 'env = { S3_ENDPOINT = "minio.store:9000", S3_USE_HTTPS = "0" }\n'
    found = objects(compile_text(text).files)
    (pod,) = [spec for obj in found for _, spec in pod_templates(obj)]
    (download,) = pod["initContainers"]
    assert [e["name"] for e in download["env"]] == ["S3_ENDPOINT", "S3_USE_HTTPS", "AWS_ACCESS_KEY_ID",
                                                     "AWS_SECRET_ACCESS_KEY"]
    assert download["env"][0]["value"] == "minio.store:9000"


def test_vllm_streams_object_storage_itself() -> None:
    pod = object_store_pod("vllm", "s3://bucket/models/llama")
    assert "initContainers" not in pod
    args = pod["containers"][0]["args"]
    assert args[0] == "s3://bucket/models/llama" and "runai_streamer" in args


def test_llamacpp_needs_the_gguf_object() -> None:
    from stackc.diagnostics import DiagnosticsError

    with pytest.raises(DiagnosticsError) as error:
        compile_text(OBJECT_STORE.format(engine="llamacpp", model="s3://bucket/models/", count=0))
    (problem,) = error.value.diagnostics
    assert problem.code == "E032" and "name the .gguf object" in problem.message


REPO = Path(__file__).resolve().parents[2]
SPECS = sorted(p for p in (REPO / "specs").rglob("*.toml") if "invalid" not in p.parts)


@pytest.mark.parametrize("path", SPECS, ids=lambda p: str(p.relative_to(REPO)))
def test_a_platform_that_picks_the_namespace_gets_the_plan_of_a_spec_written_in_it(path: Path) -> None:
    """Components never name the namespace: a chart's plan lowers only its stack again, and that equals
    lowering the whole spec in the placeholder namespace."""
    registry = load_registry()
    spec = pipeline.check([path], registry).spec
    where = (None, None, "placeholder-namespace")
    shared = pipeline.lower_platforms(spec, registry, [where, pipeline.NO_PLATFORM])
    in_release = attrs.evolve(spec, stack=attrs.evolve(spec.stack, namespace="placeholder-namespace"))
    assert shared[where] == pipeline.lower(in_release, registry)
    assert shared[where].components is shared[pipeline.NO_PLATFORM].components
