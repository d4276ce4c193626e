"""Test helpers for stackc and for plugin authors (a pytest plugin, like pytest's ``pytester``).

Fixtures:

* ``stackc_compile`` — compile a spec given as TOML text (plus optional extra plugin modules),
  returning a ``Compilation`` or raising ``DiagnosticsError``.
* ``kubernetes_validator`` — validate an object against the Kubernetes OpenAPI schema (strict).

Helpers: ``compile_text``, ``objects``, ``wiring_problems`` (what pods would fail to reach),
``write_tiny_gguf`` (a 0.6 MB GGUF model) and ``local_llama_server`` (the llama-server command
``stackc up`` runs on this machine).
"""

from __future__ import annotations

import copy
import functools
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from stackc import pipeline
from stackc.check.plan import KUBERAY_HEAD_SUFFIX, addresses
from stackc.check.pod_security import RESTRICTED_VOLUMES, SAFE_SYSCTLS, SELINUX_TYPES
from stackc.plugins import load_registry
from stackc.records import frozen

KUBERNETES_VERSION = "1.35.0"


def compile_text(text: str, *, settings: Sequence[str] = (), targets: Sequence[str] | None = None,
                 plugins: Sequence[ModuleType] = (), name: str = "spec.toml") -> pipeline.Compilation:
    """Compile one spec from text with the installed plugins plus ``plugins``."""
    registry = _registry(tuple(plugins))
    return pipeline.compile_stack([name], registry, settings, targets, texts=[(name, text)])


@functools.cache
def _registry(plugins: tuple[ModuleType, ...]) -> Any:
    return load_registry(extra=plugins)


def objects(files: Mapping[str, bytes], suffix: str = ".yaml") -> list[dict]:
    """Every Kubernetes object in the rendered YAML files (kustomizations and Helm templates excluded)."""
    found = []
    for name in sorted(files):
        if not name.endswith(suffix) or name.endswith("kustomization.yaml") or "/templates/" in name:
            continue
        for document in yaml.safe_load_all(files[name]):
            if isinstance(document, dict) and "kind" in document and "apiVersion" in document:
                found.append(document)
    return found


def validate_kubernetes(obj: Mapping[str, Any], version: str = KUBERNETES_VERSION) -> list[str]:
    """Problems with ``obj`` under the Kubernetes OpenAPI schema, strict (unknown fields fail)."""
    import kubernetes_validate

    _cache_kubernetes_schemas()
    try:
        kubernetes_validate.validate(dict(obj), version, strict=True)
    except kubernetes_validate.ValidationError as error:
        return [f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}: {error.message} at {list(error.path)}"]
    except kubernetes_validate.SchemaNotFoundError as error:
        return [f"{obj.get('kind')}: no schema ({error})"]
    return []


@functools.cache
def _cache_kubernetes_schemas() -> None:
    """kubernetes-validate reads its 1 MB definitions file again for every object: read each file once."""
    import kubernetes_validate.utils

    kubernetes_validate.utils.schema_contents = functools.cache(kubernetes_validate.utils.schema_contents)


def _integer_formats() -> Any:
    """Checks of the schemas' integer formats, which jsonschema does not assert by itself."""
    import jsonschema

    checker = jsonschema.FormatChecker(())
    for name, bits in (("int32", 32), ("int64", 64)):
        checker.checks(name)(lambda value, bits=bits: not isinstance(value, int) or -2 ** (bits - 1) <= value < 2 ** (bits - 1))
    return checker


def _kubernetes_integer_problems(obj: Mapping[str, Any], version: str = KUBERNETES_VERSION) -> list[str]:
    """Integers out of their OpenAPI ``format`` (int32, int64): the API server rejects them, kubernetes-validate
    does not check formats."""
    import re

    import jsonschema
    import kubernetes_validate.utils as utils
    from referencing import Registry, Resource

    _cache_kubernetes_schemas()
    folder = f"kubernetes-json-schema/v{version}-local-strict"
    api_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", obj["apiVersion"])
    schema = utils.schema_contents(f"{folder}/{obj['kind'].lower()}-{api_version}.json", version)
    registry = Resource.from_contents(utils.schema_contents(f"{folder}/_definitions.json", version)) @ (
        Resource.from_contents(schema) @ Registry())
    validator = jsonschema.Draft202012Validator(schema, registry=registry, format_checker=_integer_formats())
    return [f"{obj['kind']}/{obj['metadata'].get('name')}: {error.message} at {list(error.absolute_path)}"
            for error in validator.iter_errors(dict(obj)) if error.validator == "format"]


