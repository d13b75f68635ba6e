"""Build (or reuse) the offline world: every stage in order, manifests, then ``world.json`` last.

``world.json`` marks a complete world: it is written only after every file and manifest is in
place (each through a temp name + rename), and it records the config hash. ``build_world`` returns
at once when ``world.json`` has the same hash and every manifest it lists exists. Otherwise the
folders the builder owns are cleared (only when the folder already holds a world or a build
marker) and everything is rebuilt: every item is a pure function of (seed, stage, digit index),
so a rebuild is byte-identical.

Every digit stage also writes the held-out ``hard`` split (``HARD``; ``WorldConfig.hard_split``):
manifests ``<name>.hard.jsonl`` next to the train/val/test ones, files under ``<folder>/hard/``,
timed as ``<stage>_hard`` in ``world.json``'s ``stage_s``.

Run from the repository root: ``python -m recipes.world out/world [--small] [--seed N]``.
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from binder.errors import ConfigError
from binder.io import atomic_path
from recipes.world.config import BUILDER_VERSION, HARD, SPLITS, WorldConfig
from recipes.world.manifest import MANIFEST_DIR, manifest_path, read_world_manifest, write_manifest

WORLD_JSON = "world.json"
BUILD_MARKER = ".world-building"
CODEBOOK = "speech_units_codebook.safetensors"
Tables = dict[str, dict[str, list[dict]]]  # manifest name -> split -> rows


@dataclasses.dataclass
class StageContext:
    """What every stage reads (folder, config, the chosen digits) and what some report back."""

    folder: Path
    cfg: WorldConfig
    digits: Any
    progress: bool
    workers: int
    stage_s: dict[str, float]
    speakers: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    codebook: Path | None = None

    def timed(self, name: str, fn: Callable[..., Any], *args: Any) -> Any:
        t0 = time.perf_counter()
        out = fn(*args)
        self.stage_s[name] = round(time.perf_counter() - t0, 2)
        return out


@dataclasses.dataclass(frozen=True)
class Stage:
    """One modality stage: switched by ``WorldConfig.include_<name>``, owns ``folder``, writes tables."""

    name: str
    folder: str
    run: Callable[[StageContext], Tables]


def _speech(ctx: StageContext) -> Tables:
    from recipes.world import speech

    audio, ctx.speakers = ctx.timed("speech", speech.write_speech, ctx.folder, ctx.cfg, ctx.digits, ctx.progress,
                                    ctx.workers)
    ctx.codebook = ctx.timed("speech_units_codebook", speech.fit_speech_codebook, ctx.folder, ctx.cfg, audio["train"],
                             ctx.progress)
    if ctx.cfg.hard_split:  # after the codebook: the hard utterances never reach it
        audio[HARD] = ctx.timed("speech_hard", speech.write_speech_hard, ctx.folder, ctx.cfg, ctx.digits, ctx.progress,
                                ctx.workers)
        ctx.speakers = {**ctx.speakers, HARD: sorted({row["speaker"] for row in audio[HARD]})}
    return {"audio": audio, "speech_units": speech.speech_units_rows(audio)}


def _rendered(name: str, module: str, function: str) -> Callable[[StageContext], Tables]:
    """A stage that renders one table per digit (depth, thermal, IMU) and its hard split (``{function}_hard``)."""
    def run(ctx: StageContext) -> Tables:
        mod = importlib.import_module(f"recipes.world.{module}")
        table = ctx.timed(name, getattr(mod, function), ctx.folder, ctx.cfg, ctx.digits, ctx.progress)
        if ctx.cfg.hard_split:
            table[HARD] = ctx.timed(f"{name}_hard", getattr(mod, f"{function}_hard"), ctx.folder, ctx.cfg, ctx.digits,
                                    ctx.progress)
        return {name: table}
    return run


def _video(ctx: StageContext) -> Tables:
    from recipes.world import video

    rgb, two_stream = ctx.timed("video", video.write_videos, ctx.folder, ctx.cfg, ctx.digits, ctx.progress)
    if ctx.cfg.hard_split:
        rgb[HARD], two_stream[HARD] = ctx.timed("video_hard", video.write_videos_hard, ctx.folder, ctx.cfg, ctx.digits,
                                                ctx.progress)
    return {"video": rgb, "two_stream": two_stream}


def _basic_motions(ctx: StageContext) -> Tables:
    from recipes.world import basic_motions

    return {"basic_motions": ctx.timed("basic_motions", basic_motions.write_basic_motions, ctx.folder, ctx.progress)}


# The one table of stages, in build order.
STAGES: tuple[Stage, ...] = (
    Stage("speech", "audio", _speech),
    Stage("depth", "depth", _rendered("depth", "depth", "write_depth")),
    Stage("thermal", "thermal", _rendered("thermal", "thermal", "write_thermal")),
    Stage("video", "video", _video),
    Stage("imu", "imu", _rendered("imu", "imu", "write_imu")),
    Stage("basic_motions", "basic_motions", _basic_motions),
)
OWNED_DIRS = ("images", MANIFEST_DIR, *(s.folder for s in STAGES))


@dataclasses.dataclass(frozen=True)
class WorldInfo:
    """A built world: where it is, what config made it and where its manifests are."""

    folder: Path
    config: WorldConfig
    config_hash: str
    manifests: dict[str, dict[str, Path]]  # name ("images", "audio", ...) -> split (SPLITS, HARD) -> absolute path
    counts: dict[str, dict[str, int]]
    codebook: Path | None
    speakers: dict[str, list[str]]
    elapsed_s: float
    cached: bool

    def manifest(self, name: str, split: str) -> Path:
        """Absolute path of manifest ``name`` (``"audio"``, ...) of ``split`` (train/val/test or ``"hard"``)."""
        try:
            return self.manifests[name][split]
        except KeyError:
            have = {n: sorted(s) for n, s in self.manifests.items()}
            raise ConfigError(f"world has no manifest {name}.{split}; it has {have}") from None

    def rows(self, name: str, split: str) -> list[dict]:
        """The manifest's rows with absolute paths."""
        return read_world_manifest(self.manifest(name, split))


