"""Where the hard split's figure is lost: each emergence binding's hard top-1 per held-out condition.

Every hard row carries a random non-empty subset of its modality's held-out conditions (an unseen
tilt, noise, level, ...), named in its ``condition`` column. One hard figure mixes rows under one
condition with rows under three at once; this benchmark reads the bindings an emergence run saved
(``<out>/<modality>-image/model``) and splits their hard top-1 by how many conditions a row
carries, by the condition a one-condition row carries, and by each condition among any others.
It trains nothing and chooses nothing: it explains the hard column of the emergence table, and a
binding whose hard figure differs from that run's row is refused as stale. Usage:

    python benchmarks/hard_conditions.py [--emergence out/emergence] [--world out/world]

Results: ``benchmarks/results/hard_conditions.json`` and a table on stdout.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from binder.io import atomic_write_text  # noqa: E402
from binder.model import BindingModel  # noqa: E402
from binder.train.evaluate import evaluate_manifest  # noqa: E402
from binder.train.recipe import load_recipe  # noqa: E402
from recipes.world.common import condition_names  # noqa: E402

MODALITIES = ("audio", "speech_units", "depth", "thermal", "video", "two_stream", "imu")
TOLERANCE = 1e-6  # a binding re-read must give its emergence row's hard figure exactly


def split_by_condition(groups: dict[str, dict[str, Any]]) -> dict[str, dict[str, dict[str, float | int]]]:
    """``by_condition`` groups (label → items, zero_shot_top1) regrouped three ways: ``count`` (rows
    carrying 1, 2, ... conditions), ``only`` (one-condition rows, by that condition) and ``with``
    (every row carrying a condition, whatever else it carries). Each cell: items and top-1."""
    sums: dict[str, dict[str, list[float]]] = {"count": defaultdict(lambda: [0, 0.0]),
                                               "only": defaultdict(lambda: [0, 0.0]),
                                               "with": defaultdict(lambda: [0, 0.0])}
    for label, cell in groups.items():
        names = sorted(set(condition_names(label)))
        n, hits = cell["items"], cell["items"] * cell["zero_shot_top1"]
        keys = [("count", str(len(names)))] + [("with", name) for name in names]
        if len(names) == 1:
            keys.append(("only", names[0]))
        for way, key in keys:
            sums[way][key][0] += n
            sums[way][key][1] += hits
    return {way: {key: {"items": int(n), "top1": hits / n} for key, (n, hits) in sorted(cells.items())}
            for way, cells in sums.items()}


def measure(modality: str, args: argparse.Namespace, row: dict[str, Any]) -> dict[str, Any]:
    """One modality's hard split, regrouped (``split_by_condition``), beside its emergence row."""
    model = BindingModel.load(args.emergence / f"{modality}-image" / "model")
    recipe = load_recipe(ROOT / "recipes" / "bind" / f"{modality}.toml")
    ev, hard = recipe.eval, args.world / "manifests" / f"{modality}.hard.jsonl"
    result = evaluate_manifest(model, str(hard), str(args.world), ev.classes, ev.templates, names=ev.names,
                               group="condition")
    if abs(result["zero_shot_top1"] - row["emergent_hard_top1"]) > TOLERANCE:
        raise SystemExit(f"{modality}: the binding in {args.emergence} reads hard {result['zero_shot_top1']:.4f}, its "
                         f"emergence row {row['emergent_hard_top1']:.4f}: not that run's binding")
    return {"clean": row["emergent_top1"], "hard": row["emergent_hard_top1"], "hard_items": result["items"],
            "run": row.get("run"), **split_by_condition(result["by_condition"])}


def table(results: dict[str, dict[str, Any]]) -> str:
    """Markdown: clean and hard top-1, hard by number of conditions, and each condition alone."""
    lines = ["| modality | clean | hard | one condition | two | three or more | each condition alone |",
             "|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        count = r["count"]
        many = [c for k, c in count.items() if int(k) >= 3]
        items = sum(c["items"] for c in many)
        three = sum(c["items"] * c["top1"] for c in many) / items if items else None
        alone = ", ".join(f"{k} {c['top1']:.2f} ({c['items']})" for k, c in r["only"].items())
        lines.append(f"| {name} | {r['clean']:.3f} | {r['hard']:.3f} | {_cell(count.get('1'))} | "
                     f"{_cell(count.get('2'))} | {_cell({'top1': three, 'items': items} if items else None)} | "
                     f"{alone} |")
    return "\n".join(lines) + "\n"


def _cell(cell: dict[str, Any] | None) -> str:
    return "–" if cell is None else f"{cell['top1']:.3f} ({cell['items']})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--emergence", type=Path, default=ROOT / "out" / "emergence",
                    help="an emergence run's --out: its results.json and saved bindings")
    ap.add_argument("--world", type=Path, default=ROOT / "out" / "world")
    ap.add_argument("--modalities", default=",".join(MODALITIES))
    ap.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "hard_conditions.json")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = json.loads((args.emergence / "results.json").read_text())["rows"]
    missing = [m for m in args.modalities.split(",") if m not in rows]
    if missing:
        ap.error(f"{args.emergence / 'results.json'} has no row for {', '.join(missing)}")
    results = {m: measure(m, args, rows[m]) for m in args.modalities.split(",")}
    atomic_write_text(args.json, json.dumps(results, indent=2) + "\n")
    print(table(results), end="")


if __name__ == "__main__":
    main()
