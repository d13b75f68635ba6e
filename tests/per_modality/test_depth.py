"""Depth preprocessing: holes carry no signal and plane removal lets a small relief through.

Seen by a pinhole camera, a 3-D plane has a disparity (1/depth) that is linear in the pixel
coordinates, which is why the detrend fits a plane to disparity."""
import numpy as np
import pytest

from binder.errors import ConfigError, ModalityError
from modalities.depth import Depth, fill_from_neighbours, fit_plane_residual


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
    x = Depth(image_size=64, patch=8, hole_fill="mean").prepare(tmp_path / "holes.depth.npy")[0].numpy()
    assert np.abs(x[10:14, 10:14]).max() < 1.0  # near the mean after standardizing, not an outlier


def test_all_invalid_depth_is_an_error(tmp_path):
    np.save(tmp_path / "void.depth.npy", np.zeros((16, 16), np.float32))
    with pytest.raises(ModalityError, match="no valid pixels"):
        Depth().prepare(tmp_path / "void.depth.npy")


def test_plane_residual_of_a_plane_is_zero():
    yy, xx = np.mgrid[0:8, 0:8].astype(np.float32)
    plane = 2 * xx - 3 * yy + 5
    assert np.abs(fit_plane_residual(plane, np.ones_like(plane, bool))).max() < 1e-4


def test_local_fill_gives_a_hole_on_a_slope_its_neighbours_depth(tmp_path):
    """On a tilted wall the map's mean is far from the surroundings of a hole near its corner: after plane
    removal a mean-filled hole reads as a step, a locally filled one as the wall."""
    depth, _ = _tilted_wall_with_bump()
    depth[4:8, 4:8] = 0.0  # a hole near the wall's nearest corner, wall on every side of it
    np.save(tmp_path / "corner.depth.npy", depth)
    step = {fill: np.abs(Depth(image_size=64, patch=8, detrend="plane", hole_fill=fill)
                         .prepare(tmp_path / "corner.depth.npy")[0].numpy()[4:8, 4:8]).max()
            for fill in ("mean", "local")}
    assert step["mean"] > 2.0 and step["local"] < 0.5


def test_fill_from_neighbours_keeps_valid_pixels_and_reaches_every_hole():
    yy, xx = np.mgrid[0:32, 0:128].astype(np.float32)
    x = 0.01 * xx + 1.0
    valid = np.ones_like(x, bool)
    valid[8:10, 8:10] = False  # small: filled from its ring
    valid[:, 24:] = False  # wider than every scale: the far side continues the plane
    x[20:22, 4:6] += 0.5  # a bump on the valid side
    out = fill_from_neighbours(np.where(valid, x, 0.0), valid)
    assert np.array_equal(out[valid], x[valid]) and np.isfinite(out).all()
    assert np.abs(out[8:10, 8:10] - x[8:10, 8:10]).max() < 0.01  # the slope carried into a small hole
    assert np.abs(out[:, 127] - x[:, 127]).max() < 0.05  # and across one wider than every scale


def test_an_unknown_hole_fill_is_a_config_error():
    with pytest.raises(ConfigError, match="hole_fill"):
        Depth(hole_fill="zero")


@pytest.mark.parametrize("denoise", ["median3", "median5"])
def test_median_denoise_removes_speckle_and_keeps_a_wide_relief(tmp_path, denoise):
    depth, bump = _tilted_wall_with_bump()  # the bump: a 1 cm disc about 11 px across
    speckled = depth.copy()
    speckled[3::9, 5::9] *= 1.05  # isolated wrong returns (49 of them, 9 px apart), 5 % of the depth
    np.save(tmp_path / "clean.depth.npy", depth)
    np.save(tmp_path / "speckle.depth.npy", speckled)

    def read(name: str, **options) -> np.ndarray:
        return Depth(image_size=64, patch=8, detrend="plane", **options).prepare(tmp_path / name)[0].numpy()
    contrast = lambda x: x[bump].mean() - x[~bump].mean()  # noqa: E731
    plain_error = np.abs(read("speckle.depth.npy") - read("clean.depth.npy")).mean()
    denoised = read("speckle.depth.npy", denoise=denoise) - read("clean.depth.npy", denoise=denoise)
    denoised_error = np.abs(denoised).mean()
    assert denoised_error < plain_error / 3  # the speckle is (nearly) gone
    assert contrast(read("clean.depth.npy", denoise=denoise)) > 3.0  # the relief still stands out
    with pytest.raises(ConfigError, match="denoise"):
        Depth(denoise="bilateral")


@pytest.mark.parametrize("n", [1, 2, 5])
def test_valid_pixels_on_one_line_fill_with_their_mean_not_an_extrapolated_plane(n):
    """Fewer than three valid pixels, or all in one row, fix no plane: the holes take the valid
    pixels' mean instead of a line's slope run out across the map."""
    x = np.zeros((16, 16), np.float32)
    valid = np.zeros_like(x, bool)
    valid[0, :n] = True
    x[0, :n] = np.arange(n, dtype=np.float32) + 1.0  # a steep ramp along the row
    out = fill_from_neighbours(x, valid)
    assert np.isfinite(out).all() and out.min() >= 1.0 and out.max() <= n  # a line's plane would reach 16


def test_overlapping_patches_tokenize_every_stride_and_survive_a_save(tmp_path):
    import torch

    from binder.config import BindConfig, ModalityConfig
    from binder.model import BindingModel

    opts = {"image_size": 32, "patch": 8, "stride": 4}
    tok = Depth(**opts).build_tokenizer(Depth(**opts).options, 64)
    assert tok.grid == (7, 7) and tok(torch.zeros(2, 1, 32, 32)).shape == (2, 1 + 49, 64)
    plain = Depth(image_size=32, patch=8)
    assert plain.build_tokenizer(plain.options, 64).grid == (4, 4)  # no stride: patches side by side
    torch.manual_seed(0)
    model = BindingModel(BindConfig(modalities=(ModalityConfig("depth", opts),))).eval()
    model.save(tmp_path / "m")
    again = BindingModel.load(tmp_path / "m").eval()
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(again.encode("depth", x), model.encode("depth", x))
    for bad in (0, 9):
        with pytest.raises(ConfigError, match="stride"):
            Depth(image_size=32, patch=8, stride=bad)
