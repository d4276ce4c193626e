from __future__ import annotations

import tomllib

from hypothesis import given, settings
from hypothesis import strategies as st

from stackc.diagnostics import Location
from stackc.spec.source import load_files, scan_positions

TEXT = '''\
version = 1 # comment
[stack]
name = "x"
"quoted key" = 'v'
[models.llama]
engine = "vllm"
list = [1, "two",
  { a = 3 }]
serving.tensor_parallel = 2
multi = """
a ] } # not a comment
"""
[[models.llama.serving.lora_adapters]]
name = "a"
[[models.llama.serving.lora_adapters]]
name = "b"
'''


def test_scanner_locates_keys_and_values() -> None:
    keys, values = scan_positions("f.toml", TEXT)
    assert values[("version",)] == Location("f.toml", 1, 11)
    assert keys[("stack",)] == Location("f.toml", 2, 1)
    assert values[("stack", "quoted key")] == Location("f.toml", 4, 16)
    assert values[("models", "llama", "list", 1)] == Location("f.toml", 7, 12)
    assert values[("models", "llama", "list", 2, "a")] == Location("f.toml", 8, 9)
    assert values[("models", "llama", "serving", "tensor_parallel")] == Location("f.toml", 9, 27)
    assert keys[("models", "llama", "serving", "lora_adapters", 1)] == Location("f.toml", 15, 1)
    assert values[("models", "llama", "serving", "lora_adapters", 1, "name")] == Location("f.toml", 16, 8)


def test_later_files_override_and_set_wins() -> None:
    document, problems = load_files(
        [("a.toml", "[m]\nx = 1\ny = [1, 2]\n"), ("b.toml", "[m]\ny = [3]\n")], ["m.x=5", "m.z=word"])
    assert problems == []
    assert document.data == {"m": {"x": 5, "y": [3], "z": "word"}}
    assert document.source_map.locate(("m", "y", 0)) == Location("b.toml", 2, 6)
    assert document.source_map.locate(("m", "x")) == Location("--set", 1, 5)


def test_syntax_errors_are_located() -> None:
    _, problems = load_files([("bad.toml", "a = 1\nb = = 2\n")])
    assert len(problems) == 1 and problems[0].location.file == "bad.toml" and problems[0].location.line == 2


toml_keys = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=8)
toml_values = st.recursive(
    st.integers() | st.booleans() | st.text(max_size=10) | st.floats(allow_nan=False, allow_infinity=False),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(toml_keys, children, max_size=3),
    max_leaves=10,
)


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(toml_keys, toml_values, min_size=1, max_size=5))
def test_scanner_finds_every_top_level_value_tomlkit_reads(data: dict) -> None:
    import tomlkit

    text = tomlkit.dumps(data)
    assert tomllib.loads(text) == data
    keys, values = scan_positions("p.toml", text)
    for key in data:
        if not isinstance(data[key], dict):
            location = values.get((key,)) or keys[(key,)]  # an array of tables has a header, not a value
            line = text.split("\n")[location.line - 1]  # TOML lines end at LF only
            assert line[location.column - 1 :].lstrip()  # points at the value's text


def test_positions_are_scanned_only_when_something_asks_where_a_value_was_written(monkeypatch) -> None:
    from stackc.spec import source

    scanned = []
    monkeypatch.setattr(source, "scan_positions", lambda name, text: scanned.append(name) or ({}, {}))
    document, problems = load_files([("a.toml", "[m]\nx = 1\n"), ("b.toml", "[m]\ny = 2\n")], ["m.z=3"])
    assert problems == [] and scanned == []
    document.source_map.locate(("m", "x"))
    document.source_map.locate(("m", "y"))
    assert scanned == ["a.toml", "b.toml"]  # once each, on first use
