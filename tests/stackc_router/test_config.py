from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from stackc_router.config import ConfigError, parse


def test_every_problem_is_reported_with_its_path() -> None:
    with pytest.raises(ConfigError) as error:
        parse({"version": 2, "listen": {"port": "80"}, "models": {
            "a": {"strategy": "prefx", "backends": ["ftp://x"], "colour": 1},
            "b": {"served_name": "x"},
        }})
    problems = error.value.problems
    assert "version: unsupported config version 2 (expected 1)" in problems
    assert any(p.startswith("models.a.strategy: 'prefx' is not one of") for p in problems)
    assert any(p.startswith("models.a.backends[0]: expected an http:// URL") for p in problems)
    assert any(p.startswith("models.a.colour: unknown key") for p in problems)
    assert "models.b: needs backends or discovery.kubernetes" in problems
    assert any(p.startswith("listen.port: expected int") for p in problems)


def test_the_cli_exits_2_with_readable_errors(tmp_path) -> None:
    path = tmp_path / "router.yaml"
    path.write_text("models:\n  a:\n    strategy: nope\n    backends: [http://127.0.0.1:1]\n")
    result = subprocess.run([sys.executable, "-m", "stackc_router", "--config", str(path)], capture_output=True, text=True)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "config error: models.a.strategy: 'nope' is not one of" in result.stderr


def test_a_missing_key_file_is_a_clear_error_not_a_traceback(tmp_path) -> None:
    path = tmp_path / "router.yaml"
    path.write_text("models:\n  a:\n    backends: [http://127.0.0.1:1]\n    upstream_auth: {api_key_file: /nope/key}\n")
    result = subprocess.run([sys.executable, "-m", "stackc_router", "--config", str(path)], capture_output=True, text=True)
    assert result.returncode == 2 and "Traceback" not in result.stderr and "/nope/key" in result.stderr


def test_the_written_form_reads_back_as_it_was() -> None:
    from stackc_router.config import Config, KubernetesDiscovery, ModelRoute, to_data

    config = Config(
        models=(ModelRoute("a", "org/a", ("a1",), "session", "x-user", kubernetes=KubernetesDiscovery("ns", "svc", 8000),
                           health_path="/ready", health_interval_s=2.0, metrics_path="/metrics", metrics_port=9400,
                           running_metric="r",
                           waiting_metric="w", kv_usage_metric="kv", kv_capacity_metric="c",
                           kv_capacity_labels=("block_size", "num_gpu_blocks"), upstream_api_key_file="/k",
                           cache_chars=5000),
                ModelRoute("b", "b", backends=("http://127.0.0.1:9000",))),
        host="0.0.0.0", port=9999, max_body_bytes=1000, max_in_flight=7, max_connections=50, read_timeout_s=30.0,
        retries=1, api_keys_file="/keys", hold_queue=0, hold_timeout_s=5.0, hold_health_interval_s=0.5,
        max_connections_per_address=10, max_in_flight_per_address=2, max_connections_per_key=20,
        max_in_flight_per_key=4, max_headers=50)
    assert parse(yaml.safe_load(yaml.safe_dump(to_data(config)))) == config


def test_hold_settings_are_checked() -> None:
    with pytest.raises(ConfigError) as error:
        parse({"hold": {"queue": -1, "timeout_s": 0, "health_interval_s": "1s", "size": 3},
               "models": {"a": {"backends": ["http://127.0.0.1:1"]}}})
    assert set(error.value.problems) == {
        "hold.queue: expected 0 or more, got -1", "hold.timeout_s: expected a positive number of seconds, got 0",
        "hold.health_interval_s: expected int or float, got '1s'",
        "hold.size: unknown key (expected one of: health_interval_s, queue, timeout_s)"}


def test_the_router_target_and_stackc_up_write_configs_the_router_reads(tmp_path) -> None:
    from stackc.local.processes import LocalProcess
    from stackc.local.up import router_process
    from stackc.testing import compile_text, objects

    spec = ('version = 1\n[stack]\nname = "r"\ntargets = ["router"]\n[models.a]\nengine = "vllm"\nmodel = "org/a"\n'
            'aliases = ["x"]\naccelerators = { count = 1 }\nrouting = { strategy = "session" }\n')
    compilation = compile_text(spec)
    config_map = next(o for o in objects(compilation.files) if o["kind"] == "ConfigMap")
    cluster = parse(yaml.safe_load(config_map["data"]["router.yaml"]))
    replica = LocalProcess("a-0", "a", ("engine",), {}, 9000, "/health", tmp_path / "a.log")
    local = router_process(compilation.plan.components, [replica], tmp_path, 8080, compilation.spec, {})
    here = parse(yaml.safe_load((tmp_path / "router.yaml").read_text()))
    assert local.port == 8080
    assert cluster.models[0].served_name == here.models[0].served_name == "org/a"
    assert cluster.models[0].aliases == here.models[0].aliases == ("x",)
    assert cluster.models[0].strategy == here.models[0].strategy == "session"
    assert cluster.models[0].kv_capacity_metric == here.models[0].kv_capacity_metric == "vllm:cache_config_info"
    assert cluster.models[0].kv_capacity_labels == here.models[0].kv_capacity_labels == ("block_size", "num_gpu_blocks")
    assert (cluster.models[0].kubernetes.service, here.models[0].backends) == ("r-a", ("http://127.0.0.1:9000",))


