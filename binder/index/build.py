"""Build and update an index: embed only new or changed files, remove rows, compact.

A build is resumable by construction: every ``shard_size`` embedded rows are committed as one
shard, and a re-run skips every file whose committed row has the same size and mtime. A crash or
Ctrl-C therefore loses at most the rows of the shard being filled. ``on_done(path)`` is called
only for rows a commit made durable.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from binder.embed.pipeline import EmbedOptions, Failure, Item, discover, embed_items
from binder.embed.shards import HASH_CHUNK, MANIFEST, file_hash
from binder.errors import IndexStoreError
from binder.index.maintenance import compact_index, remove_from_index
from binder.index.store import read_index_manifest
from binder.index.writer import IndexWriter
from binder.model_choice import UNTRAINED
from binder.vectors import UNIT_TOLERANCE

__all__ = ["HASH_CHUNK", "BuildOptions", "BuildReport", "build_index", "compact_index", "file_hash",
           "remove_from_index"]


@dataclass(frozen=True)
class BuildOptions(EmbedOptions):
    """How to embed, how big each committed shard is, how long to wait for the writer lock, where
    the model runs (a ``binder.device`` spec) and at which precision (``binder.precision``)."""

    wait_lock: float = 0.0
    device: str = "cpu"
    precision: str = "auto"


@dataclass
class BuildReport:
    """What a build/add did. ``failures`` are files that were skipped, with the reason."""

    added: int = 0
    replaced: int = 0
    unchanged: int = 0
    failures: list[Failure] = field(default_factory=list)
    generation: int = 0
    count: int = 0
    roots: list[str] = field(default_factory=list)  # real paths of the folders and files the build was given


@dataclass(frozen=True)
class Pending:
    """A file to embed, with the state (size, mtime) it had when the build looked at it."""

    item: Item
    size: int
    mtime_ns: int
    hash: str | None = None  # known already when the file changed and had to be hashed


def resolve_model(folder: str | os.PathLike, model_dir: str | os.PathLike | None) -> str | None:
    """The model folder to use for ``folder``: the requested one (absolute), else the index's.

    Raises IndexStoreError if the index exists and was built with another model.
    """
    from binder.hub import resolve_model as resolve_named

    requested = None if model_dir is None else os.path.realpath(resolve_named(model_dir))
    if not (Path(folder) / MANIFEST).exists():
        return requested
    recorded = read_index_manifest(folder).get("model")
    if model_dir is not None and requested != recorded:
        raise IndexStoreError(f"{folder}: index was built with model {recorded or UNTRAINED}; "
                              f"cannot add embeddings of model {requested} (build a new index)")
    return recorded


def load_model_for(model_dir: str | None, modalities: Iterable[str] | None = None, device: str = "cpu",
                   precision: str = "auto"):
    """The model in ``model_dir`` (only the parts encoding ``modalities``, when given), else the untrained
    default, on ``device`` at ``precision`` (``binder.precision``)."""
    from binder.device import placement
    from binder.model import BindingModel
    from binder.model_choice import ready_for_inference

    where, precision = placement(device, precision)
    model = BindingModel.default() if not model_dir else BindingModel.load(model_dir, modalities)
    return ready_for_inference(model, where, precision)


def plan(writer: IndexWriter, items: list[Item], report: BuildReport) -> list[Pending]:
    """The items whose file is new or changed (size/mtime differ and so does the content hash).

    The build's roots (``report.roots``) are recorded in the manifest here, committed with the
    first shard: a server hands out only files inside them.
    """
    writer.add_roots(report.roots)
    todo, seen = [], set()
    for item in items:
        path = os.path.abspath(item.path)
        if path in seen:
            continue
        seen.add(path)
        try:
            st = os.stat(path)
        except OSError as exc:
            report.failures.append(Failure(path, f"cannot stat: {exc.strerror or exc}"))
            continue
        ref = writer.live.get(path)
        digest = None
        if ref is not None and (ref.size, ref.mtime_ns) == (st.st_size, st.st_mtime_ns):
            report.unchanged += 1
            continue
        if ref is not None:
            digest = _hash_or_none(path)
            if digest == ref.hash:
                report.unchanged += 1
                continue
        todo.append(Pending(Item(path, item.modality), st.st_size, st.st_mtime_ns, digest))
    return todo


def _hash_or_none(path: str) -> str | None:
    try:
        return file_hash(path)
    except OSError:
        return None


def row_metadata(p: Pending, input_shape: tuple[int, ...]) -> dict[str, Any]:
    """The metadata row stored for one embedded file."""
    return {"path": p.item.path, "modality": p.item.modality, "size": p.size, "mtime_ns": p.mtime_ns,
            "mtime": p.mtime_ns / 1e9, "hash": p.hash or file_hash(p.item.path), "shape": list(input_shape)}


def start_build(folder: str | os.PathLike, paths: Iterable[str | os.PathLike], model_dir: str | os.PathLike | None,
                opts: BuildOptions, create: bool) -> tuple[str | None, list[Item], BuildReport]:
    """What every build starts with: the model folder to use, the files found, a report holding
    the files that could not be listed (and symbolic links that lead out of ``paths``: ``discover``);
    ``add`` (``create=False``) needs an existing index."""
    paths = [os.fspath(p) for p in paths]
    model_id = resolve_model(folder, model_dir)
    if not create:
        read_index_manifest(folder)
    items, failures = discover(paths, opts.modality)
    return model_id, items, BuildReport(failures=list(failures), roots=real_roots(paths))


def real_roots(paths: Iterable[str | os.PathLike]) -> list[str]:
    """The real paths (links resolved) of the folders and files a build was given that exist."""
    return sorted({os.path.realpath(p) for p in paths if os.path.exists(p)})


def build_index(folder: str | os.PathLike, paths: Iterable[str | os.PathLike], model=None,
                model_dir: str | os.PathLike | None = None, options: BuildOptions | None = None,
                on_done: Callable[[str], None] | None = None, create: bool = True) -> BuildReport:
    """Create or update the index in ``folder`` with the files under ``paths``.

    New and changed files are embedded; unchanged ones are skipped (that is also how an
    interrupted build resumes). ``model`` is an already loaded model whose folder is ``model_dir``
    (``None``: the untrained default); without ``model`` it is loaded from the resolved folder.
    ``create=False`` requires the index to exist (``anybind index add``). An existing index is
    opened (and checked: a damaged one is an IndexDamageError) before the model is loaded.
    """
    opts = options or BuildOptions()
    model_id, items, report = start_build(folder, paths, model_dir, opts, create)
    if model is None and not (Path(folder) / MANIFEST).exists():
        model = load_model_for(model_id, {i.modality for i in items}, opts.device,
                               opts.precision)  # a new index takes its dim
    dim = None if model is None else model.embed_dim
    with IndexWriter(folder, dim, model_id, create, opts.shard_size, opts.wait_lock) as writer:
        if model is None:
            model = load_model_for(model_id, {i.modality for i in items}, opts.device, opts.precision)
        check_dim(writer, model.embed_dim)
        todo = plan(writer, items, report)
        _embed_into(writer, model, todo, opts, report, on_done)
        if writer.manifest["generation"] == 0:
            writer.commit()  # an empty index is still an index
        report.generation, report.count = writer.manifest["generation"], writer.manifest["count"]
    report.failures.sort(key=lambda f: f.path)
    return report


def check_dim(writer: IndexWriter, dim: int) -> None:
    """Refuse to add ``dim``-d vectors to an index of another dimension."""
    if writer.manifest["dim"] != dim:
        raise IndexStoreError(f"{writer.folder}: index holds {writer.manifest['dim']}-d vectors; "
                              f"this model makes {dim}-d ones")


def _embed_into(writer: IndexWriter, model, todo: list[Pending], opts: BuildOptions,
                report: BuildReport, on_done: Callable[[str], None] | None) -> None:
    by_path = {p.item.path: p for p in todo}
    replacing = {p.item.path for p in todo if p.item.path in writer.live}
    batches = embed_items(model, [p.item for p in todo], opts.batch_size, opts.workers,
                          progress=opts.progress, failures=report.failures)
    for batch in batches:
        meta, keep = [], []
        for i, item in enumerate(batch.items):
            bad = embedding_problem(batch.embeddings[i])
            if bad:
                report.failures.append(Failure(item.path, bad))
                continue
            try:
                meta.append(row_metadata(by_path[item.path], batch.input_shape))
                keep.append(i)
            except OSError as exc:
                report.failures.append(Failure(item.path, f"cannot read: {exc.strerror or exc}"))
        count_committed(writer.append(batch.embeddings[keep], meta), replacing, report, on_done)
    count_committed(writer.flush(), replacing, report, on_done)


def embedding_problem(vector: Any) -> str | None:
    """Why one embedding cannot go into an index (not finite, not unit-norm), or None.

    Such a row would make every reader refuse the shard, so the file is reported as failed instead.
    """
    vec = np.asarray(vector, dtype=np.float32).reshape(-1)
    if not np.isfinite(vec).all():
        return "its embedding is not finite"
    norm = float(np.linalg.norm(vec.astype(np.float64)))
    return None if abs(norm - 1.0) <= UNIT_TOLERANCE else f"its embedding is not unit-norm (norm {norm:.4g})"


def count_committed(rows: list[dict[str, Any]], replacing: set[str], report: BuildReport,
          on_done: Callable[[str], None] | None) -> None:
    """Count rows a commit made durable and report each of them."""
    for row in rows:
        if row["path"] in replacing:
            report.replaced += 1
        else:
            report.added += 1
        if on_done is not None:
            on_done(row["path"])
