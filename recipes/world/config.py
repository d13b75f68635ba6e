"""What the offline world holds: one frozen dataclass, hashed to key the on-disk cache.

Every field changes the data written, so every field is part of ``config_hash``; how the build
runs (worker count, progress bars) is an argument of ``build_world`` instead and never changes a
byte of the output.

Besides ``SPLITS`` (train/val/test) every digit modality gets a held-out ``HARD`` split when
``hard_split`` is on: test-split digits (never train ones) rendered or spoken under conditions the
train/val/test data never contain (unseen espeak-ng voices and variants, babble/hum/burst noise,
out-of-range tilts, temperatures, motions and sensor errors; each stage's module docstring says
which). It measures whether a binding generalizes beyond the conditions it was trained under; the
train/val/test files are the same bytes with or without it.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

from binder.errors import ConfigError

# Bump when a stage's output changes for the same config, so old caches are rebuilt.
BUILDER_VERSION = 2
_LATER_FIELDS = frozenset({"speech_train_variants"})  # added after builder 2's worlds; see config_hash
SPLITS = ("train", "val", "test")
# The held-out robustness split (manifests ``<name>.hard.jsonl``): not in SPLITS, which callers use
# for the regular train/val/test splits; the builder writes it per stage when ``hard_split`` is on.
HARD = "hard"


@dataclasses.dataclass(frozen=True)
class WorldConfig:
    """The world's contents: sizes, the speech grid, sensor sizes and which modalities to build.

    ``split_fractions`` apply per digit class (stratified) and, for speech, to the speakers.
    ``max_images`` keeps a class-stratified subset of the 1,797 scikit-learn digits (None = all).
    A speaker is one espeak-ng voice + variant, or a voice of another synthesizer
    (``engine_speakers``, each assigned to its split by name); utterances of a speaker never cross splits.
    ``hard_split`` adds the held-out ``hard`` split (``HARD``) to every digit modality:
    ``hard_per_class`` items per digit class (per digit word for speech), each from a test-split
    digit under conditions that training never sees.
    """

    seed: int = 0
    image_size: int = 32
    split_fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)
    max_images: int | None = None
    # speech (espeak-ng)
    speech_voices: tuple[str, ...] = ("en-us", "en-gb", "en-029")
    speech_variants: tuple[str, ...] = ("m1", "m2", "m3", "f1", "f2")
    # espeak-ng variants heard in training only: each speech voice with each of them is one more training
    # speaker, so training hears more voices while val, test and hard stay exactly as they are
    speech_train_variants: tuple[str, ...] = ()
    speech_rates: tuple[int, ...] = (120, 140, 160, 180, 200)
    speech_pitches: tuple[int, ...] = (30, 40, 50, 60, 70)
    utterances_per_speaker_digit: int = 8
    codebook_k: int = 100
    # speakers of other synthesizers (recipes/world/voices.py), "SPLIT:ENGINE:VOICE": each human in one split
    engine_speakers: tuple[str, ...] = ("train:flite:awb", "train:flite:rms", "train:flite:kal16",
                                        "train:festival:kal_diphone", "val:flite:slt", "test:festival:ked_diphone")
    # the hard split's held-out engine voices ("ENGINE:VOICE"), hard_engine_per_class utterances per digit word
    hard_engine_voices: tuple[str, ...] = ("festival:cmu_us_slt_arctic_hts",)
    hard_engine_per_class: int = 5
    # rendered sensors
    # 16 frames at 8 fps = 2 s clips: twice the recipes' T = 8, so training (VideoAugment.decode_factor)
    # decodes 16 distinct frames and its temporal augmentation picks among real frames
    video_frames: int = 16
    video_size: int = 32
    video_fps: int = 8
    imu_length: int = 2000
    imu_rate: float = 800.0
    depth_size: int = 32
    thermal_size: int = 32
    # which modalities to build (images are always built: every other one pairs with them)
    include_speech: bool = True
    include_depth: bool = True
    include_thermal: bool = True
    include_video: bool = True
    include_imu: bool = True
    include_basic_motions: bool = True
    # the held-out robustness split
    hard_split: bool = True
    hard_per_class: int = 20

    def __post_init__(self) -> None:
        fr = tuple(float(f) for f in self.split_fractions)
        if len(fr) != 3 or min(fr) <= 0 or abs(sum(fr) - 1.0) > 1e-6:
            raise ConfigError(f"split_fractions must be three positive numbers summing to 1, "
                              f"got {self.split_fractions}")
        if self.max_images is not None and self.max_images < 30:
            raise ConfigError(f"max_images must be None or >= 30 (3 splits x 10 classes), got {self.max_images}")
        if min(self.image_size, self.depth_size, self.thermal_size, self.video_size) < 8:
            raise ConfigError("image, depth, thermal and video sizes must be >= 8")
        if self.video_size % 2:
            raise ConfigError(f"video_size must be even (yuv420p), got {self.video_size}")
        if self.video_frames < 2 or self.imu_length < 16 or self.imu_rate <= 0:
            raise ConfigError("video_frames must be >= 2, imu_length >= 16 and imu_rate > 0")
        if self.hard_split and self.hard_per_class < 1:
            raise ConfigError(f"hard_per_class must be >= 1 when hard_split is on, got {self.hard_per_class}")
        if self.include_speech:
            if len(self.speech_voices) * len(self.speech_variants) < 3:
                raise ConfigError("speech needs at least 3 speakers (voices x variants), one per split")
            if not self.speech_rates or not self.speech_pitches or self.utterances_per_speaker_digit < 1:
                raise ConfigError("speech needs rates, pitches and utterances_per_speaker_digit >= 1")
            if self.codebook_k < 2:
                raise ConfigError(f"codebook_k must be >= 2, got {self.codebook_k}")
            self._check_engine_speakers()
            self._check_train_variants()

    def _check_train_variants(self) -> None:
        from recipes.world.speech import HARD_VARIANTS

        shared = sorted(set(self.speech_train_variants) & (set(self.speech_variants) | set(HARD_VARIANTS)))
        if shared:
            raise ConfigError(f"speech_train_variants must name variants that no split's speaker and no hard "
                              f"speaker uses; {shared} are taken")
        if len(set(self.speech_train_variants)) != len(self.speech_train_variants):
            raise ConfigError(f"speech_train_variants lists a variant twice: {self.speech_train_variants}")

    def _check_engine_speakers(self) -> None:
        from recipes.world.voices import EngineVoice, split_and_speaker

        for spec in self.engine_speakers:
            split_and_speaker(spec, SPLITS)
        for spec in self.hard_engine_voices:
            EngineVoice.parse(spec)
        if len({s.partition(":")[2] for s in self.engine_speakers}) != len(self.engine_speakers):
            raise ConfigError(f"engine_speakers lists a speaker twice: {self.engine_speakers}")
        if self.hard_engine_voices and self.hard_engine_per_class < 0:
            raise ConfigError(f"hard_engine_per_class must be >= 0, got {self.hard_engine_per_class}")

    # presets -----------------------------------------------------------------------------
    @classmethod
    def full(cls, **overrides: Any) -> WorldConfig:
        """All 1,797 digits, 15 speakers x 10 words x 8 utterances, k = 100 speech units, 20 hard items per class."""
        return cls(**overrides)

    @classmethod
    def small(cls, **overrides: Any) -> WorldConfig:
        """300 digits, 9 espeak-ng speakers and one flite speaker per split x 10 words x 2 utterances, k = 32,
        3 hard items per class and 1 of the held-out engine voice: the tests' world (seconds to build)."""
        base = dict(max_images=300, speech_variants=("m1", "m3", "f1"), speech_rates=(130, 170, 200),
                    speech_pitches=(35, 50, 65), utterances_per_speaker_digit=2, codebook_k=32, hard_per_class=3,
                    engine_speakers=("train:flite:awb", "val:flite:slt", "test:flite:rms"), hard_engine_per_class=1)
        base.update(overrides)
        return cls(**base)

    # (de)serialization ---------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WorldConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(f"unknown WorldConfig fields {unknown}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})

    def config_hash(self) -> str:
        """Stable hash of the config and the builder version (the cache key). Fields added since, at their
        empty default, are left out, so a world built before them stays cached."""
        fields = {k: v for k, v in self.to_dict().items() if not (k in _LATER_FIELDS and v == [])}
        blob = json.dumps({"builder": BUILDER_VERSION, **fields}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    @property
    def speakers(self) -> tuple[str, ...]:
        """espeak-ng speaker ids ``voice+variant`` in config order (other engines: ``engine_speakers``)."""
        return tuple(f"{v}+{var}" for v in self.speech_voices for var in self.speech_variants)

    @property
    def train_only_speakers(self) -> tuple[str, ...]:
        """espeak-ng speakers of ``speech_train_variants``, ``voice+variant``, all in the train split."""
        return tuple(f"{v}+{var}" for v in self.speech_voices for var in self.speech_train_variants)
