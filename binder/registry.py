"""The one place modalities are registered and looked up.

Built-in modalities live in the ``modalities`` package; third-party packages add their own
through the ``anybind.modalities`` entry-point group, loaded lazily on the first lookup.
Set ``ANYBIND_DISABLE_PLUGINS=1`` to ignore entry points (useful when a plugin is broken).
"""
from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from binder.errors import AnybindError, RegistryError

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

    from modalities.base import Modality

ENTRY_POINT_GROUP = "anybind.modalities"
DISABLE_PLUGINS_ENV = "ANYBIND_DISABLE_PLUGINS"
_REGISTRY: dict[str, type[Modality]] = {}
_SOURCES: dict[str, str] = {}
_state = {"builtins": False, "plugins": False}
M = TypeVar("M", bound=type)


def register_modality(cls: M | None = None, *, source: str | None = None) -> M | Callable[[M], M]:
    """Class decorator that registers a Modality subclass under its ``name``; duplicates raise."""

    def wrap(klass: M) -> M:
        name = getattr(klass, "name", None)
        if not isinstance(name, str) or not name.isidentifier():
            raise RegistryError(f"{klass.__qualname__} needs a class attribute `name` that is an identifier")
        origin = source or f"{klass.__module__}.{klass.__qualname__}"
        if name in _REGISTRY and _REGISTRY[name] is not klass:
            raise RegistryError(f"modality {name!r} is registered twice: by {_SOURCES[name]} and by {origin}")
        _REGISTRY[name] = klass
        _SOURCES[name] = origin
        return klass

    return wrap(cls) if cls is not None else wrap


def _load_builtins() -> None:
    if not _state["builtins"]:
        _state["builtins"] = True
        importlib.import_module("modalities")


def plugins_disabled() -> bool:
    """Whether ``ANYBIND_DISABLE_PLUGINS`` asks to ignore every entry point."""
    return os.environ.get(DISABLE_PLUGINS_ENV, "") not in ("", "0")


def entry_points(group: str) -> list[EntryPoint]:
    """The installed entry points of ``group``. importlib.metadata is imported here, on the first
    lookup: importing it costs ~20 ms that ``anybind --help`` would pay for nothing."""
    from importlib.metadata import entry_points as installed

    return list(installed(group=group))


def load_entry_points(group: str, error: type[AnybindError], what: str = "plugin") -> Iterator[tuple[EntryPoint, Any]]:
    """Each entry point of ``group`` with the object it names (none when plugins are disabled);
    one that fails to import is an ``error`` naming it, for modalities and model catalogs alike."""
    if plugins_disabled():
        return
    for ep in entry_points(group=group):
        try:
            obj = ep.load()
        except Exception as exc:  # a broken plugin must say who it is
            raise error(f"{what} {ep.name!r} ({ep.value}) failed to import: {exc}") from exc
        yield ep, obj


def _load_plugins() -> None:
    if _state["plugins"] or plugins_disabled():
        return
    _state["plugins"] = True
    for ep, klass in load_entry_points(ENTRY_POINT_GROUP, RegistryError):
        if getattr(klass, "name", None) != ep.name:
            raise RegistryError(
                f"plugin entry point {ep.name!r} points at {ep.value} whose name is {getattr(klass, 'name', None)!r}"
            )
        if _REGISTRY.get(ep.name) is not klass:
            register_modality(klass, source=f"plugin {ep.value}")


def _ensure_loaded() -> None:
    _load_builtins()
    _load_plugins()


def get_modality(name: str) -> type[Modality]:
    """The Modality class registered as ``name``."""
    _ensure_loaded()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise RegistryError(f"unknown modality {name!r}; known: {', '.join(sorted(_REGISTRY))}") from None


def list_modalities() -> list[str]:
    """Names of every registered modality, built-ins and plugins, sorted."""
    _ensure_loaded()
    return sorted(_REGISTRY)


def modality_for_path(path: str | os.PathLike) -> str | None:
    """The modality whose extension is the longest suffix of the file name (``x.depth.png`` → depth)."""
    _ensure_loaded()
    fname = Path(path).name.lower()
    best, best_len = None, 0
    for name, klass in _REGISTRY.items():
        for ext in klass.extensions:
            if fname.endswith(ext.lower()) and len(ext) > best_len:
                best, best_len = name, len(ext)
    return best
