"""The offline world builder (recipes/world): manifests, pairing, caching, determinism, physics checks.

One small world is built per test module (about 20 s on 2 cores); the other worlds built here
leave speech, video, BasicMotions and the hard split out so they take a few seconds. The held-out
``hard`` split (robustness conditions training never sees) is checked at the end.
"""
from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from binder.errors import AnybindError  # noqa: E402
from binder.registry import get_modality  # noqa: E402
from recipes.world import HARD, SPLITS, WorldConfig, build_world, load_world, read_world_manifest  # noqa: E402
from recipes.world.basic_motions import ACTIVITY_CAPTIONS  # noqa: E402
from recipes.world.basic_motions import load_basic_motions as world_basic_motions
from recipes.world.images import CAPTION_TEMPLATES, DIGIT_WORDS, caption  # noqa: E402
from recipes.world.manifest import KEYS  # noqa: E402

DIGIT_MODALITIES = ("images", "audio", "speech_units", "depth", "thermal", "video", "two_stream", "imu")
LOAD_OPTIONS = {  # small inputs: the world's files are 32 px
    "image": {"image_size": 32},
    "depth": {"image_size": 32, "patch": 8},
    "thermal": {"image_size": 32, "patch": 8},
    "video": {"num_frames": 4, "image_size": 32, "tubelet": (2, 8, 8)},
    "two_stream": {"num_frames": 4, "image_size": 32, "tubelet": (2, 8, 8)},
}
HARD_MODALITIES = ("audio", "speech_units", "depth", "thermal", "video", "two_stream", "imu")
LIGHT = dict(include_speech=False, include_video=False, include_basic_motions=False, hard_split=False)


@pytest.fixture(scope="module")
def world(small_world):
    return small_world


def _rows(world, name, split, absolute=True):
    return read_world_manifest(world.manifest(name, split), absolute=absolute)


def _all_rows(world, name):
    """Rows of the regular splits (train/val/test), not the hard one."""
    return [row for split in SPLITS if split in world.manifests[name] for row in _rows(world, name, split)]


