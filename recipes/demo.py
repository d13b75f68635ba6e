"""The main job on the embedded default (`make demo`), under 10 minutes on 2 cores:

1. build the offline world from real digits, speech and sensor data (cached after the first run),
2. train the tiny CLIP-format digits anchor (cached),
3. bind spoken digits and depth maps to it with (modality, image) pairs only (cached),
4. embed a mixed folder of unseen test files (speech clips, depth maps, images, captions),
5. answer cross-modal searches that no training pair ever connected, and print the accuracy table.

Delete ``out/`` to run everything from scratch.
"""
from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from binder.anchor_train import load_anchor_recipe, train_anchor  # noqa: E402
from binder.data import read_manifest  # noqa: E402
from binder.embed import discover, embed_items  # noqa: E402
from binder.index import EmbeddingIndex  # noqa: E402
from binder.model import BindingModel  # noqa: E402
from binder.recipe import load_recipe  # noqa: E402
from binder.shards import ShardWriter  # noqa: E402
from binder.train import Trainer  # noqa: E402
from recipes.world.build import build_world  # noqa: E402
from recipes.world.config import WorldConfig  # noqa: E402

OUT = ROOT / "out"
WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def stage(title: str) -> None:
    print(f"\n== {title}", flush=True)


def prepare_model() -> tuple[BindingModel, dict]:
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
    recipe = load_recipe(ROOT / "recipes" / "demo.toml")
    model_dir = Path(recipe.train.out) / "model"
    if not (model_dir / "config.json").is_file():
        Trainer(recipe).run()
    metrics = json.loads((Path(recipe.train.out) / "metrics.json").read_text())
    return BindingModel.load(model_dir), metrics


def mixed_folder() -> tuple[Path, dict[str, int]]:
    """Unseen test files of several modalities copied into one folder; returns their labels."""
    folder = OUT / "demo" / "mixed"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    labels = {}
    picks = [("audio", 40), ("depth", 40), ("images", 30)]
    for name, count in picks:
        rows = read_manifest(OUT / "world" / "manifests" / f"{name}.test.jsonl", OUT / "world")
        step = max(1, len(rows) // count)
        for rec in rows[::step][:count]:
            dst = folder / f"{name}-{Path(rec.path).name}"
            shutil.copy(rec.path, dst)
            labels[str(dst)] = int(rec.label)
    for i, word in enumerate(WORDS):
        (folder / f"caption-{word}.txt").write_text(f"the digit {word}\n")
        labels[str(folder / f"caption-{word}.txt")] = i
    return folder, labels


def show(title: str, hits, labels: dict[str, int], want: int) -> float:
    good = sum(labels[h.meta["path"]] == want for h in hits)
    print(f"{title}  →  {good}/{len(hits)} are a {WORDS[want]}")
    for h in hits:
        print(f"    {h.score:+.3f}  {Path(h.meta['path']).name:<28} (a {WORDS[labels[h.meta['path']]]})")
    return good / len(hits)


def searches(model: BindingModel, index: EmbeddingIndex, labels: dict[str, int]) -> None:
    stage("cross-modal search (none of these pairs was ever trained)")
    by_name = {Path(m["path"]).name: i for i, m in enumerate(index.metadata)}
    text = model.embed_files("text", [OUT / "demo" / "mixed" / "caption-seven.txt"])[0].numpy()
    show('text "the digit seven" → speech clips', index.search(text, 5, "audio"), labels, 7)
    speech = next(n for n in by_name if n.startswith("audio-") and labels[str(OUT / "demo" / "mixed" / n)] == 3)
    q = index.embeddings[by_name[speech]]
    show(f"speech {speech} (says three) → depth maps", index.search(q, 5, "depth"), labels, 3)
    depth = next(n for n in by_name if n.startswith("depth-") and labels[str(OUT / "demo" / "mixed" / n)] == 4)
    spoken = next(n for n in by_name if n.startswith("audio-") and labels[str(OUT / "demo" / "mixed" / n)] == 4)
    q = index.embeddings[by_name[depth]] + index.embeddings[by_name[spoken]]
    show(f"depth {depth} + speech {spoken} (both four) → images", index.search(q, 5, "image"), labels, 4)


def main() -> int:
    t0 = time.perf_counter()
    model, metrics = prepare_model()
    stage("embedding a mixed folder of unseen test files")
    folder, labels = mixed_folder()
    items, failures = discover([folder])
    writer = ShardWriter(OUT / "demo" / "index", model.embed_dim, info={"model": "out/demo/model"})
    for batch in embed_items(model, items, batch_size=16, failures=failures):
        writer.add(batch.embeddings, [{"path": i.path, "modality": i.modality} for i in batch.items])
    writer.close()
    index = EmbeddingIndex.open(OUT / "demo" / "index")
    print(f"{len(index)} files embedded into out/demo/index, {len(failures)} failed")
    searches(model, index, labels)
    stage("accuracy on the held-out test split (bound with image pairs only; chance = most frequent class)")
    for name, m in metrics.items():
        print(f"  {name:<6} emergent zero-shot → text top-1 {m['zero_shot_top1']:.3f}   → image R@1 "
              f"{m['to_image']['R@1']:.3f}   chance {m['chance_top1']:.3f}   ({m['items']} test files)")
    table = OUT / "emergence" / "results.md"
    if table.is_file():
        print(f"\nall modalities (benchmarks/emergence.py):\n{table.read_text()}")
    print(f"\ndemo finished in {(time.perf_counter() - t0) / 60:.1f} min")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
