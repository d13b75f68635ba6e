"""Images: scikit-learn's 1,797 real handwritten digits (8x8, 16 grey levels) and their captions.

Each digit is scaled to [0, 1] (ink bright on black, as scanned), upscaled bicubically to
``image_size`` and written as a 3-channel PNG ``images/{index:05d}.png`` where ``index`` is the
digit's position in ``load_digits()`` (so a digit keeps its file name in every preset). The split
is stratified by class: each class is shuffled with the seed and cut by ``split_fractions``.
Every image gets one caption drawn from ``CAPTION_TEMPLATES`` (word or numeral forms).

The ``hard`` split of the rendered modalities (``write_hard_per_digit``) re-renders TEST-split
digits only (``hard_per_class`` per class, cycling through the class's test digits) under
held-out conditions, each item paired with its own digit's test image; no train image appears.
"""
from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from binder.errors import ConfigError
from recipes.world.common import progress_bar, relpath, rng_for, save_png
from recipes.world.config import HARD, SPLITS, WorldConfig

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
CAPTION_TEMPLATES = (
    "the digit {word}",
    "a handwritten {numeral}",
    "a photo of the number {word}",
    "an image of a hand-drawn {word}",
    "the number {numeral}, written by hand",
    "a scanned handwritten digit {word}",
    "a drawing of the numeral {numeral}",
    "a low-resolution picture of a {word}",
)


def caption(label: int, rng: np.random.Generator) -> str:
    """A caption of digit ``label`` from a random template."""
    template = CAPTION_TEMPLATES[int(rng.integers(len(CAPTION_TEMPLATES)))]
    return template.format(word=DIGIT_WORDS[int(label)], numeral=int(label))


@functools.lru_cache(maxsize=1)
def _load_digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()
    images = (d.images / 16.0).astype(np.float32)
    images.setflags(write=False)
    labels = d.target.astype(np.int64)
    labels.setflags(write=False)
    return images, labels


def upscale(ink8: np.ndarray, size: int) -> np.ndarray:
    """An 8x8 [0, 1] digit bicubically resized to ``size`` x ``size``, float32 in [0, 1]."""
    src = Image.fromarray(np.round(np.clip(ink8, 0, 1) * 255).astype(np.uint8))
    return np.asarray(src.resize((size, size), Image.BICUBIC), dtype=np.float32) / 255.0


@dataclasses.dataclass(frozen=True)
class DigitSet:
    """The digits of this world: sklearn index, label, split and 8x8 [0, 1] pixels of each."""

    index: np.ndarray  # (N,) int, position in load_digits()
    label: np.ndarray  # (N,) int
    split: np.ndarray  # (N,) str
    ink8: np.ndarray  # (N, 8, 8) float32 in [0, 1]

    def __len__(self) -> int:
        return len(self.index)

    def image_path(self, i: int) -> str:
        """Relative path of the i-th digit's PNG."""
        return f"images/{int(self.index[i]):05d}.png"

    def members(self, split: str, label: int) -> np.ndarray:
        """Positions (into this set) of the digits of one class in one split."""
        return np.flatnonzero((self.split == split) & (self.label == label))


def split_counts(n: int, fractions: tuple[float, ...]) -> list[int]:
    """Largest-remainder rounding of n * fractions, each part >= 1 when n >= len(fractions)."""
    raw = np.asarray(fractions, dtype=np.float64) * n
    counts = np.floor(raw).astype(int)
    for j in np.argsort(-(raw - counts), kind="stable")[: n - counts.sum()]:
        counts[j] += 1
    for j in range(len(counts)):  # never leave a split empty
        if counts[j] == 0 and n >= len(counts):
            donor = int(np.argmax(counts))
            counts[donor] -= 1
            counts[j] += 1
    return counts.tolist()


def select_digits(cfg: WorldConfig) -> DigitSet:
    """Class-stratified subset (``max_images``) and train/val/test split of the sklearn digits."""
    images, labels = _load_digits()
    n_total = len(labels)
    keep = n_total if cfg.max_images is None else min(cfg.max_images, n_total)
    classes = np.unique(labels)
    per_class = split_counts(keep, tuple(np.bincount(labels)[classes] / n_total))
    rng = rng_for(cfg.seed, "digits")
    idx, split = [], []
    for c, n_c in zip(classes, per_class):
        members = rng.permutation(np.flatnonzero(labels == c))[:n_c]
        for part, count in zip(SPLITS, split_counts(n_c, cfg.split_fractions)):
            idx.extend(members[:count])
            split.extend([part] * count)
            members = members[count:]
    idx = np.asarray(idx, dtype=np.int64)
    order = np.argsort(idx, kind="stable")
    idx, split = idx[order], np.asarray(split)[order]
    return DigitSet(idx, labels[idx].copy(), split, images[idx].copy())


