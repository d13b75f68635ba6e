"""`anybind index` commands (registered in binder/cli/__init__.py): a thin layer over binder.index.build."""
from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from typing import TextIO

import click

from binder.cli import common
from binder.cli.embed import PRECISION_OPTION
from binder.model_choice import UNTRAINED_NOTE, model_spec


def register(app: click.Group) -> None:
    """Attach this module's commands to the top-level ``anybind`` group."""
    app.add_command(index_group)


@click.group("index")
def index_group() -> None:
    """A persistent cross-modal index: build, add, rm, info, compact, verify, repair, export-lance."""


def _embed_options(fn: Callable) -> Callable:
    options = [
        click.argument("index_dir", type=click.Path(file_okay=False)),
        click.argument("paths", nargs=-1, required=True, type=click.Path()),
        click.option("--modality", default="auto", show_default=True, help="Registry name, or auto (by extension)."),
        click.option("--model", "model_dir", metavar="MODEL", default=None,
                     help="Model folder or name from `anybind models` (default: $ANYBIND_MODEL, else the index's "
                          "own model, else untrained)."),
        click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True),
        click.option("--workers", type=click.IntRange(min=1), default=2, show_default=True,
                     help="Threads decoding files."),
        click.option("--shard-size", type=click.IntRange(min=1), default=1024, show_default=True,
                     help="Rows per committed shard (a crash loses at most one shard of work)."),
        click.option("--log", "log_file", type=click.Path(dir_okay=False), default=None,
                     help="Append 'done PATH' (after its shard is committed) and 'failed PATH: REASON' lines."),
        click.option("--ray", "ray_address", default=None, metavar="ADDRESS",
                     help="Run as a Ray Data job: 'local' starts Ray here, else a cluster address."),
        click.option("--quiet", is_flag=True, help="No progress bar."),
        common.DEVICE_OPTION,
        PRECISION_OPTION,
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


@index_group.command("build")
@_embed_options
def build_cmd(**kw) -> None:
    """Create (or resume) an index of every file under PATHS. Exit code 1 if any file failed."""
    _run_build(create=True, **kw)


@index_group.command("add")
@_embed_options
def add_cmd(**kw) -> None:
    """Add new or changed files under PATHS to an existing index. Exit code 1 if any file failed."""
    _run_build(create=False, **kw)


def _run_build(index_dir, paths, modality, model_dir, batch_size, workers, shard_size, log_file,
               ray_address, quiet, device, precision, create) -> None:
    from binder.index.build import BuildOptions, build_index, resolve_model
    from binder.index.store import read_index_manifest
    from binder.registry import get_modality

    if modality != "auto":
        get_modality(modality)
    if not create:
        read_index_manifest(index_dir)  # `add` needs a whole index: say so before loading anything
    model_dir = model_spec(model_dir)
    if resolve_model(index_dir, model_dir) is None and not quiet:
        click.echo(UNTRAINED_NOTE, err=True)
    from binder.device import placement

    if ray_address and (device or precision != "auto"):
        raise click.UsageError("--ray places its actors itself (a GPU each when the cluster has them, at auto "
                               "precision); leave out --device and --precision")
    where = "cpu"
    if not ray_address:  # a missing GPU or a precision it cannot run: one line, before any work
        where = str(placement(device, precision)[0])
    opts = BuildOptions(modality, batch_size, workers, shard_size, progress=not quiet, device=where,
                        precision=precision)
    with _log(log_file) as log:
        if ray_address:
            from binder.index.ray_job import build_index_ray

            report = build_index_ray(index_dir, paths, ray_address, model_dir, opts, log.done, create)
        else:
            report = build_index(index_dir, paths, model_dir=model_dir, options=opts, on_done=log.done, create=create)
        for f in report.failures:
            log.failed(f.path, f.reason)
            click.echo(f"anybind: skipped {f.path}: {f.reason}", err=True)
    click.echo(f"index {index_dir}: {report.added} added, {report.replaced} replaced, {report.unchanged} unchanged, "
               f"{len(report.failures)} failed; {report.count} rows, generation {report.generation}", err=True)
    sys.exit(1 if report.failures else 0)


class _log:
    """``done``/``failed`` lines appended to a file, each flushed as soon as it is known."""

    def __init__(self, path: str | None):
        self.fh: TextIO | None = open(path, "a", encoding="utf-8") if path else None

    def __enter__(self) -> _log:
        return self

    def __exit__(self, *exc) -> None:
        if self.fh:
            self.fh.close()

    def _line(self, text: str) -> None:
        if self.fh:
            self.fh.write(text + "\n")
            self.fh.flush()

    def done(self, path: str) -> None:
        self._line(f"done {path}")

    def failed(self, path: str, reason: str) -> None:
        self._line(f"failed {path}: {reason}")


