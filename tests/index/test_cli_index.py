"""`anybind index build/add/rm/info/compact`: thin over the library, exit 1 when files failed,
`--log` lines only for committed files, typed errors for folders that are not indexes."""
from __future__ import annotations

import json

from click.testing import CliRunner
from index_helpers import make_corpus, state

from binder.cli import app
from binder.errors import IndexStoreError


def _run(*args):
    return CliRunner().invoke(app, ["index", *map(str, args)])


def test_index_commands_end_to_end(tmp_path):
    src, idx, log = tmp_path / "src", tmp_path / "idx", tmp_path / "log.txt"
    files = make_corpus(src, per_modality=2)
    (src / "broken.png").write_bytes(b"nope")

    built = _run("build", idx, src, "--shard-size", "3", "--log", log, "--quiet")
    assert built.exit_code == 1  # one file failed, the others are in
    lines = log.read_text().splitlines()
    assert sorted(lines[:-1]) == sorted(f"done {f}" for f in files)
    assert lines[-1].startswith(f"failed {src / 'broken.png'}: ")
    assert sorted(state(idx)) == sorted(map(str, files))

    (src / "broken.png").unlink()
    make_corpus(src, per_modality=1, seed0=7, modalities=("text",))
    added = _run("add", idx, src, "--quiet")
    assert added.exit_code == 0 and "1 added, 0 replaced, 8 unchanged" in added.output

    assert _run("rm", idx, files[0]).exit_code == 0
    info = json.loads(_run("info", idx).output)
    assert (info["rows"], info["model"], info["dim"], info["removed_rows_in_shards"]) == (8, None, 64, 1)
    assert _run("compact", idx, "--shard-size", "100").exit_code == 0
    info = json.loads(_run("info", idx).output)
    assert (info["rows"], info["shards"], info["removed_rows_in_shards"]) == (8, 1, 0)
    assert sorted(state(idx)) == sorted(map(str, files[1:] + [src / "caption7.txt"]))


def test_add_to_a_folder_that_is_not_an_index_is_a_typed_error(tmp_path):
    make_corpus(tmp_path / "src", per_modality=1, modalities=("text",))
    result = _run("add", tmp_path / "nothing", tmp_path / "src", "--quiet")
    assert isinstance(result.exception, IndexStoreError) and "not an anybind index" in str(result.exception)
    assert not (tmp_path / "nothing").exists()
    assert _run("rm", tmp_path / "src").exit_code == 2  # usage: needs PATHS or --missing
