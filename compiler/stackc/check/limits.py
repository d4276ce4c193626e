"""The API server's limits on the values stackc writes that no single spec field bounds: sums and products of
fields (a Deployment's progress deadline) and sizes (a ConfigMap's data, an object's annotations).

Each limit is checked on the lowered plan with the spec path of the values that make it up, before a target
writes a byte; the writers use the same functions (``kube.deployment`` takes its ``progressDeadlineSeconds``
from ``progress_deadline_seconds``), so what is checked is what is written.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from stackc.diagnostics import Diagnostic
from stackc.plan.engine import Probe
from stackc.plan.model import Component, Plan
from stackc.spec.model import INT32_MAX

#: a ConfigMap's or Secret's data, keys included (the API server's ``MaxSecretSize``, ConfigMaps' too)
DATA_BYTES = 1024 * 1024
#: an object's annotations, keys included (the API server's ``TotalAnnotationSizeLimitB``)
ANNOTATION_BYTES = 256 * 1024
#: what stackc's and the targets' own annotations on one object may take (a config hash, KServe's and
#: Knative's settings); the spec's annotations get the rest
OWN_ANNOTATION_BYTES = 4 * 1024
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


#: what the spec's annotations may take of an object's
ANNOTATION_ROOM = ANNOTATION_BYTES - OWN_ANNOTATION_BYTES


def limit_problems(plan: Plan) -> Iterator[Diagnostic]:
    """Values of the lowered plan that would make an object the API server rejects."""
    stack = plan.stack
    room = ANNOTATION_ROOM
    stack_bytes = annotation_bytes(stack.annotations)
    if stack_bytes > room:
        yield annotations_problem(stack_bytes, room, ("stack", "annotations"), "every object")
    for component in plan.components:
        yield from _component_problems(component, stack_bytes, room)
    for index, obj in enumerate(stack.extra_objects):
        path = ("stack", "extra_objects", index)
        own = annotation_bytes((obj.get("metadata") or {}).get("annotations") or {})
        if own > ANNOTATION_BYTES:
            yield annotations_problem(own, ANNOTATION_BYTES, path + ("metadata", "annotations"), "the object")
        if obj.get("kind") in ("ConfigMap", "Secret"):
            size = data_bytes(obj.get("data") or {}) + data_bytes(obj.get("binaryData") or {})
            if size > DATA_BYTES:
                yield _data_problem(size, f"{obj['kind']} '{obj['metadata']['name']}'", path + ("data",))


def _component_problems(component: Component, stack_bytes: int, room: int) -> Iterator[Diagnostic]:
    base = ("models", component.key)
    startup = component.pod.containers[0].startup_probe
    deadline = progress_deadline_seconds(startup)
    if deadline > INT32_MAX:
        yield Diagnostic("E014", f"the startup probe's budget (initial delay + period × failure threshold) makes the "
                         f"Deployment's progressDeadlineSeconds {deadline}, above the API server's int32 maximum "
                         f"{INT32_MAX}", base + ("probes", "startup"),
                         f"set probes.startup so that initial_delay_seconds + period_seconds × failure_threshold "
                         f"stays within {INT32_MAX - PROGRESS_MARGIN_SECONDS} seconds (it overrides the engine's "
                         "startup time)")
    pod_bytes = annotation_bytes(component.pod.annotations)
    if pod_bytes > room:
        yield annotations_problem(pod_bytes, room, base + ("annotations",), "the model's pods")
    account = component.service_account
    # stack.annotations alone over the limit are reported once, at them
    if account is not None and stack_bytes <= room < stack_bytes + annotation_bytes(account.annotations):
        yield annotations_problem(stack_bytes + annotation_bytes(account.annotations), room,
                                   base + ("security", "service_account", "annotations"),
                                   "the ServiceAccount (with stack.annotations)")
    for config_map in component.config_maps:
        size = data_bytes(config_map.data)
        if size > DATA_BYTES:
            yield _data_problem(size, f"ConfigMap '{config_map.name}'", base + config_map.spec_path)


def annotations_problem(size: int, room: int, path: tuple[str | int, ...], owner: str) -> Diagnostic:
    return Diagnostic("E140", f"annotations of {size} bytes on {owner}: the API server takes {ANNOTATION_BYTES} "
                      f"bytes in all, of which stackc's own may take {ANNOTATION_BYTES - room}", path,
                      f"keep them within {room} bytes (keys and values); put large data in a ConfigMap")


def _data_problem(size: int, owner: str, path: tuple[str | int, ...]) -> Diagnostic:
    return Diagnostic("E140", f"{owner} would hold {size} bytes: the API server takes {DATA_BYTES} bytes (1 MiB) "
                      "of data at most", path, "make it smaller, or mount the file from an image or a volume")
