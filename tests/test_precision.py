"""binder.precision: fp32 leaves a model alone; int8 quantizes every encoder wide enough to gain from it,
attention projections included."""
from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from binder.config import INFERENCE_PRECISIONS, TrunkConfig
from binder.errors import AnybindError, ModalityError
from binder.export import example_batch
from binder.model import BindingModel
from binder.model_choice import load_model
from binder.precision import (
    INT8_MIN_WIDTH,
    PrecisionError,
    ProjectedAttention,
    apply_precision,
    encoder_parts,
    int8_encoders,
    is_quantized_linear,
    project_attention,
)
from binder.trunk import LoRA

# Per-item cosine to fp32 required of int8 on the small models. Their encoders are 16 to 64 wide,
# so each output sums a few dozen products and the error of one int8 step (1/255 of a tensor's
# range) does not average out as it does at ImageBind-Huge widths (768-1280), where the benchmark
# measures >= 0.999; the lowest seen here is 0.998 (imu of imagebind-test), so 0.99 leaves room.
SMALL_MODEL_COSINE = 0.99


@pytest.fixture(scope="module")
def models() -> dict[str, BindingModel]:
    """Two small models, fp32: every registered modality (shared anchor trunk), and ImageBind's layout."""
    return {"default": BindingModel.default().eval(),
            "imagebind-test": BindingModel.from_preset("imagebind-test", pretrained=None)}


@pytest.fixture(scope="module")
def int8_models(models) -> dict[str, BindingModel]:
    return {key: apply_precision(copy.deepcopy(m), "int8", int8_min_width=0) for key, m in models.items()}


def _attention_cases():
    """(name, module, call kwargs builder) covering every way the project calls attention."""
    def self_attn(batch_first: bool, bias_kv: bool, width: int = 32, heads: int = 4) -> nn.MultiheadAttention:
        torch.manual_seed(0)
        mha = nn.MultiheadAttention(width, heads, add_bias_kv=bias_kv, batch_first=batch_first).eval()
        with torch.no_grad():
            for p in mha.parameters():
                p.add_(torch.randn_like(p) * 0.1)  # non-zero biases and extra key/value
        return mha
    return {
        "batch_first": self_attn(True, False),
        "sequence_first": self_attn(False, False),
        "bias_kv": self_attn(True, True),
    }


def _inputs(mha: nn.MultiheadAttention, b: int = 3, n: int = 7) -> torch.Tensor:
    x = torch.randn(b, n, mha.embed_dim, generator=torch.Generator().manual_seed(1))
    return x if mha.batch_first else x.transpose(0, 1)


@pytest.mark.parametrize("case", ["batch_first", "sequence_first", "bias_kv"])
@pytest.mark.parametrize("mask", ["none", "causal", "per_head", "padding", "padding_and_causal"])
def test_projected_attention_equals_multihead_attention(case, mask):
    mha = _attention_cases()[case]
    x = _inputs(mha)
    b, n = 3, 7
    kwargs: dict = {}
    if mask == "causal":  # additive, as open_clip's text tower passes it
        kwargs["attn_mask"] = torch.full((n, n), float("-inf")).triu(1)
    if mask == "padding_and_causal":  # boolean, like the padding mask (torch wants the two kinds alike)
        kwargs["attn_mask"] = torch.ones(n, n, dtype=torch.bool).triu(1)
    if mask == "per_head":
        kwargs["attn_mask"] = torch.randn(b * mha.num_heads, n, n)
    if mask.startswith("padding"):
        pad = torch.zeros(b, n, dtype=torch.bool)
        pad[1, 4:] = True
        kwargs["key_padding_mask"] = pad
    with torch.no_grad():
        want = mha(x, x, x, need_weights=False, **kwargs)[0]
        got = ProjectedAttention.from_mha(mha)(x, x, x, need_weights=False, **kwargs)[0]
    assert got.shape == want.shape
    assert torch.allclose(got, want, atol=1e-5), float((got - want).abs().max())


def test_projected_attention_equals_cross_attention_of_the_pooling_head():
    mha = _attention_cases()["batch_first"]
    query, x = torch.randn(3, 1, 32), torch.randn(3, 9, 32)
    pad = torch.zeros(3, 9, dtype=torch.bool)
    pad[0, 5:] = True
    with torch.no_grad():
        want = mha(query, x, x, key_padding_mask=pad, need_weights=False)[0]
        got = ProjectedAttention.from_mha(mha)(query, x, x, key_padding_mask=pad, need_weights=False)[0]
    assert torch.allclose(got, want, atol=1e-5)


