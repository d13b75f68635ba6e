"""`anybind search` and `anybind classify` end to end on a small real index (untrained default
model), checked against a numpy brute force over the index's own vectors."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from samplegen import MAKERS
from search_helpers import brute_force

import binder.cli.common
from binder.cli import app
from binder.errors import QueryError, RegistryError
from binder.index.build import BuildOptions, build_index
from binder.index.query import embed_query
from binder.index.search import EmbeddingIndex
from binder.index.store import IndexStore

MODALITIES = ("image", "text", "depth", "imu")


@pytest.fixture(scope="module")
def model():
    from binder.model import BindingModel

    return BindingModel.default().eval()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, model):
    root = tmp_path_factory.mktemp("search")
    files = root / "files"
    files.mkdir()
    for m in MODALITIES:
        for seed in range(4 if m != "depth" else 3):
            MAKERS[m](files, seed=seed)
    build_index(root / "idx", [files], model=model,
                options=BuildOptions(batch_size=8, workers=1, shard_size=5, progress=False))
    return root


@pytest.fixture(autouse=True)
def shared_model(monkeypatch, model):
    """The CLI's model loader hands out the one model the tests already built (same weights)."""
    monkeypatch.setattr(binder.cli.common, "load_model", lambda path, quiet=False, **_: model)


def run(*args, ok=True):
    res = CliRunner().invoke(app, list(args), catch_exceptions=True)
    if ok:
        assert res.exit_code == 0, (res.output, res.exception)
    return res


def reference(corpus, model, expr, k, modality=None):
    snap = IndexStore.open(corpus / "idx").snapshot()
    allowed = None if modality is None else np.array([r["modality"] == modality for r in snap.rows])
    ((scores, ids),) = brute_force(snap.vectors, embed_query(model, expr)[None], k, allowed)
    return [snap.rows[i]["path"] for i in ids], scores


def jsonl(res):
    return [json.loads(line) for line in res.stdout.splitlines() if line.strip()]


@pytest.mark.parametrize("expr,k,modality", [
    ("a handwritten seven", 5, None),
    ("the digit three - 0.5*a photo of a dog", 15, None),
    ("a photo of a dog", 2, "image"),
    ("a photo of a dog", 10, "depth"),  # k above the 3 depth maps: all 3 come back, nothing else
])
def test_search_equals_brute_force(corpus, model, expr, k, modality):
    args = ["search", str(corpus / "idx"), expr, "--k", str(k), "--format", "jsonl", "--mix", "raw"]
    rows = jsonl(run(*args, *(["--modality", modality] if modality else [])))
    paths, scores = reference(corpus, model, expr, k, modality)
    assert [r["path"] for r in rows] == paths
    np.testing.assert_allclose([r["score"] for r in rows], scores, atol=1e-5)
    assert [r["rank"] for r in rows] == list(range(1, len(paths) + 1))
    if modality:
        assert {r["modality"] for r in rows} == {modality}
        assert len(rows) == min(k, 3 if modality == "depth" else 4)


def test_file_and_mixed_queries(corpus, model):
    image = corpus / "files" / "img1.png"
    rows = jsonl(run("search", str(corpus / "idx"), str(image), "--k", "3", "--format", "jsonl", "--mix", "raw"))
    assert rows[0]["path"] == str(image.resolve()) and rows[0]["score"] == pytest.approx(1.0, abs=1e-5)
    expr = f"{image} + 0.5*{corpus / 'files' / 'wrist0.imu.npy'} - text:img1.png"
    rows = jsonl(run("search", str(corpus / "idx"), expr, "--k", "4", "--format", "jsonl", "--mix", "raw"))
    assert [r["path"] for r in rows] == reference(corpus, model, expr, 4)[0]


