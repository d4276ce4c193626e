"""Replicas from Kubernetes EndpointSlices: watch, relist after every reconnect, ready endpoints only.

The ``kubernetes`` package is imported here only, when a model uses this discovery.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from stackc_router.config import KubernetesDiscovery

SERVICE_LABEL = "kubernetes.io/service-name"


def ready_backends(slices: Iterable[Mapping[str, Any]], port: int) -> list[str]:
    """``http://ADDRESS:PORT`` for every ready endpoint in the slices (terminating ones excluded)."""
    urls = set()
    for endpoint_slice in slices:
        for endpoint in endpoint_slice.get("endpoints") or ():
            conditions = endpoint.get("conditions") or {}
            if conditions.get("ready") is False or conditions.get("terminating"):
                continue
            for address in endpoint.get("addresses") or ():
                host = f"[{address}]" if ":" in address else address
                urls.add(f"http://{host}:{port}")
    return sorted(urls)


async def watch_endpoint_slices(target: KubernetesDiscovery, update: Callable[[list[str]], None]) -> None:
    """Keep ``update`` fed with the ready replicas of one Service until cancelled."""
    loop = asyncio.get_running_loop()
    stop = threading.Event()
    thread = threading.Thread(target=_watch, args=(target, lambda urls: loop.call_soon_threadsafe(update, urls), stop),
                              daemon=True, name=f"endpointslices-{target.service}")
    thread.start()
    try:
        await asyncio.Event().wait()
    finally:
        stop.set()


def _watch(target: KubernetesDiscovery, update: Callable[[list[str]], None], stop: threading.Event) -> None:
    from kubernetes import client, config, watch

    config.load_incluster_config()
    api = client.DiscoveryV1Api(client.ApiClient())
    selector = f"{SERVICE_LABEL}={target.service}"
    while not stop.is_set():
        try:
            listing = api.list_namespaced_endpoint_slice(target.namespace, label_selector=selector)
            slices = {s.metadata.name: api.api_client.sanitize_for_serialization(s) for s in listing.items}
            update(ready_backends(slices.values(), target.port))
            stream = watch.Watch().stream(api.list_namespaced_endpoint_slice, target.namespace, label_selector=selector,
                                          resource_version=listing.metadata.resource_version, timeout_seconds=300)
            for event in stream:
                if stop.is_set():
                    return
                item = api.api_client.sanitize_for_serialization(event["object"])
                name = item["metadata"]["name"]
                if event["type"] == "DELETED":
                    slices.pop(name, None)
                else:
                    slices[name] = item
                update(ready_backends(slices.values(), target.port))
        except Exception:  # noqa: BLE001 - any API or network error: back off, then relist from scratch
            stop.wait(2.0)
