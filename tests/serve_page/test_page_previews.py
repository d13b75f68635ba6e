"""Previews of every modality (binder.serve.previews): bounded PNGs that show what the file holds,
typed errors for files that cannot be read, and the byte-bounded LRU cache of the page."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from samplegen import MAKERS
from samplegen_audio import write_wav
from samplegen_video import moving_blob, write_video

from binder.serve.page import ThumbCache
from binder.serve.previews import (
    INVALID_RGB,
    MAX_SIZE,
    PALETTE,
    PreviewError,
    make_preview,
    read_audio_head,
    signal_lanes,
)
from modalities.raster import dominant_plane_residual


def png(data: bytes) -> Image.Image:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    img = Image.open(io.BytesIO(data))
    img.load()
    return img.convert("RGB")


def luminance(rgb) -> float:
    r, g, b = (float(v) for v in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


@pytest.mark.parametrize("modality", sorted(MAKERS))
def test_every_modality_gets_a_bounded_png_that_is_not_blank(modality, tmp_path):
    img = png(make_preview(MAKERS[modality](tmp_path), modality))
    assert 0 < max(img.size) <= MAX_SIZE
    assert np.asarray(img).std() > 5, "a preview must show something"


def test_image_keeps_its_aspect_and_is_shrunk(tmp_path):
    Image.new("RGB", (900, 300), (200, 30, 30)).save(tmp_path / "wide.jpg")
    img = png(make_preview(tmp_path / "wide.jpg", "image"))
    assert img.size == (MAX_SIZE, MAX_SIZE // 3)
    assert np.abs(np.asarray(img)[img.height // 2, img.width // 2].astype(int) - (200, 30, 30)).max() < 12


def _wall(size: int = 96, tilt: float = 0.9, relief_m: float = 0.015) -> tuple[np.ndarray, np.ndarray]:
    """Depth (m) of a wall tilted sideways (its disparity a plane in the pixels, as a pinhole camera
    sees any plane) with a digit-like bar standing ``relief_m`` out of it, and the bar's mask."""
    vv, uu = np.mgrid[0:size, 0:size] / size
    disparity = 1 / 0.8 + tilt * uu + 0.3 * vv  # 1.25 to 2.4 per metre: the wall recedes to the left
    stem = (np.abs(uu - 0.55) < 0.08) & (np.abs(vv - 0.5) < 0.3)
    bar = stem | (np.abs(vv - 0.25) < 0.06) & (np.abs(uu - 0.45) < 0.18)
    return 1 / disparity - relief_m * bar, bar


def test_depth_shows_what_stands_out_of_a_tilted_wall_not_the_tilt_and_holes_grey(tmp_path):
    depth_m, bar = _wall()
    depth_mm = np.round(depth_m * 1000).astype(np.uint16)
    depth_mm[70:80, 10:20] = 0  # a hole: no reading
    Image.fromarray(depth_mm).save(tmp_path / "wall.depth.png")
    arr = np.asarray(png(make_preview(tmp_path / "wall.depth.png", "depth"))).astype(float)
    lum = 0.2126 * arr[..., 0] + 0.7152 * arr[..., 1] + 0.0722 * arr[..., 2]
    wall = ~bar
    wall[70:80, 10:20] = False
    assert lum[bar].mean() > lum[wall].mean() + 80, "the bar, 15 mm nearer than the wall, is bright"
    left, right = lum[:, :12][wall[:, :12]].mean(), lum[:, -12:][wall[:, -12:]].mean()
    assert abs(left - right) < 20, f"the wall's tilt is removed (left {left:.0f}, right {right:.0f})"
    assert tuple(arr[75, 15].astype(int)) == INVALID_RGB
    assert len(set(arr[bar][0].tolist())) > 1, "colour-mapped, not grey"


