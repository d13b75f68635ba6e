"""Search backends side by side: queries/s, recall@10 against exact, build time and memory per vector.

Datasets of unit vectors (dim 512): ``random`` (i.i.d. Gaussian directions, the spec of the goal,
and the worst case for any approximate index: every point is nearly equidistant from a query) and
``clustered`` (points around 1,000 centres, closer to how real embeddings are laid out). Each
dataset is searched with one batch of held-out queries by: the exact numpy backend, a plain
``faiss.IndexFlatIP`` (the reference for exact speed), and the flat, HNSW and IVF-PQ backends at a
few search settings. Prints a markdown table and writes benchmarks/results/search.json.

    OMP_NUM_THREADS=2 python benchmarks/search.py                       # 100k and 1M, random and clustered
    python benchmarks/search.py --runs random:100000 --queries 200     # quick look
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from binder.index.backends import recall_at_k
from binder.index.backends.exact import ExactBackend  # noqa: E402
from binder.index.backends.faiss import HNSW_EF_CONSTRUCTION, HNSW_M, HNSWBackend, IVFPQBackend, import_faiss  # noqa: E402

K = 10
HNSW_BUILD = {"M": HNSW_M, "ef_construction": HNSW_EF_CONSTRUCTION}
HNSW_EF = (64, 256, 1024)
IVFPQ_NPROBE = (16, 64, 256)


def unit(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x / np.linalg.norm(x, axis=1, keepdims=True), dtype=np.float32)


def dataset(kind: str, n: int, q: int, dim: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(n, dim) database and (q, dim) queries of unit rows, drawn from the same distribution."""
    rng = np.random.default_rng(seed)
    if kind == "random":
        draw = lambda m: unit(rng.standard_normal((m, dim), dtype=np.float32))  # noqa: E731
    else:
        centres = unit(rng.standard_normal((1000, dim), dtype=np.float32))
        draw = lambda m: unit(centres[rng.integers(0, 1000, m)]  # noqa: E731
                              + rng.standard_normal((m, dim), dtype=np.float32) / np.sqrt(dim))
    x = np.empty((n, dim), np.float32)
    for s in range(0, n, 100_000):
        x[s:s + 100_000] = draw(min(100_000, n - s))
    return x, draw(q)


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def best_of_2(fn):
    """The faster of two runs: the exact-vs-flat comparison should not hinge on one noisy pass."""
    (out, t1), (_, t2) = timed(fn), timed(fn)
    return out, min(t1, t2)


def row(name: str, setting: str, qps: float, recall: float, build_s: float, bytes_per_vec: float, note: str = ""):
    return {"backend": name, "setting": setting, "qps": round(qps, 1), "recall_at_10": round(recall, 4),
            "build_s": round(build_s, 1), "bytes_per_vector": round(bytes_per_vec, 1), "note": note}


def run_dataset(kind: str, n: int, nq: int, dim: int) -> dict:
    faiss = import_faiss()
    x, q = dataset(kind, n, nq, dim)
    print(f"\n## {kind} {n:,} x {dim}, {nq} queries, k={K}", flush=True)
    rows = []
    exact = ExactBackend(x)
    truth, t = best_of_2(lambda: exact.search(q, K))
    rows.append(row("exact (numpy)", "matmul blocks", nq / t, 1.0, 0.0, dim * 4, "the float32 rows themselves"))
    emit(rows[-1])
    plain, tb = timed(lambda: _plain_flat(faiss, x))
    (_, ids), t = best_of_2(lambda: plain.search(q, K))
    rows.append(row("faiss.IndexFlatIP", "plain", nq / t, recall_at_k(ids, truth.ids), tb, dim * 4,
                    "its own copy of the rows"))
    emit(rows[-1])
    plain = None  # drop faiss's copy of the rows before the next build
    gc.collect()
    rows += sweep(HNSWBackend(x, **HNSW_BUILD), "ef_search", HNSW_EF, q, truth, n,
                  f"M={HNSW_BUILD['M']}, efConstruction={HNSW_BUILD['ef_construction']}")
    gc.collect()
    rows += sweep(IVFPQBackend(x), "nprobe", IVFPQ_NPROBE, q, truth, n, "re-ranks from the float32 rows")
    exact_qps = rows[0]["qps"]
    for r in rows:
        r["speedup_vs_exact"] = round(r["qps"] / exact_qps, 2)
    return {"dataset": kind, "rows_in_index": n, "dim": dim, "queries": nq, "k": K, "results": rows}


