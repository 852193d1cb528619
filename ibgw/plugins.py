"""Plugin loading and the registries built from hooks.

Built-in behaviour lives in :mod:`ibgw.default_plugins` and is registered exactly
like a third-party plugin. Entry points (group ``ibgw``) are loaded one by one with
fault isolation: a plugin that fails to import, implements a hook that has no spec,
or whose hook signatures do not match, is skipped and reported by ``ibgw plugins``.
``IBGW_LOAD_PLUGINS`` is a comma-separated allow-list of distribution names (an
empty string loads none).
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field
from types import FunctionType, MethodType, ModuleType

import pluggy

from . import hookspecs

DEFAULT_PLUGINS = (
    "ibgw.default_plugins.live_backend",
    "ibgw.default_plugins.session",
    "ibgw.default_plugins.accounts",
    "ibgw.default_plugins.redaction",
    "ibgw.default_plugins.audit_sink",
    "ibgw.default_plugins.core_commands",
    "ibgw.default_plugins.core_fixtures",
)


@dataclass
class PluginInfo:
    """What ``ibgw plugins`` reports about one plugin."""

    name: str
    distribution: str | None = None
    version: str | None = None
    hooks: list[str] = field(default_factory=list)
    error: str | None = None
    builtin: bool = False

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "distribution": self.distribution,
            "version": self.version,
            "hooks": self.hooks,
            "error": self.error,
            "builtin": self.builtin,
        }


class PluginManager(pluggy.PluginManager):
    """pluggy's manager plus what ibgw tracks: load errors and plugin metadata."""

    def __init__(self):
        super().__init__("ibgw")
        self.add_hookspecs(hookspecs)
        self.infos: dict[str, PluginInfo] = {}

    def parse_hookimpl_opts(self, plugin, name: str):
        """pluggy's, with a shortcut for module plugins: a module attribute that is not
        a function (or a function without the ``ibgw_impl`` marker) is no hook.

        pluggy looks every name of ``dir(plugin)`` up with ``inspect.getattr_static``,
        which for a module can only find a hookable function in the module's
        ``__dict__``; a plugin module holds hundreds of names (imports, constants,
        declarations) and the generic lookup was a tenth of ``ibgw --help``."""
        if type(plugin) is ModuleType:
            value = plugin.__dict__.get(name)
            if type(value) is FunctionType:
                if self.project_name + "_impl" not in value.__dict__:
                    return None
            elif not isinstance(value, (staticmethod, classmethod, MethodType)):
                return None
        return super().parse_hookimpl_opts(plugin, name)

    def register_checked(self, plugin, name: str, info: PluginInfo) -> bool:
        """Register ``plugin`` unless it implements an unknown hook or mismatches a
        spec; either way record it in ``infos``."""
        unknown = [
            n
            for n in dir(plugin)
            if n.startswith("ibgw_")
            and self.parse_hookimpl_opts(plugin, n) is not None
            and not hasattr(hookspecs, n)
        ]
        if unknown:
            info.error = f"implements hook(s) with no spec: {', '.join(sorted(unknown))}"
            self.infos[name] = info
            return False
        try:
            self.register(plugin, name=name)
        except (pluggy.PluginValidationError, ValueError) as exc:
            info.error = f"invalid plugin: {type(exc).__name__}: {_first_line(exc)}"
            self.infos[name] = info
            return False
        info.hooks = sorted(h.name for h in (self.get_hookcallers(plugin) or []))
        self.infos[name] = info
        return True

    def plugin_name_of(self, impl_function) -> str:
        for name, plugin in self.list_name_plugin():
            if getattr(plugin, getattr(impl_function, "__name__", ""), None) is impl_function:
                return name
        return "?"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


def _allow_list() -> set[str] | None:
    raw = os.environ.get("IBGW_LOAD_PLUGINS")
    if raw is None:
        return None
    return {_norm(n) for n in raw.split(",") if n.strip()}


def _norm(name: str) -> str:
    return name.strip().lower().replace("_", "-")


