"""The search page of ``anybind serve``: the page shell, its static files and result previews.

Routes (an ``APIRouter`` the app includes):

- ``GET /``: the page (``static/index.html``), plain HTML, CSS and JavaScript with no build step
  and nothing fetched from elsewhere (the Content-Security-Policy allows this origin only);
- ``GET /static/{name}``: one of the page's files, by a fixed list of names (no path is ever
  built from the request);
- ``GET /thumbs/{id}.png``: a PNG preview of index item ``id`` (``binder.serve.previews``), made
  once and kept in a small in-memory LRU cache bounded by bytes, keyed by the file's path, size,
  mtime and content hash, so a changed file gets a new preview. Only of a file the index may serve,
  as ``/items/{id}`` (``binder.serve.items``): inside the index's roots once links are resolved, and
  unchanged since indexing (else 404 or 409); the id read as ``/items/{id}`` reads it (``parse_id``:
  ``-1`` or ``01`` is a 400 on both);
- ``POST /preview``: the same picture of an uploaded file (a multipart ``file`` part, or JSON
  ``{"file": {"file": "<base64>", "filename": "x.wav"}}`` as every route takes files), so the page
  can show the file a search was made with; its modality in the ``X-Anybind-Modality`` header.

Every GET route answers HEAD too.

The page shell is public; when the server has a token, previews need it like every API route:
``Authorization: Bearer TOKEN``, or the ``anybind_token`` cookie the page sets from ``?token=``
(an ``<img>`` element cannot send a header). The page moves the token from its address into the
cookie and drops it from the address and the history at once; the one request that carried it in
its address is written to the access log with the token redacted (``binder.serve.logs``).
Failures are raised as typed ``ServeError``s (an unknown item 404, a changed file 409, a file no
preview can be made of 422) that the app's handlers answer in the API's JSON shape,
``{"error": {"type", "message"}}``, never a traceback.
"""
from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from binder.serve.auth import require_token, state_of
from binder.serve.bodies import Body, check_fields, file_field, form_fields, request_body
from binder.serve.errors import ItemNotFoundError, ServeError, one_line
from binder.serve.items import parse_id
from binder.serve.previews import MAX_SIZE, PreviewError, make_preview

STATIC_DIR = Path(__file__).with_name("static")
# The only files /static serves: name → content type.
STATIC_FILES = {
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}
THUMB_CACHE_BYTES = 32 << 20
PREVIEW_VERSION = 2  # in every preview's cache key and ETag: a browser's copy drawn by older code is redrawn
GET = ["GET", "HEAD"]
PREVIEW_WORKERS = 2  # previews decode files: at most this many at once, whatever the request load
SECURITY_HEADERS = {
    "Content-Security-Policy": ("default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob:; "
                                "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

router = APIRouter()


class ThumbCache:
    """A thread-safe LRU of PNG bytes bounded by their total size (an entry larger than the whole
    budget is not kept)."""

    def __init__(self, max_bytes: int = THUMB_CACHE_BYTES):
        self.max_bytes = max_bytes
        self.bytes = 0
        self._items: OrderedDict[tuple, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: tuple) -> bytes | None:
        with self._lock:
            data = self._items.get(key)
            if data is not None:
                self._items.move_to_end(key)
            return data

    def put(self, key: tuple, data: bytes) -> None:
        if len(data) > self.max_bytes:
            return
        with self._lock:
            old = self._items.pop(key, None)
            self.bytes -= len(old) if old is not None else 0
            self._items[key] = data
            self.bytes += len(data)
            while self.bytes > self.max_bytes:
                _, dropped = self._items.popitem(last=False)
                self.bytes -= len(dropped)


THUMBS = ThumbCache()
_PREVIEW_SLOTS = threading.BoundedSemaphore(PREVIEW_WORKERS)


@router.api_route("/", methods=GET, include_in_schema=False)
def page() -> Response:
    """The search page itself (public: it holds no data; the data routes check the token)."""
    html = (STATIC_DIR / "index.html").read_bytes()
    return Response(html, media_type="text/html; charset=utf-8",
                    headers={**SECURITY_HEADERS, "Cache-Control": "no-cache"})


@router.api_route("/static/{name}", methods=GET, include_in_schema=False)
def static_file(name: str) -> Response:
    """One of the page's own files, by name from ``STATIC_FILES`` only."""
    media_type = STATIC_FILES.get(name)
    if media_type is None:
        raise ServeError(f"no static file {one_line(name, 100)!r}; the page has {', '.join(STATIC_FILES)}",
                         status=404, kind="not_found")
    return Response((STATIC_DIR / name).read_bytes(), media_type=media_type,
                    headers={**SECURITY_HEADERS, "Cache-Control": "no-cache"})


@router.api_route("/thumbs/{item_id}.png", methods=GET, include_in_schema=False,
                  dependencies=[Depends(require_token)])
def thumbnail(item_id: str, request: Request) -> Response:
    """A PNG preview of index item ``item_id`` (at most ``MAX_SIZE`` px), from the cache when the
    file is unchanged; ``304`` when the browser already holds this version. Runs in a worker
    thread (a plain ``def``): decoding a file must not hold up the event loop."""
    path, row = state_of(request).item(parse_id(item_id))
    key = preview_key(path, row)
    etag = '"' + hashlib.blake2b(repr(key).encode(), digest_size=12).hexdigest() + '"'
    headers = {"ETag": etag, "Cache-Control": "private, no-cache", "X-Content-Type-Options": "nosniff"}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    png = THUMBS.get(key)
    if png is None:
        png = bounded_preview(path, str(row.get("modality", "")))
        THUMBS.put(key, png)
    return Response(png, media_type="image/png", headers=headers)


@router.post("/preview", include_in_schema=False, dependencies=[Depends(require_token)])
async def upload_preview(request: Request, body: Annotated[Body, Depends(request_body)]) -> Response:
    """The preview of an uploaded file, drawn as a result's is: a multipart ``file`` part or a JSON
    file object; errors name the client's file name, never the upload's temporary path."""
    state = state_of(request)
    if body.data is not None:
        check_fields(body.data, ("file",))
        value = body.data.get("file")
    else:
        assert body.form is not None
        form_fields(body.form, ("file",))
        value = body.form.get("file")
    with await file_field(state.uploads, body, value, "file") as upload:
        try:
            png = await run_in_threadpool(bounded_preview, upload.path, upload.modality)
        except PreviewError as exc:
            raise PreviewError(upload.public(exc.message)) from None
    return Response(png, media_type="image/png",
                    headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff",
                             "X-Anybind-Modality": upload.modality})


def bounded_preview(path: Path, modality: str) -> bytes:
    """``make_preview``, at most ``PREVIEW_WORKERS`` at once whatever the request load."""
    with _PREVIEW_SLOTS:
        return make_preview(path, modality, MAX_SIZE)


def preview_key(path: Path, row: dict[str, Any]) -> tuple:
    """What identifies one version of an item's preview: its file, modality, content hash as
    indexed, and the file's size and mtime now (a file changed since indexing gets a new preview)."""
    try:
        st = path.stat()
    except OSError:
        raise ItemNotFoundError(f"{path.name}: the file is no longer there") from None
    return (str(path), row.get("modality"), row.get("hash"), st.st_size, st.st_mtime_ns, MAX_SIZE, PREVIEW_VERSION)
