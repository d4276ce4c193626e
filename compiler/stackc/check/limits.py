"""Checks of the API server's limits (``stackc.plan.limits``) on the lowered plan, with the spec path of the
values that make each one up, before a target writes a byte."""

from __future__ import annotations

from collections.abc import Iterator

from stackc.diagnostics import Diagnostic
from stackc.plan.limits import (
    ANNOTATION_BYTES,
    ANNOTATION_ROOM,
    DATA_BYTES,
    PROGRESS_MARGIN_SECONDS,
    annotation_bytes,
    annotations_problem,
    data_bytes,
    data_problem,
    progress_deadline_seconds,
)
from stackc.plan.model import Component, Plan
from stackc.spec.model import INT32_MAX


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
        metadata = obj.get("metadata")
        annotations = metadata.get("annotations") if isinstance(metadata, dict) else None
        # malformed objects are E027 (check/spec.py): only well-formed tables are measured
        own = annotation_bytes(annotations) if isinstance(annotations, dict) else 0
        if own > ANNOTATION_BYTES:
            yield annotations_problem(own, ANNOTATION_BYTES, path + ("metadata", "annotations"), "the object")
        if obj.get("kind") in ("ConfigMap", "Secret"):
            size = sum(data_bytes(obj[key]) for key in ("data", "binaryData") if isinstance(obj.get(key), dict))
            if size > DATA_BYTES:
                yield data_problem(size, f"{obj['kind']} '{obj['metadata']['name']}'", path + ("data",))


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
            yield data_problem(size, f"ConfigMap '{config_map.name}'", base + config_map.spec_path)
