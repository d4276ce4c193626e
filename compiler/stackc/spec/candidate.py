"""A model's candidate version in the spec: its settings over the model's, and what a candidate can't be.
Lowering and validation both read the candidate through ``candidate_model``."""

from __future__ import annotations

from collections.abc import Iterator

import attrs

from stackc.diagnostics import Diagnostic, Severity
from stackc.spec.model import Autoscaling, Candidate, Model, Spec

#: the candidate's objects and pods are named KEY-SUFFIX
SUFFIX = "candidate"
PATH = ("candidate",)
#: candidate fields that replace the model's field of the same name when set
_REPLACED = ("model", "revision", "image", "engine_args")


def candidate_model(model: Model) -> Model:
    """The model as its candidate serves it: the candidate's weights (and their revision), image and engine
    arguments when set, its env over the model's, its fixed replicas (no autoscaling), and no candidate of its
    own. Lowering gives it the stable version's served names, so requests for the model reach it."""
    candidate = model.candidate
    assert candidate is not None
    changes = {name: getattr(candidate, name) for name in _REPLACED if getattr(candidate, name) is not None}
    if candidate.model is not None and candidate.revision is None:
        changes["revision"] = None  # the model's revision pins the model's weights, not these
    return attrs.evolve(model, **changes, env={**model.env, **candidate.env}, replicas=candidate.replicas,
                        autoscaling=Autoscaling(), candidate=None)


def candidate_path(model: Model, path: tuple[str | int, ...]) -> tuple[str | int, ...]:
    """Where a problem found in ``candidate_model(model)`` at ``path`` is written: in the candidate's table
    when the candidate sets that field, else in the model's."""
    candidate = model.candidate
    assert candidate is not None
    head = path[0] if path else None
    if head == "replicas" or head in _REPLACED and getattr(candidate, str(head)) is not None:
        return (*PATH, *path)
    if head == "env" and len(path) > 1 and path[1] in candidate.env:
        return (*PATH, *path)
    return path


def problems(spec: Spec, key: str, splitters: list[str]) -> Iterator[Diagnostic]:
    """What a model's candidate can't be, relative to the spec's root; ``splitters``: the stack's targets that
    give a candidate its share of the requests."""
    model = spec.models[key]
    candidate = model.candidate
    if candidate is None:
        return
    where = ("models", key, *PATH)
    if not model.enabled:
        yield Diagnostic("W181", "the model is disabled: its candidate is not deployed either", where,
                         "enable the model, or remove its candidate", Severity.WARNING)
        return
    if model.disaggregation is not None:
        yield Diagnostic("E180", "a disaggregated model can't have a candidate yet: its prefill and decode roles "
                         "would each need a second version", where,
                         "try the new version as a model of its own, or without disaggregation")
    if model.serving.nodes > 1:
        yield Diagnostic("E181", "a model spanning several nodes can't have a candidate yet", where,
                         "try the new version as a model of its own")
    if candidate.traffic > 0 and candidate.replicas == 0:
        yield Diagnostic("E182", f"the candidate takes {candidate.traffic} % of the requests but has no replicas",
                         (*where, "replicas"), "set candidate.replicas, or traffic = 0")
    if f"{key}-{SUFFIX}" in spec.models:
        yield Diagnostic("E183", f"model '{key}-{SUFFIX}' has the name of model '{key}''s candidate: their objects "
                         "would be the same", ("models", f"{key}-{SUFFIX}"), f"rename model '{key}-{SUFFIX}'")
    if candidate.traffic == 0 and candidate.header is None and not candidate.mirror:
        yield Diagnostic("W180", "the candidate gets no requests: traffic is 0, with no header and no mirror",
                         where, "set traffic, header or mirror = true", Severity.WARNING)
    elif not splitters:
        yield Diagnostic("W182", "no target of the stack gives the candidate its requests (traffic, header, "
                         "mirror): clients reach the stable version only, the candidate at its own Service (KServe's "
                         "Knative mode alone splits traffic, between revisions)", where,
                         "add the router or gateway target", Severity.WARNING)
    if candidate.header is None and candidate.header_value != Candidate().header_value:
        yield Diagnostic("W183", "header_value without header: no request is matched by it", (*where, "header_value"),
                         "set header, or drop header_value", Severity.WARNING)
