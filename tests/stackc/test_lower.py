"""Lowering: one merged pod per model, and the weights decided before the engine builds its command."""

from __future__ import annotations

import pytest

from stackc.plan.engine import Mount
from stackc.plan.lower import weights
from stackc.spec import sources
from stackc.testing import compile_text, objects

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
