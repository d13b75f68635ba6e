"""`anybind export onnx`: a model folder → one checked ONNX graph per modality (registered in binder/cli)."""
from __future__ import annotations

import math

import click

from binder.cli import common
from binder.config import EXPORT_PRECISIONS


def register(app: click.Group) -> None:
    """Attach this module's commands to the top-level ``anybind`` group."""
    app.add_command(export_group)


@click.group("export")
def export_group() -> None:
    """Export a model for other runtimes."""


def _finite(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    """NaN passes FloatRange's bounds and infinity its minimum; either would switch the parity check off."""
    if value is not None and not math.isfinite(value):
        raise click.BadParameter(f"{value} is not a finite number; the parity check needs one >= 0")
    return value


@export_group.command("onnx")
@click.argument("model_dir", metavar="MODEL", type=click.Path(exists=True, file_okay=False))
@click.argument("out_dir", metavar="OUT", type=click.Path(file_okay=False))
@click.option("--precision", type=click.Choice(EXPORT_PRECISIONS), default="fp32", show_default=True,
              help="int8: ONNX Runtime's dynamic int8 quantization of every graph.")
@click.option("--modality", "modalities", multiple=True, help="Export only this modality (repeatable).")
@click.option("--tolerance", type=click.FloatRange(min=0), default=None, callback=_finite,
              help="Largest |ONNX - torch| allowed on the test batch, a finite number >= 0 "
                   "(default: 1e-4 fp32, 0.05 int8).")
@click.option("--quiet", is_flag=True, help="No per-graph lines.")
def onnx_cmd(model_dir: str, out_dir: str, precision: str, modalities: tuple[str, ...], tolerance: float | None,
             quiet: bool) -> None:
    """Write OUT/MODALITY.onnx for every modality of MODEL (text tower included) and OUT/anybind_onnx.json.

    Each graph takes the modality's preprocessed batch (dynamic batch axis) and gives unit
    embeddings; ONNX Runtime runs it on a test batch and its output is compared with torch's.
    Needs the onnx extra: pip install 'anybind[onnx]'.
    """
    from binder.export import MANIFEST, export_onnx, require_onnx

    require_onnx()
    model = common.load_model(model_dir, quiet=True, device="cpu")  # graphs are traced on the CPU
    manifest = export_onnx(model, out_dir, precision, tolerance, source=model_dir, modalities=modalities or None)
    for entry in manifest["modalities"].values():
        if not quiet:
            check = entry["check"]
            click.echo(f"{entry['file']}: input {entry['input']['shape']}, max abs diff to torch "
                       f"{check['max_abs_diff']:.2e} (tolerance {check['tolerance']:g}), "
                       f"min cosine {check['min_cosine']:.6f}", err=True)
    click.echo(f"exported {len(manifest['modalities'])} {precision} graph(s) and {MANIFEST} to {out_dir}", err=True)
