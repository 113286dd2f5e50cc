"""One `catalogue` registry per component kind, each also reading Python entry points.

A third-party package adds a component without touching this repo by declaring an entry point
in the group ``kaleido_<kind>`` (for example ``kaleido_maskers``). Plugins are loaded lazily
and one at a time: a plugin that fails to import produces a warning naming its package, and
only asking for that component fails. This module imports nothing heavy so that
``kaleido --help`` and ``kaleido check`` stay fast.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import threading
import warnings
from collections.abc import Callable
from typing import Any

import catalogue

from kaleido.suggest import did_you_mean

NAMESPACE = "kaleido"

# Each kind maps to the modules that register the built-in components of that kind. The
# modules are imported on first use of the registry, so importing this module stays cheap.
_BUILTIN_MODULES: dict[str, tuple[str, ...]] = {
    "datasets": ("kaleido.data.sources",),
    "sod": ("kaleido.sod.none", "kaleido.sod.background", "kaleido.sod.unet"),
    "patchers": ("kaleido.patchers.kaleido", "kaleido.patchers.fixed"),
    "backbones": ("kaleido.backbones.mobilenet", "kaleido.backbones.resnet"),
    "aligners": ("kaleido.aligners.none", "kaleido.aligners.sat"),
    "maskers": ("kaleido.maskers.random", "kaleido.maskers.agm"),
    "tasks": (
        "kaleido.tasks.amlm",
        "kaleido.tasks.itm",
        "kaleido.tasks.rr",
        "kaleido.tasks.jps",
        "kaleido.tasks.cp",
        "kaleido.tasks.g2cm",
        "kaleido.tasks.b2cm",
    ),
    "models": ("kaleido.models.kaleido",),
}

KINDS: tuple[str, ...] = tuple(_BUILTIN_MODULES)


class UnknownComponent(LookupError):
    """Raised for a name that is not registered; carries the names that exist."""

    def __init__(self, kind: str, name: str, choices: list[str]) -> None:
        self.kind, self.name, self.choices = kind, name, choices
        super().__init__(f"unknown {kind} component {name!r}; expected one of: {', '.join(choices)}"
                         f"{did_you_mean(name, choices)}")


class PluginError(ImportError):
    """Raised when the component asked for lives in a plugin that failed to import."""


class Registry:
    """A catalogue registry of one component kind, with safe entry-point loading."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.group = f"{NAMESPACE}_{kind}"
        # entry_points=False: we read the group ourselves, so that one broken plugin never
        # breaks listing or loading the others.
        self._catalogue = catalogue.create(NAMESPACE, kind, entry_points=False)
        self._builtins_loaded = False
        # Reentrant: a built-in module may look up its own registry while it is being imported.
        self._lock = threading.RLock()
        self._broken: dict[str, str] = {}

    # -- registration ---------------------------------------------------------------------
    def register(self, name: str) -> Callable[[Any], Any]:
        """Decorator: ``@registry.maskers.register("agm")``."""
        return self._catalogue.register(name)

    # -- lookup ---------------------------------------------------------------------------
    def _load_builtins(self) -> None:
        # Under a lock: a second thread asking while the first imports would otherwise find the
        # flag already set and an empty registry (seen as "expected one of: " with no names).
        with self._lock:
            if self._builtins_loaded:
                return
            self._builtins_loaded = True
            for module in _BUILTIN_MODULES.get(self.kind, ()):
                try:
                    importlib.import_module(module)
                except ModuleNotFoundError as exc:
                    if exc.name != module:  # a real import error inside a built-in module
                        raise

    def _entry_points(self) -> dict[str, importlib.metadata.EntryPoint]:
        return {ep.name: ep for ep in importlib.metadata.entry_points(group=self.group)}

    def _load_entry_point(self, ep: importlib.metadata.EntryPoint) -> Any:
        try:
            obj = ep.load()
        except Exception as exc:  # a plugin's bug must not break the library
            package = ep.dist.name if ep.dist is not None else ep.value.split(":")[0]
            message = f"plugin package {package!r} failed to import ({type(exc).__name__}: {exc})"
            if ep.name not in self._broken:
                warnings.warn(f"kaleido: {self.kind} {ep.name!r}: {message}", stacklevel=3)
            self._broken[ep.name] = message
            return None
        if ep.name not in self._catalogue:
            self._catalogue.register(ep.name, func=obj)
        return obj

    def names(self) -> list[str]:
        """Every registered name, plugins included, without importing any plugin."""
        self._load_builtins()
        return sorted(set(self._catalogue.get_all()) | set(self._entry_points()))

    def get(self, name: str) -> Any:
        self._load_builtins()
        if name in self._catalogue:
            return self._catalogue.get(name)
        ep = self._entry_points().get(name)
        if ep is None:
            raise UnknownComponent(self.kind, name, self.names())
        obj = self._load_entry_point(ep)
        if obj is None:
            raise PluginError(f"{self.kind} {name!r}: {self._broken[name]}")
        return obj

    def items(self) -> list[tuple[str, Any | None]]:
        """(name, component) pairs; a broken plugin appears with ``None``."""
        out = []
        for name in self.names():
            try:
                out.append((name, self.get(name)))
            except PluginError:
                out.append((name, None))
        return out

    def broken(self) -> dict[str, str]:
        return dict(self._broken)

    def __contains__(self, name: str) -> bool:
        return name in self.names()


datasets = Registry("datasets")
sod = Registry("sod")
patchers = Registry("patchers")
backbones = Registry("backbones")
aligners = Registry("aligners")
maskers = Registry("maskers")
tasks = Registry("tasks")
models = Registry("models")

REGISTRIES: dict[str, Registry] = {
    "datasets": datasets,
    "sod": sod,
    "patchers": patchers,
    "backbones": backbones,
    "aligners": aligners,
    "maskers": maskers,
    "tasks": tasks,
    "models": models,
}
