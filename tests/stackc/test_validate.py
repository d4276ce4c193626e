"""Mistakes the fuzzer found and the API server would reject: located errors, never a crash."""

from __future__ import annotations

import pytest

from stackc.diagnostics import DiagnosticsError
from stackc.testing import compile_text

BASE = """\
version = 1
[stack]
name = "s"
targets = ["manifests", "kserve", "helm", "gateway", "router", "monitoring"]
[models.m]
engine = "vllm"
model = "org/m"
"""


def errors(text: str) -> list[str]:
    with pytest.raises(DiagnosticsError) as caught:
        compile_text(text)
    return [d.render() for d in caught.value.diagnostics]


@pytest.mark.parametrize("arg", ["{model.x}", "{model.upper}", "{port!r}", "{0}", "{"])
def test_command_arguments_take_bare_placeholders_only(arg: str) -> None:
    text = BASE.replace('engine = "vllm"', 'engine = "command"\nimage = "srv:1"') + \
        f"engine_options = {{ port = 8000, args = ['{arg}'] }}\n"
    (error,) = errors(text)
    assert error.startswith("spec.toml:9:") and "E037] models.m.engine_options.args[0]" in error


def test_a_toml_time_in_a_raw_kubernetes_table_is_located() -> None:
    (error,) = errors(BASE + "scheduling.affinity = { x = [1, { at = 12:30:00 }] }\n")
    assert 'spec.toml:8:' in error and "models.m.scheduling.affinity.x[1].at" in error and '"12:30:00"' in error


def test_extra_volumes_and_mounts_need_names_and_declared_volumes() -> None:
    found = errors(BASE + 'extra_volumes = [{ emptyDir = {} }, { name = "model-cache", emptyDir = {} }]\n'
                          'extra_volume_mounts = [{ name = "nope", mountPath = "/x" }, { mountPath = "/y" }]\n')
    assert any("extra_volumes[0]: needs 'name'" in e for e in found)
    assert any("extra_volume_mounts[1]: needs 'name'" in e for e in found)
    found = errors(BASE + 'extra_volumes = [{ name = "model-cache", emptyDir = {} }]\n'
                          'extra_volume_mounts = [{ name = "nope", mountPath = "/x" }]\n')
    assert any("extra_volumes[0].name: a volume named 'model-cache' is already in the pod" in e for e in found)
    assert any("mounts the volume 'nope', which the pod does not have" in e for e in found)
