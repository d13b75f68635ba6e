"""Named pretrained models: ``--model imagebind-huge`` downloads, checks, converts and caches once.

``catalog`` (known names: built-in, ``register_model``, the ``anybind.models`` entry points,
``$ANYBIND_MODELS`` TOML files), ``kinds`` (how each kind of released file becomes a model
folder), ``download`` (streamed, resumable, verified HTTP downloads with size, type and time
limits), ``checksum`` (size and sha256 checks), ``cache`` (the ``$ANYBIND_HOME`` layout and a
per-model lock), ``resolve`` (``resolve_model``: the rule for a ``--model`` value). Importing
this package loads neither torch nor requests; they are imported when a model is converted or
fetched.
"""
from binder.hub.cache import CacheState, cache_state, download_path, hub_home, model_dir
from binder.hub.catalog import ModelEntry, find_model, known_models, register_model, unregister_model
from binder.hub.errors import (
    CatalogError,
    ChecksumError,
    DownloadError,
    HubError,
    OfflineError,
    UnknownModelError,
    UnverifiedFileError,
)
from binder.hub.resolve import fetch_file, pull_model, resolve_model

__all__ = [
    "ModelEntry", "register_model", "unregister_model", "known_models", "find_model",
    "resolve_model", "pull_model", "fetch_file",
    "hub_home", "download_path", "model_dir", "cache_state", "CacheState",
    "HubError", "CatalogError", "UnknownModelError", "DownloadError", "OfflineError", "ChecksumError",
    "UnverifiedFileError",
]
