"""`anybind serve --device/--precision` and ``ServeConfig(device=, precision=)``: the model is loaded
there, ``/info`` says where and at which precision, and a device torch cannot use is one line and
exit 2 before the server listens or reads the index."""
from __future__ import annotations

import socket
import sys

import pytest
import torch
from fastapi.testclient import TestClient

from binder.cli.serve import serve_cmd
from binder.config import INFERENCE_PRECISIONS
from binder.device import DEVICE_ENV, DeviceError
from binder.serve import ServeConfig, create_app


@pytest.fixture
def no_gpu(monkeypatch):
    """A machine where torch sees no GPU (whatever this one has), and no $ANYBIND_DEVICE."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    monkeypatch.delenv(DEVICE_ENV, raising=False)


def _info(config: ServeConfig) -> dict:
    """``/info`` of an app that loads its own model (``binder.serve.loading``), as ``anybind serve`` does."""
    with TestClient(create_app(config)) as client:
        r = client.get("/info")
        assert r.status_code == 200, r.text
        return r.json()


def test_the_default_loads_on_the_cpu_at_fp32_and_info_says_so(base_index, no_gpu):
    config = ServeConfig(base_index, quiet=True)
    assert config.device is None and config.precision == "auto"
    info = _info(config)
    assert info["device"] == "cpu" and info["precision"] == "fp32"


def test_int8_on_the_cpu_is_what_info_reports(base_index, no_gpu):
    info = _info(ServeConfig(base_index, quiet=True, device="cpu", precision="int8"))
    assert info["device"] == "cpu" and info["precision"] == "int8"


def test_a_gpu_torch_cannot_see_is_refused_before_the_index_is_read(tmp_path, no_gpu):
    with pytest.raises(DeviceError, match="--device cuda: torch sees no CUDA device"):
        create_app(ServeConfig(tmp_path, device="cuda", quiet=True))  # no index there: the device fails first


def test_serve_device_cuda_is_one_line_and_exit_2_before_listening(tmp_path, no_gpu, monkeypatch, capsys):
    from binder.cli import main

    with socket.socket() as taken:  # a taken port and a folder that is no index: the device is checked first
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        monkeypatch.setattr(sys, "argv", ["anybind", "serve", str(tmp_path), "--port", str(port), "--quiet",
                                          "--device", "cuda"])
        with pytest.raises(SystemExit) as exit_:
            main()
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    (line,) = err.strip().splitlines()
    assert line.startswith("anybind: error: --device cuda: torch sees no CUDA device"), err
    assert "Traceback" not in err


def test_serve_int8_on_a_gpu_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys):
    from binder.cli import main

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # as if one were there: int8 is refused anyway
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(sys, "argv", ["anybind", "serve", str(tmp_path), "--port", "0", "--quiet",
                                      "--device", "cuda", "--precision", "int8"])
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("anybind: error: --precision int8 runs on the CPU only")


def test_serve_options_take_the_inference_precisions_and_a_device():
    params = {p.name: p for p in serve_cmd.params}
    precision = params["precision"]
    assert tuple(precision.type.choices) == INFERENCE_PRECISIONS and precision.default == "auto"
    assert params["device"].default is None
    with pytest.raises(ValueError, match="precision: 'int4'"):
        ServeConfig(".", precision="int4")
