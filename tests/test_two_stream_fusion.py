"""Two-stream late fusion: each stream through the trunk on its own, a learned gate, single-stream
reads, warm starts from a video binding, and flow computed once per frame pair while training."""
from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from samplegen import MAKERS

from binder.config import BindConfig, ModalityConfig, TrunkConfig
from binder.errors import ConfigError, ModalityError
from binder.heads import FusionHead
from binder.model import BindingModel
from binder.tokenizers import StreamTokens
from binder.train.recipe import load_recipe
from binder.train.warm_start import WarmStart, warm_start
from modalities.augment.flow import FlowClip, FlowPick
from modalities.augment.video import VideoAugment
from modalities.two_stream import TwoStream

SMALL = {"num_frames": 4, "image_size": 32, "tubelet": [2, 8, 8]}


def model(*names: str, seed: int = 0, **options) -> BindingModel:
    mods = tuple(ModalityConfig(n, {**SMALL, **options}) for n in names)
    return BindingModel(BindConfig(modalities=mods, seed=seed)).eval()


@pytest.fixture(scope="module")
def video_binding(tmp_path_factory):
    """A (random) video binding saved to a folder, and a batch of clips for both modalities."""
    m = model("video", seed=0)
    for p in m.tokenizers["video"].parameters():  # not the initial weights: a warm start must copy these
        p.data.add_(torch.randn_like(p) * 0.1)
    folder = tmp_path_factory.mktemp("video") / "model"
    m.save(folder)
    return m, folder, torch.randn(3, 6, 4, 32, 32)


def test_late_fusion_is_the_default_and_runs_each_stream_on_its_own():
    ts = TwoStream(**SMALL)
    assert ts.streams() == ("rgb", "flow") and TwoStream(**SMALL, fusion="early").streams() == ()
    out = ts.build_tokenizer(ts.options, width=16)(torch.randn(2, 6, 4, 32, 32))
    assert isinstance(out, StreamTokens) and [t.shape for t in out.streams] == [(2, 1 + 2 * 4 * 4, 16)] * 2
    m = model("two_stream")
    assert isinstance(m.heads["two_stream"], FusionHead)
    with pytest.raises(ConfigError, match="fusion"):
        TwoStream(**SMALL, fusion="middle")


def test_fused_embedding_is_the_gated_sum_of_the_streams_and_each_stream_reads_alone():
    m = model("two_stream")
    x = torch.randn(3, 6, 4, 32, 32)
    with torch.no_grad():
        z = m.encode("two_stream", x)
        with m.single_stream("two_stream", "rgb"):
            z_rgb = m.encode("two_stream", x)
        with m.single_stream("two_stream", "flow"):
            z_flow = m.encode("two_stream", x)
    head = m.heads["two_stream"]
    assert isinstance(head, FusionHead) and head.only is None  # the context restores the fused read
    w = head.weights()
    assert math.isclose(sum(w.values()), 1.0, rel_tol=1e-6)
    assert torch.allclose(z, F.normalize(w["rgb"] * z_rgb + w["flow"] * z_flow, dim=-1), atol=1e-6)
    assert not torch.allclose(z_rgb, z_flow, atol=1e-3)
    x2 = x.clone()
    x2[:, 3:] = 0  # the RGB stream never sees flow
    with torch.no_grad(), m.single_stream("two_stream", "rgb"):
        assert torch.equal(m.encode("two_stream", x2), z_rgb)
    with pytest.raises(ModalityError, match="no stream 'depth'"):
        with m.single_stream("two_stream", "depth"):
            pass


def test_the_gate_learns_and_training_runs_with_token_drop():
    m = model("two_stream").train()
    x = torch.randn(4, 6, 4, 32, 32)
    z = m.encode("two_stream", x, token_drop=0.5, generator=torch.Generator().manual_seed(0))
    z.sum().backward()
    gate = m.heads["two_stream"].gate
    assert gate.grad is not None and gate.grad.abs().sum() > 0
    assert not m.heads["two_stream"].heads["rgb"].log_logit_scale.requires_grad  # one temperature: the fusion's


