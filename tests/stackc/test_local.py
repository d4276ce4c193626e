"""stackc up's building blocks: compiled containers become local processes that start and stop cleanly."""

from __future__ import annotations

import os
import sys
import types
from pathlib import Path

import attrs

from stackc import hookimpl
from stackc.local.processes import plan
from stackc.local.up import lower_replica
from stackc.local.supervisor import READY, Supervisor
from stackc.plan.engine import (
    Capability,
    Container,
    EngineResult,
    LocalRun,
    Mount,
    Port,
    Probe,
)
from stackc.plugins import load_registry
from stackc.testing import compile_text

FAKE_ENGINE = Path(__file__).resolve().parents[1] / "fakes" / "fake_engine.py"


class FakeEngine:
    """A test engine whose container runs tests/fakes/fake_engine.py."""

    name = "fake"
    description = "fake engine for tests"
    capabilities = frozenset({Capability.CPU_ONLY, Capability.ACCELERATORS})
    options_type = None
    local_run = LocalRun({"python": (sys.executable,)}, "it is Python")

    def check(self, key, model, options):
        return ()

    def lower(self, request):
        host, number = (request.listen.host, request.listen.port) if request.listen else ("0.0.0.0", 9000)
        port = Port("http", number)
        container = Container(
            name="engine", image="python:3.11", command=("python", str(FAKE_ENGINE)),
            args=("--host", host, "--port", str(number), "--served-model-name", request.model_key,
                  "--startup-delay", "0.3"),
            ports=(port,), mounts=(Mount(request.cache_volume, "/cache"),),
            readiness_probe=Probe("/health"),
        )
        return EngineResult(container=container, served_names=(request.model_key,), port=port)


def fake_plugin() -> types.ModuleType:
    module = types.ModuleType("fake_engine_plugin")

    @hookimpl
    def stackc_add_engines(registry):
        registry.add_engine(FakeEngine())

    module.stackc_add_engines = stackc_add_engines
    return module


def on_this_machine(compilation, plugins=()):
    """Lowers each replica of the compiled spec for this machine, as stackc up does."""
    registry = load_registry(extra=plugins)
    return lambda component, listen: lower_replica(compilation.spec, registry, component, listen)


#: the fake engine loads nothing: its model is a folder this machine has
SPEC = f'version = 1\n[stack]\nname = "l"\n[models.tiny]\nengine = "fake"\nmodel = "{FAKE_ENGINE.parent}"\nreplicas = 2\n'


def test_plan_substitutes_host_port_and_paths(tmp_path: Path) -> None:
    compilation = compile_text(SPEC, plugins=[fake_plugin()])
    processes, problems = plan(compilation.plan.components, {"fake": FakeEngine.local_run}, tmp_path,
                                 on_this_machine(compilation, [fake_plugin()]))
    assert problems == []
    first, second = processes
    assert first.argv[:2] == (sys.executable, str(FAKE_ENGINE))
    assert first.argv[2:4] == ("--host", "127.0.0.1")
    assert first.argv[5] == str(first.port) and first.port != second.port
    assert first.log == tmp_path / "logs" / "tiny-0.log"


def test_missing_binary_and_missing_accelerator_are_explained(tmp_path: Path) -> None:
    compilation = compile_text(SPEC, plugins=[fake_plugin()])
    missing = LocalRun({"python": ("no-such-python-binary",)}, "pip install 'stackc[local]'")
    _, problems = plan(compilation.plan.components, {"fake": missing}, tmp_path,
                       on_this_machine(compilation, [fake_plugin()]))
    assert [(p.code, p.hint) for p in problems] == [("E042", "pip install 'stackc[local]'")]
    component = compilation.plan.components[0]
    gpu = attrs.evolve(component, accelerators=attrs.evolve(component.accelerators, count=1))
    _, problems = plan([gpu], {"fake": FakeEngine.local_run}, tmp_path, on_this_machine(compilation, [fake_plugin()]))
    assert [p.code for p in problems] == ["E041"] and "--skip tiny" in problems[0].hint
    _, problems = plan([gpu], {"fake": FakeEngine.local_run}, tmp_path, on_this_machine(compilation, [fake_plugin()]),
                       skip=["tiny"])
    assert problems == []


def test_supervisor_starts_until_ready_and_leaves_no_process_behind(tmp_path: Path) -> None:
    compilation = compile_text(SPEC, plugins=[fake_plugin()])
    processes, _ = plan(compilation.plan.components, {"fake": FakeEngine.local_run}, tmp_path,
                                 on_this_machine(compilation, [fake_plugin()]))
    supervisor = Supervisor(open(os.devnull, "w"))
    try:
        supervisor.start(processes)
        assert supervisor.wait_ready(30)
        assert [r.state for r in supervisor.running] == [READY, READY]
    finally:
        supervisor.stop(grace=5)
    for item in supervisor.running:
        assert item.popen.poll() is not None
        assert not Path(f"/proc/{item.popen.pid}").exists()


def test_weights_the_cluster_downloads_first_are_not_fetched_here(tmp_path: Path) -> None:
    compilation = compile_text('version = 1\n[stack]\nname = "l"\n[models.q]\nengine = "llamacpp"\n'
                               'model = "s3://bucket/q4.gguf"\n')
    _, problems = plan(compilation.plan.components, {"llamacpp": LocalRun({"/app/llama-server": (sys.executable,)})},
                       tmp_path, on_this_machine(compilation))
    assert [p.code for p in problems] == ["E043"] and "s3://bucket/q4.gguf" in problems[0].message