def api_limit_problems(files: Mapping[str, bytes]) -> list[str]:
    """What the API server rejects in the files' objects beyond their schemas' types: integers out of their
    int32/int64 format (core kinds and CRDs), ConfigMap or Secret data over 1 MiB, annotations over 256 KiB,
    names longer than a DNS subdomain (253) or, for Services and Namespaces, a DNS label (63)."""
    from stackc.plan.limits import ANNOTATION_BYTES, DATA_BYTES, annotation_bytes, data_bytes

    problems = []
    for obj in objects(files):
        name = f"{obj['kind']}/{obj['metadata'].get('name')}"
        if is_core_kind(obj):
            problems += _kubernetes_integer_problems(obj)
        else:
            problems += [p for p in validate_custom_resource(obj, formats=True) if "is not a" in p]
        if obj["kind"] in ("ConfigMap", "Secret"):
            size = data_bytes(obj.get("data") or {}) + data_bytes(obj.get("binaryData") or {})
            if size > DATA_BYTES:
                problems.append(f"{name}: {size} bytes of data")
        for meta in (obj["metadata"], *(meta for meta, _ in pod_templates(obj))):
            if annotation_bytes(meta.get("annotations") or {}) > ANNOTATION_BYTES:
                problems.append(f"{name}: annotations of {annotation_bytes(meta['annotations'])} bytes")
        longest = 63 if obj["kind"] in ("Service", "Namespace") else 253
        if len(obj["metadata"].get("name", "")) > longest:
            problems.append(f"{name}: a name longer than {longest} characters")
        for meta, pod in [(obj["metadata"], {}), *pod_templates(obj)]:
            problems += [f"{name}: label {key}={value} longer than 63 characters"
                         for key, value in (meta.get("labels") or {}).items() if len(str(value)) > 63]
            for container in (*pod.get("initContainers", ()), *pod.get("containers", ())):
                if len(container.get("name", "")) > 63:
                    problems.append(f"{name}: container name {container['name']} longer than 63 characters")
                problems += [f"{name}: port name {port['name']} longer than 15 characters"
                             for port in container.get("ports", ()) if len(port.get("name", "")) > 15]
    return problems


def is_core_kind(obj: Mapping[str, Any]) -> bool:
    """True for the built-in Kubernetes kinds (validated by OpenAPI, not by a CRD)."""
    group = obj["apiVersion"].rpartition("/")[0]
    return group == "" or not group.count(".") or group.endswith(".k8s.io") and group.split(".")[0] in {
        "rbac", "networking", "policy", "storage", "discovery", "autoscaling", "admissionregistration",
        "apiextensions", "scheduling", "node", "coordination", "certificates", "flowcontrol", "resource"}


@pytest.fixture
def stackc_compile() -> Callable[..., pipeline.Compilation]:
    return compile_text


@pytest.fixture
def kubernetes_validator() -> Callable[[Iterable[Mapping[str, Any]]], list[str]]:
    def validate_all(items: Iterable[Mapping[str, Any]]) -> list[str]:
        return [problem for item in items for problem in validate_kubernetes(item)]

    return validate_all


TINY_MODEL_WORDS = ("hello", "world", "llama", "model", "stack", "config", "deploy", "the", "a", "is", "to", "and",
                    "of", "one", "for", "you", "be", "at", "then", "serve", "route", "cache", "token", "fast")
CHATML = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def local_llama_server() -> str:
    """The llama-server command ``stackc up`` would run here; fails the test when none is installed.

    Real-engine tests never skip: the ``local`` extra installs a runner on every supported CPU.
    """
    import shutil

    local_run = _registry(()).engine("llamacpp").local_run
    for candidates in local_run.binaries.values():
        for candidate in candidates:
            if found := shutil.which(candidate):
                return found
    pytest.fail(f"no llama-server here: {local_run.install_hint}")


