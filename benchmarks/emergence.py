"""Proof of emergence on the offline world: bind each modality with (modality, image) pairs only,
then measure on held-out test data

1. emergent zero-shot modality → text top-1 through the frozen text tower (never saw the modality),
2. modality → image R@1 (a hit is a test image of the same digit),
3. the same modality bound directly to (modality, text) pairs with one-hot InfoNCE labels and no queue
   (whatever ``soft_targets`` and ``memory_size`` the recipe sets for its image binding): the upper bound,
4. chance (the most frequent test class),

and BasicMotions (real IMU data) bound to its text labels, beside ROCKET and 1-NN DTW run on the
same official split in the same process. two_stream's RGB stream starts from this run's video
bindings (image-bound from image-bound, text-bound from text-bound), so video runs first; each
stream's own figure and the fusion weights are printed below the table. Each run records its anchor
(the weights' SHA-256 and its own zero-shot figure on the test digits): re-running some modalities
keeps the other rows only where an earlier run read the same anchor. Usage:

    python benchmarks/emergence.py [--world out/world] [--anchor out/anchor] [--modalities audio,depth]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from binder.anchor import load_anchor  # noqa: E402
from binder.config import AnchorConfig  # noqa: E402
from binder.hub.checksum import sha256_file  # noqa: E402
from binder.train.anchor_train import anchor_zero_shot, load_anchor_recipe, train_anchor  # noqa: E402
from binder.train.recipe import Recipe, load_recipe  # noqa: E402
from binder.train.trainer import Trainer  # noqa: E402
from recipes.world.build import build_world  # noqa: E402
from recipes.world.config import WorldConfig  # noqa: E402

CODEBOOK = "speech_units_codebook.safetensors"  # the speech-units codebook every world fits on its train speech
MODALITIES = ("audio", "speech_units", "depth", "thermal", "video", "two_stream", "imu")


def ensure_anchor(world: Path, anchor: Path) -> dict:
    if (anchor / "open_clip_config.json").is_file():
        return {"cached": True}
    cfg, ev = load_anchor_recipe(ROOT / "recipes" / "anchor_digits.toml",
                                 {"train.root": str(world), "train.out": str(anchor)})
    return train_anchor(cfg, ev)


def anchor_record(world: Path, anchor: Path) -> dict:
    """Which anchor a run reads (its weights' SHA-256) and how well it reads the world's test digits
    zero-shot: every figure of the run is measured through it and bounded by it."""
    _, ev = load_anchor_recipe(ROOT / "recipes" / "anchor_digits.toml", {"train.root": str(world)})
    model = load_anchor(AnchorConfig(model=f"local-dir:{anchor}"))
    figures = anchor_zero_shot(model, "manifests/images.test.jsonl", str(world), ev)
    return {"weights_sha256": sha256_file(anchor / "open_clip_model.safetensors"), **figures}


def same_anchor(previous: dict, anchor: dict) -> tuple[dict, list[str]]:
    """``previous`` less the figures an earlier run measured through another anchor, or through one
    it did not record, and the names of what was left out: two anchors' figures are not one table."""
    runs = previous.get("runs", {})

    def ours(figures: dict) -> bool:
        return runs.get(figures.get("run"), {}).get("anchor", {}).get("weights_sha256") == anchor["weights_sha256"]

    kept = {**previous, "rows": {m: r for m, r in previous["rows"].items() if ours(r)}}
    dropped = [m for m in previous["rows"] if m not in kept["rows"]]
    if "basic_motions" in previous and not ours(previous["basic_motions"]):
        del kept["basic_motions"]
        dropped.append("basic_motions")
    return kept, dropped


def add_world_arguments(ap: argparse.ArgumentParser, out: str) -> None:
    """The options every world benchmark takes: --world, --anchor, --out (under out/), --threads."""
    ap.add_argument("--world", type=Path, default=ROOT / "out" / "world")
    ap.add_argument("--anchor", type=Path, default=ROOT / "out" / "anchor")
    ap.add_argument("--out", type=Path, default=ROOT / "out" / out)
    ap.add_argument("--threads", type=int, default=2)


def recipe_for(name: str, world: Path, anchor: Path, out: Path, target: str, steps: int | None,
               train: dict | None = None) -> Recipe:
    """``recipes/bind/NAME.toml`` on ``world`` and ``anchor``, bound to ``target``; ``train`` overrides
    more [train] keys (``train.loss = "siglip"`` then starts the heads at SigLIP's temperature)."""
    overrides = {"anchor.model": f"local-dir:{anchor}", "train.root": str(world), "train.out": str(out),
                 "train.cache_dir": str(out.parent / "cache"), **(train or {})}
    if steps:
        overrides["train.steps"] = steps
    recipe = load_recipe(ROOT / "recipes" / "bind" / f"{name}.toml", overrides)
    specs = tuple(dataclasses.replace(s, target=target, init=_warm_start_here(s.init, out.parent, target))
                  for s in recipe.modalities)
    mods = tuple(dataclasses.replace(m, options={**m.options, "codebook": str(world / CODEBOOK)})
                 if m.options.get("codebook") else m for m in recipe.bind.modalities)  # the --world's own
    return dataclasses.replace(recipe, modalities=specs, bind=dataclasses.replace(recipe.bind, modalities=mods))


def _warm_start_here(init: dict, runs: Path, target: str) -> dict:
    """A recipe's warm start pointed at this benchmark's own binding of that modality to the same
    target (two_stream's RGB stream starts from the video row's model: image from image, text from text)."""
    if not init:
        return init
    return {**init, "model": str(runs / f"{init.get('modality') or 'video'}-{target}" / "model")}


# The ceiling's loss: one-hot InfoNCE on the class prompts (soft labels would blur the very classes it
# scores), without a queue (a batch of 64 already holds every prompt, so queued prompts add no negative,
# only many duplicate positives that slow each step).
TEXT_BOUND = {"train.soft_targets": 0.0, "train.memory_size": 0}


def bind(recipe: Recipe) -> tuple[dict, float]:
    t0 = time.perf_counter()
    metrics = Trainer(recipe, progress=False).run()
    return next(iter(metrics.values())), time.perf_counter() - t0


def emergence_row(name: str, args) -> dict:
    image_recipe = recipe_for(name, args.world, args.anchor, args.out / f"{name}-image", "image", args.steps)
    by_image, t_img = bind(image_recipe)
    by_text, t_txt = bind(recipe_for(name, args.world, args.anchor, args.out / f"{name}-text", "text", args.steps,
                                     train=TEXT_BOUND))
    hard = by_image.get("hard", {})
    row = {"modality": name, "steps": image_recipe.train.steps, "emergent_top1": by_image["zero_shot_top1"],
           "emergent_hard_top1": hard.get("zero_shot_top1"), "hard_items": hard.get("items"),
           "to_image_R@1": by_image["to_image"]["R@1"],
           "to_image_R@10": by_image["to_image"]["R@10"], "text_bound_top1": by_text["zero_shot_top1"],
           "chance": by_image["chance_top1"], "test_items": by_image["items"], "minutes": (t_img + t_txt) / 60}
    for stream, figures in by_image.get("streams", {}).items():  # a multi-stream modality: each stream alone
        row[f"{stream}_stream_top1"] = figures["zero_shot_top1"]
        row[f"{stream}_stream_hard_top1"] = figures.get("hard", {}).get("zero_shot_top1")
    if "fusion_weights" in by_image:
        row["fusion_weights"] = by_image["fusion_weights"]
    gates = {t: m["fusion_gate"] for t, m in (("image", by_image), ("text", by_text)) if "fusion_gate" in m}
    if gates:  # where each binding's gate was set on its val pairs, and what that compared
        row["fusion_gate"] = gates
    print(f"  {name:<13} emergent {row['emergent_top1']:.3f}  hard {_num(row['emergent_hard_top1'])}  "
          f"R@1 {row['to_image_R@1']:.3f}  text-bound {row['text_bound_top1']:.3f}  chance {row['chance']:.3f}  "
          f"({row['minutes']:.1f} min)", flush=True)
    return row


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def basic_motions(args) -> dict:
    recipe = load_recipe(ROOT / "recipes" / "bind" / "basic_motions.toml",
                         {"anchor.model": f"local-dir:{args.anchor}", "train.root": str(args.world),
                          "train.out": str(args.out / "basic_motions"), "train.cache_dir": str(args.out / "cache")})
    ours, _ = bind(recipe)
    from aeon.classification.convolution_based import RocketClassifier
    from aeon.classification.distance_based import KNeighborsTimeSeriesClassifier
    from aeon.datasets import load_basic_motions

    x_tr, y_tr = load_basic_motions(split="train")
    x_te, y_te = load_basic_motions(split="test")
    rocket = RocketClassifier(n_kernels=10000, random_state=0).fit(x_tr, y_tr)
    dtw = KNeighborsTimeSeriesClassifier(distance="dtw", n_neighbors=1).fit(x_tr, y_tr)
    return {"anybind_text_bound_top1": ours["zero_shot_top1"], "test_items": ours["items"],
            "rocket_top1": float((rocket.predict(x_te) == y_te).mean()),
            "dtw_1nn_top1": float((dtw.predict(x_te) == y_te).mean())}


def table(rows: list[dict]) -> str:
    """The emergence table (docs/guides/world.md): clean and hard emergent top-1, retrieval, the
    text-bound upper bound, and the goals (hard within 5 points of clean; emergent at least 90 % of the upper bound)."""
    head = ("| modality | emergent → text top-1, test | hard split | hard − test | → image R@1 | → image R@10 "
            "| bound to text (upper bound) | emergent / upper | chance | test / hard items | steps |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|\n")
    out = []
    for r in rows:
        hard = r.get("emergent_hard_top1")
        gap = "-" if hard is None else f"{hard - r['emergent_top1']:+.3f}"
        share = r["emergent_top1"] / r["text_bound_top1"] if r["text_bound_top1"] else float("nan")
        out.append(f"| {r['modality']} | **{r['emergent_top1']:.3f}** | {_num(hard)} | {gap} | "
                   f"{r['to_image_R@1']:.3f} | {r['to_image_R@10']:.3f} | {r['text_bound_top1']:.3f} | {share:.2f} | "
                   f"{r['chance']:.3f} | {r['test_items']} / {r.get('hard_items') or '-'} | {r.get('steps', '')} |\n")
    return head + "".join(out) + "".join(_streams_note(r) for r in rows)


def _anchor_line(anchor: dict) -> str:
    return (f"Anchor: zero-shot top-1 {anchor['zero_shot_top1']:.3f} on {anchor['test_items']} test digits "
            f"(weights sha256 {anchor['weights_sha256'][:12]}).\n\n")


def _streams_note(r: dict) -> str:
    """Below the table: each stream of a multi-stream row alone, and the gate's weights."""
    streams = [k.removesuffix("_stream_top1") for k in r if k.endswith("_stream_top1")]
    if not streams:
        return ""
    each = ", ".join(f"{s} {r[f'{s}_stream_top1']:.3f} (hard {_num(r.get(f'{s}_stream_hard_top1'))})"
                     for s in streams)
    weights = ", ".join(f"{s} {w:.2f}" for s, w in r.get("fusion_weights", {}).items())
    return f"\n{r['modality']}, each stream alone (emergent top-1): {each}; fusion weights: {weights}\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_world_arguments(ap, "emergence")
    ap.add_argument("--modalities", default=",".join(MODALITIES))
    ap.add_argument("--steps", type=int, default=None, help="override every recipe's step count")
    ap.add_argument("--skip-basic-motions", action="store_true", help="keep BasicMotions figures of an earlier run")
    args = ap.parse_args()
    unknown = set(args.modalities.split(",")) - set(MODALITIES) - {""}
    if unknown:
        ap.error(f"unknown modalities {sorted(unknown)}; choose from {','.join(MODALITIES)}")
    torch.set_num_threads(args.threads)
    build_world(args.world, WorldConfig.full())
    print(f"anchor: {ensure_anchor(args.world, args.anchor)}", flush=True)
    anchor = anchor_record(args.world, args.anchor)
    print(_anchor_line(anchor), end="", flush=True)
    previous, dropped = same_anchor(_previous(args.out / "results.json"), anchor)
    if dropped:
        print(f"left out, measured through another anchor: {', '.join(dropped)}", flush=True)
    t0, started = time.perf_counter(), time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    fresh = {m: emergence_row(m, args) for m in args.modalities.split(",") if m}
    ran_bm = not args.skip_basic_motions or "basic_motions" not in previous
    bm = basic_motions(args) if ran_bm else None
    run = {"started": started, "modalities": list(fresh), "basic_motions": ran_bm, "threads": args.threads,
           "minutes": round((time.perf_counter() - t0) / 60, 2), "anchor": anchor}  # minutes: all of this run
    results = combine(previous, fresh, bm, run)
    rows, bm = list(results["rows"].values()), results["basic_motions"]
    report = _anchor_line(anchor) + table(rows) + (
        f"\nBasicMotions (real IMU, official 40/40 split, {bm['test_items']} test series): anybind "
        f"bound to text labels {bm['anybind_text_bound_top1']:.3f}; same split, same run: ROCKET "
        f"{bm['rocket_top1']:.3f}, 1-NN DTW {bm['dtw_1nn_top1']:.3f}\n")
    print("\n" + report + f"\nthis run: {', '.join(run['modalities'])} in {run['minutes']:.1f} min "
          f"({args.threads} threads)")
    args.out.mkdir(parents=True, exist_ok=True)
    _write(args.out / "results.json", json.dumps(results, indent=2))
    _write(args.out / "results.md", report)


def _previous(path: Path) -> dict:
    """Rows of earlier runs, so re-running some modalities keeps the others' figures."""
    if not path.is_file():
        return {"rows": {}}
    data = json.loads(path.read_text())
    rows = data.get("rows", {})
    rows = {r["modality"]: r for r in rows} if isinstance(rows, list) else rows
    return {"rows": rows, "runs": data.get("runs", {}),
            **({"basic_motions": data["basic_motions"]} if "basic_motions" in data else {})}


def combine(previous: dict, fresh: dict[str, dict], bm: dict | None, run: dict) -> dict:
    """results.json after ``run``: its ``fresh`` rows (and BasicMotions when ``bm`` is given) over the
    ``previous`` ones, in MODALITIES order. Every row and BasicMotions name the run that measured
    them (``run``: its start), and ``runs`` keeps each run that still owns a figure, so a table
    assembled from several runs says so; ``run`` is the latest."""
    started = run["started"]
    rows = {m: {**fresh[m], "run": started} if m in fresh else previous["rows"][m]
            for m in MODALITIES if m in fresh or m in previous["rows"]}
    basic = {**bm, "run": started} if bm is not None else previous["basic_motions"]
    owners = {r.get("run") for r in rows.values()} | {basic.get("run")}
    runs = {k: v for k, v in previous.get("runs", {}).items() if k in owners}
    return {"rows": rows, "basic_motions": basic, "run": run, "runs": {**runs, started: run}}


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


if __name__ == "__main__":
    main()
