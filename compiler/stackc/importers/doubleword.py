"""Doubleword inference-stack: ``modelGroups.<name>`` behind the Onwards gateway.

A group says what it serves only in its command: ``vllm serve`` and ``sglang.launch_server``
become those engines with their flags typed; any other server runs under the ``command``
engine as written. ``modelAlias`` are the names clients send, ``modelName`` the one the engine
serves; stackc's router takes Onwards' place.
"""

from __future__ import annotations

from typing import Any

from stackc.importers import commandline
from stackc.importers.draft import (
    Draft,
    env_list,
    init_container,
    model_key,
    quantity,
    split_resources,
    strings,
    tolerations,
)
from stackc.importers.values import Path, Values

DEFAULT_NAME = "inference-stack"
NO_MODELS = "modelGroups is empty"
SERVING_FIELDS = commandline.SERVING


def convert(values: Values, name: str) -> Draft:
    draft = Draft(name, targets=["manifests", "helm", "router"])
    for group in values.keys(("modelGroups",)):
        path = ("modelGroups", group)
        if not isinstance(values.find(path), dict):
            values.error(path, "a model group is a mapping")
            continue
        errors = len(values.errors)
        model = _group(values, path)
        if model is not None and not model["enabled"] and len(values.errors) > errors:
            # the chart renders no group that is off: what it lacks is reported, not refused
            del values.errors[errors:]
            values.drop(path, "a disabled group the chart never renders, incomplete as written",
                        "complete it (the errors show once it is enabled) to import it as enabled = false")
            continue
        if model is not None:
            draft.add_model(model_key(group), model, f"modelGroups.{group}", values.location(path))
    _onwards(values, draft)
    _top_level(values, draft)
    return draft


def _group(values: Values, path: Path) -> dict[str, Any] | None:
    if isinstance(values.find((*path, "image")), str):
        # the README's form: `image: vllm/vllm-openai` with `tag:` beside it
        repository, tag = values.text((*path, "image")), values.text((*path, "tag")) or "latest"
    else:
        repository = values.require((*path, "image", "repository"), str, "the group's image repository")
        tag = values.text((*path, "image", "tag")) or "latest"  # the chart falls back to its appVersion
    if repository is None:
        values.raw(path)
        return {"enabled": values.get((*path, "enabled"), bool, False)}
    command, args = strings(values, (*path, "command")), strings(values, (*path, "args"))
    parsed = commandline.parse(commandline.words(command, args))
    for problem in parsed.problems:
        values.error((*path, "command"), problem)
    aliases = values.texts((*path, "modelAlias"))
    upstream = values.text((*path, "modelName")) or None
    served = upstream or (parsed.served_names[0] if parsed.served_names else None) or (aliases[0] if aliases else None)
    model: dict[str, Any] = {
        # the chart deploys only groups switched on
        "enabled": values.get((*path, "enabled"), bool, False),
        "image": f"{repository}:{tag}",
        "image_pull_policy": values.text((*path, "image", "pullPolicy")),
        "replicas": values.integer((*path, "replicaCount"), 1),
        "served_name": served,
        "aliases": [a for a in dict.fromkeys([*parsed.served_names, *aliases]) if a and a != served],
    }
    port = values.integer((*path, "containerPort"), 8000)
    model["service_port"] = values.integer((*path, "service", "port"))
    values.drop_unless((*path, "service", "type"), "ClusterIP", "the group Service's type")
    if parsed.engine == "command":
        model["engine"] = "command"
        model["model"] = upstream or served
        if model["model"] is None:
            values.error((*path, "modelName"), "missing: the model the group serves (modelName or modelAlias)")
        model["engine_options"] = {"port": port, "command": command, "args": args,
                                   "ready_path": _probe_path(values, path) or "/health"}
    else:
        model["engine"] = parsed.engine
        model["port"] = port if values.has((*path, "containerPort")) else None
        model["model"] = parsed.model or upstream
        if model["model"] is None:
            values.error((*path, "command"), "the command names no model", "add --model or set modelName")
        model["serving"] = {k: v for k, v in parsed.fields.items() if k in SERVING_FIELDS}
        model["revision"] = parsed.fields.get("revision")
        model["engine_args"] = parsed.extra_args
    env: dict[str, str] = {}
    secret_env: dict[str, dict[str, str]] = {}
    env_list(values, (*path, "env"), env, secret_env)
    security: dict[str, Any] = {}
    if "HF_TOKEN" in secret_env:
        security["hf_token"] = secret_env.pop("HF_TOKEN")
    if "HF_HOME" in env and parsed.engine != "command":
        del env["HF_HOME"]  # stackc points it at the model cache volume
    model.update(env=env, secret_env=secret_env)
    model["accelerators"], model["resources"] = split_resources(values, (*path, "resources"))
    _storage(values, path, model, parsed.engine)
    model["probes"] = {kind: _probe(values, (*path, f"{kind}Probe")) for kind in ("startup", "liveness", "readiness")}
    security["pod_security_context"] = values.raw((*path, "podSecurityContext"), dict) or None
    security["container_security_context"] = values.raw((*path, "securityContext"), dict) or None
    pull = values.sequence((*path, "imagePullSecrets"))
    security["image_pull_secrets"] = [values.text((*path, "imagePullSecrets", i, "name")) for i in range(len(pull))]
    if values.get((*path, "serviceAccount", "create"), bool, False):
        annotations = values.mapping((*path, "serviceAccount", "annotations"))
        security["service_account"] = {"annotations": {k: values.text((*path, "serviceAccount", "annotations", k))
                                                       for k in annotations}}
    else:
        values.raw((*path, "serviceAccount"))
    model["security"] = security
    model["scheduling"] = {
        "node_selector": {k: values.text((*path, "nodeSelector", k)) for k in values.keys((*path, "nodeSelector"))},
        "tolerations": tolerations(values, (*path, "tolerations")),
        "affinity": values.raw((*path, "affinity"), dict) or None,
    }
    model["annotations"] = {k: values.text((*path, "podAnnotations", k)) for k in values.keys((*path, "podAnnotations"))}
    model["rollout"] = _strategy(values, (*path, "strategy"))
    containers = [init_container(values, (*path, "initContainers", i))
                  for i in range(len(values.sequence((*path, "initContainers"))))]
    model["init_containers"] = [_declared_mounts(values, (*path, "initContainers", i), c, model)
                                for i, c in enumerate(containers) if c is not None]
    model["routing"] = {"strategy": "round_robin"}  # Onwards leaves replicas to the Service's balancing
    values.drop((*path, "updateStrategy"), "a StatefulSet update strategy", "groups are Deployments (rollout)")
    values.drop((*path, "apiKey"), "a per-group API key the gateway sends (kept in a ConfigMap by the chart)",
                "put the key in a Secret: security.api_key = { name = SECRET, key = KEY }")
    values.drop((*path, "additionalPorts"), "extra container and Service ports")
    return model


