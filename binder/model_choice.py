"""Which model a job uses, written once for the CLI, the server and library users.

The rule: a model named (a folder, or a known name fetched by ``binder.hub``), else
``$ANYBIND_MODEL``, else the untrained default, which says so. A job over an index uses the model
the index records, whatever else is named, and refuses to guess when that model has gone.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from binder.errors import IndexStoreError

if TYPE_CHECKING:
    import torch

    from binder.model import BindingModel

MODEL_ENV = "ANYBIND_MODEL"
UNTRAINED = "untrained-default"  # what indexes, embeddings and responses call the untrained default
UNTRAINED_NOTE = ("note: no --model given; using a randomly initialised tiny anchor and bindings. "
                  "The weights are UNTRAINED: embeddings are valid vectors but carry no meaning.")
Notify = Callable[[str], None]


def model_spec(spec: str | os.PathLike | None) -> str | None:
    """``spec`` as given, else ``$ANYBIND_MODEL``, else None (the untrained default)."""
    return os.fspath(spec) if spec else (os.environ.get(MODEL_ENV) or None)


def load_model(spec: str | os.PathLike | None = None, *, modalities: Iterable[str] | None = None,
               precision: str = "auto", progress: bool = True, notify: Notify | None = None,
               device: str | None = "cpu") -> BindingModel:
    """The model ``spec`` names (see ``model_spec``), in eval mode, on ``device``.

    ``modalities`` names what the job will encode ("text" for text queries or labels): only those
    parts are read (``BindingModel.load``); None reads the whole model. ``precision`` is one of
    ``INFERENCE_PRECISIONS`` (``binder.precision``; ``auto``: half precision on a GPU, fp32 on the CPU).
    ``device`` is a ``binder.device`` spec (None: ``$ANYBIND_DEVICE``, else auto); both are checked
    before anything is read. ``notify`` hears the untrained default's warning.
    """
    from binder.device import placement
    from binder.hub import resolve_model
    from binder.model import BindingModel  # imported here so that command-line help stays fast
    from binder.precision import INT8_MIN_WIDTH

    where, precision = placement(device, precision)
    spec = model_spec(spec)
    if spec:
        model = BindingModel.load(resolve_model(spec, progress=progress), modalities)
    else:
        if notify is not None:
            notify(UNTRAINED_NOTE)
        model = BindingModel.default()
    model = ready_for_inference(model, where, precision)
    if precision == "int8" and not model.int8_encoders and notify is not None:
        notify(f"note: --precision int8: no encoder of this model is {INT8_MIN_WIDTH} or more wide, where int8 "
               f"gains on a CPU (docs/guides/performance.md); it runs at fp32")
    return model


def ready_for_inference(model: BindingModel, where: torch.device, precision: str) -> BindingModel:
    """``model`` in eval mode at ``precision`` (``binder.precision.apply_precision``) and placed on
    ``where``: the last step of every job that loads a model to encode (``placement`` gives both)."""
    from binder.precision import apply_precision

    model = apply_precision(model.eval(), precision)
    return model.place(where) if where.type != "cpu" else model


def find_recorded_model(recorded: str, index: str | os.PathLike) -> str | None:
    """The folder an index's recorded model names, relative to the working folder or to the index."""
    for base in (Path.cwd(), Path(index)):
        path = base / os.path.expanduser(recorded)
        if path.is_dir():
            return str(path)
    return None


def index_model_spec(index: str | os.PathLike, recorded: str | None,
                     requested: str | os.PathLike | None) -> str | None:
    """The model a job over ``index`` uses: the one it records (``recorded``) when that is there,
    else ``requested`` / ``$ANYBIND_MODEL`` / the default.

    IndexStoreError when the recorded model has gone and nothing was requested, and when a request
    names another model than the one the index records: queries must be embedded by the model
    that embedded the rows, so a request is either that model or refused, never silently ignored.
    """
    if recorded and recorded != UNTRAINED:
        found = find_recorded_model(recorded, index)
        if found is None and not requested:
            raise IndexStoreError(f"{index} was built with model {recorded}, which is not there any more; "
                                  f"pass --model")
        if found is not None:
            if requested and not same_model(requested, found):
                raise IndexStoreError(f"{index} was built with model {found}; --model {os.fspath(requested)} "
                                      f"is another model (leave --model out: the index's own is used)")
            return found
    return model_spec(requested)


def same_model(spec: str | os.PathLike, folder: str | os.PathLike) -> bool:
    """Whether ``spec`` (a folder, or a known name already in the cache) names the model in ``folder``."""
    path = Path(spec).expanduser()
    if path.is_dir():
        return path.resolve() == Path(folder).resolve()
    from binder.hub import cache_state, known_models

    entry = known_models().get(os.fspath(spec))
    cached = cache_state(entry).model if entry is not None else None
    return cached is not None and Path(cached).resolve() == Path(folder).resolve()


def model_name(spec: str | os.PathLike | None) -> str:
    """What outputs call a model: a known name as given, a folder by its last two parts
    (``demo/model``: enough to tell models apart without showing the machine's paths), or
    ``UNTRAINED``."""
    if not spec:
        return UNTRAINED
    path = Path(spec).expanduser()
    if not path.is_dir():
        return os.fspath(spec)
    return "/".join(path.resolve().parts[-2:])
