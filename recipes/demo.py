"""The main job on the embedded default: embed the bundled mixed-modality samples and compare them.

Until the offline anchor is trained, the default model is a randomly initialised tiny anchor with
untrained bindings, and this demo says so: the vectors are real outputs of the full pipeline
(file → tokens → shared trunk → head → CLIP space), but their similarities carry no meaning yet.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from binder.embed import discover, embed_items  # noqa: E402
from binder.model import BindingModel  # noqa: E402
from binder.shards import ShardWriter, read_shards  # noqa: E402

SAMPLES = ROOT / "recipes" / "samples"
OUT = ROOT / "out" / "demo"


def main() -> int:
    print("anybind demo: embedding the bundled samples with the DEFAULT model.")
    print("WARNING: the default anchor and bindings are randomly initialised and UNTRAINED;")
    print("         similarities below show the pipeline works end to end, not semantic matches.\n")
    model = BindingModel.default().eval()
    items, failures = discover([SAMPLES])
    writer = ShardWriter(OUT, model.embed_dim, info={"model": "untrained-default"})
    for batch in embed_items(model, items, batch_size=8, failures=failures):
        writer.add(batch.embeddings, [{"path": i.path, "modality": i.modality,
                                       "shape": list(batch.input_shape)} for i in batch.items])
    writer.close()
    emb, meta = read_shards(OUT)
    print(f"\n{len(meta)} files embedded into {OUT.relative_to(ROOT)} (dim {emb.shape[1]}), {len(failures)} failed")
    for f in failures:
        print(f"  failed: {f.path}: {f.reason}")
    names = [f"{m['modality']}:{Path(m['path']).name}" for m in meta]
    width = max(map(len, names))
    print(f"\n{'file'.ljust(width)}  norm   nearest other file (cosine)")
    sims = emb @ emb.T
    np.fill_diagonal(sims, -np.inf)
    for i, name in enumerate(names):
        j = int(np.argmax(sims[i]))
        print(f"{name.ljust(width)}  {np.linalg.norm(emb[i]):.3f}  {names[j]} ({sims[i, j]:+.3f})")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
