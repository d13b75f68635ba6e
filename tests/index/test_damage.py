"""No damaged index is read as whole: a matrix of damages, each one refused by readers and
writers with a typed error naming the damaged file, reported by `index verify`, dropped by
`index repair`, after which `index add` over the same folder restores a fresh build."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from index_helpers import QUIET, assert_same_index, make_corpus, state

import binder.cli.common
import binder.index.build
from binder.cli import main
from binder.errors import IndexDamageError, IndexStoreError
from binder.index.build import build_index
from binder.index.integrity import MAX_MANIFEST_BYTES
from binder.index.store import IndexStore
from binder.index.verify import repair_index, verify_index

ROOT = Path(__file__).resolve().parents[2]
SHARD = "000001"  # the middle one of three shards (3 + 3 + 2 rows)


@pytest.fixture(scope="module")
def base(tmp_path_factory, model) -> dict:
    """A small whole index (8 files, shards of 3 rows) and its state, built once."""
    root = tmp_path_factory.mktemp("damage")
    make_corpus(root / "src", per_modality=2)
    build_index(root / "idx", [root / "src"], model=model, options=QUIET)
    return {"root": root, "state": state(root / "idx")}


@pytest.fixture
def idx(base, tmp_path) -> Path:
    """A private copy of the whole index to damage."""
    shutil.copytree(base["root"] / "idx", tmp_path / "idx", symlinks=True)
    return tmp_path / "idx"


@pytest.fixture(autouse=True)
def shared_model(monkeypatch, model):
    """The CLI's model loaders hand out the session's model and count how often they are asked."""
    calls: list[str | None] = []

    def load(path=None, *_, **__):  # both loaders' signatures: (path, quiet|modalities, ...)
        calls.append(path)
        return model

    monkeypatch.setattr(binder.cli.common, "load_model", load)
    monkeypatch.setattr(binder.index.build, "load_model_for", load)
    return calls


def cli(monkeypatch, capsys, *args) -> tuple[int, str, str]:
    """Run the real entry point (``main``) in this process: (exit code, stdout, stderr).
    An exception escaping ``main`` is what a user would see as a traceback."""
    monkeypatch.setattr(sys, "argv", ["anybind", *map(str, args)])
    code = 0
    try:
        main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except Exception as exc:  # noqa: BLE001 - reported as the traceback the user would get
        out, err = capsys.readouterr()
        return 99, out, err + f"Traceback: {type(exc).__name__}: {exc}"
    out, err = capsys.readouterr()
    return code, out, err


# -- the damages -----------------------------------------------------------------------------------


def _npy(idx: Path, sid: str = SHARD) -> Path:
    return idx / f"embeddings-{sid}.npy"


def _jsonl(idx: Path, sid: str = SHARD) -> Path:
    return idx / f"metadata-{sid}.jsonl"


def _vectors(idx: Path, edit: Callable[[np.ndarray], np.ndarray]) -> None:
    np.save(_npy(idx), edit(np.load(_npy(idx))))


def _set_row(value: float, row: int) -> Callable[[np.ndarray], np.ndarray]:
    def edit(v: np.ndarray) -> np.ndarray:
        v[row] = value
        return v
    return edit


def _lines(idx: Path, edit: Callable[[list[str]], list[str]]) -> None:
    lines = _jsonl(idx).read_text().splitlines()
    _jsonl(idx).write_text("".join(line + "\n" for line in edit(lines)))


def _manifest(idx: Path, edit: Callable[[dict], object]) -> None:
    m = json.loads((idx / "manifest.json").read_text())
    out = edit(m)
    (idx / "manifest.json").write_text(json.dumps(m if out is None else out))


def _swap(lines: list[str]) -> list[str]:
    return [lines[1], lines[0], *lines[2:]]


def _truncate(idx: Path) -> None:
    data = _npy(idx).read_bytes()
    _npy(idx).write_bytes(data[: len(data) // 2])


def _flip_low_bit(idx: Path) -> None:
    data = bytearray(_npy(idx).read_bytes())
    data[-4] ^= 1  # the least significant byte of the last float: finite, still unit-norm
    _npy(idx).write_bytes(bytes(data))


def _outside_copy(idx: Path, name: str) -> Path:
    out = idx.parent / "outside"
    out.mkdir(exist_ok=True)
    shutil.copy(idx / name, out / name)
    return out / name


def _symlink_out(idx: Path) -> None:
    target = _outside_copy(idx, _npy(idx).name)
    _npy(idx).unlink()
    _npy(idx).symlink_to(target)


def _absolute(idx: Path) -> None:
    target = _outside_copy(idx, _npy(idx).name)
    _manifest(idx, lambda m: m["shards"][1].__setitem__("embeddings", str(target)))


def _dotdot(idx: Path) -> None:
    _outside_copy(idx, _npy(idx).name)
    _manifest(idx, lambda m: m["shards"][1].__setitem__("embeddings", f"../outside/{_npy(idx).name}"))


def _huge_manifest(idx: Path) -> None:
    with open(idx / "manifest.json", "r+b") as fh:
        fh.truncate(MAX_MANIFEST_BYTES + 1)


def _same_path_twice(idx: Path) -> None:
    """A path live in two shards, with the manifest's sizes and hashes updated to match (the
    kind of damage a buggy writer would commit): only the cross-shard check can tell."""
    from binder.embed.shards import bytes_hash

    first = json.loads(_jsonl(idx, "000000").read_text().splitlines()[0])
    _lines(idx, lambda lines: [json.dumps({**json.loads(lines[0]), "path": first["path"]}), *lines[1:]])
    data = _jsonl(idx).read_bytes()
    _manifest(idx, lambda m: (m["shards"][1]["bytes"].__setitem__("metadata", len(data)),
                              m["shards"][1]["hash"].__setitem__("metadata", bytes_hash(data)))[0])


NPY, JSONL, MANIFEST = f"embeddings-{SHARD}.npy", f"metadata-{SHARD}.jsonl", "manifest.json"

# name: (damage, the file the error names, what it says)
CASES: dict[str, tuple[Callable[[Path], None], str, str]] = {
    "nan-rows": (lambda i: _vectors(i, _set_row(np.nan, 1)), NPY, "1 rows are not finite"),
    "inf-rows": (lambda i: _vectors(i, _set_row(np.inf, 0)), NPY, "not finite"),
    "non-unit-rows": (lambda i: _vectors(i, lambda v: v * 0.5), NPY, "3 rows are not unit-norm"),
    "truncated-npy": (_truncate, NPY, "the manifest records"),
    "npy-float64": (lambda i: _vectors(i, lambda v: v.astype(np.float64)), NPY, "dtype float64"),
    "npy-1d": (lambda i: _vectors(i, lambda v: v.reshape(-1)), NPY, "shape"),
    "npy-wrong-dim": (lambda i: _vectors(i, lambda v: v[:, :32] / np.linalg.norm(v[:, :32], axis=1, keepdims=True)),
                      NPY, "not (rows, 64)"),
    "npy-garbage": (lambda i: _npy(i).write_bytes(b"\x93NUMPY garbage"), NPY, "not a readable .npy"),
    "jsonl-line-short": (lambda i: _lines(i, lambda lines: lines[:-1]), JSONL, "2 lines, the manifest records 3"),
    "jsonl-line-long": (lambda i: _lines(i, lambda lines: lines + lines[:1]), JSONL, "4 lines"),
    "jsonl-lines-swapped": (lambda i: _lines(i, _swap), JSONL, "differs from the recorded hash"),
    "jsonl-invalid-json": (lambda i: _lines(i, lambda lines: [lines[0], "{not json", lines[2]]), JSONL, "not JSON"),
    "jsonl-wrong-field": (lambda i: _lines(i, lambda lines: [lines[0].replace('"size": ', '"size": "x", "_": '),
                                                             *lines[1:]]), JSONL, "has no int 'size'"),
    "same-path-twice": (_same_path_twice, JSONL, "is also live in metadata-000000.jsonl"),
    "shard-listed-twice": (lambda i: _manifest(i, lambda m: m["shards"].append(dict(m["shards"][1]))),
                           MANIFEST, "listed twice"),
    "path-absolute": (_absolute, MANIFEST, "is absolute"),
    "path-dotdot": (_dotdot, MANIFEST, "leaves the index folder"),
    "symlink-outside": (_symlink_out, NPY, "outside the index folder"),
    "count-wrong": (lambda i: _manifest(i, lambda m: m.__setitem__("count", m["count"] + 5)), MANIFEST,
                    "count 13, but the shards hold 8"),
    "dead-out-of-range": (lambda i: _manifest(i, lambda m: m["shards"][1].__setitem__("dead", [7])), MANIFEST,
                          "dead rows"),
    "next-shard-reused": (lambda i: _manifest(i, lambda m: m.__setitem__("next_shard", 1)), MANIFEST,
                          "would overwrite shard 000002"),
    "manifest-not-json": (lambda i: (i / "manifest.json").write_text('{"format": "anybind-index", '), MANIFEST,
                          "not JSON"),
    "manifest-a-list": (lambda i: _manifest(i, lambda m: [m]), MANIFEST, "not a JSON object (a list)"),
    "manifest-no-dim": (lambda i: _manifest(i, lambda m: m.pop("dim") and None), MANIFEST, "missing key 'dim'"),
    "manifest-no-shards": (lambda i: _manifest(i, lambda m: m.pop("shards") and None), MANIFEST,
                           "missing key 'shards'"),
    "manifest-no-format": (lambda i: _manifest(i, lambda m: m.pop("format") and None), MANIFEST,
                           "missing key 'format'"),
    "manifest-dim-string": (lambda i: _manifest(i, lambda m: m.__setitem__("dim", "64")), MANIFEST,
                            "'dim' is a string"),
    "entry-no-rows": (lambda i: _manifest(i, lambda m: m["shards"][1].pop("rows") and None), MANIFEST,
                      "missing key 'rows'"),
    "manifest-huge": (_huge_manifest, MANIFEST, "more than the"),
    "npy-deleted": (lambda i: _npy(i).unlink(), NPY, "missing"),
    "jsonl-deleted": (lambda i: _jsonl(i).unlink(), JSONL, "missing"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_damage_is_refused_reported_and_repaired(case, idx, base, monkeypatch, capsys, shared_model):
    damage, damaged_file, what = CASES[case]
    damage(idx)

    # readers: a typed error naming the file and the damage (never the compaction guess)
    with pytest.raises(IndexStoreError) as exc:
        IndexStore.open(idx).snapshot()
    assert f"{idx / damaged_file}: " in str(exc.value) and what in str(exc.value), str(exc.value)
    assert isinstance(exc.value, IndexDamageError) and "compacting" not in str(exc.value)

    # `search` and `add`: one error line, exit 2, no traceback; `add` stops before loading a model
    for args in (["search", idx, "a dog"], ["index", "add", idx, base["root"] / "src", "--quiet"]):
        code, out, err = cli(monkeypatch, capsys, *args)
        assert code == 2 and "Traceback" not in out + err, (args, out, err)
        assert err.strip().splitlines() == [f"anybind: error: {exc.value}"], err
    assert shared_model == []

    _verify_names_and_repair_restores(idx, base, damaged_file, what, monkeypatch, capsys)


def _verify_names_and_repair_restores(idx, base, damaged_file, what, monkeypatch, capsys) -> None:
    """`verify` names the damage; `repair` commits the index without it, lists the files to
    embed again, and the next `add` over the same folder restores a fresh build."""
    code, out, err = cli(monkeypatch, capsys, "index", "verify", idx)
    assert code == 1 and f"{idx / damaged_file}: " in out and what in out, (out, err)
    report = verify_index(idx)
    assert not report.whole and len(out.splitlines()) == len(report.lines())

    code, out, err = cli(monkeypatch, capsys, "index", "repair", idx)
    assert code == 0 and "Traceback" not in err, err
    listed = out.splitlines()
    assert verify_index(idx).whole, verify_index(idx).lines()
    kept = state(idx)
    assert set(listed).isdisjoint(kept) and set(listed) <= set(base["state"])
    assert not (idx / "ann").exists()

    code, out, err = cli(monkeypatch, capsys, "index", "add", idx, base["root"] / "src", "--quiet")
    assert code == 0, err
    assert f"{len(base['state']) - len(kept)} added, 0 replaced, {len(kept)} unchanged" in err, err
    assert set(listed) <= set(base["state"]) - set(kept)  # every listed file came back
    assert_same_index(state(idx), base["state"])
    if (idx.parent / "outside").exists():  # what a damaged manifest pointed at is never touched
        assert (idx.parent / "outside" / NPY).is_file()


def test_a_hash_mismatch_that_keeps_the_shape_is_caught_by_verify(idx, base, monkeypatch, capsys):
    """Bytes flipped inside a vector, which stays finite and unit-norm: readers' cheap checks
    pass (documented: the embeddings hash is checked by verify), `verify` and `repair` see it."""
    _flip_low_bit(idx)
    assert len(IndexStore.open(idx).snapshot()) == len(base["state"])
    _verify_names_and_repair_restores(idx, base, NPY, "differs from the recorded hash", monkeypatch, capsys)


def test_a_whole_index_verifies_and_repair_changes_nothing(idx, base, monkeypatch, capsys):
    code, out, err = cli(monkeypatch, capsys, "index", "verify", idx)
    assert (code, out) == (0, "") and "whole (3 shard(s), 8 rows)" in err
    generation = IndexStore.open(idx).manifest()["generation"]
    report = repair_index(idx)
    assert not report.repaired and report.reembed == [] and report.generation == generation
    assert cli(monkeypatch, capsys, "index", "verify", idx / "nope")[0] == 2  # usage: no such folder
    assert cli(monkeypatch, capsys, "index", "verify")[0] == 2


def test_an_old_index_without_integrity_fields_is_still_read_and_checked(idx, base, monkeypatch, capsys):
    """Indexes written before sizes and hashes were recorded: still readable, still checked for
    everything but the hashes; the next commit's new shard records them."""
    _manifest(idx, lambda m: [(e.pop("bytes"), e.pop("hash")) for e in m["shards"]] and None)
    assert_same_index(state(idx), base["state"])
    assert verify_index(idx).whole
    _lines(idx, _swap)  # undetectable without the hash: rows carry no row number
    assert verify_index(idx).whole
    _lines(idx, _swap)
    _vectors(idx, _set_row(np.nan, 2))
    with pytest.raises(IndexDamageError, match=f"{NPY}: 1 rows are not finite"):
        IndexStore.open(idx).snapshot()


def test_a_shard_dropped_by_a_concurrent_commit_is_retried_not_reported(idx, base):
    """A file missing from a manifest that a writer has since replaced is a race, not damage:
    the snapshot reads the newer manifest and succeeds."""
    store = IndexStore.open(idx)
    now = store.manifest()
    gone = dict(now["shards"][1], id="000007", embeddings="embeddings-000007.npy", metadata="metadata-000007.jsonl")
    stale = [dict(now, generation=now["generation"] - 1, shards=[*now["shards"], gone])]
    real = store.manifest
    store.manifest = lambda: stale.pop() if stale else real()  # type: ignore[method-assign]
    assert len(store.snapshot()) == len(base["state"]) and not stale


def test_a_real_process_prints_one_line_and_no_traceback(idx, base):
    _vectors(idx, _set_row(np.nan, 1))
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    for args in (["search", str(idx), "a dog"], ["index", "add", str(idx), str(base["root"] / "src"), "--quiet"]):
        res = subprocess.run([sys.executable, "cli.py", *args], cwd=ROOT, capture_output=True, text=True,
                             timeout=120, env=env)
        assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
        assert res.stderr.strip().splitlines() == [f"anybind: error: {_npy(idx)}: 1 rows are not finite (rows 1)"]
