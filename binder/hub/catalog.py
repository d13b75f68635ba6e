"""The catalog of named pretrained models: what ``--model imagebind-huge`` means.

An entry says where a released file lives (URL, file name, size, sha256), what kind of file it is
(``imagebind``: a state dict that ``binder.imagebind`` converts with a preset) and how it is
licensed. The catalog has four sources, so that a name can be added without forking anybind:

- the built-in entries below;
- ``register_model(entry)`` from Python;
- the ``anybind.models`` entry-point group of installed packages (each entry point names a
  ``ModelEntry`` whose ``name`` is the entry point's name), loaded on the first look-up and
  skipped when ``ANYBIND_DISABLE_PLUGINS=1``, as modality plugins are;
- the TOML file(s) named by ``$ANYBIND_MODELS`` (several joined with ``os.pathsep``), read on every
  look-up. This is the user's own configuration, so an entry there may redefine any other name
  (for instance to point ``imagebind-huge`` at a mirror); the other sources may not collide.

The TOML format, one table per model::

    [models.my-imagebind]
    kind = "imagebind"
    url = "https://mirror.example/imagebind_huge.pth"
    filename = "imagebind_huge.pth"       # optional: the last part of the URL's path by default
    size = 4803584173                     # optional: bytes
    sha256 = "d6f6...2157"                # optional: without it the download is not verified
    max_size = 17179869184                # optional: the most bytes a download may have (16 GiB by default)
    preset = "imagebind-huge"
    description = "ImageBind-Huge from our mirror"
    license = "CC-BY-NC-4.0"
"""
from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import unquote, urlsplit

from binder.hub.errors import CatalogError
from binder.hub.kinds import KINDS
from binder.registry import load_entry_points, plugins_disabled

ENTRY_POINT_GROUP = "anybind.models"
MODELS_ENV = "ANYBIND_MODELS"
_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,99}\Z")
_RESERVED_SUFFIXES = (".tmp", ".old", ".lock", ".part")  # names the cache itself uses beside a model
_SHA256 = re.compile(r"[0-9a-f]{64}\Z")
DEFAULT_MAX_SIZE = 16 * 2**30  # bytes: the bound of a download whose entry does not set max_size


@dataclass(frozen=True)
class ModelEntry:
    """One named pretrained model: where its file is, how to check it, and how to make it a model folder.

    ``size`` (bytes) and ``sha256`` are checked before a download is kept; either may be ``None``
    where no trustworthy value is published, and the download then says it is unverified.
    ``max_size`` bounds the bytes a download may bring (``DEFAULT_MAX_SIZE``, 16 GiB, unless set;
    at least ``size``): a server that announces or sends more is refused.
    ``preset`` is the architecture a ``kind="imagebind"`` file is converted with. ``source`` says
    where the entry came from (built-in, a plugin, a TOML file) and is not part of its identity.
    """

    name: str
    kind: str
    url: str
    filename: str
    size: int | None
    sha256: str | None
    preset: str | None = None
    description: str = ""
    license: str = ""
    max_size: int = DEFAULT_MAX_SIZE
    source: str = field(default="register_model", compare=False)

    def __post_init__(self) -> None:
        where = f"model entry {self.name!r} ({self.source})"
        if not isinstance(self.name, str) or not _NAME.match(self.name) or self.name.endswith(_RESERVED_SUFFIXES):
            raise CatalogError(f"{where}: a name is 1-100 lowercase letters, digits, '.', '_' or '-', "
                               f"starts with a letter or digit and does not end in {', '.join(_RESERVED_SUFFIXES)}")
        if self.kind not in KINDS:
            raise CatalogError(f"{where}: unknown kind {self.kind!r}; known kinds: {', '.join(sorted(KINDS))}")
        scheme = urlsplit(self.url).scheme if isinstance(self.url, str) else ""
        if scheme not in ("http", "https"):
            raise CatalogError(f"{where}: url must be http:// or https://, got {self.url!r}")
        if (not isinstance(self.filename, str) or not self.filename or self.filename.startswith(".")
                or any(c in self.filename for c in "/\\\0") or self.filename.endswith(".part")):
            raise CatalogError(f"{where}: filename must be a plain file name (no folders, not hidden, "
                               f"not *.part), got {self.filename!r}")
        if self.size is not None and (isinstance(self.size, bool) or not isinstance(self.size, int) or self.size <= 0):
            raise CatalogError(f"{where}: size must be a positive number of bytes or absent, got {self.size!r}")
        if isinstance(self.max_size, bool) or not isinstance(self.max_size, int) or self.max_size <= 0:
            raise CatalogError(f"{where}: max_size must be a positive number of bytes, got {self.max_size!r}")
        if self.size is not None and self.size > self.max_size:
            raise CatalogError(f"{where}: size {self.size} is over max_size {self.max_size}; raise max_size")
        if self.sha256 is not None:
            digest = self.sha256.lower() if isinstance(self.sha256, str) else ""
            if not _SHA256.match(digest):
                raise CatalogError(f"{where}: sha256 must be 64 hex digits or absent, got {self.sha256!r}")
            object.__setattr__(self, "sha256", digest)
        if KINDS[self.kind].needs_preset and not self.preset:
            raise CatalogError(f"{where}: kind {self.kind!r} needs a preset (e.g. imagebind-huge)")