def _digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _zscore_rows(x: np.ndarray) -> np.ndarray:
    x = x.reshape(len(x), -1).astype(np.float64)
    x = x - x.mean(1, keepdims=True)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _same_vs_different(features: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    corr = _zscore_rows(features) @ _zscore_rows(features).T
    same = labels[:, None] == labels[None, :]
    off_diag = ~np.eye(len(labels), dtype=bool)
    return float(corr[same & off_diag].mean()), float(corr[~same].mean())


# manifests ---------------------------------------------------------------------------------------

def test_every_modality_and_split_has_a_manifest(world):
    cfg = world.config
    for name in DIGIT_MODALITIES:
        for split in SPLITS:
            path = world.manifest(name, split)
            assert path == world.folder / "manifests" / f"{name}.{split}.jsonl" and path.is_file()
            assert world.counts[name][split] == len(_rows(world, name, split)) > 0
    assert sorted(world.manifests["basic_motions"]) == ["test", "train"]
    n_images = sum(world.counts["images"].values())
    assert n_images == cfg.max_images
    for name in ("depth", "thermal", "video", "two_stream", "imu"):
        assert {s: world.counts[name][s] for s in SPLITS} == world.counts["images"]
    n_speakers = len(cfg.speech_voices) * len(cfg.speech_variants) + len(cfg.engine_speakers)
    assert sum(world.counts["audio"][s] for s in SPLITS) == n_speakers * 10 * cfg.utterances_per_speaker_digit
    assert world.counts["speech_units"] == world.counts["audio"]


def test_images_split_is_stratified(world):
    counts = {s: np.bincount([r["label"] for r in _rows(world, "images", s)], minlength=10) for s in SPLITS}
    total = sum(counts.values())
    assert (total > 0).all()
    for split, frac in zip(SPLITS, world.config.split_fractions):
        np.testing.assert_allclose(counts[split] / total, frac, atol=0.1)
    paths = [set(r["path"] for r in _rows(world, "images", s)) for s in SPLITS]
    assert not (paths[0] & paths[1]) and not (paths[0] & paths[2]) and not (paths[1] & paths[2])


def test_rows_have_the_manifest_format(world):
    for name in world.manifests:
        for split in world.manifests[name]:
            raw = _rows(world, name, split, absolute=False)
            for row in raw:
                assert list(row)[: len(KEYS)] == list(KEYS)
                assert row["split"] == split
                assert not Path(row["path"]).is_absolute() and (world.folder / row["path"]).is_file()
                assert isinstance(row["text"], str) and row["text"]
            resolved = _rows(world, name, split)
            assert all(Path(r["path"]).is_absolute() and Path(r["path"]).is_file() for r in resolved)
            assert all(r["image"] is None or Path(r["image"]).is_file() for r in resolved)
    expected = {"images": "image", "basic_motions": "imu"}
    for name in world.manifests:
        assert {r["modality"] for r in _all_rows(world, name)} == {expected.get(name, name)}


def test_pairs_are_class_consistent(world):
    image_label = {r["path"]: r["label"] for r in _all_rows(world, "images")}
    image_split = {r["path"]: r["split"] for r in _all_rows(world, "images")}
    for name in DIGIT_MODALITIES:
        for row in _all_rows(world, name):
            assert image_label[row["image"]] == row["label"], (name, row)
            assert image_split[row["image"]] == row["split"], (name, row)
            words = (DIGIT_WORDS[row["label"]], str(row["label"]))
            assert any(w in row["text"].split() or w + "," in row["text"].split() for w in words), row


@pytest.mark.parametrize("name", list(DIGIT_MODALITIES) + ["basic_motions"])
def test_every_file_loads_through_its_modality(world, name):
    modality_name = {"images": "image", "basic_motions": "imu"}.get(name, name)
    options = dict(LOAD_OPTIONS.get(modality_name, {}))
    if modality_name == "speech_units":
        options.update(num_units=world.config.codebook_k, codebook=str(world.codebook))
    modality = get_modality(modality_name)(**options)
    rows = _all_rows(world, name)
    assert rows
    if name in HARD_MODALITIES:
        hard = _rows(world, name, HARD)
        assert hard
        rows += hard
    for row in rows:
        x = modality.prepare(row["path"])
        assert tuple(x.shape) == modality.input_shape()
        if modality_name != "speech_units":  # speech units pad with NaN rows by design
            assert np.isfinite(x.numpy()).all(), row["path"]


# speech -------------------------------------------------------------------------------------------

def test_speech_speakers_are_disjoint_across_splits(world):
    by_split = {s: {r["speaker"] for r in _rows(world, "audio", s)} for s in SPLITS}
    assert all(by_split.values())
    assert not (by_split["train"] & by_split["val"])
    assert not (by_split["train"] & by_split["test"])
    assert not (by_split["val"] & by_split["test"])
    engines = {spec.partition(":")[2]: spec.partition(":")[0] for spec in world.config.engine_speakers}
    assert set().union(*by_split.values()) == set(world.config.speakers) | set(engines)
    assert all(name in by_split[split] for name, split in engines.items())  # each in the split it is named for
    assert {s: sorted(v) for s, v in by_split.items()} == {s: sorted(world.speakers[s]) for s in SPLITS}
    for split in SPLITS:  # every speaker says every digit
        rows = _rows(world, "audio", split)
        for speaker in by_split[split]:
            assert {r["label"] for r in rows if r["speaker"] == speaker} == set(range(10))


def test_every_speaker_sounds_different(tmp_path):
    from recipes.world.speech import speak

    cfg = WorldConfig.full()
    digests = {}
    for speaker in cfg.speakers:
        voice, variant = speaker.split("+")
        digests[speaker] = _digest(speak(voice, variant, 150, 50, tmp_path / f"{speaker}.wav", "seven"))
    assert len(set(digests.values())) == len(cfg.speakers) == 15, digests


def test_speech_units_codebook_is_fitted_and_usable(world):
    from modalities.speech_units import Codebook

    assert world.codebook is not None and world.codebook.name == "speech_units_codebook.safetensors"
    codebook = Codebook.load(world.codebook)
    assert codebook.k == world.config.codebook_k
    modality = get_modality("speech_units")(num_units=codebook.k, codebook=str(world.codebook))
    tokenizer = modality.build_tokenizer(modality.options, 16)
    rows = _rows(world, "speech_units", "test")[:4]
    batch = modality.collate([modality.prepare(r["path"]) for r in rows])
    units = tokenizer.units(batch)
    used = units[units != codebook.k]
    assert used.numel() > 0 and len(set(used.tolist())) > 3  # a fitted codebook spreads speech over many units


# rendered modalities --------------------------------------------------------------------------------

def test_depth_is_not_a_copy_of_the_image_but_is_class_informative(world):
    rows = _all_rows(world, "depth")
    labels = np.array([r["label"] for r in rows])
    depth = np.stack([np.asarray(Image.open(r["path"]), np.float64) for r in rows])
    size = depth.shape[-1]
    grey = np.stack([np.asarray(Image.open(r["image"]).convert("L").resize((size, size)), np.float64) for r in rows])
    corr = (_zscore_rows(depth) * _zscore_rows(grey)).sum(1)
    assert np.abs(corr).max() < 0.95

    valid = depth > 0
    assert 0.9 < valid.mean() < 1.0  # a few holes, not many
    assert depth[valid].min() > 200 and depth[valid].max() < 3000  # 0.4-1.2 m plane, tilted, in mm
    # the relief: disparity of a plane is affine in pixel coordinates; what is left is the digit
    yy, xx = np.mgrid[0:size, 0:size]
    relief = np.zeros_like(depth)
    for i in range(len(depth)):
        v = valid[i]
        disparity = 1000.0 / depth[i][v]
        basis = np.stack([xx[v], yy[v], np.ones(v.sum())], axis=1)
        relief[i][v] = disparity - basis @ np.linalg.lstsq(basis, disparity, rcond=None)[0]
    same, different = _same_vs_different(relief, labels)
    assert same > different + 0.03, (same, different)


def test_thermal_ink_is_warm_and_class_informative(world):
    rows = _all_rows(world, "thermal")
    labels = np.array([r["label"] for r in rows])
    counts = np.stack([np.asarray(Image.open(r["path"]), np.float64) for r in rows])
    assert counts.min() > 0 and counts.max() < 65535  # the 10-45 °C range is never clipped
    size = counts.shape[-1]
    grey = np.stack([np.asarray(Image.open(r["image"]).convert("L").resize((size, size)), np.float64) for r in rows])
    corr = (_zscore_rows(counts) * _zscore_rows(grey)).sum(1)
    assert corr.mean() > 0.3 and np.median(corr) < 0.9  # warm ink, but posed, blurred and noisy
    same, different = _same_vs_different(counts, labels)
    assert same > different + 0.03, (same, different)


def test_video_digit_moves_and_stays_in_frame(world):
    from modalities.video import read_frames

    rows = _rows(world, "video", "val")
    moved = 0
    for row in rows:
        frames = read_frames(row["path"], world.config.video_frames).mean(-1)
        assert frames.shape[0] == world.config.video_frames
        yy, xx = np.mgrid[0:frames.shape[1], 0:frames.shape[2]]
        weights = np.clip(frames - np.median(frames, axis=(1, 2), keepdims=True), 0, None)
        cx = (weights * xx).sum((1, 2)) / weights.sum((1, 2))
        cy = (weights * yy).sum((1, 2)) / weights.sum((1, 2))
        moved += np.hypot(cx[-1] - cx[0], cy[-1] - cy[0]) > 1.5
        ink = weights.sum((1, 2))
        assert ink.max() / ink.min() < 1.25  # the glyph never (even partly) leaves the canvas
    assert moved >= 0.9 * len(rows)
    two = {r["path"] for r in _rows(world, "two_stream", "val")}
    assert two == {r["path"] for r in rows}


def _imu_features(x: np.ndarray) -> np.ndarray:
    """Shift-tolerant features: low-frequency amplitude spectra and spreads of every channel."""
    centred = x - x.mean(2, keepdims=True)
    spectrum = np.abs(np.fft.rfft(centred, axis=2))[:, :, 1:40]
    return np.concatenate([spectrum.reshape(len(x), -1), x.std(2)], axis=1)


def test_imu_traces_are_physical_and_differ_by_digit(world):
    rows = _all_rows(world, "imu")
    x = np.stack([np.load(r["path"]) for r in rows])
    labels = np.array([r["label"] for r in rows])
    splits = np.array([r["split"] for r in rows])
    assert x.shape[1:] == (6, world.config.imu_length) and x.dtype == np.float32
    # the window starts or ends at rest (>= 6 % of it on one side): there the accelerometer reads gravity
    rest = 50
    at_start = np.linalg.norm(x[:, :3, :rest], axis=1).mean(1)
    at_end = np.linalg.norm(x[:, :3, -rest:], axis=1).mean(1)
    assert (np.minimum(np.abs(at_start - 9.81), np.abs(at_end - 9.81)) < 0.4).all()
    assert np.percentile(np.abs(x[:, 3:]), 99) < 20  # rad/s: a wrist, not a spinning top
    assert np.abs(x[:, :3] - x[:, :3].mean(2, keepdims=True)).max(axis=(1, 2)).min() > 0.5  # every trace moves

    one, zero = x[labels == 1][0], x[labels == 0][0]
    assert np.linalg.norm(one - zero) > 0.2 * np.linalg.norm(zero - zero.mean(1, keepdims=True))

    feats = _imu_features(x)
    feats = (feats - feats.mean(0)) / (feats.std(0) + 1e-9)
    train = splits == "train"
    centroids = np.stack([feats[train & (labels == c)].mean(0) for c in range(10)])
    pred = ((feats[~train][:, None] - centroids[None]) ** 2).sum(-1).argmin(1)
    accuracy = (pred == labels[~train]).mean()
    assert accuracy > 0.25, accuracy  # chance is 0.1


def test_basic_motions_is_the_real_aeon_set(world):
    for split in ("train", "test"):
        rows = _rows(world, "basic_motions", split)
        assert len(rows) == 40
        labels = [r["label"] for r in rows]
        assert set(labels) == set(ACTIVITY_CAPTIONS) and all(labels.count(a) == 10 for a in ACTIVITY_CAPTIONS)
        assert all(r["image"] is None and r["text"] == ACTIVITY_CAPTIONS[r["label"]] for r in rows)
        arrays = np.stack([np.load(r["path"]) for r in rows])
        assert arrays.shape == (40, 6, 100) and arrays.dtype == np.float32
        assert arrays.std() > 0.1
    from aeon.datasets import load_basic_motions

    x, y = load_basic_motions(split="train")
    np.testing.assert_allclose(np.load(_rows(world, "basic_motions", "train")[7]["path"]), x[7], rtol=1e-6)


def test_basic_motions_without_aeon_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "aeon.datasets", None)  # `from aeon.datasets import ...` now fails
    with pytest.raises(AnybindError, match=r"pip install 'anybind\[world\]'"):
        world_basic_motions("train")


