"""A plugin package installed from tests/plugins adds a modality the CLI can embed, without forking,
and brings its own preview (the search page's thumbnails) and perturbation (``anybind eval --perturb``)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = Path(__file__).parent / "plugins" / "anybind_sonar"


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory) -> Path:
    site = tmp_path_factory.mktemp("site")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--no-index", "--target", str(site), str(PLUGIN)], check=True, capture_output=True)
    return site


def _cli(args: list[str], site: Path, **env_extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)]), "HF_HUB_OFFLINE": "1", **env_extra}
    return subprocess.run([sys.executable, str(ROOT / "cli.py"), *args], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=300)


def _python(code: str, site: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT), str(ROOT / "tests")]),
           "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT,
                          timeout=300)


def _sonar_file(d: Path) -> Path:
    p = d / "ping.sonar"
    t = np.linspace(0, 1, 1000, dtype=np.float32)
    p.write_bytes((np.exp(-((t - 0.4) ** 2) / 0.002)).astype("<f4").tobytes())
    return p


def test_plugin_modality_is_listed(plugin_site):
    out = _cli(["modalities"], plugin_site)
    assert out.returncode == 0, out.stderr
    row = [line for line in out.stdout.splitlines() if line.startswith("sonar")]
    assert row and ".sonar" in row[0] and "1x256" in row[0] and "17x" in row[0]


def test_plugin_file_embeds_through_cli(plugin_site, tmp_path):
    sample = _sonar_file(tmp_path)
    out = _cli(["embed", str(sample), "--format", "jsonl", "--quiet"], plugin_site)
    assert out.returncode == 0, out.stderr
    rec = json.loads(out.stdout.strip().splitlines()[-1])
    assert rec["modality"] == "sonar" and rec["path"] == str(sample)
    vec = np.asarray(rec["embedding"])
    assert vec.shape == (64,) and abs(np.linalg.norm(vec) - 1) < 1e-5


def test_disabled_plugins_leave_the_file_unknown(plugin_site, tmp_path):
    sample = _sonar_file(tmp_path)
    out = _cli(["embed", str(sample), "--format", "jsonl", "--quiet"], plugin_site, ANYBIND_DISABLE_PLUGINS="1")
    assert out.returncode == 1
    assert "ping.sonar" in out.stderr and "unknown file type" in out.stderr


def _pulse(d: Path, name: str, centre: int) -> Path:
    """A 1000-sample echo profile with one pulse at sample ``centre``."""
    n = np.arange(1000)
    p = d / name
    p.write_bytes(np.exp(-(((n - centre) / 30.0) ** 2)).astype("<f4").tobytes())
    return p


THUMB_SCRIPT = """
import io, json, sys
from pathlib import Path
from fastapi.testclient import TestClient
from PIL import Image
from binder.index.build import BuildOptions, build_index
from binder.model import BindingModel
from binder.serve.app import create_app
from binder.serve.config import ServeConfig

root = Path(sys.argv[1])
model = BindingModel.default(["image", "text", "sonar"]).eval()
build_index(root / "idx", [root / "files"], model=model,
            options=BuildOptions(batch_size=8, workers=1, progress=False))
with TestClient(create_app(ServeConfig(index=root / "idx", quiet=True), model=model)) as client:
    resp = client.get("/thumbs/0.png")
    assert resp.status_code == 200, resp.text
    (root / "thumb.png").write_bytes(resp.content)
"""


def test_the_page_shows_the_plugins_own_preview(plugin_site, tmp_path):
    from modalities.preview import PALETTE

    (tmp_path / "files").mkdir()
    _pulse(tmp_path / "files", "echo.sonar", 400)
    out = _python(THUMB_SCRIPT.replace("sys.argv[1]", repr(str(tmp_path))), plugin_site)
    assert out.returncode == 0, out.stderr[-3000:]
    img = Image.open(tmp_path / "thumb.png").convert("RGB")
    arr = np.asarray(img).astype(int)
    # the plugin's line plot (256 × 128, first channel's colour), not the default card (256 × 192)
    assert img.size == (256, 128)
    assert (np.abs(arr - PALETTE[0]).sum(axis=2) < 60).sum() > 50


def test_eval_perturb_uses_the_plugins_perturbation(plugin_site, tmp_path):
    rows = [{"modality": "sonar", "path": _pulse(tmp_path, f"{i}.sonar", 100 + 200 * i).name} for i in range(4)]
    manifest = tmp_path / "test.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    model = tmp_path / "model"
    saved = _python(f"from binder.model import BindingModel; "
                    f"BindingModel.default(['image', 'text', 'sonar']).save({str(model)!r})", plugin_site)
    assert saved.returncode == 0, saved.stderr[-3000:]
    args = ["eval", str(manifest), "--model", str(model), "--gallery", str(manifest), "--by", "pair"]
    clean = _cli(args, plugin_site)
    delayed = _cli(args + ["--perturb", "delay=0.2"], plugin_site)
    assert clean.returncode == 0 and delayed.returncode == 0, (clean.stderr[-3000:], delayed.stderr[-3000:])
    clean_out, delayed_out = json.loads(clean.stdout), json.loads(delayed.stdout)
    assert delayed_out["perturb"] == "delay=0.2" and delayed_out["items"] == 4 and delayed_out["failed"] == 0
    # each delayed echo is the next file's echo: retrieval finds the wrong file
    assert clean_out["to_sonar"]["R@1"] == 1.0 and delayed_out["to_sonar"]["R@1"] <= 0.25
    unknown = _cli(args + ["--perturb", "snr=10"], plugin_site)
    assert unknown.returncode != 0
    assert "unknown perturbation 'snr' for sonar; known: delay (shift the echo later" in unknown.stderr
