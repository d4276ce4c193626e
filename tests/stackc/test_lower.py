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
