"""Every registered modality gets the same checks, plus the registry's own contract.

One small BindingModel (tiny anchor, small option values) holds every modality; each modality's
sample file must load to its documented input shape, tokenize to its documented grid, and embed
to finite unit vectors in the anchor's space, deterministically and independently of batch order.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from samplegen import MAKERS, SMALL_OPTIONS

import binder.registry as registry
from binder.config import BindConfig, ModalityConfig
from binder.describe import token_shape
from binder.errors import RegistryError
from binder.model import BindingModel
from binder.registry import get_modality, list_modalities, modality_for_path, register_modality
from binder.tokenizers import StreamTokens
from modalities.base import Modality

WIDTH = 64  # anybind-tiny: visual width 64, patch 8, 64 px images, text context 16, embed_dim 64
EMBED_DIM = 64
SMALL = SMALL_OPTIONS
BUILTINS = sorted(SMALL)

# What the docs promise for those options (input tensor of one item, tokens the trunk sees).
EXPECTED_INPUT = {
    "image": (3, 64, 64),
    "text": (16,),
    "depth": (1, 32, 32),
    "thermal": (1, 32, 32),
    "video": (3, 4, 32, 32),
    "two_stream": (6, 4, 32, 32),  # RGB, then flow dx, dy and its length
    "audio": (2, 1, 128, 204),
    "imu": (6, 256),
    "timeseries": (4, 64),
    "speech_units": (200, 39),  # MFCC + delta + delta-delta = 3 * 13
}
EXPECTED_TOKENS = {
    "image": (64 // 8) ** 2 + 1,
    "text": 16,
    "depth": (32 // 8) ** 2 + 1,
    "thermal": (32 // 8) ** 2 + 1,
    "video": (4 // 2) * (32 // 8) * (32 // 8) + 1,
    "two_stream": (4 // 2) * (32 // 8) * (32 // 8) + 1,  # per stream: RGB and flow are two sequences
    "audio": ((128 - 16) // 10 + 1) * ((204 - 16) // 10 + 1) + 1,  # 12 x 19 overlapping patches + CLS
    "imu": 256 // 8 + 1,
    "timeseries": 4 * (64 // 8) + 1,  # every channel slot gets its patches, absent ones are masked
    "speech_units": 64 + 1,
}

# Parametrized over the registry; modalities without a sample maker (third-party plugins that
# happen to be installed) are left to their own tests. test_every_builtin_is_covered checks that
# this drops none of the built-ins.
NAMES = [n for n in list_modalities() if n in MAKERS]


@pytest.fixture(scope="module")
def model() -> BindingModel:
    cfg = BindConfig(modalities=tuple(ModalityConfig(n, options=SMALL.get(n, {})) for n in NAMES), seed=0)
    return BindingModel(cfg).eval()


@pytest.fixture(scope="module")
def samples(tmp_path_factory) -> dict[str, list[Path]]:
    """Three different sample files per modality (seeds 0, 1, 2)."""
    out = {}
    for name in NAMES:
        d = tmp_path_factory.mktemp(name)
        out[name] = [MAKERS[name](d, seed=s) for s in range(3)]
    return out


def test_every_builtin_is_covered():
    assert set(BUILTINS) <= set(list_modalities())
    assert sorted(n for n in NAMES if get_modality(n).__module__.startswith("modalities.")) == BUILTINS
    assert len(BUILTINS) == 10


@pytest.mark.parametrize("name", NAMES)
def test_sample_prepares_to_input_shape(model, samples, name):
    modality = model.modality(name)
    assert modality.input_shape() == EXPECTED_INPUT[name]
    x = modality.prepare(samples[name][0])
    assert tuple(x.shape) == modality.input_shape()
    assert x.dtype in (torch.float32, torch.int64, torch.long)
    if name == "timeseries":  # 3 real channels, the 4th slot is an all-NaN padding row
        assert torch.isfinite(x[:3]).all() and torch.isnan(x[3]).all()
    elif name == "speech_units":  # real frames first, then all-NaN padding rows
        real = torch.isfinite(x).all(dim=1)
        n = int(real.sum())
        assert 100 < n < 200 and real[:n].all() and torch.isnan(x[n:]).all()
    else:
        assert torch.isfinite(x.float()).all()


@pytest.mark.parametrize("name", NAMES)
def test_tokenizer_grid_matches_describe(model, samples, name):
    modality = model.modality(name)
    x = modality.prepare(samples[name][0])
    reported = token_shape(model, name)
    assert reported[0] == EXPECTED_TOKENS[name]
    if modality.tower == "image":
        visual = model.anchor.visual
        patches = visual.conv1(x[None]).flatten(2)  # (1, width, grid cells)
        assert (patches.shape[2] + 1, patches.shape[1]) == reported == (EXPECTED_TOKENS[name], WIDTH)
        assert visual.positional_embedding.shape[0] == reported[0]
        return
    if modality.tower == "text":
        tokens = model.anchor.clip.token_embedding(x[None])
        assert tuple(tokens.shape[1:]) == reported == (EXPECTED_TOKENS[name], WIDTH)
        return
    batch = x if modality.has_clips else x[None]  # clips are tokenized as a batch of clips
    with torch.inference_mode():
        out = model.tokenizers[name](batch)
    if isinstance(out, StreamTokens):
        assert len(out.streams) == len(modality.streams()) == 2
        assert all(t.shape == out.streams[0].shape for t in out.streams)
        out = out.streams[0]
    tokens, mask = out if isinstance(out, tuple) else (out, None)
    assert tuple(tokens.shape) == (batch.shape[0], *reported) == (batch.shape[0], EXPECTED_TOKENS[name], WIDTH)
    assert torch.isfinite(tokens).all()
    if name == "timeseries":
        assert mask is not None and tuple(mask.shape) == (1, EXPECTED_TOKENS[name])
        assert not mask[0, : 1 + 3 * 8].any() and mask[0, 1 + 3 * 8:].all()  # the absent 4th channel
    if name == "speech_units":
        assert mask is not None and tuple(mask.shape) == (1, EXPECTED_TOKENS[name])
        real = int((~mask[0]).sum())
        assert real > 2 and not mask[0, :real].any() and mask[0, real:].all()  # CLS + left-packed units


@pytest.mark.parametrize("name", NAMES)
def test_embeddings_are_finite_unit_vectors(model, samples, name):
    emb = model.embed_files(name, samples[name])
    assert tuple(emb.shape) == (3, EMBED_DIM) == (3, model.embed_dim)
    assert emb.dtype == torch.float32 and torch.isfinite(emb).all()
    torch.testing.assert_close(emb.norm(dim=-1), torch.ones(3), atol=1e-5, rtol=0)
    assert not torch.allclose(emb[0], emb[1], atol=1e-4)  # different inputs, different vectors


@pytest.mark.parametrize("name", NAMES)
def test_same_file_gives_identical_embeddings(model, samples, name):
    a = samples[name][0]
    twice = model.embed_files(name, [a, a])
    assert torch.equal(twice[0], twice[1])
    assert torch.equal(model.embed_files(name, [a]), model.embed_files(name, [a]))


@pytest.mark.parametrize("name", NAMES)
def test_batch_order_does_not_change_results(model, samples, name):
    a, b, c = samples[name]
    abc = model.embed_files(name, [a, b, c])
    cab = model.embed_files(name, [c, a, b])
    torch.testing.assert_close(cab, abc[[2, 0, 1]], atol=1e-6, rtol=0)


@pytest.mark.parametrize("name", NAMES)
def test_extension_auto_detection(samples, name):
    for path in samples[name]:
        assert modality_for_path(path) == name
        assert modality_for_path(str(path).upper()) == name


# ---------------------------------------------------------------- the registry itself


class _Probe(Modality):
    """A minimal valid modality for registry tests."""

    name = "probe_modality"
    extensions = (".probe",)

    def load(self, path):
        return path

    def preprocess(self, raw):
        return torch.zeros(1)

    def input_shape(self):
        return (1,)


@pytest.fixture
def private_registry(monkeypatch):
    """Registry tests work on copies so that nothing they register leaks into other tests."""
    list_modalities()  # built-ins loaded before copying
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    monkeypatch.setattr(registry, "_SOURCES", dict(registry._SOURCES))
    return registry


def test_duplicate_registration_raises(private_registry):
    original = get_modality("imu")

    class FakeIMU(_Probe):
        name = "imu"

    with pytest.raises(RegistryError, match="registered twice") as info:
        register_modality(FakeIMU)
    assert "FakeIMU" in str(info.value) and "modalities.imu" in str(info.value)
    assert get_modality("imu") is original
    # the same class twice is not a conflict, a different class under the new name is
    register_modality(_Probe)
    register_modality(_Probe)
    assert get_modality("probe_modality") is _Probe

    class OtherProbe(_Probe):
        pass

    with pytest.raises(RegistryError, match="probe_modality"):
        register_modality(OtherProbe)


def test_name_must_be_an_identifier(private_registry):
    class BadName(_Probe):
        name = "not a name"

    with pytest.raises(RegistryError, match="identifier"):
        register_modality(BadName)
    assert "not a name" not in list_modalities()


def test_unknown_name_lists_known_modalities():
    with pytest.raises(RegistryError) as info:
        get_modality("sonar")
    msg = str(info.value)
    assert "sonar" in msg
    for name in BUILTINS:
        assert name in msg


class _FakeEntryPoint:
    def __init__(self, name: str, target: type | Exception):
        self.name, self.value, self.target = name, f"fakepkg:{name}", target
        self.loads = 0

    def load(self):
        self.loads += 1
        if isinstance(self.target, Exception):
            raise self.target
        return self.target


def _install_fake_plugins(monkeypatch, eps):
    calls = []

    def fake_entry_points(group=None, **kw):
        calls.append(group)
        return list(eps)

    monkeypatch.setattr(registry, "entry_points", fake_entry_points)
    monkeypatch.setitem(registry._state, "plugins", False)
    return calls


def test_disable_plugins_env_skips_entry_points(private_registry, monkeypatch):
    ep = _FakeEntryPoint("probe_modality", _Probe)
    calls = _install_fake_plugins(monkeypatch, [ep])
    monkeypatch.setenv("ANYBIND_DISABLE_PLUGINS", "1")
    names = list_modalities()
    assert calls == [] and ep.loads == 0
    assert "probe_modality" not in names and set(BUILTINS) <= set(names)
    with pytest.raises(RegistryError):
        get_modality("probe_modality")

    # the same fake plugin is picked up once the switch is off ("0" means off as well)
    monkeypatch.setenv("ANYBIND_DISABLE_PLUGINS", "0")
    assert "probe_modality" in list_modalities()
    assert calls == [registry.ENTRY_POINT_GROUP] and ep.loads == 1
    assert get_modality("probe_modality") is _Probe
    assert modality_for_path("x.probe") == "probe_modality"
    list_modalities()
    assert ep.loads == 1  # entry points are loaded once


def test_broken_or_misnamed_plugin_is_named(private_registry, monkeypatch):
    monkeypatch.delenv("ANYBIND_DISABLE_PLUGINS", raising=False)
    _install_fake_plugins(monkeypatch, [_FakeEntryPoint("sonar", ImportError("no module named sonarlib"))])
    with pytest.raises(RegistryError, match="sonar.*no module named sonarlib"):
        list_modalities()
    _install_fake_plugins(monkeypatch, [_FakeEntryPoint("sonar", _Probe)])
    with pytest.raises(RegistryError, match="'sonar'.*probe_modality"):
        list_modalities()

