"""What the command modules share: loading the chosen model with its notes, recipe overrides."""
from __future__ import annotations

import tomllib
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from binder.model import BindingModel

def load_model(path: str | None, quiet: bool = False, *, modalities: Iterable[str] | None = None,
               precision: str = "auto", device: str | None = None) -> BindingModel:
    """``binder.model_choice.load_model`` with its notes on stderr unless ``quiet``; ``device`` None
    is ``$ANYBIND_DEVICE``, else auto."""
    from binder.model_choice import load_model as choose

    return choose(path, modalities=modalities, precision=precision, progress=not quiet,
                  notify=None if quiet else echo_err, device=device)


DEVICE_OPTION = click.option(
    "--device", default=None, metavar="DEVICE",
    help="Where the model runs: auto (a GPU when torch sees one), cpu, cuda, cuda:N or mps "
         "(default: $ANYBIND_DEVICE, else auto).")


def echo_err(message: str) -> None:
    """A note for the user, on stderr (stdout carries the results)."""
    click.echo(message, err=True)


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
