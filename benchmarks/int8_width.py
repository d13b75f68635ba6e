"""Where int8 pays on this CPU: int8 against fp32 for a transformer encoder of each width.

For each width a standalone trunk of ``--layers`` blocks (heads of 64 channels, MLP ratio 4, the
shape of every ImageBind and open_clip encoder) encodes the same ``--batch`` × ``--tokens`` input
in fp32 and at int8 (``binder.precision.quantize_int8``), alternating, best of ``--repeats``.
Printed: ms per batch and the speed-up of int8: how int8's gain grows with width, which with
``benchmarks/vs_imagebind.py --precision int8`` at full size sets ``binder.precision.INT8_MIN_WIDTH``
(the narrowest encoder int8 is used for; docs/guides/performance.md).

    python benchmarks/int8_width.py [--widths 64,128,192,256,384,512,768,1024,1280] [--tokens 197]
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from binder.config import TrunkConfig  # noqa: E402
from binder.precision import INT8_MIN_SPEEDUP, INT8_MIN_WIDTH, quantize_int8  # noqa: E402
from binder.trunk import build_trunk  # noqa: E402


def best_ms(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1000 * min(times)


def measure(width: int, layers: int, batch: int, tokens: int, repeats: int) -> dict:
    """fp32 and int8 ms per batch of one trunk of ``width``, measured alternately."""
    torch.manual_seed(0)
    cfg = TrunkConfig(kind="standalone", width=width, layers=layers, heads=max(1, width // 64))
    fp32 = build_trunk(cfg, None).eval()
    int8 = quantize_int8(copy.deepcopy(fp32))
    x = torch.randn(batch, tokens, width)
    t32, t8 = [], []
    with torch.inference_mode():
        fp32(x, None), int8(x, None)  # warm-up
        for _ in range(repeats):
            t32.append(best_ms(lambda: fp32(x, None), 1))
            t8.append(best_ms(lambda: int8(x, None), 1))
    return {"width": width, "fp32_ms": min(t32), "int8_ms": min(t8), "speedup": min(t32) / min(t8)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", default="64,128,192,256,384,512,768,1024,1280")
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=197)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "int8_width.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = [measure(int(w), args.layers, args.batch, args.tokens, args.repeats) for w in args.widths.split(",")]
    print(f"{args.layers} blocks, batch {args.batch} × {args.tokens} tokens, {args.threads} threads")
    print("| width | fp32 ms | int8 ms | int8 speed-up |")
    print("|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['width']} | {r['fp32_ms']:.1f} | {r['int8_ms']:.1f} | {r['speedup']:.2f}× |")
    print(f"rule in use: int8 for encoders of width >= {INT8_MIN_WIDTH} (the narrowest width at which int8 "
          f"measured >= {INT8_MIN_SPEEDUP}× the fp32 reference at ImageBind-Huge size)")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"layers": args.layers, "batch": args.batch, "tokens": args.tokens,
                                     "threads": args.threads, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
