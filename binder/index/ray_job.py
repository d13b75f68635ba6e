"""`anybind embed` and `anybind index build/add` as a Ray Data job (``--ray ADDRESS``).

The driver partitions the sorted list of files to embed into shards of ``shard_size`` files.
Each shard's name is a digest of its files (path, size, mtime) and the model, so a re-run makes the
same shards and any shard already on disk is not embedded again: the job is re-runnable per
shard. Ray Data actors (one model each) embed a shard's files and write the shard atomically in
the same format as the single-process build; the driver commits each finished shard to the
manifest as it streams in, so every file reported done is durable. On a cluster with GPUs every
actor holds one GPU and runs its model there at ``auto`` precision; without, one CPU at fp32
(``actor_resources``).
"""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from binder.embed.pipeline import EmbedOptions, Failure, Item, discover, embed_items
from binder.embed.shards import MANIFEST, bytes_hash, file_hash, load_shard, shard_names, write_manifest, write_shard
from binder.errors import AnybindError
from binder.index.build import (
    BuildOptions,
    BuildReport,
    Pending,
    check_dim,
    count_committed,
    embedding_problem,
    load_model_for,
    plan,
    row_metadata,
    start_build,
)
from binder.index.integrity import load_checked_shard
from binder.index.store import read_index_manifest
from binder.index.writer import IndexWriter
from binder.io import atomic_write_bytes
from binder.model_choice import UNTRAINED

INSTALL_HINT = "Ray is not installed: pip install 'anybind[ray]' (ray[data])"


@dataclass(frozen=True)
class ShardTask:
    """One shard of a Ray job: its content-derived id and the files it embeds."""

    shard_id: str
    files: list[Pending]


class ActorPlan(NamedTuple):
    """How a Ray job's actors run: how many at most, what each asks Ray for, where its model runs."""

    actors: int
    options: dict[str, float]  # Ray resources of one actor (``map_batches``' ray_remote_args)
    device: str  # a ``binder.device`` spec


def actor_resources(cluster: Mapping[str, float], requested: int,
                    available: Mapping[str, float] | None = None) -> ActorPlan:
    """The actors of a job of ``requested`` shards on a cluster of ``cluster`` resources
    (``ray.cluster_resources()``; ``available``: ``ray.available_resources()``, else the cluster's).

    With GPUs in the cluster: one GPU per actor (``num_gpus=1``: one model per GPU), at most as many
    actors as GPUs, and device ``cuda`` (Ray sets ``CUDA_VISIBLE_DEVICES`` for each actor, so ``cuda``
    is the actor's own GPU). Without: one CPU per actor, at most as many as the free CPUs, device ``cpu``.
    Never more actors than shards, never fewer than one.
    """
    gpus = int(cluster.get("GPU", 0))
    if gpus >= 1:
        return ActorPlan(max(1, min(requested, gpus)), {"num_gpus": 1}, "cuda")
    cpus = int((cluster if available is None else available).get("CPU", 1))
    return ActorPlan(max(1, min(requested, cpus)), {"num_cpus": 1}, "cpu")


