"""The catalog of named models: the built-in entry, checks on entries, and the three ways to add one."""
from __future__ import annotations

import dataclasses

import pytest
from hub_helpers import NAME, write_catalog

from binder import registry as registry_module
from binder.hub import CatalogError, ModelEntry, find_model, known_models, pull_model, register_model
from binder.hub import catalog as catalog_module

GOOD = dict(name="my-model", kind="imagebind", url="https://example.org/files/w.pth", filename="w.pth",
            size=10, sha256="ab" * 32, preset="imagebind-test")


@pytest.fixture
def private_catalog(monkeypatch, tmp_path):
    """No plugins, no env file, and a fresh register_model table."""
    monkeypatch.setattr(catalog_module, "_REGISTERED", {})
    monkeypatch.setattr(catalog_module, "_PLUGINS", {})
    monkeypatch.setitem(catalog_module._state, "plugins", False)
    monkeypatch.setenv("ANYBIND_DISABLE_PLUGINS", "1")
    monkeypatch.delenv("ANYBIND_MODELS", raising=False)
    monkeypatch.setenv("ANYBIND_HOME", str(tmp_path / "home"))


def test_builtin_imagebind_huge(private_catalog):
    entry = find_model("imagebind-huge")
    assert entry is not None and entry.kind == "imagebind" and entry.preset == "imagebind-huge"
    assert entry.url == "https://dl.fbaipublicfiles.com/imagebind/imagebind_huge.pth"
    assert entry.filename == "imagebind_huge.pth" and entry.size == 4_803_584_173
    assert entry.sha256 == "d6f6c22bedcc90708448d5d2fbb7b2db9c73f505dc89bd0b2e09b23af1b62157"
    assert "CC-BY-NC" in entry.license and entry.source == "built-in"
    assert list(known_models()) == ["imagebind-huge"]


@pytest.mark.parametrize("change, problem", [
    ({"name": "My Model"}, "a name is"), ({"name": "vit:tag"}, "a name is"), ({"name": "x.tmp"}, "a name is"),
    ({"name": "../up"}, "a name is"), ({"kind": "onnx"}, "unknown kind"), ({"url": "ftp://h/w.pth"}, "http"),
    ({"filename": "a/w.pth"}, "plain file name"), ({"filename": "w.pth.part"}, "plain file name"),
    ({"size": 0}, "size"), ({"size": True}, "size"), ({"sha256": "abc"}, "64 hex"), ({"preset": None}, "preset"),
    ({"max_size": 0}, "max_size must be"), ({"max_size": True}, "max_size must be"),
    ({"max_size": 9}, "size 10 is over max_size 9"),
])
def test_bad_entries_are_refused(change, problem):
    with pytest.raises(CatalogError, match=problem):
        ModelEntry(**{**GOOD, **change})


def test_max_size_defaults_to_16_gib():
    assert ModelEntry(**GOOD).max_size == 16 * 2**30 == catalog_module.DEFAULT_MAX_SIZE
    assert ModelEntry(**{**GOOD, "max_size": 10}).max_size == 10


def test_sha256_is_normalized():
    assert ModelEntry(**{**GOOD, "sha256": "AB" * 32}).sha256 == "ab" * 32


def test_register_model(private_catalog):
    entry = register_model(ModelEntry(**GOOD))
    assert find_model("my-model") == entry and "my-model" in known_models()
    register_model(ModelEntry(**GOOD))  # the same entry again is fine
    other = ModelEntry(**{**GOOD, "url": "https://example.org/other.pth"})
    with pytest.raises(CatalogError, match="defined twice"):
        register_model(other)
    register_model(other, replace=True)
    assert find_model("my-model").url.endswith("other.pth")
    with pytest.raises(CatalogError, match="defined twice: by built-in"):
        register_model(ModelEntry(**{**GOOD, "name": "imagebind-huge"}))
    catalog_module.unregister_model("my-model")
    assert find_model("my-model") is None


class _FakeEntryPoint:
    def __init__(self, name, target):
        self.name, self.value, self.target = name, f"fakepkg:{name}", target

    def load(self):
        if isinstance(self.target, Exception):
            raise self.target
        return self.target