def _plain_flat(faiss, x: np.ndarray):
    index = faiss.IndexFlatIP(x.shape[1])
    index.add(x)
    return index


def sweep(backend, knob: str, values, q, truth, n: int, build_note: str) -> list[dict]:
    """Search ``backend`` at each value of ``knob``; build time is measured by the constructor."""
    out = []
    build_s = backend.build_seconds
    per_vec = backend.memory_bytes() / n
    for v in values:
        backend.params[knob] = v
        res, t = timed(lambda: backend.search(q, K))
        extra = f", rerank {backend.params['rerank']}x" if "rerank" in backend.params else ""
        out.append(row(backend.name, f"{knob}={v}{extra}", len(q) / t, recall_at_k(res.ids, truth.ids),
                       build_s, per_vec, build_note))
        emit(out[-1])
    return out


def emit(r: dict) -> None:
    print(f"  {r['backend']:<18} {r['setting']:<24} {r['qps']:>9.1f} q/s  recall@10 {r['recall_at_10']:.3f}  "
          f"build {r['build_s']:.0f} s  {r['bytes_per_vector']:.0f} B/vector", flush=True)


def markdown(runs: list[dict]) -> str:
    lines = ["| data | rows | backend | setting | queries/s | × exact | recall@10 | build s | bytes/vector |",
             "|---|---:|---|---|---:|---:|---:|---:|---:|"]
    for run in runs:
        for r in run["results"]:
            lines.append(f"| {run['dataset']} | {run['rows_in_index']:,} | {r['backend']} | {r['setting']} | "
                         f"{r['qps']:,.0f} | {r['speedup_vs_exact']:.2f} | {r['recall_at_10']:.3f} | "
                         f"{r['build_s']:.0f} | {r['bytes_per_vector']:,.0f} |")
    return "\n".join(lines)


def _kept_runs(out: str, specs: list[str]) -> list[dict]:
    """Runs already in ``out`` that this invocation does not measure again."""
    try:
        old = json.loads(Path(out).read_text())["runs"]
    except (OSError, ValueError, KeyError):
        return []
    redo = {(kind, int(n)) for kind, n in (spec.split(":") for spec in specs)}
    return [r for r in old if (r["dataset"], r["rows_in_index"]) not in redo]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", nargs="+",
                    default=["random:100000", "clustered:100000", "random:1000000", "clustered:1000000"],
                    help="KIND:ROWS, KIND is random or clustered")
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "search.json"))
    ap.add_argument("--hnsw-build", default=None, metavar="M,EFC",
                    help="HNSW build parameters (default: the backend's own, M=32, efConstruction=64)")
    ap.add_argument("--keep", action="store_true", help="keep runs of other datasets/sizes already in --out")
    args = ap.parse_args()
    if args.hnsw_build:
        m, efc = (int(v) for v in args.hnsw_build.split(","))
        HNSW_BUILD.update(M=m, ef_construction=efc)
    faiss = import_faiss()
    meta = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cpus",
            "threads": os.environ.get("OMP_NUM_THREADS"), "faiss": faiss.__version__, "numpy": np.__version__,
            "query_batch": args.queries, "timing": "best of 2 for exact and IndexFlatIP, one pass otherwise"}
    runs = _kept_runs(args.out, args.runs) if args.keep else []
    for spec in args.runs:
        kind, n = spec.split(":")
        runs.append(run_dataset(kind, int(n), args.queries, args.dim))
        gc.collect()
        table = markdown(runs)  # written after every dataset, so a long run keeps what it measured
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"meta": meta, "runs": runs, "table": table}, indent=2) + "\n")
    print("\n" + table)
    print(f"\nwritten to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
