"""anybind vs the reference ImageBind code: same weights, same inputs, one process, 2 threads.

For each of the six modalities both implementations embed the same preprocessed batch; for
audio and images also end to end (files → embeddings: the reference's ``load_and_transform_*``
loaders + forward, against anybind's ``embed_items`` pipeline). Prints items/s, the ratio
(anybind / reference) and the peak extra resident memory of each run, and checks that the two
outputs agree. Usage:

    python benchmarks/vs_imagebind.py [--preset imagebind-huge|imagebind-test] [--batch 4] [--repeats 2]

Needs the test extra (``pip install -e '.[test]'``) for the reference package.
"""
from __future__ import annotations

import argparse
import ctypes
import gc
import json
import statistics
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.append(str(ROOT / "tests"))

from reference_imagebind import HUGE_KWARGS, TEST_KWARGS, random_reference, reference  # noqa: E402

from binder.embed.pipeline import Item, embed_items  # noqa: E402
from binder.imagebind import convert_state_dict  # noqa: E402

KWARGS = {"imagebind-huge": HUGE_KWARGS, "imagebind-test": TEST_KWARGS}
REF_KEY = {"image": "vision"}


def release_free_memory() -> None:
    """Hand freed heap pages back to the OS so the next run's peak is its own (glibc only)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * 4096


class PeakMemory:
    """Peak resident memory above the starting level while the block runs (sampled every 2 ms)."""

    def __enter__(self) -> PeakMemory:
        gc.collect()
        release_free_memory()
        self.start = self.peak = rss_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def _watch(self) -> None:
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, rss_bytes())

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())

    @property
    def extra_mb(self) -> float:
        return (self.peak - self.start) / 2**20


def measure(fn, repeats: int) -> tuple[float, float, object]:
    """(median seconds, peak extra MB, last result) of ``fn()``.

    One warm-up run, ``repeats`` timed runs with the allocator warm (a long-running embedder's
    steady state), then one run for memory alone, started after freed memory went back to the OS
    so that its peak is the run's own (that run pays for page faults, so it is not timed).
    """
    out = fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    with PeakMemory() as mem:
        fn()
    return statistics.median(times), mem.extra_mb, out


def make_files(folder: Path, batch: int) -> dict[str, list[Path]]:
    """``batch`` 10 s stereo 44.1 kHz WAVs and 640×480 JPEGs (what real files look like)."""
    import soundfile
    from PIL import Image

    rng = np.random.default_rng(0)
    files: dict[str, list[Path]] = {"audio": [], "image": []}
    t = np.arange(441000) / 44100
    for i in range(batch):
        wave = np.stack([np.sin(2 * np.pi * (200 + 40 * i + 30 * c) * t) * 0.3 for c in range(2)], 1)
        wave += 0.02 * rng.standard_normal(wave.shape)
        files["audio"].append(folder / f"clip{i}.wav")
        soundfile.write(files["audio"][-1], wave.astype(np.float32), 44100, subtype="PCM_16")
        yy, xx = np.mgrid[0:480, 0:640]
        rgb = np.stack([(xx + 40 * i) % 256, (yy * 2) % 256, (xx + yy) % 256], -1) + rng.integers(0, 30, (480, 640, 3))
        files["image"].append(folder / f"photo{i}.jpg")
        Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8)).save(files["image"][-1], quality=90)
    return files


def tensor_inputs(model, batch: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    texts = [f"a photo of {i} dogs playing in the rain on a street at night" for i in range(batch)]
    return {"image": torch.randn(batch, 3, 224, 224, generator=g),
            "text": model.modality("text").tokenizer()(texts),
            "audio": torch.randn(batch, 3, 1, 128, 204, generator=g),
            "depth": torch.randn(batch, 1, 224, 224, generator=g),
            "thermal": torch.randn(batch, 1, 224, 224, generator=g),
            "imu": torch.randn(batch, 6, 2000, generator=g)}


def reference_load(name: str, paths: list[Path]) -> torch.Tensor:
    """The reference loader's input tensor for ``paths`` (its deprecation warnings silenced)."""
    data, _ = reference()
    loader = data.load_and_transform_audio_data if name == "audio" else data.load_and_transform_vision_data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return loader([str(p) for p in paths], "cpu")


