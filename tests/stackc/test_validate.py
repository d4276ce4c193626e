"""Mistakes the fuzzer found and the API server would reject: located errors, never a crash."""

from __future__ import annotations

import pytest

from stackc.diagnostics import DiagnosticsError, Severity
from stackc.testing import compile_text

BASE = """\
version = 1
[stack]
name = "s"
targets = ["manifests", "kserve", "helm", "gateway", "router", "monitoring"]
[models.m]
engine = "vllm"
model = "org/m"
"""


def errors(text: str) -> list[str]:
    with pytest.raises(DiagnosticsError) as caught:
        compile_text(text)
    return [d.render() for d in caught.value.diagnostics if d.severity is Severity.ERROR]


@pytest.mark.parametrize("arg", ["{model.x}", "{model.upper}", "{port!r}", "{0}", "{"])
def test_command_arguments_take_bare_placeholders_only(arg: str) -> None:
    text = BASE.replace('engine = "vllm"', 'engine = "command"\nimage = "srv:1"') + \
        f"engine_options = {{ port = 8000, args = ['{arg}'] }}\n"
    (error,) = errors(text)
    assert error.startswith("spec.toml:9:") and "E037] models.m.engine_options.args[0]" in error


def test_a_toml_time_in_a_raw_kubernetes_table_is_located() -> None:
    (error,) = errors(BASE + "scheduling.affinity = { x = [1, { at = 12:30:00 }] }\n")
    assert 'spec.toml:8:' in error and "models.m.scheduling.affinity.x[1].at" in error and '"12:30:00"' in error


def test_extra_volumes_and_mounts_need_names_and_declared_volumes() -> None:
    found = errors(BASE + 'extra_volumes = [{ emptyDir = {} }, { name = "model-cache", emptyDir = {} }]\n'
                          'extra_volume_mounts = [{ name = "nope", mountPath = "/x" }, { mountPath = "/y" }]\n')
    assert any("extra_volumes[0]: needs 'name'" in e for e in found)
    assert any("extra_volume_mounts[1]: needs 'name'" in e for e in found)
    found = errors(BASE + 'extra_volumes = [{ name = "model-cache", emptyDir = {} }]\n'
                          'extra_volume_mounts = [{ name = "nope", mountPath = "/x" }]\n')
    assert any("extra_volumes[0].name: a volume named 'model-cache' is already in the pod" in e for e in found)
    assert any("mounts the volume 'nope', which the pod does not have" in e for e in found)


ALL_WRONG = BASE.replace('name = "s"', 'name = "s"\nlabels = { "a/b/c" = "x y" }') + """\
replicas = 2147483648
resources = { requests = { cpu = "2", "nvidia.com/gpu" = "1" }, limits = { cpu = "1" } }
scheduling.tolerations = [{ key = "a", operator = "Exists", value = "x", toleration_seconds = 3 }]
probes.startup = { period_seconds = -1 }
[targets.helm]
chart = ".."
[targets.gateway]
listeners = []
[targets.monitoring]
interval = "soon"
"""


def test_what_the_api_server_would_reject_is_a_located_error() -> None:
    found = "\n".join(errors(ALL_WRONG))
    for expected in ['stack.labels."a/b/c": \'a/b/c\' is not a label', "'x y' is not a label value",
                     "models.m.replicas: must be at most 2147483647", "requests.cpu: the request (2) is above the limit",
                     "'nvidia.com/gpu' cannot be overcommitted", "operator 'Exists' takes no value",
                     "toleration_seconds applies only to effect 'NoExecute'", "period_seconds: must be at least 1",
                     "targets.helm.chart: '..' is not a chart name", "targets.gateway.listeners: needs at least 1",
                     "targets.monitoring.interval: 'soon'"]:
        assert expected in found


def test_the_json_schema_carries_the_same_bounds() -> None:
    import tomllib

    import jsonschema

    from stackc.plugins import load_registry
    from stackc.check.schema import spec_schema

    validator = jsonschema.Draft202012Validator(spec_schema(load_registry()))
    found = {".".join(map(str, e.absolute_path)) for e in validator.iter_errors(tomllib.loads(ALL_WRONG))}
    assert {"stack.labels", "stack.labels.a/b/c", "models.m.replicas", "models.m.probes.startup.period_seconds",
            "targets.helm.chart", "targets.gateway.listeners", "targets.monitoring.interval"} <= found


def test_a_knative_revision_name_over_63_characters_is_an_error() -> None:
    text = BASE.replace('name = "s"', 'name = "abcd"').replace("[models.m]", "[models." + "a" * 44 + "]")
    text = text.replace('"monitoring"]', '"monitoring"]\n[targets.kserve]\ndeployment_mode = "Knative"')
    (error,) = [e for e in errors(text) if "error[" in e]  # and a warning: the router can't discover Knative pods
    assert "-predictor-00001', a name Knative derives, is longer than 63 characters" in error


def test_an_ollama_source_needs_the_ollama_engine() -> None:
    (error,) = errors(BASE.replace('"org/m"', '"ollama://llama3:8b"'))
    assert "models.m.model: engine 'vllm' does not support models from the Ollama library" in error


