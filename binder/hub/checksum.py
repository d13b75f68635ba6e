"""File checks against a catalog entry: byte size and sha256.

A file is only used when it is exactly the released one. With no published sha256 the size is
still checked and the computed digest is printed, marked as unverified, so that the user can
compare it with a value they trust and pin it in their catalog.
"""
from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

from binder.hub.errors import ChecksumError

CHUNK = 4 * 2**20


def sha256_file(path: str | os.PathLike, progress: bool = False) -> str:
    """The hex sha256 of a file, read in chunks (a progress bar on stderr for large files if asked)."""
    from tqdm import tqdm

    path = Path(path)
    digest = hashlib.sha256()
    size = path.stat().st_size
    with open(path, "rb") as fh, tqdm(total=size, unit="B", unit_scale=True, unit_divisor=1024,
                                      desc=f"checking {path.name}", disable=not progress or size < 64 * 2**20,
                                      file=sys.stderr, leave=False) as bar:
        while block := fh.read(CHUNK):
            digest.update(block)
            bar.update(len(block))
    return digest.hexdigest()


def check_size(source: str, expected: int | None, actual: int, note: str = "") -> None:
    """Raise ``ChecksumError`` when a known size differs."""
    if expected is not None and actual != expected:
        raise ChecksumError(source, "size", f"{expected} bytes", f"{actual} bytes", note)


def check_digest(source: str, expected: str | None, actual: str, note: str = "") -> None:
    """Raise ``ChecksumError`` when a known sha256 differs; say so on stderr when none is known."""
    if expected is None:
        warn_unverified(source, actual)
    elif actual != expected:
        raise ChecksumError(source, "sha256", expected, actual, note)


def warn_unverified(source: str, actual: str) -> None:
    """The warning for a file whose catalog entry has no sha256."""
    print(f"anybind: warning: {source} is NOT verified against a published checksum (its catalog entry "
          f"has no sha256); its sha256 is {actual}. Compare it with a value you trust, and add it to the "
          f"entry to pin it.", file=sys.stderr)


def check_file(path: str | os.PathLike, size: int | None, sha256: str | None, note: str = "",
               progress: bool = False) -> str:
    """Check a file on disk against ``size`` and ``sha256``; return its sha256."""
    path = Path(path)
    check_size(str(path), size, path.stat().st_size, note)
    actual = sha256_file(path, progress)
    check_digest(str(path), sha256, actual, note)
    return actual
