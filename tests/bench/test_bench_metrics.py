"""The figures ``anybind bench`` prints are the ones a direct computation gives, on hand-made embeddings."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from binder.embed.pipeline import Failure
from binder.train.data import PairRecord
from recipes.bench import BENCHMARKS
from recipes.bench.base import BuiltSet
from recipes.bench.run import Embedded, describe, format_table, score_text_retrieval, score_zero_shot


class TableAnchor:
    """An anchor whose text tower looks each text up in a table (tokenize passes the texts through)."""

    def __init__(self, table: dict[str, list[float]]):
        self.table = table

    def tokenize(self, texts: list[str]) -> list[str]:
        return texts

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        return F.normalize(torch.tensor([self.table[t] for t in texts], dtype=torch.float32), dim=-1)


def unit(rows: list[list[float]]) -> torch.Tensor:
    return F.normalize(torch.tensor(rows, dtype=torch.float32), dim=-1)


def embedded(paths: list[str], rows: list[list[float]], failures: list[Failure] | None = None) -> Embedded:
    return Embedded({p: i for i, p in enumerate(paths)}, unit(rows), failures or [])


def test_zero_shot_top1_matches_a_direct_computation_with_prompt_ensembling():
    table = {f"a {c}": v for c, v in zip("xyz", ([1, 0, 0], [0, 1, 0], [0, 0, 1]))}
    table.update({f"the {c}": v for c, v in zip("xyz", ([1, 0.2, 0], [0, 1, 0.3], [0.4, 0, 1]))})
    built = BuiltSet(Path("unused.jsonl"), "zero_shot", 4, ("cx", "cy", "cz"), ("x", "y", "z"), ("a {}", "the {}"))
    items = [[0.9, 0.1, 0.0], [0.1, 0.9, 0.0], [0.6, 0.4, 0.0], [0.0, 0.2, 0.8]]
    labels = [0, 1, 2, 2]
    records = [PairRecord("audio", f"f{i}.wav", label=lab) for i, lab in enumerate(labels)]
    scores = score_zero_shot(TableAnchor(table), built, records, embedded([r.path for r in records], items))

    prompts = np.stack([np.mean([np.array(table[t.format(c)]) / np.linalg.norm(table[t.format(c)])
                                 for t in built.templates], axis=0) for c in "xyz"])
    prompts /= np.linalg.norm(prompts, axis=1, keepdims=True)
    x = np.array(items) / np.linalg.norm(items, axis=1, keepdims=True)
    direct = 100 * np.mean((x @ prompts.T).argmax(1) == np.array(labels))
    assert scores["value"] == pytest.approx(direct) == pytest.approx(75.0)
    assert scores["chance"] == pytest.approx(50.0) and scores["items"] == 4


def test_zero_shot_leaves_out_records_whose_file_failed():
    table = {"x": [1, 0], "y": [0, 1]}
    built = BuiltSet(Path("unused.jsonl"), "zero_shot", 3, ("x", "y"), ("x", "y"), ("{}",))
    records = [PairRecord("depth", "a.png", label=0), PairRecord("depth", "bad.png", label=1),
               PairRecord("depth", "c.png", label=1)]
    scores = score_zero_shot(TableAnchor(table), built, records, embedded(["a.png", "c.png"], [[1, 0], [1, 0.1]]))
    assert scores["items"] == 2 and scores["value"] == pytest.approx(50.0)


def test_text_to_video_recall_matches_the_known_answer():
    gallery = ["v0.mp4", "v1.mp4", "v2.mp4"]
    texts = {"q0": [1, 0, 0], "q1": [0.6, 0.8, 0], "q2": [0.9, 0, 0.43]}  # q2's own video ranks second
    records = [PairRecord("video", v, text=q) for v, q in zip(gallery, texts)]
    scores = score_text_retrieval(TableAnchor(texts), records,
                                  embedded(gallery, [[1, 0, 0], [0, 1, 0], [0, 0, 1]]))
    assert scores["value"] == pytest.approx(100 * 2 / 3)
    assert scores["recall"] == pytest.approx({"R@1": 100 * 2 / 3, "R@5": 100.0, "R@10": 100.0})
    assert scores["items"] == 3 and scores["gallery"] == 3 and scores["chance"] == pytest.approx(100 / 3)


def test_text_query_whose_video_failed_is_left_out():
    texts = {"q0": [1, 0], "q1": [0, 1]}
    records = [PairRecord("video", "v0.mp4", text="q0"), PairRecord("video", "broken.mp4", text="q1")]
    scores = score_text_retrieval(TableAnchor(texts), records, embedded(["v0.mp4"], [[1, 0]]))
    assert scores["items"] == 1 and scores["value"] == pytest.approx(100.0)


def test_table_and_description_carry_the_paper_figure():
    bench = BENCHMARKS["llvip"]
    built = BuiltSet(Path("m.jsonl"), "zero_shot", 2, ("background", "person"), ("background", "person"),
                     ("{}",), protocol={"split": "infrared/test"}, skipped=[("x.xml", "no annotation")])
    result = describe(bench, built, {"items": 2, "value": 50.0, "chance": 50.0},
                      embedded(["a", "b"], [[1, 0], [0, 1]], [Failure("c.png", "no such file")]), Path("/d"))
    assert result["paper"]["value"] == 63.4 and result["failed"] == 1 and result["skipped"] == 1
    assert result["classes"] == ["background", "person"] and result["failures"][0]["path"] == "c.png"
    table = format_table([result])
    assert table[0].split() == ["data", "set", "items", "metric", "anybind", "paper"]
    assert "LLVIP" in table[1] and "50.0" in table[1] and "63.4 (ImageBind-Huge)" in table[1]
