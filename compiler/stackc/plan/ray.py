"""A Ray cluster and the Ray Serve application it runs, as typed data.

KubeRay's RayService carries the Serve config as a YAML string (``serveConfigV2``) that nothing
checks before Ray reads it. Here it is attrs data an engine fills in from the checked spec and
``stackc.kube`` renders once, so a misspelt key cannot exist and every value came through validation.
Field names are Ray's own (``ray.serve.schema.ServeDeploySchema``, ``ray.serve.llm.LLMConfig``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from stackc.plan.engine import Container
from stackc.records import frozen

#: Ray's ports: Serve's HTTP proxy (on every node), the metrics export, the head's GCS and dashboard
SERVE_PORT = 8000
METRICS_PORT = 8080
GCS_PORT = 6379
DASHBOARD_PORT = 8265
CLIENT_PORT = 10001


@frozen
class AutoscalingConfig:
    """Ray Serve scales a deployment's replicas on requests in flight per replica."""

    min_replicas: int
    max_replicas: int
    initial_replicas: int | None = None
    target_ongoing_requests: int | float | None = None
    upscale_delay_s: int | None = None
    downscale_delay_s: int | None = None


@frozen
class DeploymentConfig:
    """Either a fixed ``num_replicas`` or an ``autoscaling_config``."""

    num_replicas: int | None = None
    autoscaling_config: AutoscalingConfig | None = None
    max_ongoing_requests: int | None = None


@frozen
class ModelLoadingConfig:
    #: the name clients send as ``model``
    model_id: str
    #: a Hugging Face id or a local path the replica loads
    model_source: str


@frozen
class LLMConfig:
    """One model of a Ray Serve LLM application (``ray.serve.llm.LLMConfig``)."""

    model_loading_config: ModelLoadingConfig
    deployment_config: DeploymentConfig
    #: keyword arguments of vLLM's engine (its command-line flags in snake case)
    engine_kwargs: Mapping[str, Any] = attrs.field(factory=dict)
    #: the GPU model replicas must be placed on (``L4``, ``A10G``), or None for any
    accelerator_type: str | None = None
    #: export vLLM's engine metrics through Ray (``ray_vllm:…``)
    log_engine_metrics: bool = False


@frozen
class LLMApplicationArgs:
    llm_configs: tuple[LLMConfig, ...]


@frozen
class ServeApplication:
    name: str
    import_path: str
    args: LLMApplicationArgs
    route_prefix: str = "/"


@frozen
class ServeConfig:
    """A Ray Serve config as ``serve deploy`` and KubeRay's ``serveConfigV2`` take it."""

    applications: tuple[ServeApplication, ...]


@frozen
class RayApplication:
    """What an engine that runs on a Ray cluster returns besides the worker container it puts in
    ``EngineResult.container``: the head's container and the Serve config the cluster runs."""

    head: Container
    #: the Ray version the images run (KubeRay's ``rayVersion``)
    version: str
    serve: ServeConfig
    #: worker pods one Serve replica occupies (its shards over pods of ``accelerators.count`` devices)
    workers_per_replica: int = 1
    #: ``ray start`` parameters of the head (values are strings, as KubeRay takes them)
    head_params: Mapping[str, str] = attrs.field(factory=dict)
    #: seconds an idle worker pod stays before Ray's autoscaler removes it
    idle_timeout_seconds: int = 60
    #: where the head may run (the model's scheduling targets the accelerator nodes of the workers)
    head_node_selector: Mapping[str, str] = attrs.field(factory=dict)


@frozen
class RayCluster:
    """A component run as a Ray cluster (topology ``ray_cluster``): ``Component.pod`` is the head,
    ``Component.worker_pod`` the pods of its one worker group, which Ray's autoscaler sizes between
    ``min_workers`` and ``max_workers`` as Serve adds and removes replicas."""

    version: str
    serve: ServeConfig
    workers: int
    min_workers: int
    max_workers: int
    #: Ray's in-tree autoscaler runs beside the head (the model autoscales)
    autoscaling: bool
    head_params: Mapping[str, str] = attrs.field(factory=dict)
    idle_timeout_seconds: int = 60
