"""Paired-data manifests and the tensors training needs from them.

A manifest is JSONL, one pair per line: ``{"modality": "audio", "path": ..., "image": ...,
"label": ..., "text": ...}``. Relative paths resolve against a root folder (the recipe's
``root``, else the manifest's own folder). Inputs are preprocessed once, in parallel, with bad
files reported and skipped; anchor targets are computed once and cached on disk, keyed by the
anchor's weights and the target list.
"""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast, overload

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from binder.anchor import Anchor
from binder.embed.workers import decode_pool
from binder.errors import AnybindError, ModalityError
from binder.io import atomic_path
from modalities.base import Modality


@dataclass(frozen=True)
class PairRecord:
    modality: str
    path: str
    image: str | None = None
    label: Any = None
    text: str | None = None
    # the manifest row's other columns (speaker, condition, ...), for per-group reports; not part of equality
    columns: dict[str, Any] = field(default_factory=dict, compare=False, hash=False, repr=False)


RECORD_KEYS = ("modality", "path", "image", "label", "text")  # a manifest row's own keys; the rest are columns


def read_pairs(path: str | os.PathLike, root: str | os.PathLike | None = None) -> list[PairRecord]:
    """Records of a JSONL manifest with absolute paths; a malformed line is an error naming its number."""
    path = Path(path)
    if not path.is_file():
        raise AnybindError(f"{path}: manifest not found")
    base = Path(root) if root is not None else path.parent
    records = []
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                rec = PairRecord(row["modality"], _resolve(base, row["path"]), _resolve(base, row.get("image")),
                                 row.get("label"), row.get("text"),
                                 {k: v for k, v in row.items() if k not in RECORD_KEYS})
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise AnybindError(f"{path}:{n}: bad manifest line ({exc})") from None
            records.append(rec)
    if not records:
        raise AnybindError(f"{path}: manifest has no records")
    return records


def under_root(root: str | os.PathLike | None, path: str) -> str:
    """A recipe's manifest path: relative to the recipe's ``root`` when one is set, like the paths inside."""
    return path if root is None or os.path.isabs(path) else os.path.join(root, path)


@overload
def _resolve(base: Path, p: str) -> str: ...
@overload
def _resolve(base: Path, p: None) -> None: ...
def _resolve(base: Path, p: str | None) -> str | None:
    if p is None:
        return None
    return str(Path(p) if os.path.isabs(p) else base / p)


@dataclass
class PreparedSet:
    """Preprocessed inputs (N, *input_shape) row-aligned with the records that survived."""

    inputs: torch.Tensor
    records: list[PairRecord]
    failures: list[tuple[str, str]]


def prepare_inputs(modality: Modality, records: list[PairRecord], workers: int = 2,
                   progress: bool = True, transform: Callable[[Any, int, Modality], Any] | None = None) -> PreparedSet:
    """Load + preprocess every record's file once; bad files are skipped and listed.

    ``transform(raw, row, modality)`` changes each decoded item before preprocessing (evaluation
    under a perturbation).
    """
    def one(row: int, rec: PairRecord):
        try:
            if transform is None:
                return modality.prepare(rec.path)
            raw = modality.load_checked(rec.path)
            return modality.prepare_raw(rec.path, _transformed(transform, raw, row, modality, rec.path))
        except ModalityError as exc:
            return exc

    tensors, kept, failures = [], [], []
    with decode_pool(workers) as pool:
        results = pool.map(one, range(len(records)), records)
        for rec, out in tqdm(zip(records, results), total=len(records), disable=not progress,
                             desc=f"preprocess {modality.name}", unit="file", dynamic_ncols=True):
            if isinstance(out, ModalityError):
                failures.append((rec.path, out.reason))
            else:
                tensors.append(out)
                kept.append(rec)
    if not kept:
        named = "; ".join(f"{path}: {reason}" for path, reason in failures[:3])
        more = f"; and {len(failures) - 3} more" if len(failures) > 3 else ""
        raise AnybindError(f"no usable {modality.name} files ({len(failures)} failed): {named}{more}")
    return PreparedSet(modality.collate(tensors), kept, failures)


def _transformed(transform: Callable[[Any, int, Modality], Any], raw: Any, row: int, modality: Modality,
                 path: str) -> Any:
    try:
        with np.errstate(all="ignore"):  # overflow is reported below, naming the file, not as a warning
            out = transform(raw, row, modality)
    except (MemoryError, KeyboardInterrupt):
        raise
    except Exception as exc:  # a perturbation that cannot apply to this item names it
        raise ModalityError(path, f"perturbation failed: {type(exc).__name__}: {exc}") from exc
    values = out[0] if isinstance(out, tuple) else out
    if not np.isfinite(np.asarray(values, dtype=np.float64)).all():
        raise ModalityError(path, "the perturbation made values that are not finite (too strong?)")
    return out


def target_keys(records: list[PairRecord], target: str) -> list[str]:
    """What each record is bound to: its paired image path, or its text."""
    keys = [r.image if target == "image" else r.text for r in records]
    missing = [r.path for r, k in zip(records, keys) if k is None]
    if missing:
        raise AnybindError(f"{len(missing)} records have no {target!r} to bind to, e.g. {missing[0]}")
    return cast("list[str]", keys)  # no None left: checked above


def anchor_fingerprint(anchor: Anchor) -> str:
    """Hash of the anchor's weights: cached targets are reused only for the same anchor."""
    h = hashlib.sha256(anchor.config.model.encode())
    for name, t in sorted(anchor.clip.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def anchor_targets(anchor: Anchor, keys: list[str], target: str, cache_dir: str | os.PathLike | None = None,
                   batch_size: int = 256, image_modality: Modality | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(unique target embeddings (U, D), index of each record's target (N,)), cached on disk."""
    unique = sorted(set(keys))
    index = {k: i for i, k in enumerate(unique)}
    ids = torch.tensor([index[k] for k in keys], dtype=torch.long)
    digest = hashlib.sha256(("\n".join(unique) + target + anchor_fingerprint(anchor)).encode()).hexdigest()[:20]
    cache = Path(cache_dir) / f"targets-{target}-{digest}.safetensors" if cache_dir else None
    if cache is not None and cache.is_file():
        return load_file(str(cache))["targets"], ids
    embs = [_encode_targets(anchor, unique[i:i + batch_size], target, image_modality)
            for i in range(0, len(unique), batch_size)]
    targets = torch.cat(embs)
    if cache is not None:
        with atomic_path(cache, durable=False) as tmp:  # a cache: recomputed if lost
            save_file({"targets": targets.contiguous()}, str(tmp))
    return targets, ids


def _encode_targets(anchor: Anchor, keys: list[str], target: str, image_modality: Modality | None) -> torch.Tensor:
    if target == "text":
        return anchor.encode_text(anchor.tokenize(keys))
    if image_modality is None:
        raise ValueError("image targets need the image modality for preprocessing")
    return anchor.encode_image(image_modality.collate([image_modality.prepare(k) for k in keys]))
