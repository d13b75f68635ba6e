"""`anybind models` and `anybind pull` on the command line."""
from __future__ import annotations

import pytest
from click.testing import CliRunner
from hub_helpers import CKPT, NAME, closed_port

from binder.cli import app, main


def test_models_and_pull(hub):
    runner = CliRunner()
    before = runner.invoke(app, ["models"], catch_exceptions=False)
    assert before.exit_code == 0
    lines = before.output.splitlines()
    assert lines[0].startswith(f"cache: {hub.home}")
    row = next(line for line in lines if line.startswith(NAME))
    assert "7.1 MiB" in row and "not downloaded" in row
    assert any(line.startswith("imagebind-huge") and "4.5 GiB" in line for line in lines)
    assert "ImageBind at toy size, served locally [license test; from " in before.output
    assert "name:tag" in lines[-1] and "open_clip.list_pretrained()" in lines[-1]

    pulled = runner.invoke(app, ["pull", NAME, "--quiet"], catch_exceptions=False)
    assert pulled.exit_code == 0
    folder = hub.home / "models" / NAME
    assert pulled.stdout.strip() == str(folder) and pulled.stderr == ""
    assert (folder / "model.safetensors").is_file()

    after = runner.invoke(app, ["models"], catch_exceptions=False)
    row = next(line for line in after.output.splitlines() if line.startswith(NAME))
    assert "converted" in row and str(folder) in row

    again = runner.invoke(app, ["pull", NAME], catch_exceptions=False)  # cached: no request, same folder
    assert again.stdout.strip() == str(folder) and len(hub.server.requests) == 1


def test_pull_shows_progress_and_partial_state(hub, monkeypatch):
    monkeypatch.setattr("binder.hub.download.RETRIES", 0)
    hub.server.drop_after = 2 * 2**20
    runner = CliRunner()
    failed = runner.invoke(app, ["pull", NAME])
    assert failed.exit_code != 0 and "next run resumes" in str(failed.exception)
    row = next(line for line in runner.invoke(app, ["models"]).output.splitlines() if line.startswith(NAME))
    assert "partial" in row and f"{CKPT}.part" in row and "2.0 MiB so far" in row

    done = runner.invoke(app, ["pull", NAME], catch_exceptions=False)
    assert done.exit_code == 0
    assert "downloading ib-test" in done.stderr and "is ready" in done.stderr
    assert hub.server.ranges() == [None, f"bytes={2 * 2**20}-"]


def _run_main(monkeypatch, argv):
    monkeypatch.setattr("sys.argv", ["anybind", *argv])
    with pytest.raises(SystemExit) as exc:
        main()
    return exc.value.code


def test_errors_are_one_line(hub, monkeypatch, capsys):
    assert _run_main(monkeypatch, ["pull", "imagebind-hug"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("anybind: error: 'imagebind-hug' is neither")
    assert "imagebind-huge" in err[0] and NAME in err[0]

    hub.write(**{NAME: hub.entry(url=f"http://127.0.0.1:{closed_port()}/{CKPT}")})
    assert _run_main(monkeypatch, ["pull", "-q", NAME]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot reach" in err[0] and str(hub.home / "downloads" / CKPT) in err[0]


def test_model_by_name_embeds_and_indexes_without_a_separate_pull(hub, tmp_path):
    """`--model NAME` downloads and converts on first use, then every command reuses the cache;
    the index records the converted folder, so a later search finds its model."""
    import json

    from samplegen_audio import make_audio

    wav = make_audio(tmp_path)
    runner = CliRunner()
    out = runner.invoke(app, ["embed", str(wav), "--model", NAME, "--format", "jsonl", "--quiet"])
    assert out.exit_code == 0, out.output
    assert len(json.loads(out.stdout.splitlines()[0])["embedding"]) > 0
    folder = hub.home / "models" / NAME
    assert (folder / "model.safetensors").is_file() and len(hub.server.requests) == 1

    built = runner.invoke(app, ["index", "build", str(tmp_path / "idx"), str(wav), "--model", NAME, "--quiet"])
    assert built.exit_code == 0, built.output
    manifest = json.loads((tmp_path / "idx" / "manifest.json").read_text())
    assert manifest["model"] == str(folder.resolve())
    found = runner.invoke(app, ["search", str(tmp_path / "idx"), str(wav), "--format", "jsonl", "--quiet"])
    assert found.exit_code == 0, found.output
    assert json.loads(found.stdout.splitlines()[0])["path"].endswith(wav.name)
    assert len(hub.server.requests) == 1  # no second download
