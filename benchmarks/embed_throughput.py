"""Items/s per modality, file → embedding and tensor → embedding, at batch 8 on 2 threads.

For images it also runs a plain open_clip pipeline (PIL open + the model's own preprocess +
``encode_image``) on the same files and the same weights in the same process, and prints the
ratio. Usage: ``python benchmarks/embed_throughput.py [--anchor ViT-B-32] [--repeats 5]``.
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from binder.config import AnchorConfig, BindConfig, ModalityConfig  # noqa: E402
from binder.embed.pipeline import Item, embed_items  # noqa: E402
from binder.model import BindingModel  # noqa: E402
from binder.registry import list_modalities, modality_for_path  # noqa: E402

SAMPLES = ROOT / "recipes" / "samples"
REPEAT_BATCHES = 4  # file→emb runs several batches so decoding overlaps encoding, as in `anybind embed`


def timed(fn, repeats: int) -> float:
    """Median seconds of ``fn()`` over ``repeats`` runs after one warm-up."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def sample_files(batch: int, tmp: Path) -> dict[str, list[Path]]:
    """``batch`` copies of the bundled sample of every modality (distinct paths, same content)."""
    files: dict[str, list[Path]] = {}
    for src in sorted(SAMPLES.iterdir()):
        name = modality_for_path(src)
        if name and name not in files:
            files[name] = []
            for i in range(batch):
                dst = tmp / f"{i}_{src.name}"
                shutil.copy(src, dst)
                files[name].append(dst)
    return files


def photos(batch: int, tmp: Path) -> list[Path]:
    """``batch`` photo-sized JPEGs (640x480, gradient + noise), where decoding costs what it does in practice."""
    from PIL import Image

    rng = np.random.default_rng(0)
    paths = []
    for i in range(batch):
        pixels = rng.random((480, 640, 3)) * 40 + np.linspace(0, 200, 640)[None, :, None]
        paths.append(tmp / f"photo{i}.jpg")
        Image.fromarray(pixels.astype(np.uint8)).save(paths[-1], quality=90)
    return paths


def bench_modality(model: BindingModel, name: str, paths: list[Path], repeats: int) -> tuple[float, float]:
    """(file→embedding items/s through the CLI's batch path, tensor→embedding items/s)."""
    modality = model.modality(name)
    batch = modality.collate([modality.prepare(p) for p in paths])
    with torch.inference_mode():
        t_tensor = timed(lambda: model.encode(name, batch), repeats)
    items = [Item(str(p), name) for p in paths] * REPEAT_BATCHES
    t_file = timed(lambda: list(embed_items(model, items, batch_size=len(paths), progress=False)), repeats)
    return len(items) / t_file, len(paths) / t_tensor


def bench_open_clip(model: BindingModel, paths: list[Path], repeats: int) -> float:
    """The same image files through plain open_clip: PIL → preprocess → encode_image."""
    from PIL import Image

    clip, transform = model.anchor.clip, model.anchor.image_transform()

    def run():
        for _ in range(REPEAT_BATCHES):
            batch = torch.stack([transform(Image.open(p).convert("RGB")) for p in paths])
            with torch.inference_mode():
                clip.encode_image(batch)

    return REPEAT_BATCHES * len(paths) / timed(run, repeats)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--anchor", default="anybind-tiny", help="open_clip architecture (random weights)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--modalities", default="", help="comma-separated subset (default: all registered)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    names = [n for n in args.modalities.split(",") if n] or list_modalities()
    mods = tuple(ModalityConfig(n) for n in sorted(set(names) | {"image"}))
    model = BindingModel(BindConfig(anchor=AnchorConfig(model=args.anchor), modalities=mods)).eval()
    print(f"anchor {args.anchor} (width {model.anchor.width}, dim {model.embed_dim}), batch {args.batch}, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}")
    print(f"{'modality':<13} {'file→emb items/s':>17} {'tensor→emb items/s':>19}")
    with tempfile.TemporaryDirectory() as tmp:
        files = {k: v for k, v in sample_files(args.batch, Path(tmp)).items() if k in model.modalities}
        for name in sorted(files):
            f_ips, t_ips = bench_modality(model, name, files[name], args.repeats)
            print(f"{name:<13} {f_ips:>17.1f} {t_ips:>19.1f}")
        print("\nimage file→emb against plain open_clip (PIL → its preprocess → encode_image), same weights:")
        inputs = (("bundled 64 px PNG", files["image"]), ("640x480 JPEG photo", photos(args.batch, Path(tmp))))
        for label, paths in inputs:
            ours, _ = bench_modality(model, "image", paths, args.repeats)
            ref = bench_open_clip(model, paths, args.repeats)
            print(f"  {label:<19} anybind {ours:7.1f} items/s   open_clip {ref:7.1f} items/s   ratio {ours / ref:.2f}x")


if __name__ == "__main__":
    main()
