"""Variants of the demo's recipe (``recipes/demo.toml``: audio and depth bound in one run), each trained the
same way and measured on the world's val splits and on real human speech, which are what choose; test and
hard are reported beside them, never used to choose.

    python benchmarks/demo_variants.py --variant frozen=out/demo/model --variant lora16

``NAME=MODEL`` measures an already trained binding as variant NAME instead of training it (the demo's
own model, when ``make demo`` has run with today's recipe). Needs the world and
the anchor (``make demo`` makes both). Results: ``benchmarks/results/demo_variants.json``.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from real_speech import DEV_SET, measure_binding  # noqa: E402

from binder.io import atomic_write_text  # noqa: E402
from binder.model import BindingModel  # noqa: E402
from binder.train.recipe import Recipe, load_recipe  # noqa: E402
from binder.train.trainer import Trainer  # noqa: E402
from recipes.world.manifest import manifest_path  # noqa: E402

RECIPE = ROOT / "recipes" / "demo.toml"
# name: recipe keys over the demo's
VARIANTS: dict[str, dict[str, Any]] = {
    "frozen": {},
    "lora16": {"trunk.lora_rank": 16},
}


def variant_recipe(name: str, out: Path) -> Recipe:
    """The demo's recipe with variant ``name``'s keys, writing under ``out``."""
    return load_recipe(RECIPE, {**VARIANTS[name], "train.out": str(out / name)})


def with_val(recipe: Recipe) -> Recipe:
    """``recipe`` with each modality's val manifest named: the demo trains without one, and val is what
    chooses between its variants."""
    specs = tuple(dataclasses.replace(s, val=s.val or str(manifest_path(recipe.train.root or ".", s.name, "val")))
                  for s in recipe.modalities)
    return dataclasses.replace(recipe, modalities=specs)


def measure(name: str, out: Path, reuse: Path | None, dev: Path) -> dict[str, Any]:
    """Train variant ``name`` (or take ``reuse``) and measure each modality on val, test and hard, and
    audio on the real development set."""
    rec = variant_recipe(name, out)
    t0 = time.perf_counter()
    folder = reuse if reuse is not None else Path(rec.train.out) / "model"
    if reuse is None:
        Trainer(rec, progress=False).run()
    model = BindingModel.load(folder)
    shown = folder.resolve().relative_to(ROOT) if folder.resolve().is_relative_to(ROOT) else folder
    row: dict[str, Any] = {"recipe": VARIANTS[name], "model": str(shown),
                           "minutes": round((time.perf_counter() - t0) / 60, 2)}
    figures = measure_binding(model, with_val(rec), dev, "audio")
    for modality, by_split in figures.pop("splits").items():
        row.update({f"{modality}_{split}": top1 for split, top1 in by_split.items()})
    row.update(figures)
    print(f"  {name:<8} audio val {row['audio_val']:.3f}  depth val {row['depth_val']:.3f}  dev {row['dev']:.3f}  "
          f"(audio test {row['audio_test']:.3f} hard {row['audio_hard']:.3f}, depth test {row['depth_test']:.3f} "
          f"hard {row['depth_hard']:.3f})", flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variant", action="append", required=True, metavar="NAME[=MODEL]",
                    help=f"one of {', '.join(VARIANTS)}; =MODEL measures that trained binding instead of training")
    ap.add_argument("--out", type=Path, default=ROOT / "out" / "demo_variants")
    ap.add_argument("--dev", type=Path, default=DEV_SET)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "demo_variants.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    chosen = [(name, Path(model) if model else None) for name, _, model in (v.partition("=") for v in args.variant)]
    unknown = [name for name, _ in chosen if name not in VARIANTS]
    if unknown:
        ap.error(f"unknown variant {unknown}; known: {', '.join(VARIANTS)}")
    results = json.loads(args.json.read_text()) if args.json.is_file() else {}
    for name, reuse in chosen:
        results[name] = measure(name, args.out, reuse, args.dev)
        atomic_write_text(args.json, json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
