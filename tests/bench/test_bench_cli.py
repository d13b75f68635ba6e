"""`anybind bench` end to end on tiny data sets in each official layout, with the untrained default model."""
from __future__ import annotations

import json
import shutil
import sys

import pytest
from bench_datasets import MAKERS, make_esc50, make_llvip
from click.testing import CliRunner

import binder.cli.common
from binder.cli import app, main
from binder.model import BindingModel

EXPECTED_ITEMS = {"esc50": 4, "nyu-depth-v2": 3, "llvip": 4, "ego4d-imu": 3, "msr-vtt": 3}


@pytest.fixture(scope="module")
def model() -> BindingModel:
    return BindingModel.default().eval()


@pytest.fixture
def shared_model(monkeypatch, model):
    """The command's model loader hands out the one untrained default model built for this module."""
    monkeypatch.setattr(binder.cli.common, "load_model", lambda path, quiet=False, **kw: model)


def bench(*args: str):
    return CliRunner().invoke(app, ["bench", *args], catch_exceptions=False)


@pytest.mark.parametrize("name", list(EXPECTED_ITEMS))
def test_bench_prints_the_table_and_writes_json(name, tmp_path, shared_model):
    data = MAKERS[name](tmp_path / "data")
    out = tmp_path / "result.json"
    res = bench(name, "--data", str(data), "--out", str(out), "--quiet", "--batch-size", "2")
    assert res.exit_code == 0, res.output
    header, row, summary, protocol = res.stdout.splitlines()
    assert header.split()[:3] == ["data", "set", "items"] and "paper" in header
    result = json.loads(out.read_text())
    paper = f"{result['paper']['value']:.1f} (ImageBind-Huge)"
    assert result["title"] in row and paper in row and str(EXPECTED_ITEMS[name]) in row.split()
    assert result["items"] == EXPECTED_ITEMS[name] and result["failed"] == 0
    assert 0.0 <= result["value"] <= 100.0 and f"{result['value']:.1f}" in row
    assert result["model"] == "untrained-default" and "paper:" in summary and protocol.startswith("protocol: ")
    if name == "esc50":
        assert "folds: [1, 2, 3, 4, 5]" in protocol and "zero-shot classification trains on nothing" in protocol


def test_a_bad_clip_is_reported_and_skipped(tmp_path, shared_model):
    data = make_esc50(tmp_path / "esc", corrupt="4-999-A-1.wav")
    out = tmp_path / "r.json"
    res = bench("esc50", "--data", str(data), "--out", str(out), "--quiet")
    assert res.exit_code == 0, res.output
    assert "anybind: skipped" in res.stderr and "4-999-A-1.wav" in res.stderr
    result = json.loads(out.read_text())
    assert result["failed"] == 1 and result["items"] == 4 and result["failures"][0]["path"].endswith("4-999-A-1.wav")
    assert "1 file(s) failed" in res.stdout


def test_work_folder_keeps_the_manifest_and_crops(tmp_path, shared_model):
    work = tmp_path / "work"
    res = bench("llvip", "--data", str(make_llvip(tmp_path / "llvip")), "--work", str(work), "--quiet")
    assert res.exit_code == 0, res.output
    assert (work / "llvip.jsonl").is_file() and len(list((work / "crops" / "person").glob("*.png"))) == 2
    assert "left out" in res.stderr and "under 8 px" in res.stderr


def test_layout_error_is_one_line_naming_the_missing_file(tmp_path, monkeypatch, capsys, shared_model):
    data = make_llvip(tmp_path / "llvip")
    shutil.rmtree(data / "Annotations")
    monkeypatch.setattr(sys, "argv", ["anybind", "bench", "llvip", "--data", str(data), "--quiet"])
    with pytest.raises(SystemExit) as exit_info:
        main()
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and len(err) == 1
    assert err[0].startswith("anybind: error: ") and f"{data / 'Annotations'}: missing folder" in err[0]


def test_without_model_the_untrained_default_is_used_and_said(tmp_path, monkeypatch):
    monkeypatch.delenv("ANYBIND_MODEL", raising=False)
    res = bench("nyu-depth-v2", "--data", str(MAKERS["nyu-depth-v2"](tmp_path / "nyu")))
    assert res.exit_code == 0, res.output
    assert "UNTRAINED" in res.stderr and "54.0 (ImageBind-Huge)" in res.stdout


@pytest.fixture(scope="module")
def imagebind_model() -> BindingModel:
    return BindingModel.from_preset("imagebind-test")


@pytest.mark.parametrize("name", ["nyu-depth-v2", "llvip", "ego4d-imu"])
def test_an_imagebind_structured_model_runs_the_benchmarks(name, tmp_path, imagebind_model):
    from recipes.bench import BENCHMARKS
    from recipes.bench.run import run_benchmark

    result = run_benchmark(imagebind_model, BENCHMARKS[name], MAKERS[name](tmp_path / "d"), tmp_path / "w",
                           progress=False)
    assert result["items"] == EXPECTED_ITEMS[name] and 0.0 <= result["value"] <= 100.0


def test_a_model_without_the_modality_is_one_error_naming_it(tmp_path, monkeypatch, capsys, imagebind_model):
    monkeypatch.setattr(binder.cli.common, "load_model", lambda path, quiet=False, **kw: imagebind_model)
    data = MAKERS["msr-vtt"](tmp_path / "m")
    monkeypatch.setattr(sys, "argv", ["anybind", "bench", "msr-vtt", "--data", str(data), "--quiet"])
    with pytest.raises(SystemExit) as exit_info:
        main()
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and len(err) == 1 and "no binding for modality 'video'" in err[0]
