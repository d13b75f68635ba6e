"""Speech synthesizers beyond espeak-ng, each a different technique, for a wider voice world.

espeak-ng is formant synthesis: every one of its voices shares the same kind of source and filter,
so a binding trained on it alone learns espeak-ng as much as it learns speech. Debian ships other
techniques, and their voices join the world as speakers named ``ENGINE:VOICE``:

* ``flite`` (CMU Flite 2): ``kal16`` is diphone concatenation; ``awb``, ``rms`` and ``slt`` are
  clustergen statistical parametric voices of three CMU ARCTIC speakers (Scottish male, US male, US
  female).
* ``festival`` (Festival 2.5): ``kal_diphone`` and ``ked_diphone`` (festvox-kallpc16k,
  festvox-kdlpc16k) are residual-excited LPC diphone voices; ``cmu_us_slt_arctic_hts``
  (festvox-us-slt-hts) is HMM-based (HTS) synthesis.

A speaking rate (words per minute, espeak-ng's scale) becomes a duration stretch of
``NOMINAL_WPM / rate``; festival's HTS engine ignores that stretch and speaks at its own rate, so its
rows record ``rate`` null. These engines take no pitch on espeak-ng's 0-99 scale, so their rows record
``pitch`` null. A missing engine or voice is reported by ``missing`` with the Debian package that
brings it; the world builder leaves its speakers out and says so.
"""
from __future__ import annotations

import functools
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from binder.errors import AnybindError, ConfigError
from binder.io import atomic_path

NOMINAL_WPM = 160.0  # the rate these engines speak at with a stretch of 1


class SynthesisError(AnybindError):
    """A speech synthesizer is missing or failed on one utterance."""


@dataclass(frozen=True)
class EngineVoice:
    """One ``ENGINE:VOICE`` speaker of an engine other than espeak-ng."""

    engine: str
    voice: str

    @classmethod
    def parse(cls, spec: str) -> EngineVoice:
        engine, sep, voice = spec.partition(":")
        if not sep or engine not in ENGINES or not voice:
            raise ConfigError(f"a speaker of another engine is ENGINE:VOICE with ENGINE one of {tuple(ENGINES)}, "
                             f"got {spec!r}")
        return cls(engine, voice)

    @property
    def name(self) -> str:
        return f"{self.engine}:{self.voice}"


def split_and_speaker(spec: str, splits: tuple[str, ...]) -> tuple[str, EngineVoice]:
    """``SPLIT:ENGINE:VOICE`` (an entry of ``WorldConfig.engine_speakers``) as its split and speaker."""
    split, _, speaker = spec.partition(":")
    if split not in splits:
        raise ConfigError(f"engine_speakers entries are SPLIT:ENGINE:VOICE with SPLIT one of {splits}, got {spec!r}")
    return split, EngineVoice.parse(speaker)


def _flite_command(voice: str, stretch: float, out: Path, text: str) -> list[str]:
    return ["flite", "-voice", voice, "--setf", f"duration_stretch={stretch:.4f}", "-t", text, "-o", str(out)]


def _festival_command(voice: str, stretch: float, out: Path, text: str) -> list[str]:
    return ["text2wave", "-eval", f"(voice_{voice})", "-eval", f"(Parameter.set 'Duration_Stretch {stretch:.4f})",
            "-o", str(out)]


@dataclass(frozen=True)
class Engine:
    """How to run one synthesizer: its command, where text goes, and the Debian package of each voice."""

    binary: str
    command: Callable[[str, float, Path, str], list[str]]  # (voice, stretch, out, text) -> argv
    text_on_stdin: bool
    packages: dict[str, str]  # voice -> Debian package that brings it
    fixed_rate: frozenset[str] = frozenset()  # voices that ignore the duration stretch


ENGINES: dict[str, Engine] = {
    "flite": Engine("flite", _flite_command, False, {v: "flite" for v in ("kal16", "awb", "rms", "slt", "kal")}),
    "festival": Engine("text2wave", _festival_command, True, {
        "kal_diphone": "festvox-kallpc16k", "ked_diphone": "festvox-kdlpc16k",
        "cmu_us_slt_arctic_hts": "festvox-us-slt-hts"}, frozenset({"cmu_us_slt_arctic_hts"})),
}


def keeps_rate(speaker: EngineVoice) -> bool:
    """Whether ``speaker`` follows the rate it is given (False: it speaks at its own)."""
    return speaker.voice not in ENGINES[speaker.engine].fixed_rate


@functools.cache
def _festival_voices() -> frozenset[str]:
    """Voices festival can load here (``voice.list``); empty when festival is missing or fails."""
    try:
        out = subprocess.run(["festival", "--pipe"], input="(print (voice.list))", capture_output=True, text=True,
                             timeout=60).stdout
    except (OSError, subprocess.TimeoutExpired):
        return frozenset()
    return frozenset(out.replace("(", " ").replace(")", " ").split())


@functools.cache
def _flite_voices() -> frozenset[str]:
    try:
        out = subprocess.run(["flite", "-lv"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.TimeoutExpired):
        return frozenset()
    return frozenset(out.split(":", 1)[-1].split())


def missing(speaker: EngineVoice) -> str | None:
    """Why ``speaker`` cannot be synthesized here (with the package to install), or None when it can."""
    engine = ENGINES[speaker.engine]
    package = engine.packages.get(speaker.voice, speaker.engine)
    if shutil.which(engine.binary) is None:
        return f"{speaker.engine} is not installed (apt-get install {speaker.engine} {package}, or `make apt`)"
    have = _flite_voices() if speaker.engine == "flite" else _festival_voices()
    if speaker.voice not in have:
        return f"{speaker.engine} has no voice {speaker.voice} (apt-get install {package}, or `make apt`)"
    return None


def engine_version(engine: str) -> str:
    """The engine's version line, for world.json's tools."""
    flag = ["flite", "--version"] if engine == "flite" else ["festival", "--version"]
    try:
        out = subprocess.run(flag, capture_output=True, text=True, timeout=60).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "missing"
    lines = [line.strip() for line in out.splitlines() if line.strip()]
    versioned = [line for line in lines if "version" in line.lower() or "2." in line]
    return (versioned or lines or ["unknown"])[0]


def synthesize(speaker: EngineVoice, rate: int, out: str | Path, text: str) -> Path:
    """``text`` spoken by ``speaker`` at ``rate`` words per minute, written to ``out`` (WAV) only when
    complete (temp name + rename)."""
    engine = ENGINES[speaker.engine]
    with atomic_path(out, durable=False) as tmp:
        argv = engine.command(speaker.voice, NOMINAL_WPM / float(rate), tmp, text)
        proc = subprocess.run(argv, input=text if engine.text_on_stdin else None, capture_output=True, text=True,
                              timeout=120)
        if proc.returncode != 0 or not tmp.is_file() or tmp.stat().st_size <= 44:
            raise SynthesisError(f"{speaker.name} failed for {text!r}: {proc.stderr.strip()[-300:]}")
    return Path(out)