def test_both_streams_in_one_trunk_call_equal_each_stream_on_its_own_token_drop_included():
    m = model("two_stream").train()
    x = torch.randn(5, 6, 4, 32, 32)
    out = m.tokenizers["two_stream"](x)
    g = torch.Generator().manual_seed(4)
    hidden = [m._through_trunk("two_stream", t, None, 0.5, g, None) for t in out.streams]  # one call each
    apart = m.heads["two_stream"]([h for h, _ in hidden], [k for _, k in hidden], None)
    together = m._encode_streams("two_stream", out, 0.5, torch.Generator().manual_seed(4), None)
    assert torch.allclose(apart, together, atol=1e-6)
    calls = []
    hook = m.trunk.register_forward_hook(lambda mod, args, res: calls.append(args[0].shape[0]))
    try:
        m.eval()
        with torch.no_grad():
            m.encode("two_stream", x)
            with m.single_stream("two_stream", "flow"):
                m.encode("two_stream", x)
    finally:
        hook.remove()
    assert calls == [10, 5]  # fused: both streams in one call; one stream alone: only its rows


def test_stream_dropout_trains_some_rows_on_one_stream_alone_and_only_in_training():
    from binder.config import HeadConfig

    cfg = BindConfig(modalities=(ModalityConfig("two_stream", SMALL, HeadConfig(stream_dropout=0.6)),), seed=0)
    m = BindingModel(cfg).train()
    x = torch.randn(64, 6, 4, 32, 32)
    with torch.no_grad():
        z = m.encode("two_stream", x, generator=torch.Generator().manual_seed(3))
        m.eval()
        fused = m.encode("two_stream", x)
        alone = {}
        for s in ("rgb", "flow"):
            with m.single_stream("two_stream", s):
                alone[s] = m.encode("two_stream", x)
    kinds = [next((k for k, v in (("fused", fused), *alone.items()) if torch.allclose(z[i], v[i], atol=1e-6)), None)
             for i in range(len(x))]
    assert None not in kinds
    assert kinds.count("rgb") > 5 and kinds.count("flow") > 5 and kinds.count("fused") > 10  # p 0.6: about 19/19/26
    m.train()
    whole = m.heads["two_stream"].draw_solo(64, torch.Generator().manual_seed(1))
    part = m.heads["two_stream"].draw_solo(16, torch.Generator().manual_seed(1), window=(16, 64))
    assert torch.equal(part, whole[16:32])  # a batch split across ranks draws what the whole batch would
    with pytest.raises(ConfigError, match="stream_dropout"):
        HeadConfig(stream_dropout=1.0)


def test_stream_pool_gives_one_stream_its_own_pooling_and_survives_save_and_load(tmp_path):
    from binder.config import HeadConfig

    cfg = BindConfig(modalities=(ModalityConfig("two_stream", SMALL, HeadConfig(
        pool="attention", stream_pool={"flow": "mean"})),), seed=0)
    m = BindingModel(cfg).eval()
    heads = m.heads["two_stream"].heads
    assert (heads["rgb"].pool, heads["flow"].pool) == ("attention", "mean")
    assert hasattr(heads["rgb"], "attn") and not hasattr(heads["flow"], "attn")
    x = torch.randn(2, 6, 4, 32, 32)
    back = BindingModel.load(m.save(tmp_path / "m"))
    assert back.heads["two_stream"].heads["flow"].pool == "mean"
    with torch.no_grad():
        assert torch.allclose(back.encode("two_stream", x), m.encode("two_stream", x), atol=1e-6)
    with pytest.raises(ConfigError, match="'depth', not a stream"):
        BindingModel(BindConfig(modalities=(ModalityConfig("two_stream", SMALL, HeadConfig(
            stream_pool={"depth": "mean"})),), seed=0))
    with pytest.raises(ConfigError, match="video has one"):
        BindingModel(BindConfig(modalities=(ModalityConfig("video", SMALL, HeadConfig(
            stream_pool={"rgb": "mean"})),), seed=0))
    with pytest.raises(ConfigError, match="stream_pool.flow must be"):
        HeadConfig(stream_pool={"flow": "max"})


