"""binder.io: a reader sees the whole new file/folder or the old one, never a half-written one."""
from __future__ import annotations

import json

import pytest

from binder.io import atomic_dir, atomic_path, atomic_write, atomic_write_json, is_temp_name, temp_name


def test_atomic_write_replaces_whole_and_leaves_no_temp(tmp_path):
    target = tmp_path / "sub" / "data.bin"
    atomic_write(target, lambda fh: fh.write(b"first"))
    atomic_write(target, lambda fh: fh.write(b"second"))
    assert target.read_bytes() == b"second"
    assert [p.name for p in target.parent.iterdir()] == ["data.bin"]


def test_a_failed_write_keeps_the_old_file_and_removes_the_temp(tmp_path):
    target = tmp_path / "manifest.json"
    atomic_write_json(target, {"v": 1})

    def half(fh):
        fh.write(b'{"v": 2, "trunc')
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, half)
    assert json.loads(target.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.json"]


def test_temp_names_keep_suffixes_and_are_recognized(tmp_path):
    tmp = temp_name(tmp_path / "embeddings-00001.npy")
    assert tmp.name.endswith(".npy") and tmp.parent == tmp_path and is_temp_name(tmp.name)
    assert not is_temp_name("embeddings-00001.npy") and not is_temp_name(".hidden")
    with atomic_path(tmp_path / "x.depth.png") as p:
        assert p.name.endswith(".depth.png")
        p.write_bytes(b"png")
    assert (tmp_path / "x.depth.png").read_bytes() == b"png"


def test_atomic_dir_swaps_a_whole_folder_or_nothing(tmp_path):
    target = tmp_path / "checkpoint"
    with atomic_dir(target) as tmp:
        (tmp / "a.txt").write_text("one")
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as tmp:
            (tmp / "a.txt").write_text("two")
            raise RuntimeError("killed while writing")
    assert (target / "a.txt").read_text() == "one"
    with atomic_dir(target) as tmp:
        (tmp / "b.txt").write_text("three")
    assert sorted(p.name for p in target.iterdir()) == ["b.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint"]
