"""anybind vs the reference ImageBind code: same weights, same inputs, one process, 2 threads.

For each of the six modalities both implementations embed the same preprocessed batch; for
audio and images also end to end (files → embeddings: the reference's ``load_and_transform_*``
loaders + forward, against anybind's ``embed_items`` pipeline). Prints items/s, the ratio
(anybind / reference) and the peak extra resident memory of each run, and checks that the two
outputs agree. ``--precision int8`` adds anybind int8 columns (``binder.precision``): its items/s,
the ratio to anybind fp32, the lowest per-item cosine to fp32, and the mean top-10 overlap of
fp32 and int8 searches of a mixed gallery (``--gallery`` items across the six modalities,
``--queries`` fresh queries per modality, each precision searching its own gallery). A speed
guard closes the run: a WARNING line names each (tensor) row where anybind fp32 runs below 0.95×
the reference (the same model must never be slower), applied only when the load average at the
start and at the end of the run is at most the thread count + 0.5; otherwise it says why not. Usage:

    python benchmarks/vs_imagebind.py [--preset imagebind-huge|imagebind-test] [--batch 4] [--repeats 2]
    python benchmarks/vs_imagebind.py --preset imagebind-test --precision int8 [--gallery 1000]

Needs the test extra (``pip install -e '.[test]'``) for the reference package.
"""
from __future__ import annotations

import argparse
import copy
import ctypes
import gc
import json
import os
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
from binder.precision import INT8_MIN_WIDTH, apply_precision  # noqa: E402

KWARGS = {"imagebind-huge": HUGE_KWARGS, "imagebind-test": TEST_KWARGS}
REF_KEY = {"image": "vision"}
THREADS = 2
GUARD_RATIO = 0.95  # a (tensor) row whose anybind fp32 / ImageBind ratio is below this is a speed regression
GUARD_SLACK = 0.5  # the guard applies when the load average stays within THREADS + this at start and end


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


