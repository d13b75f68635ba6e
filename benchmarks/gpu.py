"""Every GPU measurement on one GPU: anybind in fp16/bf16 against the reference ImageBind in fp16.

At ImageBind-Huge size (random weights, the reference's own converted into anybind's layout by
``binder.imagebind.convert_state_dict``), for each of the six modalities on the same preprocessed
batch: items/s of the reference in fp16 (weights and inputs cast to half, as its users run it) and
of anybind at fp16 and bf16 (``binder.precision``: half weights under autocast), the ratio, and
each precision's lowest cosine to anybind fp32 on the same GPU. Then file → embedding for a
folder of JPEGs and one of 10 s WAVs through ``embed_items`` (decode threads, pinned batches), as
a share of the tensor-only rate of the same model, with the GPU's utilization sampled while the
folder embeds (``nvidia-smi``). Rows go to ``benchmarks/results/gpu.json``.

    python benchmarks/gpu.py [--batch 32] [--files 256] [--repeats 5] [--workers 8]
    bash benchmarks/gpu.sh        # this, then the GPU rows of train_throughput.py; under 8 minutes

Without a CUDA device (or with a CPU-only torch build) it says so and measures nothing.
"""
from __future__ import annotations

import argparse
import copy
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.append(str(ROOT / "tests"))

from vs_imagebind import KWARGS, REF_KEY, make_files, tensor_inputs  # noqa: E402

from binder.embed.pipeline import Item, embed_items  # noqa: E402
from binder.imagebind import convert_state_dict  # noqa: E402
from binder.precision import apply_precision  # noqa: E402

PRECISIONS = ("fp16", "bf16")


def no_gpu_reason() -> str | None:
    """Why nothing can be measured here, or None when a CUDA device is there."""
    if torch.version.cuda is None:
        return (f"torch {torch.__version__} is a CPU-only build; install the CUDA wheel of the same version "
                f"(e.g. pip install torch=={torch.__version__.split('+')[0]} --index-url "
                f"https://download.pytorch.org/whl/cu128) to measure")
    if not torch.cuda.is_available():
        return "torch sees no CUDA device"
    return None


def synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(fn, repeats: int) -> tuple[float, object]:
    """(median seconds, last result) of ``fn()`` on the GPU: two warm-up runs, then ``repeats`` timed."""
    out = None
    for _ in range(2):
        out = fn()
    synchronize()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def build(preset: str, device: str):
    """(reference ImageBind in fp16, anybind fp32, anybind per precision), all on ``device``."""
    from reference_imagebind import random_reference

    ref = random_reference(KWARGS[preset], seed=0, noise=0.002)
    ours = convert_state_dict(ref.state_dict(), preset).eval()
    halves = {p: apply_precision(copy.deepcopy(ours), p).place(device) for p in PRECISIONS}
    return ref.half().to(device), ours.place(device), halves


def tensor_rows(ref, ours, halves, batch: int, repeats: int) -> list[dict]:
    """Per modality: the reference fp16 and anybind fp16/bf16 on the same batch, items/s and cosine."""
    rows = []
    for name, x in tensor_inputs(ours, batch).items():
        key = REF_KEY.get(name, name)
        x = x.to(ours.input_device)
        x_ref = x if not x.is_floating_point() else x.half()
        with torch.inference_mode():
            t_ref, _ = timed(lambda: ref({key: x_ref})[key], repeats)
            z32, _ = ours.encode_rows(name, x)
        row = {"what": f"{name} (tensor)", "batch": batch, "ref_fp16_items_s": batch / t_ref}
        for precision, model in halves.items():
            t, (z, bad) = timed(lambda: model.encode_rows(name, x), repeats)
            row[f"{precision}_items_s"] = batch / t
            row[f"{precision}_ratio"] = t_ref / t
            row[f"{precision}_min_cosine"] = float(F.cosine_similarity(z, z32).min())
            row[f"{precision}_bad_rows"] = len(bad)
        rows.append(row)
        print(row, flush=True)
    return rows