@dataclass
class EntryPoint:
    """An ``ibgw`` entry point: ``name = module[:attr]`` of a distribution."""

    name: str
    value: str
    distribution: str
    version: str | None

    def load(self):
        module, _, attr = self.value.partition(":")
        obj = importlib.import_module(module.strip())
        for part in filter(None, attr.strip().split(".")):
            obj = getattr(obj, part)
        return obj


def _scan_dist_info(group: str = "ibgw") -> list[EntryPoint] | None:
    """Entry points of ``group`` read straight from ``*.dist-info/entry_points.txt``
    on ``sys.path`` (first distribution of a name wins, as with importlib.metadata).

    ``importlib.metadata`` costs ~50 ms to import (it brings the email parser),
    half of ``ibgw --help``'s budget; a dist-info directory's name already holds the
    distribution's name and version. Returns ``None`` when it meets something it does
    not read (a zip or egg file on sys.path), so the caller falls back."""
    import sys

    found: list[EntryPoint] = []
    seen: set[str] = set()
    marker = group.encode()
    for entry in sys.path:
        if not entry:
            entry = "."
        try:
            names = os.listdir(entry)
        except (NotADirectoryError, FileNotFoundError, PermissionError):
            if os.path.isfile(entry):
                return None  # a zip or egg file: let importlib.metadata read it
            continue
        except OSError:
            continue
        for dirname in sorted(n for n in names if n.endswith((".dist-info", ".egg-info"))):
            stem = dirname.rpartition(".")[0]  # "name-version"
            dist, _, version = stem.partition("-")
            key = _norm(dist)
            if key in seen:
                continue
            seen.add(key)
            try:
                with open(os.path.join(entry, dirname, "entry_points.txt"), "rb") as fh:
                    data = fh.read()
            except OSError:
                continue
            if marker not in data:  # most distributions: no need to decode and parse
                continue
            if not version and dirname.endswith(".egg-info"):
                version = _pkg_info_version(os.path.join(entry, dirname, "PKG-INFO"))
            section = None
            for line in data.decode("utf-8").splitlines():
                line = line.strip()
                if not line or line[0] in "#;":
                    continue
                if line.startswith("["):
                    section = line.strip("[]").strip()
                elif section == group and "=" in line:
                    name, _, value = line.partition("=")
                    found.append(
                        EntryPoint(
                            name.strip(), value.strip(), dist.replace("_", "-"), version or None
                        )
                    )
    return found


