"""`anybind bench`: zero-shot figures on the standard data sets, next to the paper's."""
from __future__ import annotations

import tempfile
from contextlib import ExitStack
from typing import Any

import click

from binder.cli import common
from binder.cli.embed import PRECISION_OPTION
from binder.model_choice import UNTRAINED, model_spec
from recipes.bench import BENCHMARKS

MAX_LISTED = 20  # items left out while building, listed on stderr before "and N more"


def register(app: click.Group) -> None:
    """Attach this module's commands to the top-level ``anybind`` group."""
    app.add_command(bench_cmd)


def _layouts() -> str:
    """Each data set's folder layout, for --help (\\b keeps click from rewrapping it)."""
    lines = [f"{name} ({b.title}, {b.modality}): {b.layout}" for name, b in BENCHMARKS.items()]
    return "Data set layouts (--data DIR):\n\n\b\n" + "\n".join(lines)


@click.command("bench", epilog=_layouts())
@click.argument("name", type=click.Choice(list(BENCHMARKS)))
@click.option("--data", "data_dir", type=click.Path(exists=True, file_okay=False), required=True,
              help="The data set's folder, in the layout its benchmark documents.")
@click.option("--model", "model_dir", default=None, metavar="MODEL",
              help="Model folder, read by the shared model loader (default: $ANYBIND_MODEL, else the "
                   "untrained tiny model).")
@click.option("--out", "out_file", type=click.Path(dir_okay=False), default=None,
              help="Write the full result (figures, classes, templates, protocol, failures) as JSON.")
@click.option("--work", "work_dir", type=click.Path(file_okay=False), default=None,
              help="Keep the built manifest (and derived crops) here (default: a temp folder, removed).")
@click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True)
@click.option("--workers", type=click.IntRange(min=1), default=2, show_default=True, help="Threads decoding files.")
@click.option("--quiet", is_flag=True, help="No progress bars or notes.")
@common.DEVICE_OPTION
@PRECISION_OPTION
def bench_cmd(name: str, data_dir: str, model_dir: str | None, out_file: str | None, work_dir: str | None,
              batch_size: int, workers: int, quiet: bool, device: str | None, precision: str) -> None:
    """Zero-shot benchmark NAME on the data set in --data; prints anybind's figure and the paper's.

    Files of the data set that cannot be read are listed on stderr and left out of the figure.
    """
    from binder.io import atomic_write_json
    from recipes.bench.run import format_table, run_benchmark

    bench = BENCHMARKS[name]
    model = common.load_model(model_dir, quiet, device=device, precision=precision)
    with ExitStack() as stack:
        work = work_dir or stack.enter_context(tempfile.TemporaryDirectory(prefix=f"anybind-bench-{name}-"))
        result = run_benchmark(model, bench, data_dir, work, batch_size, workers, progress=not quiet)
    result["model"] = model_spec(model_dir) or UNTRAINED
    result["device"], result["precision"] = str(model.input_device), model.precision
    _report_left_out(result)
    for line in format_table([result]):
        click.echo(line)
    click.echo(_summary(result))
    click.echo("protocol: " + "; ".join(f"{k}: {v}" for k, v in result["protocol"].items()))
    if out_file:
        atomic_write_json(out_file, result)
        click.echo(f"result written to {out_file}", err=True)


def _report_left_out(result: dict[str, Any]) -> None:
    """Every file that failed to embed, and the first items left out while building, on stderr."""
    for f in result["failures"]:
        click.echo(f"anybind: skipped {f['path']}: {f['reason']}", err=True)
    skipped = result["skipped_items"]
    for s in skipped[:MAX_LISTED]:
        click.echo(f"anybind: left out {s['path']}: {s['reason']}", err=True)
    if len(skipped) > MAX_LISTED:
        click.echo(f"anybind: ... and {len(skipped) - MAX_LISTED} more left out (all in --out)", err=True)


def _summary(result: dict[str, Any]) -> str:
    """One line under the table: chance, what was left out, the paper figure's source."""
    extra = ""
    if "recall" in result:
        extra = "; " + ", ".join(f"{k} {v:.1f}" for k, v in result["recall"].items())
    return (f"chance {result['chance']:.1f}{extra}; {result['failed']} file(s) failed, {result['skipped']} "
            f"left out while building; paper: {result['paper']['source']}")
