"""Training speed of the demo recipe: streaming with augmentation against the preprocess-once path.

Both run in this process, one after the other, on the same world, anchor and recipe (audio and
depth, batch 64). The preprocess-once path (``train.stream = false``, no augmentation) decodes and
preprocesses every file up front and then indexes one in-memory tensor; the streaming path
decodes (from a cache after the first epoch), augments and preprocesses every item at every step
in DataLoader worker processes. Printed: set-up seconds, steps/s of the training loop, and the
ratio of the two paths' steps/s and of their total time for the same number of steps.

``--ranks N`` adds the distributed rows: the streaming path on N gloo ranks of this machine
(started as torchrun starts them, meeting through a file), against one process with the same
global batch, each side with the same number of processes in all (N ranks with workers/N data
workers each). On a GPU machine ``--device cuda`` measures the same rows there, in the precision
``train.precision = "auto"`` picks (bf16 where the GPU has it).

    python benchmarks/train_throughput.py [--steps 120] [--workers 2] [--ranks 2] [--device cuda]

Needs out/world and out/anchor (``make demo`` builds both).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
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
    trainer.ranks.barrier()
    trainer.model.train()
    for s in range(warm):
        trainer.train_step(s)
    t1 = time.perf_counter()
    for s in range(warm, warm + steps):
        trainer.train_step(s)
    trainer.ranks.barrier()
    loop = time.perf_counter() - t1
    trainer._batches = None
    return {"threads": torch.get_num_threads(), "setup_s": round(setup, 2), "steps_per_s": round(steps / loop, 3),
            "total_s": round(setup + (loop * (warm + steps) / steps), 2), "ranks": trainer.ranks.world,
            "device": str(trainer.ranks.device), "precision": trainer.precision.name,
            "global_batch": recipe.train.batch_size}


def measure_ranks(overrides: dict, steps: int, warm: int, ranks: int, tmp: str) -> dict:
    """``measure`` in ``ranks`` processes started as torchrun starts them; rank 0's figures."""
    result, rendezvous = Path(tmp) / "rank0.json", Path(tmp) / "rendezvous"
    job = json.dumps({"overrides": overrides, "steps": steps, "warm": warm, "out": str(result)})
    procs = []
    for rank in range(ranks):
        env = {**os.environ, "RANK": str(rank), "WORLD_SIZE": str(ranks), "LOCAL_RANK": str(rank),
               "LOCAL_WORLD_SIZE": str(ranks), "ANYBIND_INIT_METHOD": f"file://{rendezvous}",
               "GLOO_SOCKET_IFNAME": os.environ.get("GLOO_SOCKET_IFNAME", "lo")}
        procs.append(subprocess.Popen([sys.executable, __file__, "--rank-job", job], env=env))
    codes = [p.wait() for p in procs]
    if any(codes):
        raise SystemExit(f"a rank failed: exit codes {codes}")
    return json.loads(result.read_text())


def rank_job(spec: str) -> None:
    job = json.loads(spec)
    row = measure(job["overrides"], job["steps"], job["warm"])
    if os.environ.get("RANK") == "0":
        Path(job["out"]).write_text(json.dumps(row))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--warm", type=int, default=20, help="unmeasured steps first (worker start, caches)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--ranks", type=int, default=0, help="also measure the streaming path on this many ranks")
    parser.add_argument("--device", default="cpu", help="cpu, or cuda for the GPU rows")
    parser.add_argument("--repeat", type=int, default=3, help="alternating rounds of the distributed rows")
    parser.add_argument("--rank-job", help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "train_throughput.json")
    args = parser.parse_args()
    if args.rank_job:
        return rank_job(args.rank_job)
    if args.ranks:
        return main_ranks(args)
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


def main_ranks(args: argparse.Namespace) -> None:
    """The distributed rows: one process against ``--ranks`` ranks, same global batch and processes.

    The two alternate for ``--repeat`` rounds and the median of each is reported: on a shared
    machine the speed of a whole run drifts by more than the difference being measured."""
    ranks = max(2, args.ranks)
    names = ("1 process", f"{ranks} ranks")
    runs: dict[str, list[dict]] = {n: [] for n in names}
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory() as tmp:
            base = {"train.out": tmp, "train.steps": args.steps + args.warm, "train.device": args.device}
            runs[names[0]].append(measure({**base, "train.workers": args.workers}, args.steps, args.warm))
            per_rank = {**base, "train.workers": args.workers // ranks}
            runs[names[1]].append(measure_ranks(per_rank, args.steps, args.warm, ranks, tmp))
    rows = {n: {**r[0], "steps_per_s": statistics.median(x["steps_per_s"] for x in r),
                "each_round": [x["steps_per_s"] for x in r]} for n, r in runs.items()}
    print("| run | device | precision | global batch | workers in all | loop steps/s (median) | each round |")
    print("|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        workers = args.workers if r["ranks"] == 1 else (args.workers // ranks) * ranks
        print(f"| {name} | {r['device']} | {r['precision']} | {r['global_batch']} | {workers} | "
              f"{r['steps_per_s']:.2f} | {', '.join(f'{x:.2f}' for x in r['each_round'])} |")
    ratio = rows[names[1]]["steps_per_s"] / rows[names[0]]["steps_per_s"]
    print(f"\n{ranks} ranks / 1 process: {ratio:.2f}x steps/s (medians of {args.repeat} alternating rounds, "
          f"{args.steps} steps after {args.warm} warm-up each)")
    path = args.json.with_name(f"{args.json.stem}_ranks_{args.device}.json")
    path.write_text(json.dumps({"rows": rows, "ratio": ratio, "steps": args.steps, "warm": args.warm,
                                "workers": args.workers, "repeat": args.repeat, "cpu_count": os.cpu_count()},
                               indent=2))


if __name__ == "__main__":
    main()
