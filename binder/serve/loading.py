"""The model the server loads (``binder.model_choice``'s rule for an index) and the name responses give it."""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from binder.index.store import IndexStore
from binder.model_choice import index_model_spec, load_model, model_name
from binder.serve.config import ServeConfig

if TYPE_CHECKING:
    import torch

log = logging.getLogger("anybind.serve")


def serve_device(config: ServeConfig) -> tuple[torch.device, str]:
    """(device, precision) the server's model runs at: ``config.device`` resolved (``binder.device``)
    and ``config.precision`` resolved for it (``auto``: half precision on a GPU, fp32 on the CPU).

    A DeviceError (one line) when torch cannot use the device or the device cannot run the
    precision; ``anybind serve`` calls this before it listens and before the index or model is read.
    """
    from binder.device import placement

    return placement(config.device, config.precision)


def load_serve_model(config: ServeConfig) -> tuple[Any, str]:
    """(model holding every modality it stores, its name) for ``config``'s index, on ``config.device``
    at ``config.precision``: the encode worker (``binder.serve.batching``) sends its batches there
    and gets the embeddings back on the CPU (``BindingModel.encode_rows``).

    The whole model is loaded: uploads may be of any modality the model binds.
    """
    serve_device(config)  # a device torch cannot use fails here, before the index is opened
    notify = None if config.quiet else _note
    spec = index_model_spec(config.index, IndexStore.open(config.index).model, config.model)
    model = load_model(spec, precision=config.precision, progress=not config.quiet, notify=notify,
                       device=config.device)
    return model, model_name(spec)


def _note(message: str) -> None:
    log.warning("anybind serve: %s", message)