def test_projected_attention_merges_lora():
    mha = _attention_cases()["batch_first"]
    parametrize.register_parametrization(mha, "in_proj_weight", LoRA(96, 32, 2, 4.0))
    parametrize.register_parametrization(mha.out_proj, "weight", LoRA(32, 32, 2, 4.0))
    with torch.no_grad():
        for p in mha.parameters():
            p.add_(torch.randn_like(p) * 0.1)  # LoRA's B starts at zero: make the update real
    x = _inputs(mha)
    with torch.no_grad():
        assert torch.allclose(ProjectedAttention.from_mha(mha)(x, x, x)[0], mha(x, x, x, need_weights=False)[0],
                              atol=1e-5)


@pytest.mark.parametrize("key", ["default", "imagebind-test"])
def test_swapping_attention_leaves_every_encoder_equal_in_fp32(models, key):
    model = models[key]
    swapped = copy.deepcopy(model)
    count = project_attention(swapped)
    assert count > 0 and not any(isinstance(m, nn.MultiheadAttention) for m in swapped.modules())
    for name in model.modalities:
        x = example_batch(model, name)
        with torch.no_grad():
            want, got = model.encode_raw(name, x), swapped.encode_raw(name, x)
        assert torch.allclose(got, want, atol=1e-5), (name, float((got - want).abs().max()))


def test_fp32_returns_the_model_unchanged(models):
    model = models["imagebind-test"]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert apply_precision(model, "fp32") is model
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert any(isinstance(m, nn.MultiheadAttention) for m in model.modules())


@pytest.mark.parametrize("bad", ["int4", "FP32", "", "float16"])
def test_unknown_precision_is_a_typed_error_listing_the_choices(models, bad):
    with pytest.raises(PrecisionError) as info:
        apply_precision(models["imagebind-test"], bad)
    assert isinstance(info.value, AnybindError)
    assert all(p in str(info.value) for p in INFERENCE_PRECISIONS) and repr(bad) in str(info.value)


@pytest.mark.parametrize("key", ["default", "imagebind-test"])
def test_int8_quantizes_every_linear_layer_and_every_attention_projection(models, int8_models, key):
    fp32, int8 = models[key], int8_models[key]
    attentions = [m for m in int8.modules() if isinstance(m, ProjectedAttention)]
    assert len(attentions) == len({id(m) for m in fp32.modules() if isinstance(m, nn.MultiheadAttention)})
    assert not any(isinstance(m, nn.MultiheadAttention) for m in int8.modules())
    for attn in attentions:
        assert is_quantized_linear(attn.in_proj) and is_quantized_linear(attn.out_proj)
    float_linear = (nn.Linear, nn.modules.linear.NonDynamicallyQuantizableLinear)
    plain = [n for n, m in int8.named_modules() if type(m) in float_linear]
    assert not plain, plain
    towers = {"image": int8.anchor.clip.visual.transformer, "text": int8.anchor.clip.transformer}
    for name in int8.modalities:
        encoder = towers.get(name) or int8.trunk_for(name)
        assert any(isinstance(m, ProjectedAttention) for m in encoder.modules()), name


def test_int8_twice_is_int8_once(int8_models):
    model = int8_models["imagebind-test"]
    x = example_batch(model, "audio")
    with torch.inference_mode():
        before = model.encode("audio", x)
        assert torch.equal(apply_precision(model, "int8", int8_min_width=0).encode("audio", x), before)


def test_int8_keeps_the_shared_trunk_shared(int8_models):
    model = int8_models["default"]
    assert model.trunk.shared and model.trunk.blocks is model.anchor.clip.visual.transformer.resblocks


@pytest.mark.parametrize("key", ["default", "imagebind-test"])
def test_int8_gives_finite_unit_vectors_close_to_fp32_for_every_modality(models, int8_models, key):
    fp32, int8 = models[key], int8_models[key]
    for name in fp32.modalities:
        x = example_batch(fp32, name, batch=4, seed=3)
        with torch.inference_mode():
            want = fp32.encode(name, x)
            got = int8.encode(name, x)  # raises if a row is not a finite unit vector
        assert torch.isfinite(got).all() and torch.allclose(got.norm(dim=-1), torch.ones(4), atol=1e-4)
        cosine = (got * want).sum(-1)
        assert cosine.min() >= SMALL_MODEL_COSINE, (name, cosine.tolist())


