"""ray-vllm: a model under Ray Serve LLM becomes a KubeRay RayService whose typed Serve config,
head and worker groups, Services, policies and scaling are Ray's, with located errors for the rest."""

from __future__ import annotations

import pytest
import yaml

from stackc.plan import ray
from stackc.diagnostics import DiagnosticsError, Severity
from stackc.testing import compile_text, objects, validate_kubernetes

SPEC = """
version = 1
[stack]
name = "{stack}"
namespace = "llm"
targets = {targets}
[models.{key}]
engine = "ray-vllm"
model = "hf://org/m"
accelerators = {{ count = 2 }}
resources = {{ requests = {{ cpu = "8", memory = "32Gi" }} }}
scheduling.node_selector = {{ "nvidia.com/gpu.present" = "true" }}
scheduling.tolerations = [{{ key = "nvidia.com/gpu", operator = "Exists", effect = "NoSchedule" }}]
security.hf_token = {{ name = "hf-token", key = "token" }}
{extra}
"""
SELECTOR = {"app.kubernetes.io/instance": "r", "app.kubernetes.io/name": "m"}


def spec(extra: str = "", stack: str = "r", key: str = "m", targets: str = '["manifests", "router", "monitoring"]') -> str:
    return SPEC.format(stack=stack, key=key, targets=targets, extra=extra)


def built(text: str) -> list[dict]:
    return objects(compile_text(text).files)


def ray_service(text: str) -> dict:
    return next(o for o in built(text) if o["kind"] == "RayService")


def serve_config(service: dict) -> dict:
    return yaml.safe_load(service["spec"]["serveConfigV2"])


def located(text: str, targets: list[str] | None = None) -> list[tuple[str, str]]:
    with pytest.raises(DiagnosticsError) as error:
        compile_text(text, targets=targets)
    return [(d.code, d.dotted_path) for d in error.value.diagnostics if d.severity is Severity.ERROR]


