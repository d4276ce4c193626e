"""The fast YAML writer is PyYAML's output, byte for byte, or steps aside for PyYAML."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from stackc.output import render

_TEXT = st.one_of(
    st.sampled_from(["", "true", "no", "~", "null", "1e3", "0x1F", "1_000", "08", "--port", "- x", "a: b", "a:",
                     "#x", "x #y", "...", "---", "nvidia.com/gpu", "'q'", '"d"', "\t", "é", "a\nb", " lead",
                     "trail ", "{{ x }}", "*a", "&a", "!t", "%p", "@a", "`b", "|", ">", "?", ":"]),
    st.text(max_size=12),
    st.from_regex(r"[A-Za-z0-9_./-]{1,10}", fullmatch=True),
)
_SCALARS = st.one_of(_TEXT, st.integers(), st.booleans(), st.none())
_DATA = st.recursive(_SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(_TEXT, inner, max_size=4)), max_leaves=25)


@given(st.dictionaries(_TEXT, _DATA, min_size=1, max_size=5))
@settings(max_examples=400, deadline=None)
def test_fast_writer_equals_pyyaml(data) -> None:
    try:
        fast = render._block_yaml(data)
    except render._Unusual:
        return
    assert fast == render._pyyaml_text(data)


def test_kubernetes_shaped_objects_take_the_fast_path() -> None:
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "m", "labels": {"a/b": "c"}},
                  "spec": {"replicas": 2, "template": {"spec": {"containers": [
                      {"name": "engine", "args": ["--port", "8000", "--served-model-name", "org/m"],
                       "env": [{"name": "HF_HOME", "value": "/cache"}], "resources": {"limits": {"cpu": "2"}}}]}}}}
    assert render._block_yaml(deployment) == render._pyyaml_text(deployment)


def test_multi_line_text_is_left_to_pyyaml() -> None:
    config_map = {"kind": "ConfigMap", "data": {"config.yaml": "a: 1\nb: 2\n"}}
    assert render.to_yaml(config_map) == render._pyyaml_text(config_map)
    assert "config.yaml: |" in render.to_yaml(config_map)


@given(st.dictionaries(_TEXT, _DATA, min_size=1, max_size=5), st.sampled_from(["a", "x", "-", "{{", "\n"]))
@settings(max_examples=300, deadline=None)
def test_a_rewrite_writes_the_data_as_though_it_held_the_rewritten_strings(data, marker) -> None:
    def rewrite(value: str) -> str:
        return f"<{value.upper()}>"

    assert render.to_yaml(data, (marker, rewrite)) == render.to_yaml(render._rewritten(data, marker, rewrite))
