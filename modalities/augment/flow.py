"""Two-stream training with flow computed once per frame pair of a clip, not once per step.

Farneback flow is the slowest part of two-stream preprocessing, and augmentation draws a new
pick of frames every step. Training therefore decodes a clip once into a ``FlowClip``: K frames
resized to the model's size S, their grayscale exactly as inference computes it, and a cache of
flow fields by (frame a, frame b). A step's augmentation (``pick_flow_clip``) draws T frame
indices as video's augmentation does and a crop box and returns a ``FlowPick``; its flows come
from the cache (computed the first time a pair is drawn), cropped with the same box as the frames
and rescaled into the crop's pixels. At stride 1 without a crop the flows are exactly the ones
inference computes.

Approximations, said here so they are not surprises: the crop acts on frames already resized to
S (inference crops nothing), and flow is taken on the frames before photometric changes and noise
(these then reach only the RGB stream).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from modalities.augment.video import VideoAugment, crop_frames, draw_appearance, draw_view, uniform_pick

PairFlow = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""``(gray_a, gray_b) -> (S, S, 2)`` float32 flow in pixels (dx, dy)."""


def flow_pairs(count: int) -> list[tuple[int, int]]:
    """The frame pairs (a, b) of a clip's ``count`` flows, one per frame: frame t's is the motion from
    t to t + 1, and the last frame's is the motion into it (count - 2 → count - 1); a lone frame has
    none (0 → 0, zero flow). So T frames give T flows, and the RGB stream keeps video's T frames."""
    if count < 2:
        return [(0, 0)] * count
    pairs = [(t, t + 1) for t in range(count - 1)]
    return [*pairs, pairs[-1]]


def frame_flow(gray: np.ndarray, a: int, b: int, compute: PairFlow) -> np.ndarray:
    """Flow from frame ``a`` to frame ``b`` of uint8 ``(K, S, S)`` frames, float32 ``(S, S, 2)`` in
    pixels; exactly zero when a == b (Farneback returns small noise for a frame against itself)."""
    if a == b:
        return np.zeros((*gray.shape[1:], 2), np.float32)
    return compute(gray[a], gray[b]).astype(np.float32, copy=False)


@dataclass
class FlowClip:
    """One decoded clip for two-stream training: ``rgb`` float32 ``(K, S, S, 3)`` in [0, 1],
    ``gray`` uint8 ``(K, S, S)`` (inference's grayscale of the same frames) and the flows computed
    so far, float16 ``(S, S, 2)`` in pixels, by frame pair."""

    rgb: np.ndarray
    gray: np.ndarray
    flows: dict[tuple[int, int], np.ndarray] = field(default_factory=dict)

    @property
    def nbytes(self) -> int:
        """Memory held now (the training cache measures items by it; flows add up as pairs are drawn)."""
        return int(self.rgb.nbytes + self.gray.nbytes + sum(f.nbytes for f in self.flows.values()))

    def flow(self, a: int, b: int, compute: PairFlow) -> np.ndarray:
        """Flow from frame ``a`` to frame ``b`` in pixels, float32 ``(S, S, 2)``; zero when a == b."""
        if a == b:
            return frame_flow(self.gray, a, b, compute)
        if (a, b) not in self.flows:
            self.flows[(a, b)] = frame_flow(self.gray, a, b, compute).astype(np.float16)
        return self.flows[(a, b)].astype(np.float32)


@dataclass(frozen=True)
class FlowPick:
    """One step's variation of a ``FlowClip``: the T frame ``indices``, the crop ``box``
    (left, top, width, height in pixels; None = whole frame) and the T RGB frames after crop,
    photometric changes and noise, float32 ``(T, S, S, 3)``."""

    clip: FlowClip
    indices: np.ndarray
    box: tuple[float, float, float, float] | None
    rgb: np.ndarray

    def flows(self, compute: PairFlow) -> np.ndarray:
        """The T flows of the picked frames (``flow_pairs``), cropped like the frames, in the crop's
        pixels: float32 ``(T, S, S, 2)``."""
        idx = self.indices.tolist()
        out = np.stack([self.clip.flow(idx[a], idx[b], compute) for a, b in flow_pairs(len(idx))])
        if self.box is None:
            return out
        h, w = out.shape[1:3]
        out = crop_frames(out, self.box)
        out[..., 0] *= w / self.box[2]  # a crop shown at the full size magnifies motion by its zoom
        out[..., 1] *= h / self.box[3]
        return out


def pick_flow_clip(clip: FlowClip, count: int, rng: np.random.Generator, opts: VideoAugment) -> FlowPick:
    """A random variation of ``clip`` with ``count`` (T) frames: temporal pick, crop, photometric
    changes and noise as ``augment_frames`` draws them for video; the uniform pick without augmentation."""
    k = len(clip.rgb)
    idx, box = draw_view(k, count, clip.rgb.shape[1:3], rng, opts) if opts.enabled else (None, None)
    idx = uniform_pick(k, count) if idx is None else idx
    rgb = clip.rgb[idx]
    rgb = crop_frames(rgb, box) if box is not None else rgb.copy()
    if opts.enabled:
        rgb = draw_appearance(rgb, rng, opts)
    return FlowPick(clip, idx, box, np.clip(rgb, 0.0, 1.0, dtype=np.float32))