def test_set_weight_puts_the_gate_where_asked():
    head = model("two_stream").heads["two_stream"]
    head.set_weight("rgb", 0.9)
    assert math.isclose(head.weights()["rgb"], 0.9, rel_tol=1e-6)
    with pytest.raises(ValueError):
        head.set_weight("rgb", 1.0)


def test_warm_start_copies_the_video_binding_into_the_rgb_stream(video_binding):
    video, folder, x = video_binding
    ts = model("two_stream")
    info = warm_start(ts, "two_stream", WarmStart(str(folder), modality="video", stream="rgb", weight=0.75))
    assert info["tensors"] > 0 and info["stream"] == "rgb"
    with torch.no_grad():
        z_video = video.encode("video", x[:, :3])
        with ts.single_stream("two_stream", "rgb"):
            z_rgb = ts.encode("two_stream", x)
    assert torch.allclose(z_rgb, z_video, atol=1e-6)  # the RGB stream starts as the video binding
    assert math.isclose(ts.heads["two_stream"].weights()["rgb"], 0.75, rel_tol=1e-6)
    assert torch.equal(ts.heads["two_stream"].log_logit_scale, video.heads["video"].log_logit_scale)


def test_warm_start_refuses_another_anchor_another_shape_and_a_missing_stream(video_binding, tmp_path):
    _, folder, _ = video_binding
    with pytest.raises(ConfigError, match="another anchor"):
        warm_start(model("two_stream", seed=1), "two_stream", WarmStart(str(folder), "video", "rgb"))
    with pytest.raises(ConfigError, match="do not fit"):
        warm_start(model("two_stream", tubelet=[2, 16, 16]), "two_stream", WarmStart(str(folder), "video", "rgb"))
    with pytest.raises(ConfigError, match="no such stream"):
        warm_start(model("two_stream"), "two_stream", WarmStart(str(folder), "video", "depth"))
    with pytest.raises(ConfigError, match="no binding for modality 'audio'"):
        warm_start(model("two_stream"), "two_stream", WarmStart(str(folder), "audio", "rgb"))
    with pytest.raises(ConfigError, match="cannot read"):
        warm_start(model("two_stream"), "two_stream", WarmStart(str(tmp_path / "nothing"), "video", "rgb"))
    for bad in (-0.25, 1.5):
        with pytest.raises(ConfigError, match="lr_scale"):
            WarmStart(str(folder), "video", "rgb", lr_scale=bad)


def lora_model(name: str, rank: int, alpha: float = 8.0) -> BindingModel:
    mods = (ModalityConfig(name, dict(SMALL)),)
    return BindingModel(BindConfig(modalities=mods, trunk=TrunkConfig(lora_rank=rank, lora_alpha=alpha))).eval()


@pytest.fixture(scope="module")
def lora_video_binding(tmp_path_factory):
    """A video binding whose trunk adapted (LoRA B no longer zero), saved to a folder."""
    m = lora_model("video", rank=2)
    for n, p in m.named_parameters():
        if n.startswith(("tokenizers.video.", "trunk.")) and p.requires_grad:
            p.data.add_(torch.randn_like(p) * 0.1)
    folder = tmp_path_factory.mktemp("lora_video") / "model"
    m.save(folder)
    return m, folder


