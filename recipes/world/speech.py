"""Spoken digits: the ten digit words by 15 espeak-ng speakers and the voices of other synthesizers.

Besides espeak-ng's formant voices below, ``WorldConfig.engine_speakers`` adds speakers of flite and
festival (diphone, statistical parametric and HTS synthesis; ``recipes/world/voices.py``), each
assigned to one split by name and numbered after espeak-ng's utterances, which stay as they were.
Every row records ``engine`` and ``voice``; the hard split adds ``hard_engine_per_class`` utterances
per digit word by the held-out ``hard_engine_voices``, under the same conditions as its others.

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

Hard split (``audio/hard/{k:05d}.wav``, manifests ``audio.hard.jsonl`` and ``speech_units.hard.jsonl``):
``hard_per_class`` utterances of each digit word, each paired with a random TEST image of the digit,
under conditions that no train/val/test utterance has (and that the training augmentation, which
synthesizes white/pink/brown noise, never produces):

* Speakers: other English voices (``HARD_VOICES``: New York, Scottish, Received Pronunciation,
  Lancastrian and West Midlands accents, those ``espeak-ng --voices=en`` lists) with other
  variants (``HARD_VARIANTS``: m4-m7, f3-f5, klatt, klatt2, those ``--voices=variant`` lists),
  minus any voice or variant the config's speakers use, so a hard speaker shares neither its
  voice nor its variant with any train/val/test speaker. (en-us-nyc shares most digit words with
  en-us; its speakers still differ by variant.)
* Rate and pitch outside the config's grid: rates 10-40 wpm below its slowest (espeak's floor is
  80) or 15-60 wpm above its fastest (80-110 or 215-260 for the full grid); pitches 8-25 below
  or above its range (5-22 or 78-95 for the full grid).
* Sample rate 16 kHz (resampled, scipy's polyphase filter) or espeak's native 22.05 kHz.
* 25 % of the items are otherwise clean (``condition`` "clean"); the rest get a random non-empty
  subset of: ``pad`` (0.3-2.5 s of silence before and after, with a faint room-tone floor 45-55 dB
  below the speech), ``noise`` at 5-20 dB SNR of one kind: ``babble`` (3-6 talkers, each a chain
  of espeak-ng non-digit words such as "weather", "table", "morning" by hard voices), ``hum``
  (50 or 60 Hz mains with 4-8 harmonics, slowly modulated) or ``bursts`` (3-8 band-limited
  noise bursts of 30-250 ms, 300 Hz-5 kHz, 0.3-1 octave wide, within the utterance), and
  ``gain`` (-30 to -10 dB, a distant microphone, or +3 to +12 dB, capped so nothing clips).
  SNR is the power of the (resampled) espeak utterance over the power of the added noise within
  the utterance's span; the row records ``snr_db``, ``noise``, ``gain_db`` (the gain applied),
  ``pad_s``, ``speech_start`` / ``speech_samples`` (where the utterance lies, in samples) and the
  speaker, rate, pitch and sample rate, so the clean signal can be re-synthesized and the SNR
  measured.

Held out so a binding can be checked for robustness (unseen speakers, speaking styles, rooms and
interference) without any of it leaking into training: the train/val/test speakers stay the same.
"""
from __future__ import annotations

import functools
import shutil
import subprocess
import sys
import tempfile
import wave
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import numpy as np

from binder.errors import AnybindError, ConfigError
from binder.io import atomic_path
from recipes.world import voices
from recipes.world.common import pick_conditions, progress_bar, relpath, rng_for
from recipes.world.config import HARD, SPLITS, WorldConfig
from recipes.world.images import DIGIT_WORDS, DigitSet, caption, split_counts

ESPEAK = "espeak-ng"
T = TypeVar("T")


class SpeechError(AnybindError, RuntimeError):
    """A speech engine (espeak-ng, flite, festival) is missing or failed."""