def write_tiny_gguf(path: str | os.PathLike) -> None:
    """Write a tiny llama-architecture GGUF model (0.6 MB, seeded, byte-identical every time).

    It loads in llama.cpp and generates readable words from a small vocabulary, so tests and
    ``stackc up`` demos need no model download. Needs the ``gguf`` and ``numpy`` packages.
    """
    import gguf
    import numpy as np

    tokens: list[str] = ["<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>"]
    types = [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL,
             gguf.TokenType.CONTROL, gguf.TokenType.CONTROL]
    tokens += [f"<0x{b:02X}>" for b in range(256)]
    types += [gguf.TokenType.BYTE] * 256
    pieces = dict.fromkeys(["▁", *(chr(c) for c in range(33, 127))])
    for word in TINY_MODEL_WORDS:
        for end in range(2, len(word) + 2):
            pieces["▁" + word[: end - 1]] = None
    tokens += list(pieces)
    types += [gguf.TokenType.NORMAL] * len(pieces)
    scores = [0.0] * 261 + [float(len(p)) for p in pieces]
    words = {i for i, t in enumerate(tokens) if t.startswith("▁") and t[1:] in TINY_MODEL_WORDS}

    vocab, embd, heads, ff, layers = len(tokens), 64, 4, 128, 2
    rng = np.random.default_rng(20261122)

    def weights(*shape: int, scale: float = 0.02) -> np.ndarray:
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    writer = gguf.GGUFWriter(os.fspath(path), "llama")
    writer.add_name("stackc-tiny")
    writer.add_context_length(2048)
    writer.add_embedding_length(embd)
    writer.add_block_count(layers)
    writer.add_feed_forward_length(ff)
    writer.add_head_count(heads)
    writer.add_head_count_kv(heads)
    writer.add_rope_dimension_count(embd // heads)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_unk_token_id(0)
    writer.add_add_bos_token(True)
    writer.add_chat_template(CHATML)
    embedding = weights(vocab, embd)
    embedding[:, 0] = 1.0  # a constant residual direction the output layer reads
    output = weights(vocab, embd)
    output[:, 0] = [4.0 if i in words else -4.0 for i in range(vocab)]  # whole words win, EOS never does
    writer.add_tensor("token_embd.weight", embedding)
    for layer in range(layers):
        prefix = f"blk.{layer}"
        writer.add_tensor(f"{prefix}.attn_norm.weight", np.ones(embd, dtype=np.float32))
        for name in ("attn_q", "attn_k", "attn_v", "attn_output"):
            writer.add_tensor(f"{prefix}.{name}.weight", weights(embd, embd))
        writer.add_tensor(f"{prefix}.ffn_norm.weight", np.ones(embd, dtype=np.float32))
        writer.add_tensor(f"{prefix}.ffn_gate.weight", weights(ff, embd))
        writer.add_tensor(f"{prefix}.ffn_up.weight", weights(ff, embd))
        writer.add_tensor(f"{prefix}.ffn_down.weight", weights(embd, ff))
    writer.add_tensor("output_norm.weight", np.ones(embd, dtype=np.float32))
    writer.add_tensor("output.weight", output)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def crds_dir() -> Path | None:
    """The upstream CRDs: $STACKC_CRDS_DIR, else ``shared/crds`` beside the checkout (None if absent)."""
    configured = os.environ.get("STACKC_CRDS_DIR")
    candidates = [Path(configured)] if configured else [Path.cwd().parent / "shared" / "crds",
                                                         Path(__file__).resolve().parents[3] / "shared" / "crds"]
    return next((c for c in candidates if c.is_dir()), None)


def charts_dir() -> Path | None:
    """The seed Helm charts and their example values: $STACKC_CHARTS_DIR, else ``shared/charts`` beside the
    checkout (None if absent)."""
    configured = os.environ.get("STACKC_CHARTS_DIR")
    candidates = [Path(configured)] if configured else [Path.cwd().parent / "shared" / "charts",
                                                         Path(__file__).resolve().parents[3] / "shared" / "charts"]
    return next((c for c in candidates if c.is_dir()), None)


@functools.cache
def _crd_schemas(directory: str) -> dict[tuple[str, str, str], dict]:
    """(group, version, kind) -> the served version's openAPIV3Schema, closed against unknown fields."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    schemas = {}
    for path in sorted(Path(directory).rglob("*.yaml")):
        for crd in yaml.load_all(path.read_text(), Loader=loader):
            if not isinstance(crd, dict) or crd.get("kind") != "CustomResourceDefinition":
                continue
            spec = crd["spec"]
            for version in spec["versions"]:
                schema = version.get("schema", {}).get("openAPIV3Schema")
                if version.get("served") and schema:
                    schemas[(spec["group"], version["name"], spec["names"]["kind"])] = _closed(schema)
    return schemas


def _closed(node: Any) -> Any:
    """additionalProperties: false wherever the API server would prune unknown fields."""
    if isinstance(node, list):
        return [_closed(item) for item in node]
    if not isinstance(node, dict):
        return node
    closed = {key: _closed(value) for key, value in node.items()}
    if "properties" in node and not node.get("x-kubernetes-preserve-unknown-fields") \
            and "additionalProperties" not in node:
        closed["additionalProperties"] = False
    return closed


def validate_custom_resource(obj: Mapping[str, Any], directory: Path | None = None, *,
                             formats: bool = False) -> list[str]:
    """Problems with a custom resource under its upstream CRD's schema (unknown fields fail; with ``formats``,
    integers out of their int32 or int64 format too)."""
    import jsonschema

    directory = directory or crds_dir()
    if directory is None:
        raise FileNotFoundError("no CRD directory: set STACKC_CRDS_DIR")
    group, _, version = obj["apiVersion"].rpartition("/")
    schema = _crd_schemas(str(directory)).get((group, version, obj["kind"]))
    name = f"{obj['kind']}/{obj.get('metadata', {}).get('name')}"
    if schema is None:
        return [f"{name}: no served CRD for {obj['apiVersion']} {obj['kind']}"]
    validator = jsonschema.Draft7Validator(schema, format_checker=_integer_formats() if formats else None)
    problems = [f"{name}: {error.message} at {list(error.absolute_path)}"
                for error in sorted(validator.iter_errors(dict(obj)), key=lambda e: list(map(str, e.absolute_path)))]
    return problems or [f"{name}: {problem}" for problem in _cel_problems(_defaulted(dict(obj), schema), schema, [])]


def _defaulted(value: Any, schema: Mapping[str, Any]) -> Any:
    """``value`` with the schema's defaults filled in, as the API server does before validating."""
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        result = {key: _defaulted(item, properties.get(key) or _additional(schema)) for key, item in value.items()}
        for key, field in properties.items():
            if key not in result and "default" in field:
                result[key] = _defaulted(copy.deepcopy(field["default"]), field)
        return result
    if isinstance(value, list):
        return [_defaulted(item, schema.get("items", {})) for item in value]
    return value


