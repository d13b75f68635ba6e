"""`anybind convert` (bring released weights into anybind) and `anybind presets`.

Both are registered in binder/cli/__init__.py.
"""
from __future__ import annotations

import click


@click.group("convert")
def convert_group() -> None:
    """Convert another project's released weights into an anybind model folder."""


@convert_group.command("imagebind")
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.argument("out_dir", type=click.Path(file_okay=False))
@click.option("--preset", default="imagebind-huge", show_default=True,
              help="Architecture the checkpoint has (imagebind-test is the toy-size twin).")
def convert_imagebind_cmd(checkpoint: str, out_dir: str, preset: str) -> None:
    """ImageBind's imagebind_huge.pth (or a .safetensors copy) → OUT_DIR (model.safetensors + config.json).

    The .pth is opened with torch.load(weights_only=True): tensors only, no pickled code runs,
    and a file that needs more is refused.
    """
    from binder.imagebind import convert_imagebind

    folder = convert_imagebind(checkpoint, out_dir, preset)
    click.echo(f"converted {checkpoint} → {folder} (preset {preset}); use it with --model {folder}", err=True)


@click.command("presets")
def presets_cmd() -> None:
    """List the named architectures (BindingModel.from_preset / anybind convert --preset)."""
    from binder.presets import list_presets, preset_summary

    for name in list_presets():
        click.echo(f"{name:24s} {preset_summary(name)}")


def register(app: click.Group) -> None:
    """Attach this module's commands to the top-level ``anybind`` group."""
    app.add_command(convert_group)
    app.add_command(presets_cmd)
