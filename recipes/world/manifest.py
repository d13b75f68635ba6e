"""Paired-data manifests: JSONL files, one object per line.

``{"modality": "audio", "path": "audio/00042.wav", "image": "images/00007.png", "label": 7,
"text": "the digit seven", "split": "train"}`` with paths relative to the world folder
(``folder/manifests/{name}.{split}.jsonl``, so the folder is the manifest's grandparent; ``split``
is train, val, test or the held-out ``hard`` split, whose rows add a ``condition``).
``image`` is null for rows with no paired image (BasicMotions); ``label`` is an int digit or an
activity name.
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from binder.io import atomic_path

MANIFEST_DIR = "manifests"
KEYS = ("modality", "path", "image", "label", "text", "split")


def manifest_path(folder: str | os.PathLike, name: str, split: str) -> Path:
    """``folder/manifests/{name}.{split}.jsonl``."""
    return Path(folder) / MANIFEST_DIR / f"{name}.{split}.jsonl"


def write_manifest(path: str | os.PathLike, rows: Iterable[dict[str, Any]]) -> int:
    """Write rows as JSONL (keys in the canonical order) atomically; returns the row count."""
    lines = []
    for row in rows:
        missing = [k for k in KEYS if k not in row]
        if missing:
            raise ValueError(f"manifest row lacks {missing}: {row}")
        ordered = {k: row[k] for k in KEYS}
        ordered.update({k: v for k, v in row.items() if k not in KEYS})
        lines.append(json.dumps(ordered, ensure_ascii=False))
    with atomic_path(path) as tmp:
        tmp.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return len(lines)


def read_world_manifest(path: str | os.PathLike, absolute: bool = True) -> list[dict[str, Any]]:
    """Rows of a manifest; with ``absolute`` the ``path`` and ``image`` fields become absolute
    paths (resolved against the world folder, the manifest's grandparent)."""
    path = Path(path)
    root = path.resolve().parent.parent
    rows = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{lineno}: not JSON ({exc})") from None
            if absolute:
                for key in ("path", "image"):
                    if row.get(key) is not None:
                        row[key] = str(root / row[key])
            rows.append(row)
    return rows
