"""`anybind modalities` and `anybind embed`: files and folders → vectors."""
from __future__ import annotations

import json
import sys

import click

from binder.cli.common import DEVICE_OPTION, load_model
from binder.config import INFERENCE_PRECISIONS
from binder.model_choice import UNTRAINED, model_spec

PRECISION_OPTION = click.option(
    "--precision", type=click.Choice(INFERENCE_PRECISIONS), default="auto", show_default=True,
    help="auto: bf16 on a GPU that has it, else fp16 on a GPU, fp32 on the CPU. int8: dynamic int8 "
         "quantization of the encoders, faster on the CPU (docs/guides/performance.md).")


def register(app: click.Group) -> None:
    """Attach this module's commands to the top-level ``anybind`` group."""
    app.add_command(modalities_cmd)
    app.add_command(embed_cmd)


@click.command("modalities")
@click.option("--model", "model_dir", metavar="MODEL", default=None,
              help="Model folder or name from `anybind models` (default: every registered modality, untrained).")
def modalities_cmd(model_dir: str | None) -> None:
    """List modalities: extensions, input tensor, tokens and length policy."""
    from binder.describe import modality_table

    model = load_model(model_dir, quiet=True)
    for line in modality_table(model):
        click.echo(line)


@click.command("embed")
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--modality", default="auto", show_default=True, help="Registry name, or auto (by extension).")
@click.option("--model", "model_dir", metavar="MODEL", default=None,
              help="Model folder saved by anybind (default: untrained tiny model).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="embeddings", show_default=True,
              help="Output folder for .npy shards + .jsonl metadata.")
@click.option("--format", "fmt", type=click.Choice(["npy", "jsonl"]), default="npy", show_default=True,
              help="npy: shards in --out; jsonl: one {path, modality, embedding} object per line on stdout.")
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--workers", type=click.IntRange(min=1), default=2, show_default=True,
              help="Threads decoding files.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@PRECISION_OPTION
@DEVICE_OPTION
@click.option("--ray", "ray_address", default=None, metavar="ADDRESS",
              help="Run as a Ray Data job writing the same shards ('local' starts Ray here, else a cluster address).")
def embed_cmd(paths, modality, model_dir, out_dir, fmt, batch_size, workers, quiet, precision, device,
              ray_address) -> None:
    """Embed files and folders. Bad files are reported and skipped; exit code 1 if any failed."""
    from binder.embed.pipeline import discover, embed_items
    from binder.embed.shards import ShardWriter
    from binder.registry import get_modality

    if modality != "auto":
        get_modality(modality)
    if ray_address:  # the shards are written by Ray Data tasks (binder.index.ray_job)
        from binder.index.build import BuildOptions
        from binder.index.ray_job import embed_ray

        if fmt != "npy":
            raise click.UsageError("--ray writes npy shards; use --format npy")
        if precision != "auto" or device:
            raise click.UsageError("--ray places its actors itself (a GPU each when the cluster has them, at auto "
                                   "precision: fp32 on CPUs, bf16/fp16 on GPUs); leave out --device and --precision")
        opts = BuildOptions(modality, batch_size, workers, progress=False)
        done, failures = embed_ray(paths, out_dir, ray_address, model_spec(model_dir), opts)
        for f in failures:
            click.echo(f"anybind: skipped {f.path}: {f.reason}", err=True)
        click.echo(f"embedded {done} file(s) into {out_dir} with Ray; {len(failures)} failed", err=True)
        sys.exit(1 if failures else 0)
    items, failures = discover(paths, modality)
    model = load_model(model_dir, quiet, modalities={i.modality for i in items}, precision=precision, device=device)
    writer = None
    if fmt == "npy":
        writer = ShardWriter(out_dir, model.embed_dim, info={"model": model_spec(model_dir) or UNTRAINED})
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