def _pkg_info_version(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("Version:"):
                    return line.split(":", 1)[1].strip() or None
                if not line.strip():
                    break
    except OSError:
        pass
    return None


def _entry_points(group: str = "ibgw") -> list[EntryPoint]:
    scanned = _scan_dist_info(group)
    if scanned is not None:
        return scanned
    from importlib.metadata import entry_points

    out = []
    for ep in entry_points(group=group):
        dist = getattr(ep, "dist", None)
        out.append(
            EntryPoint(
                ep.name,
                ep.value,
                dist.name if dist is not None else ep.name,
                dist.version if dist is not None else None,
            )
        )
    return out


def load_entrypoint_plugins(pm: PluginManager) -> None:
    allow = _allow_list()
    for ep in _entry_points("ibgw"):
        if allow is not None and _norm(ep.distribution) not in allow:
            continue
        if pm.has_plugin(ep.name) or ep.name in pm.infos:
            continue
        info = PluginInfo(name=ep.name, distribution=ep.distribution, version=ep.version)
        try:
            module = ep.load()
        except Exception as exc:  # a broken plugin must not break the CLI
            info.error = f"failed to import: {type(exc).__name__}: {_first_line(exc)}"
            pm.infos[ep.name] = info
            continue
        pm.register_checked(module, ep.name, info)


def get_plugin_manager(load_entrypoints: bool = True, extra=()) -> PluginManager:
    """A fresh plugin manager with the built-in plugins, entry-point plugins (unless
    ``load_entrypoints`` is false) and ``extra`` plugin objects."""
    pm = PluginManager()
    for modname in DEFAULT_PLUGINS:
        info = PluginInfo(name=modname, distribution="ibgw", version=_core_version(), builtin=True)
        try:
            module = importlib.import_module(modname)
        except Exception as exc:  # even a built-in must not take the whole CLI down
            info.error = f"failed to import: {type(exc).__name__}: {_first_line(exc)}"
            pm.infos[modname] = info
            continue
        pm.register_checked(module, modname, info)
    if load_entrypoints:
        load_entrypoint_plugins(pm)
    for plugin in extra:
        name = getattr(plugin, "__name__", None) or type(plugin).__name__
        pm.register_checked(plugin, name, PluginInfo(name=name))
    return pm


def _core_version() -> str:
    from . import __version__

    return __version__


class DuplicateError(Exception):
    pass


class ReadRegistry:
    """Reads registered through ``ibgw_register_reads``, with the plugin that
    registered each one. Registering the same (category, name) twice raises
    :class:`DuplicateError` naming both plugins."""

    def __init__(self):
        self.reads: dict[str, object] = {}
        self.owner: dict[str, str] = {}
        self.summaries: dict[str, str] = {}  # category -> its one-line help (Category)
        self.declared: dict[str, dict[str, str]] = {}  # category -> {plugin: summary}
        self.errors: list[str] = []

    def __iter__(self):
        return iter(self.reads.values())

    def __len__(self):
        return len(self.reads)

    def get(self, category: str, name: str):
        return self.reads.get(f"{category} {name}")

    def by_tool_name(self, tool: str):
        for read in self.reads.values():
            if read.tool_name == tool:
                return read
        return None

    def categories(self) -> dict[str, list]:
        out: dict[str, list] = {}
        for read in self.reads.values():
            out.setdefault(read.category, []).append(read)
        return out

    def summary(self, category: str) -> str:
        """The category's one-line help: the ``Category`` its owner (the plugin of its
        first read) declared, else its default read's summary, else its first read's."""
        items = [r for r in self.reads.values() if r.category == category]
        if not items:
            return self.summaries.get(category, "")
        declared = self.declared.get(category, {}).get(self.owner[items[0].key])
        if declared:
            return declared
        return ([r for r in items if r.default] or items)[0].summary


def _refused_endpoint(read, is_denied) -> str | None:
    """The first endpoint ``read`` declares that the read-only policy denies."""
    for endpoint in getattr(read, "endpoints", None) or ():
        if is_denied(getattr(endpoint, "method", None), getattr(endpoint, "path", None)):
            return f"{endpoint.method} {endpoint.path}"
    return None


def collect_reads(pm: PluginManager) -> ReadRegistry:
    """Every read the plugins register. A read that declares an endpoint the
    read-only policy denies is refused here: it becomes a load error of its plugin
    (``ibgw plugins``), never a CLI command or an MCP tool."""
    from .declarations import Category, Read
    from .policy import is_denied  # by reference: ibgw.policy cannot be rebound

    registry = ReadRegistry()
    for impl in pm.hook.ibgw_register_reads.get_hookimpls():
        plugin_name = impl.plugin_name

        def register(read, _owner=plugin_name):
            if isinstance(read, Category):
                registry.summaries.setdefault(read.name, read.summary)  # first wins
                registry.declared.setdefault(read.name, {}).setdefault(_owner, read.summary)
                return
            if not isinstance(read, Read):
                raise TypeError(f"plugin {_owner} registered {type(read).__name__}, not a Read")
            denied = _refused_endpoint(read, is_denied)
            if denied is not None:
                error = f"read '{read.key}' refused: it declares {denied}, which the read-only policy denies"
                registry.errors.append(f"{_owner}: {error}")
                info = pm.infos.get(_owner)
                if info is not None:
                    info.error = error if not info.error else f"{info.error}; {error}"
                return
            if read.key in registry.reads:
                raise DuplicateError(
                    f"read '{read.key}' is registered by both {registry.owner[read.key]} and {_owner}"
                )
            registry.reads[read.key] = read
            registry.owner[read.key] = _owner

        try:
            impl.function(register=register)
        except DuplicateError:
            raise
        except Exception as exc:  # one broken plugin must not hide the others' reads
            registry.errors.append(f"{plugin_name}: {type(exc).__name__}: {_first_line(exc)}")
            if plugin_name in pm.infos:
                pm.infos[plugin_name].error = f"registering reads failed: {_first_line(exc)}"
    return registry
