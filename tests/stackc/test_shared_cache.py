"""A cache the models share: created (a class, or a labelled volume), existing, or an NFS export."""

from __future__ import annotations

import pytest

from stackc.diagnostics import DiagnosticsError
from stackc.testing import compile_text, objects, validate_kubernetes

SPEC = """
version = 1
[stack]
name = "s"
namespace = "ns"
[stack.shared_cache]
{shared}
[models.a]
engine = "vllm"
model = "org/a-70b"
accelerators = {{ count = 1 }}
[models.b]
engine = "vllm"
model = "org/b"
accelerators = {{ count = 1 }}
[models.own]
engine = "vllm"
model = "org/own"
accelerators = {{ count = 1 }}
cache = {{ size = "100Gi" }}
"""


def built(shared: str) -> tuple[dict[tuple[str, str], dict], list]:
    compilation = compile_text(SPEC.format(shared=shared))
    found = objects(compilation.files)
    assert [problem for obj in found for problem in validate_kubernetes(obj)] == []
    manifests = objects({k: v for k, v in compilation.files.items() if k.startswith("manifests/")})
    return {(o["kind"], o["metadata"]["name"]): o for o in manifests}, list(compilation.warnings)


def cache_volume(found: dict, model: str) -> dict:
    pod = found[("Deployment", f"s-{model}")]["spec"]["template"]["spec"]
    return next(v for v in pod["volumes"] if v["name"] == "model-cache")


def test_an_nfs_export_becomes_a_volume_and_a_claim_bound_to_it() -> None:
    found, _ = built('nfs = { server = "10.0.0.5", path = "/exports/models" }\nsize = "1Ti"')
    volume = found[("PersistentVolume", "ns-s-shared-cache")]
    assert "namespace" not in volume["metadata"]
    assert volume["spec"]["nfs"] == {"server": "10.0.0.5", "path": "/exports/models"}
    assert volume["spec"]["persistentVolumeReclaimPolicy"] == "Retain"
    claim = found[("PersistentVolumeClaim", "s-shared-cache")]
    assert claim["spec"]["volumeName"] == "ns-s-shared-cache" and claim["spec"]["storageClassName"] == ""
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    # every model without its own cache mounts the shared claim; the pods stay Pod Security restricted
    assert cache_volume(found, "a") == cache_volume(found, "b") == {
        "name": "model-cache", "persistentVolumeClaim": {"claimName": "s-shared-cache"}}
    assert cache_volume(found, "own") == {"name": "model-cache", "persistentVolumeClaim": {"claimName": "s-own-cache"}}


def test_a_created_claim_binds_a_labelled_volume_or_uses_a_class() -> None:
    found, _ = built('size = "2Ti"\nselector = { pool = "models" }')
    claim = found[("PersistentVolumeClaim", "s-shared-cache")]["spec"]
    assert claim["selector"] == {"matchLabels": {"pool": "models"}} and claim["storageClassName"] == ""
    found, _ = built('size = "2Ti"\nstorage_class = "efs-sc"')
    assert found[("PersistentVolumeClaim", "s-shared-cache")]["spec"]["storageClassName"] == "efs-sc"
    # "" is Kubernetes' own: no class, a volume made without one (production-stack's storageClass: "")
    found, _ = built('size = "2Ti"\nstorage_class = ""')
    assert found[("PersistentVolumeClaim", "s-shared-cache")]["spec"]["storageClassName"] == ""


def test_an_existing_claim_is_mounted_and_not_created() -> None:
    found, _ = built('existing_claim = "team-models"')
    assert not [key for key in found if key[0] in ("PersistentVolume", "PersistentVolumeClaim") and "shared" in key[1]]
    assert cache_volume(found, "a")["persistentVolumeClaim"] == {"claimName": "team-models"}


def test_a_shared_cache_answers_the_large_emptydir_warning() -> None:
    _, warnings = built('existing_claim = "team-models"')
    assert "W026" not in {w.code for w in warnings}


@pytest.mark.parametrize(("shared", "path"), [
    ('existing_claim = "x"\nsize = "1Ti"', "stack.shared_cache.size"),
    ('nfs = { server = "n", path = "/m" }', "stack.shared_cache"),
    ('nfs = { server = "n", path = "/m" }\nsize = "1Ti"\nstorage_class = "c"', "stack.shared_cache.storage_class"),
    ('storage_class = "c"', "stack.shared_cache"),
    ('existing_claim = "x"\nstorage_class = ""', "stack.shared_cache.storage_class"),
])
def test_contradictions_are_located(shared: str, path: str) -> None:
    with pytest.raises(DiagnosticsError) as error:
        compile_text(SPEC.format(shared=shared))
    assert [(d.code, d.dotted_path) for d in error.value.diagnostics] == [("E017", path)]
