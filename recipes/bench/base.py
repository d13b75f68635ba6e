"""What every benchmark adapter shares: its description, the set it builds, and layout checks.

An adapter reads a data set in the layout its distribution gives, checks that layout (a missing
folder, file or CSV column is a ``DatasetLayoutError`` naming it), and writes a JSONL manifest of
the items to embed (``binder.train.data.read_pairs`` format, absolute paths) into a work folder.
It also says what the evaluation needs: the class names and prompt templates of a zero-shot
task, or that the items' captions are text queries of a retrieval task.
"""
from __future__ import annotations

import csv
import json
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from binder.errors import AnybindError
from binder.io import atomic_write_text

MAX_CSV_BYTES = 256 * 1024 * 1024  # a label table larger than this is not one of these data sets


class DatasetLayoutError(AnybindError):
    """A data set folder is not in the layout its benchmark expects: ``path`` is what is missing or
    wrong (a folder, a file, a CSV column) and ``problem`` says how."""

    def __init__(self, path: str | os.PathLike, problem: str):
        self.path = os.fspath(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


@dataclass(frozen=True)
class PaperFigure:
    """The figure a paper reports for a benchmark, in percent, and where it was read."""

    value: float
    model: str
    source: str
    note: str = ""


@dataclass
class BuiltSet:
    """What ``build_manifest`` made: the manifest to embed and how to score it.

    ``task`` is ``"zero_shot"`` (``label`` of each record indexes ``classes``; prompts put
    ``prompt_names`` into ``templates``) or ``"text_retrieval"`` (each record's ``text`` is a query
    whose one correct answer is the record's own file). ``skipped`` lists items left out while
    building (path, reason); ``protocol`` records the choices made (split, folds, crops), for the
    output.
    """

    manifest: Path
    task: str
    count: int
    classes: tuple[str, ...] = ()
    prompt_names: tuple[str, ...] = ()
    templates: tuple[str, ...] = ("{}",)
    protocol: dict[str, Any] = field(default_factory=dict)
    skipped: list[tuple[str, str]] = field(default_factory=list)


Builder = Callable[..., BuiltSet]


@dataclass(frozen=True)
class Benchmark:
    """One data set: its name on the command line, modality, metric, layout and paper figure."""

    name: str
    title: str
    modality: str
    metric: str
    layout: str
    paper: PaperFigure
    builder: Builder

    def build_manifest(self, data_dir: str | os.PathLike, out_dir: str | os.PathLike,
                       progress: bool = False) -> BuiltSet:
        """Check the layout of ``data_dir`` and write the manifest (and any derived files) to ``out_dir``.

        ``progress`` shows a bar where building is slow (LLVIP's crops)."""
        data = Path(data_dir)
        if not data.is_dir():
            raise DatasetLayoutError(data, f"not a folder (the {self.title} layout is: {self.layout})")
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        return self.builder(data, out, progress=progress)


def require_dir(path: Path, what: str) -> Path:
    """``path`` if it is a folder, else a layout error naming it and what it should hold."""
    if not path.is_dir():
        raise DatasetLayoutError(path, f"missing folder ({what})")
    return path


def require_file(path: Path, what: str) -> Path:
    """``path`` if it is a file, else a layout error naming it and what it should hold."""
    if not path.is_file():
        raise DatasetLayoutError(path, f"missing file ({what})")
    return path


def first_existing(candidates: Sequence[Path], what: str) -> Path:
    """The first of ``candidates`` that is a file; else a layout error naming the first one."""
    for p in candidates:
        if p.is_file():
            return p
    others = ", ".join(str(p) for p in candidates[1:])
    raise DatasetLayoutError(candidates[0], f"missing file ({what}; also looked for {others})")


def read_csv_rows(path: Path, columns: Iterable[str], delimiter: str = ",") -> list[dict[str, str]]:
    """Rows of a CSV file with a header, after checking that every required column is there."""
    if path.stat().st_size > MAX_CSV_BYTES:
        raise DatasetLayoutError(path, f"larger than {MAX_CSV_BYTES // 2**20} MiB; not a label table")
    try:
        with open(path, encoding="utf-8-sig", newline="") as fh:
            reader = csv.DictReader(fh, delimiter=delimiter)
            header = [h.strip() for h in reader.fieldnames or []]
            missing = [c for c in columns if c not in header]
            if missing:
                raise DatasetLayoutError(path, f"missing column(s) {', '.join(missing)} (header: {header})")
            # a short row leaves None values, a long one a None key holding the extras: both dropped
            return [{k.strip(): v.strip() if isinstance(v, str) else "" for k, v in row.items() if k is not None}
                    for row in reader]
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DatasetLayoutError(path, f"not a readable CSV file ({exc})") from None


def read_lines(path: Path, max_bytes: int = MAX_CSV_BYTES) -> list[str]:
    """The non-empty, stripped lines of a small UTF-8 text file (a split list, a class list)."""
    if path.stat().st_size > max_bytes:
        raise DatasetLayoutError(path, f"larger than {max_bytes:,} bytes; not a list file")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DatasetLayoutError(path, f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    return [s.strip() for s in text.splitlines() if s.strip()]


def write_manifest(path: Path, records: Iterable[dict[str, Any]]) -> int:
    """Write ``records`` as a JSONL manifest atomically; returns how many lines it holds."""
    lines = [json.dumps(r, ensure_ascii=False) for r in records]
    atomic_write_text(path, "\n".join(lines) + ("\n" if lines else ""), durable=False)
    return len(lines)


def pretty(name: str) -> str:
    """A class name as prompts use it: ``sea_waves`` → ``sea waves``."""
    return " ".join(name.replace("_", " ").split())
