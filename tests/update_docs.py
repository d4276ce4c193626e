"""Regenerate the generated docs: ``python -m tests.update_docs`` (from the repository root)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from stackc import registry as contract
from stackc.plugins import load_registry
from stackc.registry import Registry
from stackc.check.schema import spec_reference, spec_schema

REPO = Path(__file__).resolve().parent.parent


def generated_blocks() -> dict[tuple[str, str], Callable[[Registry], str]]:
    """(docs file, marker) -> what stands between ``<!-- marker:start -->`` and ``<!-- marker:end -->``."""
    return {
        ("spec.md", "reference"): spec_reference,
        ("hooks.md", "engine-contract"): lambda _: contract.contract_reference(contract.EngineTraits,
                                                                               contract.ENGINE_METHODS),
        ("hooks.md", "target-contract"): lambda _: contract.contract_reference(contract.TargetTraits,
                                                                               contract.TARGET_METHODS),
    }


def block(text: str, marker: str) -> tuple[int, int]:
    """Where the generated text between a marker's two comments starts and ends."""
    start, end = f"<!-- {marker}:start -->\n", f"<!-- {marker}:end -->"
    return text.index(start) + len(start), text.index(end)


def main() -> None:
    registry = load_registry()
    for (name, marker), make in generated_blocks().items():
        path = REPO / "docs" / name
        text = path.read_text()
        start, end = block(text, marker)
        path.write_text(text[:start] + make(registry) + text[end:])
    schema = json.dumps(spec_schema(registry), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    (REPO / "docs" / "stackc.schema.json").write_text(schema)


if __name__ == "__main__":
    main()