# captions ---------------------------------------------------------------------------------------

def test_captions_name_the_digit():
    assert len(CAPTION_TEMPLATES) >= 6
    assert any("{word}" in t for t in CAPTION_TEMPLATES) and any("{numeral}" in t for t in CAPTION_TEMPLATES)
    rng = np.random.default_rng(0)
    texts = {caption(7, rng) for _ in range(200)}
    assert len(texts) == len(CAPTION_TEMPLATES)
    assert all("seven" in t or "7" in t for t in texts)
    assert not any("three" in t or "3" in t for t in texts)


# caching and determinism -------------------------------------------------------------------------

def test_second_build_is_a_cache_hit(world):
    files = sorted(p for p in world.folder.rglob("*") if p.is_file())
    before = {p: (p.stat().st_mtime_ns, p.stat().st_size) for p in files}
    start = time.perf_counter()
    again = build_world(world.folder, WorldConfig.small(), progress=False)
    assert again.cached and time.perf_counter() - start < 2.0
    assert again.config_hash == world.config_hash and again.counts == world.counts
    assert {p: (p.stat().st_mtime_ns, p.stat().st_size) for p in files} == before
    assert sorted(p for p in world.folder.rglob("*") if p.is_file()) == files
    assert load_world(world.folder).manifests == world.manifests
    data = json.loads((world.folder / "world.json").read_text())
    assert data["config"] == WorldConfig.small().to_dict()


