"""`make demo` reuses its trained binding only while recipes/demo.toml reads as it did when trained."""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recipes import demo  # noqa: E402


def test_a_cached_binding_is_reused_only_for_the_recipe_it_was_trained_from(tmp_path):
    recipe, stamp = tmp_path / "demo.toml", tmp_path / demo.RECIPE_STAMP
    recipe.write_text('[trunk]\nkind = "anchor"\n')
    assert not demo._trained_from(stamp, recipe)  # a binding without a stamp predates it: train again
    stamp.write_text(demo._fingerprint(recipe) + "\n")
    assert demo._trained_from(stamp, recipe)
    recipe.write_text('[trunk]\nkind = "anchor"\nlora_rank = 16\n')
    assert not demo._trained_from(stamp, recipe)