def _additional(schema: Mapping[str, Any]) -> Mapping[str, Any]:
    additional = schema.get("additionalProperties")
    return additional if isinstance(additional, dict) else {}


def _cel_problems(value: Any, schema: Mapping[str, Any], path: list[Any]) -> Iterator[str]:
    """The CRD's CEL rules (``x-kubernetes-validations``) that ``value`` breaks, evaluated as on
    create: transition rules (``oldSelf``) don't apply, a rule that can't evaluate fails."""
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        for key, item in value.items():
            yield from _cel_problems(item, properties.get(key) or _additional(schema), [*path, key])
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _cel_problems(item, schema.get("items", {}), [*path, index])
    for validation in schema.get("x-kubernetes-validations", ()):
        rule = validation["rule"]
        if "oldSelf" in rule:
            continue
        import celpy

        try:
            passed = _cel_program(rule).evaluate({"self": celpy.json_to_cel(value)})
        except celpy.CELEvalError as error:
            passed = error
        if passed is not True and passed != celpy.celtypes.BoolType(True):
            yield f"{validation.get('message') or rule} (CEL rule {rule!r}) at {path}"


@functools.cache
def _cel_program(rule: str) -> Any:
    import celpy

    environment = celpy.Environment()
    return environment.program(environment.compile(rule))


@pytest.fixture
def crd_validator() -> Callable[[Mapping[str, Any]], list[str]]:
    directory = crds_dir()
    if directory is None:
        pytest.skip("the upstream CRDs are not here: set STACKC_CRDS_DIR or put shared/crds beside the checkout")
    return lambda obj: validate_custom_resource(obj, directory)


def rejected_objects(files: Mapping[str, bytes]) -> tuple[int, list[str]]:
    """How many objects the files hold, and what the API server (OpenAPI) or a CRD would reject."""
    found = objects(files)
    problems = [problem for obj in found
                for problem in (validate_kubernetes(obj) if is_core_kind(obj) else validate_custom_resource(obj))]
    return len(found), problems


# Pod Security Standards (kubernetes.io/docs/concepts/security/pod-security-standards), written out as checks
_BASELINE_CAPABILITIES = {"AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
                          "NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"}


def pod_templates(obj: Mapping[str, Any]) -> list[tuple[dict, dict]]:
    """(pod metadata, pod spec) of every pod an object makes: workloads, Jobs, CronJobs, KServe predictors and
    LLMInferenceServices, leader/worker groups and Ray clusters."""
    spec = obj.get("spec") or {}
    kind = obj.get("kind")
    if kind in ("LeaderWorkerSet", "RayService"):
        group = spec.get("leaderWorkerTemplate") or {}
        cluster = spec.get("rayClusterConfig") or {}
        templates = [group.get("leaderTemplate"), group.get("workerTemplate"),
                     (cluster.get("headGroupSpec") or {}).get("template"),
                     *((workers or {}).get("template") for workers in cluster.get("workerGroupSpecs") or [])]
        return [(t.get("metadata") or {}, t.get("spec") or {}) for t in templates if t]
    if kind == "Pod":
        return [(obj.get("metadata") or {}, spec)]
    if kind == "CronJob":
        spec = spec.get("jobTemplate", {}).get("spec", {})
    if kind in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob"):
        template = spec.get("template", {})
        return [(template.get("metadata") or {}, template.get("spec") or {})]
    if kind == "InferenceService":
        predictor = dict(spec.get("predictor") or {})
        model = predictor.pop("model", None)
        containers = [*([{"name": "kserve-container", **model}] if model else []), *predictor.get("containers", [])]
        return [({"annotations": predictor.get("annotations", {})}, {**predictor, "containers": containers})]
    if kind == "LLMInferenceService":
        # KServe adds its own labels to the pods it makes (a disaggregated service's: the role too)
        own = {"app.kubernetes.io/name": obj["metadata"]["name"], "app.kubernetes.io/part-of": "llminferenceservice"}
        roles = [("decode", spec), ("prefill", spec["prefill"])] if spec.get("prefill") else [(None, spec)]
        # a multi-node group is a LeaderWorkerSet, whose pods carry their index in the group (the leader's is 0)
        index = {"template": {"leaderworkerset.sigs.k8s.io/worker-index": "0"},
                 "worker": {"leaderworkerset.sigs.k8s.io/worker-index": "1"}}
        return [({"labels": {**w.get("labels", {}), **own, **({"llm-d.ai/role": role} if role else {}),
                             **(index[key] if w.get("worker") else {})},
                  "annotations": w.get("annotations", {})}, w[key])
                for role, w in roles for key in ("template", "worker") if w.get(key)]
    return []


