"""Request bodies: JSON objects or multipart forms, and their fields checked with clear messages.

Every route that takes a body takes ``application/json`` (files base64-encoded, as the objects
``b64_upload`` reads) or ``multipart/form-data`` (files as parts); anything else is 415. A field of
the wrong type, out of range or unknown is a 400 that names the field, never a traceback or a
silent default. Types are JSON's own: an integer field takes a JSON integer (``"k": "5"`` is a
400); a form field, text by nature, takes the integer's decimal text.
"""
from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import AsyncIterator, Collection, Mapping
from dataclasses import dataclass
from typing import Any

from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request

from binder.serve.errors import ServeError, UnsupportedTypeError, UploadTooLargeError
from binder.serve.uploads import Upload, UploadDir

MAX_FORM_FILES = 64
MAX_FORM_FIELDS = 4096
MAX_FIELD_BYTES = 1 << 20
_INT = re.compile(r"\s*[+-]?[0-9]{1,12}\s*")


@dataclass
class Body:
    """A parsed request body: ``data`` for JSON, ``form`` for multipart (exactly one is set)."""

    data: dict[str, Any] | None = None
    form: FormData | None = None


async def request_body(request: Request) -> AsyncIterator[Body]:
    """FastAPI dependency: the parsed body; a form's spooled upload files are closed after the route."""
    body = await read_body(request)
    try:
        yield body
    finally:
        if body.form is not None:
            await body.form.close()


async def read_body(request: Request) -> Body:
    """The request's JSON object or multipart form; 415 for another content type, 400 if malformed."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "application/json":
        raw = await request.body()
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError) as exc:
            raise ServeError(f"the request body is not valid JSON ({type(exc).__name__}: {exc})"[:300],
                             kind="invalid_json") from None
        if not isinstance(data, dict):
            raise ServeError(f"the JSON body must be an object, not {type(data).__name__}", kind="invalid_json")
        return Body(data=data)
    if ctype == "multipart/form-data":
        form = await request.form(max_files=MAX_FORM_FILES, max_fields=MAX_FORM_FIELDS, max_part_size=MAX_FIELD_BYTES)
        return Body(form=form)
    raise UnsupportedTypeError(f"send application/json or multipart/form-data (got {ctype or 'no content type'})")


def check_fields(data: Mapping[str, Any], allowed: Collection[str]) -> None:
    """400 naming any field the route does not know (a typo is not silently ignored)."""
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise ServeError(f"unknown field{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}; "
                         f"this route takes {', '.join(sorted(allowed))}", kind="invalid_request")


def form_fields(form: FormData, allowed: Collection[str]) -> None:
    """``check_fields`` for a multipart form."""
    check_fields({k: None for k in form.keys()}, allowed)


def as_text(value: Any, name: str, max_chars: int = 100_000) -> str:
    """A non-empty string field of at most ``max_chars`` characters, valid Unicode (``check_unicode``)."""
    if isinstance(value, UploadFile):
        raise ServeError(f"{name} must be a text field, not a file", kind="invalid_request")
    if not isinstance(value, str):
        raise ServeError(f"{name} must be a string, not {_type(value)}", kind="invalid_request")
    check_unicode(value, name)
    if not value.strip():
        raise ServeError(f"{name} is empty", kind="invalid_request")
    if len(value) > max_chars:
        raise ServeError(f"{name} is {len(value):,} characters long, more than {max_chars:,}", kind="invalid_request")
    return value


def check_unicode(value: str, name: str, kind: str = "invalid_text") -> None:
    """400 unless ``value`` is valid Unicode: JSON's ``\\ud800`` escapes can give a lone surrogate,
    which no text can hold (it cannot be encoded, tokenized or echoed back)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        where = f"character {exc.start}: {value[exc.start]!r}"
        raise ServeError(f"{name} is not valid Unicode text (a lone surrogate at {where}); send UTF-8 text",
                         kind=kind) from None


def as_int(value: Any, name: str, low: int, high: int, *, form: bool = False) -> int:
    """An integer field in ``[low, high]``: a JSON integer (not a string, a float or a boolean), or,
    for a form field (``form``), its decimal text."""
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif form and isinstance(value, str) and _INT.fullmatch(value):
        number = int(value)
    if number is None or not low <= number <= high:
        shown = repr(value)[:40] if not isinstance(value, UploadFile) else "a file"
        hint = "; send a JSON number, not a string" if isinstance(value, str) and not form else ""
        raise ServeError(f"{name} must be an integer from {low} to {high} (got {shown}){hint}",
                         kind="invalid_request")
    return number


def as_optional_text(value: Any, name: str) -> str | None:
    """A string field that may be absent, null or empty (then None)."""
    if value is None or value == "":
        return None
    return as_text(value, name, 1000)


def b64_upload(uploads: UploadDir, item: Any, name: str) -> Upload:
    """A JSON ``{"file": "<base64>", "filename": "x.wav"}`` object written to the upload folder."""
    if not isinstance(item, dict):
        raise ServeError(f"{name} must be an object {{\"file\": \"<base64>\", \"filename\": \"x.wav\"}}, "
                         f"not {_type(item)}", kind="invalid_request")
    check_fields(item, ("file", "filename"))
    data = item.get("file")
    if not isinstance(data, str):
        raise ServeError(f"{name}.file must be a base64 string, not {_type(data)}", kind="invalid_request")
    upload = uploads.new(item.get("filename"))
    if len(data) * 3 // 4 > uploads.limit + 3:
        raise UploadTooLargeError(f"{upload.filename}: upload is larger than the limit of "
                                  f"{uploads.limit / (1 << 20):g} MiB (--max-upload-mb)")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise ServeError(f"{name}.file ({upload.filename}) is not valid base64", kind="invalid_base64") from None
    upload.write_bytes(raw)
    return upload


async def form_upload(uploads: UploadDir, part: Any, name: str) -> Upload:
    """A multipart file part streamed to the upload folder (the caller deletes it)."""
    if not isinstance(part, UploadFile):
        raise ServeError(f"{name} must be a file part (with a filename), not a text field", kind="invalid_request")
    upload = uploads.new(part.filename)
    try:
        await upload.copy_from(part)
    except BaseException:
        upload.delete()
        raise
    return upload


async def file_field(uploads: UploadDir, body: Body, value: Any, name: str) -> Upload:
    """The file field ``name`` of either kind of body, in the upload folder (the caller deletes it):
    a JSON file object (``b64_upload``) or a multipart file part (``form_upload``)."""
    if body.data is not None:
        return b64_upload(uploads, value, name)
    return await form_upload(uploads, value, name)


def _type(value: Any) -> str:
    return "null" if value is None else type(value).__name__