def espeak_binary() -> str:
    exe = shutil.which(ESPEAK)
    if exe is None:
        raise SpeechError("espeak-ng is needed for the speech modality (apt-get install espeak-ng, or `make apt`)")
    return exe


@functools.cache
def espeak_version() -> str:
    out = subprocess.run([espeak_binary(), "--version"], capture_output=True, text=True, check=True).stdout
    parts = out.split(":")[1].split() if ":" in out else out.split()
    return parts[0] if parts else out.strip()


@functools.cache
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
    with atomic_path(out, durable=False) as tmp:  # world.json, written last, marks a whole build
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
    for split, count in zip(SPLITS, split_counts(len(speakers), cfg.split_fractions)):
        out[split] = sorted(shuffled[start:start + count], key=speakers.index)
        start += count
    return out


def write_speech(folder: Path, cfg: WorldConfig, digits: DigitSet, progress: bool = True,
                 workers: int = 2) -> tuple[dict[str, list[dict]], dict[str, list[str]]]:
    """Synthesize every utterance; returns manifest rows (modality "audio") by split and the speakers by split.

    espeak-ng's speakers come first, numbered and drawn exactly as without other engines; the
    ``engine_speakers`` follow, each in its own split, then the train-only speakers
    (``speech_train_variants``), so adding either leaves every earlier file as it was. An engine, voice
    or variant missing here is left out with a message naming what to install."""
    speakers = split_speakers(cfg)
    split_of = {spk: split for split, spks in speakers.items() for spk in spks}
    jobs: list[Callable[[], Path]] = []
    rows: dict[str, list[dict]] = {s: [] for s in SPLITS}
    k = 0
    def espeak_draw(rng: np.random.Generator) -> tuple[int, int]:
        return int(rng.choice(cfg.speech_rates)), int(rng.choice(cfg.speech_pitches))

    def espeak_speaker(speaker: str, split: str, stream: str, k: int) -> int:
        """Queue one espeak-ng speaker's utterances from number ``k`` on; the next free number."""
        voice, variant = speaker.split("+")
        for (rate, pitch), label, path, row in _utterances(folder, cfg, digits, split, stream, k, espeak_draw):
            row.update(speaker=speaker, engine=ESPEAK, voice=speaker, rate=rate, pitch=pitch)
            jobs.append(functools.partial(speak, voice, variant, rate, pitch, path, DIGIT_WORDS[label]))
            rows[split].append(row)
            k += 1
        return k

    for speaker in cfg.speakers:
        k = espeak_speaker(speaker, split_of[speaker], "speech", k)
    for split, other in available_engine_speakers(cfg):
        speakers[split].append(other.name)
        for rate, label, path, row in _utterances(folder, cfg, digits, split, "speech-engine", k,
                                                  lambda rng: int(rng.choice(cfg.speech_rates))):
            row.update(speaker=other.name, engine=other.engine, voice=other.voice,
                       rate=rate if voices.keeps_rate(other) else None, pitch=None)
            jobs.append(functools.partial(voices.synthesize, other, rate, path, DIGIT_WORDS[label]))
            rows[split].append(row)
            k += 1
    for speaker in available_train_only_speakers(cfg):
        speakers["train"].append(speaker)
        k = espeak_speaker(speaker, "train", "speech-train-only", k)
    (folder / "audio").mkdir(parents=True, exist_ok=True)
    with progress_bar(len(jobs), "speech (espeak-ng and other engines)", progress) as bar, \
            ThreadPoolExecutor(max_workers=max(1, workers)) as executor:
        for _ in executor.map(lambda job: job(), jobs):
            bar.update()
    return rows, speakers


