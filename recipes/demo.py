"""The main job on the embedded default (`make demo`), under 10 minutes on 2 cores:

1. build the offline world from real digits, speech and sensor data (cached after the first run),
2. train the tiny CLIP-format digits anchor (cached),
3. bind spoken digits and depth maps to it with (modality, image) pairs only (cached until
   ``recipes/demo.toml`` changes),
4. build a persistent index (``anybind index build``) of a mixed folder of unseen test files
   (speech clips, depth maps, images, captions); a re-run only embeds what is new or changed,
5. answer cross-modal searches, including query expressions (``anybind search``), that no training
   pair ever connected, and print the accuracy table,
6. print the one command that serves the index over HTTP with its search page (``anybind serve``).

Delete ``out/`` to run everything from scratch.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from binder.index.build import BuildOptions, build_index  # noqa: E402
from binder.index.query import embed_query  # noqa: E402
from binder.index.search import EmbeddingIndex  # noqa: E402
from binder.io import atomic_write_text  # noqa: E402
from binder.model import BindingModel  # noqa: E402
from binder.train.anchor_train import load_anchor_recipe, train_anchor  # noqa: E402
from binder.train.data import read_pairs  # noqa: E402
from binder.train.recipe import load_recipe  # noqa: E402
from binder.train.trainer import Trainer  # noqa: E402
from recipes.world.build import build_world  # noqa: E402
from recipes.world.config import WorldConfig  # noqa: E402

OUT = ROOT / "out"
RECIPE = ROOT / "recipes" / "demo.toml"
RECIPE_STAMP = "recipe.sha256"  # beside the binding: the recipe it was trained from, so an edit retrains it
WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def stage(title: str) -> None:
    print(f"\n== {title}", flush=True)


def prepare_model() -> tuple[BindingModel, Path, dict]:
    stage("world: real digits (scikit-learn), espeak-ng speech, rendered depth/thermal/video/IMU")
    info = build_world(OUT / "world", WorldConfig.full())
    print(f"world in {info.folder} ({'cached' if info.cached else f'built in {info.elapsed_s:.0f} s'})")
    stage("anchor: tiny CLIP trained on digits and their captions, then frozen")
    if not (OUT / "anchor" / "open_clip_config.json").is_file():
        cfg, ev = load_anchor_recipe(ROOT / "recipes" / "anchor_digits.toml")
        print(f"anchor zero-shot image → text top-1 on test digits: {train_anchor(cfg, ev)['zero_shot_top1']:.3f}")
    else:
        print("anchor cached in out/anchor")
    stage("binding: audio and depth, each trained with (modality, image) pairs only")
    recipe = load_recipe(RECIPE)
    model_dir = Path(recipe.train.out) / "model"
    stamp = Path(recipe.train.out) / RECIPE_STAMP
    trained = (model_dir / "config.json").is_file()
    if not trained or not _trained_from(stamp, RECIPE):
        if trained:
            print(f"{RECIPE.name} changed since {model_dir} was trained: training it again")
        Trainer(recipe).run()
        atomic_write_text(stamp, _fingerprint(RECIPE) + "\n")
    metrics = json.loads((Path(recipe.train.out) / "metrics.json").read_text())
    return BindingModel.load(model_dir), model_dir, metrics


def _fingerprint(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _trained_from(stamp: Path, recipe: Path) -> bool:
    """Whether the cached binding was trained from ``recipe`` as it reads now (its SHA-256 beside it)."""
    return stamp.is_file() and stamp.read_text().strip() == _fingerprint(recipe)


def mixed_folder() -> tuple[Path, dict[str, int]]:
    """Unseen test files of several modalities copied into one folder; returns their labels.

    Copies keep their source's mtime, so a second run finds the index up to date.
    """
    folder = OUT / "demo" / "mixed"
    folder.mkdir(parents=True, exist_ok=True)
    labels = {}
    picks = [("audio", "audio", 40), ("depth", "depth", 40), ("images", "image", 30)]
    for manifest, kind, count in picks:
        rows = read_pairs(OUT / "world" / "manifests" / f"{manifest}.test.jsonl", OUT / "world")
        step = max(1, len(rows) // count)
        for rec in rows[::step][:count]:
            dst = folder / f"{WORDS[int(rec.label)]}-{kind}-{Path(rec.path).name}"  # says what it is
            if not dst.is_file():
                shutil.copy2(rec.path, dst)
            labels[str(dst)] = int(rec.label)
    for i, word in enumerate(WORDS):
        caption = folder / f"{word}-caption.txt"
        if not caption.is_file():
            caption.write_text(f"the digit {word}\n")
        labels[str(caption)] = i
    return folder, labels


def show(title: str, hits, labels: dict[str, int], want: int) -> float:
    good = sum(labels[h.meta["path"]] == want for h in hits)
    print(f"{title}  →  {good}/{len(hits)} are a {WORDS[want]}")
    for h in hits:
        print(f"    {h.score:+.3f}  {Path(h.meta['path']).name:<28} (a {WORDS[labels[h.meta['path']]]})")
    return good / len(hits)


def searches(model: BindingModel, index: EmbeddingIndex, labels: dict[str, int]) -> None:
    stage("cross-modal search (none of these pairs was ever trained)")
    mixed = OUT / "demo" / "mixed"

    def first(kind: str, label: int) -> Path:
        return next(Path(p) for p in sorted(labels) if Path(p).name.startswith(f"{WORDS[label]}-{kind}-"))

    def ask(expr: str, modality: str | None, want: int, note: str = "") -> None:
        shown = expr.replace(f"{ROOT}/", "")
        comment = f"   # {note}" if note else ""
        where = f" --modality {modality}" if modality else ""
        print(f"$ anybind search out/demo/index '{shown}'{where} --k 5" + comment)
        hits = index.search(embed_query(model, expr), 5, modality, "calibrated")
        show(f"  {modality or 'all modalities'} hits", hits, labels, want)

    ask("the digit seven", "audio", 7)
    ask(str(first("audio", 5)), None, 5, "a spoken five, every modality ranked together (--mix calibrated)")
    ask(str(first("audio", 3)), "depth", 3, "a spoken three")
    ask(f"{first('depth', 4)} + {first('audio', 4)}", "image", 4, "a depth map and a spoken clip of a four")
    ask(f"{first('audio', 8)} - 0.5*{mixed / 'eight-caption.txt'} + the digit one", "image", 1,
        "a spoken eight, minus half the caption 'the digit eight', plus text")


def main() -> int:
    t0 = time.perf_counter()
    model, model_dir, metrics = prepare_model()
    stage("index: a mixed folder of unseen test files (anybind index build)")
    folder, labels = mixed_folder()
    report = build_index(OUT / "demo" / "index", [folder], model=model, model_dir=model_dir,
                         options=BuildOptions(batch_size=16))
    for failure in report.failures:
        print(f"  failed: {failure.path}: {failure.reason}")
    print(f"out/demo/index holds {report.count} files: {report.added} embedded now, {report.unchanged} "
          f"unchanged since the last run, {len(report.failures)} failed (generation {report.generation})")
    index = EmbeddingIndex.open(OUT / "demo" / "index")
    searches(model, index, labels)
    stage("accuracy on the held-out test split (bound with image pairs only; chance = most frequent class)")
    for name, m in metrics.items():
        if not isinstance(m, dict) or "zero_shot_top1" not in m:  # e.g. train.eval_every's val_curve
            continue
        print(f"  {name:<6} emergent zero-shot → text top-1 {m['zero_shot_top1']:.3f}   → image R@1 "
              f"{m['to_image']['R@1']:.3f}   chance {m['chance_top1']:.3f}   ({m['items']} test files)")
    table = OUT / "emergence" / "results.md"
    if table.is_file():
        print(f"\nall modalities (benchmarks/emergence.py):\n{table.read_text()}")
    print(f"\ndemo finished in {(time.perf_counter() - t0) / 60:.1f} min")
    print("search it yourself (the index remembers its model):  "
          "anybind search out/demo/index 'the digit two' --modality audio")
    print(f"open the search page and the HTTP API on http://127.0.0.1:8000/ :\n"
          f"  anybind serve {shown_path(OUT / 'demo' / 'index')} --model {shown_path(model_dir)}")
    return 1 if report.failures else 0


def shown_path(path: Path) -> str:
    """``path`` relative to the checkout when it is inside it (the demo runs from there), else absolute."""
    path = Path(path).resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


if __name__ == "__main__":
    sys.exit(main())
