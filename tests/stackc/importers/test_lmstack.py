"""LMStack (production-stack's first chart): the keys it shares with vllm-stack, rendered its way; the
keys it ignores reported."""

from __future__ import annotations

import tomllib
from pathlib import Path

from stackc.importers.run import import_values
from stackc.testing import compile_text, objects

VALUES = """servingEngineSpec:
  runtimeClassName: ""
  modelSpec:
  - name: opt
    repository: lmcache/vllm-openai
    tag: latest
    modelURL: facebook/opt-125m
    requestCPU: 6
    requestMemory: 16Gi
    requestGPU: 1
    pvcStorage: 10Gi
    vllmConfig:
      maxModelLen: 4096
      tensorParallelSize: 2
    keda:
      enabled: true
"""


def test_lmstack_renders_its_way_and_reports_what_it_ignores(tmp_path: Path) -> None:
    (tmp_path / "values.yaml").write_text(VALUES)
    result = import_values("lmstack", [str(tmp_path / "values.yaml")])
    ignored = {d.dotted_path: d for d in result.report}
    assert set(ignored) == {"servingEngineSpec.modelSpec[0].vllmConfig.tensorParallelSize",
                            "servingEngineSpec.modelSpec[0].keda"}
    assert "lmstack chart ignores" in ignored["servingEngineSpec.modelSpec[0].keda"].message
    assert ignored["servingEngineSpec.modelSpec[0].keda"].location.line == 15
    model = tomllib.loads(result.text)["models"]["opt"]
    assert "autoscaling" not in model and model["serving"] == {"max_context": 4096}  # no tensor parallelism
    [deployment] = [o for o in objects(compile_text(result.text).files)
                    if o["kind"] == "Deployment" and o["metadata"]["name"].endswith("-opt")]
    pod = deployment["spec"]["template"]["spec"]
    [engine] = [c for c in pod["containers"] if c["name"] == "engine"]
    assert engine["imagePullPolicy"] == "IfNotPresent" and "runtimeClassName" not in pod
    assert engine["resources"]["limits"]["cpu"] == "6" and engine["resources"]["limits"]["memory"] == "16Gi"
    assert engine["startupProbe"]["failureThreshold"] == 60  # the chart's own startup probe
    assert "--no-enable-prefix-caching" not in engine["args"]


def test_lmstacks_one_engine_service_is_the_stacks_engines_service(tmp_path: Path) -> None:
    (tmp_path / "values.yaml").write_text(VALUES + """  - name: other
    repository: lmcache/vllm-openai
    tag: latest
    modelURL: facebook/opt-350m
    requestGPU: 1
""")
    result = import_values("lmstack", [str(tmp_path / "values.yaml")], name="lm")
    assert tomllib.loads(result.text)["stack"]["engines_service"] == {"name": "lm-engine-service", "port": 80}
    found = objects(compile_text(result.text).files)
    [service] = [o for o in found if o["kind"] == "Service" and o["metadata"]["name"] == "lm-engine-service"]
    assert service["spec"]["selector"] == {"stackc.dev/engines-service": "lm-engine-service"}
    assert service["spec"]["ports"][0]["port"] == 80  # the chart's servicePort
    engines = [o for o in found if o["kind"] == "Deployment" and o["metadata"]["name"] in ("lm-opt", "lm-other")]
    assert len(engines) == 2 and all(
        e["spec"]["template"]["metadata"]["labels"]["stackc.dev/engines-service"] == "lm-engine-service" for e in engines)
