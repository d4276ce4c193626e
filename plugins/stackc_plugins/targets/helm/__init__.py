"""A Helm chart of the whole stack: ``helm template`` is the manifests target's objects, with knobs
lifted into values, plus the objects of the stack's add-on targets (router, monitoring, gateway).

Templates are not written by hand: each object the manifests target renders is rendered again
with sentinels in the lifted fields, and the sentinel lines become template expressions; the
add-ons' objects, handed over by the pipeline (``bundle``), get the chart's labels. The chart
therefore cannot drift from the folders ``kubectl apply -k`` uses.

The namespace is the release's: the chart's plan is lowered with a placeholder namespace
(``release_namespace``), so every place that names it (objects, the router's discovery, RBAC
subjects, NetworkPolicy peers, PromQL in dashboards, alerts and autoscalers) carries the
placeholder, and each occurrence becomes ``.Release.Namespace``. Replacing the spec's namespace
in the output instead would also hit names that merely contain it.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import attrs

from stackc import hookimpl, kube
from stackc.diagnostics import Diagnostic
from stackc.output.render import to_yaml
from stackc.plan.model import Component, Plan, Pod
from stackc.records import frozen
from stackc.registry import Artifact, Registry
from stackc.spec.model import Form

# Helm: chart names are lowercase letters, digits and dashes; versions are SemVer 2
CHART_NAME = Form(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", "a chart name: lowercase letters, digits and '-'", "E008", 63)
SEMVER = Form(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?(\+[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?$",
              "a SemVer 2 version such as '1.2.3'")
#: what runs a model's pods: their engine container, replicas and scheduling come from the values
WORKLOAD_KINDS = ("Deployment", "LeaderWorkerSet", "RayService")
#: API groups of objects that only watch the stack (monitors, alerts): rendered only where the cluster serves
#: them, and NOTES.txt says what was skipped; every other object renders unconditionally, so a cluster
#: without its API fails the install naming it, instead of a model serving otherwise than specified
OBSERVABILITY_GROUPS = frozenset({"monitoring.coreos.com"})
#: the namespace the chart's plan is lowered with: a DNS label (names and label values hold it) that no
#: spec writes; each occurrence in the chart becomes the release's namespace
RELEASE_NAMESPACE = "stackc-release-namespace"
_NAMESPACE_EXPRESSION = "{{ .Release.Namespace }}"
#: a hex digest is at least this long when it is taken for the digest of a text that holds the namespace
_DIGEST_MIN = 16
_HEX = re.compile("[0-9a-f]+")
#: the placeholder as a whole plain scalar of a YAML text: a mapping's value or a list item, ending the line
_PLAIN_NAMESPACE = re.compile(rf"(^|: |- ){RELEASE_NAMESPACE}$", re.MULTILINE)
#: the DNS labels YAML 1.1 reads as something else than a string (bool, null, int, date): stackc's renderer
#: single-quotes them (tests compare this with PyYAML's resolver)
NOT_PLAIN_LABELS = ("^(yes|no|true|false|on|off|null|0b[01]+|0[0-7]+|0|[1-9][0-9]*|0x[0-9a-f]+"
                    "|[0-9]{4}-[0-9]{2}-[0-9]{2})$")
_SENTINEL = re.compile(r"'?@@(\w+):(\d+)@@'?")
#: the sentinel without its quotes: a pattern that starts with a literal is searched for as fast as str.find
_SENTINEL_BODY = re.compile(r"@@(\w+):(\d+)@@")
_GO_DELIMITERS = re.compile(r"\{\{|\}\}")


@frozen
class HelmOptions:
    """``[targets.helm]``."""

    chart: str | None = attrs.field(default=None, metadata={"doc": "Chart name (default: the stack name).",
                                                            "form": CHART_NAME})
    version: str = attrs.field(default="0.1.0", metadata={"doc": "Chart version (SemVer).", "form": SEMVER})
    app_version: str = attrs.field(default="0.1.0", metadata={"doc": "Chart appVersion."})
    description: str | None = attrs.field(default=None, metadata={"doc": "Chart description."})


class HelmTarget:
    name = "helm"
    description = "A Helm chart of the whole stack: the manifests (tunable through values), router, monitoring, gateway"
    options_type = HelmOptions
    serves_models = True
    release_namespace = RELEASE_NAMESPACE

    def check(self, plan: Plan, options: HelmOptions) -> Iterator[Diagnostic]:
        yield from kube.workload_problems(plan, self.name)
        yield from kube.file_clashes(plan, self.name, ("objects.yaml",),
                                     where=f"{self.name}/{options.chart or plan.stack.name}/templates")

    def emit(self, plan: Plan, options: HelmOptions) -> Iterator[Artifact]:
        chart = options.chart or plan.stack.name
        root = chart
        yield Artifact(f"{root}/Chart.yaml", data={
            "apiVersion": "v2", "name": chart, "version": options.version, "appVersion": options.app_version,
            "type": "application",
            "description": options.description or f"LLM inference stack '{plan.stack.name}', compiled by stackc",
        })
        values: dict[str, Any] = {"global": {"imagePullSecrets": [], "labels": {}}, "models": {}}
        for component in plan.components:
            roles = component.disaggregation
            if roles is None:
                values["models"][kube.version_key(component)] = model_values(component)
            else:  # a disaggregated model's roles: models.KEY.ROLE
                values["models"].setdefault(component.key, {})[roles.role] = model_values(component)
            # one file per component, as the manifests target writes them
            yield Artifact(f"{root}/templates/{kube.folder(component)}.yaml", text=_stream(
                template(chart, component, obj) for _, obj in kube.component_objects(plan.stack, component)))
        stack_objects = [template(chart, None, obj) for _, obj in kube.stack_objects(plan.stack)]
        if stack_objects:
            # the spec's objects as written: only their namespace follows the release
            yield Artifact(f"{root}/templates/objects.yaml", text=_stream(stack_objects))
        yield Artifact(f"{root}/values.yaml", text=VALUES_HEADER + to_yaml(values))
        yield Artifact(f"{root}/values.schema.json", data=values_schema(values))
        yield Artifact(f"{root}/templates/_helpers.tpl",
                       text=HELPERS.replace("CHART", chart).replace("NOT_PLAIN", NOT_PLAIN_LABELS))
        yield Artifact(f"{root}/.helmignore", text="*.orig\n*.rej\n.git/\n")

    def bundle(self, plan: Plan, options: HelmOptions, addons: Mapping[str, tuple[Artifact, ...]]) -> Iterator[Artifact]:
        """The stack's other targets (router, monitoring, gateway) in the chart, one folder of templates
        each, so one release installs the whole stack; and NOTES.txt, which names what a cluster without
        an observability API skips, in the chart's folders or in the add-ons'."""
        chart = options.chart or plan.stack.name
        objects = [obj for artifacts in addons.values() for artifact in artifacts for obj in artifact.objects]
        texts = namespaced_texts(objects)
        for target, artifacts in sorted(addons.items()):
            for artifact in artifacts:
                if artifact.objects:  # each file of the add-on's folder, as it is there
                    yield Artifact(f"{chart}/templates/{target}/{artifact.path}", text=_stream(
                        addon_template(chart, json.loads(json.dumps(obj)), texts) for obj in artifact.objects))
        if texts:
            yield Artifact(f"{chart}/templates/_namespaced.tpl", text=namespaced_definitions(chart, texts))
        # of the chart's own objects only the spec's may watch the stack: a component's are its workload and
        # their plumbing (tests hold every example spec to that), so they are not built once more here
        own = [obj for _, obj in kube.stack_objects(plan.stack)]
        yield Artifact(f"{chart}/templates/NOTES.txt", text=notes(plan, [*own, *objects]))


def _stream(templates: Iterable[str]) -> str:
    """Templates of one object each as one file: Helm renders each document of it as one object."""
    return "---\n".join(templates)


VALUES_HEADER = """\
# Values for this chart, generated by stackc from the stack spec; defaults reproduce the spec.
# global.imagePullSecrets: Secret names added to every pod; global.labels: labels on every object.
# models.NAME: replicas, image (repository, tag, pullPolicy), resources, nodeSelector,
#   tolerations, affinity, extraArgs (appended to the engine's arguments), extraEnv
#   (name/value list), podAnnotations and imagePullSecrets for one model. A model whose
#   replica count an autoscaler owns (its ScaledObject or HPA) has autoscaling.minReplicas
#   and autoscaling.maxReplicas instead of replicas.
"""


def _split_image(image: str) -> tuple[str, str]:
    if "@" in image:
        repository, digest = image.split("@", 1)
        return repository, "@" + digest
    repository, sep, tag = image.rpartition(":")
    if not sep or "/" in tag:
        return image, "latest"
    return repository, tag


def model_values(component: Component) -> dict[str, Any]:
    if component.ray is not None:
        # the worker group's pods run the model; Ray Serve owns the replicas (inside serveConfigV2) and
        # KubeRay the command line, so neither is a value
        assert component.worker_pod is not None
        values = _pod_values(component.worker_pod)
        del values["extraArgs"]
        return values
    scaler = component.scale.autoscaler
    return {
        # an autoscaler owns the count of an autoscaled model: only its bounds are values
        **({"replicas": component.scale.replicas} if scaler is None else
           {"autoscaling": {"minReplicas": scaler.min_replicas, "maxReplicas": scaler.max_replicas}}),
        **_pod_values(component.pod),
    }


def _pod_values(pod: Pod) -> dict[str, Any]:
    serving = pod.containers[0]
    repository, tag = _split_image(serving.image)
    image: dict[str, Any] = {"repository": repository, "tag": tag}
    if serving.image_pull_policy:
        image["pullPolicy"] = serving.image_pull_policy
    return {
        "image": image,
        "resources": {kind: dict(table) for kind, table in serving.resources.items()},
        "nodeSelector": dict(pod.node_selector),
        "tolerations": [dict(t) for t in pod.tolerations],
        "affinity": dict(pod.affinity or {}),
        "extraArgs": [],
        "extraEnv": [],
        "podAnnotations": dict(pod.annotations),
        "imagePullSecrets": list(pod.image_pull_secrets),
    }


def template(chart: str, component: Component | None, obj: dict[str, Any]) -> str:
    """The object as a template: lifted fields become ``.Values`` expressions (``obj`` is changed in place).

    Without a component (the spec's extra objects) only a namespace is templated: labels stay as written.
    """
    sentinel = _Blocks()
    meta = obj["metadata"]
    if component is not None:
        _labels(meta, chart, sentinel)
    bounds = {"ScaledObject": ("minReplicaCount", "maxReplicaCount"),
              "HorizontalPodAutoscaler": ("minReplicas", "maxReplicas")}.get(obj["kind"]) if component else None
    if bounds is not None:
        for key, value in zip(bounds, ("minReplicas", "maxReplicas"), strict=True):
            obj["spec"][key] = sentinel("SCALAR", f"{{{{ $model.autoscaling.{value} }}}}")
    workload = component is not None and obj["kind"] in WORKLOAD_KINDS
    if workload and obj["kind"] == "RayService":
        cluster = obj["spec"]["rayClusterConfig"]
        head = cluster["headGroupSpec"]["template"]
        _labels(head["metadata"], chart, sentinel)
        head["spec"]["imagePullSecrets"] = sentinel("PULLSECRETS", "")
        _lift_pod(cluster["workerGroupSpecs"][0]["template"], chart, component, sentinel, args=False)
    elif workload:
        spec = obj["spec"]
        if component.scale.autoscaler is None:  # else its ScaledObject or HPA owns the count
            spec["replicas"] = sentinel("SCALAR", "{{ $model.replicas }}")
        members = spec.get("leaderWorkerTemplate", {})
        # a leader/worker group's pods all run the engine: the model's values apply to both
        for pod_template in [spec["template"]] if "template" in spec else [members["leaderTemplate"], members["workerTemplate"]]:
            _lift_pod(pod_template, chart, component, sentinel)
    head = [f'{{{{- $model := index .Values.models {values_keys(component)} }}}}'] if workload or bounds else []
    return _expand(chart, obj, sentinel, head)


def values_keys(component: Component) -> str:
    """Where the component's values are under ``models``: its ``kube.version_key``, then a disaggregated model's role."""
    roles = component.disaggregation
    return " ".join(f'"{k}"' for k in (kube.version_key(component), *([roles.role] if roles else [])))



def _lift_pod(pod_template: dict[str, Any], chart: str, component: Component, sentinel: Any,
              args: bool = True) -> None:
    """The model's values in a pod that runs it; ``args`` False where the engine's command line is not
    stackc's (KubeRay writes the Ray containers' own)."""
    template_meta = pod_template["metadata"]
    _labels(template_meta, chart, sentinel)
    annotations = template_meta.pop("annotations", {})
    annotations = {k: v for k, v in annotations.items() if k not in component.pod.annotations}
    if annotations:
        annotations[sentinel("MERGE", "$model.podAnnotations")] = ""
        template_meta["annotations"] = annotations
    else:
        template_meta["annotations"] = sentinel("BLOCK", "$model.podAnnotations")
    pod = pod_template["spec"]
    serving_names = {p.containers[0].name for p in (component.pod, component.worker_pod) if p is not None}
    engine = next(c for c in pod["containers"] if c["name"] in serving_names)
    engine["image"] = sentinel("SCALAR", '"{{ $model.image.repository }}:{{ $model.image.tag }}"')
    engine["imagePullPolicy"] = sentinel("BLOCK", "$model.image.pullPolicy")
    engine["resources"] = sentinel("BLOCK", "$model.resources")
    for key, extra in (("args", "$model.extraArgs"), ("env", "$model.extraEnv"))[0 if args else 1:]:
        # appended to the engine's own list; a key the engine leaves out appears only when set
        engine[key] = [*engine[key], sentinel("ITEMS", extra)] if engine.get(key) else sentinel("BLOCK", extra)
    for key in ("nodeSelector", "tolerations", "affinity"):
        pod[key] = sentinel("BLOCK", f"$model.{key}")
    pod["imagePullSecrets"] = sentinel("PULLSECRETS", "")


class _Blocks(list):
    """Template expressions, each standing in the rendered YAML as a sentinel until ``_expand``."""

    def __call__(self, kind: str, body: str) -> str:
        self.append((kind, body))
        return f"@@{kind}:{len(self) - 1}@@"


def addon_template(chart: str, obj: dict[str, Any], texts: Mapping[str, str] | None = None) -> str:
    """An add-on target's object (router, monitoring, gateway) as a template: the chart's labels, nothing
    else lifted (``obj`` is changed in place); ``texts`` as ``namespaced_texts`` finds them."""
    sentinel = _Blocks()
    _labels(obj["metadata"], chart, sentinel)
    return _expand(chart, obj, sentinel, [], texts or {})


def namespaced_texts(objects: list[Mapping[str, Any]]) -> dict[str, str]:
    """Multi-line strings that hold the namespace (config files in ConfigMaps) and whose digest another
    string carries (the router's config hash), by their SHA-256: that digest follows the release's
    namespace too, computed by Helm from the same text."""
    texts: dict[str, str] = {}
    digests: set[str] = set()

    def visit(node: Any) -> None:
        if isinstance(node, dict):
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)
        elif isinstance(node, str) and "\n" in node and RELEASE_NAMESPACE in node:
            texts[hashlib.sha256(node.encode()).hexdigest()] = node
        elif isinstance(node, str) and len(node) >= _DIGEST_MIN and _HEX.fullmatch(node):
            digests.add(node)

    for obj in objects:
        visit(obj)
    return {digest: text for digest, text in texts.items() if any(digest.startswith(d) for d in digests)}


def namespaced_definitions(chart: str, texts: Mapping[str, str]) -> str:
    """One named template per namespaced text, which renders it byte for byte (its digest is Helm's)."""
    return "".join(f'{{{{ define "{chart}.namespaced.{digest[:_DIGEST_MIN]}" }}}}{_in_release(chart, text)}'
                   "{{ end }}\n" for digest, text in sorted(texts.items()))


def _in_release(chart: str, text: str) -> str:
    """Template text: literal ``{{ }}`` kept literal, the placeholder namespace the release's. Where it is a
    whole plain scalar of a YAML file the text holds (the router's config), it is quoted as stackc's
    renderer would quote that namespace, so the file stays the one compiled for it, digest included."""
    if RELEASE_NAMESPACE not in text and "{{" not in text and "}}" not in text:
        return text  # most lines: nothing to escape or template
    escaped = _GO_DELIMITERS.sub(lambda m: '{{ "%s" }}' % m.group(), text)
    plain = _PLAIN_NAMESPACE.sub(lambda m: f'{m.group(1)}{{{{ include "{chart}.plainNamespace" . }}}}', escaped)
    return plain.replace(RELEASE_NAMESPACE, _NAMESPACE_EXPRESSION)


def _release_scalars(node: Any, blocks: _Blocks, chart: str, texts: Mapping[str, str]) -> Any:
    """``node`` with each one-line string that holds the namespace, and each digest of a namespaced text,
    as a sentinel of a quoted template (a namespace such as ``123`` stays a string). Multi-line
    strings render as literal blocks, always strings: the namespace is replaced in their lines."""
    def scalar(value: Any) -> Any:
        # most strings hold neither the namespace nor a digest: only those are looked at closely
        if isinstance(value, str) and (RELEASE_NAMESPACE in value or texts and len(value) >= _DIGEST_MIN):
            return _release_scalar(value, blocks, chart, texts)
        return value

    def walk(value: Any) -> Any:
        if isinstance(value, dict):
            return {scalar(k): walk(v) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(item) for item in value]
        return scalar(value)

    return walk(node)


def _release_scalar(node: str, blocks: _Blocks, chart: str, texts: Mapping[str, str]) -> str:
    if "\n" in node:
        return node
    if RELEASE_NAMESPACE in node:
        quoted = "'%s'" % node.replace("'", "''") if node.isprintable() else json.dumps(node, ensure_ascii=False)
        return blocks("SCALAR", _in_release(chart, quoted))
    if len(node) >= _DIGEST_MIN and _HEX.fullmatch(node):
        digest = next((d for d in sorted(texts) if d.startswith(node)), None)
        if digest is not None:
            return blocks("SCALAR", f'{{{{ include "{chart}.namespaced.{digest[:_DIGEST_MIN]}" . | sha256sum '
                                    f'| trunc {len(node)} | quote }}}}')
    return node


def _expand(chart: str, obj: dict[str, Any], blocks: _Blocks, head: list[str],
            texts: Mapping[str, str] | None = None) -> str:
    """Render ``obj`` and turn each sentinel line into its template expression; an observability add-on
    renders only where the cluster serves its API."""
    if texts:  # a digest of a namespaced text may be any string: each one is looked at
        text = to_yaml(_release_scalars(obj, blocks, chart, texts))
    else:  # only strings holding the namespace change: the renderer hands them over as it writes them
        text = to_yaml(obj, (RELEASE_NAMESPACE, lambda value: _release_scalar(value, blocks, chart, {})))
    # most objects' text holds no namespace and no delimiters outside the sentinels: its lines are kept as written
    escape = RELEASE_NAMESPACE in text or "{{" in text or "}}" in text
    lines = list(head)
    plain = 0  # where the lines not yet in ``lines`` start: they hold no sentinel
    for match in _SENTINEL_BODY.finditer(text):
        start = text.rfind("\n", 0, match.start()) + 1
        if start < plain:  # the line's first sentinel made it a template already (a key and its value)
            continue
        end = text.index("\n", match.end())
        if start > plain:
            lines.append(_in_release(chart, text[plain:start - 1]) if escape else text[plain:start - 1])
        plain = end + 1
        line = text[start:end]
        kind, body = blocks[int(match.group(2))]
        if kind == "SCALAR":  # a key and its value may both be one
            lines.append(_SENTINEL.sub(lambda m: blocks[int(m.group(2))][1], line))
            continue
        indent = len(line) - len(line.lstrip())
        key = line.strip().split(":", 1)[0]
        if kind == "BLOCK":
            lines += [f"{{{{- with {body} }}}}", f"{' ' * indent}{key}:",
                      f"  {{{{- toYaml . | nindent {indent + 2} }}}}", "{{- end }}"]
        elif kind == "ITEMS":
            lines += [f"{{{{- with {body} }}}}", f"  {{{{- toYaml . | nindent {indent} }}}}", "{{- end }}"]
        elif kind == "MERGE":
            lines += [f"{{{{- with {body} }}}}", f"  {{{{- toYaml . | nindent {indent} }}}}", "{{- end }}"]
        elif kind == "LABELS":
            lines += [f"{' ' * indent}{{{{- include \"{chart}.chartLabels\" . | nindent {indent} }}}}"]
        elif kind == "PULLSECRETS":
            lines += ["{{- with (concat .Values.global.imagePullSecrets $model.imagePullSecrets) }}",
                      f"{' ' * indent}imagePullSecrets:", "  {{- range . }}",
                      f"{' ' * indent}- name: {{{{ . }}}}", "  {{- end }}", "{{- end }}"]
    if plain < len(text):
        lines.append(_in_release(chart, text[plain:-1]) if escape else text[plain:-1])
    body = "\n".join(lines) + "\n"
    if _observability(obj):
        body = f'{{{{- if .Capabilities.APIVersions.Has "{_api(obj)}" }}}}\n{body}{{{{- end }}}}\n'
    return body


def _api(obj: Mapping[str, Any]) -> str:
    return f'{obj["apiVersion"]}/{obj["kind"]}'


def _observability(obj: Mapping[str, Any]) -> bool:
    return obj["apiVersion"].rpartition("/")[0] in OBSERVABILITY_GROUPS


def _labels(meta: dict[str, Any], chart: str, sentinel: Any) -> None:
    labels = {k: v for k, v in meta.get("labels", {}).items() if k != "app.kubernetes.io/managed-by"}
    labels[sentinel("LABELS", "")] = ""
    meta["labels"] = labels


HELPERS = """\
{{/* Labels only the chart adds: the chart, who manages the release, and global.labels. */}}
{{- define "CHART.chartLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.global.labels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* The release's namespace as a plain YAML scalar in a text: quoted where YAML would read another type. */}}
{{- define "CHART.plainNamespace" -}}
{{- if regexMatch "NOT_PLAIN" .Release.Namespace -}}
'{{ .Release.Namespace }}'
{{- else -}}
{{ .Release.Namespace }}
{{- end -}}
{{- end }}
"""


def notes(plan: Plan, objects: list[Mapping[str, Any]]) -> str:
    """What was installed and how to call it, and which observability objects the cluster's APIs left out."""
    lines = [f"stackc stack '{plan.stack.name}' is deploying in namespace {{{{ .Release.Namespace }}}}.", "",
             "Models (OpenAI-compatible API on each Service):"]
    for component in plan.components:
        names = ", ".join(component.endpoint.served_names)
        port = component.endpoint.public_port or component.endpoint.port.number
        role = f" ({component.disaggregation.role} role)" if component.disaggregation else ""
        lines.append(f"  {component.key}{role}: service {component.endpoint.service}:{port}  (model names: {names})")
    if plan.components:
        first = plan.components[0]
        lines += ["", "Try one:",
                  f"  kubectl -n {{{{ .Release.Namespace }}}} port-forward svc/{first.endpoint.service} "
                  f"8000:{first.endpoint.public_port or first.endpoint.port.number}",
                  "  curl http://127.0.0.1:8000/v1/chat/completions -H 'Content-Type: application/json' \\",
                  f"    -d '{{\"model\": {json.dumps(first.endpoint.served_names[0])}, "
                  "\"messages\": [{\"role\": \"user\", \"content\": \"Hello\"}]}'"]
    guarded = Counter(_api(obj) for obj in objects if _observability(obj))
    for api, count in sorted(guarded.items()):
        lines += [f'{{{{- if not (.Capabilities.APIVersions.Has "{api}") }}}}', "",
                  f"Skipped {count} {api.rpartition('/')[2]} object(s): the cluster does not serve {api}. Install its "
                  "CRDs (prometheus-operator's), then run helm upgrade to add them.", "{{- end }}"]
    return "\n".join(lines) + "\n"


def _role_values(model_values: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """A model's values, or a disaggregated model's roles' values (``models.KEY.ROLE``)."""
    if set(model_values) <= {"prefill", "decode"}:
        return [model_values[role] for role in sorted(model_values)]
    return [model_values]


def _kind(model_values: Mapping[str, Any]) -> str:
    return "autoscaledModel" if "autoscaling" in model_values else "model" if "replicas" in model_values \
        else "rayModel"


def _model_ref(model_values: Mapping[str, Any]) -> dict[str, Any]:
    """A model's values' schema; a disaggregated model's are its roles', each a model's."""
    if set(model_values) <= {"prefill", "decode"}:
        return {"type": "object", "additionalProperties": False, "required": sorted(model_values),
                "properties": {role: _model_ref(role_values) for role, role_values in sorted(model_values.items())}}
    return {"$ref": f"#/$defs/{_kind(model_values)}"}


def values_schema(values: Mapping[str, Any]) -> dict[str, Any]:
    """values.schema.json: types from the spec's IR (replicas an integer ≥ 0, …); typos rejected."""
    strings = {"type": "object", "additionalProperties": {"type": "string"}}
    model = {
        "type": "object", "additionalProperties": False,
        "properties": {
            "replicas": {"type": "integer", "minimum": 0, "description": "Number of replicas (pods)."},
            "image": {"type": "object", "additionalProperties": False, "required": ["repository", "tag"],
                      "properties": {"repository": {"type": "string"}, "tag": {"type": "string"},
                                     "pullPolicy": {"enum": ["Always", "IfNotPresent", "Never"]}}},
            "resources": {"type": "object", "additionalProperties": False,
                          "properties": {"requests": {"type": "object"}, "limits": {"type": "object"}}},
            "nodeSelector": strings,
            "tolerations": {"type": "array", "items": {"type": "object"}},
            "affinity": {"type": "object"},
            "extraArgs": {"type": "array", "items": {"type": "string"}},
            "extraEnv": {"type": "array", "items": {"type": "object", "required": ["name"],
                                                    "properties": {"name": {"type": "string"}}}},
            "podAnnotations": strings,
            "imagePullSecrets": {"type": "array", "items": {"type": "string"}},
        },
    }
    # an autoscaler owns the replicas of these: their bounds are values, a replica count is not
    autoscaled = {**model, "required": ["autoscaling"], "properties": {
        **{key: value for key, value in model["properties"].items() if key != "replicas"},
        "autoscaling": {"type": "object", "additionalProperties": False, "required": ["minReplicas", "maxReplicas"],
                        "description": "Bounds of the autoscaler (ScaledObject or HPA) that owns the replica count.",
                        "properties": {"minReplicas": {"type": "integer", "minimum": 0},
                                       "maxReplicas": {"type": "integer", "minimum": 1}}}}}
    definitions = {"model": model, "autoscaledModel": autoscaled}
    kinds = {_kind(leaf) for model_values in values["models"].values() for leaf in _role_values(model_values)}
    if "rayModel" in kinds:
        # a Ray cluster's worker pods: Ray Serve owns the replicas and KubeRay the command line
        definitions["rayModel"] = {**model, "properties": {
            key: value for key, value in model["properties"].items() if key not in ("replicas", "extraArgs")}}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object", "additionalProperties": False, "required": ["global", "models"],
        # once, not once per model: a 200-model chart's schema stays small
        "$defs": definitions,
        "properties": {
            "global": {"type": "object", "additionalProperties": False, "properties": {
                "imagePullSecrets": {"type": "array", "items": {"type": "string"}}, "labels": strings}},
            "models": {"type": "object", "additionalProperties": False,
                       "properties": {name: _model_ref(model_values) for name, model_values in values["models"].items()}},
        },
    }


@hookimpl
def stackc_add_targets(registry: Registry) -> None:
    registry.add_target(HelmTarget())