def test_the_default_mix_ranks_every_modality_by_its_z_score(corpus, model):
    """calibrated: (cosine - q·mean_m) / sqrt(q' cov_m q) per row's modality, top k over all rows, with
    each modality's mean and covariance shrunk toward all rows' by PRIOR_ROWS pseudo-rows."""
    from binder.index.mix import PRIOR_ROWS

    snap = IndexStore.open(corpus / "idx").snapshot()
    q = embed_query(model, "a handwritten seven").astype(np.float64)
    cos = snap.vectors.astype(np.float64) @ q

    def mean_cov(x):
        centred = x - x.mean(axis=0)
        return x.mean(axis=0), centred.T @ centred / len(x)

    all_mean, all_cov = mean_cov(snap.vectors.astype(np.float64))
    z = np.empty_like(cos)
    mods = np.array([r["modality"] for r in snap.rows])
    for m in set(mods):
        mean, cov = mean_cov(snap.vectors[mods == m].astype(np.float64))
        w = (mods == m).sum() / ((mods == m).sum() + PRIOR_ROWS)
        mean, cov = w * mean + (1 - w) * all_mean, w * cov + (1 - w) * all_cov
        z[mods == m] = (cos[mods == m] - q @ mean) / (np.sqrt(q @ cov @ q) + 1e-4)
    want = np.argsort(-z, kind="stable")[:6]
    rows = jsonl(run("search", str(corpus / "idx"), "a handwritten seven", "--k", "6", "--format", "jsonl"))
    assert [r["path"] for r in rows] == [snap.rows[i]["path"] for i in want]
    np.testing.assert_allclose([r["rank_score"] for r in rows], z[want], atol=1e-4)
    np.testing.assert_allclose([r["score"] for r in rows], cos[want], atol=1e-5)
    assert {r["mix"] for r in rows} == {"calibrated"} and len({r["modality"] for r in rows}) > 1


def test_interleave_takes_rank_one_of_every_modality_first(corpus):
    rows = jsonl(run("search", str(corpus / "idx"), "a dog", "--k", "8", "--format", "jsonl", "--mix", "interleave"))
    assert sorted(r["modality"] for r in rows[:4]) == sorted(MODALITIES)


def test_table_format(corpus):
    out = run("search", str(corpus / "idx"), "a dog", "--k", "3", "--format", "table", "--mix", "raw").stdout
    assert out.splitlines()[0].split() == ["rank", "score", "modality", "path"]
    mixed = run("search", str(corpus / "idx"), "a dog", "--k", "3", "--format", "table")
    assert mixed.stdout.splitlines()[0].split() == ["rank", "score", "z", "modality", "path"]
    assert "z: what --mix calibrated ranked by" in mixed.stderr
    out = out.splitlines()
    assert [line.split()[0] for line in out[2:5]] == ["1", "2", "3"]


def test_bad_queries_and_options_are_typed_errors(corpus):
    bad = corpus / "broken.png"
    bad.write_bytes(b"not a png at all")
    res = run("search", str(corpus / "idx"), f"dog + {bad}", ok=False)
    assert isinstance(res.exception, QueryError) and str(bad) in str(res.exception)
    res = run("search", str(corpus / "idx"), "missing.wav", ok=False)
    assert isinstance(res.exception, QueryError) and "missing.wav: no such file" in str(res.exception)
    res = run("search", str(corpus / "idx"), "dog", "--modality", "smell", ok=False)
    assert isinstance(res.exception, RegistryError)