def test_a_video_binding_with_an_adapted_trunk_brings_its_trunk_into_the_rgb_stream(lora_video_binding):
    video, folder = lora_video_binding
    x = torch.randn(2, 6, 4, 32, 32)
    ts = lora_model("two_stream", rank=2)
    info = warm_start(ts, "two_stream", WarmStart(str(folder), "video", "rgb", lr_scale=0.0))
    assert "trunk." in info["parts"]
    with torch.no_grad():
        z_video = video.encode("video", x[:, :3])
        with ts.single_stream("two_stream", "rgb"):
            z_rgb = ts.encode("two_stream", x)
    assert torch.allclose(z_rgb, z_video, atol=1e-5)  # without the trunk the stream would read otherwise
    assert not any(p.requires_grad for n, p in ts.named_parameters() if n.startswith("trunk."))  # lr_scale 0

    fresh = lora_model("two_stream", rank=2)
    warm_start(fresh, "two_stream", WarmStart(str(folder), "video", "rgb", lr_scale=0.5))
    assert any(p.requires_grad for n, p in fresh.named_parameters() if n.startswith("trunk."))


def test_an_adapted_trunk_must_be_configured_alike_and_a_frozen_one_fits_any(lora_video_binding, video_binding):
    _, folder = lora_video_binding
    for other, wanted in ((model("two_stream"), "lora_rank = 2"), (lora_model("two_stream", 4), "lora_rank = 2"),
                          (lora_model("two_stream", 2, alpha=16.0), "lora_alpha = 8.0")):
        with pytest.raises(ConfigError, match=f"adapted trunk.*{wanted}"):
            warm_start(other, "two_stream", WarmStart(str(folder), "video", "rgb"))
    video, frozen_folder, x = video_binding  # the frozen trunk saved none: a LoRA model starts from it unchanged
    ts = lora_model("two_stream", rank=2)
    info = warm_start(ts, "two_stream", WarmStart(str(frozen_folder), "video", "rgb"))
    assert "trunk." not in info["parts"]
    with torch.no_grad(), ts.single_stream("two_stream", "rgb"):
        assert torch.allclose(ts.encode("two_stream", x), video.encode("video", x[:, :3]), atol=1e-5)


def test_recipe_init_resolves_against_the_recipe_and_refuses_unknown_keys(tmp_path):
    body = ('[train]\nsteps = 1\n[[modality]]\nname = "two_stream"\ntrain = "t.jsonl"\n'
            'init = {{ model = "../bind/video/model", modality = "video", stream = "rgb"{extra} }}\n')
    (tmp_path / "r").mkdir()
    recipe = tmp_path / "r" / "two_stream.toml"
    recipe.write_text(body.format(extra=""))
    spec = load_recipe(recipe).modalities[0]
    assert spec.init["model"] == str(tmp_path / "bind" / "video" / "model")
    recipe.write_text(body.format(extra=", gate = 1"))
    with pytest.raises(ConfigError, match="init"):
        load_recipe(recipe)
    recipe.write_text(body.format(extra=", weight = 1.5"))
    with pytest.raises(ConfigError, match="weight"):
        load_recipe(recipe)


# ---------------------------------------------------------------- flow computed once per pair


@pytest.fixture(scope="module")
def clip_path(tmp_path_factory):
    return MAKERS["two_stream"](tmp_path_factory.mktemp("ts"))


def test_training_pick_at_stride_one_without_crop_is_what_inference_prepares(clip_path):
    ts = TwoStream(**SMALL)
    opts = VideoAugment(decode_factor=1.0, p_temporal=0.0, p_crop=0.0)
    clip = ts.load_for_training(clip_path, opts)
    assert isinstance(clip, FlowClip) and len(clip.rgb) == 4  # T frames at decode factor 1
    x = ts.prepare_augmented(clip_path, clip, np.random.default_rng(0), opts)
    assert (x - ts.prepare(clip_path)).abs().max() < 1e-3  # flows are cached as float16


def test_a_faulty_augmentation_of_a_good_clip_is_the_augmentations_fault_not_the_files(clip_path, monkeypatch):
    from binder.errors import AugmentationError
    ts = TwoStream(**SMALL)
    opts = VideoAugment()
    clip = ts.load_for_training(clip_path, opts)  # a FlowClip, which preprocess alone does not take

    def faulty(self, raw, rng, options):
        raise ValueError("a bug in the augmentation")

    monkeypatch.setattr(TwoStream, "augment", faulty)
    with pytest.raises(AugmentationError, match="a bug in the augmentation") as info:
        ts.prepare_augmented(clip_path, clip, np.random.default_rng(0), opts)
    assert info.value.path == str(clip_path)


