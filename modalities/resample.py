"""torchaudio's sinc resampler (ImageBind's), computed only on the filter taps its window leaves nonzero.

``torchaudio.functional.resample`` reduces the two rates by their gcd (44.1 → 16 kHz: 441 → 160)
and convolves with one filter per output phase, each ``2 * width + orig`` taps long (475), of
which its Hann window leaves about ``2 * lowpass_filter_width * orig / base_freq`` nonzero (34):
93 % of the multiplications are by zero (float32 taps of about 1e-21). ``resample`` takes the
same filter (torchaudio's own kernel, cached per rate pair) and evaluates the phases in groups of
``GROUP``, each group one matrix product over the span of taps live in it. Where that would save little (a filter of one
phase or a few, as 48 → 16 kHz), it runs torchaudio's dense convolution on the cached kernel. The
result equals torchaudio's to float rounding (about 1e-7 on audio in [-1, 1]: the order of the
sums changes) and has its length.

Measured on 10 s of 44.1 kHz stereo, one thread, this project's 2-core machine (best of 40):
torchaudio 4.0 ms, the dense convolution on the cached kernel 3.2 ms, phase groups of 8 / 16 / 32
3.4 / 1.1 / 1.2 ms (soxr HQ, a different filter, 3.5 ms; scipy ``resample_poly`` 11.4 ms). 32 is
kept: as fast as 16 within noise and further from the slow small-matrix products below it.
"""
from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np
import torch
import torch.nn.functional as F

GROUP = 32  # output phases per matrix product
DENSE_SHARE = 0.5  # grouped work above this share of the dense convolution's: run the convolution
LIVE = 1e-12  # taps below this share of the largest are the window's zeros (about 1e-21 of it, cos² of
# ±π/2 in float32); the smallest live taps, at the window's edges, are about 1e-9 of it


@dataclasses.dataclass(frozen=True)
class _Plan:
    orig: int  # rates reduced by their gcd
    new: int
    width: int  # torchaudio's left padding
    kernel: torch.Tensor | None  # torchaudio's (new, 1, 2 * width + orig) filter bank, kept where no groups are
    groups: tuple[tuple[int, int, int, torch.Tensor], ...]  # (first phase, phases, first tap, (taps, phases))


@functools.lru_cache(maxsize=16)
def _plan(orig_freq: int, new_freq: int) -> _Plan:
    import torchaudio

    with torch.inference_mode(False):  # cached tensors: plain ones, whichever mode the first call came in
        module = torchaudio.transforms.Resample(orig_freq, new_freq, dtype=torch.float32)
        kernel, gcd = module.kernel.detach(), math.gcd(orig_freq, new_freq)
        orig, new = orig_freq // gcd, new_freq // gcd
        bank = kernel[:, 0, :]
        live = bank.abs() > bank.abs().max() * LIVE
        groups = []
        for p0 in range(0, new, GROUP):
            p1 = min(new, p0 + GROUP)
            taps = live[p0:p1].any(dim=0).nonzero().flatten()
            first, last = int(taps[0]), int(taps[-1]) + 1
            groups.append((p0, p1 - p0, first, bank[p0:p1, first:last].T.contiguous()))
    grouped = sum(g[3].numel() for g in groups)
    dense = grouped > DENSE_SHARE * bank.numel()
    # the dense bank is dropped where groups replace it: for rates with a large gcd-reduced ratio
    # (16001 → 16000 Hz) it is a gigabyte, the groups a few megabytes
    return _Plan(orig, new, int(module.width), kernel if dense else None, () if dense else tuple(groups))


def resample(waveform: torch.Tensor, orig_freq: int, new_freq: int) -> torch.Tensor:
    """``torchaudio.functional.resample(waveform, orig_freq, new_freq)`` (its default filter) of a
    float32 ``(..., samples)`` tensor, to float rounding, computed on the live taps only."""
    if orig_freq == new_freq:
        return waveform
    plan = _plan(int(orig_freq), int(new_freq))
    shape = waveform.shape
    wave = waveform.reshape(-1, shape[-1])
    length = wave.shape[-1]
    padded = F.pad(wave, (plan.width, plan.width + plan.orig))
    frames = length // plan.orig + 1  # what torchaudio's strided convolution gives
    if plan.kernel is not None:
        out = F.conv1d(padded[:, None], plan.kernel, stride=plan.orig).transpose(1, 2)
    else:
        out = wave.new_empty(wave.shape[0], frames, plan.new)
        for first, count, tap, bank in plan.groups:
            windows = padded[:, tap:].unfold(-1, bank.shape[0], plan.orig)[:, :frames]  # a view: no copy
            out[:, :, first:first + count] = windows @ bank
    # torchaudio rounds new * length / orig to float32 (torch.as_tensor of a float) before its ceil
    target = math.ceil(np.float32(plan.new * length / plan.orig))
    return out.reshape(wave.shape[0], -1)[:, :target].reshape(*shape[:-1], target)