@index_group.command("rm")
@click.argument("index_dir", type=click.Path(exists=True, file_okay=False))
@click.argument("paths", nargs=-1, type=click.Path())
@click.option("--missing", is_flag=True, help="Also remove rows whose file no longer exists.")
def rm_cmd(index_dir: str, paths: tuple[str, ...], missing: bool) -> None:
    """Remove the rows of PATHS (files, or every row under a folder)."""
    from binder.index.maintenance import remove_from_index

    if not paths and not missing:
        raise click.UsageError("give PATHS to remove, or --missing")
    removed = remove_from_index(index_dir, paths, missing=missing)
    click.echo(f"index {index_dir}: removed {removed} row(s)", err=True)


@index_group.command("info")
@click.argument("index_dir", type=click.Path(exists=True, file_okay=False))
def info_cmd(index_dir: str) -> None:
    """Print the index's manifest summary as JSON: rows, generation, model, dim, shards."""
    from binder.index.store import IndexStore

    m = IndexStore.open(index_dir).manifest()
    dead = sum(len(s["dead"]) for s in m["shards"])
    click.echo(json.dumps({"rows": m["count"], "generation": m["generation"], "model": m["model"],
                           "dim": m["dim"], "shards": len(m["shards"]), "removed_rows_in_shards": dead}, indent=2))


@index_group.command("compact")
@click.argument("index_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--shard-size", type=click.IntRange(min=1), default=1024, show_default=True)
def compact_cmd(index_dir: str, shard_size: int) -> None:
    """Rewrite live rows into fresh shards, dropping removed rows and unused shard files."""
    from binder.index.maintenance import compact_index

    n = compact_index(index_dir, shard_size)
    click.echo(f"index {index_dir}: compacted into {n} shard(s)", err=True)


@index_group.command("verify")
@click.argument("index_dir", type=click.Path(exists=True, file_okay=False))
def verify_cmd(index_dir: str) -> None:
    """Check every file of the index, content hashes included. Prints one line per damaged file;
    exit code 1 if any is damaged, 0 if the index is whole."""
    from binder.index.verify import verify_index

    report = verify_index(index_dir)
    for line in report.lines():
        click.echo(line)
    if not report.whole:
        click.echo(f"index {index_dir}: damaged ({len(report.lines())} file(s)); "
                   f"`anybind index repair {index_dir}` drops the damaged shards", err=True)
        sys.exit(1)
    click.echo(f"index {index_dir}: whole ({report.shards} shard(s), {report.rows} rows)", err=True)


@index_group.command("repair")
@click.argument("index_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--model", "model_dir", metavar="MODEL", default=None,
              help="Model to record if the manifest is too damaged to say (default: the untrained default).")
def repair_cmd(index_dir: str, model_dir: str | None) -> None:
    """Drop damaged shards from the index (an atomic commit) and print the files whose rows were
    dropped, one a line: `anybind index add` over the same folders embeds them again."""
    from binder.hub import resolve_model as resolve_named
    from binder.index.verify import repair_index

    report = repair_index(index_dir, model=os.path.realpath(resolve_named(model_dir)) if model_dir else None)
    for path in report.reembed:
        click.echo(path)
    if not report.repaired:
        click.echo(f"index {index_dir}: whole, nothing to repair", err=True)
        return
    for line in report.notes:
        click.echo(f"note: {line}", err=True)
    unknown = f" (+{report.unknown_rows} row(s) whose file is unknown)" if report.unknown_rows else ""
    click.echo(f"index {index_dir}: repaired {len(report.damages)} damage(s), dropped {len(report.dropped)} "
               f"shard(s); {len(report.reembed)} file(s) to embed again{unknown} with `anybind index add`; "
               f"{report.count} rows, generation {report.generation}", err=True)


@index_group.command("export-lance")
@click.argument("index_dir", type=click.Path(exists=True, file_okay=False))
@click.argument("lance_dir", type=click.Path(file_okay=False))
@click.option("--table", default="anybind", show_default=True, help="LanceDB table name (replaced if it exists).")
def export_lance_cmd(index_dir: str, lance_dir: str, table: str) -> None:
    """Export the index's live rows (vectors + metadata) to an embedded LanceDB table."""
    from binder.index.lance import export_lance

    n = export_lance(index_dir, lance_dir, table)
    click.echo(f"exported {n} row(s) to {lance_dir} (table {table})", err=True)
