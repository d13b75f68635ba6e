"""The model the server loads (``binder.model_choice``'s rule for an index) and the name responses give it."""
from __future__ import annotations

import logging
from typing import Any

from binder.index.store import IndexStore
from binder.model_choice import index_model_spec, load_model, model_name
from binder.serve.config import ServeConfig

log = logging.getLogger("anybind.serve")


def load_serve_model(config: ServeConfig) -> tuple[Any, str]:
    """(model holding every modality it stores, its name) for ``config``'s index.

    The whole model is loaded: uploads may be of any modality the model binds.
    """
    notify = None if config.quiet else _note
    spec = index_model_spec(config.index, IndexStore.open(config.index).model, config.model)
    model = load_model(spec, precision=config.precision, progress=not config.quiet, notify=notify)
    return model, model_name(spec)


def _note(message: str) -> None:
    log.warning("anybind serve: %s", message)
