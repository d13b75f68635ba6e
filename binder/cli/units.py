"""`anybind units fit`: k-means codebooks for speech units (MFCC, or a trained binding's hidden features)."""
from __future__ import annotations

import click

from binder.cli.common import DEVICE_OPTION


def register(app: click.Group) -> None:
    """Attach this module's commands to the top-level ``anybind`` group."""
    app.add_command(units_group)


@click.group("units")
def units_group() -> None:
    """Codebooks of discrete speech units (the speech_units modality)."""


@units_group.command("fit")
@click.argument("manifest", type=click.Path(exists=True, dir_okay=False))
@click.option("--out", "out", type=click.Path(dir_okay=False), required=True, help="Codebook file to write.")
@click.option("--model", "model_dir", metavar="MODEL", default=None,
              help="A trained speech_units binding: cluster its hidden features (the next iteration). "
                   "Without it, MFCC frames are clustered (the first iteration).")
@click.option("--layer", type=click.IntRange(min=1), default=None, help="Trunk blocks to run for the hidden features "
              "(default: half the trunk).")
@click.option("--k", "k", type=click.IntRange(min=2), default=100, show_default=True, help="Number of units.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--max-rows", type=click.IntRange(min=1), default=200_000, show_default=True,
              help="Hidden-feature rows k-means sees at most (a seeded sample).")
@click.option("--root", type=click.Path(exists=True, file_okay=False), default=None,
              help="Folder that relative manifest paths start from (default: the manifest's folder).")
@click.option("--quiet", is_flag=True, help="No progress bars.")
@DEVICE_OPTION
def fit_cmd(manifest: str, out: str, model_dir: str | None, layer: int | None, k: int, seed: int, max_rows: int,
            root: str | None, quiet: bool, device: str | None) -> None:
    """Fit a codebook on the speech files of MANIFEST (use training speech only) and save it to OUT.

    The codebook goes into a recipe as the speech_units option ``codebook = "OUT"``. With --model the
    hidden features are computed on --device; k-means (and the first iteration's MFCC) run on the CPU.
    """
    from binder.cli.common import load_model
    from binder.device import resolve_device
    from binder.errors import AnybindError
    from binder.train.data import read_pairs
    from binder.train.units import MODALITY, fit_first_codebook, fit_next_codebook

    where = resolve_device(device)  # a device torch cannot use: one line, before anything is read
    paths = [r.path for r in read_pairs(manifest, root) if r.modality == MODALITY]
    if not paths:
        raise click.UsageError(f"{manifest}: no {MODALITY} records")
    if model_dir is None:
        book, failed = fit_first_codebook(paths, k, seed, progress=not quiet)
    else:
        # read on the CPU at fp32: its weights are copied into the feature extractor, which then moves to --device
        model = load_model(model_dir, quiet=True, modalities=[MODALITY], precision="fp32", device="cpu")
        if MODALITY not in model.stored:
            raise AnybindError(f"{model_dir}: holds no {MODALITY} binding (it holds: "
                               f"{', '.join(model.stored) or 'no modality'}); --model must be a trained "
                               f"{MODALITY} binding, or leave it out to fit a first-iteration (MFCC) codebook")
        book, failed = fit_next_codebook(model, paths, layer, k, seed, max_rows, progress=not quiet, device=where)
    for path, reason in failed:
        click.echo(f"anybind: skipped {path}: {reason}", err=True)
    book.save(out)
    layer_note = f", layer {book.info['layer']}" if book.iteration > 1 else ""
    click.echo(f"codebook of iteration {book.iteration}{layer_note}: k={book.k}, feature dim "
               f"{book.centroids.shape[1]}, {len(paths) - len(failed)} files ({len(failed)} skipped) → {out}")
