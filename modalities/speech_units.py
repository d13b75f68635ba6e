"""Speech as HuBERT-style discrete units: MFCC+Δ+ΔΔ frames → k-means unit ids → merged repeats → embeddings.

``preprocess`` produces the continuous features (one row per 10 ms frame); the tokenizer owns the
codebook (as buffers, so it is saved with the model) and does quantization, dedup and packing in
batched torch. A codebook is fitted once over a set of speech files (``binder.train.units``,
``anybind units fit``) and saved as safetensors (``modalities.speech_codebook``); the ``codebook``
option names that file, which a saved model folder carries a copy of. Without one the tokenizer
starts from fixed random centroids.
"""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from binder.config import file_option
from binder.errors import ConfigError
from binder.registry import register_modality
from binder.tokenizers import SequenceEmbedding
from modalities.audio import (
    ANALYSIS_WINDOW_S,
    MAX_ABS,
    MAX_CHANNELS,
    MAX_DURATION,
    check_min_duration,
    load_waveform,
    trim_silence,
)
from modalities.augment.audio import AudioAugment, augment_wave, babble_pool
from modalities.base import Modality
from modalities.level import check_level, level_normalized
from modalities.speech_codebook import Codebook, nearest_units, trunk_layers

DELTA_WIDTH = 9  # librosa.feature.delta's default window; the utterance needs at least this many frames
RANDOM_CODEBOOK_SEED = 1234
FEATURE_OPTIONS = ("sample_rate", "n_mfcc", "hop_length", "n_fft", "n_mels", "max_frames", "trim_silence",
                   "trim_top_db", "level", "level_dbfs", "max_level_gain_db")


@dataclasses.dataclass(frozen=True)
class SpeechUnitsOptions:
    """Options of the speech-units modality (features at 100 frames/s for 16 kHz and hop 160).

    ``level`` ("none" or "rms", with ``level_dbfs`` and ``max_level_gain_db``) is audio's loudness
    normalization (``modalities.level``), applied after silence trimming, before the MFCCs.
    """

    sample_rate: int = 16000
    n_mfcc: int = 13
    hop_length: int = 160
    n_fft: int = 400
    n_mels: int = 40
    max_frames: int = 1000
    num_units: int = 100
    max_units: int = 256
    min_duration: float = ANALYSIS_WINDOW_S
    codebook: str | None = file_option()  # a codebook file (modalities.speech_codebook)
    trim_silence: bool = True
    trim_top_db: float = 40.0
    level: str = "none"
    level_dbfs: float = -15.0
    max_level_gain_db: float = 40.0
    max_abs: float = MAX_ABS
    max_duration: float = MAX_DURATION
    max_channels: int = MAX_CHANNELS

    def __post_init__(self) -> None:
        check_min_duration("speech_units", self.min_duration)
        check_level("speech_units", self.level, self.max_level_gain_db)

    @property
    def feature_dim(self) -> int:
        """MFCC + Δ + ΔΔ."""
        return 3 * self.n_mfcc


def mfcc_features(wave: np.ndarray, opts: SpeechUnitsOptions) -> np.ndarray:
    """(frames, 3·n_mfcc) float32 rows of MFCC, Δ and ΔΔ (librosa), one row per hop.

    Speech too short for the ``DELTA_WIDTH`` frames the Δ features need (80 ms at 16 kHz) is
    zero-padded evenly on both sides to that length first: the short-clip policy of this modality.
    """
    import librosa

    wave = pad_to_delta_width(np.asarray(wave, dtype=np.float32), opts.hop_length)
    mfcc = librosa.feature.mfcc(y=wave, sr=opts.sample_rate, n_mfcc=opts.n_mfcc,
                                n_fft=opts.n_fft, hop_length=opts.hop_length, n_mels=opts.n_mels)
    d1 = librosa.feature.delta(mfcc, order=1, width=DELTA_WIDTH)
    d2 = librosa.feature.delta(mfcc, order=2, width=DELTA_WIDTH)
    return np.concatenate([mfcc, d1, d2], axis=0).T.astype(np.float32)


def _pack_left(values: torch.Tensor, keep: torch.Tensor, length: int, pad: int) -> torch.Tensor:
    """Move the kept entries of each row to its front, in order, into (B, length); the rest is ``pad``."""
    pos = keep.long().cumsum(dim=1) - 1
    ok = keep & (pos < length)
    out = values.new_full((values.shape[0], length + 1), pad)  # last column collects the dropped entries
    out.scatter_(1, torch.where(ok, pos, length), torch.where(ok, values, pad))
    return out[:, :length]


