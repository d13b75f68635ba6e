"""HuBERT's second iteration for speech units: bind on MFCC units (iteration 1), fit codebooks of that
binding's hidden features at each trunk layer, bind on each, choose the layer on **val** only, and
report emergent top-1 (→ text, never trained on) on test and on the hard split for iteration 1 and
the chosen iteration 2. Every binding is (speech_units, image) pairs only, the same recipe, steps and
seed; only the codebook differs.

    python benchmarks/speech_units_iterations.py [--layers 1,2,3,4] [--reuse]

``--reuse`` keeps bindings already trained under --out. Needs out/world and out/anchor.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from emergence import add_world_arguments, recipe_for  # noqa: E402

from binder.model import BindingModel  # noqa: E402
from binder.train.data import read_pairs  # noqa: E402
from binder.train.evaluate import evaluate_manifest  # noqa: E402
from binder.train.recipe import Recipe  # noqa: E402
from binder.train.trainer import Trainer  # noqa: E402
from binder.train.units import fit_next_codebook  # noqa: E402

NAME = "speech_units"


def recipe(args: argparse.Namespace, out: Path, codebook: Path) -> Recipe:
    """The speech_units recipe on the world and anchor given, with ``codebook``."""
    rec = recipe_for(NAME, args.world, args.anchor, out, "image", None)
    mods = tuple(dataclasses.replace(m, options={**m.options, "codebook": str(codebook)}) if m.name == NAME else m
                 for m in rec.bind.modalities)
    return dataclasses.replace(rec, bind=dataclasses.replace(rec.bind, modalities=mods))


def bind(rec: Recipe, reuse: bool) -> BindingModel:
    folder = Path(rec.train.out) / "model"
    if not (reuse and folder.is_dir()):
        Trainer(rec, progress=False).run()
    return BindingModel.load(folder)


def scores(model: BindingModel, rec: Recipe, split: str) -> float:
    spec = rec.modalities[0]
    manifest = Path(rec.train.root or ".") / getattr(spec, split)
    result = evaluate_manifest(model, str(manifest), rec.train.root, rec.eval.classes, rec.eval.templates)
    return float(result["zero_shot_top1"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_world_arguments(ap, "units")
    ap.add_argument("--layers", default="1,2,3,4")
    ap.add_argument("--k", type=int, default=100)
    ap.add_argument("--reuse", action="store_true")
    ap.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "speech_units_iterations.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    first_rec = recipe(args, args.out / "iter1", args.world / "speech_units_codebook.safetensors")
    first = bind(first_rec, args.reuse)
    rows = {"iteration 1 (MFCC)": {s: scores(first, first_rec, s) for s in ("val", "test", "hard")}}
    train = [r.path for r in read_pairs(args.world / first_rec.modalities[0].train, args.world)]
    for layer in (int(x) for x in args.layers.split(",")):
        book_path = args.out / f"{NAME}.iter2.layer{layer}.safetensors"
        if not (args.reuse and book_path.is_file()):
            book, _ = fit_next_codebook(first, train, layer=layer, k=args.k, seed=0, progress=False)
            book.save(book_path)
        rec = recipe(args, args.out / f"iter2-layer{layer}", book_path)
        model = bind(rec, args.reuse)
        rows[f"iteration 2, layer {layer}"] = {s: scores(model, rec, s) for s in ("val", "test", "hard")}
        print(f"  layer {layer}: {rows[f'iteration 2, layer {layer}']}", flush=True)
    second = [k for k in rows if k.startswith("iteration 2")]
    chosen = max(second, key=lambda k: rows[k]["val"])  # chosen on val, never on test or hard
    print("| units | val | test | hard |\n|---|---|---|---|")
    for key, r in rows.items():
        mark = " (chosen on val)" if key == chosen else ""
        print(f"| {key}{mark} | {r['val']:.3f} | {r['test']:.3f} | {r['hard']:.3f} |")
    base = rows["iteration 1 (MFCC)"]
    gain = {s: rows[chosen][s] - base[s] for s in ("test", "hard")}
    print(f"\nchosen {chosen}: test {gain['test']:+.3f}, hard {gain['hard']:+.3f} over iteration 1")
    args.json.write_text(json.dumps({"rows": rows, "chosen": chosen, "gain": gain, "k": args.k}, indent=2))


if __name__ == "__main__":
    main()
