"""Model sources: the forms the ``model`` field accepts, parsed once for every engine."""

from __future__ import annotations

import re

from stackc.records import frozen

SCHEMES = ("hf", "s3", "gs", "pvc", "oci", "ollama")
#: where LoRA adapters may come from (an OCI image or the Ollama library holds no adapter engines load)
ADAPTER_SCHEMES = ("hf", "s3", "gs", "pvc", "path")
_HF_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*(/.+)?$")


@frozen
class ModelSource:
    """A parsed ``model`` field: where weights come from (``stackc.plan.engine`` passes it to engines)."""

    scheme: str  # "hf", "s3", "gs", "pvc", "oci", "path"
    location: str  # the id, bucket/key, image reference or absolute path
    claim: str | None = None  # for pvc://CLAIM/PATH


def parse(text: str) -> ModelSource | None:
    """``None`` when ``text`` is none of the accepted forms (validation says which are)."""
    if text.startswith("/"):
        return ModelSource("path", text)
    scheme, sep, rest = text.partition("://")
    if not sep:
        return ModelSource("hf", text) if _HF_ID.match(text) else None
    if scheme not in SCHEMES or not rest:
        return None
    if scheme == "hf":
        return ModelSource("hf", rest) if _HF_ID.match(rest) else None
    if scheme == "pvc":
        claim, _, path = rest.partition("/")
        return ModelSource("pvc", "/" + path if path else "/", claim=claim) if claim else None
    if scheme == "ollama":
        return ModelSource("ollama", rest if ":" in rest else f"{rest}:latest")
    return ModelSource(scheme, text if scheme in ("s3", "gs") else rest)
