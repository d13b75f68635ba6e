"""`anybind train`, `anybind anchor train` and `anybind eval`: bindings and their measurement."""
from __future__ import annotations

import json
from pathlib import Path

import click

from binder.cli.common import DEVICE_OPTION, SET_OPTION, load_model, parse_overrides
from binder.cli.embed import PRECISION_OPTION


def register(app: click.Group) -> None:
    """Attach this module's commands to the top-level ``anybind`` group."""
    app.add_command(train_cmd)
    app.add_command(anchor_group)
    app.add_command(eval_cmd)


@click.command("train")
@click.argument("recipe", type=click.Path(exists=True, dir_okay=False))
@click.option("--resume", is_flag=True, help="Continue from OUT/checkpoint.")
@SET_OPTION
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="text: a summary per modality, rounded; json: the metrics as OUT/metrics.json holds them.")
@click.option("--quiet", is_flag=True, help="No progress bars (a resumed run still says where it resumed).")
def train_cmd(recipe: str, resume: bool, sets: tuple[str, ...], fmt: str, quiet: bool) -> None:
    """Bind the recipe's modalities to its anchor; writes OUT/model, OUT/metrics.json.

    Relative paths in RECIPE resolve against the recipe's folder, those given with --set against
    the current directory. Under ``torchrun --nproc-per-node N anybind train RECIPE`` the ranks
    share every step's global batch (train.batch_size) and rank 0 writes and prints.
    """
    from binder.train.recipe import load_recipe
    from binder.train.trainer import Trainer, format_summary

    rec = load_recipe(recipe, parse_overrides(sets))
    trainer = Trainer(rec, progress=not quiet)
    try:
        metrics = trainer.run(resume=resume)
    finally:
        trainer.ranks.leave()
    if trainer.ranks.main:
        click.echo(json.dumps(metrics, indent=2) if fmt == "json" else format_summary(metrics, rec))
        out = Path(rec.train.out)
        click.echo(f"model saved to {out / 'model'} (metrics: {out / 'metrics.json'})", err=True)


@click.group("anchor")
def anchor_group() -> None:
    """Build the frozen anchor itself."""


@anchor_group.command("train")
@click.argument("recipe", type=click.Path(exists=True, dir_okay=False))
@SET_OPTION
@click.option("--quiet", is_flag=True)
def anchor_train_cmd(recipe: str, sets: tuple[str, ...], quiet: bool) -> None:
    """Train a small CLIP-format anchor on (image, caption) pairs and save it as an open_clip folder."""
    from binder.train.anchor_train import load_anchor_recipe, train_anchor

    cfg, ev = load_anchor_recipe(recipe, parse_overrides(sets))
    metrics = train_anchor(cfg, ev, progress=not quiet)
    click.echo(json.dumps(metrics, indent=2))
    click.echo(f"anchor saved to {cfg.out} (use anchor model = \"local-dir:{cfg.out}\")", err=True)


@click.command("eval")
@click.argument("manifest", type=click.Path(exists=True, dir_okay=False))
@click.option("--model", "model_dir", metavar="MODEL", required=True)
@click.option("--root", type=click.Path(exists=True, file_okay=False), default=None,
              help="Folder that relative manifest paths start from (default: the manifest's folder).")
@click.option("--classes", default="", help="Comma-separated class names (index = integer label) for zero-shot.")
@click.option("--template", "templates", multiple=True, default=("{}",), show_default=True,
              help="Prompt template, '{}' = class name (repeatable).")
@click.option("--gallery", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Manifest of any modality to retrieve from: prints R@1/5/10.")
@click.option("--by", type=click.Choice(["label", "pair"]), default="label", show_default=True,
              help="A retrieval hit shares the query's label, or is the query's own paired item.")
@click.option("--perturb", default=None, metavar="SPEC",
              help="Evaluate under named perturbations, e.g. 'snr=10,silence=1.5' (audio), 'rotate=15' (depth); "
                   "an unknown name lists the known ones.")
@click.option("--group", default=None, metavar="COLUMN",
              help="Also report every figure per value of this manifest column, e.g. speaker or condition.")
@DEVICE_OPTION
@PRECISION_OPTION
def eval_cmd(manifest, model_dir, root, classes, templates, gallery, by, perturb, group, device, precision) -> None:
    """Zero-shot classification and cross-modal retrieval of a manifest's items."""
    from binder.train.evaluate import evaluate_manifest

    names = tuple(c.strip() for c in classes.split(",") if c.strip())
    model = load_model(model_dir, quiet=True, device=device, precision=precision)
    result = evaluate_manifest(model, manifest, root, names, templates, gallery, by, perturb=perturb, group=group)
    click.echo(json.dumps(result, indent=2))
