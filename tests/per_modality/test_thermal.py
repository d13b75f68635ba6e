"""Thermal preprocessing: with ``detrend = "plane"`` a warm gradient across the frame (a slab
warmer at one end, a heater, vignetting) is not read as the scene; without it, it is."""
import numpy as np
import pytest
from PIL import Image

from binder.errors import ConfigError
from modalities.thermal import Thermal


def _frames(tmp_path, size: int = 32) -> tuple:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    blob = 3000.0 * np.exp(-((xx - 20) ** 2 + (yy - 12) ** 2) / 18.0)  # the warm mark
    slope = 400.0 * xx + 150.0 * yy  # a gradient several times the mark's contrast across the frame
    paths = []
    for name, counts in (("flat", 20000.0 + blob), ("slab", 20000.0 + blob + slope)):
        path = tmp_path / f"{name}.thermal.png"
        Image.fromarray(np.round(counts).astype(np.uint16)).save(path)
        paths.append(path)
    return paths, blob > 1500.0


def test_plane_detrend_reads_the_mark_alike_on_a_flat_and_a_sloped_slab(tmp_path):
    (flat, slab), mark = _frames(tmp_path)
    plane = Thermal(image_size=32, patch=8, detrend="plane")
    plain = Thermal(image_size=32, patch=8)
    a, b = (plane.prepare(p)[0].numpy() for p in (flat, slab))
    c, d = (plain.prepare(p)[0].numpy() for p in (flat, slab))
    assert np.abs(a - b).max() < 0.05  # the gradient removed: the same picture
    assert np.abs(c - d).max() > 1.0  # kept: the gradient changes what the tokenizer sees
    assert a[mark].mean() - a[~mark].mean() > 2.0  # the mark still stands out
    assert np.isfinite(a).all() and abs(float(a.mean())) < 1e-4


def test_thermal_default_keeps_the_frame_and_a_bad_detrend_is_a_config_error():
    assert Thermal().options.detrend == "none"
    with pytest.raises(ConfigError, match="detrend"):
        Thermal(detrend="quadratic")


def test_median_denoise_replaces_dead_pixels_and_keeps_the_mark(tmp_path):
    (flat, _), mark = _frames(tmp_path)
    counts = np.array(Image.open(flat), dtype=np.uint16)
    counts[2::7, 3::7] = 0  # dead pixels, 7 px apart
    Image.fromarray(counts).save(tmp_path / "dead.thermal.png")
    for window in ("median3", "median5"):
        model = Thermal(image_size=32, patch=8, denoise=window)
        clean, dead = (model.prepare(p)[0].numpy() for p in (flat, tmp_path / "dead.thermal.png"))
        plain = Thermal(image_size=32, patch=8)
        plain_error = np.abs(plain.prepare(tmp_path / "dead.thermal.png")[0].numpy() - plain.prepare(flat)[0].numpy())
        error = np.abs(dead - clean)
        assert error.mean() < plain_error.mean() / 10 and error.max() < plain_error.max() / 5  # gone, not spread
        assert clean[mark].mean() - clean[~mark].mean() > 2.0
    with pytest.raises(ConfigError, match="denoise"):
        Thermal(denoise="median7")