def _info_from_json(folder: Path, data: dict[str, Any], cached: bool) -> WorldInfo:
    return WorldInfo(
        folder=folder,
        config=WorldConfig.from_dict(data["config"]),
        config_hash=data["config_hash"],
        manifests={name: {split: folder / rel for split, rel in splits.items()}
                   for name, splits in data["manifests"].items()},
        counts=data["counts"],
        codebook=folder / data["speech_units_codebook"] if data.get("speech_units_codebook") else None,
        speakers=data.get("speakers", {}),
        elapsed_s=float(data.get("elapsed_s", 0.0)),
        cached=cached,
    )


def load_world(folder: str | os.PathLike) -> WorldInfo:
    """The WorldInfo of a complete world folder (raises FileNotFoundError when ``world.json`` is missing)."""
    folder = Path(folder).resolve()
    data = json.loads((folder / WORLD_JSON).read_text(encoding="utf-8"))
    return _info_from_json(folder, data, cached=True)


def _cached(folder: Path, cfg: WorldConfig) -> WorldInfo | None:
    try:
        info = load_world(folder)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if info.config_hash != cfg.config_hash():
        return None
    paths = [p for splits in info.manifests.values() for p in splits.values()]
    if info.codebook is not None:
        paths.append(info.codebook)
    if not all(p.is_file() for p in paths) or _left_out_but_here_now(info):
        return None
    return info


def _left_out_but_here_now(info: WorldInfo) -> bool:
    """Whether a speaker of another engine was left out of this world (missing then) and can be made now."""
    if not info.config.include_speech:
        return False
    from recipes.world import voices
    from recipes.world.speech import engine_speakers

    built = {name for names in info.speakers.values() for name in names}
    wanted = [speaker for _, speaker in engine_speakers(info.config)]
    if info.config.hard_split and info.config.hard_engine_per_class:
        wanted += [voices.EngineVoice.parse(s) for s in info.config.hard_engine_voices]
    return any(v.name not in built and voices.missing(v) is None for v in wanted)


