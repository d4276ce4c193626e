"""The plugin API: every stackc hook, in one place.

Plugins contribute objects, not control flow: each hook receives a registry and adds the
engines or targets a plugin provides. Built-in plugins use exactly these hooks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from stackc.registry import Registry

PROJECT = "stackc"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def stackc_add_engines(registry: Registry) -> None:
    """Add engines (objects following ``stackc.registry.Engine``) with ``registry.add_engine``.

    Called once per plugin, in a fixed order (sorted by entry-point name), after all plugins are
    loaded. Adding a name another plugin already added is an error naming both distributions.

    .. versionadded:: 0.1
    """


@hookspec
def stackc_add_targets(registry: Registry) -> None:
    """Add targets (objects following ``stackc.registry.Target``) with ``registry.add_target``.

    Called like :func:`stackc_add_engines`, after it.

    .. versionadded:: 0.1
    """