def pod_security_problems(metadata: Mapping[str, Any], pod: Mapping[str, Any], level: str = "restricted") -> list[str]:
    """What keeps a pod from Pod Security ``baseline`` or ``restricted`` (empty: it is admitted)."""
    problems: list[str] = []
    context = pod.get("securityContext") or {}
    containers = [*(pod.get("initContainers") or []), *(pod.get("containers") or []),
                  *(pod.get("ephemeralContainers") or [])]
    contexts = [(c.get("name"), c.get("securityContext") or {}) for c in containers]
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(field):
            problems.append(f"{field} is set")
    if (context.get("windowsOptions") or {}).get("hostProcess"):
        problems.append("the pod is a Windows HostProcess")
    for volume in pod.get("volumes") or []:
        if "hostPath" in volume:
            problems.append(f"volume '{volume.get('name')}' is a hostPath")
    for name, value in (metadata.get("annotations") or {}).items():
        if name.startswith("container.apparmor.security.beta.kubernetes.io/") and not (
                value == "runtime/default" or value.startswith("localhost/")):
            problems.append(f"AppArmor annotation {name}={value}")
    for sysctl in context.get("sysctls") or []:
        if sysctl.get("name") not in SAFE_SYSCTLS:
            problems.append(f"unsafe sysctl {sysctl.get('name')}")
    for owner, ctx in [("the pod", context), *((f"container '{n}'", c) for n, c in contexts)]:
        if (ctx.get("appArmorProfile") or {}).get("type") not in (None, "RuntimeDefault", "Localhost"):
            problems.append(f"{owner}: AppArmor profile {ctx['appArmorProfile']['type']}")
        selinux = ctx.get("seLinuxOptions") or {}
        if selinux.get("type") not in (None, "", *SELINUX_TYPES) or selinux.get("user") or selinux.get("role"):
            problems.append(f"{owner}: custom SELinux options")
        if (ctx.get("seccompProfile") or {}).get("type") == "Unconfined":
            problems.append(f"{owner}: seccomp Unconfined")
        if (ctx.get("windowsOptions") or {}).get("hostProcess"):
            problems.append(f"{owner}: Windows HostProcess")
    for container, (name, ctx) in zip(containers, contexts):
        if ctx.get("privileged"):
            problems.append(f"container '{name}' is privileged")
        added = set((ctx.get("capabilities") or {}).get("add") or ())
        if added - _BASELINE_CAPABILITIES:
            problems.append(f"container '{name}' adds capabilities {sorted(added - _BASELINE_CAPABILITIES)}")
        if ctx.get("procMount") not in (None, "Default"):
            problems.append(f"container '{name}' has procMount {ctx['procMount']}")
        for port in container.get("ports") or []:
            if port.get("hostPort"):
                problems.append(f"container '{name}' opens host port {port['hostPort']}")
    if level == "baseline":
        return problems
    for volume in pod.get("volumes") or []:
        kinds = set(volume) - {"name"}
        if not kinds <= RESTRICTED_VOLUMES:
            problems.append(f"volume '{volume.get('name')}' is of a type restricted forbids: {sorted(kinds)}")
    if context.get("runAsUser") == 0:
        problems.append("the pod runs as uid 0")
    pod_seccomp = (context.get("seccompProfile") or {}).get("type") in ("RuntimeDefault", "Localhost")
    for name, ctx in contexts:
        if ctx.get("allowPrivilegeEscalation") is not False:
            problems.append(f"container '{name}' does not set allowPrivilegeEscalation: false")
        non_root = ctx.get("runAsNonRoot", context.get("runAsNonRoot"))
        if non_root is not True:
            problems.append(f"container '{name}' may run as root (runAsNonRoot is not true)")
        if ctx.get("runAsUser") == 0:
            problems.append(f"container '{name}' runs as uid 0")
        if not pod_seccomp and (ctx.get("seccompProfile") or {}).get("type") not in ("RuntimeDefault", "Localhost"):
            problems.append(f"container '{name}' has no RuntimeDefault or Localhost seccomp profile")
        capabilities = ctx.get("capabilities") or {}
        if "ALL" not in (capabilities.get("drop") or ()):
            problems.append(f"container '{name}' does not drop ALL capabilities")
        if set(capabilities.get("add") or ()) - {"NET_BIND_SERVICE"}:
            problems.append(f"container '{name}' adds capabilities beyond NET_BIND_SERVICE")
    return problems


