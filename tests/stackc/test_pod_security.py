"""Pod Security "restricted" by default: every pod stackc emits for every example spec is admitted by a
namespace enforcing it, except where a model opts out (``security.pod_security``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from stackc import pipeline
from stackc.plugins import load_registry
from stackc.testing import compile_text, objects, pod_security_problems, pod_templates

REPO = Path(__file__).resolve().parents[2]
SPECS = sorted(p for p in (REPO / "specs").rglob("*.toml") if "invalid" not in p.parts)
BASE = """\
version = 1
[stack]
name = "s"
targets = ["manifests", "kserve"]
[models.m]
engine = "vllm"
model = "org/m-1b"
accelerators = { count = 1 }
"""


def pods(files) -> list[tuple[str, dict, dict]]:
    return [(f"{o['kind']}/{o['metadata']['name']}", meta, pod) for o in objects(files) for meta, pod in pod_templates(o)]


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.relative_to(REPO / "specs").as_posix())
def test_every_emitted_pod_of_every_example_is_restricted(spec: Path) -> None:
    registry = load_registry()
    checked = pipeline.check([spec], registry).spec
    opted_out = [key for key, model in checked.models.items() if model.security.pod_security != "restricted"]
    assert opted_out == []  # no example needs root; an opt-out would be skipped here
    # KServe's predictors too, where KServe can run the models (not multi-node ones, nor ones scaled to zero,
    # nor Ray clusters, nor disaggregated ones)
    kserve = {"kserve"} if all(model.serving.nodes == 1 and model.autoscaling.min_replicas != 0
                               and model.engine != "ray-vllm" and model.disaggregation is None
                               for model in checked.models.values()) else set()
    targets = sorted({*checked.stack.targets, *kserve})
    found = pods(pipeline.compile_stack([spec], registry, targets=targets).files)
    assert found
    assert {name: problems for name, meta, pod in found if (problems := pod_security_problems(meta, pod))} == {}


@pytest.mark.parametrize("engine, model, extra, user, group", [
    ("vllm", "org/m-1b", "", 2000, 0),
    ("vllm", "org/m-1b", "accelerators = { count = 0 }", 2000, 0),
    ("sglang", "org/m-1b", "", 1000, 1000),
    ("trtllm", "org/m-1b", "", 1000, 1000),
    ("trtllm", "org/m-1b", 'engine_options = { mode = "triton", checkpoint_dir = "/ckpt" }\n', 1000, 1000),
    ("llamacpp", "hf://org/r/m.gguf", "", 1000, 1000),
    ("ollama", "ollama://llama3.2:1b", "", 1000, 1000),
    ("neuron", "org/m-1b", 'accelerators = { count = 1, resource = "aws.amazon.com/neuron" }', 1000, 1000),
])
def test_each_engine_runs_as_its_images_non_root_user_with_a_writable_home(
        engine: str, model: str, extra: str, user: int, group: int) -> None:
    text = BASE.replace('"vllm"', f'"{engine}"').replace('"org/m-1b"', f'"{model}"')
    text = text.replace("accelerators = { count = 1 }", extra) if extra.startswith("accelerators") else text + extra
    files = compile_text(text).files
    (deployment,) = [o for o in objects(files) if o["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"] == {"runAsNonRoot": True, "runAsUser": user, "runAsGroup": group, "fsGroup": group,
                                      "fsGroupChangePolicy": "OnRootMismatch",
                                      "seccompProfile": {"type": "RuntimeDefault"}}
    assert {"name": "home", "emptyDir": {}} in pod["volumes"]
    for container in (*pod.get("initContainers", ()), *pod["containers"]):  # the engine's own, pull and build too
        assert {"name": "HOME", "value": "/stackc/home"} in container["env"]
        assert {"name": "USER", "value": "stackc"} in container["env"]
        assert {"name": "home", "mountPath": "/stackc/home"} in container["volumeMounts"]
        assert container["securityContext"] == {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
                                                "seccompProfile": {"type": "RuntimeDefault"}}
    assert all(pod_security_problems(meta, pod) == [] for _, meta, pod in pods(files))


def test_baseline_runs_as_the_images_user() -> None:
    files = compile_text(BASE + 'security.pod_security = "baseline"\n').files
    for name, meta, pod in pods(files):
        assert pod["securityContext"] == {"seccompProfile": {"type": "RuntimeDefault"}}
        assert not any(v["name"] == "home" for v in pod["volumes"])
        assert pod_security_problems(meta, pod, "baseline") == []
        assert any("may run as root" in problem for problem in pod_security_problems(meta, pod)), name


def test_privileged_sets_no_security_context_and_allows_host_ipc() -> None:
    files = compile_text(BASE + 'security.pod_security = "privileged"\nhost_ipc = true\n').files
    for _, meta, pod in pods(files):
        assert pod["securityContext"] == {} and pod["hostIPC"] is True
        assert all("securityContext" not in c for c in pod["containers"])
        assert "hostIPC is set" in pod_security_problems(meta, pod, "baseline")


def test_a_level_that_is_not_one_is_located() -> None:
    from stackc.diagnostics import DiagnosticsError

    with pytest.raises(DiagnosticsError) as caught:
        compile_text(BASE + 'security.pod_security = "root"\n')
    (error,) = [d.render() for d in caught.value.diagnostics]
    assert error.startswith("spec.toml:9:25: error[E005] models.m.security.pod_security:")


def test_the_specs_own_security_contexts_still_replace_stackcs() -> None:
    files = compile_text(BASE + "security.pod_security_context = { runAsUser = 4242, runAsNonRoot = true }\n").files
    (deployment,) = [o for o in objects(files) if o["kind"] == "Deployment"]
    assert deployment["spec"]["template"]["spec"]["securityContext"] == {"runAsUser": 4242, "runAsNonRoot": True}


RESTRICTED_CONTAINER = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}


@pytest.mark.parametrize("change, problem", [
    ({"hostNetwork": True}, "hostNetwork is set"),
    ({"volumes": [{"name": "v", "hostPath": {"path": "/"}}]}, "volume 'v' is a hostPath"),
    ({"volumes": [{"name": "v", "nfs": {"server": "s", "path": "/"}}]}, "volume 'v' is of a type restricted forbids"),
    ({"securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}, "runAsUser": 0}},
     "the pod runs as uid 0"),
    ({"securityContext": {"runAsNonRoot": True}}, "container 'c' has no RuntimeDefault or Localhost seccomp profile"),
    ({"containers": [{"name": "c", "securityContext": {**RESTRICTED_CONTAINER, "privileged": True}}]},
     "container 'c' is privileged"),
    ({"containers": [{"name": "c", "securityContext": {**RESTRICTED_CONTAINER, "capabilities": {
        "drop": ["ALL"], "add": ["SYS_ADMIN"]}}}]}, "container 'c' adds capabilities ['SYS_ADMIN']"),
    ({"containers": [{"name": "c", "securityContext": {"capabilities": {"drop": ["ALL"]}}}]},
     "container 'c' does not set allowPrivilegeEscalation: false"),
    ({"containers": [{"name": "c", "securityContext": {**RESTRICTED_CONTAINER, "runAsNonRoot": False}}]},
     "container 'c' may run as root (runAsNonRoot is not true)"),
    ({"containers": [{"name": "c", "securityContext": RESTRICTED_CONTAINER, "ports": [{"hostPort": 80}]}]},
     "container 'c' opens host port 80"),
    ({"initContainers": [{"name": "i", "securityContext": {"allowPrivilegeEscalation": False}}]},
     "container 'i' does not drop ALL capabilities"),
])
def test_the_checks_catch_what_the_standard_forbids(change: dict, problem: str) -> None:
    pod = {"securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
           "containers": [{"name": "c", "securityContext": RESTRICTED_CONTAINER}], "volumes": [{"name": "e", "emptyDir": {}}]}
    assert pod_security_problems({}, pod) == []
    assert any(problem in found for found in pod_security_problems({}, {**pod, **change}))


# -- every spec choice that loses "restricted" is a located warning --------------------------------------------
def restricted_warnings(text: str) -> tuple[list[tuple[str, str, str]], list[str]]:
    """(code, spec path, message) of the Pod Security warnings, and what the oracle finds in the emitted pods."""
    compilation = compile_text(text)
    warnings = [(d.code, d.dotted_path, d.render()) for d in compilation.warnings if d.code.startswith("W17")]
    return warnings, [problem for _, meta, pod in pods(compilation.files) for problem in pod_security_problems(meta, pod)]


@pytest.mark.parametrize("extra, code, path, control", [
    ('extra_volumes = [{ name = "h", hostPath = { path = "/data" } }]', "W172", "models.m.extra_volumes[0]",
     "HostPath Volumes"),
    ('extra_volumes = [{ name = "n", nfs = { server = "s", path = "/" } }]', "W172", "models.m.extra_volumes[0]",
     "Volume Types"),
    ("security.pod_security_context = { runAsNonRoot = false }", "W171", "models.m.security.pod_security_context",
     "Running as Non-root"),
    ("security.pod_security_context = { runAsNonRoot = true, runAsUser = 0 }", "W171",
     "models.m.security.pod_security_context", "Running as Non-root user"),
    ('security.pod_security_context = { runAsNonRoot = true, sysctls = [{ name = "kernel.msgmax", value = "1" }] }',
     "W171", "models.m.security.pod_security_context", "Sysctls"),
    ('security.pod_security_context = { runAsNonRoot = true, seccompProfile = { type = "Unconfined" } }', "W171",
     "models.m.security.pod_security_context", "Seccomp"),
    ("security.container_security_context = { privileged = true }", "W171",
     "models.m.security.container_security_context", "Privileged Containers"),
    ('security.container_security_context = { allowPrivilegeEscalation = false, capabilities = { drop = ["ALL"], '
     'add = ["SYS_ADMIN"] } }', "W171", "models.m.security.container_security_context", "Capabilities"),
    ('security.container_security_context = { capabilities = { drop = ["ALL"] } }', "W171",
     "models.m.security.container_security_context", "Privilege Escalation"),
    ('security.container_security_context = { allowPrivilegeEscalation = false, capabilities = { drop = ["ALL"] }, '
     "runAsNonRoot = false }", "W171", "models.m.security.container_security_context", "Running as Non-root"),
    ('security.pod_security = "baseline"', "W170", "models.m.security.pod_security", "Running as Non-root"),
    ('security.pod_security = "privileged"', "W170", "models.m.security.pod_security", "Privilege Escalation"),
    ('security.pod_security = "privileged"\nhost_ipc = true', "W173", "models.m.host_ipc", "Host Namespaces"),
])
def test_each_choice_that_loses_restricted_warns_at_it_naming_the_control(extra: str, code: str, path: str,
                                                                           control: str) -> None:
    warnings, problems = restricted_warnings(BASE + extra + "\n")
    assert problems  # the emitted pods do lose "restricted"
    assert any(c == code and p == path and f"({control})" in message and "hint:" in message
               for c, p, message in warnings), warnings
    assert all(message.startswith("spec.toml:") for _, _, message in warnings)


@pytest.mark.parametrize("extra", [
    "",
    "security.pod_security_context = { runAsNonRoot = true, runAsUser = 4242 }",
    'security.container_security_context = { allowPrivilegeEscalation = false, capabilities = { drop = ["ALL"] }, '
    "readOnlyRootFilesystem = true }",
    'extra_volumes = [{ name = "scratch", emptyDir = {} }, { name = "c", persistentVolumeClaim = { claimName = "c" } }]',
])
def test_choices_that_keep_restricted_do_not_warn(extra: str) -> None:
    assert restricted_warnings(BASE + extra + "\n") == ([], [])


def test_defaults_that_lose_restricted_warn_for_every_model_at_the_defaults() -> None:
    text = BASE.replace("[models.m]", '[defaults]\nsecurity.pod_security = "baseline"\n[models.m]')
    text += '[models.n]\nengine = "vllm"\nmodel = "org/n-1b"\naccelerators = { count = 1 }\n'
    warnings, _ = restricted_warnings(text)
    assert [(c, p, m.split(": ")[0]) for c, p, m in warnings] == [
        ("W170", "models.m.security.pod_security", "spec.toml:6:25"),
        ("W170", "models.n.security.pod_security", "spec.toml:6:25")]
