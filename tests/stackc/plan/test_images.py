"""Every image stackc names by default is in ``stackc.plan.images`` with where its tag is known to exist, and
what each engine and target deploys by default comes from there."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import tomlkit

from stackc.fuzzing import engine_needs
from stackc.plan import images
from stackc.plan.images import KnownImage
from stackc.plugins import load_registry
from stackc.testing import compile_text, objects, pod_templates

REPO = Path(__file__).resolve().parents[3]
REGISTRY = load_registry()
#: a registry/repository:tag written out in the source
IMAGE_LITERAL = re.compile(r"""["']((?:[a-z0-9.-]+/)+[a-z0-9._-]+:[A-Za-z0-9._{}-]+)["']""")
#: files that name images which are not stackc's defaults: examples the fuzzer draws, charts' own images the
#: importers read from values
NOT_DEFAULTS = {"compiler/stackc/fuzzing.py", "compiler/stackc/plan/images.py"}


def known() -> list[KnownImage]:
    found = [value for value in vars(images).values() if isinstance(value, KnownImage)]
    for table in (images.LLAMACPP, images.RAY_LLM):
        found += table.values()
    return found


def test_each_known_image_has_a_pinned_tag_and_a_source() -> None:
    for image in known():
        name, _, tag = image.image.rpartition(":")
        assert name and tag and tag != "latest", image
        assert image.source.strip(), image


def test_no_default_image_is_written_anywhere_else() -> None:
    roots = [REPO / "compiler" / "stackc", REPO / "plugins" / "stackc_plugins"]
    written = [(path.relative_to(REPO).as_posix(), match.group(1)) for root in roots for path in root.rglob("*.py")
               if path.relative_to(REPO).as_posix() not in NOT_DEFAULTS and "importers" not in path.parts
               for match in IMAGE_LITERAL.finditer(path.read_text())]
    assert written == []


# the command engine has no default image: it needs the spec's (E036)
@pytest.mark.parametrize("engine", sorted(set(REGISTRY.engines) - {"command"}))
def test_what_each_engine_deploys_by_default_is_a_known_image(engine: str) -> None:
    # the router and, where the engine can be behind it, the gateway's picker: their images too
    targets = ["manifests", "router", *(["gateway"] if engine != "ray-vllm" else [])]
    model = {"engine": engine, "model": "org/m", **engine_needs(REGISTRY, engine)}
    data = {"version": 1, "stack": {"name": "s", "targets": targets}, "models": {"m": model}}
    compilation = compile_text(tomlkit.dumps(data))
    deployed = {container["image"] for obj in objects(compilation.files) for _, pod in pod_templates(obj)
                for container in (*pod.get("containers", []), *pod.get("initContainers", []))}
    assert deployed and deployed <= {image.image for image in known()}, deployed
