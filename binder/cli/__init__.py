"""The ``anybind`` command line: a thin layer over the library API, one module per command family."""
from __future__ import annotations

import os
import sys

import click

from binder.cli import bench, convert, embed, export, index, models, prepare, search, serve, train, units, world
from binder.errors import AnybindError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="anybind")
@click.option("--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice).")
def app(threads: int | None) -> None:
    """anybind: embed any modality into one shared CLIP space."""
    if threads:
        import torch  # here, not at the top: `anybind --help` and the error paths stay fast

        torch.set_num_threads(threads)


for _module in (embed, train, units, index, search, convert, models, world, bench, export, prepare, serve):
    _module.register(app)


DEBUG_ENV = "ANYBIND_DEBUG"


def main() -> None:
    """Console entry point: every failure becomes one line on stderr and a non-zero exit code.

    Typed anybind errors exit 2 with their message; usage errors exit as click says; an OS error
    (disk full, permission) or an unexpected exception also ends in one line and exit 2, never a
    traceback, unless ``ANYBIND_DEBUG=1`` asks for the traceback.
    """
    try:
        app(standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except (click.exceptions.Abort, KeyboardInterrupt):
        click.echo("aborted", err=True)
        sys.exit(130)
    except AnybindError as exc:
        _fail(f"anybind: error: {_one_line(exc)}")
    except OSError as exc:
        _fail(f"anybind: error: {_one_line(exc)}")
    except MemoryError as exc:
        _fail(f"anybind: error: out of memory ({_one_line(exc) or type(exc).__name__})")
    except Exception as exc:  # a bug: still one line, the traceback on request
        _fail(f"anybind: internal error: {type(exc).__name__}: {_one_line(exc)} "
              f"(set {DEBUG_ENV}=1 for the traceback)")


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:2000]


def _fail(line: str) -> None:
    if os.environ.get(DEBUG_ENV):
        raise  # the exception being handled, with its traceback
    click.echo(line, err=True)
    sys.exit(2)