def test_approximate_backend_is_cached_per_generation(corpus, model, tmp_path):
    idx = tmp_path / "idx"
    files = corpus / "files"
    opts = BuildOptions(batch_size=8, workers=1, shard_size=50, progress=False)
    build_index(idx, [files / "img0.png", files / "img1.png", files / "caption0.txt"], model=model, options=opts)
    args = ["search", str(idx), "a dog", "--backend", "hnsw", "--format", "jsonl", "--quiet"]
    first = jsonl(run(*args))
    cached = sorted((idx / "ann").iterdir())
    assert len(cached) == 1 and "-g1-" in cached[0].name
    assert jsonl(run(*args)) == first and sorted((idx / "ann").iterdir()) == cached
    build_index(idx, [files], model=model, options=opts)  # the index changes: a new generation
    rows = jsonl(run(*args, "--k", "50"))
    (now,) = sorted((idx / "ann").iterdir())
    assert now != cached[0] and len(rows) == len(IndexStore.open(idx).snapshot())
    exact = jsonl(run("search", str(idx), "a dog", "--backend", "exact", "--format", "jsonl", "--k", "50"))
    # the same ranking; files of identical content embedded in different batches score equal to
    # float rounding, and such near-ties may come back in either order
    assert sorted(r["path"] for r in rows) == sorted(r["path"] for r in exact)
    exact_score = {r["path"]: r["score"] for r in exact}
    np.testing.assert_allclose([r["score"] for r in rows], [r["score"] for r in exact], atol=1e-5)
    np.testing.assert_allclose([exact_score[r["path"]] for r in rows], [r["score"] for r in rows], atol=1e-5)


def test_search_reads_embed_output_folders(corpus, model):
    out = corpus / "embedded"
    run("embed", str(corpus / "files"), "--out", str(out), "--quiet")
    index = EmbeddingIndex.open(out)
    hits = index.search(embed_query(model, "a dog"), 3, "text")
    rows = jsonl(run("search", str(out), "a dog", "--k", "3", "--modality", "text", "--format", "jsonl"))
    assert [r["path"] for r in rows] == [h.meta["path"] for h in hits] and len(rows) == 3


def test_classify(corpus, model):
    from binder.embed.classify import label_embeddings

    bad = corpus / "cls" / "bad.png"
    bad.parent.mkdir()
    bad.write_bytes(b"\x89PNG broken")
    good = [corpus / "files" / "img0.png", corpus / "files" / "caption1.txt"]
    labels = ["seven", "three", "dog"]
    res = run("classify", *map(str, good), str(bad.parent), "--labels", ",".join(labels),
              "--template", "a photo of {}", "--template", "the digit {}", "--format", "jsonl", "--quiet", ok=False)
    assert res.exit_code == 1 and str(bad) in res.stderr
    rows = jsonl(res)
    assert [r["path"] for r in rows] == [str(p) for p in good]
    classes = label_embeddings(model, labels, ["a photo of {}", "the digit {}"])
    for row, path in zip(rows, good):
        name = "image" if path.suffix == ".png" else "text"
        scores = model.embed_files(name, [path]).numpy()[0] @ classes.T
        assert row["label"] == labels[int(np.argmax(scores))]
        assert row["score"] == pytest.approx(float(scores.max()), abs=1e-5)
        assert sum(t["prob"] for t in row["top"]) == pytest.approx(1.0, abs=1e-4)
    res = run("classify", str(good[0]), "--labels", "a,a", ok=False)
    assert isinstance(res.exception, QueryError)


def test_library_index_keeps_its_api(model):
    rng = np.random.default_rng(3)
    emb = rng.standard_normal((40, 8)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    meta = [{"path": f"f{i}", "modality": "audio" if i % 4 else "image"} for i in range(40)]
    index = EmbeddingIndex(emb, meta)
    q = rng.standard_normal(8).astype(np.float32)
    hits = index.search(q, 15, "image")
    allowed = np.array([m["modality"] == "image" for m in meta])
    ((scores, ids),) = brute_force(emb, q[None], 15, allowed)
    assert [h.row for h in hits] == ids.tolist() and len(hits) == 10
    np.testing.assert_allclose([h.score for h in hits], scores, atol=1e-6)
    with pytest.raises(RegistryError):
        index.search(q, 3, "smell")



def test_classify_prints_no_torch_warning(corpus):
    """torch warns once per process, so a fresh process is the only honest check."""
    import subprocess
    import sys

    cli = Path(__file__).resolve().parents[2] / "cli.py"
    depth = sorted((corpus / "files").glob("*.depth.*"))[0]  # a trained head: its logit scale has a gradient
    res = subprocess.run([sys.executable, str(cli), "classify", str(depth), "--labels", "seven,three", "--quiet"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "Warning" not in res.stderr and "seven" in res.stdout
