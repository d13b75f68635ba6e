"""`anybind export onnx`: one graph per modality whose ONNX Runtime output matches torch's."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime  # noqa: F401  (the test extra installs it; export checks every graph with it)
import onnxscript  # noqa: F401  (torch's ONNX exporter)
import pytest
import torch
from cli_helpers import run_cli

from binder.export import INPUT, MANIFEST, OUTPUT, ExportError, example_batch, export_onnx, ort_session, require_onnx
from binder.model import BindingModel

INT8_MODALITIES = ["image", "text", "audio"]  # both anchor towers and one own encoder (int8 of all: test_precision)


@pytest.fixture(scope="module")
def default_model() -> BindingModel:
    return BindingModel.default().eval()


@pytest.fixture(scope="module")
def fp32_export(default_model, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("onnx-fp32")
    return out, export_onnx(default_model, out, "fp32", source="default")


@pytest.fixture(scope="module")
def int8_export(tmp_path_factory) -> tuple[Path, dict, BindingModel]:
    model = BindingModel.from_preset("imagebind-test", pretrained=None)
    out = tmp_path_factory.mktemp("onnx-int8")
    return out, export_onnx(model, out, "int8", source="imagebind-test", modalities=INT8_MODALITIES), model


def _run(folder: Path, entry: dict, x: torch.Tensor) -> torch.Tensor:
    session = ort_session(folder / entry["file"], threads=1)
    return torch.from_numpy(session.run([OUTPUT], {INPUT: x.numpy()})[0])


def test_every_modality_has_a_graph_matching_torch(default_model, fp32_export):
    folder, manifest = fp32_export
    assert set(manifest["modalities"]) == set(default_model.modalities)
    for name, entry in manifest["modalities"].items():
        assert entry["check"]["max_abs_diff"] <= 1e-4
        for batch in (1, 5):  # not the batch sizes it was exported or checked at: the axis is dynamic
            x = example_batch(default_model, name, batch=batch, seed=7)
            with torch.inference_mode():
                want = default_model.encode(name, x)
            got = _run(folder, entry, x)
            assert got.shape == want.shape and torch.allclose(got, want, atol=1e-4), \
                (name, batch, float((got - want).abs().max()))


def test_manifest_describes_inputs_outputs_and_preprocessing(default_model, fp32_export):
    folder, manifest = fp32_export
    on_disk = json.loads((folder / MANIFEST).read_text())
    assert on_disk == json.loads(json.dumps(manifest, default=str))
    assert on_disk["precision"] == "fp32" and on_disk["embed_dim"] == default_model.embed_dim
    assert on_disk["anchor_preprocess"]["mean"] and on_disk["text_context_length"]
    for name, entry in on_disk["modalities"].items():
        modality = default_model.modality(name)
        graph = onnx.load(str(folder / entry["file"]), load_external_data=False)
        (inp,), (out,) = graph.graph.input, graph.graph.output
        assert inp.name == entry["input"]["name"] == INPUT and out.name == OUTPUT
        dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
        assert isinstance(dims[0], str) and dims[1:] == entry["input"]["shape"][1:]
        if name != "text":
            assert entry["input"]["shape"][1:] == list(modality.input_shape())
        assert entry["output"]["shape"] == ["batch", default_model.embed_dim]
        assert isinstance(entry["options"], dict) and entry["extensions"] == list(modality.extensions)
    assert on_disk["modalities"]["text"]["input"]["dtype"] == "int64"
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]  # no temp files left


def test_int8_graphs_are_quantized_and_close_to_fp32(int8_export):
    folder, manifest, model = int8_export
    assert manifest["precision"] == "int8" and list(manifest["modalities"]) == INT8_MODALITIES
    for name, entry in manifest["modalities"].items():
        ops = {n.op_type for n in onnx.load(str(folder / entry["file"])).graph.node}
        assert ops & {"DynamicQuantizeMatMul", "MatMulInteger", "DynamicQuantizeLinear"}, (name, ops)
        x = example_batch(model, name, batch=4, seed=5)
        with torch.inference_mode():
            want = model.encode(name, x)
        got = _run(folder, entry, x)
        assert np.allclose(got.norm(dim=-1), 1.0, atol=1e-4)
        assert (got * want).sum(-1).min() >= 0.99, name  # the bound of tests/test_precision.py


def test_a_graph_beyond_tolerance_is_an_error_and_nothing_is_written(tmp_path):
    model = BindingModel.default(["imu", "text"]).eval()
    with pytest.raises(ExportError, match="differs from torch's"):
        export_onnx(model, tmp_path / "out", "int8", tolerance=0.0)
    assert not any((tmp_path / "out").iterdir())


def test_unknown_modality_and_missing_package_are_clear_errors(tmp_path, monkeypatch):
    from binder.errors import ModalityError

    model = BindingModel.default(["imu", "text"]).eval()
    with pytest.raises(ModalityError, match="no binding for modality 'audio'"):
        export_onnx(model, tmp_path / "out", modalities=["audio"])
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(ExportError, match=r"pip install 'anybind\[onnx\]'"):
        require_onnx()


def test_cli_exports_a_model_folder(tmp_path, capfd):
    folder = BindingModel.default(["imu", "text"]).save(tmp_path / "model")
    code, out, err = run_cli(["export", "onnx", str(folder), str(tmp_path / "onnx"), "--modality", "imu"], capfd)
    assert code == 0, err
    assert "imu.onnx" in err and "max abs diff" in err
    manifest = json.loads((tmp_path / "onnx" / MANIFEST).read_text())
    assert list(manifest["modalities"]) == ["imu"] and manifest["model"] == str(folder)


@pytest.mark.parametrize("damage", ["config_not_object", "truncated_weights"])
def test_cli_export_of_a_damaged_model_folder_fails_in_one_line(tmp_path, capfd, damage):
    folder = BindingModel.default(["imu", "text"]).save(tmp_path / "model")
    if damage == "config_not_object":
        (folder / "config.json").write_text("[1, 2, 3]")
    else:
        weights = folder / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[:-100])
    code, out, err = run_cli(["export", "onnx", str(folder), str(tmp_path / "onnx")], capfd)
    assert code == 2 and not out and err.startswith("anybind: error:") and err.count("\n") == 1, err
    assert str(folder) in err and "Traceback" not in err
    assert not (tmp_path / "onnx" / MANIFEST).exists()


@pytest.mark.parametrize("tolerance", ["nan", "inf", "-inf", "-1"])
def test_a_tolerance_that_would_switch_the_check_off_is_refused(tmp_path, capfd, tolerance):
    folder = BindingModel.default(["imu", "text"]).save(tmp_path / "model")
    code, out, err = run_cli(["export", "onnx", str(folder), str(tmp_path / "onnx"), "--tolerance", tolerance],
                             capfd)
    assert code == 2 and not out and "--tolerance" in err and "Traceback" not in err, err
    assert not (tmp_path / "onnx").exists()
    with pytest.raises(ExportError, match="finite number >= 0"):
        export_onnx(BindingModel.default(["imu"]).eval(), tmp_path / "lib", tolerance=float(tolerance))
    assert not (tmp_path / "lib").exists()


def test_prepare_builds_what_an_exported_graph_takes_from_files(default_model, fp32_export, tmp_path, capfd,
                                                                 monkeypatch):
    """`anybind prepare` → .npy → the ONNX graph gives the embedding `BindingModel.embed_files` gives."""
    from samplegen import MAKERS

    import binder.cli.common

    monkeypatch.setattr(binder.cli.common, "load_model", lambda *a, **k: default_model)
    folder, manifest = fp32_export
    for name in ("image", "text", "depth"):
        files = [str(MAKERS[name](tmp_path, seed=s)) for s in (1, 2)]
        out = tmp_path / f"{name}.npy"
        code, _, err = run_cli(["prepare", *files, "--out", str(out)], capfd)
        assert code == 0, err
        x = np.load(out)
        assert x.dtype == (np.int64 if name == "text" else np.float32) and x.shape[0] == 2
        got = _run(folder, manifest["modalities"][name], torch.from_numpy(x))
        torch.testing.assert_close(got, default_model.embed_files(name, files), atol=1e-4, rtol=0)
    image, depth = MAKERS["image"](tmp_path, seed=3), MAKERS["depth"](tmp_path, seed=3)
    code, _, err = run_cli(["prepare", str(image), str(depth), "--out", str(tmp_path / "x.npy")], capfd)
    assert code == 2 and "a graph takes one" in err and not (tmp_path / "x.npy").exists()


def test_cli_export_records_absolute_paths_and_prints_only_its_own_lines(tmp_path, capfd, monkeypatch):
    from binder.anchor import save_anchor_dir
    from binder.config import AnchorConfig, BindConfig, HeadConfig, ModalityConfig

    monkeypatch.chdir(tmp_path)
    save_anchor_dir(BindingModel.default(["text"]).anchor, "anchor")
    # an attention-pooling head: onnxscript's optimizer warns about its Split while exporting
    config = BindConfig(anchor=AnchorConfig(model="local-dir:anchor"),
                        modalities=(ModalityConfig("imu", {}, HeadConfig(pool="attention")), ModalityConfig("text")))
    BindingModel(config).save("model")
    code, out, err = run_cli(["export", "onnx", "model", "onnx", "--modality", "imu"], capfd)
    assert code == 0, err
    assert not [line for line in err.splitlines() if "warning" in line.lower()], err
    assert all(line.startswith(("imu.onnx:", "exported ")) for line in err.splitlines()), err
    manifest = json.loads((tmp_path / "onnx" / MANIFEST).read_text())
    assert manifest["model"] == str(tmp_path / "model")
    assert manifest["anchor"] == f"local-dir:{tmp_path / 'anchor'}"