def tensor_inputs(model, batch: int, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    texts = [f"a photo of {i + seed} dogs playing in the rain on a street at night" for i in range(batch)]
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


def run(preset: str, batch: int, repeats: int, precision: str = "fp32", gallery: int = 1000,
        queries: int = 10, int8_min_width: int = INT8_MIN_WIDTH) -> list[dict]:
    torch.set_num_threads(THREADS)
    ref = random_reference(KWARGS[preset], seed=0, noise=0.002 if preset == "imagebind-huge" else 0.02)
    ours = convert_state_dict(ref.state_dict(), preset)
    ours8 = None
    if precision != "fp32":
        ours8 = apply_precision(copy.deepcopy(ours), precision, int8_min_width)
        print(f"int8 encoders (width >= {int8_min_width}): {', '.join(ours8.int8_encoders) or 'none'}; "
              f"the others run at fp32", flush=True)
    rows = []
    inputs = tensor_inputs(ours, batch)
    for name, x in inputs.items():
        key = REF_KEY.get(name, name)
        with torch.inference_mode():
            t_ref, m_ref, z_ref = measure(lambda: ref({key: x})[key], repeats)
            t_our, m_our, z_our = measure(lambda: ours.encode(name, x, scaled=True), repeats)
        rows.append(row(f"{name} (tensor)", batch, t_ref, t_our, m_ref, m_our, z_ref, z_our, unit=False))
        if ours8 is not None:
            with torch.inference_mode():
                t8, _, z8 = measure(lambda: ours8.encode(name, x, scaled=True), repeats)
            rows[-1].update(low_precision(batch, t_our, t8, z_our, z8))
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
            if ours8 is not None:
                t8, _, z8 = measure(end_to_end(ref, ours8, files, batch)[name][1], repeats)
                rows[-1].update(low_precision(batch, t_our, t8, z_our, z8))
    if ours8 is not None:
        overlap = gallery_overlap(ours, ours8, gallery, queries, batch)
        for r in rows:
            name = r["what"].split(" ")[0]
            if name in overlap and r["what"].endswith("(tensor)"):
                r["int8_top10_overlap"] = overlap[name]["overlap"]
                r["fp32_gap_10_11"] = overlap[name]["fp32_gap_10_11"]
    return rows


def low_precision(batch: int, t_fp32: float, t_low: float, z_fp32, z_low) -> dict:
    """int8 columns of a row: items/s, speed over anybind fp32, lowest per-item cosine to fp32."""
    cos = torch.nn.functional.cosine_similarity(torch.as_tensor(z_low), torch.as_tensor(z_fp32), dim=-1)
    return {"int8_items_s": batch / t_low, "int8_ratio": t_fp32 / t_low, "int8_min_cosine": float(cos.min())}


def gallery_overlap(ours, ours8, size: int, queries: int, batch: int) -> dict[str, dict[str, float]]:
    """Per query modality: the mean share of fp32's top 10 that int8 also returns, and the mean fp32
    similarity gap between the 10th and 11th hit (how far a rank-10 item is from dropping out).

    The gallery mixes ``size`` items spread over the six modalities (seeded random inputs); each
    precision embeds the gallery and ``queries`` fresh items per modality, and searches its own
    gallery by cosine. With random weights and random inputs the vectors of one modality are
    nearly parallel, so the gap is tiny and the overlap is a lower bound for a trained model.
    """
    names = list(tensor_inputs(ours, 1))
    per = [size // len(names) + (i < size % len(names)) for i in range(len(names))]

    def embed(model, name: str, count: int, seed: int) -> torch.Tensor:
        out = []
        for start in range(0, count, batch):
            x = tensor_inputs(model, min(batch, count - start), seed=seed + start)[name]
            with torch.inference_mode():
                out.append(model.encode(name, x))
        return torch.cat(out)

    result = {}
    galleries = [torch.cat([embed(m, n, c, 10_000) for n, c in zip(names, per)]) for m in (ours, ours8)]
    for name in names:
        sims = [embed(m, name, queries, 90_000) @ g.T for m, g in zip((ours, ours8), galleries)]
        tops = [sim.topk(11, dim=1) for sim in sims]
        shared = [len(set(a[:10].tolist()) & set(b[:10].tolist())) / 10
                  for a, b in zip(tops[0].indices, tops[1].indices)]
        gap = (tops[0].values[:, 9] - tops[0].values[:, 10]).mean()
        result[name] = {"overlap": sum(shared) / len(shared), "fp32_gap_10_11": float(gap)}
    return result


def row(label, batch, t_ref, t_our, m_ref, m_our, z_ref, z_our, unit: bool) -> dict:
    """One table row; ``unit`` compares against the reference output normalized (anybind's files give unit vectors)."""
    z_ref = torch.nn.functional.normalize(z_ref, dim=-1) if unit else z_ref
    return {"what": label, "ref_items_s": batch / t_ref, "anybind_items_s": batch / t_our, "ratio": t_ref / t_our,
            "ref_peak_mb": m_ref, "anybind_peak_mb": m_our, "max_abs_diff": float((z_our - z_ref).abs().max())}


def print_low_precision(rows: list[dict], gallery: int) -> None:
    print(f"\nanybind int8 (binder.precision) against anybind fp32; top-10 overlap on a {gallery}-item gallery")
    print("| input | fp32 items/s | int8 items/s | int8 / fp32 | min cosine | top-10 overlap | fp32 gap 10th-11th |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        if "int8_items_s" in r:
            overlap, gap = r.get("int8_top10_overlap"), r.get("fp32_gap_10_11")
            print(f"| {r['what']} | {r['anybind_items_s']:.2f} | {r['int8_items_s']:.2f} | {r['int8_ratio']:.2f}× | "
                  f"{r['int8_min_cosine']:.5f} | {'' if overlap is None else f'{overlap:.3f}'} | "
                  f"{'' if gap is None else f'{gap:.1e}'} |")


def print_table(rows: list[dict], preset: str, batch: int) -> None:
    print(f"\n{preset}, batch {batch}, {torch.get_num_threads()} threads, fp32 CPU")
    print("| input | ImageBind items/s | anybind items/s | anybind / ImageBind "
          "| ImageBind peak MB | anybind peak MB | max abs diff |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['what']} | {r['ref_items_s']:.2f} | {r['anybind_items_s']:.2f} | {r['ratio']:.2f}× | "
              f"{r['ref_peak_mb']:.0f} | {r['anybind_peak_mb']:.0f} | {r['max_abs_diff']:.1e} |")


def guard_skipped(load_start: float, load_end: float) -> str | None:
    """Why the speed guard cannot judge this run (a busy machine skews the ratios), or None."""
    limit = THREADS + GUARD_SLACK
    if max(load_start, load_end) <= limit:
        return None
    return (f"load average {load_start:.1f} at the start and {load_end:.1f} at the end of the run, "
            f"above {limit:.1f} ({THREADS} threads + {GUARD_SLACK}): other work shared the CPU")


def slow_rows(rows: list[dict]) -> list[dict]:
    """The model rows (ready tensors, fp32) where anybind runs below ``GUARD_RATIO``× ImageBind's speed."""
    return [r for r in rows if r["what"].endswith("(tensor)") and r["ratio"] < GUARD_RATIO]


def speed_guard(rows: list[dict], load_start: float, load_end: float) -> dict:
    """Print a WARNING line per slow (tensor) row, or why the guard was not applied; returns the verdict."""
    skipped = guard_skipped(load_start, load_end)
    verdict = {"applied": skipped is None, "load_start": load_start, "load_end": load_end, "slow": []}
    if skipped:
        print(f"\nspeed guard not applied: {skipped}; rerun on an idle machine to check the ratios")
        return verdict
    slow = slow_rows(rows)
    verdict["slow"] = [r["what"] for r in slow]
    print()
    for r in slow:
        print(f"WARNING: {r['what']}: anybind fp32 runs at {r['ratio']:.2f}× ImageBind's speed, "
              f"below the {GUARD_RATIO}× floor (same weights and inputs: a speed regression)")
    if not verdict["slow"]:
        print(f"speed guard: every (tensor) row at or above {GUARD_RATIO}× ImageBind "
              f"(load average {load_start:.1f} → {load_end:.1f})")
    return verdict


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(KWARGS), default="imagebind-huge")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--precision", choices=["fp32", "int8"], default="fp32",
                        help="int8: also time anybind at int8 and compare it with anybind fp32.")
    parser.add_argument("--gallery", type=int, default=1000, help="int8: gallery size of the top-10 overlap.")
    parser.add_argument("--queries", type=int, default=10, help="int8: queries per modality.")
    parser.add_argument("--int8-min-width", type=int, default=INT8_MIN_WIDTH,
                        help="int8: quantize encoders at least this wide (default: the library's rule; "
                             "0 quantizes every encoder).")
    parser.add_argument("--json", type=Path, default=None, help="Also write the rows here.")
    args = parser.parse_args()
    load_start = os.getloadavg()[0]
    rows = run(args.preset, args.batch, args.repeats, args.precision, args.gallery, args.queries,
               args.int8_min_width)
    load_end = os.getloadavg()[0]
    print_table(rows, args.preset, args.batch)
    if args.precision != "fp32":
        print_low_precision(rows, args.gallery)
    guard = speed_guard(rows, load_start, load_end)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        payload = {"preset": args.preset, "batch": args.batch, "precision": args.precision, "rows": rows,
                   "speed_guard": guard}
        if args.precision != "fp32":
            payload.update(gallery=args.gallery, queries=args.queries, int8_min_width=args.int8_min_width)
        args.json.write_text(json.dumps(payload, indent=2))


if __name__ == "__main__":
    main()