def test_disparity_files_are_shown_as_they_are(tmp_path):
    depth_m, bar = _wall(64)
    np.save(tmp_path / "wall.disparity.npy", (1 / depth_m).astype(np.float32))  # larger disparity = nearer
    arr = np.asarray(png(make_preview(tmp_path / "wall.disparity.npy", "depth"))).astype(float)
    lum = 0.2126 * arr[..., 0] + 0.7152 * arr[..., 1] + 0.0722 * arr[..., 2]
    assert lum[bar].mean() > lum[~bar].mean() + 80


def test_thermal_hot_spot_is_bright_in_a_colour_map(tmp_path):
    heat = np.full((48, 48), 1000, np.uint16)
    heat[20:28, 20:28] = 60000
    Image.fromarray(heat).save(tmp_path / "cam.thermal.png")
    arr = np.asarray(png(make_preview(tmp_path / "cam.thermal.png", "thermal")))
    assert luminance(arr[24, 24]) > luminance(arr[2, 2]) + 100
    assert len(set(arr[24, 24].tolist())) > 1


def test_thermal_shows_the_warm_digit_not_the_slab_s_gradient(tmp_path):
    vv, uu = np.mgrid[0:64, 0:64] / 64
    _, bar = _wall(64)
    heat = 20000 + 12000 * uu + 4000 * vv + 2500 * bar  # a slab warmer to the right, the digit a little warmer
    Image.fromarray(heat.astype(np.uint16)).save(tmp_path / "slab.thermal.png")
    arr = np.asarray(png(make_preview(tmp_path / "slab.thermal.png", "thermal"))).astype(float)
    lum = 0.2126 * arr[..., 0] + 0.7152 * arr[..., 1] + 0.0722 * arr[..., 2]
    assert lum[bar].mean() > lum[~bar].mean() + 80
    left, right = lum[:, :8][~bar[:, :8]].mean(), lum[:, -8:][~bar[:, -8:]].mean()
    assert abs(left - right) < 20, (left, right)


def test_the_dominant_plane_is_the_one_most_pixels_lie_on():
    vv, uu = np.mgrid[0:50, 0:60].astype(float)
    plane = 3.0 + 0.2 * uu - 0.1 * vv
    bump = np.zeros_like(plane)
    bump[10:25, 20:40] = 5.0  # a tenth of the pixels stand out of it
    valid = np.ones(plane.shape, bool)
    valid[0:5, 0:5] = False
    values = plane + bump
    values[~valid] = -1e3  # what invalid pixels hold does not matter
    residual = dominant_plane_residual(values, valid)
    np.testing.assert_allclose(residual[valid], bump[valid], atol=1e-6)
    flat = dominant_plane_residual(np.full((8, 8), 2.0), np.ones((8, 8), bool))
    assert np.abs(flat).max() < 1e-9
    few = dominant_plane_residual(np.arange(64.0).reshape(8, 8), np.eye(8, dtype=bool))  # a line: no plane fixed
    assert np.isfinite(few).all()


def _brightest_row(data: bytes) -> int:
    spec = np.asarray(png(data)).astype(float).sum(axis=2)
    return int(spec.mean(axis=1).argmax())


def test_audio_spectrogram_puts_high_tones_higher(tmp_path):
    sr = 16000
    t = np.arange(2 * sr) / sr
    low = write_wav(tmp_path / "low.wav", 0.5 * np.sin(2 * np.pi * 300 * t), sr)
    high = write_wav(tmp_path / "high.wav", 0.5 * np.sin(2 * np.pi * 4000 * t), sr)
    assert _brightest_row(make_preview(high, "audio")) < _brightest_row(make_preview(low, "audio"))


def test_audio_preview_reads_only_the_start_of_a_long_recording(tmp_path):
    path = write_wav(tmp_path / "long.wav", np.zeros(8000 * 90, np.float32) + 0.01, 8000)
    wave, sr = read_audio_head(path)
    assert sr == 8000 and wave.size == 30 * 8000