def _utterances(folder: Path, cfg: WorldConfig, digits: DigitSet, split: str, stream: str, k: int,
                draw: Callable[[np.random.Generator], T]) -> Iterator[tuple[T, int, Path, dict]]:
    """One speaker's utterances from number ``k`` on: what ``draw`` took from each one's generator (first,
    before the paired image and the caption), its digit, its WAV path and its row so far."""
    for label in range(len(DIGIT_WORDS)):
        same_class = digits.members(split, label)
        if len(same_class) == 0:
            raise ConfigError(f"no image of digit {label} in split {split!r}; raise max_images")
        for _ in range(cfg.utterances_per_speaker_digit):
            rng = rng_for(cfg.seed, stream, k)
            drawn = draw(rng)
            path = folder / "audio" / f"{k:05d}.wav"
            yield drawn, label, path, {
                "modality": "audio", "path": relpath(path, folder),
                "image": digits.image_path(int(rng.choice(same_class))), "label": label,
                "text": caption(label, rng), "split": split}
            k += 1


def engine_speakers(cfg: WorldConfig) -> list[tuple[str, voices.EngineVoice]]:
    """``(split, speaker)`` of each of the config's ``engine_speakers``, in config order."""
    return [voices.split_and_speaker(spec, SPLITS) for spec in cfg.engine_speakers]


def available_engine_speakers(cfg: WorldConfig) -> list[tuple[str, voices.EngineVoice]]:
    """The ``engine_speakers`` that can be synthesized here; each missing one is reported on stderr."""
    return [(split, speaker) for split, speaker in engine_speakers(cfg) if _here(speaker)]


def available_train_only_speakers(cfg: WorldConfig) -> list[str]:
    """The config's train-only espeak-ng speakers whose variant is installed; each missing one is reported."""
    have = espeak_variants() if cfg.speech_train_variants else frozenset()
    missing = sorted({v for v in cfg.speech_train_variants if v not in have})
    if missing:
        print(f"world: espeak-ng has no variant {', '.join(missing)}; its train-only speakers are left out "
              "(apt-get install espeak-ng-data, or `make apt`)", file=sys.stderr)
    return [s for s in cfg.train_only_speakers if s.split("+")[1] in have]


def _here(speaker: voices.EngineVoice) -> bool:
    why = voices.missing(speaker)
    if why is not None:
        print(f"world: speaker {speaker.name} left out: {why}", file=sys.stderr)
    return why is None


def speech_units_rows(audio_rows: dict[str, list[dict]]) -> dict[str, list[dict]]:
    """The same utterances as rows of the speech-units modality."""
    return {split: [{**row, "modality": "speech_units"} for row in rows] for split, rows in audio_rows.items()}


def fit_speech_codebook(folder: Path, cfg: WorldConfig, train_rows: list[dict], progress: bool = True) -> Path:
    """k-means codebook over the MFCC frames of the training utterances, saved as safetensors."""
    from binder.train.units import fit_first_codebook

    out = folder / "speech_units_codebook.safetensors"
    paths = [folder / row["path"] for row in train_rows]
    with progress_bar(1, f"speech-units codebook (k={cfg.codebook_k}, {len(paths)} files)", progress) as bar:
        codebook, _ = fit_first_codebook(paths, k=cfg.codebook_k, seed=cfg.seed, progress=False, skip_bad=False)
        codebook.save(out)
        bar.update()
    return out