def _storage(values: Values, path: Path, model: dict[str, Any], engine: str) -> None:
    volumes = values.raw((*path, "volumes"), list, [])
    mounts = values.raw((*path, "volumeMounts"), list, [])
    shm = {_name(m) for m in mounts if isinstance(m, dict) and m.get("mountPath") == "/dev/shm"} - {None}
    for volume in volumes:
        if _name(volume) in shm and isinstance(volume.get("emptyDir"), dict):
            model["shm_size"] = quantity(volume["emptyDir"].get("sizeLimit"))  # stackc mounts /dev/shm itself
    model["extra_volumes"] = [v for v in volumes if _name(v) not in shm]
    model["extra_volume_mounts"] = [m for m in mounts if _name(m) not in shm]
    for index, _ in enumerate(values.sequence((*path, "persistentVolumes"))):
        here = (*path, "persistentVolumes", index)
        if index or engine == "command":
            values.drop(here, "a persistent volume mounted at a path of the group's choosing",
                        "stackc gives each model one cache volume (cache = …)")
            continue
        modes = values.sequence((*here, "accessModes"))
        storage_class = values.text((*here, "storageClass")) or values.text((*here, "storageClassName"))
        model["cache"] = {"size": quantity(values.get((*here, "size"), (str, int))),
                          "storage_class": None if storage_class == "-" else storage_class,
                          "access_mode": values.text((*here, "accessModes", 0)) if modes else None}
        values.consumed.update({(*here, "name"), (*here, "mountPath")})  # stackc mounts it where the engine looks
        for key in ("subPath", "labels", "annotations", "selector", "volumeMode"):
            values.drop((*here, key), f"the claim's {key}")


def _declared_mounts(values: Values, path: Path, container: dict[str, Any], model: dict[str, Any]) -> dict[str, Any]:
    """An init container's mount of a volume the group never declares (single-tensorrt-llm's
    ``model-data``): the API server would reject the chart's Deployment, so it is left out, reported."""
    declared = {_name(v) for v in model["extra_volumes"]} | ({"model-cache"} if model.get("cache") else set())
    kept = []
    for index, mount in enumerate(container["volume_mounts"]):
        if mount["volume"] in declared:
            kept.append(mount)
        else:
            values.drop((*path, "volumeMounts", index), f"a mount of the volume {mount['volume']!r}, which the group "
                        "does not declare (the API server rejects the chart's Deployment for it)",
                        "declare it in the group's volumes")
    return {**container, "volume_mounts": kept}


def _name(item: Any) -> str | None:
    name = item.get("name") if isinstance(item, dict) else None
    return name if isinstance(name, str) else None