# Wiring: every address a pod is told to reach is served, and the NetworkPolicies let it through
@frozen
class _Pod:
    where: str
    namespace: str
    labels: dict[str, str]
    spec: dict[str, Any]


def wiring_problems(found: Sequence[Mapping[str, Any]]) -> list[str]:
    """What a pod is configured to reach and would not: an address (``host:port``, a URL, a ``*_HOST`` and
    ``*_PORT`` pair in env, args or a mounted ConfigMap) naming a Service of the output without that port, a
    router's discovery of a Service's pods at a port they don't open, or a NetworkPolicy of the pods behind it
    that does not admit the pod. Addresses of hosts the output makes no Service for (the Hub, Prometheus)
    are not this output's to check."""
    pods = [_Pod(f"{o['kind']} {o['metadata']['name']}", _namespace(o), {
        **(meta.get("labels") or {}), _OWNER: f"{o['kind']} {o['metadata']['name']}", _PART: str(index)}, spec)
        for o in found for index, (meta, spec) in enumerate(pod_templates(o))]
    services = {(_namespace(o), o["metadata"]["name"]): o for o in (*found, *_platform_services(found))
                if o["kind"] == "Service"}
    maps = {(_namespace(o), o["metadata"]["name"]): o.get("data") or {} for o in found if o["kind"] == "ConfigMap"}
    policies = [o for o in found if o["kind"] == "NetworkPolicy"]
    # the output's own names: a host named like them that no Service has is an address nothing answers
    stacks = {f"{labels['app.kubernetes.io/instance']}-" for o in found
              if "app.kubernetes.io/instance" in (labels := (o.get("metadata") or {}).get("labels") or {})}
    problems = []
    for pod in pods:
        for text, origin in _configured_strings(pod, maps):
            for host, port in addresses(text):
                service = _service(services, pod.namespace, host)
                name = host.split(".")[0]
                if service is None and name.startswith(tuple(stacks)) and not name.endswith(KUBERAY_HEAD_SUFFIX) \
                        and ("." not in host or host.endswith((".svc", ".svc.cluster.local"))):
                    problems.append(f"{pod.where}: {origin} reaches {host}:{port}, but the output has no Service {name}")
                if service is None:
                    continue
                problems += [f"{pod.where}: {origin} reaches {host}:{port}, {problem}"
                             for problem in _service_problems(service, port, pod, pods, policies)]
        for origin, name, port in _discoveries(pod, maps):
            service = services.get((pod.namespace, name))
            if service is None:
                problems.append(f"{pod.where}: {origin} discovers the pods of Service {name}, which is not there")
                continue
            for target in _selected(pods, service):
                problems += [f"{pod.where}: {origin} reaches {target.where} at {port}, {problem}"
                             for problem in _pod_problems(target, port, pod, policies)]
    return problems + list(_unserved_service_ports(found, pods)) + list(_gateway_problems(found, pods, services))


def _unserved_service_ports(found: Sequence[Mapping[str, Any]], pods: Sequence[_Pod]) -> Iterator[str]:
    """Every port of a Service the output creates leads to a port its pods open: a Service port whose
    ``targetPort`` (a name or a number) a selected pod does not expose refuses what reaches it."""
    for service in found:
        if service["kind"] != "Service" or not (service.get("spec") or {}).get("selector"):
            continue
        where = f"Service {service['metadata']['name']}"
        selected = _selected(pods, service)
        if not selected:
            yield f"{where}: selects no pod of the output"
        for entry in service["spec"].get("ports", []):
            target = entry.get("targetPort", entry["port"])
            for pod in selected:
                if not any(target in (p.get("name"), p["containerPort"])
                           for c in (*pod.spec.get("containers", []), *pod.spec.get("initContainers", []))
                           for p in c.get("ports", [])):
                    yield f"{where}: port {entry['port']} targets {target!r}, which {pod.where} does not open"


