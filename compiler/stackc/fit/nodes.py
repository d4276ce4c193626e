"""The nodes an accelerator type implies (``accelerators.select_nodes``): the node label the vendor's labeller
sets on nodes holding the device, as a required node affinity. Decided here once, for lowering (which puts it
in the plan's pods) and for ``stackc plan`` and the check (which show it and say why nothing was added)."""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from typing import Any

from stackc.fit.catalogue import NodeLabel, accelerator
from stackc.records import frozen
from stackc.spec.model import Accelerators, Scheduling

#: a MIG profile's resource: only nodes whose GPUs are partitioned into that profile offer it
_MIG = re.compile(r"^nvidia\.com/mig-")
_REQUIRED = "requiredDuringSchedulingIgnoredDuringExecution"


@frozen
class NodeSelection:
    """What ``select_nodes = true`` does to a model's pods: ``label`` is the requirement every pod gets
    (``key In values``), or None with ``note`` saying why nothing is added or what selects the nodes instead."""

    label: NodeLabel | None
    note: str = ""
    #: nothing selects the type's nodes, though the spec asked (W145)
    unmet: bool = False
    #: the catalogue's device and its label, whether added or not
    device: str = ""
    implied: NodeLabel | None = None
    #: where the spec selects the label's key itself, under ``scheduling``, and the values it names, when none
    #: is the device's (W146)
    contradiction: tuple[tuple[str, ...], tuple[str, ...]] | None = None


def node_selection(accelerators: Accelerators, scheduling: Scheduling) -> NodeSelection | None:
    """The selection of a model's (or a P/D role's) pods; None when ``select_nodes`` is off."""
    if not accelerators.select_nodes:
        return None
    if accelerators.count == 0:
        return NodeSelection(None, "no accelerators: the model runs on CPU", unmet=True)
    if _MIG.match(accelerators.resource):
        return NodeSelection(None, f"by the resource {accelerators.resource}: only nodes with that MIG profile "
                                   "offer it")
    if accelerators.type is None:
        return NodeSelection(None, "accelerators.type is unset: no node label is known", unmet=True)
    device = accelerator(accelerators.type)
    if device is None:
        return NodeSelection(None, f"unknown accelerator type '{accelerators.type}'", unmet=True)
    label = device.node_label
    if label is None:
        return NodeSelection(None, f"no node label is known to tell {device.name} nodes apart", unmet=True)
    value = scheduling.node_selector.get(label.key)
    if value is not None:
        contradiction = None if value in label.values else (("node_selector", label.key), ("In", value))
        return NodeSelection(None, f"by scheduling.node_selector: {label.key}={value}", device=device.name,
                             implied=label, contradiction=contradiction)
    return NodeSelection(label, device=device.name, implied=label,
                         contradiction=_affinity_contradiction(scheduling.affinity, label))


def _terms(affinity: Mapping[str, Any] | None) -> list[Any] | None:
    """The required node selector terms of a spec's affinity, when it is shaped as Kubernetes has it."""
    node = (affinity or {}).get("nodeAffinity")
    required = node.get(_REQUIRED) if isinstance(node, Mapping) else None
    terms = required.get("nodeSelectorTerms") if isinstance(required, Mapping) else None
    return terms if isinstance(terms, list) else None


def _expressions_on(term: Any, key: str) -> list[Mapping[str, Any]]:
    expressions = term.get("matchExpressions") if isinstance(term, Mapping) else None
    return [e for e in expressions or () if isinstance(e, Mapping) and e.get("key") == key]


def _excluding(expression: Mapping[str, Any], label: NodeLabel) -> bool:
    """The expression on the label's key admits none of the device's nodes: ``In`` none of its values,
    ``NotIn`` all of them, or ``DoesNotExist``."""
    values = expression.get("values")
    values = set(map(str, values)) if isinstance(values, list) else set()
    operator = expression.get("operator")
    return (operator == "In" and not values & set(label.values) or operator == "DoesNotExist"
            or operator == "NotIn" and set(label.values) <= values)


def _affinity_contradiction(affinity: Mapping[str, Any] | None,
                            label: NodeLabel) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
    """A required term of the spec's affinity whose expression on the label's key admits none of the device's
    nodes (``_excluding``), with that expression's operator and values."""
    for term in _terms(affinity) or ():
        for expression in _expressions_on(term, label.key):
            if _excluding(expression, label):
                values = expression.get("values")
                listed = tuple(str(v) for v in values) if isinstance(values, list) else ()
                return ("affinity",), (str(expression.get("operator")), *listed)
    return None


def _keeps_its_own(term: Any, label: NodeLabel) -> bool:
    """A term that selects the label's key itself with ``In``, or excludes the device (W146 says so), is left as
    written; any other expression on the key (``NotIn`` some, ``Exists``) is ANDed with the requirement."""
    return any(e.get("operator") == "In" or _excluding(e, label) for e in _expressions_on(term, label.key))


def pod_affinity(accelerators: Accelerators, scheduling: Scheduling) -> dict[str, Any] | None:
    """The pods' affinity: the spec's, with the type's label required in every required node selector term
    (Kubernetes ORs the terms, so each must hold it); a term that selects the key itself keeps its own."""
    selection = node_selection(accelerators, scheduling)
    affinity = copy.deepcopy(dict(scheduling.affinity)) if scheduling.affinity else None
    if selection is None or selection.label is None:
        return affinity
    label = selection.label
    requirement = {"key": label.key, "operator": "In", "values": list(label.values)}
    affinity = affinity or {}
    terms = _terms(affinity)
    if terms is None:
        node = affinity.get("nodeAffinity")
        if node is not None and not isinstance(node, Mapping):
            return affinity  # not an affinity Kubernetes takes: the schema check reports it as written
        node = affinity["nodeAffinity"] = dict(node or {})
        required = node.get(_REQUIRED)
        if required is not None and (not isinstance(required, Mapping) or "nodeSelectorTerms" in required):
            return affinity
        node[_REQUIRED] = {**(required or {}), "nodeSelectorTerms": [{"matchExpressions": [requirement]}]}
        return affinity
    if not terms:
        terms.append({})
    for index, term in enumerate(terms):
        expressions = term.get("matchExpressions", []) if isinstance(term, Mapping) else None
        if isinstance(expressions, list) and not _keeps_its_own(term, label):
            terms[index] = {**term, "matchExpressions": [*expressions, requirement]}
    return affinity