def test_items_are_pure_functions_of_seed_and_digit(world, tmp_path):
    """A world with other modalities switched off has byte-identical images, depth, thermal and IMU."""
    light = build_world(tmp_path / "light", WorldConfig.small(**LIGHT), progress=False)
    assert light.config_hash != world.config_hash and not light.cached
    assert "audio" not in light.manifests and "video" not in light.manifests
    assert all(HARD not in splits for splits in light.manifests.values())  # and the regular splits did not change
    for name in ("images", "depth", "thermal", "imu"):
        ours = _all_rows(light, name)
        theirs = {Path(r["path"]).relative_to(world.folder): r for r in _all_rows(world, name)}
        assert len(ours) == len(theirs)
        for row in ours:
            rel = Path(row["path"]).relative_to(light.folder)
            assert _digest(Path(row["path"])) == _digest(world.folder / rel)
            assert row["text"] == theirs[rel]["text"] and row["split"] == theirs[rel]["split"]


def test_other_seed_gives_other_data_and_rebuilds_in_place(tmp_path):
    folder = tmp_path / "w"
    first = build_world(folder, WorldConfig.small(seed=0, max_images=60, **LIGHT), progress=False)
    paths0 = {s: {r["path"] for r in _rows(first, "images", s)} for s in SPLITS}
    depth0 = {Path(r["path"]).name: _digest(Path(r["path"])) for r in _all_rows(first, "depth")}

    second = build_world(folder, WorldConfig.small(seed=1, max_images=60, **LIGHT), progress=False)
    assert not second.cached and second.config_hash != first.config_hash
    paths1 = {s: {r["path"] for r in _rows(second, "images", s)} for s in SPLITS}
    assert paths1 != paths0  # another subset / split
    depth1 = {Path(r["path"]).name: _digest(Path(r["path"])) for r in _all_rows(second, "depth")}
    common = set(depth0) & set(depth1)
    assert all(depth0[name] != depth1[name] for name in common)  # same digit, other pose and noise
    on_disk = {p.name for p in (folder / "depth").iterdir()}
    assert on_disk == set(depth1)  # the first world's files are gone, not mixed in
    assert json.loads((folder / "world.json").read_text())["config"]["seed"] == 1