def test_the_spec_becomes_one_typed_ray_serve_llm_application() -> None:
    service = ray_service(spec('replicas = 2\nserving = { tensor_parallel = 2, max_context = 4096, prefix_caching = false }\n'
                               'engine_options = { accelerator_type = "L4", engine_kwargs = { enforce_eager = true } }'))
    (app,) = serve_config(service)["applications"]
    assert app["import_path"] == "ray.serve.llm:build_openai_app" and app["route_prefix"] == "/"
    (llm,) = app["args"]["llm_configs"]
    assert llm["model_loading_config"] == {"model_id": "org/m", "model_source": "org/m"}
    assert llm["engine_kwargs"] == {"tensor_parallel_size": 2, "max_model_len": 4096, "enable_prefix_caching": False,
                                    "enforce_eager": True}
    assert llm["accelerator_type"] == "L4" and llm["log_engine_metrics"] is True
    # no autoscaling: a fixed number of Serve replicas on as many worker pods
    assert llm["deployment_config"] == {"num_replicas": 2}
    workers = service["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]
    assert (workers["replicas"], workers["minReplicas"], workers["maxReplicas"]) == (2, 2, 2)
    assert "enableInTreeAutoscaling" not in service["spec"]["rayClusterConfig"]


def test_head_and_worker_groups_split_the_pod() -> None:
    cluster = ray_service(spec())["spec"]["rayClusterConfig"]
    head = cluster["headGroupSpec"]
    worker = cluster["workerGroupSpecs"][0]["template"]["spec"]
    # the head takes no replicas and no accelerator node; the workers hold the GPUs and the spec's scheduling
    assert head["rayStartParams"]["num-cpus"] == "0"
    head_pod = head["template"]["spec"]
    head_container = head_pod["containers"][0]
    assert head_container["resources"] == {"requests": {"cpu": "4", "memory": "20Gi"}, "limits": {"memory": "20Gi"}}
    assert "nodeSelector" not in head_pod and "tolerations" not in head_pod
    assert {p["name"] for p in head_container["ports"]} == {"gcs-server", "dashboard", "client", "serve", "metrics"}
    engine = worker["containers"][0]
    assert engine["resources"]["limits"]["nvidia.com/gpu"] == "2" and engine["resources"]["requests"]["cpu"] == "8"
    assert worker["nodeSelector"] == {"nvidia.com/gpu.present": "true"} and worker["tolerations"]
    # KubeRay writes the Ray containers' command lines and probes
    assert not {"command", "args", "readinessProbe", "startupProbe"} & set(engine)
    for pod in (head_pod, worker):
        token = next(e for e in pod["containers"][0]["env"] if e["name"] == "HF_TOKEN")
        assert token == {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf-token", "key": "token"}}}
        assert pod["securityContext"]["runAsNonRoot"] is True
    assert head["template"]["metadata"]["labels"]["stackc.dev/role"] == "head"
    for pod in (head_pod, worker):
        assert validate_kubernetes({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": pod}) == []


def test_the_default_image_is_a_known_tag_and_another_version_needs_an_image() -> None:
    from stackc_plugins.engines.ray_vllm import IMAGES

    for version, image in IMAGES.items():
        cluster = ray_service(spec(f'engine_options = {{ ray_version = "{version}" }}'))["spec"]["rayClusterConfig"]
        assert cluster["rayVersion"] == version
        assert cluster["headGroupSpec"]["template"]["spec"]["containers"][0]["image"] == image
    own = ray_service(spec('image = "example.com/ray-llm:2.49.9"\nengine_options = { ray_version = "2.49.9" }'))
    assert own["spec"]["rayClusterConfig"]["rayVersion"] == "2.49.9"


def test_topology_spread_places_the_workers_only_and_head_env_the_head_only() -> None:
    text = spec('scheduling.topology_spread = [{ maxSkew = 1, topologyKey = "zone", whenUnsatisfiable = "DoNotSchedule" }]\n'
                'env = { BOTH = "1" }\nengine_options = { head_env = { RAY_GRAFANA_HOST = "http://grafana" } }')
    cluster = ray_service(text)["spec"]["rayClusterConfig"]
    head = cluster["headGroupSpec"]["template"]["spec"]
    worker = cluster["workerGroupSpecs"][0]["template"]["spec"]
    assert "topologySpreadConstraints" not in head
    (spread,) = worker["topologySpreadConstraints"]
    assert spread["labelSelector"]["matchLabels"] == {**SELECTOR, "stackc.dev/role": "worker"}
    head_env = {e["name"]: e.get("value") for e in head["containers"][0]["env"]}
    worker_env = {e["name"]: e.get("value") for e in worker["containers"][0]["env"]}
    assert head_env["RAY_GRAFANA_HOST"] == "http://grafana" and "RAY_GRAFANA_HOST" not in worker_env
    assert head_env["BOTH"] == worker_env["BOTH"] == "1"


def test_weights_stackc_downloads_reach_the_workers_only() -> None:
    service = ray_service(spec().replace('model = "hf://org/m"', 'model = "s3://bucket/models/m"'))
    cluster = service["spec"]["rayClusterConfig"]
    worker = cluster["workerGroupSpecs"][0]["template"]["spec"]
    assert [c["name"] for c in worker["initContainers"]] == ["weights-download"]
    assert "initContainers" not in cluster["headGroupSpec"]["template"]["spec"]
    (llm,) = serve_config(service)["applications"][0]["args"]["llm_configs"]
    mounted = {m["mountPath"] for m in worker["containers"][0]["volumeMounts"]}
    assert llm["model_loading_config"]["model_source"] in mounted


def test_autoscaling_is_serves_and_rays_not_an_hpa() -> None:
    found = built(spec('replicas = 1\nautoscaling = { min_replicas = 1, max_replicas = 3, signal = "running", '
                       'target = 4, scale_down_seconds = 120 }\nserving = { tensor_parallel = 4 }'))
    assert not {"HorizontalPodAutoscaler", "ScaledObject"} & {o["kind"] for o in found}
    service = next(o for o in found if o["kind"] == "RayService")
    (llm,) = serve_config(service)["applications"][0]["args"]["llm_configs"]
    assert llm["deployment_config"] == {"autoscaling_config": {
        "min_replicas": 1, "max_replicas": 3, "target_ongoing_requests": 4, "downscale_delay_s": 120}}
    cluster = service["spec"]["rayClusterConfig"]
    # four shards over pods of two GPUs: each replica occupies two worker pods
    workers = cluster["workerGroupSpecs"][0]
    assert (workers["replicas"], workers["minReplicas"], workers["maxReplicas"]) == (2, 2, 6)
    assert cluster["enableInTreeAutoscaling"] is True and cluster["autoscalerOptions"]["idleTimeoutSeconds"] == 60


def test_kuberay_makes_the_service_the_router_reaches() -> None:
    found = built(spec())
    assert not [o for o in found if o["kind"] == "Service" and o["metadata"]["name"] == "r-m"]
    router = yaml.safe_load(next(o for o in found if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "r-router")
                            ["data"]["router.yaml"])
    route = router["models"]["m"]
    assert route["discovery"]["kubernetes"] == {"namespace": "llm", "service": "r-m-serve-svc", "port": 8000}
    assert route["health"]["path"] == "/-/healthz"


def test_network_policy_admits_the_router_the_cluster_and_kuberay() -> None:
    policy = next(o for o in built(spec()) if o["kind"] == "NetworkPolicy")
    rules = policy["spec"]["ingress"]
    assert policy["spec"]["podSelector"]["matchLabels"] == SELECTOR
    assert {"from": [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "router",
                                                     "app.kubernetes.io/instance": "r"}}}],
            "ports": [{"port": "serve", "protocol": "TCP"}]} in rules
    # Ray's own traffic between head and workers, on ports Ray picks
    assert {"from": [{"podSelector": {"matchLabels": SELECTOR}}]} in rules
    assert {"from": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {
        "app.kubernetes.io/name": "kuberay-operator"}}}], "ports": [{"port": "dashboard", "protocol": "TCP"}]} in rules


