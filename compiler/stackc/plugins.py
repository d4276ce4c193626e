"""Plugin discovery through entry points (group ``stackc``), in an order that never shows.

pluggy's own ``load_setuptools_entrypoints`` skips a second plugin with a taken name silently
and loads in installation order; stackc sorts, rejects duplicates naming both distributions,
and lets users block plugins.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Sequence
from types import ModuleType

import pluggy

from stackc import hookspecs
from stackc.entry_points import EntryPoint, entry_points
from stackc.records import frozen
from stackc.registry import ContractError, DuplicateNameError, Provider, Registry

ENTRY_POINT_GROUP = "stackc"


class PluginError(Exception):
    """A plugin could not be loaded or crashed while registering: a bug in the plugin."""

    def __init__(self, provider: Provider | None, message: str):
        self.provider = provider
        super().__init__(message)


class PluginConflict(PluginError):
    """Two installed plugins claim one name: the installation must change, not the code."""


@frozen
class LoadedPlugin:
    module: object
    provider: Provider


def discover(blocked: Iterable[str] = ()) -> list[LoadedPlugin]:
    """Load every ``stackc`` entry point, sorted by name; two with one name are an error."""
    blocked = set(blocked)
    found: dict[str, list[EntryPoint]] = {}
    for entry_point in entry_points(ENTRY_POINT_GROUP):
        found.setdefault(entry_point.name, []).append(entry_point)
    loaded = []
    for name in sorted(found):
        if name in blocked:
            continue
        entries = found[name]
        providers = [_provider(e) for e in entries]
        if len({(p.distribution, e.value) for p, e in zip(providers, entries, strict=True)}) > 1:
            raise PluginConflict(None, f"plugin '{name}' is provided twice: by "
                              + " and by ".join(sorted(map(str, providers))))
        try:
            module = entries[0].load()
        except Exception as error:
            raise PluginError(providers[0], f"plugin {providers[0]} failed to load: {error!r}") from error
        loaded.append(LoadedPlugin(module, providers[0]))
    return loaded


def _provider(entry_point: EntryPoint) -> Provider:
    if entry_point.distribution is None:
        return Provider(entry_point.name, "<unknown>", "0")
    return Provider(entry_point.name, entry_point.distribution, entry_point.version or "0")


def build_registry(plugins: Sequence[LoadedPlugin]) -> Registry:
    """Register plugins with pluggy, then ask each one, in order, for its engines and targets."""
    manager = pluggy.PluginManager(hookspecs.PROJECT)
    manager.add_hookspecs(hookspecs)
    implementations = {id(plugin): _implementations(plugin.module) for plugin in plugins}
    for plugin in plugins:
        manager.register(implementations[id(plugin)], name=plugin.provider.plugin)
    manager.check_pending()
    registry = Registry()
    for hook_name in ("stackc_add_engines", "stackc_add_targets"):
        for plugin in plugins:
            others = [implementations[id(p)] for p in plugins if p is not plugin]
            call = manager.subset_hook_caller(hook_name, remove_plugins=others)
            try:
                call(registry=registry.providing(plugin.provider))
            except DuplicateNameError as error:
                raise PluginConflict(plugin.provider, str(error)) from error
            except ContractError as error:
                raise PluginError(plugin.provider, str(error)) from None
            except Exception as error:
                raise PluginError(plugin.provider, f"plugin {plugin.provider} crashed in {hook_name}: {error!r}") from error
    return registry


def _implementations(plugin: object) -> ModuleType:
    """The plugin's hook implementations (what ``hookimpl`` marked), all pluggy looks for: registering a
    whole module makes pluggy inspect every name it imports."""
    marker = f"{hookspecs.PROJECT}_impl"
    implementations = ModuleType(getattr(plugin, "__name__", type(plugin).__name__))
    if isinstance(plugin, ModuleType):  # a module's names are plain values
        found = {name: value for name, value in vars(plugin).items() if hasattr(value, marker)}
    else:  # looked at statically first, as pluggy does, so that no property of a plugin object runs
        found = {name: getattr(plugin, name) for name in dir(plugin)
                 if hasattr(inspect.getattr_static(plugin, name, None), marker)}
    for name, value in found.items():
        setattr(implementations, name, value)
    return implementations


def load_registry(blocked: Iterable[str] = (), extra: Sequence[ModuleType] = ()) -> Registry:
    """The registry of installed plugins (plus ``extra`` modules, which tests use)."""
    plugins = discover(blocked)
    plugins += [LoadedPlugin(m, Provider(m.__name__, "<test>", "0")) for m in extra]
    return build_registry(plugins)
