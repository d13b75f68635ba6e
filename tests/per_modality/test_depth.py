"""Depth preprocessing: holes carry no signal and plane removal lets a small relief through.

Seen by a pinhole camera, a 3-D plane has a disparity (1/depth) that is linear in the pixel
coordinates, which is why the detrend fits a plane to disparity."""
import numpy as np
import pytest

from binder.errors import ModalityError
from modalities.depth import Depth, fit_plane_residual


def _tilted_wall_with_bump(size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    depth = 1.0 / (1.0 - 0.006 * xx - 0.003 * yy)  # a tilted 3-D plane: its disparity is linear in pixels
    bump = ((xx - 40) ** 2 + (yy - 20) ** 2) < 36
    depth[bump] -= 0.01  # 1 cm relief toward the camera
    return depth, bump


def test_plane_detrend_exposes_a_small_relief(tmp_path):
    depth, bump = _tilted_wall_with_bump()
    np.save(tmp_path / "wall.depth.npy", depth)
    flat = Depth(image_size=64, patch=8, detrend="plane").prepare(tmp_path / "wall.depth.npy")[0].numpy()
    raw = Depth(image_size=64, patch=8).prepare(tmp_path / "wall.depth.npy")[0].numpy()
    contrast = lambda x: x[bump].mean() - x[~bump].mean()  # noqa: E731
    assert contrast(flat) > 3.0  # the bump stands out by several standard deviations
    assert abs(contrast(raw)) < contrast(flat) / 3  # without detrending, the wall's slope dominates


def test_holes_are_filled_with_the_mean_not_zero(tmp_path):
    depth, _ = _tilted_wall_with_bump()
    depth[10:14, 10:14] = 0.0  # invalid pixels
    np.save(tmp_path / "holes.depth.npy", depth)
    x = Depth(image_size=64, patch=8).prepare(tmp_path / "holes.depth.npy")[0].numpy()
    assert np.abs(x[10:14, 10:14]).max() < 1.0  # near the mean after standardizing, not an outlier


def test_all_invalid_depth_is_an_error(tmp_path):
    np.save(tmp_path / "void.depth.npy", np.zeros((16, 16), np.float32))
    with pytest.raises(ModalityError, match="no valid pixels"):
        Depth().prepare(tmp_path / "void.depth.npy")


def test_plane_residual_of_a_plane_is_zero():
    yy, xx = np.mgrid[0:8, 0:8].astype(np.float32)
    plane = 2 * xx - 3 * yy + 5
    assert np.abs(fit_plane_residual(plane, np.ones_like(plane, bool))).max() < 1e-4