# Size and sha256 of imagebind_huge.pth as served at the URL below. Meta publishes no checksum for it;
# these values are the ones independent copies of the released file record: the Git LFS pointers of
# the Hugging Face repositories DAMO-NLP-SG/Video-LLaMA-2-7B-Finetuned, .../Video-LLaMA-2-13B-Finetuned,
# .../Video-LLaMA-2-13B-Pretrained and spaces/nimnim/ImageAPI, and a project that downloaded the file
# from dl.fbaipublicfiles.com and pinned it. A download that differs from them is refused.
IMAGEBIND_HUGE = ModelEntry(
    name="imagebind-huge",
    kind="imagebind",
    url="https://dl.fbaipublicfiles.com/imagebind/imagebind_huge.pth",
    filename="imagebind_huge.pth",
    size=4_803_584_173,
    sha256="d6f6c22bedcc90708448d5d2fbb7b2db9c73f505dc89bd0b2e09b23af1b62157",
    preset="imagebind-huge",
    description="ImageBind-Huge (Meta, 2023): image, text, audio, depth, thermal and IMU in one 1024-d space",
    license="CC-BY-NC-4.0 (non-commercial)",
    source="built-in",
)

_BUILTIN: dict[str, ModelEntry] = {e.name: e for e in (IMAGEBIND_HUGE,)}
_REGISTERED: dict[str, ModelEntry] = {}
_PLUGINS: dict[str, ModelEntry] = {}
_state = {"plugins": False}


def register_model(entry: ModelEntry, *, replace: bool = False) -> ModelEntry:
    """Add ``entry`` to the catalog for this process; a name taken by another entry raises unless ``replace``."""
    if not isinstance(entry, ModelEntry):
        raise CatalogError(f"register_model expects a ModelEntry, got {type(entry).__name__}")
    _load_plugins()
    taken = _BUILTIN.get(entry.name) or _PLUGINS.get(entry.name) or _REGISTERED.get(entry.name)
    if taken is not None and taken != entry and not replace:
        raise CatalogError(f"model {entry.name!r} is defined twice: by {taken.source} and by {entry.source}")
    _REGISTERED[entry.name] = entry
    return entry


def unregister_model(name: str) -> None:
    """Remove an entry added with ``register_model`` (built-in and plugin entries stay)."""
    _REGISTERED.pop(name, None)


def _load_plugins() -> None:
    """Entry points of the ``anybind.models`` group, once per process (as for modality plugins)."""
    if _state["plugins"] or plugins_disabled():
        return
    _state["plugins"] = True
    for ep, entry in load_entry_points(ENTRY_POINT_GROUP, CatalogError, "model plugin"):
        if not isinstance(entry, ModelEntry) or entry.name != ep.name:
            raise CatalogError(f"model plugin entry point {ep.name!r} points at {ep.value}, which is not a "
                               f"ModelEntry named {ep.name!r}")
        entry = dataclasses.replace(entry, source=f"plugin {ep.value}")
        taken = _BUILTIN.get(ep.name)
        if taken is not None and taken != entry:
            raise CatalogError(f"model {ep.name!r} is defined twice: by {taken.source} and by {entry.source}")
        _PLUGINS[ep.name] = entry


def env_files() -> list[Path]:
    """The TOML files ``$ANYBIND_MODELS`` names (empty when unset)."""
    raw = os.environ.get(MODELS_ENV, "")
    return [Path(p).expanduser() for p in raw.split(os.pathsep) if p.strip()]


_TOML_KEYS = {"kind", "url", "filename", "size", "sha256", "preset", "description", "license", "max_size"}


def read_models_file(path: str | os.PathLike) -> list[ModelEntry]:
    """The entries of one catalog TOML file (``[models.NAME]`` tables); any mistake names the file."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CatalogError(f"{path}: no such file (named by ${MODELS_ENV})") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise CatalogError(f"{path}: cannot read the model catalog ({exc})") from None
    models = data.get("models", {})
    extra = sorted(set(data) - {"models"})
    if extra or not isinstance(models, dict):
        raise CatalogError(f"{path}: expected only [models.NAME] tables, found {extra or ['models = ...']}")
    entries = []
    for name, table in models.items():
        if not isinstance(table, dict):
            raise CatalogError(f"{path}: models.{name} must be a table")
        unknown = sorted(set(table) - _TOML_KEYS)
        if unknown:
            raise CatalogError(f"{path}: models.{name}: unknown key(s) {unknown}; known: {sorted(_TOML_KEYS)}")
        entries.append(_entry_from_table(path, name, table))
    return entries


def _entry_from_table(path: Path, name: str, table: dict[str, Any]) -> ModelEntry:
    for key in ("kind", "url"):
        if not isinstance(table.get(key), str):
            raise CatalogError(f"{path}: models.{name}: {key} is required and must be a string")
    for key in ("filename", "sha256", "preset", "description", "license"):
        if key in table and not isinstance(table[key], str):
            raise CatalogError(f"{path}: models.{name}: {key} must be a string")
    url = table["url"]
    filename = table.get("filename") or unquote(PurePosixPath(urlsplit(url).path).name)
    return ModelEntry(name=name, kind=table["kind"], url=url, filename=filename, size=table.get("size"),
                      sha256=table.get("sha256"), preset=table.get("preset"),
                      description=table.get("description", ""), license=table.get("license", ""),
                      max_size=table.get("max_size", DEFAULT_MAX_SIZE), source=str(path))


def known_models() -> dict[str, ModelEntry]:
    """Every known entry by name, sorted: built-in, plugins, ``register_model``, then ``$ANYBIND_MODELS``."""
    _load_plugins()
    merged = {**_BUILTIN, **_PLUGINS, **_REGISTERED}
    seen: dict[str, ModelEntry] = {}
    for path in env_files():
        for entry in read_models_file(path):
            if entry.name in seen and seen[entry.name] != entry:
                raise CatalogError(f"model {entry.name!r} is defined twice: by {seen[entry.name].source} "
                                   f"and by {entry.source}")
            seen[entry.name] = entry
    merged.update(seen)
    return dict(sorted(merged.items()))


def find_model(name: str) -> ModelEntry | None:
    """The entry named ``name``, or None."""
    return known_models().get(name)
