"""Training speed of the demo recipe: streaming with augmentation against the preprocess-once path.

Both run in this process, one after the other, on the same world, anchor and recipe (audio and
depth, batch 64). The preprocess-once path (``train.stream = false``, no augmentation) decodes and
preprocesses every file up front and then indexes one in-memory tensor; the streaming path
decodes (from a cache after the first epoch), augments and preprocesses every item at every step
in DataLoader worker processes. Printed: set-up seconds, steps/s of the training loop, and the
ratio of the two paths' steps/s and of their total time for the same number of steps.

    python benchmarks/train_throughput.py [--steps 120] [--workers 2]

Needs out/world and out/anchor (``make demo`` builds both).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from binder.train.recipe import load_recipe  # noqa: E402
from binder.train.trainer import Trainer  # noqa: E402

DEFAULT_THREADS = torch.get_num_threads()


def measure(overrides: dict, steps: int, warm: int, augment: bool = True, threads: int | None = None) -> dict:
    """Set-up time, then steps/s over ``steps`` after ``warm`` unmeasured steps."""
    torch.set_num_threads(threads or DEFAULT_THREADS)
    t0 = time.perf_counter()
    recipe = load_recipe(ROOT / "recipes" / "demo.toml", overrides)
    if not augment:
        recipe = dataclasses.replace(recipe, modalities=tuple(dataclasses.replace(m, augment=False)
                                                              for m in recipe.modalities))
    trainer = Trainer(recipe, progress=False)
    setup = time.perf_counter() - t0
    trainer.model.train()
    for s in range(warm):
        trainer.train_step(s)
    t1 = time.perf_counter()
    for s in range(warm, warm + steps):
        trainer.train_step(s)
    loop = time.perf_counter() - t1
    trainer._batches = None
    return {"threads": torch.get_num_threads(), "setup_s": round(setup, 2), "steps_per_s": round(steps / loop, 3),
            "total_s": round(setup + (loop * (warm + steps) / steps), 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--warm", type=int, default=20, help="unmeasured steps first (worker start, caches)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "train_throughput.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = {"train.out": tmp, "train.steps": args.steps + args.warm, "train.workers": args.workers}
        once_off = {**base, "train.stream": False}
        rows = {
            "preprocess-once (stream = false, no augmentation), torch's default threads": measure(
                once_off, args.steps, args.warm, augment=False),
            "preprocess-once, 1 thread": measure(once_off, args.steps, args.warm, augment=False, threads=1),
            "streaming + augmentation (default)": measure(base, args.steps, args.warm),
        }
    once = max(list(rows.values())[:2], key=lambda r: r["steps_per_s"])
    stream = rows["streaming + augmentation (default)"]
    print("| path | torch threads | set-up s | loop steps/s | total s |")
    print("|---|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {r['threads']} | {r['setup_s']} | {r['steps_per_s']} | {r['total_s']} |")
    ratio = stream["steps_per_s"] / once["steps_per_s"]
    total_ratio = once["total_s"] / stream["total_s"]
    print(f"\nstreaming / the faster preprocess-once row: loop {ratio:.2f}x, whole run {total_ratio:.2f}x "
          f"({args.steps} steps after {args.warm} warm-up, {args.workers} workers)")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"rows": rows, "loop_ratio": ratio, "total_ratio": total_ratio,
                                     "steps": args.steps, "warm": args.warm, "workers": args.workers}, indent=2))


if __name__ == "__main__":
    main()
