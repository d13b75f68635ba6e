"""Tests of the pure training-time augmentations in modalities.augment."""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from modalities.augment import (
    AudioAugment,
    DepthAugment,
    SignalAugment,
    ThermalAugment,
    VideoAugment,
    augment_depth,
    augment_frames,
    augment_signal,
    augment_thermal,
    augment_wave,
    default_options,
    mask_spectrogram,
)
from modalities.augment import audio as A
from modalities.augment import raster as R
from modalities.augment import signals as S
from modalities.augment import video as V

SR = 16000


def _tone(freqs=(220.0, 440.0, 660.0), seconds=1.0, sr=SR) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return sum(np.sin(2 * np.pi * f * t) / (i + 1) for i, f in enumerate(freqs)).astype(np.float32) * 0.3


def _snr_db(clean: np.ndarray, noisy: np.ndarray) -> float:
    clean64 = clean.astype(np.float64)
    return 10 * math.log10(np.mean(clean64 ** 2) / np.mean((noisy.astype(np.float64) - clean64) ** 2))


def _peak_hz(wave: np.ndarray, sr: int = SR) -> float:
    spec = np.abs(np.fft.rfft(wave * np.hanning(len(wave))))
    return float(np.fft.rfftfreq(len(wave), 1 / sr)[np.argmax(spec)])


# ---------------------------------------------------------------- determinism, for every draw function

_ALL_ON_AUDIO = AudioAugment(p_speed=1, p_pitch=1, p_shift=1, p_silence=1, p_gain=1, noise_p=1)
_CASES = {
    "audio": (lambda: _tone(seconds=0.5), lambda x, rng: augment_wave(x, rng, _ALL_ON_AUDIO, SR)),
    "specaugment": (lambda: torch.randn(2, 1, 32, 50, generator=torch.Generator().manual_seed(0)),
                    lambda x, rng: mask_spectrogram(x, rng, AudioAugment(time_masks=2, time_mask_frames=10))),
    "depth": (lambda: (np.linspace(0.5, 3.0, 24 * 32, dtype=np.float32).reshape(24, 32), 0),
              lambda x, rng: augment_depth(x, rng, DepthAugment(p_crop=1, p_affine=1, p_noise=1, p_holes=1))),
    "thermal": (lambda: (np.linspace(0, 255, 24 * 32, dtype=np.float32).reshape(24, 32), 8),
                lambda x, rng: augment_thermal(x, rng, ThermalAugment(p_crop=1, p_affine=1, p_noise=1, p_gain=1))),
    "video": (lambda: (np.random.default_rng(0).random((6, 16, 20, 3)) * 255).astype(np.uint8),
              lambda x, rng: augment_frames(x, rng, VideoAugment(p_temporal=1, p_crop=1))),
    "signal": (lambda: np.random.default_rng(0).standard_normal((6, 64)).astype(np.float32),
               lambda x, rng: augment_signal(x, rng, SignalAugment(p_scale=1, p_jitter=1, p_time_warp=1,
                                                                   p_magnitude_warp=1, p_crop=1, rotate_deg=10))),
}


def _as_arrays(out) -> list[np.ndarray]:
    items = out if isinstance(out, tuple) else (out,)
    return [np.asarray(i) for i in items]


def _same(a, b) -> bool:
    xa, xb = _as_arrays(a), _as_arrays(b)
    return len(xa) == len(xb) and all(p.shape == q.shape and np.array_equal(p, q, equal_nan=True)
                                      for p, q in zip(xa, xb))


@pytest.mark.parametrize("name", sorted(_CASES))
def test_draw_is_deterministic_varies_with_step_and_keeps_input(name):
    make, draw = _CASES[name]
    raw = make()
    before = [a.copy() for a in _as_arrays(raw)]
    first = draw(raw, np.random.default_rng([7, 3, 1]))
    again = draw(raw, np.random.default_rng([7, 3, 1]))
    other = draw(raw, np.random.default_rng([7, 4, 1]))
    assert _same(first, again)
    assert not _same(first, other)
    assert all(np.array_equal(b, a) for b, a in zip(before, _as_arrays(raw))), "input was mutated"


def test_disabled_options_return_an_equal_copy():
    wave = _tone(seconds=0.2)
    out = augment_wave(wave, np.random.default_rng(0), AudioAugment(enabled=False), SR)
    assert np.array_equal(out, wave) and out is not wave


# ---------------------------------------------------------------- audio


@pytest.mark.parametrize("color", ["white", "pink", "brown"])
@pytest.mark.parametrize("snr", [5.0, 20.0])
def test_add_noise_hits_requested_snr(color, snr):
    clean = _tone()
    noisy = A.add_noise(clean, np.random.default_rng(1), snr, color)
    assert noisy.dtype == np.float32 and noisy.shape == clean.shape
    assert abs(_snr_db(clean, noisy) - snr) < 0.5


