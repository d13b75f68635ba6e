"""The reference ImageBind code (PyPI ``imagebind-unofficial``, no weights) made importable here.

Two of its imports no longer exist in the pinned torchvision/torchaudio, and neither touches what
the parity tests compare:
- pytorchvideo imports ``torchvision.transforms.functional_tensor`` (renamed ``functional``);
- ``torchaudio.load`` now needs torchcodec; the reference's audio loader gets a soundfile decoder
  with torchaudio's contract instead: float32 (channels, samples) scaled to [-1, 1].
"""
from __future__ import annotations

import sys

import numpy as np
import torch

# Structure of the ``imagebind-test`` preset, as ImageBindModel keyword arguments.
TEST_KWARGS = dict(
    vision_embed_dim=32, vision_num_blocks=2, vision_num_heads=2,
    text_embed_dim=32, text_num_blocks=2, text_num_heads=2, out_embed_dim=16,
    audio_embed_dim=32, audio_num_blocks=2, audio_num_heads=2,
    depth_embed_dim=24, depth_num_blocks=2, depth_num_heads=2,
    thermal_embed_dim=32, thermal_num_blocks=2, thermal_num_heads=2,
    imu_embed_dim=32, imu_num_blocks=2, imu_num_heads=2,
)
HUGE_KWARGS = dict(vision_embed_dim=1280, vision_num_blocks=32, vision_num_heads=16, text_embed_dim=1024,
                   text_num_blocks=24, text_num_heads=16, out_embed_dim=1024)


def _soundfile_load(path, *args, **kwargs):
    import soundfile

    data, sr = soundfile.read(str(path), dtype="float32", always_2d=True)
    return torch.from_numpy(np.ascontiguousarray(data.T)), sr


def reference():
    """``(imagebind.data, imagebind.models.imagebind_model)`` with the two shims applied."""
    import torchvision.transforms.functional as tv_functional

    sys.modules.setdefault("torchvision.transforms.functional_tensor", tv_functional)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import imagebind.data as data
        from imagebind.models import imagebind_model
    data.torchaudio.load = _soundfile_load
    return data, imagebind_model


def random_reference(kwargs: dict, seed: int = 0, noise: float = 0.02):
    """A reference ImageBindModel in eval mode whose every parameter is seeded random.

    Noise is added to all parameters (LayerNorm scales, biases and the text logit scale too), so a
    tensor placed in the wrong slot or left at its default cannot go unnoticed.
    """
    _, model_mod = reference()
    torch.manual_seed(seed)
    model = model_mod.ImageBindModel(**kwargs).eval()
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * noise)
    return model
