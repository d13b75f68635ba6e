"""fp16/bf16 inference and ``auto``: which precision a device gets, what it computes, how it refuses."""
from __future__ import annotations

import copy
import json

import pytest
import torch
import torch.nn.functional as F
from cli_helpers import run_cli
from samplegen import MAKERS

from binder import device as device_mod
from binder.device import DeviceError, resolve_precision
from binder.export import example_batch
from binder.model import BindingModel
from binder.model_choice import load_model
from binder.precision import apply_precision


@pytest.fixture(scope="module")
def model():
    return BindingModel.default().eval()


def test_auto_is_fp32_on_the_cpu_and_half_precision_on_a_gpu(monkeypatch):
    assert resolve_precision(torch.device("cpu"), "auto") == "fp32"
    monkeypatch.setattr(device_mod, "bf16_supported", lambda d: True)
    assert resolve_precision(torch.device("cuda:1"), "auto") == "bf16"
    monkeypatch.setattr(device_mod, "bf16_supported", lambda d: False)
    assert resolve_precision(torch.device("cuda"), "auto") == "fp16"
    assert resolve_precision(torch.device("mps"), "auto") == "fp16"
    assert resolve_precision(torch.device("cuda"), "fp32") == "fp32"


def test_a_precision_the_device_cannot_run_is_a_device_error(monkeypatch):
    monkeypatch.setattr(device_mod, "bf16_supported", lambda d: d.type == "cpu")
    assert resolve_precision(torch.device("cpu"), "bf16") == "bf16"
    with pytest.raises(DeviceError, match="no native bfloat16"):
        resolve_precision(torch.device("cuda"), "bf16")
    with pytest.raises(DeviceError, match="int8 runs on the CPU only"):
        resolve_precision(torch.device("cuda"), "int8")


def test_cuda_bf16_support_is_asked_without_emulation(monkeypatch):
    asked = []
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: asked.append(
        including_emulation) or False)
    assert device_mod.bf16_supported(torch.device("cuda")) is False and asked == [False]
    assert device_mod.bf16_supported(torch.device("cpu")) is True


@pytest.mark.parametrize("precision, dtype", [("bf16", torch.bfloat16), ("fp16", torch.float16)])
def test_half_precision_casts_weights_and_embeds_fp32_unit_vectors_close_to_fp32(model, precision, dtype):
    half = apply_precision(copy.deepcopy(model), precision)
    assert half.precision == precision and half.compute_dtype == dtype
    assert {p.dtype for p in half.parameters()} == {dtype}
    assert all(b.dtype == m.dtype for b, m in zip(half.buffers(), model.buffers()))  # buffers stay as they were
    for name in model.modalities:
        batch = example_batch(model, name, batch=2)
        z32, _ = model.encode_rows(name, batch)
        z, bad = half.encode_rows(name, batch)
        assert z.dtype == torch.float32 and bad == []
        assert torch.allclose(z.norm(dim=1), torch.ones(2), atol=1e-5), name
        assert F.cosine_similarity(z, z32).min() > 0.999, name
        assert not torch.equal(z, z32) or precision == "fp16", name  # bf16 really computed in bf16


def test_half_precision_still_refuses_non_finite_rows(model):
    half = apply_precision(copy.deepcopy(model), "bf16")
    batch = example_batch(model, "audio", batch=2)
    batch[1] = float("nan")
    _, bad = half.encode_rows("audio", batch)
    assert bad == [1]


def test_auto_leaves_a_cpu_model_as_it_is(model):
    same = apply_precision(model, "auto")
    assert same is model and same.precision == "fp32" and same.compute_dtype is None


def test_load_takes_a_device_and_a_precision(tmp_path, model):
    model.save(tmp_path / "m")
    loaded = BindingModel.load(tmp_path / "m", ["audio"], device="cpu")
    assert loaded.input_device == torch.device("cpu")
    half = load_model(tmp_path / "m", modalities=["audio"], precision="bf16", progress=False, device="cpu")
    assert half.precision == "bf16" and next(half.tokenizers["audio"].parameters()).dtype == torch.bfloat16
    with pytest.raises(DeviceError, match="unknown device"):
        BindingModel.load(tmp_path / "m", device="gpu")


def test_embed_at_bf16_from_the_command_line(tmp_path, capfd):
    audio = MAKERS["audio"](tmp_path, seed=0)
    rows = {}
    for precision in ("fp32", "bf16"):
        code, out, err = run_cli(["embed", str(audio), "--precision", precision, "--device", "cpu", "--format", "jsonl",
                                  "--quiet"], capfd)
        assert code == 0, err
        rows[precision] = torch.tensor(json.loads(out.splitlines()[0])["embedding"])
    assert F.cosine_similarity(rows["fp32"], rows["bf16"], dim=0) > 0.999


def test_a_gpu_precision_the_gpu_lacks_is_one_line_before_any_model_is_read(tmp_path, capfd, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(device_mod, "bf16_supported", lambda d: False)
    read = []
    monkeypatch.setattr(BindingModel, "default", classmethod(lambda cls, *a, **k: read.append(1)))
    audio = MAKERS["audio"](tmp_path, seed=0)
    for cmd in (["embed", str(audio), "--out", str(tmp_path / "e")],
                ["index", "build", str(tmp_path / "idx"), str(audio)]):
        code, _, err = run_cli([*cmd, "--device", "cuda", "--precision", "bf16", "--quiet"], capfd)
        assert code == 2 and "no native bfloat16" in err and len(err.strip().splitlines()) == 1, err
        code, _, err = run_cli([*cmd, "--device", "cuda", "--precision", "int8", "--quiet"], capfd)
        assert code == 2 and "int8 runs on the CPU only" in err and "Traceback" not in err
    assert read == [] and not (tmp_path / "idx").exists()


def test_export_offers_only_the_precisions_a_graph_can_have(tmp_path, capfd, model):
    model.save(tmp_path / "m")
    code, _, err = run_cli(["export", "onnx", str(tmp_path / "m"), str(tmp_path / "o"), "--precision", "bf16"], capfd)
    assert code == 2 and "'bf16' is not one of 'fp32', 'int8'" in err