def write_images(folder: Path, cfg: WorldConfig, digits: DigitSet, progress: bool = True) -> dict[str, list[dict]]:
    """Write every digit as an RGB PNG; manifest rows (modality "image", a caption each) by split."""
    rows: dict[str, list[dict]] = {s: [] for s in SPLITS}
    with progress_bar(len(digits), "images", progress) as bar:
        for i in range(len(digits)):
            grey = upscale(digits.ink8[i], cfg.image_size)
            rgb = np.repeat(np.round(grey * 255).astype(np.uint8)[..., None], 3, axis=2)
            path = folder / digits.image_path(i)
            save_png(path, rgb)
            label = int(digits.label[i])
            rows[str(digits.split[i])].append({
                "modality": "image", "path": relpath(path, folder), "image": relpath(path, folder),
                "label": label, "text": caption(label, rng_for(cfg.seed, "caption", int(digits.index[i]))),
                "split": str(digits.split[i]), "digit_index": int(digits.index[i])})
            bar.update()
    return rows


def write_per_digit(folder: Path, cfg: WorldConfig, digits: DigitSet, modality: str, filename: str,
                    write: Callable[[Path, np.ndarray, np.random.Generator], None], progress: bool = True,
                    desc: str | None = None) -> dict[str, list[dict]]:
    """One file per digit, rendered by ``write(path, ink8, rng)`` and paired with that digit's image.

    ``filename`` is a format string of the digit index, e.g. ``"depth/{:05d}.depth.png"``; every
    item draws from its own generator (seed, modality, digit), so items never depend on each other.
    """
    rows: dict[str, list[dict]] = {s: [] for s in SPLITS}
    with progress_bar(len(digits), desc or modality, progress) as bar:
        for i in range(len(digits)):
            idx = int(digits.index[i])
            rng = rng_for(cfg.seed, modality, idx)
            path = folder / filename.format(idx)
            write(path, digits.ink8[i], rng)
            label, split = int(digits.label[i]), str(digits.split[i])
            rows[split].append({"modality": modality, "path": relpath(path, folder), "image": digits.image_path(i),
                                "label": label, "text": caption(label, rng), "split": split})
            bar.update()
    return rows


def hard_digits(cfg: WorldConfig, digits: DigitSet) -> list[int]:
    """Positions (into ``digits``) of the hard split's items: ``hard_per_class`` per class, class by
    class, cycling through that class's TEST digits in index order (item k is the k-th entry)."""
    out = []
    for label in range(len(DIGIT_WORDS)):
        members = digits.members("test", label)
        if len(members) == 0:
            raise ConfigError(f"no test image of digit {label} for the hard split; raise max_images")
        out.extend(int(members[j % len(members)]) for j in range(cfg.hard_per_class))
    return out


def write_hard_per_digit(folder: Path, cfg: WorldConfig, digits: DigitSet, stage: str, modality: str, filename: str,
                         write: Callable[[Path, np.ndarray, np.random.Generator], dict], progress: bool = True,
                         desc: str | None = None) -> list[dict]:
    """The ``hard`` split of a rendered modality: rows of ``write(path, ink8, rng) -> descriptive fields``.

    Item k renders the k-th of ``hard_digits`` (a test digit) with ``rng_for(seed, f"{stage}-hard", k)``
    into ``filename.format(k)`` (e.g. ``"depth/hard/{:05d}.depth.png"``) and is paired with that
    digit's (test) image; the fields ``write`` returns (``condition`` and its parameters) join the row.
    """
    rows = []
    positions = hard_digits(cfg, digits)
    with progress_bar(len(positions), desc or f"{modality} (hard)", progress) as bar:
        for k, i in enumerate(positions):
            rng = rng_for(cfg.seed, f"{stage}-hard", k)
            path = folder / filename.format(k)
            fields = write(path, digits.ink8[i], rng)
            label = int(digits.label[i])
            rows.append({"modality": modality, "path": relpath(path, folder), "image": digits.image_path(i),
                         "label": label, "text": caption(label, rng), "split": HARD,
                         "digit_index": int(digits.index[i]), **fields})
            bar.update()
    return rows