def _clear(folder: Path) -> None:
    """Remove what an earlier (other-config or interrupted) build left, only in a folder we built."""
    if not ((folder / WORLD_JSON).exists() or (folder / BUILD_MARKER).exists()):
        return
    (folder / WORLD_JSON).unlink(missing_ok=True)
    for name in OWNED_DIRS:
        shutil.rmtree(folder / name, ignore_errors=True)
    (folder / CODEBOOK).unlink(missing_ok=True)


def _tool_versions(cfg: WorldConfig) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("scikit-learn", "aeon", "av", "numpy", "scipy", "opencv-python-headless", "librosa"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    if cfg.include_speech:
        from recipes.world.speech import engine_speakers, espeak_version
        from recipes.world.voices import engine_version

        out["espeak-ng"] = espeak_version()
        engines = {v.engine for _, v in engine_speakers(cfg)} | {s.split(":")[0] for s in cfg.hard_engine_voices}
        out.update({engine: engine_version(engine) for engine in sorted(engines)})
    return out


def build_world(folder: str | os.PathLike, cfg: WorldConfig | None = None, progress: bool = True,
                workers: int = 2) -> WorldInfo:
    """Write the world described by ``cfg`` (default ``WorldConfig.full()``) into ``folder``.

    Returns immediately (``cached=True``) when a complete world of the same config is there.
    ``workers`` is how many espeak-ng processes run at once; it never changes the output.
    """
    from recipes.world import images

    cfg = cfg or WorldConfig.full()
    folder = Path(folder).resolve()
    hit = _cached(folder, cfg)
    if hit is not None:
        return hit

    start = time.perf_counter()
    _clear(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / BUILD_MARKER).write_text(cfg.config_hash() + "\n")

    tables: dict[str, dict[str, list[dict]]] = {}
    stage_s: dict[str, float] = {}
    ctx = StageContext(folder, cfg, images.select_digits(cfg), progress, workers, stage_s)
    tables["images"] = ctx.timed("images", images.write_images, folder, cfg, ctx.digits, progress)
    for stage in STAGES:
        if getattr(cfg, f"include_{stage.name}"):
            tables.update(stage.run(ctx))
    speakers, codebook = ctx.speakers, ctx.codebook

    manifests: dict[str, dict[str, str]] = {}
    counts: dict[str, dict[str, int]] = {}
    for name, by_split in tables.items():
        manifests[name], counts[name] = {}, {}
        for split in [s for s in (*SPLITS, HARD) if s in by_split]:
            path = manifest_path(folder, name, split)
            counts[name][split] = write_manifest(path, by_split[split])
            manifests[name][split] = path.relative_to(folder).as_posix()

    elapsed = time.perf_counter() - start
    data = {
        "format": "anybind-world", "builder_version": BUILDER_VERSION,
        "config_hash": cfg.config_hash(), "config": cfg.to_dict(),
        "manifests": manifests, "counts": counts,
        "speech_units_codebook": codebook.relative_to(folder).as_posix() if codebook else None,
        "speakers": speakers, "elapsed_s": round(elapsed, 2), "stage_s": stage_s, "tools": _tool_versions(cfg),
    }
    with atomic_path(folder / WORLD_JSON) as tmp:
        tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    (folder / BUILD_MARKER).unlink(missing_ok=True)
    return _info_from_json(folder, data, cached=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m recipes.world",
                                     description="Build the offline world (digits, speech, depth, thermal, video, "
                                                 "IMU, BasicMotions) into a folder.")
    parser.add_argument("folder")
    parser.add_argument("--small", action="store_true", help="the small preset (tests)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    cfg = (WorldConfig.small if args.small else WorldConfig.full)(seed=args.seed)
    info = build_world(args.folder, cfg, progress=True, workers=args.workers)
    state = "cached" if info.cached else f"built in {info.elapsed_s:.1f} s"
    print(f"world {info.config_hash} in {info.folder} ({state})", file=sys.stderr)
    for name, splits in info.counts.items():
        print(f"  {name:14s} " + "  ".join(f"{s}={n}" for s, n in splits.items()), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