def _gateway_problems(found: Sequence[Mapping[str, Any]], pods: Sequence[_Pod],
                      services: Mapping[tuple[str, str], Mapping[str, Any]]) -> Iterator[str]:
    """The Gateway API's references: an HTTPRoute's backends exist (a Service with the port), an InferencePool's
    pods open its target ports and its endpoint picker's Service the picker's port. The gateway's own pods are
    not in the output, so only what they reach is checked, not the policies."""
    pools = {(_namespace(o), o["metadata"]["name"]): o for o in found if o["kind"] == "InferencePool"}
    for obj in found:
        where, namespace = f"{obj['kind']} {obj['metadata']['name']}", _namespace(obj)
        if obj["kind"] == "HTTPRoute":
            for rule in obj["spec"].get("rules", []):
                for ref in rule.get("backendRefs", []):
                    kind = ref.get("kind", "Service")
                    if kind == "InferencePool" and (namespace, ref["name"]) not in pools:
                        yield f"{where}: routes to InferencePool {ref['name']}, which is not there"
                    elif kind == "Service" and not any(p["port"] == ref.get("port") for p in (
                            services.get((namespace, ref["name"])) or {"spec": {}})["spec"].get("ports", [])):
                        yield f"{where}: routes to Service {ref['name']} port {ref.get('port')}, which is not served"
        elif obj["kind"] == "InferencePool":
            spec = obj["spec"]
            selected = [p for p in pods if p.namespace == namespace
                        and spec["selector"]["matchLabels"].items() <= p.labels.items()]
            for pod in selected:
                opened = {p["containerPort"] for c in (*pod.spec.get("containers", []),
                                                       *pod.spec.get("initContainers", [])) for p in c.get("ports", [])}
                yield from (f"{where}: {pod.where} opens no target port {t['number']}"
                            for t in spec.get("targetPorts", []) if t["number"] not in opened)
            picker = spec.get("endpointPickerRef") or {}
            service = services.get((namespace, picker.get("name")))
            if picker and (service is None or not any(p["port"] == picker["port"]["number"]
                                                      for p in service["spec"].get("ports", []))):
                yield f"{where}: its endpoint picker {picker.get('name')}:{picker['port']['number']} is not served"


#: a label standing for "a pod of this object", for the Services a platform makes for its pods
_OWNER = "wiring.stackc.dev/owner"
#: which of the object's pod templates a pod is (``pod_templates`` order: the serving one first)
_PART = "wiring.stackc.dev/part"


def _platform_services(found: Sequence[Mapping[str, Any]]) -> Iterator[dict]:
    """The Services platforms make for the objects stackc emits: KubeRay's Serve Service (its proxies' port
    8000, ``serve``), KServe's predictor Service (port 80 to the model's port) and an LLMInferenceService's
    workload Service (port 8000, to the serving pods: a multi-node group's leaders)."""
    for obj in found:
        name, where = obj["metadata"]["name"], f"{obj['kind']} {obj['metadata']['name']}"
        meta = {"name": "", "namespace": _namespace(obj)}
        if obj["kind"] == "RayService":
            yield {"kind": "Service", "metadata": {**meta, "name": f"{name}-serve-svc"},
                   "spec": {"selector": {_OWNER: where}, "ports": [{"port": 8000, "targetPort": "serve"}]}}
        elif obj["kind"] == "InferenceService":
            (_, pod), = pod_templates(obj)
            port = pod["containers"][0].get("ports", [{}])[0].get("containerPort", 8080)
            yield {"kind": "Service", "metadata": {**meta, "name": f"{name}-predictor"},
                   "spec": {"selector": {_OWNER: where}, "ports": [{"port": 80, "targetPort": port}]}}
        elif obj["kind"] == "LLMInferenceService":
            yield {"kind": "Service", "metadata": {**meta, "name": f"{name}-kserve-workload-svc"},
                   "spec": {"selector": {_OWNER: where, _PART: "0"}, "ports": [{"port": 8000, "targetPort": 8000}]}}


def _namespace(obj: Mapping[str, Any]) -> str:
    return (obj.get("metadata") or {}).get("namespace") or "default"


def _configured_strings(pod: _Pod, maps: Mapping[tuple[str, str], Mapping[str, str]]) -> Iterator[tuple[str, str]]:
    """(text, where it is set) of every value a pod's programs read: env, command lines, mounted ConfigMaps;
    a ``NAME_HOST`` variable joined with its ``NAME_PORT``."""
    for container in (*pod.spec.get("initContainers", []), *pod.spec.get("containers", [])):
        env = {e["name"]: e["value"] for e in container.get("env", []) if isinstance(e.get("value"), str)}
        for name, value in env.items():
            port = env.get(name.removesuffix("_HOST") + "_PORT") if name.endswith("_HOST") else None
            yield (f"{value}:{port}" if port and ":" not in value else value), f"{container['name']} env {name}"
        for index, arg in enumerate((*container.get("command", []), *container.get("args", []))):
            yield arg, f"{container['name']} argument {index}"
    for volume in pod.spec.get("volumes", []):
        name = (volume.get("configMap") or {}).get("name")
        for key, text in (maps.get((pod.namespace, name)) or {}).items():
            yield text, f"ConfigMap {name} {key}"