def test_adapters_read_back_and_their_names_are_checked() -> None:
    from stackc_router.config import Config, ConfigError, ModelRoute, to_data

    route = ModelRoute("a", "org/a", backends=("http://127.0.0.1:9000",), adapters=("sql",),
                       runtime_adapters=(("guard", "org/guard"),), adapter_load_path="/v1/load_lora_adapter")
    config = Config(models=(route,))
    assert parse(yaml.safe_load(yaml.safe_dump(to_data(config)))) == config
    clash = {"models": {"a": {"backends": ["http://127.0.0.1:1"], "adapters": ["b"]},
                        "b": {"backends": ["http://127.0.0.1:2"],
                              "runtime_adapters": {"adapters": {"x": "/x"}}}}}
    with pytest.raises(ConfigError) as error:
        parse(clash)
    assert error.value.problems == ["models.b.runtime_adapters.endpoint: expected the engine's path for loading adapters",
                                    "models.b: name 'b' is also used by models.a"]


def test_a_metrics_port_must_be_a_port_number() -> None:
    with pytest.raises(ConfigError) as error:
        parse({"models": {"a": {"backends": ["http://127.0.0.1:1"], "metrics": {"path": "/metrics", "port": 70000}},
                          "b": {"backends": ["http://127.0.0.1:1"], "metrics": {"path": "/metrics", "port": "8002"}}}})
    assert error.value.problems == ["models.a.metrics.port: 70000 is not a port number (1-65535)",
                                    "models.b.metrics.port: expected int, got '8002'"]


def test_a_candidate_version_reads_back_and_is_written_with_what_is_not_its_default() -> None:
    from stackc_router.config import CandidateRoute, Config, KubernetesDiscovery, ModelRoute, to_data

    full = CandidateRoute(kubernetes=KubernetesDiscovery("ns", "svc-candidate", 8000), health_path="/ready",
                          weight=10, header="x-candidate", header_value="yes", mirror=True)
    config = Config(models=(ModelRoute("a", "org/a", backends=("http://127.0.0.1:9000",), candidate=full),
                            ModelRoute("b", "org/b", backends=("http://127.0.0.1:9001",),
                                       candidate=CandidateRoute(backends=("http://127.0.0.1:9002",)))))
    data = to_data(config)
    assert data["models"]["a"]["candidate"] == {
        "discovery": {"kubernetes": {"namespace": "ns", "service": "svc-candidate", "port": 8000}},
        "health": {"path": "/ready"}, "weight": 10, "header": {"name": "x-candidate", "value": "yes"}, "mirror": True}
    assert data["models"]["b"]["candidate"] == {"backends": ["http://127.0.0.1:9002"]}
    assert parse(yaml.safe_load(yaml.safe_dump(data))) == config
    header_only = parse({"models": {"a": {"backends": ["http://127.0.0.1:1"],
                                          "candidate": {"backends": ["http://127.0.0.1:2"], "header": {"name": "X-C"}}}}})
    assert header_only.models[0].candidate == CandidateRoute(backends=("http://127.0.0.1:2",), header="X-C")


@pytest.mark.parametrize(("candidate", "problems"), [
    ({"backends": ["http://127.0.0.1:2"], "weight": 101},
     ["models.a.candidate.weight: expected a percentage of the model's requests (0-100), got 101"]),
    ({"backends": ["http://127.0.0.1:2"], "weight": -1},
     ["models.a.candidate.weight: expected a percentage of the model's requests (0-100), got -1"]),
    ({"backends": ["http://127.0.0.1:2"], "weight": "10%", "mirror": "yes"},
     ["models.a.candidate.weight: expected int, got '10%'", "models.a.candidate.mirror: expected bool, got 'yes'"]),
    ({"backends": ["http://127.0.0.1:2"], "weight": True}, ["models.a.candidate.weight: expected int, got True"]),
    ({"backends": ["http://127.0.0.1:2"], "header": {"name": "x candidate", "value": "a\nb"}},
     ["models.a.candidate.header.name: expected an HTTP field name (a token, such as x-candidate), got 'x candidate'",
      "models.a.candidate.header.value: expected a field value (printable ASCII, no leading or trailing space), "
      "got 'a\\nb'"]),
    ({"backends": ["http://127.0.0.1:2"], "header": {"value": "on", "colour": 1}},
     ["models.a.candidate.header.colour: unknown key (expected one of: name, value)",
      "models.a.candidate.header.name: expected an HTTP field name (a token, such as x-candidate), got None"]),
    ({"weight": 5, "replicas": 2},
     ["models.a.candidate.replicas: unknown key (expected one of: backends, discovery, header, health, mirror, weight)",
      "models.a.candidate: needs backends or discovery.kubernetes"]),
    ("http://127.0.0.1:2", ["models.a.candidate: expected a mapping, got str",
                            "models.a.candidate: needs backends or discovery.kubernetes"]),
])
def test_a_candidate_version_is_checked(candidate, problems) -> None:
    with pytest.raises(ConfigError) as error:
        parse({"models": {"a": {"backends": ["http://127.0.0.1:1"], "candidate": candidate}}})
    assert error.value.problems == problems


def test_a_disaggregated_model_has_no_candidate_version() -> None:
    with pytest.raises(ConfigError) as error:
        parse({"models": {"a": {"backends": ["http://127.0.0.1:1"], "candidate": {"backends": ["http://127.0.0.1:2"]},
                                "prefill": {"protocol": "prefill_then_decode", "backends": ["http://127.0.0.1:3"]}}}})
    assert error.value.problems == ["models.a.candidate: a prefill/decode-disaggregated model (prefill) cannot have "
                                    "a candidate version"]
