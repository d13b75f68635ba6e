"""`anybind models` (the named pretrained models and their state in the cache) and `anybind pull`.

Both are registered in binder/cli/__init__.py.
"""
from __future__ import annotations

import click

ANCHOR_NOTE = ("open_clip anchors are not listed here: they are named name:tag (an open_clip model and pretrained "
               "tag, e.g. ViT-H-14:laion2b_s32b_b79k) and open_clip downloads them itself; list them with "
               "python -c \"import open_clip; print(open_clip.list_pretrained())\"")


@click.command("models")
def models_cmd() -> None:
    """List the named pretrained models (--model NAME), their size, and what of each is cached."""
    from binder.hub import cache_state, hub_home, known_models
    from binder.hub.cache import HOME_ENV, human_size
    from binder.hub.catalog import MODELS_ENV

    click.echo(f"cache: {hub_home()} (${HOME_ENV}); extra catalog entries: ${MODELS_ENV} (TOML)")
    for name, entry in known_models().items():
        state = cache_state(entry)
        if state.model is not None:
            where = str(state.model)
        elif state.download is not None:
            where = f"{state.download} (converted on first use)"
        elif state.partial is not None:
            where = f"{state.partial} ({human_size(state.partial_bytes)} so far; the next pull resumes it)"
        else:
            where = f"`anybind pull {name}` fetches it"
        click.echo(f"{name:20s} {human_size(entry.size):>10s}  {state.label:14s} {where}")
        source = "" if entry.source == "built-in" else f"; from {entry.source}"
        license_ = f"license {entry.license}" if entry.license else "license not stated"
        click.echo(f"    {entry.description or '(no description)'} [{license_}{source}]")
    click.echo(ANCHOR_NOTE)


@click.command("pull")
@click.argument("name")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar or status lines on stderr.")
def pull_cmd(name: str, quiet: bool) -> None:
    """Download, check and convert the named model NAME once; print its folder.

    Later runs of `--model NAME` use that folder directly. A file copied by hand to the cache's
    downloads/ folder is checked and used instead of downloading.
    """
    from binder.hub import pull_model

    click.echo(str(pull_model(name, progress=not quiet)))


def register(app: click.Group) -> None:
    """Attach this module's commands to the top-level ``anybind`` group."""
    app.add_command(models_cmd)
    app.add_command(pull_cmd)
