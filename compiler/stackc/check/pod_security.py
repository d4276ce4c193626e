"""Pod Security "restricted" (kubernetes.io/docs/concepts/security/pod-security-standards) is what every pod
stackc emits meets unless the spec chooses otherwise. Each such choice is a warning at its spec path naming the
control it breaks and how to keep it: a namespace enforcing "restricted" would refuse the pods, and one that
only warns or audits would let them run with less isolation than the rest of the stack.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from stackc.diagnostics import Diagnostic, Severity
from stackc.plan.model import RESTRICTED_CONTAINER, RESTRICTED_POD
from stackc.spec.model import Model
from stackc.spec.source import Path

SAFE_SYSCTLS = {"kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start",
                 "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
                 "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
                 "net.ipv4.tcp_keepalive_probes"}
SELINUX_TYPES = {"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}
_PROFILES = ("RuntimeDefault", "Localhost")
# image volumes are allowed since Kubernetes 1.33 (kubernetes/kubernetes#130394)
RESTRICTED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "image", "persistentVolumeClaim",
                       "projected", "secret"}
#: a non-root pod as stackc writes it under "restricted" (the engine's own user comes on top)
_RESTRICTED_POD = {"runAsNonRoot": True, **RESTRICTED_POD}
_LEVEL_POD: Mapping[str, Mapping[str, Any]] = {"restricted": _RESTRICTED_POD, "baseline": RESTRICTED_POD,
                                               "privileged": {}}
_LEVEL_CONTAINER: Mapping[str, Mapping[str, Any]] = {"restricted": RESTRICTED_CONTAINER,
                                                     "baseline": RESTRICTED_CONTAINER, "privileged": {}}


def pod_security_warnings(model: Model) -> Iterator[Diagnostic]:
    """The model's spec choices that lose Pod Security "restricted" (paths relative to ``models.KEY``)."""
    security = model.security
    level = security.pod_security
    pod = security.pod_security_context if security.pod_security_context is not None else _LEVEL_POD[level]
    container = (security.container_security_context if security.container_security_context is not None
                 else _LEVEL_CONTAINER[level])
    owners = {"pod": ("security", "pod_security_context") if security.pod_security_context is not None else None,
              "container": ("security", "container_security_context")
              if security.container_security_context is not None else None}
    from_level = []
    for owner, control, what, fix in _context_breaks(pod, container):
        path = owners[owner]
        if path is None:
            from_level.append(f"{what} ({control})")
        else:
            yield Diagnostic("W171", f"breaks Pod Security \"restricted\" ({control}): {what}", path,
                             f"{fix}, or remove {path[-1]} to keep stackc's restricted one", Severity.WARNING)
    if from_level:
        yield Diagnostic("W170", f"Pod Security '{level}' loses \"restricted\": " + "; ".join(from_level),
                         ("security", "pod_security"),
                         'keep "restricted" unless the image needs root (the engines run as their image\'s non-root '
                         f'user there), and label the namespace pod-security.kubernetes.io/enforce={level}',
                         Severity.WARNING)
    for index, volume in enumerate(model.extra_volumes):
        yield from _volume_breaks(volume, ("extra_volumes", index))
    if model.host_ipc and level == "privileged":  # below it, host_ipc is an error (E026)
        yield Diagnostic("W173", "breaks Pod Security \"restricted\" and \"baseline\" (Host Namespaces): the pods share "
                         "the node's IPC namespace", ("host_ipc",),
                         "drop host_ipc unless the engine needs it (shared memory between GPUs of one node)",
                         Severity.WARNING)


def _volume_breaks(volume: Mapping[str, Any], path: Path) -> Iterator[Diagnostic]:
    kinds = sorted(set(volume) - {"name"})
    if "hostPath" in kinds:
        yield Diagnostic("W172", "breaks Pod Security \"restricted\" and \"baseline\" (HostPath Volumes): the volume "
                         "mounts a path of the node", path,
                         "use a PersistentVolumeClaim (a local PersistentVolume pins a node's path to it) or an "
                         "emptyDir", Severity.WARNING)
    elif not set(kinds) <= RESTRICTED_VOLUMES:
        yield Diagnostic("W172", f"breaks Pod Security \"restricted\" (Volume Types): a volume of type {', '.join(kinds)}",
                         path, "mount it through a PersistentVolumeClaim (a PersistentVolume of that type), or use "
                         "one of " + ", ".join(sorted(RESTRICTED_VOLUMES)), Severity.WARNING)


def _context_breaks(pod: Mapping[str, Any], container: Mapping[str, Any]) -> Iterator[tuple[str, str, str, str]]:
    """(owner "pod" or "container", control, what breaks it, how to keep it) for the pod's and the containers'
    security contexts; a setting the container may give or inherit is the container's when it sets it."""
    if container.get("privileged"):
        yield "container", "Privileged Containers", "privileged = true", "set privileged = false"
    capabilities = container.get("capabilities") or {}
    added = sorted(set(capabilities.get("add") or ()) - {"NET_BIND_SERVICE"})
    if added:
        yield "container", "Capabilities", f"adds {', '.join(added)}", "add no capabilities but NET_BIND_SERVICE"
    if "ALL" not in (capabilities.get("drop") or ()):
        yield "container", "Capabilities", "does not drop ALL capabilities", 'set capabilities.drop = ["ALL"]'
    if container.get("allowPrivilegeEscalation") is not False:
        yield ("container", "Privilege Escalation", "does not set allowPrivilegeEscalation = false",
               "set allowPrivilegeEscalation = false")
    if container.get("procMount") not in (None, "Default"):
        yield "container", "/proc Mount Type", f"procMount = {container['procMount']}", 'set procMount = "Default"'
    non_root_owner = "container" if "runAsNonRoot" in container else "pod"
    if container.get("runAsNonRoot", pod.get("runAsNonRoot")) is not True:
        yield (non_root_owner, "Running as Non-root", "the containers may run as root (runAsNonRoot is not true)",
               "set runAsNonRoot = true")
    if (container.get("seccompProfile") or pod.get("seccompProfile")) is None:
        yield ("pod", "Seccomp", "no seccompProfile on the pod or its containers",
               'set seccompProfile = { type = "RuntimeDefault" }')
    for owner, context in (("pod", pod), ("container", container)):
        profile = (context.get("seccompProfile") or {}).get("type", "RuntimeDefault")
        if profile not in _PROFILES:
            yield owner, "Seccomp", f"seccompProfile is {profile}", 'set seccompProfile = { type = "RuntimeDefault" }'
        if context.get("runAsUser") == 0:
            yield owner, "Running as Non-root user", "runAsUser = 0", "run as a user other than 0"
        if (context.get("appArmorProfile") or {}).get("type") not in (None, *_PROFILES):
            yield (owner, "AppArmor", f"appArmorProfile is {context['appArmorProfile']['type']}",
                   'set appArmorProfile = { type = "RuntimeDefault" }')
        selinux = context.get("seLinuxOptions") or {}
        if selinux.get("type") not in (None, *SELINUX_TYPES) or selinux.get("user") or selinux.get("role"):
            yield owner, "SELinux", "custom seLinuxOptions", "set no SELinux user or role, and a container_* type"
        if (context.get("windowsOptions") or {}).get("hostProcess"):
            yield owner, "HostProcess", "a Windows HostProcess", "set windowsOptions.hostProcess = false"
    unsafe = sorted(str(s.get("name")) for s in pod.get("sysctls") or () if s.get("name") not in SAFE_SYSCTLS)
    if unsafe:
        yield "pod", "Sysctls", f"unsafe sysctls {', '.join(unsafe)}", "set only the safe sysctls"
