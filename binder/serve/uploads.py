"""Uploaded files: a checked file name, a private temp folder, a size limit, deletion after use.

The modality of an upload is found by its file name's extension, as for files on disk, so the
name the client gives matters, but only its extension is kept: the file is written to the
server's private temp folder (mode 0700) under a random name ending in that modality's extension
(``.depth.png`` stays ``.depth.png``), decoded by the normal loaders and deleted after. A name
holding a path (``../../etc/passwd``, ``a/b.wav``, ``C:\\x.wav``) is refused, never resolved.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import uuid
import weakref
from pathlib import Path
from typing import Any, Protocol

from binder.registry import get_modality, modality_for_path
from binder.serve.errors import ServeError, UnsupportedTypeError, UploadTooLargeError

CHUNK = 1 << 20
MAX_NAME = 255


class AsyncReadable(Protocol):
    async def read(self, size: int = -1) -> bytes: ...


def check_filename(filename: Any) -> str:
    """The client's file name if it is a plain name; a ServeError saying what is wrong otherwise."""
    if not isinstance(filename, str) or not filename.strip():
        raise ServeError("the upload has no file name; give one whose extension says its type (clip.wav)",
                         kind="invalid_filename")
    shown = repr(filename[:100])
    try:
        filename.encode("utf-8")
    except UnicodeEncodeError:
        raise ServeError(f"upload file name {shown} is not valid Unicode text (it holds a lone surrogate)",
                         kind="invalid_filename") from None
    if len(filename) > MAX_NAME:
        raise ServeError(f"upload file name {shown}... is longer than {MAX_NAME} characters", kind="invalid_filename")
    if any(ord(c) < 32 or ord(c) == 127 for c in filename):
        raise ServeError(f"upload file name {shown} holds control characters", kind="invalid_filename")
    if "/" in filename or "\\" in filename or filename.strip() in (".", ".."):
        raise ServeError(f"upload file name {shown} holds a path; send a plain file name such as clip.wav",
                         kind="path_traversal")
    return filename


def upload_type(filename: str) -> tuple[str, str]:
    """(modality, extension kept on disk) of an upload named ``filename``: 415 for an unknown type."""
    name = check_filename(filename)
    modality = modality_for_path(name)
    if modality is None:
        raise UnsupportedTypeError(f"{name}: unknown file type (no modality claims its extension); "
                                   f"`anybind modalities` lists the extensions")
    lower = name.lower()
    ext = max((e for e in get_modality(modality).extensions if lower.endswith(e.lower())), key=len)
    return modality, ext.lower()


class Upload:
    """One upload in the temp folder; a context manager that deletes the file on exit."""

    def __init__(self, folder: Path, filename: str, limit: int):
        self.filename = filename
        self.modality, ext = upload_type(filename)
        self.path = folder / f"{uuid.uuid4().hex}{ext}"
        self.limit = limit
        self.size = 0

    def __enter__(self) -> Upload:
        return self

    def __exit__(self, *exc: object) -> None:
        self.delete()

    def delete(self) -> None:
        try:
            self.path.unlink(missing_ok=True)
        except OSError:
            pass

    def write_bytes(self, data: bytes) -> None:
        """Write an upload held in memory (a decoded base64 field)."""
        self._check_size(len(data))
        self._check_empty()
        with open(self.path, "xb") as out:
            out.write(data)

    async def copy_from(self, source: AsyncReadable) -> None:
        """Stream a multipart upload into the file, refusing it once it passes the limit."""
        with open(self.path, "xb") as out:
            while chunk := await source.read(CHUNK):
                self._check_size(self.size + len(chunk))
                out.write(chunk)
        self._check_empty()

    def _check_size(self, size: int) -> None:
        self.size = size
        if size > self.limit:
            raise UploadTooLargeError(f"{self.filename}: upload is larger than the limit of "
                                      f"{self.limit / (1 << 20):g} MiB (--max-upload-mb)")

    def _check_empty(self) -> None:
        if self.size == 0:
            raise ServeError(f"{self.filename}: the upload is empty (0 bytes)", kind="empty_upload")

    def public(self, message: str) -> str:
        """``message`` with the temp file's path replaced by the client's file name."""
        return message.replace(str(self.path), self.filename)


class UploadDir:
    """The server's private temp folder for uploads (0700), removed on close."""

    def __init__(self, limit: int):
        self.path = Path(tempfile.mkdtemp(prefix="anybind-serve-"))
        os.chmod(self.path, 0o700)
        self.limit = limit
        # removed on close, and at the latest when the process exits (an app never started or stopped)
        self._cleanup = weakref.finalize(self, shutil.rmtree, self.path, ignore_errors=True)

    def new(self, filename: Any) -> Upload:
        """A fresh upload slot for a file the client calls ``filename`` (checked here)."""
        return Upload(self.path, check_filename(filename), self.limit)

    def close(self) -> None:
        self._cleanup()
