"""Spoken digits: espeak-ng formant synthesis of the ten digit words by 15 speakers.

A speaker is an espeak-ng voice (``en-us``, ``en-gb``, ``en-029``: American, British, Caribbean
English pronunciation and intonation rules) combined with a voice variant (``m1 m2 m3 f1 f2``:
formant frequencies, breathiness and pitch range of male and female speakers). Each utterance
also draws a speaking rate (words per minute, ``-s``) and a pitch (0-99, ``-p``) from the config
lists, so one speaker says a word several ways. Files are espeak-ng's native 22,050 Hz mono WAV;
the audio and speech-units modalities resample on load.

Utterances are split BY SPEAKER (speakers shuffled with the seed and cut by ``split_fractions``),
so val/test voices are never heard in training. Each utterance is paired with a random image of
the same digit from the same split. The speech-units codebook (k-means over MFCC+Δ+ΔΔ frames)
is fitted on the training utterances only.

espeak-ng resolves a language name with a ``+variant`` suffix by language, and for ``en-gb``
that lookup ignores the variant (every ``en-gb+X`` gives identical audio in espeak-ng 1.51), so
the command names the voice by its file (``gmw/en`` for en-gb), read from ``espeak-ng --voices``.
"""
from __future__ import annotations

import functools
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from recipes.world.common import atomic_path, progress_bar, relpath, rng_for
from recipes.world.config import SPLITS, WorldConfig
from recipes.world.images import DIGIT_WORDS, DigitSet, caption, _split_counts

ESPEAK = "espeak-ng"


class SpeechError(RuntimeError):
    """espeak-ng is missing or failed."""


def espeak_binary() -> str:
    exe = shutil.which(ESPEAK)
    if exe is None:
        raise SpeechError("espeak-ng is needed for the speech modality (apt-get install espeak-ng, or `make apt`)")
    return exe


@functools.lru_cache(maxsize=None)
def espeak_version() -> str:
    out = subprocess.run([espeak_binary(), "--version"], capture_output=True, text=True, check=True).stdout
    parts = out.split(":")[1].split() if ":" in out else out.split()
    return parts[0] if parts else out.strip()


@functools.lru_cache(maxsize=None)
def voice_file(voice: str) -> str:
    """The espeak-ng voice file (e.g. ``gmw/en``) whose language is ``voice``; the name itself if none.

    MBROLA voices (``mb/...``) are skipped: they need external voice data.
    """
    out = subprocess.run([espeak_binary(), f"--voices={voice.split('-')[0]}"], capture_output=True, text=True,
                         check=True).stdout
    for line in out.splitlines()[1:]:
        cols = line.split()
        if len(cols) >= 5 and cols[1].lower() == voice.lower() and not cols[4].startswith("mb/"):
            return cols[4]
    return voice


def espeak_command(voice: str, variant: str, rate: int, pitch: int, out: str | Path, text: str) -> list[str]:
    """The espeak-ng command line that writes ``text`` spoken by ``voice+variant`` to ``out`` (WAV)."""
    return [espeak_binary(), "-v", f"{voice_file(voice)}+{variant}", "-s", str(int(rate)), "-p", str(int(pitch)),
            "-w", str(out), text]


def speak(voice: str, variant: str, rate: int, pitch: int, out: str | Path, text: str) -> Path:
    """Run espeak-ng; the WAV appears at ``out`` only when complete (temp name + rename)."""
    with atomic_path(out) as tmp:
        proc = subprocess.run(espeak_command(voice, variant, rate, pitch, tmp, text), capture_output=True, text=True)
        if proc.returncode != 0 or not tmp.is_file() or tmp.stat().st_size <= 44:
            raise SpeechError(f"espeak-ng failed for {voice}+{variant} {text!r}: {proc.stderr.strip()}")
    return Path(out)


def split_speakers(cfg: WorldConfig) -> dict[str, list[str]]:
    """Speakers of each split, shuffled with the seed and cut by ``split_fractions``."""
    speakers = list(cfg.speakers)
    order = rng_for(cfg.seed, "speakers").permutation(len(speakers))
    shuffled = [speakers[j] for j in order]
    out, start = {}, 0
    for split, count in zip(SPLITS, _split_counts(len(speakers), cfg.split_fractions)):
        out[split] = sorted(shuffled[start:start + count], key=speakers.index)
        start += count
    return out


def write_speech(folder: Path, cfg: WorldConfig, digits: DigitSet, progress: bool = True,
                 workers: int = 2) -> tuple[dict[str, list[dict]], dict[str, list[str]]]:
    """Synthesize every utterance; returns manifest rows (modality "audio") by split and the speakers by split."""
    speakers = split_speakers(cfg)
    split_of = {spk: split for split, spks in speakers.items() for spk in spks}
    jobs, rows = [], {s: [] for s in SPLITS}
    k = 0
    for speaker in cfg.speakers:
        voice, variant = speaker.split("+")
        split = split_of[speaker]
        for label, word in enumerate(DIGIT_WORDS):
            same_class = digits.members(split, label)
            if len(same_class) == 0:
                raise ValueError(f"no image of digit {label} in split {split!r}; raise max_images")
            for _ in range(cfg.utterances_per_speaker_digit):
                rng = rng_for(cfg.seed, "speech", k)
                rate = int(rng.choice(cfg.speech_rates))
                pitch = int(rng.choice(cfg.speech_pitches))
                path = folder / "audio" / f"{k:05d}.wav"
                jobs.append((voice, variant, rate, pitch, path, word))
                rows[split].append({
                    "modality": "audio", "path": relpath(path, folder),
                    "image": digits.image_path(int(rng.choice(same_class))), "label": label,
                    "text": caption(label, rng), "split": split, "speaker": speaker, "rate": rate, "pitch": pitch})
                k += 1
    (folder / "audio").mkdir(parents=True, exist_ok=True)
    with progress_bar(len(jobs), "speech (espeak-ng)", progress) as bar, \
            ThreadPoolExecutor(max_workers=max(1, workers)) as executor:
        for _ in executor.map(lambda job: speak(*job), jobs):
            bar.update()
    return rows, speakers


def speech_units_rows(audio_rows: dict[str, list[dict]]) -> dict[str, list[dict]]:
    """The same utterances as rows of the speech-units modality."""
    return {split: [{**row, "modality": "speech_units"} for row in rows] for split, rows in audio_rows.items()}


def fit_speech_codebook(folder: Path, cfg: WorldConfig, train_rows: list[dict], progress: bool = True) -> Path:
    """k-means codebook over the MFCC frames of the training utterances, saved as safetensors."""
    from modalities.speech_units import fit_codebook

    out = folder / "speech_units_codebook.safetensors"
    paths = [folder / row["path"] for row in train_rows]
    with progress_bar(1, f"speech-units codebook (k={cfg.codebook_k}, {len(paths)} files)", progress) as bar:
        codebook = fit_codebook(paths, k=cfg.codebook_k, seed=cfg.seed)
        codebook.save(out)
        bar.update()
    return out

