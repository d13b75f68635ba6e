"""ImageBind-Huge at full size: random reference weights → .pth → convert → reload → same embeddings.

About 1.5 minutes and 11 GB of memory on two cores; it runs with the rest of the suite.
"""
from __future__ import annotations

import gc

import pytest
import torch
from reference_imagebind import HUGE_KWARGS, random_reference

from binder.imagebind import convert_imagebind
from binder.model import BindingModel

pytestmark = pytest.mark.slow


def test_imagebind_huge_conversion_matches_reference(tmp_path):
    g = torch.Generator().manual_seed(5)
    inputs = {"vision": torch.randn(1, 3, 224, 224, generator=g), "audio": torch.randn(1, 3, 1, 128, 204, generator=g),
              "depth": torch.randn(1, 1, 224, 224, generator=g), "thermal": torch.randn(1, 1, 224, 224, generator=g),
              "imu": torch.randn(1, 6, 2000, generator=g),
              "text": torch.tensor([[49406, 320, 1929, 49407] + [0] * 73])}
    ref = random_reference(HUGE_KWARGS, seed=7, noise=0.002)
    with torch.inference_mode():
        expected = {k: ref({k: v})[k] for k, v in inputs.items()}
    torch.save(ref.state_dict(), tmp_path / "imagebind_huge.pth")
    del ref
    gc.collect()
    convert_imagebind(tmp_path / "imagebind_huge.pth", tmp_path / "model")
    (tmp_path / "imagebind_huge.pth").unlink()
    model = BindingModel.load(tmp_path / "model")
    assert model.embed_dim == 1024
    with torch.inference_mode():
        for key, batch in inputs.items():
            ours = model.encode("image" if key == "vision" else key, batch, scaled=True)
            assert (ours - expected[key]).abs().max().item() < 1e-5, key
