"""The ``anybind`` command line: a thin layer over the library API, one module per command family."""
from __future__ import annotations

import sys

import click
import torch

from binder.cli import convert, embed, index, search, train, world
from binder.errors import AnybindError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="anybind")
@click.option("--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice).")
def app(threads: int | None) -> None:
    """anybind: embed any modality into one shared CLIP space."""
    if threads:
        torch.set_num_threads(threads)


for _module in (embed, train, index, search, convert, world):
    _module.register(app)


def main() -> None:
    """Console entry point: typed anybind errors become one clear line and exit code 2."""
    try:
        app(standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except AnybindError as exc:
        click.echo(f"anybind: error: {exc}", err=True)
        sys.exit(2)
