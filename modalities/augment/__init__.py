"""Training-time augmentations of decoded items ("raw", as each modality's ``load()`` returns it).

Every function is pure: the result depends only on the input, the state of the numpy
``Generator`` passed in and the parameters, and the input is never changed, so training seeded
by ``np.random.default_rng([seed, step, item])`` replays exactly. Each module has an options
dataclass (validated on construction) and one draw function that applies a random composition:

=============  =================  ============================================================
modality       options            draw
=============  =================  ============================================================
audio          AudioAugment       augment_wave(wave, rng, opts, sample_rate); mask_spectrogram(x, rng, opts)
depth          DepthAugment       augment_depth((array, bits), rng, opts)
thermal        ThermalAugment     augment_thermal((array, bits), rng, opts)
video          VideoAugment       augment_frames(frames, rng, opts, count)   (2T frames decoded, T kept)
two_stream     VideoAugment       pick_flow_clip(clip, count, rng, opts)     (flow.py: flows cached per pair)
imu            SignalAugment      augment_signal(x, rng, opts)
timeseries     SignalAugment      augment_signal(x, rng, opts)   (dropout_fill="nan")
=============  =================  ============================================================
"""
from __future__ import annotations

from typing import Any

from modalities.augment.audio import AudioAugment, augment_wave, mask_spectrogram
from modalities.augment.raster import DepthAugment, ThermalAugment, augment_depth, augment_thermal
from modalities.augment.signals import SignalAugment, TimeSeriesAugment, augment_signal
from modalities.augment.video import VideoAugment, augment_frames

OPTIONS: dict[str, type] = {
    "audio": AudioAugment,
    "depth": DepthAugment,
    "thermal": ThermalAugment,
    "video": VideoAugment,
    "two_stream": VideoAugment,
    "imu": SignalAugment,
    "timeseries": TimeSeriesAugment,
}

def default_options(modality: str, **overrides: Any) -> Any:
    """The augmentation options for a built-in modality name, with its own defaults and ``overrides``.

    The time series gets ``dropout_fill="nan"`` (its absent-channel marker) instead of IMU's zero.
    Raises KeyError for a modality without augmentations here.
    """
    if modality not in OPTIONS:
        raise KeyError(f"no augmentations for modality {modality!r}; known: {sorted(OPTIONS)}")
    return OPTIONS[modality](**overrides)


__all__ = [
    "OPTIONS", "AudioAugment", "DepthAugment", "SignalAugment", "ThermalAugment", "TimeSeriesAugment", "VideoAugment",
    "augment_depth", "augment_frames", "augment_signal", "augment_thermal", "augment_wave",
    "default_options", "mask_spectrogram",
]