def require_ray():
    """The ``ray`` module, or an AnybindError saying what to install."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise AnybindError(INSTALL_HINT) from None
    return ray


def connect(address: str):
    """Join Ray at ``address`` ('local': start one here with this machine's CPUs); reuse a running one."""
    ray = require_ray()
    if not ray.is_initialized():
        if address == "local":
            ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
        else:
            ray.init(address=address, log_to_driver=False)
    return ray


def plan_shards(pending: list[Pending], shard_size: int, model_id: str | None) -> list[ShardTask]:
    """Deterministic partition of the files, sorted by path, into content-named shards."""
    ordered = sorted(pending, key=lambda p: p.item.path)
    tasks = []
    for s in range(0, len(ordered), shard_size):
        files = ordered[s:s + shard_size]
        key = json.dumps([model_id, [(p.item.path, p.item.modality, p.size, p.mtime_ns) for p in files]])
        tasks.append(ShardTask("r" + hashlib.blake2b(key.encode(), digest_size=12).hexdigest(), files))
    return tasks


def _failures_name(shard_id: str) -> str:
    return f"failures-{shard_id}.json"


class ShardEmbedder:
    """Ray Data actor: loads the model once, then embeds and writes whole shards.

    The model runs on ``device`` (``actor_resources``) at the precision ``auto`` gives there: half
    precision on a GPU (``binder.device.resolve_precision``), fp32 on the CPU."""

    def __init__(self, folder: str, model_dir: str | None, batch_size: int, workers: int, device: str = "cpu"):
        self.folder, self.batch_size, self.workers = Path(folder), batch_size, workers
        self.model = load_model_for(model_dir, device=device, precision="auto")

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        ids, failures = [], []
        for shard_id, files_json in zip(batch["shard_id"], batch["files"]):
            files = [Pending(Item(f["path"], f["modality"]), f["size"], f["mtime_ns"], f["hash"])
                     for f in json.loads(files_json)]
            failures.append(json.dumps(self.embed_shard(str(shard_id), files)))
            ids.append(str(shard_id))
        return {"shard_id": np.array(ids), "failures": np.array(failures)}

    def embed_shard(self, shard_id: str, files: list[Pending]) -> list[list[str]]:
        """Write shard ``shard_id`` unless it is already complete; return its failures."""
        emb_name, meta_name = shard_names(shard_id)
        fail_path = self.folder / _failures_name(shard_id)
        if (self.folder / meta_name).exists() and fail_path.exists():
            return json.loads(fail_path.read_text())
        by_path = {p.item.path: p for p in files}
        failed: list[Failure] = []
        vecs, meta = [], []
        for b in embed_items(self.model, [p.item for p in files], self.batch_size, self.workers,
                             progress=False, failures=failed):
            for i, item in enumerate(b.items):
                bad = embedding_problem(b.embeddings[i])
                if bad:
                    failed.append(Failure(item.path, bad))
                    continue
                try:
                    meta.append(row_metadata(by_path[item.path], b.input_shape))
                    vecs.append(b.embeddings[i])
                except OSError as exc:
                    failed.append(Failure(item.path, f"cannot read: {exc.strerror or exc}"))
        out = [[f.path, f.reason] for f in failed]
        data = json.dumps(out).encode()  # written before the metadata file, which marks completion
        atomic_write_bytes(fail_path, data)
        dim = self.model.embed_dim
        write_shard(self.folder, shard_id, np.stack(vecs) if vecs else np.zeros((0, dim), np.float32), meta)
        return out


def run_shards(folder: str | os.PathLike, tasks: list[ShardTask], model_dir: str | None,
               opts: EmbedOptions) -> Iterator[tuple[str, list[Failure]]]:
    """Embed ``tasks`` with Ray Data; yields (shard_id, failures) as each shard is on disk.

    The actors take the cluster's GPUs when it has any, else its CPUs (``actor_resources``)."""
    if not tasks:
        return
    ray = require_ray()
    rows = [{"shard_id": t.shard_id, "files": json.dumps([{**asdict(p.item), "size": p.size, "mtime_ns": p.mtime_ns,
                                                           "hash": p.hash} for p in t.files])} for t in tasks]
    ray.data.DataContext.get_current().enable_progress_bars = opts.progress
    actors = actor_resources(ray.cluster_resources(), len(tasks), ray.available_resources())
    ds = ray.data.from_items(rows).map_batches(
        ShardEmbedder, batch_size=1, concurrency=(1, actors.actors), **actors.options,
        fn_constructor_kwargs={"folder": str(Path(folder).resolve()), "model_dir": model_dir,
                               "batch_size": opts.batch_size, "workers": opts.workers, "device": actors.device})
    for row in ds.iter_rows():
        yield str(row["shard_id"]), [Failure(p, r) for p, r in json.loads(row["failures"])]


def build_index_ray(folder: str | os.PathLike, paths: Iterable[str | os.PathLike], address: str,
                    model_dir: str | os.PathLike | None = None, options: BuildOptions | None = None,
                    on_done: Callable[[str], None] | None = None, create: bool = True) -> BuildReport:
    """``build_index`` as a Ray Data job: same rows, same shard format, same manifest commits."""
    opts = options or BuildOptions()
    model_id, items, report = start_build(folder, paths, model_dir, opts, create)
    dim = _dim_of(folder, model_id)
    with IndexWriter(folder, dim, model_id, create, opts.shard_size, opts.wait_lock) as writer:
        connect(address)  # after the writer has checked the index: a damaged one fails fast
        check_dim(writer, dim)
        todo = plan(writer, items, report)
        replacing = {p.item.path for p in todo if p.item.path in writer.live}
        for shard_id, failed in run_shards(folder, plan_shards(todo, opts.shard_size, model_id), model_id, opts):
            report.failures.extend(failed)
            _commit_shard(writer, shard_id, replacing, report, on_done)
        if writer.manifest["generation"] == 0:
            writer.commit()
        report.generation, report.count = writer.manifest["generation"], writer.manifest["count"]
    report.failures.sort(key=lambda f: f.path)
    return report


def _dim_of(folder: str | os.PathLike, model_id: str | None) -> int:
    """The index's dim, or (for a new index) the model's, loading it in the driver once."""
    if (Path(folder) / MANIFEST).exists():
        return int(read_index_manifest(folder)["dim"])
    return load_model_for(model_id).embed_dim


def _commit_shard(writer: IndexWriter, shard_id: str, replacing: set[str], report: BuildReport,
                  on_done: Callable[[str], None] | None) -> None:
    entry, meta = _written_shard(writer.folder, shard_id, int(writer.manifest["dim"]))
    writer.add_shard(shard_id, entry, meta)
    (writer.folder / _failures_name(shard_id)).unlink(missing_ok=True)
    count_committed(meta, replacing, report, on_done)


def _written_shard(folder: str | os.PathLike, shard_id: str,
                   dim: int | None = None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The manifest entry (sizes and hashes of the files as they are on disk) and metadata of a
    shard a task wrote; with ``dim`` (an index) it is checked as a reader would check it."""
    emb_name, meta_name = shard_names(shard_id)
    data = (Path(folder) / meta_name).read_bytes()
    rows = data.count(b"\n") + (0 if not data or data.endswith(b"\n") else 1)
    entry = {"embeddings": emb_name, "metadata": meta_name, "rows": rows,
             "bytes": {"embeddings": (Path(folder) / emb_name).stat().st_size, "metadata": len(data)},
             "hash": {"embeddings": file_hash(Path(folder) / emb_name), "metadata": bytes_hash(data)}}
    if dim is None:
        return entry, load_shard(folder, entry)[1]
    return entry, load_checked_shard(Path(folder), {**entry, "id": shard_id, "dead": []}, dim)[1]


def embed_ray(paths: Iterable[str | os.PathLike], out_dir: str | os.PathLike, address: str,
              model_dir: str | None = None, options: EmbedOptions | None = None) -> tuple[int, list[Failure]]:
    """``anybind embed --ray``: write the shards of ``paths`` into ``out_dir`` and a manifest listing
    them in plan order. Returns (rows written, failures)."""
    opts = options or EmbedOptions()
    model_dir = model_dir and os.path.realpath(model_dir)
    connect(address)
    items, failures = discover(paths, opts.modality)
    pending = [_pending(i) for i in items]
    failures += [Failure(i.path, "cannot stat") for i, p in zip(items, pending) if p is None]
    tasks = plan_shards([p for p in pending if p is not None], opts.shard_size, model_dir)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    for _, failed in run_shards(out_dir, tasks, model_dir, opts):
        failures.extend(failed)
    shards = []
    for t in tasks:
        shards.append(_written_shard(out_dir, t.shard_id)[0])
        (Path(out_dir) / _failures_name(t.shard_id)).unlink(missing_ok=True)
    dim = len(load_shard(out_dir, shards[0])[0][0]) if shards and shards[0]["rows"] else None
    if dim is None:
        dim = load_model_for(model_dir).embed_dim
    write_manifest(out_dir, dim, shards, {"model": model_dir or UNTRAINED})
    return sum(s["rows"] for s in shards), sorted(failures, key=lambda f: f.path)


def _pending(item: Item) -> Pending | None:
    try:
        st = os.stat(item.path)
    except OSError:
        return None
    return Pending(Item(os.path.abspath(item.path), item.modality), st.st_size, st.st_mtime_ns)

