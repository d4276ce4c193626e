"""Raw Kubernetes manifests, one folder per model, applied with ``kubectl apply -k``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

import attrs

from stackc import hookimpl, kube
from stackc.diagnostics import Diagnostic, Severity
from stackc.plan.model import Plan
from stackc.records import frozen
from stackc.registry import Artifact, Registry


@frozen
class ManifestsOptions:
    """``[targets.manifests]``."""

    create_namespace: bool = attrs.field(default=False, metadata={"doc": "Also emit the Namespace object."})
    service_type: Literal["ClusterIP", "NodePort", "LoadBalancer"] = attrs.field(
        default="ClusterIP", metadata={"doc": "Type of each model's Service."})


class ManifestsTarget:
    name = "manifests"
    description = "Plain Kubernetes objects with a kustomization.yaml (kubectl apply -k)"
    options_type = ManifestsOptions
    serves_models = True

    def check(self, plan: Plan, options: ManifestsOptions) -> Iterator[Diagnostic]:
        yield from kube.workload_problems(plan, self.name)
        yield from kube.file_clashes(plan, self.name, ("kustomization.yaml", "namespace.yaml", "objects.yaml"))
        if options.service_type != "ClusterIP":
            for component in plan.components:
                if component.topology.kind == "ray_cluster":
                    yield Diagnostic("W195", f"model '{component.key}' runs as a Ray cluster whose Services KubeRay "
                                     f"makes (ClusterIP): service_type {options.service_type} is not theirs",
                                     ("targets", "manifests", "service_type"),
                                     "expose the model through the router, or a Service of your own in "
                                     "stack.extra_objects", Severity.WARNING)

    def emit(self, plan: Plan, options: ManifestsOptions) -> Iterator[Artifact]:
        return kube.kustomized(self._objects(plan, options))

    def _objects(self, plan: Plan, options: ManifestsOptions) -> Iterator[Artifact]:
        if options.create_namespace:
            namespace = {"apiVersion": "v1", "kind": "Namespace",
                         "metadata": {"name": plan.stack.namespace, "labels": dict(plan.stack.labels)}}
            yield Artifact("namespace.yaml", (namespace,))
        for component in plan.components:
            for kind, obj in kube.component_objects(plan.stack, component, options.service_type):
                yield Artifact(f"{kube.folder(component)}/{kind}.yaml", (obj,))
        for stem, obj in kube.stack_objects(plan.stack):
            yield Artifact(f"objects/{stem}.yaml", (obj,))


@hookimpl
def stackc_add_targets(registry: Registry) -> None:
    registry.add_target(ManifestsTarget())