# hard split ----------------------------------------------------------------------------------------
HARD_VOICES = ("en-us-nyc", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd")
HARD_VARIANTS = ("m4", "m5", "m6", "m7", "f3", "f4", "f5", "klatt", "klatt2")
BABBLE_WORDS = ("weather", "table", "morning", "window", "garden", "yellow", "river", "paper", "basket", "music",
                "coffee", "pencil", "market", "doctor", "silver", "orange", "bottle", "castle", "camera", "holiday",
                "blanket", "kitchen", "planet", "rabbit")
HARD_SAMPLE_RATES = (16000, 22050)
HARD_SNR_DB = (5.0, 20.0)
HARD_NOISES = ("babble", "hum", "bursts")
HARD_CONDITIONS = ("pad", "noise", "gain")
HARD_CLEAN_SHARE = 0.25
ESPEAK_RATE = 22050


@functools.cache
def espeak_variants() -> frozenset[str]:
    """Variant file names (``m4``, ``klatt`` ...) that ``espeak-ng --voices=variant`` lists."""
    out = subprocess.run([espeak_binary(), "--voices=variant"], capture_output=True, text=True, check=True).stdout
    return frozenset(line.split("!v/", 1)[1].strip() for line in out.splitlines() if "!v/" in line)


def hard_speakers(cfg: WorldConfig) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The hard split's voices and variants: installed, and used by none of the config's speakers."""
    voices = tuple(v for v in HARD_VOICES if v not in cfg.speech_voices and voice_file(v) != v)
    have = espeak_variants()
    variants = tuple(v for v in HARD_VARIANTS if v not in cfg.speech_variants and v in have)
    if not voices or not variants:
        raise SpeechError(f"espeak-ng has none of the hard split's voices {HARD_VOICES} or variants {HARD_VARIANTS}")
    return voices, variants


def out_of_grid(grid: tuple[int, ...], below: tuple[int, int], above: tuple[int, int],
                limits: tuple[int, int]) -> list[tuple[int, int]]:
    """Integer ranges [lo, hi] below and above ``grid`` (``below``/``above``: distances from its ends),
    within ``limits``."""
    lo, hi = min(grid), max(grid)
    ranges = [(max(limits[0], lo - below[1]), lo - below[0]), (hi + above[0], min(limits[1], hi + above[1]))]
    ranges = [r for r in ranges if r[0] <= r[1]]
    if not ranges:
        raise ConfigError(f"no room outside the grid {grid} within {limits} for the hard split")
    return ranges


def _draw_in(rng: np.random.Generator, ranges: list[tuple[int, int]]) -> int:
    widths = np.array([hi - lo + 1 for lo, hi in ranges], dtype=np.float64)
    lo, hi = ranges[int(rng.choice(len(ranges), p=widths / widths.sum()))]
    return int(rng.integers(lo, hi + 1))


def hard_rates(cfg: WorldConfig) -> list[tuple[int, int]]:
    return out_of_grid(cfg.speech_rates, (10, 40), (15, 60), (80, 450))


def hard_pitches(cfg: WorldConfig) -> list[tuple[int, int]]:
    return out_of_grid(cfg.speech_pitches, (8, 25), (8, 25), (0, 99))


def read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    """16-bit PCM WAV as float64 in [-1, 1] (first channel) and its sample rate."""
    with wave.open(str(path), "rb") as fh:
        if fh.getsampwidth() != 2:
            raise SpeechError(f"{path}: expected 16-bit PCM")
        data = np.frombuffer(fh.readframes(fh.getnframes()), dtype="<i2").reshape(-1, fh.getnchannels())
        return data[:, 0].astype(np.float64) / 32768.0, fh.getframerate()


def write_wav(path: str | Path, samples: np.ndarray, rate: int) -> Path:
    """Mono 16-bit PCM WAV (temp name + rename)."""
    pcm = np.clip(np.round(np.asarray(samples) * 32767.0), -32768, 32767).astype("<i2")
    with atomic_path(path, durable=False) as tmp:  # world.json, written last, marks a whole build
        with wave.open(str(tmp), "wb") as fh:
            fh.setnchannels(1)
            fh.setsampwidth(2)
            fh.setframerate(int(rate))
            fh.writeframes(pcm.tobytes())
    return Path(path)


def resample(x: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Polyphase resampling (scipy.signal.resample_poly); the identity when the rates agree."""
    if rate_in == rate_out:
        return np.asarray(x, dtype=np.float64)
    from math import gcd

    from scipy.signal import resample_poly

    g = gcd(int(rate_in), int(rate_out))
    return resample_poly(np.asarray(x, dtype=np.float64), int(rate_out) // g, int(rate_in) // g)


def _babble(rng: np.random.Generator, n: int, rate: int, pool: list[np.ndarray]) -> np.ndarray:
    """3-6 talkers, each a chain of pool words with short gaps, at levels within ±3 dB."""
    out = np.zeros(n)
    for _ in range(int(rng.integers(3, 7))):
        offset = int(rng.integers(0, rate))
        parts, total = [], 0
        while total < n + offset:
            word = pool[int(rng.integers(len(pool)))]
            gap = np.zeros(int(rng.uniform(0.0, 0.15) * rate))
            parts += [word, gap]
            total += len(word) + len(gap)
        talker = np.concatenate(parts)[offset:offset + n]
        rms = np.sqrt(np.mean(talker ** 2))
        out += talker / max(rms, 1e-9) * 10 ** (rng.uniform(-3, 3) / 20)
    return out


def _hum(rng: np.random.Generator, n: int, rate: int) -> np.ndarray:
    """Mains hum: 50 or 60 Hz and 4-8 harmonics (odd ones stronger, as from a rectifier), slowly modulated."""
    t = np.arange(n) / rate
    f0 = float(rng.choice((50.0, 60.0))) * (1 + rng.uniform(-0.003, 0.003))
    out = np.zeros(n)
    for h in range(1, int(rng.integers(5, 10))):
        amp = rng.uniform(0.2, 1.0) / h ** rng.uniform(0.3, 1.0) * (rng.uniform(1.0, 2.0) if h % 2 else 1.0)
        out += amp * np.sin(2 * np.pi * f0 * h * t + rng.uniform(0, 2 * np.pi))
    return out * (1 + 0.1 * np.sin(2 * np.pi * rng.uniform(0.2, 2.0) * t + rng.uniform(0, 2 * np.pi)))


def _bursts(rng: np.random.Generator, n: int, rate: int, span: tuple[int, int]) -> np.ndarray:
    """3-8 band-limited noise bursts (30-250 ms, Hann-shaped, centred within the utterance)."""
    from scipy.signal import butter, sosfilt

    out = np.zeros(n)
    for _ in range(int(rng.integers(3, 9))):
        length = max(8, int(rng.uniform(0.03, 0.25) * rate))
        centre = int(rng.integers(span[0], span[1]))
        fc = float(np.exp(rng.uniform(np.log(300.0), np.log(min(5000.0, 0.35 * rate)))))
        octaves = rng.uniform(0.3, 1.0)
        band = [fc * 2 ** (-octaves / 2), min(fc * 2 ** (octaves / 2), 0.45 * rate)]
        sos = butter(4, band, btype="bandpass", fs=rate, output="sos")
        burst = sosfilt(sos, rng.normal(0, 1, length + 512))[512:] * np.hanning(length) * rng.uniform(0.3, 1.0)
        a = centre - length // 2
        lo, hi = max(0, a), min(n, a + length)
        out[lo:hi] += burst[lo - a:hi - a]
    return out


def _room_tone(rng: np.random.Generator, n: int, rate: int) -> np.ndarray:
    """A faint low-passed noise floor (unit power before scaling)."""
    from scipy.signal import butter, sosfilt

    floor = sosfilt(butter(2, 1000.0, fs=rate, output="sos"), rng.normal(0, 1, n + 512))[512:]
    return floor / max(np.sqrt(np.mean(floor ** 2)), 1e-12)


def degrade(clean: np.ndarray, rng: np.random.Generator, rate: int,
            babble_pool: list[np.ndarray]) -> tuple[np.ndarray, dict]:
    """Apply the hard split's conditions to one utterance (at ``rate``); returns samples and row fields."""
    conditions = [] if rng.random() < HARD_CLEAN_SHARE else pick_conditions(rng, HARD_CONDITIONS)
    power = float(np.mean(clean ** 2))
    lead = trail = 0
    if "pad" in conditions:
        lead, trail = (int(round(rng.uniform(0.3, 2.5) * rate)) for _ in range(2))
    y = np.zeros(lead + len(clean) + trail)
    y[lead:lead + len(clean)] = clean
    span = (lead, lead + len(clean))
    labels, fields = [], {"noise": None, "snr_db": None}
    if "pad" in conditions:
        floor_db = rng.uniform(45.0, 55.0)
        y += _room_tone(rng, len(y), rate) * np.sqrt(power * 10 ** (-floor_db / 10))
        labels.append(f"pad-{lead / rate:.1f}s-{trail / rate:.1f}s")
        fields["floor_db"] = round(float(-floor_db), 2)
    if "noise" in conditions:
        kind = HARD_NOISES[int(rng.integers(len(HARD_NOISES)))]
        snr = float(rng.uniform(*HARD_SNR_DB))
        if kind == "babble":
            noise = _babble(rng, len(y), rate, babble_pool)
        elif kind == "hum":
            noise = _hum(rng, len(y), rate)
        else:
            noise = _bursts(rng, len(y), rate, span)
        noise_power = float(np.mean(noise[span[0]:span[1]] ** 2))
        y += noise * np.sqrt(power * 10 ** (-snr / 10) / max(noise_power, 1e-20))
        labels.append(f"noise-{kind}-{snr:.0f}dB")
        fields.update(noise=kind, snr_db=round(snr, 2))
    peak = max(float(np.abs(y).max()), 1e-9)
    if "gain" in conditions:
        wanted = rng.uniform(-30.0, -10.0) if rng.random() < 0.5 else rng.uniform(3.0, 12.0)
        gain = min(10 ** (wanted / 20), 0.98 / peak)
        labels.append(f"gain{20 * np.log10(gain):+.0f}dB")
    else:
        gain = min(1.0, 0.98 / peak)
    fields.update(gain_db=round(float(20 * np.log10(gain)), 3), pad_s=[round(lead / rate, 6), round(trail / rate, 6)],
                  speech_start=lead, speech_samples=len(clean))
    return y * gain, {"condition": "+".join(labels) or "clean", **fields}


def write_speech_hard(folder: Path, cfg: WorldConfig, digits: DigitSet, progress: bool = True,
                      workers: int = 2) -> list[dict]:
    """The hard split: ``hard_per_class`` utterances per digit word (see the module docstring); audio rows."""
    espeak_voices, variants = hard_speakers(cfg)
    rates, pitches = hard_rates(cfg), hard_pitches(cfg)
    (folder / "audio" / HARD).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="anybind-hard-speech-") as tmp_dir:
        tmp = Path(tmp_dir)
        babble_jobs = []
        for j, word in enumerate(BABBLE_WORDS):
            rng = rng_for(cfg.seed, "speech-hard-babble", j)
            babble_jobs.append((espeak_voices[int(rng.integers(len(espeak_voices)))],
                                variants[int(rng.integers(len(variants)))],
                                int(rng.integers(120, 201)), int(rng.integers(20, 81)), tmp / f"babble{j}.wav", word))
        items, jobs = [], []
        for label, word in enumerate(DIGIT_WORDS):
            test_images = digits.members("test", label)
            if len(test_images) == 0:
                raise ConfigError(f"no test image of digit {label} for the hard split; raise max_images")
            for j in range(cfg.hard_per_class):
                k = label * cfg.hard_per_class + j
                rng = rng_for(cfg.seed, "speech-hard", k)
                voice = espeak_voices[int(rng.integers(len(espeak_voices)))]
                variant = variants[int(rng.integers(len(variants)))]
                rate, pitch = _draw_in(rng, rates), _draw_in(rng, pitches)
                sample_rate = int(rng.choice(HARD_SAMPLE_RATES))
                image = digits.image_path(int(rng.choice(test_images)))
                text = caption(label, rng)
                jobs.append((voice, variant, rate, pitch, tmp / f"{k:05d}.wav", word))
                items.append((k, rng, label, image, text, voice, variant, rate, pitch, sample_rate))
        engine_items, engine_jobs = _hard_engine_items(cfg, digits, tmp, rates)
        all_jobs = [functools.partial(speak, *job) for job in babble_jobs + jobs] + engine_jobs
        with progress_bar(len(all_jobs), "speech (espeak-ng and other engines, hard)", progress) as bar, \
                ThreadPoolExecutor(max_workers=max(1, workers)) as executor:
            for _ in executor.map(lambda job: job(), all_jobs):
                bar.update()
        babble = [read_wav(job[4])[0] for job in babble_jobs]
        pools = {rate: [resample(x, ESPEAK_RATE, rate) for x in babble] for rate in HARD_SAMPLE_RATES}
        rows = []
        for k, rng, label, image, text, voice, variant, rate, pitch, sample_rate in items:
            speaker = f"{voice}+{variant}"
            who = {"speaker": speaker, "engine": ESPEAK, "voice": speaker, "rate": rate, "pitch": pitch}
            rows.append(_hard_row(folder, tmp, k, rng, label, image, text, who, sample_rate, pools))
        for k, rng, label, image, text, other, rate, sample_rate in engine_items:
            who = {"speaker": other.name, "engine": other.engine, "voice": other.voice,
                   "rate": rate if voices.keeps_rate(other) else None, "pitch": None}
            rows.append(_hard_row(folder, tmp, k, rng, label, image, text, who, sample_rate, pools))
    return rows


def _hard_row(folder: Path, tmp: Path, k: int, rng: np.random.Generator, label: int, image: str, text: str,
              who: dict, sample_rate: int, pools: dict[int, list[np.ndarray]]) -> dict:
    """Hard item ``k``: its clean utterance (``tmp/{k:05d}.wav``) at ``sample_rate`` under drawn conditions,
    written to ``audio/hard/``; its row, with ``who`` (speaker, engine, voice, rate, pitch)."""
    clean, native = read_wav(tmp / f"{k:05d}.wav")
    samples, fields = degrade(resample(clean, native, sample_rate), rng, sample_rate, pools[sample_rate])
    path = write_wav(folder / "audio" / HARD / f"{k:05d}.wav", samples, sample_rate)
    return {"modality": "audio", "path": relpath(path, folder), "image": image, "label": label, "text": text,
            "split": HARD, **who, "sample_rate": sample_rate, **fields}


def _hard_engine_items(cfg: WorldConfig, digits: DigitSet, tmp: Path,
                       rates: list[tuple[int, int]]) -> tuple[list[tuple], list[Callable[[], Path]]]:
    """``hard_engine_per_class`` utterances per digit word by the held-out engine voices (numbered after
    espeak-ng's hard items, so those are unchanged), and the jobs that synthesize them."""
    held_out = [v for v in (voices.EngineVoice.parse(s) for s in cfg.hard_engine_voices) if _here(v)]
    items: list[tuple] = []
    jobs: list[Callable[[], Path]] = []
    if not held_out:
        return items, jobs
    first = len(DIGIT_WORDS) * cfg.hard_per_class
    for label, word in enumerate(DIGIT_WORDS):
        test_images = digits.members("test", label)
        for j in range(cfg.hard_engine_per_class):
            k = first + label * cfg.hard_engine_per_class + j
            rng = rng_for(cfg.seed, "speech-hard-engine", k)
            other = held_out[int(rng.integers(len(held_out)))]
            rate, sample_rate = _draw_in(rng, rates), int(rng.choice(HARD_SAMPLE_RATES))
            image = digits.image_path(int(rng.choice(test_images)))
            items.append((k, rng, label, image, caption(label, rng), other, rate, sample_rate))
            jobs.append(functools.partial(voices.synthesize, other, rate, tmp / f"{k:05d}.wav", word))
    return items, jobs