def test_each_frame_pair_is_computed_once_and_the_cache_is_measured(clip_path):
    ts = TwoStream(**SMALL)
    opts = VideoAugment(p_temporal=1.0)
    clip = ts.load_for_training(clip_path, opts)
    assert len(clip.rgb) == 8  # 2T by default
    calls = []

    def counting(a, b):
        calls.append(1)
        return np.zeros((*a.shape, 2), np.float32)

    pairs = set()
    for seed in range(20):
        pick = ts.augment(clip, np.random.default_rng(seed), opts)
        assert isinstance(pick, FlowPick) and len(pick.indices) == 4
        assert np.all(np.diff(pick.indices) >= 0)  # time runs forward
        pick.flows(counting)
        pairs |= {(a, b) for a, b in zip(pick.indices[:-1], pick.indices[1:]) if a != b}
    assert len(calls) == len(pairs) == len(clip.flows)
    assert clip.nbytes == clip.rgb.nbytes + clip.gray.nbytes + sum(f.nbytes for f in clip.flows.values())


def test_t_frames_give_t_flows_the_last_frame_taking_the_motion_into_it():
    from modalities.augment.flow import flow_pairs
    from modalities.two_stream import farneback_flow

    assert flow_pairs(4) == [(0, 1), (1, 2), (2, 3), (2, 3)]
    assert flow_pairs(2) == [(0, 1), (0, 1)] and flow_pairs(1) == [(0, 0)] and flow_pairs(0) == []
    ts = TwoStream(**SMALL)
    frames = torch.zeros(4, 3, 32, 32)
    for t in range(4):  # a bright square moving 2 px right per frame
        frames[t, :, 12:20, 6 + 2 * t:14 + 2 * t] = 1.0
    flow = farneback_flow(frames, ts.options)
    assert flow.shape == (3, 4, 32, 32)
    assert torch.equal(flow[:, 3], flow[:, 2])  # the last frame's motion is the one into it
    assert all(flow[0, t, 12:20, 8:16].mean() > 0.02 for t in range(4))  # rightwards everywhere
    still = farneback_flow(frames[:1], ts.options)
    assert still.shape == (3, 1, 32, 32) and not still.any()


def test_a_crop_rescales_the_flow_into_the_crops_pixels():
    rgb = np.zeros((3, 32, 32, 3), np.float32)
    clip = FlowClip(rgb, np.zeros((3, 32, 32), np.uint8))
    pick = FlowPick(clip, np.array([0, 1, 2]), (8.0, 0.0, 16.0, 32.0), rgb[:2])
    flows = pick.flows(lambda a, b: np.full((32, 32, 2), 1.0, np.float32))
    assert np.allclose(flows[..., 0], 2.0) and np.allclose(flows[..., 1], 1.0)  # half the width: motion doubles


def test_recipe_warm_start_reaches_the_metrics_file_format():
    # the shipped recipe names its warm start, so `anybind train` documents the order (video first)
    spec = load_recipe("recipes/bind/two_stream.toml").modalities[0]
    assert spec.init["modality"] == "video" and spec.init["stream"] == "rgb"
    assert spec.init["model"].endswith("bind/video/model")
    json.dumps(spec.init)
    # the warm start copies the video binding's adapted trunk, which needs the same trunk settings
    assert load_recipe("recipes/bind/two_stream.toml").bind.trunk == load_recipe("recipes/bind/video.toml").bind.trunk


def _small_recipe(name: str, world, out, cache, init: dict | None = None):
    """The shipped recipe ``name`` for two steps on the small world with a random anchor."""
    r = load_recipe(f"recipes/bind/{name}.toml", {
        "anchor.model": "anybind-tiny", "train.root": str(world.folder), "train.out": str(out),
        "train.cache_dir": str(cache), "train.steps": 2, "train.batch_size": 8, "train.workers": 0})
    specs = tuple(dataclasses.replace(s, init=init or {}) for s in r.modalities)
    return dataclasses.replace(r, modalities=specs)


