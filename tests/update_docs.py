"""Regenerate the generated docs: ``python -m tests.update_docs`` (from the repository root)."""

from __future__ import annotations

import json
from pathlib import Path

from stackc.plugins import load_registry
from stackc.spec.schema import spec_reference, spec_schema

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    registry = load_registry()
    spec = REPO / "docs" / "spec.md"
    text = spec.read_text()
    start, end = "<!-- reference:start -->\n", "<!-- reference:end -->"
    head, tail = text[: text.index(start) + len(start)], text[text.index(end):]
    spec.write_text(head + spec_reference(registry) + tail)
    schema = json.dumps(spec_schema(registry), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    (REPO / "docs" / "stackc.schema.json").write_text(schema)


if __name__ == "__main__":
    main()
