"""Zero-shot benchmarks on the standard data sets ImageBind reports (``anybind bench NAME``).

One module per data set; each reads the data set in its distributed layout, checks it, and writes
a manifest of the items to embed (``Benchmark.build_manifest``), and records the metric, the class
names and prompt templates, and the paper's figure. ``recipes.bench.run`` embeds and scores.
"""
from __future__ import annotations

from binder.errors import AnybindError
from recipes.bench import ego4d_imu, esc50, llvip, msrvtt, nyu_depth
from recipes.bench.base import Benchmark, BuiltSet, DatasetLayoutError, PaperFigure

BENCHMARKS: dict[str, Benchmark] = {
    b.name: b for b in (esc50.BENCHMARK, nyu_depth.BENCHMARK, llvip.BENCHMARK, ego4d_imu.BENCHMARK,
                        msrvtt.BENCHMARK)
}


def get_benchmark(name: str) -> Benchmark:
    """The benchmark registered as ``name``; an unknown name is an error listing the known ones."""
    try:
        return BENCHMARKS[name]
    except KeyError:
        raise AnybindError(f"unknown benchmark {name!r}; known: {', '.join(BENCHMARKS)}") from None


__all__ = ["BENCHMARKS", "Benchmark", "BuiltSet", "DatasetLayoutError", "PaperFigure", "get_benchmark"]