def test_an_interrupted_build_is_rebuilt(tmp_path):
    cfg = WorldConfig.small(max_images=40, include_depth=False, include_thermal=False, include_imu=False, **LIGHT)
    info = build_world(tmp_path / "w", cfg, progress=False)
    (info.folder / "world.json").unlink()  # as if the build had died before its last step
    again = build_world(info.folder, cfg, progress=False)
    assert not again.cached and (info.folder / "world.json").is_file()
    info.manifest("images", "val").unlink()  # a manifest lost after the build
    assert not build_world(info.folder, cfg, progress=False).cached
    assert build_world(info.folder, cfg, progress=False).cached


def test_config_is_validated_and_round_trips():
    with pytest.raises(ValueError):
        WorldConfig(split_fractions=(0.5, 0.2, 0.2))
    with pytest.raises(ValueError):
        WorldConfig(video_size=33)
    with pytest.raises(ValueError):
        WorldConfig(max_images=10)
    cfg = WorldConfig.small(seed=3)
    assert WorldConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert cfg.config_hash() == WorldConfig.small(seed=3).config_hash() != WorldConfig.small().config_hash()
    assert len(WorldConfig.full().speakers) == 15 and WorldConfig.full().max_images is None
    with pytest.raises(ValueError):
        WorldConfig(hard_per_class=0)
    assert WorldConfig(hard_split=False, hard_per_class=0).hard_split is False
    assert WorldConfig.small(hard_split=False).config_hash() != WorldConfig.small().config_hash()
    assert WorldConfig.small(hard_per_class=4).config_hash() != WorldConfig.small().config_hash()


# the hard (held-out robustness) split --------------------------------------------------------------

