"""Build (or reuse) the offline world: every stage in order, manifests, then ``world.json`` last.

``world.json`` marks a complete world: it is written only after every file and manifest is in
place (each through a temp name + rename), and it records the config hash. ``build_world`` returns
at once when ``world.json`` has the same hash and every manifest it lists exists. Otherwise the
folders the builder owns are cleared (only when the folder already holds a world or a build
marker) and everything is rebuilt: every item is a pure function of (seed, stage, digit index),
so a rebuild is byte-identical.

Run from the repository root: ``python -m recipes.world out/world [--small] [--seed N]``.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from recipes.world.common import atomic_path
from recipes.world.config import BUILDER_VERSION, SPLITS, WorldConfig
from recipes.world.manifest import MANIFEST_DIR, manifest_path, read_manifest, write_manifest

WORLD_JSON = "world.json"
BUILD_MARKER = ".world-building"
OWNED_DIRS = ("images", "audio", "depth", "thermal", "video", "imu", "basic_motions", MANIFEST_DIR)
CODEBOOK = "speech_units_codebook.safetensors"


@dataclasses.dataclass(frozen=True)
class WorldInfo:
    """A built world: where it is, what config made it and where its manifests are."""

    folder: Path
    config: WorldConfig
    config_hash: str
    manifests: dict[str, dict[str, Path]]  # name ("images", "audio", ...) -> split -> absolute path
    counts: dict[str, dict[str, int]]
    codebook: Path | None
    speakers: dict[str, list[str]]
    elapsed_s: float
    cached: bool

    def manifest(self, name: str, split: str) -> Path:
        try:
            return self.manifests[name][split]
        except KeyError:
            have = {n: sorted(s) for n, s in self.manifests.items()}
            raise KeyError(f"world has no manifest {name}.{split}; it has {have}") from None

    def rows(self, name: str, split: str) -> list[dict]:
        """The manifest's rows with absolute paths."""
        return read_manifest(self.manifest(name, split))


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
    return info if all(p.is_file() for p in paths) else None


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
        from recipes.world.speech import espeak_version

        out["espeak-ng"] = espeak_version()
    return out


def build_world(folder: str | os.PathLike, cfg: WorldConfig | None = None, progress: bool = True,
                workers: int = 2) -> WorldInfo:
    """Write the world described by ``cfg`` (default ``WorldConfig.full()``) into ``folder``.

    Returns immediately (``cached=True``) when a complete world of the same config is there.
    ``workers`` is how many espeak-ng processes run at once; it never changes the output.
    """
    from recipes.world import basic_motions, depth, imu, images, speech, thermal, video

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
    speakers: dict[str, list[str]] = {}
    codebook = None

    def timed(name: str, fn, *args):
        t0 = time.perf_counter()
        out = fn(*args)
        stage_s[name] = round(time.perf_counter() - t0, 2)
        return out

    digits = images.select_digits(cfg)
    tables["images"] = timed("images", images.write_images, folder, cfg, digits, progress)
    if cfg.include_speech:
        tables["audio"], speakers = timed("speech", speech.write_speech, folder, cfg, digits, progress, workers)
        tables["speech_units"] = speech.speech_units_rows(tables["audio"])
        codebook = timed("speech_units_codebook", speech.fit_speech_codebook, folder, cfg, tables["audio"]["train"],
                         progress)
    if cfg.include_depth:
        tables["depth"] = timed("depth", depth.write_depth, folder, cfg, digits, progress)
    if cfg.include_thermal:
        tables["thermal"] = timed("thermal", thermal.write_thermal, folder, cfg, digits, progress)
    if cfg.include_video:
        tables["video"], tables["two_stream"] = timed("video", video.write_videos, folder, cfg, digits, progress)
    if cfg.include_imu:
        tables["imu"] = timed("imu", imu.write_imu, folder, cfg, digits, progress)
    if cfg.include_basic_motions:
        tables["basic_motions"] = timed("basic_motions", basic_motions.write_basic_motions, folder, progress)

    manifests: dict[str, dict[str, str]] = {}
    counts: dict[str, dict[str, int]] = {}
    for name, by_split in tables.items():
        manifests[name], counts[name] = {}, {}
        for split in [s for s in SPLITS if s in by_split]:
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