def dedup_units(ids: torch.Tensor, valid: torch.Tensor, max_units: int, pad_id: int) -> torch.Tensor:
    """Merge consecutive repeats of (B, T) unit ids over the valid frames, left-pack, truncate to max_units.

    ``[3, 3, 3, 7, 7, 3]`` becomes ``[3, 7, 3, pad, ...]``. Invalid (padding) frames are skipped,
    so units on either side of them still merge.
    """
    ids = _pack_left(ids, valid, ids.shape[1], pad_id)
    valid = torch.arange(ids.shape[1], device=ids.device) < valid.sum(dim=1, keepdim=True)
    change = torch.ones_like(valid)
    change[:, 1:] = ids[:, 1:] != ids[:, :-1]
    return _pack_left(ids, valid & change, max_units, pad_id)


class SpeechUnitTokenizer(nn.Module):
    """(B, max_frames, D) features with NaN padding rows → ``(tokens (B, 1 + max_units, width), pad_mask)``.

    The codebook (centroids, feature mean/std) is held in buffers, so it is saved and loaded with
    the model's state dict; it is not trained. Unit ids index an ``nn.Embedding`` whose last row
    (``num_units``) is the padding id. With a later-iteration codebook the units are those of the
    hidden features a frozen ``HiddenUnits`` extractor (``source``) computes from the MFCC frames.
    """

    # Buffers, registered in __init__.
    centroids: torch.Tensor
    feat_mean: torch.Tensor
    feat_std: torch.Tensor

    def __init__(self, opts: SpeechUnitsOptions, width: int, source_info: dict[str, Any] | None = None):
        super().__init__()
        codebook = Codebook.load(opts.codebook) if opts.codebook else None
        if codebook is not None and codebook.iteration > 1:
            source_info = codebook.info
        self.source = HiddenUnits(source_info, opts) if source_info else None
        k = opts.num_units
        dim = self.source.width if self.source is not None else opts.feature_dim
        gen = torch.Generator().manual_seed(RANDOM_CODEBOOK_SEED)
        self.register_buffer("centroids", torch.randn(k, dim, generator=gen))
        self.register_buffer("feat_mean", torch.zeros(dim))
        self.register_buffer("feat_std", torch.ones(dim))
        self.pad_id = k
        self.max_units = opts.max_units
        self.embed = nn.Embedding(k + 1, width, padding_idx=k)
        self.seq = SequenceEmbedding(opts.max_units, width)
        if codebook is not None:
            self.set_codebook(codebook)

    @property
    def source_info(self) -> dict[str, Any] | None:
        """The description of a later iteration's extractor (None for MFCC units)."""
        return None if self.source is None else self.source.info

    @property
    def iteration(self) -> int:
        return 1 if self.source is None else int(self.source.info["iteration"])

    @torch.no_grad()
    def set_codebook(self, codebook: Codebook) -> None:
        """Replace the centroids and standardization (and a later iteration's extractor) with a fitted codebook."""
        if tuple(codebook.centroids.shape) != tuple(self.centroids.shape):
            raise ConfigError(f"codebook has shape {codebook.centroids.shape}, tokenizer expects "
                             f"{tuple(self.centroids.shape)} (num_units, feature dim)")
        if self.centroids.is_meta:  # built to be filled from a saved model, which holds all of this
            return
        self.centroids.copy_(torch.from_numpy(codebook.centroids))
        self.feat_mean.copy_(torch.from_numpy(codebook.mean))
        self.feat_std.copy_(torch.from_numpy(codebook.std))
        if self.source is not None:
            try:
                self.source.load_state_dict({k: torch.from_numpy(v) for k, v in codebook.extras.items()})
            except RuntimeError as exc:
                raise ConfigError(f"the codebook's feature extractor does not fit its description: {exc}") from None

    @torch.no_grad()
    def units(self, x: torch.Tensor) -> torch.Tensor:
        """Deduplicated, left-packed unit ids (B, max_units), ``pad_id`` where there is none."""
        if self.source is None:
            feats, valid = x, ~torch.isnan(x).any(dim=-1)
        else:
            feats, valid = self.source(x)
        ids = nearest_units(feats, self.feat_mean, self.feat_std, self.centroids)
        return dedup_units(ids, valid, self.max_units, self.pad_id)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        units = self.units(x)
        return self.seq(self.embed(units), units == self.pad_id)