def test_int8_model_still_refuses_non_finite_output(int8_models):
    model = int8_models["imagebind-test"]
    x = example_batch(model, "audio", batch=3)
    x[1] = float("nan")
    z, bad = model.encode_rows("audio", x)
    assert bad == [1] and torch.isfinite(z[[0, 2]]).all()
    with torch.inference_mode(), pytest.raises(ModalityError, match="non-finite"):
        model.encode("audio", x)


@pytest.mark.parametrize("name", ["audio", "text"])
def test_int8_embedding_of_an_item_does_not_depend_on_its_batch(int8_models, name):
    """Each item gets its own activation scales: a batch-mate with huge activations changes nothing.

    (Not bit for bit: the fp32 parts of the model round differently at another batch size, and a
    value on an int8 rounding boundary may then land on the other side; with one scale per batch
    the ×1000 batch-mate would cost the others most of their precision.)"""
    model = int8_models["imagebind-test"]
    x = example_batch(model, name, batch=3)
    if name == "text":
        x[1] = model.anchor.tokenize(["zzzz " * 60])[0]
    else:
        x[1] = x[1] * 1000
    with torch.inference_mode():
        batch = model.encode(name, x)
        alone = torch.cat([model.encode(name, x[i: i + 1]) for i in range(3)])
    assert (batch * alone).sum(-1).min() >= 0.99999, (batch * alone).sum(-1).tolist()


def test_int8_layer_quantizes_each_item_on_its_own_and_keeps_nan():
    from binder.precision import quantize_int8

    layer = quantize_int8(nn.Sequential(nn.Linear(16, 8)).eval())[0]
    x = torch.randn(3, 5, 16)
    x[1] *= 1e4
    x[2, 0, 0] = float("nan")
    y = layer(x)
    assert torch.equal(y[0], layer(x[:1])[0]) and torch.isnan(y[2]).all() and torch.isfinite(y[:2]).all()
    assert layer(torch.empty(0, 5, 16)).shape == (0, 5, 8) and layer(x[0, 0]).shape == (8,)


@pytest.mark.parametrize("batch_dim", [0, 1])
def test_int8_layer_gives_the_same_rows_in_chunks(monkeypatch, batch_dim):
    """Rows are multiplied in chunks of CHUNK_ROWS; the fixed range makes the chunking invisible."""
    import binder.precision as precision

    layer = precision.quantize_int8(nn.Sequential(nn.Linear(16, 8)).eval())[0]
    layer.batch_dim = batch_dim
    x = torch.randn(6, 7, 16) * torch.linspace(0.1, 10, 6 if batch_dim == 0 else 7).view(
        (-1, 1, 1) if batch_dim == 0 else (1, -1, 1))
    whole = layer(x)
    monkeypatch.setattr(precision, "CHUNK_ROWS", 5)
    assert torch.equal(layer(x), whole)
    part = layer(x[:, :3] if batch_dim == 1 else x[:3])
    assert torch.equal(part, whole[:, :3] if batch_dim == 1 else whole[:3])


def test_int8_of_a_lora_trunk_folds_the_update_in():
    model = BindingModel.default(["imu", "text"]).eval()
    cfg = dataclasses.replace(model.config, trunk=TrunkConfig(kind="anchor", lora_rank=2))
    lora = BindingModel(cfg).eval()
    with torch.no_grad():
        for name, p in lora.named_parameters():
            if name.endswith(".B"):
                p.normal_(0, 0.05)
    x = example_batch(lora, "imu", batch=4)
    with torch.inference_mode():
        want = lora.encode("imu", x)
    int8 = apply_precision(lora, "int8", int8_min_width=0)
    assert not any(parametrize.is_parametrized(m) for m in int8.modules())
    with torch.inference_mode():
        assert (int8.encode("imu", x) * want).sum(-1).min() >= SMALL_MODEL_COSINE


