"""Peak memory and load time of embedding one audio file: the whole model against only its audio parts.

Each case runs in a fresh process (peak RSS is per process), side by side in one run:

1. ``whole``: ``BindingModel.load(folder)`` (every tower), then embed the file;
2. ``audio parts``: ``BindingModel.load(folder, ["audio"])``, then embed the file;
3. ``anybind embed a.wav --model folder``: the command line as a user runs it (it loads the audio parts).

The model folder is an ``anybind convert``-style folder of the chosen preset with random weights
(made once and kept in ``--folder``; ImageBind-Huge is 4.8 GB on disk). Usage:

    python benchmarks/load_parts.py [--preset imagebind-huge] [--folder out/bench/imagebind-huge] [--threads 2]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# Peak RSS is the process's VmHWM: ru_maxrss would count what a forked child inherited before exec.
CASE = """
import json, sys, time, torch
torch.set_num_threads({threads})
t0 = time.perf_counter()
from binder.model import BindingModel
model = BindingModel.load({folder!r}{parts})
t1 = time.perf_counter()
z = model.embed_files("audio", [{wav!r}])
t2 = time.perf_counter()
hwm = next(line for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({{"load_s": t1 - t0, "embed_s": t2 - t1, "norm": float(z.norm()),
                  "peak_rss_mb": int(hwm.split()[1]) / 1024}}))
"""

# Run from a small wrapper process, whose children's ru_maxrss is the command's own peak.
CLI = """
import json, resource, subprocess, sys, time
t0 = time.perf_counter()
done = subprocess.run({argv!r}, capture_output=True, text=True)
if done.returncode:
    sys.exit(done.stderr)
print(json.dumps({{"total_s": time.perf_counter() - t0,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}}))
"""


def ensure_folder(preset: str, folder: Path) -> float:
    """Save a randomly initialised model of ``preset`` to ``folder`` once; seconds spent (0 if cached)."""
    if (folder / "config.json").is_file():
        return 0.0
    import torch

    from binder.model import BindingModel

    t0 = time.perf_counter()
    with torch.no_grad():
        BindingModel.from_preset(preset).save(folder)
    return time.perf_counter() - t0


def write_wav(path: Path, seconds: float = 2.0, sr: int = 16000) -> Path:
    import soundfile

    t = np.arange(int(seconds * sr)) / sr
    wave = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * np.random.default_rng(0).standard_normal(t.size)
    soundfile.write(path, wave.astype(np.float32), sr)
    return path


def run_python(code: str, threads: int) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT)
    if done.returncode:
        raise SystemExit(f"case failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="imagebind-huge")
    ap.add_argument("--folder", type=Path, default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "load_parts.json")
    args = ap.parse_args()
    folder = args.folder or ROOT / "out" / "bench" / args.preset
    made = ensure_folder(args.preset, folder)
    size_gb = (folder / "model.safetensors").stat().st_size / 1e9
    how = f"made in {made:.0f} s" if made else "cached"
    print(f"{args.preset}: {folder} ({size_gb:.2f} GB; {how})", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        wav = str(write_wav(Path(tmp) / "a.wav"))
        rows = {
            "whole": run_python(CASE.format(threads=args.threads, folder=str(folder), parts="", wav=wav),
                                args.threads),
            "audio parts": run_python(CASE.format(threads=args.threads, folder=str(folder), parts=', ["audio"]',
                                                  wav=wav), args.threads),
        }
        argv = [str(Path(sys.executable).with_name("anybind")), "--threads", str(args.threads), "embed", wav,
                "--model", str(folder), "--format", "jsonl", "--quiet"]
        rows["anybind embed (CLI)"] = run_python(CLI.format(argv=argv), args.threads)
    whole = rows["whole"]["peak_rss_mb"]
    print("\n| case | peak RSS (MB) | share of whole | load (s) | embed (s) |\n|---|---|---|---|---|")
    for name, r in rows.items():
        load = f"{r['load_s']:.1f}" if "load_s" in r else f"{r['total_s']:.1f} (whole command)"
        embed = f"{r['embed_s']:.2f}" if "embed_s" in r else "-"
        print(f"| {name} | {r['peak_rss_mb']:,.0f} | {r['peak_rss_mb'] / whole:.2f} | {load} | {embed} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    payload = {"preset": args.preset, "threads": args.threads, "weights_gb": size_gb, "rows": rows}
    tmp_out = args.out.with_name(f".{args.out.name}.tmp")
    tmp_out.write_text(json.dumps(payload, indent=2))
    tmp_out.replace(args.out)


if __name__ == "__main__":
    main()