def end_to_end(ref, ours, files: dict[str, list[Path]], batch: int):
    """name → (reference fn, anybind fn) embedding files from disk."""
    def ref_fn(name):
        key = REF_KEY.get(name, name)
        with torch.inference_mode():
            return ref({key: reference_load(name, files[name])})[key]

    def our_fn(name):
        items = [Item(str(p), name) for p in files[name]]
        out = [b.embeddings for b in embed_items(ours, items, batch_size=batch, workers=2, progress=False)]
        return torch.from_numpy(np.concatenate(out))

    return {name: (lambda n=name: ref_fn(n), lambda n=name: our_fn(n)) for name in files}


def preprocessing(ours, files: dict[str, list[Path]]):
    """name → (reference loader, anybind loader) producing the model's input tensor from files."""
    def our_fn(name):
        modality = ours.modality(name)
        return modality.collate([modality.prepare(p) for p in files[name]])

    return {name: (lambda n=name: reference_load(n, files[n]), lambda n=name: our_fn(n)) for name in files}


def run(preset: str, batch: int, repeats: int) -> list[dict]:
    torch.set_num_threads(2)
    ref = random_reference(KWARGS[preset], seed=0, noise=0.002 if preset == "imagebind-huge" else 0.02)
    ours = convert_state_dict(ref.state_dict(), preset)
    rows = []
    inputs = tensor_inputs(ours, batch)
    for name, x in inputs.items():
        key = REF_KEY.get(name, name)
        with torch.inference_mode():
            t_ref, m_ref, z_ref = measure(lambda: ref({key: x})[key], repeats)
            t_our, m_our, z_our = measure(lambda: ours.encode(name, x, scaled=True), repeats)
        rows.append(row(f"{name} (tensor)", batch, t_ref, t_our, m_ref, m_our, z_ref, z_our, unit=False))
    with tempfile.TemporaryDirectory() as tmp:
        files = make_files(Path(tmp), batch)
        for name, (ref_fn, our_fn) in preprocessing(ours, files).items():
            t_ref, m_ref, x_ref = measure(ref_fn, repeats)
            t_our, m_our, x_our = measure(our_fn, repeats)
            rows.append(row(f"{name} (file → tensor, sequential)", batch, t_ref, t_our, m_ref, m_our, x_ref, x_our,
                            unit=False))
        for name, (ref_fn, our_fn) in end_to_end(ref, ours, files, batch).items():
            t_ref, m_ref, z_ref = measure(ref_fn, repeats)
            t_our, m_our, z_our = measure(our_fn, repeats)
            rows.append(row(f"{name} (file → emb)", batch, t_ref, t_our, m_ref, m_our, z_ref, z_our, unit=True))
    return rows


def row(label, batch, t_ref, t_our, m_ref, m_our, z_ref, z_our, unit: bool) -> dict:
    """One table row; ``unit`` compares against the reference output normalized (anybind's files give unit vectors)."""
    z_ref = torch.nn.functional.normalize(z_ref, dim=-1) if unit else z_ref
    return {"what": label, "ref_items_s": batch / t_ref, "anybind_items_s": batch / t_our, "ratio": t_ref / t_our,
            "ref_peak_mb": m_ref, "anybind_peak_mb": m_our, "max_abs_diff": float((z_our - z_ref).abs().max())}


def print_table(rows: list[dict], preset: str, batch: int) -> None:
    print(f"\n{preset}, batch {batch}, {torch.get_num_threads()} threads, fp32 CPU")
    print("| input | ImageBind items/s | anybind items/s | anybind / ImageBind "
          "| ImageBind peak MB | anybind peak MB | max abs diff |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['what']} | {r['ref_items_s']:.2f} | {r['anybind_items_s']:.2f} | {r['ratio']:.2f}× | "
              f"{r['ref_peak_mb']:.0f} | {r['anybind_peak_mb']:.0f} | {r['max_abs_diff']:.1e} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(KWARGS), default="imagebind-huge")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None, help="Also write the rows here.")
    args = parser.parse_args()
    rows = run(args.preset, args.batch, args.repeats)
    print_table(rows, args.preset, args.batch)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"preset": args.preset, "batch": args.batch, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
