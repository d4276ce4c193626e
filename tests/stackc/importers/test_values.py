"""Reading values: any YAML that cannot be read is a located E090 (exit 2), never a traceback, and
a value is located in the file that set it."""

from __future__ import annotations

from pathlib import Path

import pytest

from stackc.cli import main
from stackc.importers.values import MAX_DEPTH, ValuesError, read_values


@pytest.mark.parametrize(("text", "expected"), [
    ("a: &x\n  b: *x\n", "values.yaml:2:6: error[E090] invalid YAML: the alias *x refers to a value that contains it"),
    ("a: &x [1, *x]\n", "values.yaml:1:11: error[E090]"),
    ("a: " + "[" * 600 + "]" * 600 + "\n", f"values.yaml:1:{3 + MAX_DEPTH}: error[E090] invalid YAML: nested "
     f"more than {MAX_DEPTH} levels deep"),
    ("".join(f"{'  ' * i}k:\n" for i in range(600)) + "  " * 600 + "v\n", "error[E090] invalid YAML: nested"),
])
def test_unreadable_yaml_is_a_located_invalid_input(tmp_path, monkeypatch, capsys, text, expected):
    monkeypatch.chdir(tmp_path)
    Path("values.yaml").write_text(text)
    for chart in ("production-stack", "doubleword", "ai-on-eks", "kserve"):
        assert main(["import", "--from", chart, "values.yaml"]) == 2
        assert expected in capsys.readouterr().err


def test_aliases_that_expand_past_any_real_values_file_are_refused(tmp_path):
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 8)]
    (tmp_path / "laughs.yaml").write_text("\n".join(lines) + "\n")
    with pytest.raises(ValuesError, match="once aliases are expanded"):
        read_values([str(tmp_path / "laughs.yaml")])


def test_aliases_nested_in_aliases_are_bounded_too(tmp_path):
    shallow = "[" * 60 + "]" * 60
    (tmp_path / "deep.yaml").write_text(f"a: &a {shallow}\nb: &b [{'[' * 50}*a{']' * 50}]\n")
    with pytest.raises(ValuesError, match="once aliases are expanded"):
        read_values([str(tmp_path / "deep.yaml")])


def test_a_value_is_located_in_the_file_that_set_it(tmp_path):
    (tmp_path / "base.yaml").write_text("a:\n  list:\n  - x: 1\n    y: 2\n  kept: 3\n")
    (tmp_path / "override.yaml").write_text("# the override\na:\n  list:\n  - x: 5\n")
    _, locations = read_values([str(tmp_path / "base.yaml"), str(tmp_path / "override.yaml")])
    assert str(locations[("a", "list", 0, "x")]) == f"{tmp_path / 'override.yaml'}:4:5"
    assert ("a", "list", 0, "y") not in locations  # replaced with the list: no longer in the base file
    assert str(locations[("a", "kept")]) == f"{tmp_path / 'base.yaml'}:5:3"
