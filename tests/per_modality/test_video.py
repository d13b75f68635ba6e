"""Video and two-stream modalities: decoding, length policy, flow, tokenizers and bad input."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from samplegen import MAKERS
from samplegen_video import moving_blob, write_video

from binder.errors import AnybindError, ModalityError
from binder.registry import modality_for_path
from modalities.two_stream import TwoStream
from modalities.video import Video, read_frames

SMALL = dict(num_frames=4, image_size=32, tubelet=(2, 8, 8))
N_TOKENS = (4 // 2) * (32 // 8) * (32 // 8)


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("clips")
    valid = MAKERS["video"](d)
    data = valid.read_bytes()
    (d / "empty.mp4").write_bytes(b"")
    (d / "truncated.mp4").write_bytes(data[: len(data) // 2])
    mkv = write_video(d / "clip.mkv", moving_blob()).read_bytes()
    (d / "truncated.mkv").write_bytes(mkv[: len(mkv) // 2])
    (d / "notes.mp4").write_text("this is a text file, not a video\n")
    levels = np.repeat(np.arange(12, dtype=np.uint8)[:, None, None, None] * 20 + 10, 32, axis=1)
    return {
        "video": valid,
        "two_stream": MAKERS["two_stream"](d),
        "static": write_video(d / "static.twostream.mp4", np.repeat(moving_blob(1), 12, axis=0)),
        "mkv": d / "clip.mkv",
        "truncated_mkv": d / "truncated.mkv",
        "one_frame": write_video(d / "one.mp4", moving_blob(1)),
        "levels": write_video(d / "levels.mp4", np.repeat(levels, 32, axis=2).repeat(3, axis=3)),
        "short": write_video(d / "short.mp4", np.repeat(levels[[0, 5, 10]], 32, axis=2).repeat(3, axis=3)),
        "empty": d / "empty.mp4",
        "truncated": d / "truncated.mp4",
        "text": d / "notes.mp4",
        "missing": d / "missing.mp4",
    }


def test_extensions_route_to_the_right_modality():
    assert modality_for_path("a/b/clip.MP4") == "video"
    assert modality_for_path("clip.twostream.mp4") == "two_stream"
    assert Video().describe().startswith("T frames sampled uniformly")


def test_video_preprocess_and_tokenizer_shapes(clips):
    video = Video(**SMALL)
    x = video.prepare(clips["video"])
    assert x.shape == (3, 4, 32, 32) == video.input_shape()
    assert x.dtype == torch.float32 and torch.isfinite(x).all()
    tok = video.build_tokenizer(video.options, width=24)
    assert tok(torch.stack([x, x])).shape == (2, 1 + N_TOKENS, 24)


def test_video_is_normalized_with_clip_stats(clips):
    video = Video(**SMALL)
    x = video.prepare(clips["video"])
    frames = read_frames(clips["video"], 4)
    mean = torch.tensor(video.options.mean).view(3, 1, 1, 1)
    std = torch.tensor(video.options.std).view(3, 1, 1, 1)
    back = (x * std + mean).mean(dim=(2, 3)).T * 255  # (T, 3) per-frame channel means
    assert torch.allclose(back, torch.from_numpy(frames.mean(axis=(1, 2))).float(), atol=1.5)


@pytest.mark.parametrize("backend", ["decord", "pyav"])
def test_uniform_sampling_over_whole_clip_and_repeat_when_short(clips, backend):
    # frame i of "levels" is a flat grey of 10 + 20 i, so the grey level tells which frame was read
    got = read_frames(clips["levels"], 4, backend=backend).mean(axis=(1, 2, 3))
    np.testing.assert_allclose(got, [10 + 20 * i for i in (0, 4, 7, 11)], atol=6)  # neighbours differ by 20
    short = read_frames(clips["short"], 4, backend=backend).mean(axis=(1, 2, 3))
    np.testing.assert_allclose(short, [10, 110, 110, 210], atol=6)


@pytest.mark.parametrize("kind", ["video", "mkv"])  # .mkv stores no frame count: PyAV must count
def test_decord_and_pyav_agree(clips, kind):
    a = read_frames(clips[kind], 4, backend="decord").astype(np.int16)
    b = read_frames(clips[kind], 4, backend="pyav").astype(np.int16)
    assert a.shape == b.shape == (4, 64, 64, 3)
    assert np.abs(a - b).mean() < 1.0 and np.abs(a - b).max() <= 8
    assert a.std() > 10  # content, not a blank decode


def test_two_stream_shapes_and_rgb_matches_video(clips):
    ts, video = TwoStream(**SMALL), Video(**SMALL)
    raw = ts.load(clips["two_stream"])
    assert np.array_equal(raw, video.load(clips["two_stream"]))  # the same T frames video decodes
    x = ts.preprocess(raw)
    assert x.shape == (6, 4, 32, 32) == ts.input_shape()  # RGB, flow dx, dy and its length
    plain = TwoStream(**SMALL, flow_magnitude=False)
    assert torch.equal(plain.preprocess(raw), x[:5]) and plain.input_shape() == (5, 4, 32, 32)
    assert torch.equal(x[:3], video.prepare(clips["two_stream"]))  # exactly video's clip of the same file
    early = TwoStream(**SMALL, fusion="early")
    assert early.build_tokenizer(early.options, width=16)(x[None]).shape == (1, 1 + 2 * N_TOKENS, 16)
    late = ts.build_tokenizer(ts.options, width=16)(x[None]).streams  # the default: one sequence per stream
    assert [t.shape for t in late] == [(1, 1 + N_TOKENS, 16)] * 2


def test_two_stream_tokens_see_flow_and_streams_differ():
    ts = TwoStream(**SMALL, fusion="early")
    torch.manual_seed(0)
    tok = ts.build_tokenizer(ts.options, width=16).eval()
    x = torch.randn(1, *ts.input_shape())
    y = x.clone()
    y[:, 3:] = 0
    out_x, out_y = tok(x), tok(y)
    assert torch.equal(out_x[:, 1:1 + N_TOKENS], out_y[:, 1:1 + N_TOKENS])  # RGB tokens untouched
    assert not torch.allclose(out_x[:, 1 + N_TOKENS:], out_y[:, 1 + N_TOKENS:])  # flow tokens changed


def test_flow_tracks_motion_and_is_zero_when_static(clips):
    ts = TwoStream(**SMALL)
    flow = ts.prepare(clips["two_stream"])[3:]
    dx, dy = flow[0], flow[1]
    moving = flow.abs().amax(0) > 0.02
    assert moving.float().mean() > 0.05
    assert dx[moving].mean() > 0.05  # the blob moves right
    assert dx[moving].mean() > 5 * dy[moving].abs().mean()
    assert flow.abs().max() <= 1.0
    length = torch.linalg.vector_norm(flow[:2] * ts.options.flow_scale, dim=0) / ts.options.flow_scale
    assert torch.allclose(flow[2], length.clamp(0, 1), atol=1e-6)  # the length of the (unclamped) flow
    assert flow[2][moving].mean() > 0.05 and flow[2].min() >= 0
    static = ts.prepare(clips["static"])[3:]
    assert static.abs().max() < 0.01


def test_flow_magnitude_is_the_same_for_opposite_motions():
    """Left and right motion give opposite (dx, dy) but the same length channel: what the stream can
    tell apart by shape does not depend on the direction something moves."""
    from modalities.two_stream import scale_flow

    ts = TwoStream(**SMALL)
    flow = np.random.default_rng(0).normal(0, 3, (4, 32, 32, 2)).astype(np.float32)
    a, b = scale_flow(flow, ts.options), scale_flow(-flow, ts.options)
    assert torch.equal(a[:2], -b[:2]) and torch.equal(a[2], b[2])
    assert a[2].max() <= 1.0 and a[2].min() >= 0
    with pytest.raises(ValueError, match="flow_magnitude"):
        TwoStream(flow_magnitude="yes")


@pytest.mark.parametrize("modality", [Video, TwoStream])
def test_same_file_gives_identical_tensor(clips, modality):
    m = modality(**SMALL)
    path = clips[modality.name]
    assert torch.equal(m.prepare(path), m.prepare(path))


@pytest.mark.parametrize("case,reason", [
    ("missing", "no such file"),
    ("empty", "empty"),
    ("truncated", "cannot decode"),
    ("text", "cannot decode"),
    ("one_frame", "only 1 frame"),
])
@pytest.mark.parametrize("modality", [Video, TwoStream])
@pytest.mark.parametrize("backend", ["auto", "pyav"])
def test_bad_input_raises_modality_error_naming_the_file(clips, case, reason, modality, backend):
    with pytest.raises(ModalityError) as info:
        modality(backend=backend, **SMALL).prepare(clips[case])
    assert info.value.path == str(clips[case])
    assert reason in info.value.reason
    assert str(clips[case]) in str(info.value)


@pytest.mark.parametrize("backend", ["auto", "decord", "pyav"])
def test_truncated_mkv_without_frame_count_is_an_error(clips, backend):
    # .mkv headers hold no frame count, so the reader must notice the missing frames by itself
    with pytest.raises(ModalityError, match="truncated.mkv"):
        read_frames(clips["truncated_mkv"], 4, backend=backend)


def test_options_are_validated():
    with pytest.raises(ValueError, match="backend"):
        Video(backend="ffmpeg")
    with pytest.raises(ValueError, match="tubelet"):
        Video(num_frames=3, tubelet=(2, 16, 16))
    with pytest.raises(ValueError, match="flow"):
        TwoStream(flow="tvl1")
    assert TwoStream(**SMALL).options.winsize == 15


def test_without_decord_auto_reads_with_pyav_and_decord_by_name_says_how_to_install(clips, monkeypatch):
    monkeypatch.setitem(sys.modules, "decord", None)  # `import decord` now raises ImportError
    frames = read_frames(clips["video"], 4, backend="auto")
    np.testing.assert_array_equal(frames, read_frames(clips["video"], 4, backend="pyav"))
    with pytest.raises(AnybindError, match=r"pip install 'anybind\[decord\]'") as info:
        read_frames(clips["video"], 4, backend="decord")
    assert not isinstance(info.value, ModalityError)  # the file is fine: the install is not


def test_training_decodes_more_frames_and_augment_gives_back_t(clips):
    from modalities.augment.video import VideoAugment

    video, opts = Video(**SMALL), VideoAugment(p_temporal=1, p_crop=1)
    raw = video.load_for_training(clips["levels"], opts)  # 12 frames in the file, 2T = 8 decoded
    assert raw.shape == (8, 32, 32, 3) and raw.dtype == np.uint8
    np.testing.assert_array_equal(raw, read_frames(clips["levels"], 8))
    assert video.load_for_training(clips["levels"], VideoAugment(decode_factor=1.5)).shape[0] == 6
    assert video.load_for_training(clips["levels"], None).shape[0] == 4  # no augmentation: inference's T
    assert video.load_for_training(clips["levels"], VideoAugment(enabled=False)).shape[0] == 4
    for seed in range(3):
        frames = video.augment(raw, np.random.default_rng(seed), opts)
        assert frames.shape == (4, 32, 32, 3)
        x = video.prepare_augmented(clips["levels"], raw, np.random.default_rng(seed), opts)
        assert x.shape == (3, 4, 32, 32) == video.input_shape() and torch.isfinite(x).all()


def test_training_load_names_the_file(clips):
    from modalities.augment.video import VideoAugment

    for case in ("truncated", "missing", "one_frame"):
        with pytest.raises(ModalityError) as info:
            Video(**SMALL).load_for_training(clips[case], VideoAugment())
        assert info.value.path == str(clips[case])