def test_hard_split_has_a_manifest_per_digit_modality(world):
    cfg = world.config
    assert HARD not in SPLITS and HARD not in world.manifests["images"] and HARD not in world.manifests["basic_motions"]
    folders = {"audio": "audio", "speech_units": "audio", "two_stream": "video"}
    for name in HARD_MODALITIES:
        path = world.manifest(name, HARD)
        assert path == world.folder / "manifests" / f"{name}.hard.jsonl" and path.is_file()
        raw = _rows(world, name, HARD, absolute=False)
        per_class = cfg.hard_per_class + (cfg.hard_engine_per_class if name in ("audio", "speech_units") else 0)
        assert world.counts[name][HARD] == len(raw) == 10 * per_class
        assert np.bincount([r["label"] for r in raw], minlength=10).tolist() == [per_class] * 10
        assert all(r["split"] == HARD and r["path"].startswith(f"{folders.get(name, name)}/hard/") for r in raw)
        assert all(isinstance(r["condition"], str) and r["condition"] for r in raw)
        assert len({r["condition"] for r in raw}) > 3  # conditions vary from item to item
    assert _rows(world, "two_stream", HARD, absolute=False) == [
        {**r, "modality": "two_stream"} for r in _rows(world, "video", HARD, absolute=False)]
    assert [{k: v for k, v in r.items() if k != "modality"} for r in _rows(world, "speech_units", HARD)] == [
        {k: v for k, v in r.items() if k != "modality"} for r in _rows(world, "audio", HARD)]


def test_hard_rows_pair_only_with_test_images(world):
    images = {r["path"]: r for r in _all_rows(world, "images")}
    for name in HARD_MODALITIES:
        for row in _rows(world, name, HARD):
            image = images[row["image"]]
            assert image["split"] == "test" and image["label"] == row["label"], (name, row)
            words = (DIGIT_WORDS[row["label"]], str(row["label"]))
            assert any(w in row["text"].split() or w + "," in row["text"].split() for w in words), row
            if name not in ("audio", "speech_units"):  # a rendered item shows its own (test) digit
                assert image["digit_index"] == row["digit_index"]


def test_engine_rows_record_engine_and_voice_and_espeak_ones_are_unchanged(world, tmp_path):
    rows = _all_rows(world, "audio") + _rows(world, "audio", HARD)
    assert {r["engine"] for r in rows} == {"espeak-ng", "flite", "festival"}
    for row in rows:
        expected = row["speaker"] if row["engine"] == "espeak-ng" else f"{row['engine']}:{row['voice']}"
        assert row["speaker"] == expected
    hard_engines = {r["speaker"] for r in _rows(world, "audio", HARD) if r["engine"] != "espeak-ng"}
    assert hard_engines == set(world.config.hard_engine_voices)
    # espeak-ng's utterances are the same bytes and rows as in a world without other engines
    plain = build_world(tmp_path / "plain", WorldConfig.small(**{**LIGHT, "include_speech": True},
                                                              engine_speakers=(), hard_engine_per_class=0),
                        progress=False)
    for split in SPLITS:
        ours = [r for r in _rows(world, "audio", split, absolute=False) if r["engine"] == "espeak-ng"]
        theirs = _rows(plain, "audio", split, absolute=False)
        assert ours == theirs
        for a, b in zip(ours[:5], theirs[:5]):
            assert _digest(world.folder / a["path"]) == _digest(plain.folder / b["path"])


def test_train_only_variants_add_training_speakers_and_leave_every_other_file_as_it_was(world, tmp_path, capsys):
    cfg = WorldConfig.small(**{**LIGHT, "include_speech": True, "hard_split": True}, include_depth=False,
                            include_thermal=False, include_imu=False, speech_train_variants=("Andy", "nosuchvariant"))
    wide = build_world(tmp_path / "wide", cfg, progress=False)
    assert "no variant nosuchvariant" in capsys.readouterr().err
    added = {f"{v}+Andy" for v in cfg.speech_voices}
    assert added <= set(wide.speakers["train"]) and not any("nosuchvariant" in s for s in wide.speakers["train"])
    train = _rows(wide, "audio", "train", absolute=False)
    assert {r["label"] for r in train if r["speaker"] in added} == set(range(10))
    for split in ("val", "test", HARD):  # the same rows and the same bytes as the world without them
        theirs = _rows(world, "audio", split, absolute=False)
        assert _rows(wide, "audio", split, absolute=False) == theirs
        for row in theirs[:5]:
            assert _digest(wide.folder / row["path"]) == _digest(world.folder / row["path"])
    before = _rows(world, "audio", "train", absolute=False)
    assert train[:len(before)] == before
    assert len(train) == len(before) + len(added) * 10 * cfg.utterances_per_speaker_digit
    assert wide.config.config_hash() != world.config.config_hash()


