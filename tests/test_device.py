"""--device and $ANYBIND_DEVICE: checked before anything is read, one clear line when torch cannot use it."""
from __future__ import annotations

import pytest
import torch
from cli_helpers import run_cli
from samplegen import MAKERS

from binder.device import DEVICE_ENV, DeviceError, check_device_precision, resolve_device
from binder.model import BindingModel


def test_auto_takes_what_torch_sees_and_cpu_is_always_there(monkeypatch):
    monkeypatch.delenv(DEVICE_ENV, raising=False)
    assert resolve_device("cpu") == torch.device("cpu")
    want = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    assert resolve_device(None).type == want == resolve_device("auto").type
    monkeypatch.setenv(DEVICE_ENV, "cpu")
    assert resolve_device(None) == torch.device("cpu")


def test_a_gpu_torch_cannot_see_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(DeviceError, match="torch sees no CUDA device"):
        resolve_device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("cuda:1") == torch.device("cuda:1")
    with pytest.raises(DeviceError, match="sees 2 CUDA device"):
        resolve_device("cuda:2")
    with pytest.raises(DeviceError, match="unknown device 'gpu'"):
        resolve_device("gpu")


def test_int8_is_a_cpu_precision():
    check_device_precision(torch.device("cpu"), "int8")
    with pytest.raises(DeviceError, match="int8 runs on the CPU only"):
        check_device_precision(torch.device("cuda"), "int8")


def test_commands_refuse_a_missing_gpu_in_one_line_before_reading_a_model(tmp_path, capfd, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    image = MAKERS["image"](tmp_path, seed=0)
    code, _, err = run_cli(["embed", str(image), "--device", "cuda", "--out", str(tmp_path / "e")], capfd)
    assert code == 2 and "torch sees no CUDA device" in err and len(err.strip().splitlines()) == 1
    monkeypatch.setenv(DEVICE_ENV, "cuda:0")
    code, _, err = run_cli(["classify", str(image), "--labels", "a,b"], capfd)
    assert code == 2 and "--device cuda:0" in err and "Traceback" not in err
    monkeypatch.setenv(DEVICE_ENV, "cpu")
    code, out, err = run_cli(["classify", str(image), "--labels", "a,b", "--format", "jsonl", "--quiet"], capfd)
    assert code == 0, err


def test_a_placed_model_takes_cpu_inputs_and_gives_cpu_embeddings(tmp_path):
    model = BindingModel.default().eval().place("cpu")
    image = MAKERS["image"](tmp_path, seed=1)
    z = model.embed_files("image", [image])
    assert z.device.type == "cpu" and model.input_device == torch.device("cpu")
    assert torch.allclose(z.norm(dim=1), torch.ones(1), atol=1e-3)


def test_index_build_takes_a_device_and_refuses_a_missing_gpu(tmp_path, capfd, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    (tmp_path / "files").mkdir()
    MAKERS["image"](tmp_path / "files", seed=0)
    code, _, err = run_cli(["index", "build", str(tmp_path / "idx"), str(tmp_path / "files"), "--device", "cuda",
                            "--quiet"], capfd)
    assert code == 2 and "torch sees no CUDA device" in err and not (tmp_path / "idx").exists()
    code, _, err = run_cli(["index", "build", str(tmp_path / "idx"), str(tmp_path / "files"), "--device", "cpu",
                            "--quiet"], capfd)
    assert code == 0, err
