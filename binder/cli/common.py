"""What the command modules share: the model resolution rule and recipe overrides."""
from __future__ import annotations

import os
import tomllib
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from binder.model import BindingModel

UNTRAINED_NOTE = ("note: no --model given; using a randomly initialised tiny anchor and bindings. "
                  "The weights are UNTRAINED: embeddings are valid vectors but carry no meaning.")
MODEL_ENV = "ANYBIND_MODEL"


def load_model(path: str | None, quiet: bool = False, *, modalities: Iterable[str] | None = None,
               precision: str = "fp32") -> BindingModel:
    """The model at ``path``, else at ``$ANYBIND_MODEL``, else the untrained default (with a note).

    ``path`` is a model folder or a known model's name (``anybind models``), fetched and
    converted on first use (``binder.hub``). ``modalities`` names what the command will encode
    ("text" for a text query or labels): only those parts are read from the folder
    (``BindingModel.load``); None loads the whole model. ``precision`` "int8" quantizes the
    loaded encoders (``binder.precision``).
    """
    from binder.hub import resolve_model
    from binder.model import BindingModel  # imported here so that `anybind --help` stays fast
    from binder.precision import apply_precision

    path = path or os.environ.get(MODEL_ENV) or None
    if path:
        folder = resolve_model(path, progress=not quiet)  # a folder, or a known name (downloaded once)
        model = BindingModel.load(folder, modalities)
    else:
        if not quiet:
            click.echo(UNTRAINED_NOTE, err=True)
        model = BindingModel.default().eval()
    return apply_precision(model, precision)


def parse_overrides(pairs: tuple[str, ...]) -> dict[str, Any]:
    """``--set train.steps=100`` → {"train.steps": 100} (values parsed as TOML scalars)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or "." not in key:
            raise click.BadParameter(f"{pair!r}: use SECTION.KEY=VALUE", param_hint="--set")
        try:
            out[key] = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            out[key] = raw
    return out


SET_OPTION = click.option("--set", "sets", multiple=True, metavar="SECTION.KEY=VALUE",
                          help="Override a recipe value, e.g. --set train.steps=100 (repeatable).")
