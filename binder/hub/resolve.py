"""From a ``--model`` value to a model folder: a folder as is, a known name fetched and converted once.

``pull_model`` downloads an entry's file into the cache (or checks a copy placed there by hand),
converts it into ``models/<name>/`` and returns that folder; later calls find the folder and do
nothing else. ``resolve_model`` is the rule every command's ``--model`` follows.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from binder.hub.cache import (
    SOURCE_FILE,
    cache_lock,
    download_path,
    human_size,
    is_converted,
    model_dir,
    read_record,
    record_path,
    source_record,
)
from binder.hub.catalog import ModelEntry, find_model, known_models
from binder.hub.checksum import check_file, check_size, sha256_file, warn_unverified
from binder.hub.errors import CatalogError, UnknownModelError, UnverifiedFileError
from binder.hub.kinds import KINDS
from binder.io import atomic_dir, atomic_write_json


def resolve_model(spec: str | os.PathLike, *, progress: bool = True) -> Path:
    """The model folder ``spec`` means.

    An existing folder is returned as is (it wins over a model of the same name); a known model
    name gives its cached folder, downloaded and converted first when missing; anything else is
    an ``UnknownModelError`` that lists the known names.
    """
    text = os.fspath(spec)
    if not text.strip():
        raise UnknownModelError(text, list(known_models()), "An empty name names nothing.")
    path = Path(text).expanduser()
    if path.is_dir():
        return path
    entry = find_model(text)
    if entry is not None:
        return pull_model(entry, progress=progress)
    if path.is_file():
        hint = (f"{text} is a file, not a model folder; an ImageBind checkpoint becomes one with "
                f"`anybind convert imagebind {text} OUT_DIR`.")
    elif os.sep in text or text.startswith((".", "~")):
        hint = f"There is no folder {path}."
    else:
        hint = ""
    raise UnknownModelError(text, list(known_models()), hint)


def pull_model(model: str | ModelEntry, *, progress: bool = True) -> Path:
    """Download (or find) and convert a named model; return its folder in the cache.

    Runs once per model: another process pulling the same name waits for this one and then finds
    the folder. The folder appears whole or not at all; a failed conversion leaves no trace of it.
    """
    entry = _entry(model)
    _check_preset(entry)
    folder = model_dir(entry)
    with cache_lock(entry.name):
        if is_converted(entry):
            return folder
        raw, digest = fetch_file(entry, progress=progress)
        _say(progress, f"converting {raw.name} ({entry.kind}, preset {entry.preset}) into {folder}")
        with atomic_dir(folder) as tmp:
            KINDS[entry.kind].convert(raw, tmp, entry)
            atomic_write_json(tmp / SOURCE_FILE, source_record(entry, digest), durable=False)
    _say(progress, f"{entry.name} is ready: {folder}")
    return folder


def fetch_file(model: str | ModelEntry, *, progress: bool = True) -> tuple[Path, str]:
    """The entry's released file in ``downloads/`` and its sha256, downloaded first when missing.

    A file already there (from an earlier run, or copied by hand) is checked against the entry's
    size and sha256 before it is used; for an entry without a sha256 it must be the file a checked
    download recorded (``_check_unverified``).
    """
    entry = _entry(model)
    raw = download_path(entry)
    if raw.is_file():
        _say(progress, f"checking {raw}")
        if entry.sha256 is None:
            return raw, _check_unverified(entry, raw, progress)
        digest = check_file(raw, entry.size, entry.sha256, progress=progress,
                            note=f"it is not the file {entry.url} serves: delete it or replace it with that file")
        return raw, digest
    from binder.hub.download import download  # requests is imported only when something is fetched

    _say(progress, f"downloading {entry.name} ({human_size(entry.size)}) from {entry.url} to {raw}")
    return raw, download(entry.url, raw, size=entry.size, sha256=entry.sha256, max_size=entry.max_size,
                         progress=progress, record=None if entry.sha256 else record_path(entry))


def _check_unverified(entry: ModelEntry, raw: Path, progress: bool) -> str:
    """The sha256 of ``raw`` if a checked download of the entry's URL left it there as it is now.

    An entry without a sha256 has nothing to check a file against, and a file in ``downloads/``
    may come from an anybind that took HTML pages and cut-off bodies for the file, or from a copy
    by hand: such a file is not trusted, and the error gives its sha256 for the user to pin.
    """
    check_size(str(raw), entry.size, raw.stat().st_size,
               f"it is not the file {entry.url} serves: delete it or replace it with that file")
    digest = sha256_file(raw, progress)
    record = read_record(entry)
    pin = f'add sha256 = "{digest}" to the catalog entry {entry.name!r} if you trust it'
    if record is None:
        raise UnverifiedFileError(raw, f"the catalog entry {entry.name!r} has no sha256 and no checked download of "
                                       f"{entry.url} is on record for this file (an older anybind, or a copy by "
                                       f"hand?); its sha256 is {digest}: {pin}, or delete it to download it again")
    if record.get("url") != entry.url:
        raise UnverifiedFileError(raw, f"it was downloaded from {record.get('url')}, and the catalog entry "
                                       f"{entry.name!r} (no sha256) now names {entry.url}; its sha256 is {digest}: "
                                       f"{pin}, or delete it to download it again")
    if record.get("sha256") != digest or record.get("size") != raw.stat().st_size:
        raise UnverifiedFileError(raw, f"it is not the file the download on record left there (sha256 "
                                       f"{record.get('sha256')}, now {digest}): it changed since; delete it to "
                                       f"download it again, or {pin}")
    warn_unverified(str(raw), digest)
    return digest


def _entry(model: str | ModelEntry) -> ModelEntry:
    if isinstance(model, ModelEntry):
        return model
    entry = find_model(model)
    if entry is None:
        raise UnknownModelError(model, list(known_models()))
    return entry


def _check_preset(entry: ModelEntry) -> None:
    """Refuse an entry whose preset does not exist before gigabytes are fetched for it."""
    if entry.preset is None:
        return
    from binder.presets import list_presets

    if entry.preset not in list_presets():
        raise CatalogError(f"model {entry.name!r} ({entry.source}): unknown preset {entry.preset!r}; "
                           f"known: {', '.join(list_presets())}")


def _say(progress: bool, line: str) -> None:
    if progress:
        print(f"anybind: {line}", file=sys.stderr)
