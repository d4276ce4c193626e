"""Every target folder but the Helm chart is `kubectl apply -k`-able: its kustomization lists exactly its files."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from stackc.testing import compile_text

OUT = Path(__file__).parents[3] / "out"
FOLDERS = sorted(p for p in OUT.glob("*/*") if p.is_dir() and p.name != "helm")

SPEC = """
version = 1
[stack]
name = "all"
targets = ["manifests", "router", "monitoring", "gateway"]
[models.chat]
engine = "vllm"
model = "org/chat"
accelerators = { count = 1 }
[models.tiny]
engine = "llamacpp"
model = "hf://org/repo/tiny.gguf"
"""


def listed(kustomization: bytes) -> list[str]:
    return yaml.safe_load(kustomization)["resources"]


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_committed_target_folders_list_exactly_their_files(folder):
    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.yaml") if p.name != "kustomization.yaml")
    assert listed((folder / "kustomization.yaml").read_bytes()) == files


@pytest.mark.parametrize("targets", [["manifests", "router", "monitoring", "gateway"], ["kserve", "router"]])
def test_each_target_emits_a_kustomization_of_its_own_files(targets):
    files = compile_text(SPEC, targets=targets).files
    for target in targets:
        own = sorted(name.removeprefix(f"{target}/") for name in files
                     if name.startswith(f"{target}/") and name.endswith(".yaml")  # not a dashboard's JSON
                     and name != f"{target}/kustomization.yaml")
        assert listed(files[f"{target}/kustomization.yaml"]) == own


@pytest.mark.parametrize("targets", [["manifests", "gateway"], ["kserve"], ["llmisvc"]])
def test_each_models_objects_are_one_file(targets):
    files = compile_text(SPEC.replace('model = "hf://org/repo/tiny.gguf"', 'model = "org/tiny"')
                         .replace('engine = "llamacpp"', 'engine = "vllm"'), targets=targets).files
    for target in targets:
        assert {f"{target}/chat.yaml", f"{target}/tiny.yaml"} <= set(files)
        assert not any(name.startswith((f"{target}/chat/", f"{target}/tiny/")) for name in files)
        assert len(list(yaml.safe_load_all(files[f"{target}/chat.yaml"]))) > 1


@pytest.mark.parametrize("key, target, taken", [("kustomization", "manifests", "kustomization"),
                                                ("namespace", "manifests", "namespace"),
                                                ("gateway", "gateway", "gateway"), ("objects", "kserve", "objects"),
                                                ("objects", "helm", "objects")])
def test_a_model_named_like_a_targets_own_file_is_an_error(key, target, taken):
    from stackc.diagnostics import DiagnosticsError

    with pytest.raises(DiagnosticsError) as raised:
        compile_text(SPEC.replace("[models.chat]", f"[models.{key}]"), targets=[target])
    [clash] = [d for d in raised.value.diagnostics if d.code == "E240" and f"the {target} target" in d.message]
    assert clash.path == ("models", key) and f"{key}.yaml" in clash.message and taken in clash.hint
