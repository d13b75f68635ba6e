"""Which model the server loads: the index's own, else ``--model``, else ``$ANYBIND_MODEL``, else
the untrained default (the rule ``anybind search`` follows), and the name responses give it."""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from binder.errors import IndexStoreError
from binder.index.store import IndexStore
from binder.serve.config import ServeConfig

UNTRAINED_NAME = "anybind-untrained"


def load_serve_model(config: ServeConfig) -> tuple[Any, str]:
    """(model holding every modality it stores, its name) for ``config``'s index.

    The whole model is loaded: uploads may be of any modality the model binds.
    """
    from binder.cli.common import MODEL_ENV, load_model

    recorded = IndexStore.open(config.index).model
    found = find_recorded_model(recorded, config.index) if recorded else None
    if recorded and found is None and config.model is None:
        raise IndexStoreError(f"{config.index} was built with model {recorded}, which is not there any more; "
                              f"pass --model")
    if found is not None and config.model and Path(config.model).resolve() != Path(found).resolve():
        if not config.quiet:
            print(f"note: using the index's own model {found}, not --model {config.model}", file=sys.stderr)
    spec = found or config.model or os.environ.get(MODEL_ENV) or None
    model = load_model(spec, config.quiet, precision=config.precision)
    return model.eval(), model_name(spec)


def find_recorded_model(recorded: str, index: Path) -> str | None:
    """The folder an index's recorded model names, relative to the working folder or the index."""
    for base in (Path.cwd(), index):
        path = base / os.path.expanduser(recorded)
        if path.is_dir():
            return str(path)
    return None


def model_name(spec: str | None) -> str:
    """What responses call the model: a known name as given, a folder by its last two parts
    (``demo/model``: enough to tell models apart without showing the server's paths), or the
    untrained default's name."""
    if not spec:
        return UNTRAINED_NAME
    path = Path(spec).expanduser()
    if not path.is_dir():
        return str(spec)
    return "/".join(path.resolve().parts[-2:])
