"""No secret in the server's logs: the token a page address may carry is redacted from access lines.

The search page takes its token from ``?token=`` and moves it into a cookie at once, dropping it
from the address (``static/app.js``); the first request for the page still carries it, and
uvicorn's access log writes the whole request line. ``RedactToken``, a filter on the
``uvicorn.access`` logger, rewrites ``token=...`` in every query string of a record (its message
and its arguments) to ``token=[redacted]`` before any handler sees it. ``create_app`` installs it
once per process; uvicorn's logging set-up keeps a logger's filters.
"""
from __future__ import annotations

import logging
import re

ACCESS_LOGGER = "uvicorn.access"
REDACTED = "[redacted]"
_TOKEN = re.compile(r"(?i)((?:^|[?&;])[\w.-]*token=)[^&;\s#\"]*")  # token=, access_token=, ...


def redact(text: str) -> str:
    """``text`` with the value of every ``token=`` (or ``..._token=``) query parameter replaced by ``[redacted]``."""
    return _TOKEN.sub(rf"\g<1>{REDACTED}", text)


class RedactToken(logging.Filter):
    """Rewrites ``token=...`` in a log record's message and string arguments; drops no record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and "token=" in record.msg.lower():
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) and "token=" in a.lower() else a
                                for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: redact(v) if isinstance(v, str) else v for k, v in record.args.items()}
        return True


def redact_access_log(logger: logging.Logger | None = None) -> None:
    """Install ``RedactToken`` on the access logger (once)."""
    target = logger or logging.getLogger(ACCESS_LOGGER)
    if not any(isinstance(f, RedactToken) for f in target.filters):
        target.addFilter(RedactToken())
