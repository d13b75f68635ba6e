"""A plugin package installed from tests/plugins adds a modality the CLI can embed, without forking."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

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