class HiddenUnits(nn.Module):
    """The frozen feature extractor of a later iteration (HuBERT's second): the previous
    iteration's tokenizer and the first ``layer`` blocks of the trunk it was trained with.

    ``forward``: (B, frames, D) MFCC features → the hidden features (B, units, width) of the
    previous iteration's unit tokens at that layer, and which of them are real (not padding).
    ``info`` (a codebook's) describes it; its weights come with the codebook too.
    """

    def __init__(self, info: dict[str, Any], opts: SpeechUnitsOptions):
        super().__init__()
        src, arch = info["tokenizer"], info["trunk"]
        # a codebook made before an option existed was made at that option's default
        recorded = {**{f.name: f.default for f in dataclasses.fields(SpeechUnitsOptions) if f.name in FEATURE_OPTIONS},
                    **src["features"]}
        differ = {k: v for k, v in recorded.items() if getattr(opts, k) != v}
        if differ:
            raise ConfigError(f"the codebook's units come from features with {differ}; this modality's options "
                             f"say {({k: getattr(opts, k) for k in differ})}")
        prev = dataclasses.replace(opts, num_units=src["num_units"], max_units=src["max_units"], codebook=None)
        self.tokenizer = SpeechUnitTokenizer(prev, arch["width"], source_info=src.get("source"))
        self.trunk = trunk_layers(arch)
        self.width = int(arch["width"])
        self.info = info
        self.requires_grad_(False)

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        tokens, pad = self.tokenizer(x)
        hidden = self.trunk(tokens, pad)
        return hidden[:, 1:], ~pad[:, 1:]

    def train(self, mode: bool = True) -> HiddenUnits:
        return super().train(False)  # frozen: always in inference mode


def pad_to_delta_width(wave: np.ndarray, hop_length: int) -> np.ndarray:
    """``wave`` zero-padded evenly on both sides to the ``(DELTA_WIDTH - 1) * hop_length`` samples
    that give ``DELTA_WIDTH`` centred frames; longer speech is returned as it is."""
    short = (DELTA_WIDTH - 1) * hop_length - wave.shape[-1]
    if short <= 0:
        return wave
    return np.pad(wave, [(0, 0)] * (wave.ndim - 1) + [(short // 2, short - short // 2)])


@register_modality
class SpeechUnits(Modality):
    """16 kHz speech as MFCC+Δ+ΔΔ frames (first max_frames = 10 s kept, NaN rows pad the rest),
    quantized to k-means units with repeats merged, first max_units units kept.

    Files use a double extension (``.speech.wav``) so plain ``.wav`` stays audio. Padding rows
    of ``preprocess`` are all-NaN: real NaN samples were already rejected by ``load``, so NaN is an
    unambiguous padding marker the tokenizer turns into its pad mask. Longer speech is cut at
    ``max_frames`` frames, and a unit sequence longer than ``max_units`` is truncated.
    """

    name = "speech_units"
    extensions = (".speech.wav", ".speech.flac")
    Options = SpeechUnitsOptions
    AugmentOptions = AudioAugment

    def load(self, path: str | os.PathLike) -> np.ndarray:
        """Mono float32 samples at ``sample_rate``; ModalityError for unreadable, non-finite or too-short audio."""
        o = self.options
        return load_waveform(path, o.sample_rate, o.min_duration, max_abs=o.max_abs, max_duration=o.max_duration,
                             max_channels=o.max_channels)

    def preprocess(self, raw: np.ndarray | torch.Tensor) -> torch.Tensor:
        """(max_frames, 3·n_mfcc) float32 features; rows past the end of the utterance are NaN."""
        o = self.options
        wave = np.asarray(raw, dtype=np.float32)
        if o.trim_silence:
            wave = trim_silence(wave, o.sample_rate, o.trim_top_db)
        wave = level_normalized(wave, o)
        feats = mfcc_features(wave, o)[: o.max_frames]
        out = torch.full(self.input_shape(), float("nan"), dtype=torch.float32)
        out[: feats.shape[0]] = torch.from_numpy(feats)
        return out

    def augment_with_data(self, options: AudioAugment, paths: Sequence[str], seed: int) -> AudioAugment:
        """Babble (``p_babble``) draws its other talkers from the training set's own utterances."""
        return options.with_babble(babble_pool(paths, seed))

    def augment(self, raw: np.ndarray, rng: np.random.Generator, options: AudioAugment) -> np.ndarray:
        """The audio waveform augmentations (shift, silence, gain, noise, speed, pitch); units are then re-derived."""
        return augment_wave(raw, rng, options, self.options.sample_rate)

    def preview(self, path: Path, size: int) -> Any:
        """A log-mel spectrogram of the recording's start, as for audio."""
        from modalities.audio import spectrogram_preview

        return spectrogram_preview(path, size)

    def perturbations(self) -> Any:
        """The waveform perturbations of audio (noise, silence, gain, speed, pitch, delay)."""
        from modalities.audio import WAVE_PERTURBATIONS

        return WAVE_PERTURBATIONS

    def input_shape(self) -> tuple[int, ...]:
        return (self.options.max_frames, self.options.feature_dim)

    def build_tokenizer(self, cfg: Any, width: int) -> nn.Module:
        """A SpeechUnitTokenizer; its codebook comes from ``codebook`` if set, else fixed random centroids."""
        return SpeechUnitTokenizer(cfg, width)