def test_nan_and_inf_in_a_raw_kubernetes_table_are_located() -> None:
    found = errors(BASE + 'extra_volumes = [{ name = "w", emptyDir = { x = [nan] } }]\n'
                          "scheduling.affinity = { x = -inf }\n")
    assert any("models.m.extra_volumes[0].emptyDir.x[0]: a number nan cannot go into a Kubernetes object" in e
               for e in found), found
    assert any("models.m.scheduling.affinity.x: a number -inf cannot" in e for e in found), found


ADAPTERS = """\
version = 1
[stack]
name = "s"
targets = [{targets}]
[models.a]
engine = "vllm"
model = "org/a"
aliases = ["a-alias"]
accelerators = {{ count = 1 }}
[models.b]
engine = "{engine}"
model = "{model}"
accelerators = {{ count = 1 }}
[models.b.serving]
lora_adapters = [{adapters}]
{serving}
"""


def adapter_errors(adapters: str, targets: str = '"router"', engine: str = "vllm", model: str = "org/b",
                   serving: str = "") -> list[str]:
    return errors(ADAPTERS.format(adapters=adapters, targets=targets, engine=engine, model=model, serving=serving))


@pytest.mark.parametrize(("adapters", "words"), [
    ('{ name = "org/a", source = "org/x" }', "'org/a' is already a name of model 'a'"),
    ('{ name = "a-alias", source = "org/x" }', "'a-alias' is already a name of model 'a'"),
    ('{ name = "org/b", source = "org/x" }', "'org/b' is already a name of model 'b'"),
    ('{ name = "x", source = "org/x" }, { name = "x", source = "org/y" }', "'x' is already an adapter of model 'b'"),
])
def test_an_adapter_name_must_lead_to_one_model(adapters: str, words: str) -> None:
    (problem,) = adapter_errors(adapters)
    assert "error[E012] models.b.serving.lora_adapters[" in problem and words in problem
    assert problem.startswith("spec.toml:15:")


@pytest.mark.parametrize(("adapters", "code", "path"), [
    ('{ name = "x", source = "oci://example.com/lora:1" }', "E013", "models.b.serving.lora_adapters[0].source"),
    ('{ name = "x", source = "not a source" }', "E013", "models.b.serving.lora_adapters[0].source"),
    ('{ name = "x", source = "s3://b/lora", revision = "v1" }', "E022", "models.b.serving.lora_adapters[0].revision"),
])
def test_adapter_sources_stackc_cannot_place_are_located(adapters: str, code: str, path: str) -> None:
    (problem,) = adapter_errors(adapters)
    assert f"error[{code}] {path}:" in problem


def test_run_time_adapters_need_a_target_that_loads_them() -> None:
    (problem,) = adapter_errors('{ name = "x", source = "org/x", load = "runtime" }', targets='"manifests", "gateway"')
    assert "error[E028] models.b.serving.lora_adapters[0].load:" in problem and "add router to stack.targets" in problem


@pytest.mark.parametrize(("engine", "model", "adapters", "serving", "words"), [
    ("llamacpp", "/m.gguf", '{ name = "x", source = "/x.gguf" }', "",
     "error[E020] models.b.serving.lora_adapters: engine 'llamacpp' does not support LoRA adapters"),
    ("neuron", "org/b", '{ name = "x", source = "org/x" }', "",
     "error[E020] models.b.serving.lora_adapters: engine 'neuron' does not support LoRA adapters"),
    ("sglang", "org/b", '{ name = "x", source = "org/x", load = "runtime" }', "",
     "error[E031] models.b.serving.max_lora_rank: SGLang needs max_lora_rank to load adapters at run time"),
])
def test_engines_that_cannot_serve_adapters_say_so_where(engine: str, model: str, adapters: str, serving: str,
                                                         words: str) -> None:
    problems = adapter_errors(adapters, engine=engine, model=model, serving=serving)
    assert any(words in p for p in problems), problems


def test_infinite_and_nan_numbers_are_refused_once_where_they_are_written() -> None:
    text = ('version = 1\n[stack]\nname = "t"\n[models.m]\nengine = "vllm"\nmodel = "org/m"\n'
            'accelerators = { count = 1 }\nserving = { gpu_memory_fraction = nan }\n'
            'autoscaling = { max_replicas = 3, signal = "waiting", target = inf }\n')
    with pytest.raises(DiagnosticsError) as error:
        compile_text(text)
    assert [(d.code, d.dotted_path) for d in error.value.diagnostics] == [
        ("E014", "models.m.serving.gpu_memory_fraction"), ("E014", "models.m.autoscaling.target")]


@pytest.mark.parametrize("source", ["s3://b/m", "pvc://claim/m", "ollama://llama3.2:3b"])
def test_a_revision_pins_only_a_hugging_face_model(source: str) -> None:
    engine = "ollama" if source.startswith("ollama") else "vllm"
    text = BASE.replace('engine = "vllm"\nmodel = "org/m"', f'engine = "{engine}"\nmodel = "{source}"')
    assert any("E022] models.m.revision: a revision pins only a Hugging Face model" in e
               for e in errors(text + 'revision = "v1"\n'))


def test_ollama_cannot_rename_the_model() -> None:
    text = BASE.replace('engine = "vllm"\nmodel = "org/m"', 'engine = "ollama"\nmodel = "ollama://llama3.2:3b"')
    assert any("E039] models.m.served_name: Ollama answers to the library tag it pulled" in e
               for e in errors(text + 'served_name = "chat"\n'))
    assert compile_text(text + 'served_name = "llama3.2:3b"\n').files
