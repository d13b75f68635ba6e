"""The ``anybind`` command line: a thin layer over the library API."""
from __future__ import annotations

import json
import sys

import click
import torch

from binder.errors import AnybindError

UNTRAINED_NOTE = ("note: no --model given; using a randomly initialised tiny anchor and bindings. "
                  "The weights are UNTRAINED: embeddings are valid vectors but carry no meaning.")


MODEL_ENV = "ANYBIND_MODEL"


def _load_model(path: str | None, quiet: bool = False):
    """The model at ``path``, else at ``$ANYBIND_MODEL``, else the untrained default (with a note)."""
    import os

    from binder.model import BindingModel

    path = path or os.environ.get(MODEL_ENV) or None
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
@click.option("--ray", "ray_address", default=None, metavar="ADDRESS",
              help="Run as a Ray Data job writing the same shards ('local' starts Ray here, else a cluster address).")
def embed_cmd(paths, modality, model_dir, out_dir, fmt, batch_size, workers, quiet, ray_address) -> None:
    """Embed files and folders. Bad files are reported and skipped; exit code 1 if any failed."""
    from binder.embed import discover, embed_items
    from binder.registry import get_modality
    from binder.shards import ShardWriter

    if modality != "auto":
        get_modality(modality)
    if ray_address:  # the shards are written by Ray Data tasks (binder.ray_job)
        import os

        from binder.index_build import BuildOptions
        from binder.ray_job import embed_ray

        if fmt != "npy":
            raise click.UsageError("--ray writes npy shards; use --format npy")
        opts = BuildOptions(modality, batch_size, workers, progress=False)
        done, failures = embed_ray(paths, out_dir, ray_address, model_dir or os.environ.get(MODEL_ENV), opts)
        for f in failures:
            click.echo(f"anybind: skipped {f.path}: {f.reason}", err=True)
        click.echo(f"embedded {done} file(s) into {out_dir} with Ray; {len(failures)} failed", err=True)
        sys.exit(1 if failures else 0)
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


def _overrides(pairs: tuple[str, ...]) -> dict:
    """``--set train.steps=100`` → {"train.steps": 100} (values parsed as TOML scalars)."""
    import tomllib

    out = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or "." not in key:
            raise click.BadParameter(f"{pair!r}: use SECTION.KEY=VALUE", param_hint="--set")
        try:
            out[key] = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            out[key] = raw
    return out


SET_OPTION = click.option("--set", "sets", multiple=True, metavar="SECTION.KEY=VALUE",
                          help="Override a recipe value, e.g. --set train.steps=100 (repeatable).")


@app.command("train")
@click.argument("recipe", type=click.Path(exists=True, dir_okay=False))
@click.option("--resume", is_flag=True, help="Continue from OUT/checkpoint.")
@SET_OPTION
@click.option("--quiet", is_flag=True, help="No progress bars.")
def train_cmd(recipe: str, resume: bool, sets: tuple[str, ...], quiet: bool) -> None:
    """Bind the recipe's modalities to its anchor; writes OUT/model, OUT/metrics.json."""
    from binder.recipe import load_recipe
    from binder.train import Trainer

    rec = load_recipe(recipe, _overrides(sets))
    metrics = Trainer(rec, progress=not quiet).run(resume=resume)
    click.echo(json.dumps(metrics, indent=2))
    click.echo(f"model saved to {rec.train.out}/model", err=True)


@app.group("anchor")
def anchor_group() -> None:
    """Build the frozen anchor itself."""


@anchor_group.command("train")
@click.argument("recipe", type=click.Path(exists=True, dir_okay=False))
@SET_OPTION
@click.option("--quiet", is_flag=True)
def anchor_train_cmd(recipe: str, sets: tuple[str, ...], quiet: bool) -> None:
    """Train a small CLIP-format anchor on (image, caption) pairs and save it as an open_clip folder."""
    from binder.anchor_train import load_anchor_recipe, train_anchor

    cfg, ev = load_anchor_recipe(recipe, _overrides(sets))
    metrics = train_anchor(cfg, ev, progress=not quiet)
    click.echo(json.dumps(metrics, indent=2))
    click.echo(f"anchor saved to {cfg.out} (use anchor model = \"local-dir:{cfg.out}\")", err=True)


@app.command("eval")
@click.argument("manifest", type=click.Path(exists=True, dir_okay=False))
@click.option("--model", "model_dir", type=click.Path(exists=True, file_okay=False), required=True)
@click.option("--root", type=click.Path(exists=True, file_okay=False), default=None,
              help="Folder that relative manifest paths start from (default: the manifest's folder).")
@click.option("--classes", default="", help="Comma-separated class names (index = integer label) for zero-shot.")
@click.option("--template", "templates", multiple=True, default=("{}",), show_default=True,
              help="Prompt template, '{}' = class name (repeatable).")
@click.option("--gallery", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Manifest of any modality to retrieve from: prints R@1/5/10.")
@click.option("--by", type=click.Choice(["label", "pair"]), default="label", show_default=True,
              help="A retrieval hit shares the query's label, or is the query's own paired item.")
def eval_cmd(manifest, model_dir, root, classes, templates, gallery, by) -> None:
    """Zero-shot classification and cross-modal retrieval of a manifest's items."""
    from binder.evaluate import evaluate_manifest
    from binder.model import BindingModel

    names = tuple(c.strip() for c in classes.split(",") if c.strip())
    result = evaluate_manifest(BindingModel.load(model_dir), manifest, root, names, templates, gallery, by)
    click.echo(json.dumps(result, indent=2))


@app.group("world")
def world_group() -> None:
    """The offline world: real digits, speech and sensor data with every modality rendered from them."""


@world_group.command("build")
@click.argument("folder", type=click.Path(file_okay=False))
@click.option("--small", is_flag=True, help="The small preset the tests use.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--quiet", is_flag=True)
def world_build_cmd(folder: str, small: bool, seed: int, quiet: bool) -> None:
    """Build (or reuse, when cached) the world in FOLDER."""
    import dataclasses

    from recipes.world.build import build_world
    from recipes.world.config import WorldConfig

    cfg = dataclasses.replace(WorldConfig.small() if small else WorldConfig.full(), seed=seed)
    info = build_world(folder, cfg, progress=not quiet)
    click.echo(json.dumps(dataclasses.asdict(info) if dataclasses.is_dataclass(info) else info, indent=2, default=str))


# Command groups that live in their own modules; each module has ``register(app)``.
SUBCOMMAND_MODULES = ("binder.cli_convert", "binder.cli_index", "binder.cli_search")


def _register_subcommands() -> None:
    import importlib

    for name in SUBCOMMAND_MODULES:
        importlib.import_module(name).register(app)


_register_subcommands()


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