def test_colored_noise_has_more_low_frequency_energy():
    def low_share(color):
        noise = A.colored_noise((SR,), np.random.default_rng(2), color)
        power = np.abs(np.fft.rfft(noise)) ** 2
        freqs = np.fft.rfftfreq(SR, 1 / SR)
        return power[freqs < 500].sum() / power.sum()

    white, pink, brown = low_share("white"), low_share("pink"), low_share("brown")
    assert white < 0.1 and pink > 2 * white and brown > pink
    assert pink < 0.95  # pink is not brown: it keeps real energy above 500 Hz


def test_noise_on_silent_signal_is_finite_and_skipped():
    silent = np.zeros(SR // 4, np.float32)
    out = A.add_noise(silent, np.random.default_rng(0), 10.0, "pink")
    assert np.isfinite(out).all() and np.array_equal(out, silent)
    drawn = augment_wave(silent, np.random.default_rng(0), AudioAugment(noise_p=1), SR)
    assert np.isfinite(drawn).all()


def test_noise_files_from_folder(tmp_path):
    import soundfile  # a dependency of anybind: missing must fail, not skip
    noise = np.random.default_rng(5).standard_normal(3000).astype(np.float32) * 0.1
    soundfile.write(tmp_path / "b.wav", noise, 8000)
    soundfile.write(tmp_path / "a.wav", noise[:500], 8000)  # shorter than the clip: looped
    assert [p.name for p in A.noise_files(tmp_path)] == ["a.wav", "b.wav"]
    opts = AudioAugment(p_speed=0, p_pitch=0, p_shift=0, p_silence=0, p_gain=0, noise_p=1, snr_db=(10, 10),
                        noise_dir=str(tmp_path), noise_file_p=1.0)
    clean = _tone(seconds=0.5)
    out = augment_wave(clean, np.random.default_rng(3), opts, SR)
    assert abs(_snr_db(clean, out) - 10.0) < 0.5
    assert np.array_equal(out, augment_wave(clean, np.random.default_rng(3), opts, SR))
    assert (str(tmp_path / "a.wav"), SR) in A._NOISE_CACHE or (str(tmp_path / "b.wav"), SR) in A._NOISE_CACHE


@pytest.mark.parametrize("k", [37, -50, 0])
def test_shift_moves_an_onset_by_exactly_k_without_wrapping(k):
    wave = np.zeros(400, np.float32)
    wave[100] = 1.0
    wave[-1] = 0.5  # would wrap to the start under a circular roll
    out = A.shift(wave, k)
    assert out.shape == wave.shape and int(np.argmax(out)) == 100 + k
    if k > 0:
        assert not out[:k].any()
    if k < 0:
        assert not out[k:].any()


def test_stereo_shift_and_crop_keep_layout():
    wave = np.stack([_tone(seconds=0.1), -_tone(seconds=0.1)])
    assert A.shift(wave, 10).shape == wave.shape
    assert A.crop(wave, 100, 500).shape == (2, 500)
    assert np.array_equal(A.crop(wave, 100, 500), wave[:, 100:600])


def test_silence_padding_adds_near_zero_samples_both_ends():
    wave = _tone(seconds=0.25)
    out = A.add_silence(wave, 800, 1600, np.random.default_rng(0), floor_db=-70.0)
    assert out.shape == (len(wave) + 2400,)
    assert np.abs(out[:800]).max() < 3e-3 and np.abs(out[-1600:]).max() < 3e-3
    assert out[:800].any()  # a noise floor, not digital zeros
    assert np.array_equal(out[800:-1600], wave)
    plain = A.add_silence(wave, 5, 7)
    assert not plain[:5].any() and not plain[-7:].any()


@pytest.mark.parametrize("db", [-12.0, 6.0])
def test_gain_changes_rms_by_requested_db(db):
    wave = _tone(seconds=0.25)
    out = A.apply_gain(wave, db)
    rms_out, rms_in = (np.sqrt(np.mean(w.astype(np.float64) ** 2)) for w in (out, wave))
    measured = 20 * math.log10(rms_out / rms_in)
    assert abs(measured - db) < 1e-3


def test_speed_perturb_shortens_and_raises_pitch():
    wave = _tone((400.0,), seconds=1.0)
    out = A.speed_perturb(wave, 1.1)
    assert abs(len(out) - len(wave) / 1.1) <= 2
    assert abs(_peak_hz(out) - 440.0) / 440.0 < 0.02


@pytest.mark.parametrize("semitones", [2.0, -2.0])
def test_pitch_shift_keeps_length_and_moves_peak(semitones):
    wave = _tone((440.0,), seconds=1.5)
    out = A.pitch_shift(wave, SR, semitones)
    assert out.shape == wave.shape and out.dtype == np.float32
    expected = 440.0 * 2 ** (semitones / 12)
    assert abs(_peak_hz(out) - expected) / expected < 0.03


def test_spec_masks_zero_exactly_the_requested_bands():
    x = torch.randn(2, 1, 16, 40) + 5.0  # no natural zeros
    out = A.apply_spec_masks(x, [(3, 4), (20, 2)], [(5, 3)], fill="zero")
    zero_frames = (out == 0).all(dim=-2).squeeze(1)  # (2, frames)
    zero_bins = (out == 0).all(dim=-1).squeeze(1)  # (2, mels)
    assert zero_frames.sum(dim=-1).tolist() == [6, 6] and zero_bins.sum(dim=-1).tolist() == [3, 3]
    assert (out == 0).sum().item() == 2 * (6 * 16 + 3 * 40 - 6 * 3)
    untouched = torch.ones(16, 40, dtype=torch.bool)
    untouched[:, 3:7] = untouched[:, 20:22] = untouched[5:8, :] = False
    assert torch.equal(x[..., untouched], out[..., untouched])
    mean = A.apply_spec_masks(x[0, 0], [(0, 2)], [], fill="mean")
    assert torch.allclose(mean[:, :2], x[0, 0].mean().expand(16, 2))


def test_mask_spectrogram_bounds_and_keeps_input():
    x = torch.randn(3, 1, 32, 60) + 5.0
    before = x.clone()
    opts = AudioAugment(time_masks=2, time_mask_frames=8, freq_masks=1, freq_mask_bins=4)
    out = mask_spectrogram(x, np.random.default_rng(0), opts)
    assert torch.equal(x, before) and out.shape == x.shape
    for clip in out[:, 0]:
        assert int((clip == 0).all(dim=0).sum()) <= 16 and int((clip == 0).all(dim=1).sum()) <= 4
    assert (out == 0).any()


@pytest.mark.parametrize("factor", [0.9, 1.1, 1.25])
def test_warp_frequency_moves_a_formant_by_the_factor(factor):
    x = torch.zeros(1, 64, 10)
    x[:, 20, :] = 1.0  # one formant-like ridge at mel bin 20
    out = A.warp_frequency(x, factor)
    ridge = (out[0, :, 0] * torch.arange(64)).sum() / out[0, :, 0].sum()  # the ridge's centre of mass
    assert abs(float(ridge) - 20 * factor) < 0.05 and out.shape == x.shape
    assert torch.equal(A.warp_frequency(x, 1.0), x)


def test_mask_spectrogram_warps_with_probability_p_warp():
    x = torch.randn(40, 1, 32, 20) + 5.0
    never = AudioAugment(p_warp=0.0, time_masks=0, freq_masks=0)
    always = AudioAugment(p_warp=1.0, warp=(1.2, 1.2), time_masks=0, freq_masks=0)
    assert torch.equal(mask_spectrogram(x, np.random.default_rng(0), never), x)
    assert torch.allclose(mask_spectrogram(x, np.random.default_rng(0), always), A.warp_frequency(x, 1.2))
    half = mask_spectrogram(x, np.random.default_rng(0), AudioAugment(p_warp=0.5, time_masks=0, freq_masks=0))
    changed = sum(not torch.equal(a, b) for a, b in zip(half, x))
    assert 8 <= changed <= 32  # p_warp 0.5 of 40 clips


def test_audio_options_validation_names_the_field():
    with pytest.raises(ValueError, match="snr_db"):
        AudioAugment(snr_db=(30, 5))
    with pytest.raises(ValueError, match="p_pitch"):
        AudioAugment(p_pitch=1.5)
    with pytest.raises(ValueError, match="noise_colors"):
        AudioAugment(noise_colors=("violet",))
    with pytest.raises(ValueError, match="noise_dir"):
        AudioAugment(noise_dir="/no/such/folder")
    with pytest.raises(ValueError, match="warp"):
        AudioAugment(warp=(0.0, 1.1))


# ---------------------------------------------------------------- rasters


def _depth_map() -> np.ndarray:
    yy, xx = np.mgrid[0:30, 0:40]
    depth = (1.0 + 0.02 * xx + 0.01 * yy).astype(np.float32)
    depth[10:15, 10:20] = 0.0  # an invalid region
    return depth


def test_raster_crop_and_rotate_keep_shape_and_units():
    depth = _depth_map()
    box = R.draw_crop_box(depth.shape, np.random.default_rng(0), (0.5, 0.8), (0.75, 1.33))
    for out in (R.resized_crop(depth, box, valid_aware=True), R.rotate(depth, 15.0, valid_aware=True),
                R.translate(depth, 3.0, -2.0, valid_aware=True), R.affine(depth, -8.0, 1.5, 2.5, valid_aware=True)):
        assert out.shape == depth.shape and out.dtype == np.float32 and np.isfinite(out).all()
        valid = out[out > 0]
        assert valid.min() >= 1.0 - 1e-4 and valid.max() <= depth.max() + 1e-4  # metric, not normalised
    identity = R.resized_crop(depth, (0.0, 0.0, 40.0, 30.0))
    assert np.allclose(identity, depth, atol=1e-5)
    plain = R.rotate(np.abs(depth - 1.5), 12.0)  # a thermal-like map: blended, edges replicated
    assert plain.shape == depth.shape and np.isfinite(plain).all() and plain.min() >= 0


def test_valid_aware_warp_never_invents_depth_between_hole_and_surface():
    depth = _depth_map()
    out = R.resized_crop(depth, (2.3, 1.7, 31.0, 23.0), valid_aware=True)
    assert (out == 0).any() and (out[out > 0] >= 1.0 - 1e-4).all()


def test_holes_only_zero_pixels_and_fraction_is_bounded():
    depth = _depth_map()
    dropped = R.drop_pixels(depth, np.random.default_rng(0), 0.1)
    changed = dropped != depth
    assert (dropped[changed] == 0).all()
    positive = depth + 1.0
    assert (R.drop_pixels(positive, np.random.default_rng(0), 0.1) == 0).sum() == round(0.1 * depth.size)
    holes = R.add_holes(depth, np.random.default_rng(1), 3, 4.0)
    assert ((holes == depth) | (holes == 0)).all()
    assert ((holes == 0) & (depth != 0)).sum() <= 3 * math.pi * 16 + 3 * 4
    opts = DepthAugment(p_crop=0, p_affine=0, p_noise=0, p_holes=1, max_pixel_drop=0.05, max_holes=2,
                        hole_radius_frac=0.1)
    for seed in range(5):
        out, bits = augment_depth((depth, 16), np.random.default_rng(seed), opts)
        assert bits == 16 and ((out == depth) | (out == 0)).all()
        new_zeros = ((out == 0) & (depth != 0)).mean()
        assert new_zeros <= 0.05 + 2 * math.pi * 3.0 ** 2 / depth.size + 1e-9


def test_depth_noise_keeps_invalid_pixels_invalid():
    depth = _depth_map()
    out = R.add_sensor_noise(depth, np.random.default_rng(0), 0.01, "value")
    assert (out[depth == 0] == 0).all() and not np.array_equal(out, depth)


def test_thermal_gain_offset_is_exact_and_bits_are_respected():
    frame = np.linspace(10, 200, 24 * 32, dtype=np.float32).reshape(24, 32)
    assert np.array_equal(R.gain_offset(frame, 1.25, -7.5), frame * np.float32(1.25) + np.float32(-7.5))
    opts = ThermalAugment(p_crop=0, p_affine=0, p_noise=0, p_gain=1, gain=(3.0, 3.0), offset_frac=(0.0, 0.0))
    out, bits = augment_thermal((frame, 8), np.random.default_rng(0), opts)
    assert bits == 8 and out.max() == 255.0 and np.array_equal(out, np.minimum(frame * 3, 255))
    bare = augment_thermal(frame, np.random.default_rng(0), opts)
    assert isinstance(bare, np.ndarray) and np.allclose(bare, frame * 3)


def test_defocus_blurs_by_a_share_of_the_side_keeps_the_mean_and_off_leaves_the_draws_as_they_were():
    frame = np.zeros((32, 48), np.float32)
    frame[16, 24] = 1.0
    out = R.defocus(frame, 0.05)  # sigma 1.6 px on a 32 px side
    assert out.shape == frame.shape and out.dtype == np.float32 and not np.shares_memory(out, frame)
    assert math.isclose(float(out.sum()), 1.0, rel_tol=1e-3) and 0 < out.max() < 0.1
    assert math.isclose(float((out * (np.arange(48) - 24) ** 2).sum()), 1.6 ** 2, rel_tol=0.05)  # its variance
    assert np.array_equal(R.defocus(frame, 0.0), frame)
    assert np.array_equal(R.defocus(frame, 1e6), R.defocus(frame, 1.0))  # no kernel wider than the map
    for bad in (-0.1, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="blur fraction"):
            R.defocus(frame, bad)
    still = ThermalAugment(p_crop=0, p_affine=0, p_noise=1, p_gain=0)
    blurred = ThermalAugment(p_crop=0, p_affine=0, p_noise=1, p_gain=0, p_blur=1, blur_frac=(0.05, 0.05))
    a, _ = augment_thermal((frame, 0), np.random.default_rng(3), still)
    b, _ = augment_thermal((frame, 0), np.random.default_rng(3), dataclasses.replace(still, blur_frac=(0.1, 0.2)))
    assert np.array_equal(a, b)  # p_blur 0 draws nothing: older recipes' variations are unchanged
    c, _ = augment_thermal((frame, 0), np.random.default_rng(3), blurred)
    assert c[16, 24] < 0.2


def test_raster_blur_perturbation_is_the_defocus():
    from modalities.raster import RASTER_PERTURBATIONS

    frame = np.random.default_rng(0).uniform(0, 1000, (32, 32)).astype(np.float32)
    out, bits = RASTER_PERTURBATIONS["blur"].apply((frame, 16), 0.03, np.random.default_rng(0), None)
    assert bits == 16 and np.allclose(out, R.defocus(frame, 0.03))  # no zeros: the plain blur
    depth = np.full((32, 32), 2.0, np.float32)
    depth[:, 16:] = 3.0
    depth[10:14, 4:8] = 0.0  # a hole inside the 2 m half
    out, _ = RASTER_PERTURBATIONS["blur"].apply((depth, 16), 0.05, np.random.default_rng(0), None)
    assert np.array_equal(out == 0, depth == 0)  # holes stay holes, no valid pixel becomes one
    near = out[:, :10][depth[:, :10] > 0]  # the 2 m half around the hole, 6 px and more from the edge
    assert np.allclose(near, 2.0, atol=1e-3) and out[depth > 0].min() >= 2.0 - 1e-5  # never blended with 0s
    assert 2.0 < out[16, 16] < 3.0  # the real edge still blurs


def test_perspective_moves_the_corners_where_asked_and_a_line_stays_a_line():
    shifts = np.array([[3.0, 2.0], [-4.0, 1.0], [0.0, -3.0], [2.0, 0.0]])
    m = R.perspective_matrix((30, 40), shifts)
    corners = np.array([[0, 0, 1], [39, 0, 1], [39, 29, 1], [0, 29, 1]], np.float64)
    moved = (m @ corners.T).T
    assert np.allclose(moved[:, :2] / moved[:, 2:], corners[:, :2] + shifts, atol=1e-4)
    assert np.allclose(R.perspective_matrix((30, 40), np.zeros((4, 2))), np.eye(3), atol=1e-9)
    frame = np.zeros((30, 40), np.float32)
    frame[:, 20] = 1.0  # a vertical line
    out = R.perspective(frame, shifts)
    assert out.shape == frame.shape and out.dtype == np.float32
    cols = (out * np.arange(40)).sum(1) / np.maximum(out.sum(1), 1e-6)  # the line's column in each row
    rows = np.arange(30)
    fit = np.polyfit(rows, cols, 1)
    assert np.abs(np.polyval(fit, rows) - cols).max() < 0.3 and abs(fit[0]) > 0.01  # straight, but tilted


def test_valid_aware_perspective_keeps_holes_and_units_and_off_draws_nothing():
    depth = _depth_map()
    shifts = R.draw_perspective(depth.shape, np.random.default_rng(0), 0.2)
    assert np.abs(shifts[:, 0]).max() <= 0.2 * 39 and np.abs(shifts[:, 1]).max() <= 0.2 * 29
    out = R.perspective(depth, shifts, valid_aware=True)
    assert (out == 0).any() and (out[out > 0] >= 1.0 - 1e-4).all() and out.max() <= depth.max() + 1e-4
    base = DepthAugment(p_crop=0, p_affine=0, p_noise=1, p_holes=0)
    a, _ = augment_depth((depth, 16), np.random.default_rng(5), base)
    b, _ = augment_depth((depth, 16), np.random.default_rng(5), dataclasses.replace(base, max_perspective=0.3))
    assert np.array_equal(a, b)  # p_perspective 0 draws nothing: older recipes' variations are unchanged
    on = dataclasses.replace(base, p_noise=0, p_perspective=1.0, max_perspective=0.2)
    c, _ = augment_depth((depth, 16), np.random.default_rng(5), on)
    assert not np.array_equal(c, depth) and (c[c > 0] >= 1.0 - 1e-4).all()
    frame = np.linspace(0, 1, 32 * 32, dtype=np.float32).reshape(32, 32)
    t, _ = augment_thermal((frame, 0), np.random.default_rng(5), ThermalAugment(
        p_crop=0, p_affine=0, p_noise=0, p_gain=0, p_perspective=1.0, max_perspective=0.2))
    assert not np.array_equal(t, frame) and t.min() >= 0 and t.max() <= 1 + 1e-6


def test_depth_noise_and_offset_perturbations_keep_holes_as_holes_and_thermal_is_unchanged():
    from modalities.raster import DEPTH_PERTURBATIONS, RASTER_PERTURBATIONS

    depth = _depth_map() * 1000.0  # millimetres, a 16-bit PNG's units
    for name, value in (("noise", 0.05), ("offset", 0.1), ("offset", -2.0)):
        out, bits = DEPTH_PERTURBATIONS[name].apply((depth, 16), value, np.random.default_rng(0), None)
        plain, _ = RASTER_PERTURBATIONS[name].apply((depth, 16), value, np.random.default_rng(0), None)
        assert bits == 16 and (out[depth == 0] == 0).all() and (out >= 0).all()
        assert (plain[depth == 0] != 0).any()  # the plain raster perturbation would fill them
        kept = (depth > 0) & (plain > 0)
        assert np.array_equal(out[kept], plain[kept])  # the same draw where there was a return
    gone, _ = DEPTH_PERTURBATIONS["offset"].apply((depth, 16), -2.0, np.random.default_rng(0), None)
    assert (gone == 0).all()  # pushed past the camera: no return anywhere, not negative depths
    from modalities.depth import Depth
    from modalities.thermal import Thermal
    assert Depth().perturbations() is DEPTH_PERTURBATIONS and Thermal().perturbations() is RASTER_PERTURBATIONS


def test_raster_options_validation_names_the_field():
    with pytest.raises(ValueError, match="crop_scale"):
        DepthAugment(crop_scale=(0.5, 1.5))
    with pytest.raises(ValueError, match="gain"):
        ThermalAugment(gain=(0.0, 1.0))
    with pytest.raises(ValueError, match="p_blur"):
        ThermalAugment(p_blur=1.5)
    with pytest.raises(ValueError, match="blur_frac"):
        ThermalAugment(blur_frac=(-0.1, 0.1))
    with pytest.raises(ValueError, match="blur_frac"):
        ThermalAugment(blur_frac=(0.0, 2.0))
    with pytest.raises(ValueError, match="max_perspective"):
        DepthAugment(max_perspective=0.5)
    with pytest.raises(ValueError, match="p_perspective"):
        ThermalAugment(p_perspective=-0.1)


# ---------------------------------------------------------------- video


def _frames(n: int) -> np.ndarray:
    frames = np.zeros((n, 12, 16, 3), np.uint8)
    for i in range(n):
        frames[i] = 15 * i + 5  # every frame distinct (up to 17 frames in uint8)
    return frames


@pytest.mark.parametrize("n", [4, 5])  # an even and an odd frame count
def test_video_draw_keeps_frame_count_shape_and_dtype(n):
    frames = _frames(n)
    for seed in range(4):
        out = augment_frames(frames, np.random.default_rng(seed), VideoAugment(p_temporal=1, p_crop=1))
        assert out.shape == frames.shape and out.dtype == np.uint8


@pytest.mark.parametrize("k", [1, 2])
def test_temporal_offset_without_jitter_shifts_frames_by_k(k):
    frames = _frames(6)
    out = V.temporal_shift(frames, k)
    assert np.array_equal(out[: 6 - k], frames[k:])
    assert all(np.array_equal(f, frames[-1]) for f in out[6 - k:])
    assert np.array_equal(V.select_frames(frames, V.frame_indices(6, float(k), 1.0, np.zeros(6))), out)


def test_frame_indices_with_jitter_and_stride_run_forward_in_range():
    rng = np.random.default_rng(0)
    opts = VideoAugment(max_jitter=1.5, stride=(0.5, 2.0), max_offset_frac=0.5)
    for _ in range(50):
        idx = V.draw_frame_indices(5, rng, opts)
        assert len(idx) == 5 and idx.min() >= 0 and idx.max() <= 4 and (np.diff(idx) >= 0).all()
    assert V.frame_indices(9, 0.0, 2.0).tolist() == [0, 2, 4, 6, 8, 8, 8, 8, 8]


def test_crop_frames_applies_one_box_to_all_frames():
    frames = _frames(3)
    out = V.crop_frames(frames, (2.0, 1.0, 10.0, 8.0))
    assert out.shape == frames.shape and out.dtype == np.uint8
    assert np.array_equal(out, frames)  # constant frames stay constant under any crop
    full = V.crop_frames(frames, (0.0, 0.0, 16.0, 12.0))
    assert np.array_equal(full, frames)


def test_rotate_frames_turns_every_frame_about_its_centre_and_off_draws_nothing():
    frames = np.zeros((2, 33, 33, 3), np.uint8)
    frames[:, 16, 24] = 200  # 8 px right of the centre
    turned = V.rotate_frames(frames, 90.0)  # counter-clockwise: the dot goes 8 px above the centre
    assert turned.shape == frames.shape and turned.dtype == np.uint8
    for f in turned:
        assert np.unravel_index(f[..., 0].argmax(), f.shape[:2]) == (8, 16)
    assert np.array_equal(V.rotate_frames(frames, 0.0), frames)
    base = VideoAugment(p_temporal=0, p_crop=0, p_noise=1)
    clip = np.random.default_rng(0).integers(0, 255, (4, 16, 16, 3), dtype=np.uint8)
    a = V.augment_frames(clip, np.random.default_rng(5), base)
    b = V.augment_frames(clip, np.random.default_rng(5), dataclasses.replace(base, max_rotate_deg=90.0))
    assert np.array_equal(a, b)  # p_rotate 0: no draw, so earlier variations are unchanged
    c = V.augment_frames(clip, np.random.default_rng(5), dataclasses.replace(base, p_rotate=1.0))
    assert not np.array_equal(a, c)
    with pytest.raises(ValueError, match="max_rotate_deg"):
        VideoAugment(max_rotate_deg=200.0)


def test_two_stream_refuses_rotation_its_flow_cache_cannot_follow_and_video_perturbs_by_rotation():
    from binder.errors import ConfigError
    from modalities.two_stream import TwoStream
    from modalities.video import VIDEO_PERTURBATIONS

    with pytest.raises(ConfigError, match="p_rotate"):
        TwoStream().augment_options({"p_rotate": 0.5})
    assert TwoStream().augment_options({"p_noise": 0.5}).p_rotate == 0
    clip = np.random.default_rng(1).integers(0, 255, (3, 16, 16, 3), dtype=np.uint8)
    out = VIDEO_PERTURBATIONS["rotate"].apply(clip, 30.0, np.random.default_rng(0), None)
    assert np.array_equal(out, V.rotate_frames(clip, 30.0))


def _source_indices(out: np.ndarray) -> np.ndarray:
    """Which of ``_frames``' frames each output frame is (every frame is a flat, distinct level)."""
    return (out[:, 0, 0, 0].astype(np.int64) - 5) // 15


def test_sixteen_decoded_frames_give_eight_varied_forward_picks():
    frames, opts = _frames(16), VideoAugment(p_temporal=1, p_crop=0)
    picks = set()
    for seed in range(40):
        out = augment_frames(frames, np.random.default_rng(seed), opts, count=8)
        idx = _source_indices(out)
        assert out.shape == (8, 12, 16, 3) and out.dtype == np.uint8
        assert (np.diff(idx) >= 0).all() and idx.min() >= 0 and idx.max() <= 15
        picks.add(tuple(idx))
    assert len(picks) >= 20  # real variety, not the same 8 frames re-ordered


def test_stride_sets_the_span_of_the_pick():
    fast = V.clip_indices(16, 8, start=-4.0, stride=1.5)  # a faster clip runs past both ends
    assert fast[-1] - fast[0] + 1 > 8 and fast.tolist() == sorted(fast.tolist())
    slow = V.clip_indices(16, 8, start=3.0, stride=0.5)  # a slower one: a shorter window, placed by start
    assert slow.tolist() == [3, 4, 5, 6, 7, 8, 9, 11]  # half the clip: steps of 15/7 · 0.5 frames
    rng = np.random.default_rng(0)
    spans = [np.ptp(V.draw_clip_indices(16, 8, rng, VideoAugment(stride=(1.6, 2.0), max_jitter=0))) for _ in range(20)]
    assert min(spans) > 8


def test_without_temporal_augmentation_the_pick_is_the_uniform_one():
    from modalities.video import uniform_indices

    frames = _frames(16)
    for opts in (VideoAugment(p_temporal=0, p_crop=0), VideoAugment(enabled=False)):
        out = augment_frames(frames, np.random.default_rng(0), opts, count=8)
        assert np.array_equal(_source_indices(out), uniform_indices(16, 8))
    assert V.clip_indices(16, 8, 0.0).tolist() == uniform_indices(16, 8).tolist()  # stride 1 = uniform


def test_draw_frame_indices_is_the_clip_draw_with_count_equal_to_frames():
    opts = VideoAugment(max_jitter=1.5, stride=(0.5, 2.0), max_offset_frac=0.5)
    for seed in range(20):
        a = V.draw_frame_indices(7, np.random.default_rng(seed), opts)
        b = V.draw_clip_indices(7, 7, np.random.default_rng(seed), opts)
        assert np.array_equal(a, b)
    assert VideoAugment().decode_count(8) == 16 and VideoAugment(decode_factor=1).decode_count(8) == 8
    assert VideoAugment(decode_factor=1.3).decode_count(5) == 6


def _augment_frames_before(frames: np.ndarray, rng: np.random.Generator, opts: VideoAugment) -> np.ndarray:
    """augment_frames as it was before K > T decoding (re-pick among the same frames), for comparison."""
    out = frames
    if rng.random() < opts.p_temporal:
        out = V.select_frames(out, V.frame_indices(len(out), *_old_draw(len(out), rng, opts)))
    if rng.random() < opts.p_crop:
        out = V.crop_frames(out, R.draw_crop_box(out.shape[1:3], rng, opts.crop_scale, opts.crop_aspect))
    return out


def _old_draw(n: int, rng: np.random.Generator, opts: VideoAugment) -> tuple:
    stride = rng.uniform(*opts.stride)
    start = (n - 1) * (1.0 - stride) / 2.0 + rng.uniform(-opts.max_offset_frac * n, opts.max_offset_frac * n)
    return start, stride, rng.uniform(-opts.max_jitter, opts.max_jitter, size=n)


@pytest.mark.parametrize("n", [4, 5, 8])
def test_decode_factor_one_reproduces_the_earlier_draw(n):
    frames = (np.random.default_rng(n).random((n, 12, 16, 3)) * 255).astype(np.uint8)
    opts = VideoAugment(decode_factor=1, p_temporal=0.7, p_crop=0.5, max_jitter=1.0)
    for seed in range(30):
        new = augment_frames(frames, np.random.default_rng(seed), opts)  # count defaults to len(frames)
        assert np.array_equal(new, _augment_frames_before(frames, np.random.default_rng(seed), opts))


def test_photometric_and_noise_keep_dtype_and_shape_and_act_only_when_on():
    frames = (np.random.default_rng(0).random((6, 12, 16, 3)) * 200 + 20).astype(np.uint8)
    off = VideoAugment(p_temporal=0, p_crop=0)
    assert np.array_equal(augment_frames(frames, np.random.default_rng(0), off), frames)
    for opts in (VideoAugment(p_temporal=0, p_crop=0, p_photometric=1),
                 VideoAugment(p_temporal=0, p_crop=0, p_noise=1, noise_sigma=(0.02, 0.05))):
        out = augment_frames(frames, np.random.default_rng(0), opts)
        assert out.shape == frames.shape and out.dtype == np.uint8 and not np.array_equal(out, frames)
    floats = frames.astype(np.float32) / 255
    lit = augment_frames(floats, np.random.default_rng(0), VideoAugment(p_temporal=0, p_crop=0, p_photometric=1))
    assert lit.dtype == np.float32 and lit.shape == floats.shape


def test_photometric_gain_flicker_and_shift_are_exact():
    frames = np.full((3, 4, 4, 3), 100, np.uint8)
    out = V.photometric(frames, np.array([1.0, 2.0, 3.0]), 0.1)
    assert out.dtype == np.uint8 and out[:, 0, 0, 0].tolist() == [126, 226, 255]  # 0.1 · 255 added, clipped
    dark = V.photometric(frames, np.ones(3), -1.0)
    assert (dark == 0).all()
    noisy = V.add_noise(np.full((4, 32, 32, 3), 128, np.uint8), 0.05, np.random.default_rng(0))
    assert abs(noisy.astype(np.float64).std() - 0.05 * 255) < 0.5 and noisy.dtype == np.uint8


def test_video_options_validation_names_the_field():
    for field, value in [("decode_factor", 0.5), ("decode_factor", float("nan")), ("p_photometric", 1.5),
                         ("p_noise", -0.1), ("gain", (0.0, 1.0)), ("gain", (1.4, 0.6)), ("flicker", 1.0),
                         ("brightness_shift", (-2.0, 0.1)), ("noise_sigma", (-0.1, 0.05))]:
        with pytest.raises(ValueError, match=field):
            VideoAugment(**{field: value})
    with pytest.raises(ValueError, match="count"):
        augment_frames(_frames(4), np.random.default_rng(0), VideoAugment(), count=0)


# ---------------------------------------------------------------- signals


def _signal(c: int = 6, n: int = 80) -> np.ndarray:
    t = np.linspace(0, 4 * np.pi, n)
    return np.stack([np.sin(t * (i + 1)) + 0.1 * i for i in range(c)]).astype(np.float32)


def test_signal_transforms_preserve_shape_and_stay_finite():
    x = _signal()
    rng = np.random.default_rng(0)
    outs = [S.scale_channels(x, rng.normal(1, 0.1, 6)), S.jitter(x, rng, 0.05), S.time_warp(x, rng.normal(1, 0.3, 4)),
            S.magnitude_warp(x, S.smooth_curve(rng.normal(1, 0.2, 4), 80)), S.window_crop(x, 10, 50),
            S.rotate_triplets(x, S.rotation_matrix([0, 0, 1], 30))]
    for out in outs:
        assert out.shape == x.shape and out.dtype == np.float32 and np.isfinite(out).all()
        assert not np.array_equal(out, x)
    for seed in range(5):
        out = augment_signal(x, np.random.default_rng(seed), SignalAugment(rotate_deg=20))
        assert out.shape == x.shape and out.dtype == np.float32 and np.isfinite(out).all()


def test_time_warp_with_zero_strength_is_identity():
    x = _signal()
    assert np.allclose(S.time_warp(x, np.ones(4)), x, atol=1e-6)
    opts = SignalAugment(p_time_warp=1, time_warp_sigma=0.0, p_scale=0, p_jitter=0, p_magnitude_warp=0, p_crop=0,
                         p_dropout=0)
    assert np.array_equal(augment_signal(x, np.random.default_rng(0), opts), x)


def test_time_warp_keeps_endpoints_and_moves_the_middle():
    x = np.linspace(0, 1, 50, dtype=np.float32)[None]
    out = S.time_warp(x, np.array([2.0, 2.0, 0.5, 0.5]))
    assert out[0, 0] == pytest.approx(0.0) and out[0, -1] == pytest.approx(1.0)
    assert (np.diff(out[0]) >= 0).all() and out[0, 25] > x[0, 25] + 0.05  # fast start runs ahead


def test_channel_dropout_zeroes_exactly_one_channel():
    x = _signal()
    assert (S.drop_channel(x, 2) == 0).all(axis=1).tolist() == [False, False, True, False, False, False]
    opts = SignalAugment(p_dropout=1, p_scale=0, p_jitter=0, p_time_warp=0, p_magnitude_warp=0, p_crop=0)
    for seed in range(5):
        out = augment_signal(x, np.random.default_rng(seed), opts)
        dead = (out == 0).all(axis=1)
        assert dead.sum() == 1 and np.array_equal(out[~dead], x[~dead])


def test_timeseries_dropout_marks_the_channel_absent_for_preprocess():
    from modalities.timeseries import TimeSeries

    x = _signal(3, 64)
    opts = default_options("timeseries", p_dropout=1, p_scale=0, p_jitter=0, p_time_warp=0, p_magnitude_warp=0,
                           p_crop=0)
    out = augment_signal(x, np.random.default_rng(0), opts)
    assert np.isnan(out).all(axis=1).sum() == 1
    tensor = TimeSeries().preprocess(out)
    absent = torch.isnan(tensor).all(dim=-1)
    assert int(absent[:3].sum()) == 1 and torch.isfinite(tensor[:3][~absent[:3]]).all()


def test_signal_options_validation_names_the_field():
    with pytest.raises(ValueError, match="dropout_fill"):
        SignalAugment(dropout_fill="mean")
    with pytest.raises(ValueError, match="crop_frac"):
        SignalAugment(crop_frac=(0.0, 1.0))
    with pytest.raises(KeyError):
        default_options("smell")
