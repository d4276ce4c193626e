"""Plan checks: the shortcuts they take answer as the definitions they stand for."""

from __future__ import annotations

from pathlib import PurePosixPath

from hypothesis import given
from hypothesis import strategies as st

from stackc.check.plan import _on_a_mount

_PATHS = st.lists(st.sampled_from(["", "/", "a", "data", "hf", ".", "..", "x.y"]), max_size=4).flatmap(
    lambda parts: st.sampled_from(["/", "//", "", "/./"]).map(lambda root: root + "/".join(parts)))


@given(_PATHS, st.lists(_PATHS, max_size=3))
def test_a_cache_variable_is_on_a_mount_exactly_when_its_path_is_relative_to_one(value: str, mounted: list[str]) -> None:
    expected = any(PurePosixPath(value).is_relative_to(path) for path in mounted if path)
    assert _on_a_mount(value, mounted) is expected