def _plugins(monkeypatch, eps):
    monkeypatch.setenv("ANYBIND_DISABLE_PLUGINS", "0")
    monkeypatch.setattr(registry_module, "entry_points", lambda group=None, **kw: list(eps)
                        if group == catalog_module.ENTRY_POINT_GROUP else [])


def test_entry_point_plugin(private_catalog, monkeypatch):
    _plugins(monkeypatch, [_FakeEntryPoint("my-model", ModelEntry(**GOOD))])
    entry = find_model("my-model")
    assert entry is not None and entry.source == "plugin fakepkg:my-model"


@pytest.mark.parametrize("target, problem", [
    (ModelEntry(**{**GOOD, "name": "other"}), "not a ModelEntry named 'my-model'"),
    ("not an entry", "not a ModelEntry"),
    (ImportError("no module"), "failed to import"),
])
def test_broken_plugins_say_who_they_are(private_catalog, monkeypatch, target, problem):
    _plugins(monkeypatch, [_FakeEntryPoint("my-model", target)])
    with pytest.raises(CatalogError, match=problem):
        known_models()


def test_env_file_adds_and_may_redefine(private_catalog, monkeypatch, tmp_path):
    path = write_catalog(tmp_path / "m.toml", {
        "mirror-test": {"kind": "imagebind", "url": "http://mirror.example/a/ib%20test.pth",
                        "preset": "imagebind-test", "max_size": 2**20},
        "imagebind-huge": {"kind": "imagebind", "url": "https://mirror.example/imagebind_huge.pth",
                           "size": 4_803_584_173, "preset": "imagebind-huge"},
    })
    monkeypatch.setenv("ANYBIND_MODELS", str(path))
    entry = find_model("mirror-test")
    assert entry.filename == "ib test.pth" and entry.size is None and entry.sha256 is None
    assert entry.source == str(path) and entry.license == "" and entry.max_size == 2**20
    assert find_model("imagebind-huge").max_size == 16 * 2**30  # the default where the table sets none
    assert find_model("imagebind-huge").url == "https://mirror.example/imagebind_huge.pth"


@pytest.mark.parametrize("text, problem", [
    ('[models.x]\nkind = "imagebind"\nurl = "https://h/x.pth"\npreset = "imagebind-test"\nmirror = 1\n',
     r"unknown key\(s\) \['mirror'\]"),
    ('[models.x]\nurl = "https://h/x.pth"\n', "kind is required"),
    ('[models.x]\nkind = "imagebind"\nurl = "https://h/x.pth"\npreset = "imagebind-test"\nsize = "big"\n', "size"),
    ('[models.x]\nkind = "imagebind"\nurl = "https://h/x.pth"\npreset = "imagebind-test"\nmax_size = "big"\n',
     "max_size must be"),
    ("[other]\n", "expected only"),
    ("[models.x\n", "cannot read"),
])
def test_env_file_mistakes_name_the_file(private_catalog, monkeypatch, tmp_path, text, problem):
    (tmp_path / "m.toml").write_text(text)
    monkeypatch.setenv("ANYBIND_MODELS", str(tmp_path / "m.toml"))
    with pytest.raises(CatalogError, match=problem) as exc:
        known_models()
    assert str(tmp_path / "m.toml") in str(exc.value)


def test_missing_env_file(private_catalog, monkeypatch, tmp_path):
    monkeypatch.setenv("ANYBIND_MODELS", str(tmp_path / "nope.toml"))
    with pytest.raises(CatalogError, match="nope.toml: no such file.*ANYBIND_MODELS"):
        known_models()


def test_unknown_preset_is_refused_before_any_download(hub):
    hub.write(**{NAME: hub.entry(preset="imagebind-giant")})
    with pytest.raises(CatalogError, match="unknown preset 'imagebind-giant'"):
        pull_model(NAME, progress=False)
    assert hub.server.requests == []


def test_entries_compare_without_their_source():
    a = ModelEntry(**GOOD)
    assert dataclasses.replace(a, source="somewhere") == a