def _service(services: Mapping[tuple[str, str], Mapping[str, Any]], namespace: str, host: str) -> Mapping | None:
    """The Service a host names: NAME in the pod's namespace, or NAME.NAMESPACE[.svc[.cluster.local]]."""
    parts = host.removesuffix(".cluster.local").removesuffix(".svc").split(".")
    if len(parts) == 1:
        return services.get((namespace, parts[0]))
    return services.get((parts[1], parts[0])) if len(parts) == 2 else None


def _discoveries(pod: _Pod, maps: Mapping[tuple[str, str], Mapping[str, str]]) -> Iterator[tuple[str, str, int]]:
    """(where, Service, port) of each ``discovery.kubernetes`` table in a mounted router configuration: the
    router reaches the Service's pods at that port directly (EndpointSlices)."""
    for volume in pod.spec.get("volumes", []):
        name = (volume.get("configMap") or {}).get("name")
        for key, text in (maps.get((pod.namespace, name)) or {}).items():
            try:
                document = yaml.safe_load(text)
            except yaml.YAMLError:
                continue
            for table in _tables(document):
                found = table.get("kubernetes") if isinstance(table.get("kubernetes"), dict) else None
                if found and isinstance(found.get("service"), str) and isinstance(found.get("port"), int):
                    yield f"ConfigMap {name} {key}", found["service"], found["port"]


def _tables(node: Any) -> Iterator[dict]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _tables(value)
    elif isinstance(node, list):
        for value in node:
            yield from _tables(value)


def _selected(pods: Sequence[_Pod], service: Mapping[str, Any]) -> list[_Pod]:
    selector = (service.get("spec") or {}).get("selector") or {}
    return [p for p in pods if p.namespace == _namespace(service) and selector and selector.items() <= p.labels.items()]


def _service_problems(service: Mapping[str, Any], port: int, caller: _Pod, pods: Sequence[_Pod],
                      policies: Sequence[Mapping[str, Any]]) -> list[str]:
    name = service["metadata"]["name"]
    entry = next((p for p in service["spec"].get("ports", []) if p["port"] == port), None)
    if entry is None:
        return [f"but Service {name} has no port {port} (it has {[p['port'] for p in service['spec'].get('ports', [])]})"]
    target = entry.get("targetPort", port)
    return [problem for pod in _selected(pods, service) for problem in _pod_problems(pod, target, caller, policies)]


def _pod_problems(pod: _Pod, port: int | str, caller: _Pod, policies: Sequence[Mapping[str, Any]]) -> list[str]:
    """A port (number or name) the pod must open and its NetworkPolicies must admit from the caller."""
    opened = {(p.get("name"), p["containerPort"]) for c in (*pod.spec.get("containers", []),
                                                          *pod.spec.get("initContainers", []))
              for p in c.get("ports", [])}
    number = next((n for name, n in opened if port in (name, n)), None)
    if number is None:
        return [f"but {pod.where} opens no port {port}"]
    names = {name for name, n in opened if n == number}
    selecting = [p for p in policies if _namespace(p) == pod.namespace and "Ingress" in p["spec"].get("policyTypes", [])
                 and (p["spec"]["podSelector"].get("matchLabels") or {}).items() <= pod.labels.items()]
    if selecting and not any(_admits(rule, number, names, caller, _namespace(policy))
                             for policy in selecting for rule in policy["spec"].get("ingress", [])):
        return [f"but no NetworkPolicy of {pod.where} admits {caller.where} on port {number}"]
    return []


def _admits(rule: Mapping[str, Any], number: int, names: set[str | None], caller: _Pod, namespace: str) -> bool:
    ports = rule.get("ports")
    if ports and not any(p.get("port") is None or p.get("port") == number or p.get("port") in names for p in ports):
        return False
    peers = rule.get("from")
    return not peers or any(_peer_matches(peer, caller, namespace) for peer in peers)


def _peer_matches(peer: Mapping[str, Any], caller: _Pod, namespace: str) -> bool:
    if "ipBlock" in peer:
        return False
    pods = peer.get("podSelector")
    if pods is not None and not (pods.get("matchLabels") or {}).items() <= caller.labels.items():
        return False
    namespaces = peer.get("namespaceSelector")
    if namespaces is None:
        return caller.namespace == namespace
    wanted = (namespaces.get("matchLabels") or {}).get("kubernetes.io/metadata.name")
    return wanted is None or wanted == caller.namespace
