"""The API server's limits on values no single spec field bounds: sums and products of fields (a Deployment's
progress deadline) and sizes (a ConfigMap's data, an object's annotations). The checks (``stackc.check.limits``,
targets' own) and the writers (``kube.deployment``) use these same functions, so what is checked is what is
written.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from stackc.diagnostics import Diagnostic
from stackc.plan.engine import Probe

#: a ConfigMap's or Secret's data, keys included (the API server's ``MaxSecretSize``, ConfigMaps' too)
DATA_BYTES = 1024 * 1024
#: an object's annotations, keys included (the API server's ``TotalAnnotationSizeLimitB``)
ANNOTATION_BYTES = 256 * 1024
#: what stackc's and the targets' own annotations on one object may take (a config hash, KServe's and
#: Knative's settings); the spec's annotations get the rest
OWN_ANNOTATION_BYTES = 4 * 1024
#: what the spec's annotations may take of an object's
ANNOTATION_ROOM = ANNOTATION_BYTES - OWN_ANNOTATION_BYTES
#: a rollout must not be declared failed before the startup probe gives up on a long model load
PROGRESS_MARGIN_SECONDS = 600
#: the startup time a Deployment's pods get when their engine has no startup probe
_DEFAULT_STARTUP_SECONDS = 30


def progress_deadline_seconds(startup: Probe | None) -> int:
    """A Deployment's ``progressDeadlineSeconds``: the startup probe's whole budget plus a margin."""
    budget = (startup.initial_delay_seconds + startup.period_seconds * startup.failure_threshold
              if startup is not None else _DEFAULT_STARTUP_SECONDS)
    return budget + PROGRESS_MARGIN_SECONDS


def data_bytes(data: Mapping[str, Any]) -> int:
    """The size the API server counts for a ConfigMap's or Secret's data."""
    return sum(len(key.encode()) + len(str(value).encode()) for key, value in data.items())


def annotation_bytes(annotations: Mapping[str, Any]) -> int:
    """The size the API server counts for an object's annotations."""
    return sum(len(str(key).encode()) + len(str(value).encode()) for key, value in annotations.items())


def annotations_problem(size: int, room: int, path: tuple[str | int, ...], owner: str) -> Diagnostic:
    return Diagnostic("E170", f"annotations of {size} bytes on {owner}: the API server takes {ANNOTATION_BYTES} "
                      f"bytes in all, of which stackc's own may take {ANNOTATION_BYTES - room}", path,
                      f"keep them within {room} bytes (keys and values); put large data in a ConfigMap")


def data_problem(size: int, owner: str, path: tuple[str | int, ...]) -> Diagnostic:
    return Diagnostic("E170", f"{owner} would hold {size} bytes: the API server takes {DATA_BYTES} bytes (1 MiB) "
                      "of data at most", path, "make it smaller, or mount the file from an image or a volume")
