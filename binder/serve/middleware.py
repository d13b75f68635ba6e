"""The ASGI layer around every route: body size limit, metrics, and the last line of defence.

* A body whose ``Content-Length`` is over the limit is refused with 413 before it is read; a
  chunked one is counted as it streams in and refused once it passes the limit.
* Every request is counted by route template (``/items/{item_id}``, never the raw path), method
  and status, and timed.
* An exception no handler took becomes a 500 JSON error and one log line, never a traceback on
  the client or the terminal.
* A HEAD request gets the headers its GET would get and no body (whatever the route or server).
* A client that goes away before its answer (``ClientDisconnect`` while its body is read) is no
  error: nothing is logged above DEBUG and the request is counted with status 499
  (``CLIENT_CLOSED``, nginx's "client closed request"), never as a 500.
"""
from __future__ import annotations

import json
import logging
import time
from typing import Any

from starlette.requests import ClientDisconnect

from binder.serve.errors import UploadTooLargeError, error_body, one_line
from binder.serve.metrics import CLIENT_CLOSED, Metrics

log = logging.getLogger("anybind.serve")
Scope = dict[str, Any]


class ServeMiddleware:
    """Pure ASGI middleware (inside Starlette's error middleware, outside the exception handlers)."""

    def __init__(self, app: Any, metrics: Metrics, max_body: int):
        self.app = app
        self.metrics = metrics
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start, sent = time.perf_counter(), {"status": 500, "started": False}
        head = scope.get("method") == "HEAD"

        async def tracking_send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                sent["status"], sent["started"] = message["status"], True
            elif head and message["type"] == "http.response.body" and message.get("body"):
                message = {**message, "body": b""}
            await send(message)

        try:
            if self._declared_length(scope) > self.max_body:
                await _send_error(tracking_send, 413, "payload_too_large", self._too_large())
            else:
                await self.app(scope, self._limited(receive), tracking_send)
        except ClientDisconnect:
            log.debug("anybind serve: the client of %s %s went away", scope.get("method"), scope.get("path"))
            if not sent["started"]:
                sent["status"] = CLIENT_CLOSED
        except Exception as exc:  # the one place nothing may escape
            log.error("anybind serve: internal error on %s %s: %s: %s", scope.get("method"), scope.get("path"),
                      type(exc).__name__, one_line(str(exc), 300))
            if not sent["started"]:
                await _send_error(tracking_send, 500, "internal_error", "internal error; the server log says more")
        finally:
            route = scope.get("route")
            self.metrics.request(getattr(route, "path", "unmatched"), scope.get("method", ""),
                                 int(sent["status"]), time.perf_counter() - start)

    def _declared_length(self, scope: Scope) -> int:
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    return int(value)
                except ValueError:
                    return 0
        return 0

    def _too_large(self) -> str:
        return (f"the request body is larger than the limit of {self.max_body / (1 << 20):.3g} MiB "
                f"(--max-upload-mb, plus room for base64 and fields)")

    def _limited(self, receive: Any) -> Any:
        seen = {"bytes": 0}

        async def limited_receive() -> dict[str, Any]:
            message = await receive()
            if message["type"] == "http.request":
                seen["bytes"] += len(message.get("body", b""))
                if seen["bytes"] > self.max_body:
                    raise UploadTooLargeError(self._too_large())
            return message

        return limited_receive


async def _send_error(send: Any, status: int, kind: str, message: str) -> None:
    body = json.dumps(error_body(kind, message)).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
