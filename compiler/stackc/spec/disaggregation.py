"""Prefill/decode disaggregation in the spec: each role's settings over the model's, and what the roles
must agree on. Lowering and validation both read a role through ``role_model``."""

from __future__ import annotations

from collections.abc import Collection, Iterator
from typing import Any

import attrs

from stackc.diagnostics import Diagnostic, Severity
from stackc.spec.model import Autoscaling, Model, Spec

#: the roles in plan order (a disaggregated model's components: decode, then prefill)
ROLES = ("decode", "prefill")
#: role fields that replace the model's field of the same name
_REPLACED = ("replicas", "accelerators", "resources", "autoscaling", "scheduling")
#: role fields that set a ``serving`` field
_SERVING = {"tensor_parallel": "tensor_parallel", "nodes": "nodes"}


def role_model(model: Model, role: str) -> Model:
    """The model as one role serves it: the role's settings over the model's (``engine_args`` appended,
    ``env`` and ``annotations`` merged, the others replaced)."""
    assert model.disaggregation is not None
    settings = getattr(model.disaggregation, role)
    changes: dict[str, Any] = {name: getattr(settings, name) for name in _REPLACED
                               if getattr(settings, name) is not None}
    serving = {field: getattr(settings, name) for name, field in _SERVING.items() if getattr(settings, name) is not None}
    if serving:
        changes["serving"] = attrs.evolve(model.serving, **serving)
    return attrs.evolve(model, **changes, engine_args=(*model.engine_args, *settings.engine_args),
                        env={**model.env, **settings.env}, annotations={**model.annotations, **settings.annotations})


def role_path(model: Model, role: str, path: tuple[str | int, ...]) -> tuple[str | int, ...]:
    """Where a problem found in ``role_model(model, role)`` at ``path`` is written: in the role's table when
    the role sets that field, else in the model's."""
    assert model.disaggregation is not None
    settings = getattr(model.disaggregation, role)
    head = path[0] if path else None
    if head in _REPLACED and getattr(settings, str(head)) is not None:
        return ("disaggregation", role, *path)
    if head == "engine_args" and len(path) > 1 and isinstance(path[1], int) and path[1] >= len(model.engine_args):
        return ("disaggregation", role, "engine_args", path[1] - len(model.engine_args), *path[2:])
    if head == "serving" and len(path) > 1:
        for name, field in _SERVING.items():
            if path[1] == field and getattr(settings, name) is not None:
                return ("disaggregation", role, name, *path[2:])
    return path


def name_problems(spec: Spec, key: str, longest_suffix: int) -> Iterator[Diagnostic]:
    """A role's objects are named STACK-KEY-ROLE…: they must not be another model's, and must fit a DNS label."""
    for role in ROLES:
        if f"{key}-{role}" in spec.models:
            yield Diagnostic("E107", f"model '{key}-{role}' has the name of model '{key}''s {role} role: their "
                             "objects would be the same", ("models", f"{key}-{role}"),
                             f"rename model '{key}-{role}'")
    plain = len(spec.stack.name) + 1 + len(key) + longest_suffix
    if plain <= 63 < plain + len("-prefill"):  # longer names already drew the model's own E008
        yield Diagnostic("E008", f"stack and model names together are too long for the roles' objects "
                         f"('{spec.stack.name}-{key}-prefill')", ("models", key, "disaggregation"),
                         f"keep stack name + model name under {63 - longest_suffix - len('--prefill')} characters")


def problems(model: Model, connectors: Collection[str], engine: str) -> Iterator[Diagnostic]:
    """What a disaggregated model's roles must agree on, relative to the model's path."""
    settings = model.disaggregation
    assert settings is not None
    if settings.connector not in connectors:
        yield Diagnostic("E100", f"engine '{engine}' transfers KV caches with {' or '.join(connectors)}, not "
                         f"'{settings.connector}'", ("disaggregation", "connector"),
                         f'set connector = "{next(iter(connectors))}"' if connectors else None)
    for role in ROLES:
        served = role_model(model, role)
        scaling = served.autoscaling
        low = scaling.min_replicas if scaling.min_replicas is not None else served.replicas
        high = scaling.max_replicas if scaling.max_replicas is not None else max(served.replicas, 1)
        if low > high:
            yield Diagnostic("E101", f"the {role} role's fewest replicas ({low}) are above its most ({high})",
                             role_path(model, role, ("autoscaling",)),
                             f"set disaggregation.{role}.autoscaling.max_replicas or lower its replicas")
        if served.replicas == 0 and scaling == Autoscaling():
            yield Diagnostic("W100", f"the {role} role has no replicas: no request of this model can be answered",
                             role_path(model, role, ("replicas",)), f"set disaggregation.{role}.replicas",
                             Severity.WARNING)
    decode = role_model(model, "decode")
    most = decode.autoscaling.max_replicas if decode.autoscaling.max_replicas is not None else decode.replicas
    if settings.connector == "lmcache" and most > 1:
        yield Diagnostic("W101", "LMCache's P/D pushes each prompt's KV cache to the decode role's Service, which "
                         "may pick another decode pod than the router: with several decode pods most transfers miss",
                         ("disaggregation", "decode"), 'keep one decode replica, or use connector = "nixl"',
                         Severity.WARNING)

