"""`anybind index build` killed with SIGKILL in the middle: the index still opens, holds every
file the build reported done (and nothing half-written), and a re-run completes it."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from index_helpers import QUIET, assert_same_index, make_corpus, state

from binder.index.build import build_index

ROOT = Path(__file__).resolve().parents[2]


def _done_paths(log: Path) -> list[str]:
    if not log.exists():
        return []
    lines = log.read_text().splitlines()
    return [line[len("done "):] for line in lines if line.startswith("done ")]


def test_sigkill_during_build_keeps_every_reported_file(tmp_path, model, fresh):
    src, idx, log = tmp_path / "src", tmp_path / "idx", tmp_path / "build.log"
    make_corpus(src, per_modality=200, modalities=("depth", "thermal"))
    cmd = [sys.executable, "cli.py", "index", "build", str(idx), str(src), "--shard-size", "2",
           "--batch-size", "2", "--workers", "1", "--log", str(log), "--quiet"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})
    deadline = time.monotonic() + 120
    while len(_done_paths(log)) < 6 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, f"the build ended before it was killed: {proc.stderr.read()!r}"

    reported = _done_paths(log)
    got = state(idx)  # opens, and every snapshot row is unique and row-aligned
    assert 6 <= len(reported) < 400 and set(reported) <= set(got)
    assert len(got) < 400
    want = fresh(src)
    assert_same_index(got, {p: want[p] for p in got})

    report = build_index(idx, [src], model=model, options=QUIET)  # resume
    assert report.unchanged == len(got) and report.added == 400 - len(got)
    assert_same_index(state(idx), want)