def _probe(values: Values, path: Path) -> dict[str, Any] | None:
    if not values.has(path):
        values.consumed.add(path)
        return None
    if not values.get((*path, "enabled"), bool, True):
        values.drop(path, "turning a probe off", "stackc always probes the engine")
        return None
    kind = values.text((*path, "type"), "http")
    if kind not in ("http", "tcp"):
        values.error((*path, "type"), f"expected http or tcp, got {kind!r}")
    return {"path": values.text((*path, "path")) if kind == "http" else None, "tcp": True if kind == "tcp" else None,
            "initial_delay_seconds": values.integer((*path, "initialDelaySeconds")),
            "period_seconds": values.integer((*path, "periodSeconds")),
            "timeout_seconds": values.integer((*path, "timeoutSeconds")),
            "failure_threshold": values.integer((*path, "failureThreshold"))}


def _probe_path(values: Values, path: Path) -> str | None:
    for kind in ("readiness", "startup"):
        probe = values.find((*path, f"{kind}Probe"))
        if isinstance(probe, dict) and probe.get("type", "http") == "http" and isinstance(probe.get("path"), str):
            return probe["path"]
    return None


def _strategy(values: Values, path: Path) -> dict[str, Any]:
    if not values.has(path):
        return {"max_surge": 1, "max_unavailable": 0}  # the chart's default
    return {"strategy": values.text((*path, "type"), "RollingUpdate"),
            "max_surge": values.get((*path, "rollingUpdate", "maxSurge"), (int, str)),
            "max_unavailable": values.get((*path, "rollingUpdate", "maxUnavailable"), (int, str))}


def _onwards(values: Values, draft: Draft) -> None:
    """Onwards' place is taken by stackc's router; its replica count, resources and ingress carry over."""
    path = ("onwards",)
    options = draft.target_options.setdefault("router", {})
    options["replicas"] = values.integer((*path, "replicaCount"), 1)
    _, resources = split_resources(values, (*path, "resources"))
    options["resources"] = resources or None
    for key in values.keys(path):
        if key not in ("replicaCount", "resources"):
            values.drop_unless((*path, key), _ONWARDS_DEFAULTS.get(key, object()), f"the Onwards gateway's {key}",
                               "stackc's router replaces Onwards ([targets.router])")
    ingress = ("ingress",)
    if values.get((*ingress, "enabled"), bool, False):
        host = values.text((*ingress, "hosts", 0, "host"))
        if host is None:
            values.error((*ingress, "hosts"), "an enabled ingress needs hosts[0].host")
            return
        options["ingress"] = {"host": host, "class_name": values.text((*ingress, "className")) or None,
                              "tls_secret": values.text((*ingress, "tls", 0, "secretName"))}
        values.raw((*ingress, "tls", 0, "hosts"))
        for index, _ in enumerate(values.sequence((*ingress, "hosts", 0, "paths"))):
            here = (*ingress, "hosts", 0, "paths", index)
            if values.text((*here, "path")) != "/" or index:
                values.drop(here, "an ingress path other than /")
            values.consumed.add((*here, "pathType"))
        for index in range(1, len(values.sequence((*ingress, "hosts")))):
            values.drop((*ingress, "hosts", index), "a second ingress host")
        values.drop((*ingress, "annotations"), "ingress annotations")
    else:
        values.raw(ingress)


_ONWARDS_DEFAULTS = {"service": {"type": "ClusterIP", "port": 80}}


def _top_level(values: Values, draft: Draft) -> None:
    if values.get(("serviceMonitor", "enabled"), bool, False):
        draft.add_target("monitoring")
        options = draft.target_options.setdefault("monitoring", {})
        options["interval"] = values.text(("serviceMonitor", "interval"))
        labels = values.mapping(("serviceMonitor", "labels"))
        options["monitor_labels"] = {k: values.text(("serviceMonitor", "labels", k)) for k in labels} or None
        for key in ("namespace", "annotations", "scrapeTimeout", "tlsConfig", "bearerTokenSecret"):
            values.drop(("serviceMonitor", key), f"the ServiceMonitors' {key}")
    else:
        values.raw(("serviceMonitor",))
    if values.get(("networkPolicy", "enabled"), bool, False):
        values.drop(("networkPolicy", "onwards"), "a hand-written NetworkPolicy for the gateway",
                    "stackc writes each model's policy (stack.network_policy)")
        values.drop(("networkPolicy", "modelGroups"), "hand-written NetworkPolicies for the groups",
                    "stackc writes each model's policy (stack.network_policy)")
    else:
        values.raw(("networkPolicy",))
    values.drop(("configMaps",), "ConfigMaps of files", "a chat template goes in serving.chat_template")
    values.drop_unless(("nameOverride",), "", "a name override", "stackc names objects STACK-MODEL")
    values.drop_unless(("fullnameOverride",), "", "a name override", "stackc names objects STACK-MODEL")
