"""``anybind serve``: the HTTP server over an index, and the search page.

``config`` (ServeConfig), ``loading`` (which model), ``state`` (ServeState: model, index reloaded
on each new generation, uploads), ``batching`` (the model's one worker thread, batched encodes),
``embedding`` (inputs → vectors), ``uploads``, ``bodies`` (request parsing), ``auth`` (the token),
``logs`` (the token redacted from access lines), ``metrics`` (prometheus-client, a registry per app),
``middleware`` (limits, metrics, last-resort errors), ``errors``, ``items`` (which indexed files may
be handed out, and streaming them), ``api`` / ``openai_compat`` / ``classify`` (routes), ``app``
(``create_app``); ``page`` and ``previews`` serve the search page.
"""
from __future__ import annotations

from binder.serve.app import create_app
from binder.serve.config import ServeConfig

__all__ = ["ServeConfig", "create_app"]
