"""Pipeline behaviour plugin authors rely on: warnings, crashes attributed, defaults inheritance."""

from __future__ import annotations

import json
import types

import pytest

from stackc import hookimpl
from stackc.diagnostics import Diagnostic, DiagnosticsError, Severity
from stackc.pipeline import PluginCrash
from stackc.testing import compile_text, objects
from stackc_plugins.engines.vllm import VllmEngine


def engine_plugin(name: str, engine: object) -> types.ModuleType:
    module = types.ModuleType(name)

    @hookimpl
    def stackc_add_engines(registry):
        registry.add_engine(engine)

    module.stackc_add_engines = stackc_add_engines
    return module


class WarningEngine(VllmEngine):
    name = "warns"

    def check(self, key, model, options):
        yield Diagnostic("W001", "this engine is experimental", ("engine",), severity=Severity.WARNING)


class CrashingEngine(VllmEngine):
    name = "crashes"

    def lower(self, request):
        raise KeyError("oops")


SPEC = 'version = 1\n[stack]\nname = "p"\n[models.m]\nengine = "{engine}"\nmodel = "org/m"\naccelerators = {{ count = 1 }}\n'


def test_warnings_are_located_and_do_not_stop_the_build() -> None:
    compilation = compile_text(SPEC.format(engine="warns"), plugins=[engine_plugin("warns_plugin", WarningEngine())])
    (warning,) = compilation.warnings
    assert warning.render() == "spec.toml:5:10: warning[W001] models.m.engine: this engine is experimental"
    assert compilation.files


def test_a_plugin_crash_names_the_plugin() -> None:
    with pytest.raises(PluginCrash, match=r"plugin <test> 0 \(crashes_plugin\) crashed in engine 'crashes' lower\(\): KeyError"):
        compile_text(SPEC.format(engine="crashes"), plugins=[engine_plugin("crashes_plugin", CrashingEngine())])


def test_defaults_are_inherited_and_tolerations_appended_or_replaced() -> None:
    spec = """
version = 1
[stack]
name = "d"
[defaults]
engine = "vllm"
replicas = 3
accelerators = { count = 1 }
scheduling.tolerations = [{ key = "gpu", operator = "Exists" }]
scheduling.node_selector = { pool = "gpu" }
[models.a]
model = "org/a"
scheduling.tolerations = [{ key = "a", operator = "Exists" }]
[models.b]
model = "org/b"
replicas = 1
scheduling = { tolerations_mode = "replace", tolerations = [{ key = "b", operator = "Exists" }] }
"""
    deployments = {o["metadata"]["name"]: o["spec"] for o in objects(compile_text(spec).files) if o["kind"] == "Deployment"}
    a, b = deployments["d-a"], deployments["d-b"]
    assert a["replicas"] == 3 and b["replicas"] == 1
    assert [t["key"] for t in a["template"]["spec"]["tolerations"]] == ["gpu", "a"]
    assert [t["key"] for t in b["template"]["spec"]["tolerations"]] == ["b"]
    assert a["template"]["spec"]["nodeSelector"] == b["template"]["spec"]["nodeSelector"] == {"pool": "gpu"}


def test_replacing_tolerations_with_none_leaves_the_defaults_out() -> None:
    spec = """
version = 1
[stack]
name = "d"
[defaults]
engine = "vllm"
accelerators = { count = 1 }
scheduling.tolerations = [{ key = "gpu", operator = "Exists" }]
[models.cpu]
model = "org/a"
scheduling = { tolerations_mode = "replace" }
"""
    compilation = compile_text(spec)
    (deployment,) = [o for o in objects(compilation.files) if o["kind"] == "Deployment"]
    assert "tolerations" not in deployment["spec"]["template"]["spec"]
    assert [d.code for d in compilation.warnings] == ["W154"]


def test_errors_inherited_from_defaults_point_at_the_defaults() -> None:
    spec = 'version = 1\n[stack]\nname = "d"\n[defaults]\nreplicas = -1\n[models.a]\nengine = "vllm"\nmodel = "org/a"\naccelerators = { count = 1 }\n'
    with pytest.raises(DiagnosticsError) as error:
        compile_text(spec)
    (diagnostic,) = error.value.diagnostics
    assert diagnostic.render().startswith("spec.toml:5:12: error[E014] models.a.replicas: must be at least 0")


def test_a_bad_value_inside_an_array_item_does_not_hide_the_other_errors() -> None:
    spec = ('version = 1\n[stack]\nname = "s"\n[models.m]\nengine = "vlm"\nmodel = "org/m"\naccelerators.count = 1\n'
            'scheduling.tolerations = [{ key = "a", operator = "Exists", toleration_seconds = "x" }]\n')
    with pytest.raises(DiagnosticsError) as error:
        compile_text(spec)
    assert [(d.code, d.dotted_path) for d in error.value.diagnostics] == [
        ("E010", "models.m.engine"), ("E006", "models.m.scheduling.tolerations[0].toleration_seconds")]


def test_aliases_must_be_unique_across_models() -> None:
    spec = SPEC.format(engine="vllm") + '[models.n]\nengine = "vllm"\nmodel = "org/n"\naliases = ["org/m"]\naccelerators = { count = 1 }\n'
    with pytest.raises(DiagnosticsError, match="'org/m' is already a name of model 'm'"):
        compile_text(spec)