def test_video_poster_is_the_middle_frame(tmp_path):
    frames = moving_blob(num_frames=12, size=64, step=3.0)
    path = write_video(tmp_path / "clip.mp4", frames)
    arr = np.asarray(png(make_preview(path, "video"))).astype(float).sum(axis=2)
    centroid = (arr * np.arange(arr.shape[1])).sum() / arr.sum()
    middle = 64 * 0.25 + 3.0 * 6  # the blob's x in frame 6 of 0..11
    expected = middle * arr.shape[1] / 64
    assert abs(centroid - expected) < 4


def test_imu_is_two_lanes_accelerometer_over_gyroscope(tmp_path):
    assert signal_lanes("imu", 6) == [([0, 1, 2], True), ([3, 4, 5], True)]
    arr = np.asarray(png(make_preview(MAKERS["imu"](tmp_path), "imu"))).astype(int)
    h = arr.shape[0]

    def has(colour, rows) -> bool:
        return bool((np.abs(arr[rows] - colour).sum(axis=2) < 60).any())
    assert has(PALETTE[0], slice(0, h // 2)) and not has(PALETTE[0], slice(h // 2, h))
    assert has(PALETTE[3], slice(h // 2, h)) and not has(PALETTE[3], slice(0, h // 2))


def test_time_series_gets_a_lane_per_channel_beyond_three(tmp_path):
    assert signal_lanes("timeseries", 2) == [([0, 1], False)]
    assert [lane for lane, _ in signal_lanes("timeseries", 5)] == [[0], [1], [2], [3], [4]]
    assert len(signal_lanes("timeseries", 40)) == 8
    np.savetxt(tmp_path / "s.csv", np.random.default_rng(0).standard_normal((5000, 5)), delimiter=",")
    img = png(make_preview(tmp_path / "s.csv", "timeseries"))
    assert img.size == (MAX_SIZE, MAX_SIZE // 2)


def test_a_modality_without_a_picture_gets_a_card(tmp_path):
    path = tmp_path / "reading.sonar"
    path.write_bytes(b"\x00\x01")
    img = png(make_preview(path, "sonar"))
    assert max(img.size) <= MAX_SIZE and np.asarray(img).std() > 5


@pytest.mark.parametrize("name,modality,content", [
    ("empty.png", "image", b""),
    ("broken.png", "image", b"\x89PNG\r\n\x1a\n" + b"\x00" * 20),
    ("noise.wav", "audio", b"RIFF" + b"\x07" * 200),
    ("noise.mp4", "video", b"\x00\x00\x00\x18ftypmp42" + b"\x01" * 300),
    ("noise.depth.png", "depth", b"not an image at all"),
    ("noise.imu.npy", "imu", b"\x93NUMPY garbage"),
])
def test_unreadable_files_are_a_typed_error_naming_the_file(tmp_path, name, modality, content):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(PreviewError) as info:
        make_preview(path, modality)
    assert name in str(info.value) and info.value.status == 422


def test_nan_depth_is_refused(tmp_path):
    np.save(tmp_path / "nan.depth.npy", np.full((16, 16), np.nan, np.float32))
    with pytest.raises(PreviewError, match="NaN"):
        make_preview(tmp_path / "nan.depth.npy", "depth")


def test_thumb_cache_is_an_lru_bounded_by_bytes():
    cache = ThumbCache(max_bytes=100)
    cache.put(("a",), b"x" * 40)
    cache.put(("b",), b"x" * 40)
    assert cache.get(("a",)) is not None  # "a" is now the most recent
    cache.put(("c",), b"x" * 40)
    assert cache.get(("b",)) is None and cache.get(("a",)) is not None and cache.get(("c",)) is not None
    assert cache.bytes == 80 and len(cache) == 2
    cache.put(("huge",), b"x" * 101)
    assert cache.get(("huge",)) is None and cache.bytes == 80
    cache.put(("a",), b"y" * 10)
    assert cache.get(("a",)) == b"y" * 10 and cache.bytes == 50
