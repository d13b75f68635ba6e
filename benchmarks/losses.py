"""SigLIP's sigmoid loss against InfoNCE: each modality bound with (modality, image) pairs only at
batch sizes 16, 64 and 256, the same steps, data and seed for both losses; emergent zero-shot top-1
(through the frozen text tower, which the binding never saw) on the world's test and hard splits.

    python benchmarks/losses.py [--modalities audio,depth] [--batches 16,64,256] [--steps 400]

Each finished run is written to the results file at once, so a long sweep can be stopped and
resumed (``--resume`` skips the runs already there). Needs out/world and out/anchor.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from emergence import MODALITIES, add_world_arguments, recipe_for  # noqa: E402

from binder.train.trainer import Trainer  # noqa: E402

LOSSES = ("infonce", "siglip")


def run(name: str, loss: str, batch: int, args: argparse.Namespace) -> dict:
    out = args.out / f"{name}-{loss}-b{batch}"
    recipe = recipe_for(name, args.world, args.anchor, out, "image", args.steps,
                        {"train.loss": loss, "train.batch_size": batch, "train.checkpoint_every": 10**9})
    t0 = time.perf_counter()
    metrics = Trainer(recipe, progress=False).run()[name]
    row = {"modality": name, "loss": loss, "batch": batch, "steps": recipe.train.steps,
           "emergent_top1": metrics["zero_shot_top1"], "hard_top1": metrics.get("hard", {}).get("zero_shot_top1"),
           "to_image_R@1": metrics["to_image"]["R@1"], "minutes": (time.perf_counter() - t0) / 60}
    print(f"  {name:<13} {loss:<8} b{batch:<4} clean {row['emergent_top1']:.3f}  hard "
          f"{row['hard_top1'] if row['hard_top1'] is None else round(row['hard_top1'], 3)}  "
          f"({row['minutes']:.1f} min)", flush=True)
    return row


def table(rows: list[dict]) -> str:
    lines = ["| modality | batch | InfoNCE clean | SigLIP clean | InfoNCE hard | SigLIP hard |",
             "|---|---|---|---|---|---|"]
    keyed = {(r["modality"], r["batch"], r["loss"]): r for r in rows}
    order = sorted({(r["modality"], r["batch"]) for r in rows}, key=lambda k: (MODALITIES.index(k[0]), k[1]))
    for name, batch in order:
        cells = []
        for key in ("emergent_top1", "hard_top1"):
            for loss in LOSSES:
                r = keyed.get((name, batch, loss))
                cells.append("-" if r is None or r[key] is None else f"{r[key]:.3f}")
        lines.append(f"| {name} | {batch} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_world_arguments(ap, "losses")
    ap.add_argument("--modalities", default=",".join(MODALITIES))
    ap.add_argument("--batches", default="16,64,256")
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--resume", action="store_true", help="keep the runs already in the results file")
    ap.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "losses.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = json.loads(args.json.read_text())["rows"] if args.resume and args.json.is_file() else []
    done = {(r["modality"], r["loss"], r["batch"], r["steps"]) for r in rows}
    for name in [m for m in args.modalities.split(",") if m]:
        for batch in (int(b) for b in args.batches.split(",")):
            for loss in LOSSES:
                if (name, loss, batch, args.steps) not in done:
                    rows.append(run(name, loss, batch, args))
                    args.json.parent.mkdir(parents=True, exist_ok=True)
                    tmp = args.json.with_name(f".{args.json.name}.tmp")
                    tmp.write_text(json.dumps({"rows": rows}, indent=2))
                    tmp.replace(args.json)
    print("\n" + table(rows))


if __name__ == "__main__":
    main()