def test_training_two_stream_after_video_records_each_stream_the_gate_and_the_warm_start(small_world, tmp_path,
                                                                                        monkeypatch):
    """The shipped recipes on the small world with a random anchor: video first, then two_stream whose
    RGB stream starts from it; metrics.json names the warm start and measures each stream alone,
    decoding each evaluated manifest once for the fused vector and both streams."""
    from binder.train import evaluate
    from binder.train.trainer import Trainer

    def recipe(name: str, out, init: dict | None = None):
        return _small_recipe(name, small_world, out, tmp_path / "cache", init)

    Trainer(recipe("video", tmp_path / "video"), progress=False).run()
    init = {"model": str(tmp_path / "video" / "model"), "modality": "video", "stream": "rgb", "weight": 0.8,
            "lr_scale": 0.25}
    trainer = Trainer(recipe("two_stream", tmp_path / "ts", init), progress=False)
    # the copied RGB stream learns at a quarter of the rate, the fresh flow stream at the full rate
    base_lr = {id(p): g["initial_lr"] for g in trainer.optimizer.param_groups for p in g["params"]}
    named = {n: p for n, p in trainer.model.named_parameters() if p.requires_grad}
    rgb = [n for n in named if n.startswith(("tokenizers.two_stream.streams.rgb.", "heads.two_stream.heads.rgb."))]
    flow = [n for n in named if n.startswith(("tokenizers.two_stream.streams.flow.", "heads.two_stream.heads.flow."))]
    lr = trainer.cfg.lr
    assert rgb and all(math.isclose(base_lr[id(named[n])], 0.25 * lr) for n in rgb)
    assert flow and all(base_lr[id(named[n])] == lr for n in flow) and base_lr[id(named["heads.two_stream.gate"])] == lr
    prepared: list[tuple[str, str | None]] = []
    real_prepare = evaluate._prepare

    def counting_prepare(model, path, root, workers, perturb):
        prepared.append((path, perturb))
        return real_prepare(model, path, root, workers, perturb)

    monkeypatch.setattr(evaluate, "_prepare", counting_prepare)
    metrics = trainer.run()["two_stream"]
    # val (the gate's choice), test, hard and the image gallery, once each
    assert len(prepared) == len(set(prepared)) == 4
    assert any(path.endswith("two_stream.val.jsonl") for path, _ in prepared)
    monkeypatch.undo()
    ev, spec = trainer.recipe.eval, trainer.recipe.modalities[0]
    with trainer.model.single_stream("two_stream", "flow"):
        fresh = evaluate.evaluate_manifest(trainer.model, trainer.manifest(spec.hard), trainer.cfg.root,
                                           ev.classes, ev.templates, workers=0)
    assert fresh["zero_shot_top1"] == metrics["streams"]["flow"]["hard"]["zero_shot_top1"]
    assert metrics["init"]["modality"] == "video" and metrics["init"]["tensors"] > 0
    assert metrics["init"]["lr_scale"] == 0.25
    assert set(metrics["streams"]) == {"rgb", "flow"}
    for figures in metrics["streams"].values():
        assert 0 <= figures["zero_shot_top1"] <= 1 and "zero_shot_top1" in figures["hard"]
    gate = metrics["fusion_gate"]  # train.fusion_gate = "val" (the default): set on the val pairs after training
    assert 0.5 < gate["learned"]["rgb"] < 1  # started at 0.8, two steps move it a little
    assert gate["val_loss"]["chosen"] <= min(gate["val_loss"]["learned"], *gate["val_loss"]["streams"].values()) + 1e-6
    assert metrics["fusion_weights"] == gate["chosen"] == trainer.model.heads["two_stream"].weights()
    from binder.train.trainer import format_summary

    last = format_summary({"two_stream": metrics}).splitlines()[-1]
    chosen = ", ".join(f"{s} {w:.2f}" for s, w in gate["chosen"].items())
    assert last.startswith(f"two_stream fusion gate, set on {gate['items']} val pairs: {chosen} (as trained: rgb 0.")
    saved = json.loads((tmp_path / "ts" / "metrics.json").read_text())["two_stream"]
    assert saved["fusion_weights"] == metrics["fusion_weights"]
    from binder.model import BindingModel  # the saved model carries the gate chosen, not the one trained

    assert BindingModel.load(tmp_path / "ts" / "model").heads["two_stream"].weights() == gate["chosen"]