def test_monitoring_scrapes_rays_metrics_port_on_every_pod() -> None:
    monitor = next(o for o in built(spec()) if o["kind"] == "PodMonitor" and o["metadata"]["name"] == "r-m")
    assert monitor["spec"]["selector"]["matchLabels"] == SELECTOR
    assert monitor["spec"]["podMetricsEndpoints"][0]["portNumber"] == ray.METRICS_PORT  # "metrics" on every pod


def test_a_name_kuberay_refuses_is_located_with_the_limit() -> None:
    key = "k" * 27  # 48 characters with the stack's name: Kubernetes would take it, KubeRay does not
    with pytest.raises(DiagnosticsError) as error:
        compile_text(spec(stack="s" * 20, key=key))
    (problem,) = error.value.diagnostics
    assert problem.code == "E110" and problem.dotted_path == f"models.{key}" and "at most 47" in problem.message
    assert built(spec(stack="s" * 20, key="k" * 26))  # 47 characters with the dash


@pytest.mark.parametrize(("extra", "expected"), [
    ("serving = { tensor_parallel = 4, nodes = 2 }", ("E111", "models.m.serving.nodes")),
    ("serving = { tensor_parallel = 3 }", ("E112", "models.m.serving.tensor_parallel")),
    ('engine_args = ["--enforce-eager"]', ("E113", "models.m.engine_args")),
    ("engine_options = { engine_kwargs = { max_model_len = 1024 } }",
     ("E114", "models.m.engine_options.engine_kwargs.max_model_len")),
    ('probes.readiness = { path = "/health" }', ("E115", "models.m.probes")),
    ("service_port = 80", ("E115", "models.m.service_port")),
    ('autoscaling = { max_replicas = 2, signal = "waiting", target = 2 }', ("E116", "models.m.autoscaling.signal")),
    ('security.api_key = { name = "k", key = "key" }', ("E020", "models.m.security.api_key")),
    ('engine_options = { ray_version = "2.49.9" }', ("E119", "models.m.engine_options.ray_version")),
])
def test_what_ray_cannot_do_is_a_located_error(extra: str, expected: tuple[str, str]) -> None:
    assert expected in located(spec(extra))


def test_kserve_and_the_gateway_say_why_they_cannot_serve_a_ray_cluster() -> None:
    assert ("E117", "models.m.engine") in located(spec(), targets=["kserve"])
    assert ("E118", "models.m.engine") in located(spec(), targets=["gateway"])


def test_rollout_settings_draw_a_warning() -> None:
    compilation = compile_text(spec('rollout = { strategy = "Recreate" }'))
    assert [d.code for d in compilation.warnings] == ["W110"]


def test_min_replicas_zero_is_serves_and_the_worker_groups_minimum() -> None:
    service = ray_service(spec("replicas = 0\nautoscaling = { min_replicas = 0, max_replicas = 2 }"))
    (llm,) = serve_config(service)["applications"][0]["args"]["llm_configs"]
    assert llm["deployment_config"] == {"autoscaling_config": {"min_replicas": 0, "max_replicas": 2}}
    workers = service["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]
    assert (workers["replicas"], workers["minReplicas"], workers["maxReplicas"]) == (0, 0, 2)


def test_an_activation_threshold_draws_a_warning() -> None:
    compilation = compile_text(spec("replicas = 0\nautoscaling = { min_replicas = 0, max_replicas = 2, activation = 1 }"))
    assert [(d.code, d.dotted_path) for d in compilation.warnings] == [("W112", "models.m.autoscaling.activation")]


def test_the_cuda_image_on_other_devices_draws_a_warning() -> None:
    text = spec().replace("accelerators = { count = 2 }", 'accelerators = { count = 2, resource = "amd.com/gpu" }')
    assert [d.code for d in compile_text(text).warnings] == ["W111"]


@pytest.mark.parametrize("extra", [
    "",
    'replicas = 2\nautoscaling = { min_replicas = 1, max_replicas = 4, signal = "running", target = 8 }',
    "replicas = 0\nautoscaling = { min_replicas = 0, max_replicas = 2 }\nserving = { tensor_parallel = 4 }",
    'security.pod_security = "privileged"\nengine_options = { head_node_selector = { pool = "cpu" } }',
])
def test_every_variant_validates_against_kuberays_crd(extra: str, crd_validator) -> None:
    assert crd_validator(ray_service(spec(extra))) == []