@pytest.mark.parametrize("variants, match", [(("m1",), "taken"), (("m4",), "taken"), (("Andy", "Andy"), "twice")])
def test_train_only_variants_must_be_new_and_unheld(variants, match):
    with pytest.raises(AnybindError, match=match):
        WorldConfig.full(speech_train_variants=variants)


def test_an_empty_train_only_list_keeps_the_hash_of_worlds_built_before_it():
    cfg = WorldConfig.full()
    assert cfg.config_hash() != WorldConfig.full(speech_train_variants=("Andy",)).config_hash()
    assert "speech_train_variants" in cfg.to_dict()  # still written to world.json, only left out of the hash
    from recipes.world.config import BUILDER_VERSION

    old = {k: v for k, v in cfg.to_dict().items() if k != "speech_train_variants"}
    blob = json.dumps({"builder": BUILDER_VERSION, **old}, sort_keys=True)
    assert cfg.config_hash() == hashlib.sha256(blob.encode()).hexdigest()[:16]


def test_a_missing_engine_is_left_out_with_a_message_and_built_once_it_is_there(tmp_path, monkeypatch, capsys):
    from recipes.world import voices

    cfg = WorldConfig.small(**{**LIGHT, "include_speech": True}, engine_speakers=("train:flite:awb",),
                            hard_engine_per_class=0)
    real = voices.missing
    monkeypatch.setattr(voices, "missing", lambda v: "flite is not installed (apt-get install flite flite)")
    first = build_world(tmp_path / "w", cfg, progress=False)
    assert "speaker flite:awb left out: flite is not installed" in capsys.readouterr().err
    assert "flite:awb" not in first.speakers["train"]
    assert build_world(tmp_path / "w", cfg, progress=False).cached  # still missing: the world stands
    monkeypatch.setattr(voices, "missing", real)
    again = build_world(tmp_path / "w", cfg, progress=False)
    assert not again.cached and "flite:awb" in again.speakers["train"]


def test_hard_speakers_rates_and_pitches_are_never_trained_on(world):
    cfg = world.config
    rows = [r for r in _rows(world, "audio", HARD) if r["engine"] == "espeak-ng"]
    seen = {r["speaker"] for r in _all_rows(world, "audio") if r["engine"] == "espeak-ng"}
    hard = {r["speaker"] for r in rows}
    assert seen == set(cfg.speakers) and not (hard & seen) and not (hard & set(WorldConfig.full().speakers))
    voices = {s.split("+")[0] for s in hard}
    variants = {s.split("+")[1] for s in hard}
    assert len(voices) >= 3 and len(variants) >= 3
    assert not voices & set(cfg.speech_voices) and not variants & set(cfg.speech_variants)
    assert not variants & set(WorldConfig.full().speech_variants)
    assert sorted(hard | set(cfg.hard_engine_voices)) == world.speakers[HARD]
    for row in rows:
        assert not min(cfg.speech_rates) <= row["rate"] <= max(cfg.speech_rates), row
        assert not min(cfg.speech_pitches) <= row["pitch"] <= max(cfg.speech_pitches), row
        assert row["sample_rate"] in (16000, 22050)
    assert {r["sample_rate"] for r in rows} == {16000, 22050}
    conditions = [r["condition"] for r in rows]
    assert "clean" in conditions and any(c != "clean" for c in conditions)