def test_cli_embeds_at_int8_close_to_fp32(capfd):
    """`anybind embed --precision int8` writes finite unit vectors within the small-model bound of fp32."""
    import json
    import sys
    from pathlib import Path

    from binder.cli import main

    samples = Path(__file__).resolve().parents[1] / "recipes" / "samples"
    files = [str(samples / n) for n in ("seven.wav", "seven.png", "caption_seven.txt", "circle.imu.npy")]
    vectors = {}
    for precision in ("fp32", "int8"):
        old, sys.argv = sys.argv, ["anybind", "embed", *files, "--format", "jsonl", "--quiet", "--precision", precision]
        try:
            main()
        except SystemExit as exc:
            assert not exc.code, capfd.readouterr().err
        finally:
            sys.argv = old
        out = capfd.readouterr().out
        vectors[precision] = {r["path"]: torch.tensor(r["embedding"]) for r in map(json.loads, out.splitlines())}
    assert set(vectors["int8"]) == set(files)
    for path, z in vectors["int8"].items():
        assert torch.isfinite(z).all() and abs(float(z.norm()) - 1) < 1e-4
        assert float(z @ vectors["fp32"][path]) >= SMALL_MODEL_COSINE, path


@pytest.mark.parametrize("preset", ["imagebind-test", "default"])
def test_int8_of_a_partial_load_equals_int8_of_the_whole_model(tmp_path, preset):
    """Parts a partial load left out (on the meta device) are skipped, never quantized or run;
    the parts it holds give exactly the embeddings of the whole model at int8."""
    names = ["audio", "imu", "image", "text"]
    source = BindingModel.from_preset(preset) if preset != "default" else BindingModel.default(names)
    source.save(tmp_path / "m")
    whole = apply_precision(BindingModel.load(tmp_path / "m"), "int8", int8_min_width=0)
    part = apply_precision(BindingModel.load(tmp_path / "m", ["audio", "text"]), "int8", int8_min_width=0)
    assert any(p.is_meta for p in part.parameters())  # the image tower stayed unloaded
    for name in ("audio", "text"):
        x = example_batch(whole, name, 3)
        with torch.no_grad():
            assert torch.equal(whole.encode(name, x), part.encode(name, x)), name
    assert any(is_quantized_linear(m) for m in part.heads["audio"].modules())


def test_int8_leaves_encoders_narrower_than_the_rule_in_fp32(models):
    """imagebind-test's depth encoder is 24 wide, the others 32: a 32 rule quantizes all but depth."""
    fp32 = models["imagebind-test"]
    int8 = apply_precision(copy.deepcopy(fp32), "int8", int8_min_width=32)
    assert set(int8.int8_encoders) == set(fp32.modalities) - {"depth"}
    depth_parts = encoder_parts(int8)["depth"][1]
    assert not any(is_quantized_linear(m) for part in depth_parts for m in part.modules())
    assert any(isinstance(m, nn.MultiheadAttention) for m in int8.trunk_for("depth").modules())
    assert any(is_quantized_linear(m) for m in int8.trunk_for("audio").modules())
    x = example_batch(fp32, "depth", batch=2)
    assert torch.equal(int8.encode("depth", x), fp32.encode("depth", x))
    x = example_batch(fp32, "audio", batch=2)
    assert not torch.equal(int8.encode("audio", x), fp32.encode("audio", x))


def test_the_int8_rule_keeps_imagebind_huge_encoders_by_width():
    with torch.device("meta"):
        huge = BindingModel.from_preset("imagebind-huge", pretrained=None)
    widths = {name: width for name, (width, _) in encoder_parts(huge).items()}
    assert widths == {"image": 1280, "text": 1024, "audio": 768, "depth": 384, "thermal": 768, "imu": 512}
    assert set(int8_encoders(huge)) == {n for n, w in widths.items() if w >= INT8_MIN_WIDTH}
    assert int8_encoders(huge, 600) == ["image", "text", "audio", "thermal"]


def test_a_model_too_narrow_for_int8_says_it_runs_at_fp32(tmp_path):
    BindingModel.default().save(tmp_path / "m")
    notes: list[str] = []
    model = load_model(tmp_path / "m", modalities=["audio"], precision="int8", progress=False, notify=notes.append,
                       device="cpu")
    assert model.precision == "int8" and model.int8_encoders == ()
    assert any("runs at fp32" in n for n in notes), notes
