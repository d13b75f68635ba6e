"""`anybind world build`: the offline world of real data the tests and the demo use."""
from __future__ import annotations

import json

import click


def register(app: click.Group) -> None:
    """Attach this module's commands to the top-level ``anybind`` group."""
    app.add_command(world_group)


@click.group("world")
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