def test_hard_audio_has_the_declared_padding_gain_and_snr(world, tmp_path):
    """Re-synthesize each clean utterance and measure what the hard file added to it."""
    from recipes.world.speech import HARD_SNR_DB, read_wav, resample, speak
    from recipes.world.voices import EngineVoice, synthesize

    rows = _rows(world, "audio", HARD)
    kinds = set()
    for n, row in enumerate(rows):
        word, out = DIGIT_WORDS[row["label"]], tmp_path / f"{n}.wav"
        if row["engine"] == "espeak-ng":
            voice, variant = row["speaker"].split("+")
            clean, native = read_wav(speak(voice, variant, row["rate"], row["pitch"], out, word))
        else:  # the HTS voice keeps its own rate: any rate gives the same utterance
            clean, native = read_wav(synthesize(EngineVoice.parse(row["speaker"]), row["rate"] or 160, out, word))
        clean = resample(clean, native, row["sample_rate"])
        y, rate = read_wav(row["path"])
        assert rate == row["sample_rate"] and len(clean) == row["speech_samples"]
        start = row["speech_start"]
        assert start == round(row["pad_s"][0] * rate) and len(y) == start + len(clean) + round(row["pad_s"][1] * rate)
        span = y[start:start + len(clean)]
        gain = 10 ** (row["gain_db"] / 20)
        fitted = float(span @ clean / (clean @ clean))  # least squares: noise (babble) may correlate a little
        assert fitted == pytest.approx(gain, rel=0.01 if row["noise"] is None else 0.1), row
        residual = span - gain * clean  # what the file added to the speech
        measured = 10 * np.log10(gain * gain * np.mean(clean ** 2) / max(np.mean(residual ** 2), 1e-30))
        if row["noise"] is None:
            assert measured > 35, row  # clean, padded or gained: nothing but a faint floor and rounding
            continue
        kinds.add(row["noise"])
        assert HARD_SNR_DB[0] <= row["snr_db"] <= HARD_SNR_DB[1]
        assert abs(measured - row["snr_db"]) < 0.2, (measured, row)
        if start:  # the padding holds only the floor (and, where it is continuous, the noise)
            assert np.sqrt(np.mean(y[:start] ** 2)) < np.sqrt(np.mean(span ** 2))
    assert kinds == {"babble", "hum", "bursts"}


def test_hard_rendered_items_leave_the_training_ranges(world):
    depth = _rows(world, "depth", HARD)
    for row in depth:
        x = np.asarray(Image.open(row["path"]))
        assert x.dtype == np.uint16 and (x == 0).mean() == pytest.approx(row["missing_fraction"], abs=1e-4)
        if "tilt" in row["condition"]:
            assert max(abs(t) for t in row["tilt_deg"]) >= 30  # training: within ±25°
        if "holes" in row["condition"]:
            assert (x == 0).mean() > 0.03  # training: 0.3-1 % dropouts and at most 3 small holes
    thermal = _rows(world, "thermal", HARD)
    for row in thermal:
        if "ambient" in row["condition"]:
            assert not 18 <= row["background_c"] <= 26
        if "noise" in row["condition"]:
            assert row["netd_k"] >= 0.2
    video = _rows(world, "video", HARD)
    assert {r["motion"] for r in video if "motion" in r} <= {"slow", "fast", "spin", "zoom"}
    imu = _rows(world, "imu", HARD)
    for row in imu:
        x = np.load(row["path"])
        assert x.shape == (6, world.config.imu_length) and np.isfinite(x).all()
        if "noise" in row["condition"]:
            assert row["acc_noise"] >= 0.1 and row["gyro_noise"] >= 0.02
        if "bias" in row["condition"]:
            assert min(abs(b) for b in row["acc_bias"]) >= 0.2
    for rows in (depth, thermal, video, imu):  # every condition of each modality occurs
        names = {part.split("-")[0] for r in rows for part in r["condition"].split("+")}
        assert len(names) >= 3, names


def test_hard_split_is_deterministic(world, tmp_path):
    """The hard writers, run again into another folder, give the session world's bytes."""
    from recipes.world import depth, imu, speech, thermal, video
    from recipes.world.images import select_digits

    cfg = world.config
    digits = select_digits(cfg)
    writers = {"audio": lambda f: speech.write_speech_hard(f, cfg, digits, False),
               "depth": lambda f: depth.write_depth_hard(f, cfg, digits, False),
               "thermal": lambda f: thermal.write_thermal_hard(f, cfg, digits, False),
               "video": lambda f: video.write_videos_hard(f, cfg, digits, False)[0],
               "imu": lambda f: imu.write_imu_hard(f, cfg, digits, False)}
    for name, write in writers.items():
        rows = write(tmp_path)
        assert rows == _rows(world, name, HARD, absolute=False), name
        for row in rows:
            assert _digest(tmp_path / row["path"]) == _digest(world.folder / row["path"]), row["path"]
