"""Emergence end to end on the small world, through the shipped recipes and the CLI:
a modality bound with (modality, image) pairs only is classified through the frozen text tower
far above chance, although it never saw a word of text."""
import json

import pytest
from click.testing import CliRunner

from binder.cli import app


@pytest.fixture(scope="module")
def anchor_dir(small_world, tmp_path_factory):
    out = tmp_path_factory.mktemp("anchor") / "anchor"
    result = CliRunner().invoke(app, [
        "anchor", "train", "recipes/anchor_digits.toml", "--quiet",
        "--set", f"train.root={json.dumps(str(small_world.folder))}", "--set", f"train.out={json.dumps(str(out))}",
        "--set", "train.batch_size=32", "--set", "train.epochs=30"])
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.output[:result.output.rindex("}") + 1])
    assert metrics["zero_shot_top1"] > 0.5, metrics  # the anchor itself must read digits
    return out


def test_world_build_cli_is_a_cache_hit(small_world):
    result = CliRunner().invoke(app, ["world", "build", str(small_world.folder), "--small", "--quiet"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["cached"] is True


def test_thermal_bound_to_images_classifies_through_text(small_world, anchor_dir, tmp_path):
    out = tmp_path / "thermal"
    result = CliRunner().invoke(app, [
        "train", "recipes/bind/thermal.toml", "--quiet",
        "--set", f"anchor.model={json.dumps('local-dir:' + str(anchor_dir))}",
        "--set", f"train.root={json.dumps(str(small_world.folder))}", "--set", f"train.out={json.dumps(str(out))}",
        "--set", f"train.cache_dir={json.dumps(str(tmp_path / 'cache'))}", "--set", "train.steps=300"])
    assert result.exit_code == 0, result.output
    m = json.loads((out / "metrics.json").read_text())["thermal"]
    assert m["target"] == "image"  # never trained on text
    assert m["zero_shot_top1"] > 2.5 * m["chance_top1"], m
    assert m["to_image"]["R@1"] > 2.5 * m["chance_top1"], m