def test_lr_scale_zero_keeps_the_copied_stream_exactly_the_binding_it_came_from(small_world, tmp_path):
    """``init.lr_scale = 0``: the RGB stream is frozen at the video binding's weights (not in the
    optimizer, no gradient), while the flow stream and the gate still train."""
    from binder.train.trainer import Trainer

    Trainer(_small_recipe("video", small_world, tmp_path / "video", tmp_path / "cache"), progress=False).run()
    source = load_file(str(tmp_path / "video" / "model" / "model.safetensors"))
    init = {"model": str(tmp_path / "video" / "model"), "modality": "video", "stream": "rgb", "lr_scale": 0.0}
    ts = _small_recipe("two_stream", small_world, tmp_path / "ts", tmp_path / "cache", init)
    ts = dataclasses.replace(ts, train=dataclasses.replace(ts.train, fusion_gate="learned"))  # the gate as trained
    trainer = Trainer(ts, progress=False)
    rgb = ("tokenizers.two_stream.streams.rgb.", "heads.two_stream.heads.rgb.")
    optimized = {id(p) for g in trainer.optimizer.param_groups for p in g["params"]}
    named = dict(trainer.model.named_parameters())
    assert all(id(p) not in optimized and not p.requires_grad for n, p in named.items() if n.startswith(rgb))
    flow_before = {n: p.detach().clone() for n, p in named.items() if n.startswith("heads.two_stream.heads.flow.")}
    gate_before = trainer.model.heads["two_stream"].weights()
    assert "fusion_gate" not in trainer.run()["two_stream"]
    state = load_file(str(tmp_path / "ts" / "model" / "model.safetensors"))
    copied = {k: v for k, v in state.items() if k.startswith(rgb)}
    assert copied
    for key, value in copied.items():
        src = key.replace("tokenizers.two_stream.streams.rgb.", "tokenizers.video.").replace(
            "heads.two_stream.heads.rgb.", "heads.video.")
        assert torch.equal(value, source[src]), key
    assert any(not torch.equal(state[n], v) for n, v in flow_before.items())
    assert trainer.model.heads["two_stream"].weights() != gate_before


def test_a_val_manifest_that_cannot_be_read_leaves_the_model_saved_with_its_learned_gate(small_world, tmp_path):
    """The gate is set on val after training; when val cannot be read, the trained model is already
    saved (with the gate as trained) and the error says so, naming the files."""
    from binder.errors import TrainingError
    from binder.model import BindingModel
    from binder.train.trainer import Trainer

    r = _small_recipe("two_stream", small_world, tmp_path / "ts", tmp_path / "cache")
    spec = r.modalities[0]
    rows = [json.loads(line) for line in (Path(small_world.folder) / spec.val).read_text().splitlines()]
    broken = tmp_path / "val.jsonl"
    broken.write_text("".join(json.dumps({**row, "path": f"gone/{row['path']}"}) + "\n" for row in rows))
    trainer = Trainer(dataclasses.replace(r, modalities=(dataclasses.replace(spec, val=str(broken)),)), progress=False)
    with pytest.raises(TrainingError, match="saved in .* with its learned fusion gate") as err:
        trainer.run()
    assert "gone/" in str(err.value) and "--resume" in str(err.value)
    assert not (tmp_path / "ts" / "metrics.json").exists()
    saved = BindingModel.load(tmp_path / "ts" / "model").heads["two_stream"].weights()
    assert saved == trainer.model.heads["two_stream"].weights()