class ReleaseTarget:
    """A target whose platform picks the namespace at install time, bundling the stack's add-ons."""

    name = "release"
    description = "test"
    options_type = None
    serves_models = True
    release_namespace = "placeholder-namespace"

    def emit(self, plan, options):
        return ()

    def bundle(self, plan, options, addons):
        from stackc.registry import Artifact
        seen = sorted({obj["metadata"]["namespace"] for artifacts in addons.values() for artifact in artifacts
                       for obj in artifact.objects if "namespace" in obj["metadata"]})
        yield Artifact("seen.json", data={"plan": plan.stack.namespace, "addons": seen})


def test_a_release_namespace_target_gets_its_plan_and_the_add_ons_in_that_namespace_and_no_one_else_does() -> None:
    module = types.ModuleType("release_plugin")

    @hookimpl
    def stackc_add_targets(registry):
        registry.add_target(ReleaseTarget())

    module.stackc_add_targets = stackc_add_targets
    text = SPEC.format(engine="vllm").replace('name = "p"\n', 'name = "p"\nnamespace = "ns"\ntargets = ["release", "router", "manifests"]\n')
    files = compile_text(text, plugins=[module]).files
    assert json.loads(files["release/seen.json"]) == {"plan": "placeholder-namespace", "addons": ["placeholder-namespace"]}
    assert {obj["metadata"]["namespace"] for obj in objects(files) if "namespace" in obj["metadata"]} == {"ns"}


def many_models(count: int, engine: str = "vllm", broken: str | None = None) -> str:
    """A spec of ``count`` models (enough for a compile to validate it in a worker process)."""
    models = "".join(f'[models.m{i}]\nengine = "{broken if broken and i == count - 1 else engine}"\nmodel = "org/m{i}"\n'
                     f'accelerators = {{ count = 1 }}\n' for i in range(count))
    return f'version = 1\n[stack]\nname = "p"\n{models}'


@pytest.fixture
def validated_aside(monkeypatch):
    """Validation in a worker process, as on a machine with two CPUs; the forks it makes."""
    from stackc import pipeline
    from stackc.output import parallel

    forks: list[int] = []
    fork = parallel.os.fork
    monkeypatch.setattr(parallel, "usable_cpus", lambda: 2)
    monkeypatch.setattr(pipeline, "usable_cpus", lambda: 2)
    monkeypatch.setattr(parallel.os, "fork", lambda: forks.append(1) or fork())
    monkeypatch.setattr(pipeline, "_WORKERS_FROM", 10**6)  # targets emitted here: only validation forks
    return forks


def test_a_large_spec_validated_aside_compiles_exactly_as_serially(validated_aside, monkeypatch) -> None:
    from stackc import pipeline

    text = many_models(30, engine="warns")
    plugins = [engine_plugin("warns_plugin", WarningEngine())]
    aside = compile_text(text, plugins=plugins)
    assert validated_aside == [1]
    monkeypatch.setattr(pipeline, "_VALIDATE_ASIDE_FROM", 10**6)
    serial = compile_text(text, plugins=plugins)
    assert validated_aside == [1]
    assert aside.files == serial.files and aside.warnings == serial.warnings and len(aside.warnings) == 30


def test_a_spec_with_errors_reports_them_whatever_lowering_it_ahead_raised(validated_aside) -> None:
    """Lowering goes ahead of validation, and an invalid spec may break it: only the errors are reported."""
    with pytest.raises(DiagnosticsError) as raised:
        compile_text(many_models(30, broken="vlm"))
    assert validated_aside == [1]
    assert [d.code for d in raised.value.diagnostics] == ["E010"] and "did you mean 'vllm'" in str(raised.value.diagnostics[0].hint)


def test_a_crash_of_what_went_ahead_is_raised_once_the_spec_checks_out(validated_aside) -> None:
    with pytest.raises(PluginCrash, match=r"crashed in engine 'crashes' lower\(\): KeyError"):
        compile_text(many_models(30, engine="crashes"), plugins=[engine_plugin("crashes_plugin", CrashingEngine())])
    assert validated_aside == [1]


def test_a_plugin_crash_while_validating_aside_is_raised_as_serially(validated_aside) -> None:
    class CheckCrash(VllmEngine):
        name = "checkcrash"

        def check(self, key, model, options):
            raise ValueError("broken check")

    with pytest.raises(PluginCrash, match=r"crashed in engine 'checkcrash' check\(\): ValueError: broken check"):
        compile_text(many_models(30, engine="checkcrash"), plugins=[engine_plugin("checkcrash_plugin", CheckCrash())])


@pytest.mark.parametrize("models", [3, 30])
def test_a_spec_with_errors_is_not_lowered_where_validation_runs_here(models: int, monkeypatch) -> None:
    """Lowering ahead of validation only pays beside a worker: a small spec, or a machine with one CPU, is
    lowered once it checks out, so an invalid spec never reaches the engines' lower()."""
    from stackc import pipeline

    monkeypatch.setattr(pipeline, "usable_cpus", lambda: 1)
    lowered: list[int] = []
    lower = pipeline.lower_platforms
    monkeypatch.setattr(pipeline, "lower_platforms", lambda *args: lowered.append(1) or lower(*args))
    with pytest.raises(DiagnosticsError):
        compile_text(many_models(models, broken="vlm"))
    assert lowered == []
    compile_text(many_models(models))
    assert lowered == [1]
