"""MSR-VTT 1k-A: zero-shot text → video retrieval, R@1 over the 1,000 test videos.

Layout: the official video release and the JSFusion 1k-A test list (``MSRVTT_JSFUSION_test.csv``,
columns ``key,vid_key,video_id,sentence``, as distributed in ``msrvtt_data.zip`` with
CLIP4Clip and its successors)::

    DIR/videos/all/<video_id>.mp4
    DIR/MSRVTT_JSFUSION_test.csv      (or DIR/msrvtt_data/MSRVTT_JSFUSION_test.csv)

Protocol: each of the 1,000 sentences is a query; its one correct answer is its own video among
all test videos. R@1/5/10 are reported; ImageBind reports R@1. Sentences are used as written (no
prompt template). A video that cannot be read is reported and its sentence left out.
"""
from __future__ import annotations

from pathlib import Path

from recipes.bench.base import (
    Benchmark,
    BuiltSet,
    DatasetLayoutError,
    PaperFigure,
    first_existing,
    read_csv_rows,
    require_dir,
    write_manifest,
)

CSV_NAME = "MSRVTT_JSFUSION_test.csv"
LAYOUT = f"DIR/videos/all/<video_id>.mp4 and DIR/{CSV_NAME} (key,vid_key,video_id,sentence)"


def build_manifest(data_dir: Path, out_dir: Path, progress: bool = False) -> BuiltSet:
    """One video record per test sentence, its ``text`` the query and its file the answer."""
    videos = require_dir(data_dir / "videos" / "all", "the MSR-VTT videos, <video_id>.mp4")
    table = first_existing([data_dir / CSV_NAME, data_dir / "msrvtt_data" / CSV_NAME],
                           "the JSFusion 1k-A test list")
    records, skipped = [], []
    for line, row in enumerate(read_csv_rows(table, ("video_id", "sentence")), 2):
        if not row["video_id"] or not row["sentence"]:
            skipped.append((f"{table}:{line}", "empty video_id or sentence"))
            continue
        records.append({"modality": "video", "path": str((videos / f"{row['video_id']}.mp4").resolve()),
                        "label": row["video_id"], "text": row["sentence"]})
    if not records:
        raise DatasetLayoutError(table, "lists no test sentence")
    count = write_manifest(out_dir / "msr-vtt.jsonl", records)
    return BuiltSet(out_dir / "msr-vtt.jsonl", "text_retrieval", count,
                    protocol={"split": "JSFusion 1k-A test (1,000 videos, one sentence each)",
                              "queries": "sentences as written, no template"},
                    skipped=skipped)


BENCHMARK = Benchmark(
    name="msr-vtt", title="MSR-VTT 1k-A", modality="video", metric="text→video R@1 (%)", layout=LAYOUT,
    paper=PaperFigure(36.8, "ImageBind-Huge", "ImageBind paper (arXiv:2305.05665), zero-shot MSR-VTT 1k-A "
                                               "text→video retrieval",
                      note="ImageBind encodes frames with its image encoder; anybind's video modality is "
                           "a binding of its own"),
    builder=build_manifest,
)
