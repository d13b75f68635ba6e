"""The ``anybind`` command line: a thin layer over the library API."""
from __future__ import annotations

import json
import sys

import click
import torch

from binder.errors import AnybindError

UNTRAINED_NOTE = ("note: no --model given; using a randomly initialised tiny anchor and bindings. "
                  "The weights are UNTRAINED: embeddings are valid vectors but carry no meaning.")


def _load_model(path: str | None, quiet: bool = False):
    from binder.model import BindingModel

    if path:
        return BindingModel.load(path)
    if not quiet:
        click.echo(UNTRAINED_NOTE, err=True)
    return BindingModel.default().eval()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="anybind")
@click.option("--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice).")
def app(threads: int | None) -> None:
    """anybind: embed any modality into one shared CLIP space."""
    if threads:
        torch.set_num_threads(threads)


@app.command("modalities")
@click.option("--model", "model_dir", type=click.Path(exists=True, file_okay=False), default=None,
              help="Model folder (default: every registered modality at default options).")
def modalities_cmd(model_dir: str | None) -> None:
    """List modalities: extensions, input tensor, tokens and length policy."""
    from binder.describe import modality_table

    model = _load_model(model_dir, quiet=True)
    for line in modality_table(model):
        click.echo(line)


@app.command("embed")
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--modality", default="auto", show_default=True, help="Registry name, or auto (by extension).")
@click.option("--model", "model_dir", type=click.Path(exists=True, file_okay=False), default=None,
              help="Model folder saved by anybind (default: untrained tiny model).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="embeddings", show_default=True,
              help="Output folder for .npy shards + .jsonl metadata.")
@click.option("--format", "fmt", type=click.Choice(["npy", "jsonl"]), default="npy", show_default=True,
              help="npy: shards in --out; jsonl: one {path, modality, embedding} object per line on stdout.")
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--workers", type=click.IntRange(min=1), default=2, show_default=True,
              help="Threads decoding files.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def embed_cmd(paths, modality, model_dir, out_dir, fmt, batch_size, workers, quiet) -> None:
    """Embed files and folders. Bad files are reported and skipped; exit code 1 if any failed."""
    from binder.embed import discover, embed_items
    from binder.registry import get_modality
    from binder.shards import ShardWriter

    if modality != "auto":
        get_modality(modality)
    items, failures = discover(paths, modality)
    model = _load_model(model_dir, quiet)
    writer = None
    if fmt == "npy":
        writer = ShardWriter(out_dir, model.embed_dim, info={"model": model_dir or "untrained-default"})
    done = 0
    for batch in embed_items(model, items, batch_size, workers, progress=not quiet, failures=failures):
        meta = [{"path": i.path, "modality": i.modality, "shape": list(batch.input_shape)} for i in batch.items]
        done += len(meta)
        if writer is not None:
            writer.add(batch.embeddings, meta)
        else:
            for m, e in zip(meta, batch.embeddings):
                click.echo(json.dumps({"path": m["path"], "modality": m["modality"], "embedding": e.tolist()}))
    if writer is not None:
        writer.close()
    for f in failures:
        click.echo(f"anybind: skipped {f.path}: {f.reason}", err=True)
    where = f" into {out_dir}" if writer is not None else ""
    click.echo(f"embedded {done} file(s){where}; {len(failures)} failed", err=True)
    sys.exit(1 if failures else 0)


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
