"""Typed errors of the model hub: each names the model, URL or file it is about and what went wrong.

They derive from ``AnybindError``, so the command line turns each into one ``anybind: error:``
line with exit code 2, never a traceback.
"""
from __future__ import annotations

import os

from binder.errors import AnybindError


class HubError(AnybindError):
    """Base class of the errors of named pretrained models (catalog, download, cache)."""


class CatalogError(HubError):
    """A catalog entry is malformed, or two sources define the same model name differently."""


class UnknownModelError(HubError):
    """A ``--model`` value is neither a model folder nor a known model name."""

    def __init__(self, spec: str, known: list[str], hint: str = ""):
        self.spec = spec
        self.known = list(known)
        names = ", ".join(self.known) if self.known else "(none)"
        extra = f" {hint}" if hint else ""
        super().__init__(f"{spec!r} is neither a model folder nor a known model name.{extra} "
                         f"Known names: {names} (`anybind models` lists them); a folder holding "
                         f"model.safetensors + config.json is accepted as well")


class DownloadError(HubError):
    """A download failed: the server refused it, or it stopped and could not be resumed."""

    def __init__(self, url: str, reason: str, message: str | None = None):
        self.url = url
        self.reason = reason
        super().__init__(message or f"download of {url} failed: {reason}")


class OfflineError(DownloadError):
    """The server cannot be reached (no network, DNS failure, connection refused).

    ``target`` is where the file is expected in the cache: a copy put there by hand is checked
    and used by the next run (for an entry without a sha256, ``verifiable=False``, only once the
    copy's sha256 is added to the entry).
    """

    def __init__(self, url: str, reason: str, target: str | os.PathLike, expect: str = "", verifiable: bool = True):
        self.target = os.fspath(target)
        detail = f" ({expect})" if expect else ""
        then = ("the next run checks it and uses it" if verifiable else
                "its catalog entry has no sha256, so add the copy's sha256 to the entry as well: the next run "
                "then checks it and uses it (an unchecked copy is not used)")
        super().__init__(url, reason, f"cannot reach {url}: {reason}. To install it without a connection, "
                                      f"fetch that file elsewhere and put it at {self.target}{detail}; {then}")


class ChecksumError(DownloadError):
    """A file's size or sha256 is not the one the catalog expects; nothing of it is kept in the cache."""

    def __init__(self, source: str, what: str, expected: str | int, actual: str | int, note: str = ""):
        self.source = source
        self.what = what
        self.expected = expected
        self.actual = actual
        tail = f"; {note}" if note else ""
        super().__init__(source, f"{what} mismatch",
                         f"{source}: {what} mismatch: expected {expected}, got {actual}{tail}")


class UnverifiedFileError(HubError):
    """A file in the cache for an entry without a sha256 that no checked download left there as it is.

    Such an entry has nothing to check a file against, so only the file a download that passed every
    check wrote (and recorded) is used; ``path`` is the file, ``problem`` says why it is not used.
    """

    def __init__(self, path: str | os.PathLike, problem: str):
        self.path = os.fspath(path)
        self.problem = problem
        super().__init__(f"{self.path}: not used: {problem}")
