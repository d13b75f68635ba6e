"""`anybind prepare`: the input an exported graph takes, built from files (registered in binder/cli)."""
from __future__ import annotations

import click

from binder.cli import common


def register(app: click.Group) -> None:
    """Attach this module's commands to the top-level ``anybind`` group."""
    app.add_command(prepare_cmd)


@click.command("prepare")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--modality", default="auto", show_default=True,
              help="The files' modality (auto: from the extension; every file must be of one modality).")
@click.option("--model", "model_dir", metavar="MODEL", default=None,
              help="The model whose options preprocess the files: the one you exported "
                   "(default: $ANYBIND_MODEL, else the untrained default).")
@click.option("--out", "out_file", type=click.Path(dir_okay=False), required=True,
              help="Where to write the batch (.npy).")
def prepare_cmd(paths: tuple[str, ...], modality: str, model_dir: str | None, out_file: str) -> None:
    """Write the batch an exported MODALITY.onnx graph takes for PATHS: (N, *input_shape) float32,
    or int64 token ids for text, exactly what anybind embeds (BindingModel.prepare_files)."""
    import numpy as np

    from binder.embed.pipeline import discover
    from binder.errors import QueryError
    from binder.io import atomic_write

    items, failures = discover(paths, modality)
    if failures:
        raise QueryError(f"{failures[0].path}: {failures[0].reason}")
    kinds = sorted({i.modality for i in items})
    if len(kinds) != 1:
        raise QueryError(f"the files are of {len(kinds)} modalities ({', '.join(kinds)}); a graph takes one: "
                         f"prepare each modality on its own")
    model = common.load_model(model_dir, quiet=True, modalities=kinds, device="cpu")
    batch = model.prepare_files(kinds[0], [i.path for i in items]).numpy()
    batch = batch.astype(np.int64 if kinds[0] == "text" else np.float32)
    atomic_write(out_file, lambda fh: np.save(fh, batch))
    click.echo(f"{out_file}: {kinds[0]} batch {tuple(batch.shape)} {batch.dtype}", err=True)