class Utilization:
    """The GPU's utilization (%) sampled by ``nvidia-smi`` every 0.2 s while the block runs."""

    def __enter__(self) -> Utilization:
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def _watch(self) -> None:
        smi = shutil.which("nvidia-smi")
        while smi and not self._stop.wait(0.2):
            out = subprocess.run([smi, "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits", "-i", "0"],
                                 capture_output=True, text=True, check=False).stdout.strip()
            if out.replace(".", "", 1).isdigit():
                self.samples.append(float(out))

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def mean(self) -> float | None:
        return statistics.fmean(self.samples) if self.samples else None


def folder_rows(model, files: dict[str, list[Path]], batch: int, workers: int,
                tensor_rates: dict[str, float]) -> list[dict]:
    """File → embedding of each folder through ``embed_items``, against the tensor-only rate."""
    rows = []
    for name, paths in files.items():
        items = [Item(str(p), name) for p in paths]
        list(embed_items(model, items[:batch], batch, workers, progress=False))  # warm-up: kernels, threads
        with Utilization() as util:
            t0 = time.perf_counter()
            failures: list = []
            done = sum(len(b.items) for b in embed_items(model, items, batch, workers, progress=False,
                                                          failures=failures))
            seconds = time.perf_counter() - t0
        rate = done / seconds
        rows.append({"what": f"{name} (file → embedding)", "files": len(paths), "failed": len(failures),
                     "precision": model.precision, "items_s": rate, "tensor_items_s": tensor_rates[name],
                     "share_of_tensor_rate": rate / tensor_rates[name], "gpu_util_mean_pct": util.mean,
                     "workers": workers})
        print(rows[-1], flush=True)
    return rows


def print_tables(tensor: list[dict], folders: list[dict], device: str, preset: str) -> None:
    print(f"\n{preset} on {device}; reference fp16 vs anybind fp16/bf16 (same batch)")
    print("| input | ImageBind fp16 items/s | anybind fp16 | ratio | anybind bf16 | ratio "
          "| min cosine to fp32 (fp16 / bf16) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in tensor:
        print(f"| {r['what']} | {r['ref_fp16_items_s']:.1f} | {r['fp16_items_s']:.1f} | {r['fp16_ratio']:.2f}× | "
              f"{r['bf16_items_s']:.1f} | {r['bf16_ratio']:.2f}× | "
              f"{r['fp16_min_cosine']:.5f} / {r['bf16_min_cosine']:.5f} |")
    print("\n| folder | precision | files/s | tensor-only items/s | share | mean GPU utilization |")
    print("|---|---|---:|---:|---:|---:|")
    for r in folders:
        util = "n/a" if r["gpu_util_mean_pct"] is None else f"{r['gpu_util_mean_pct']:.0f} %"
        print(f"| {r['what']} | {r['precision']} | {r['items_s']:.1f} | {r['tensor_items_s']:.1f} | "
              f"{r['share_of_tensor_rate']:.0%} | {util} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(KWARGS), default="imagebind-huge")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--files", type=int, default=256, help="files per folder (JPEGs, WAVs)")
    parser.add_argument("--workers", type=int, default=8, help="decode threads for the folders")
    parser.add_argument("--folder-precision", choices=PRECISIONS, default="bf16")
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "gpu.json")
    parser.add_argument("--cpu-check", action="store_true",
                        help="run the whole script on the CPU (a check of the script, not a measurement)")
    args = parser.parse_args()
    reason = None if args.cpu_check else no_gpu_reason()
    if reason:
        print(f"benchmarks/gpu.py: nothing measured: {reason}")
        return
    where = "cpu" if args.cpu_check else "cuda"
    device = "cpu (script check)" if args.cpu_check else torch.cuda.get_device_name(0)
    ref, ours, halves = build(args.preset, where)
    tensor = tensor_rows(ref, ours, halves, args.batch, args.repeats)
    del ref, ours
    if not args.cpu_check:
        torch.cuda.empty_cache()
    rates = {r["what"].split(" ")[0]: r[f"{args.folder_precision}_items_s"] for r in tensor}
    with tempfile.TemporaryDirectory() as tmp:
        files = make_files(Path(tmp), args.files)
        folders = folder_rows(halves[args.folder_precision], files, args.batch, args.workers, rates)
    print_tables(tensor, folders, device, args.preset)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"device": device, "torch": torch.__version__, "preset": args.preset,
                                     "batch": args.batch, "tensor": tensor, "folders": folders}, indent=2))


if __name__ == "__main__":
    main()
