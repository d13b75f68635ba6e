"""benchmarks/val_curves.py without training: where a curve flattens, the plot, the results file's merge."""
from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from PIL import Image

from binder.errors import AnybindError
from binder.train.perturb import parse_perturbation
from binder.train.recipe import load_recipe

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from val_curves import (  # noqa: E402
    SHIFTS,
    markdown_table,
    merge,
    parse_candidate,
    pick_steps,
    plot,
    read_previous,
    shift_specs,
    shifted_val,
    summarize,
    with_augment,
    with_variant,
    write_json,
)


def curve(*points: tuple[int, float]) -> list[dict]:
    return [{"step": s, "video": v} for s, v in points]


def test_pick_steps_is_the_first_step_within_a_point_of_the_best():
    assert pick_steps(curve((10, 0.2), (20, 0.5), (30, 0.595), (40, 0.6), (50, 0.58))) == 30
    assert pick_steps(curve((10, 0.7), (20, 0.5), (30, 0.69))) == 10  # best first: flat from the start
    assert pick_steps(curve((5, 0.1), (10, 0.3), (15, 0.5))) == 15  # still climbing: the last step
    assert pick_steps(curve((5, 0.4), (10, 0.42)), tolerance=0.05) == 5
    assert pick_steps([]) is None


def test_pick_steps_averages_the_modalities_of_a_row():
    rows = [{"step": 1, "a": 0.2, "b": 0.4}, {"step": 2, "a": 0.5, "b": 0.1}, {"step": 3, "a": 0.6, "b": 0.6}]
    assert pick_steps(rows) == 3  # row means 0.3, 0.3, 0.6


def test_summary_names_best_final_and_flat_steps():
    result = summarize(curve((10, 0.3), (20, 0.6), (30, 0.6), (40, 0.55)), {"p_temporal": 0.3}, 1.5)
    assert (result["best_top1"], result["best_step"], result["final_top1"]) == (0.6, 20, 0.55)
    assert result["flat_step"] == 20 and result["minutes"] == 1.5 and result["augment"] == {"p_temporal": 0.3}


def test_candidates_parse_as_name_and_augment_value():
    assert parse_candidate("off=false") == ("off", False)
    assert parse_candidate('light={"p_temporal": 0.3}') == ("light", {"p_temporal": 0.3})
    for bad in ("off", "=true", "x=3", "x={bad"):
        with pytest.raises(ValueError, match="candidate"):
            parse_candidate(bad)


def test_the_plot_is_a_png_with_one_line_per_candidate(tmp_path):
    pytest.importorskip("matplotlib")
    candidates = {"defaults": {"curve": curve((2, 0.1), (4, 0.3), (6, 0.4))},
                  "off": {"curve": curve((2, 0.1), (4, 0.2), (6, 0.25))}}
    path = tmp_path / "video.png"
    plot("video", candidates, path)
    assert path.stat().st_size > 0 and not list(tmp_path.glob(".*tmp"))
    with Image.open(path) as img:
        assert img.format == "PNG" and img.size[0] > 100 and img.size[1] > 100


def test_rerunning_some_candidates_keeps_the_others(tmp_path):
    path = tmp_path / "results" / "video.json"
    write_json(path, merge(read_previous(path), "video", {"off": {"best_top1": 0.2}, "defaults": {"best_top1": 0.5}}))
    write_json(path, merge(read_previous(path), "video", {"defaults": {"best_top1": 0.6}, "light": {"best_top1": 0.4}}))
    saved = read_previous(path)
    assert saved["recipe"] == "video"
    assert saved["candidates"] == {"off": {"best_top1": 0.2}, "defaults": {"best_top1": 0.6},
                                   "light": {"best_top1": 0.4}}
    assert [p.name for p in path.parent.iterdir()] == ["video.json"]  # no temp file left


def test_a_candidate_replaces_the_modalitys_augment_and_sets_the_curve():
    recipe = load_recipe(ROOT / "recipes" / "bind" / "video.toml")
    changed = with_augment(recipe, {"p_temporal": 0.3}, steps=40, eval_every=4)
    assert [s.augment for s in changed.modalities] == [{"p_temporal": 0.3}]
    assert (changed.train.steps, changed.train.eval_every) == (40, 4)
    assert changed.modalities[0].val == recipe.modalities[0].val and changed.bind == recipe.bind
    assert recipe.modalities[0].test and recipe.modalities[0].hard  # the recipe has both ...
    assert changed.modalities[0].test is None and changed.modalities[0].hard is None  # ... a val run neither


def test_a_variant_reaches_the_models_config_not_only_the_recipe_entry():
    """Options and head settings live twice in a recipe (the [[modality]] entry and the model's
    config built from it): a variant must change the one the model is built from."""
    name, variant = parse_candidate('sharp={"augment": true, "options": {"winsize": 5, "flow_magnitude": false}, '
                                    '"head": {"stream_dropout": 0.5}, "train": {"lr": 0.002}}')
    assert name == "sharp" and isinstance(variant, dict)
    recipe = load_recipe(ROOT / "recipes" / "bind" / "two_stream.toml")
    changed = with_variant(recipe, variant)
    mcfg = changed.bind.modality("two_stream")
    assert mcfg.options["winsize"] == 5 and mcfg.options["flow_magnitude"] is False
    assert mcfg.options["tubelet"] == recipe.bind.modality("two_stream").options["tubelet"]  # the rest kept
    assert mcfg.head.stream_dropout == 0.5 and changed.modalities[0].head["stream_dropout"] == 0.5
    assert changed.train.lr == 0.002 and changed.train.steps == recipe.train.steps
    assert changed.bind.modality("image") == recipe.bind.modality("image")
    assert changed.bind.trunk == recipe.bind.trunk  # no trunk key: the recipe's trunk
    _, adapted = parse_candidate('lora={"augment": true, "trunk": {"lora_rank": 4}}')
    assert isinstance(adapted, dict)
    trunk = with_variant(recipe, adapted).bind.trunk
    assert trunk.lora_rank == 4 and trunk.kind == recipe.bind.trunk.kind
    assert trunk.lora_alpha == recipe.bind.trunk.lora_alpha
    with pytest.raises(AnybindError, match="lora_rank"):
        with_variant(recipe, {"augment": True, "trunk": {"lora_rank": -1}})
    for bad in ('x={"augment": true, "optimizer": {}}', 'x={"augment": true, "options": 3}'):
        with pytest.raises(ValueError, match="variant"):
            parse_candidate(bad)
    with pytest.raises(ValueError, match="winsize"):
        with_variant(recipe, {"augment": True, "options": {"winsize": "wide"}})


def test_the_table_lists_every_recipes_candidates_with_their_figures(tmp_path):
    write_json(tmp_path / "video.json", merge({}, "video", {
        "off": summarize(curve((100, 0.3), (200, 0.5)), False, 1.0),
        "strong": summarize(curve((100, 0.2), (200, 0.55), (300, 0.6)), {"p_noise": 0.5}, 2.0)}))
    write_json(tmp_path / "imu.json", merge({}, "imu", {"defaults": summarize(curve((50, 0.4)), True, 0.5)}))
    lines = markdown_table(tmp_path).splitlines()
    assert len(lines) == 2 + 3 and lines[2].startswith("| imu | defaults | 50 | 0.400 (50) |")
    assert "| video | strong | 300 | 0.600 (300) | 0.600 | 300 |" in lines[4] and '{"p_noise": 0.5}' in lines[4]


def test_the_summary_keeps_each_shifted_val_and_their_mean():
    result = summarize(curve((10, 0.5)), True, 1.0, {"noise=0.1": 0.4, "blur=0.03": 0.2})
    assert result["shifted"] == {"noise=0.1": 0.4, "blur=0.03": 0.2, "mean": pytest.approx(0.3)}
    assert "shifted" not in summarize(curve((10, 0.5)), True, 1.0, {})


def test_shift_specs_are_the_modalitys_unless_given():
    assert shift_specs("thermal", None) == SHIFTS["thermal"] and len(SHIFTS["thermal"]) > 1
    assert shift_specs("thermal", ["noise=0.2"]) == ("noise=0.2",)
    assert shift_specs("thermal", ["none"]) == () and shift_specs("basic_motions", None) == ()


@pytest.mark.parametrize("modality", sorted(SHIFTS))
def test_every_shift_is_a_perturbation_its_modality_declares(modality):
    for spec in SHIFTS[modality]:
        assert parse_perturbation(spec, modality).spec == spec
    with pytest.raises(AnybindError, match="unknown perturbation"):
        parse_perturbation("warp=1", modality)


def test_shifted_val_measures_every_val_under_each_spec_alone():
    """One evaluation per (val manifest, spec), never the test or hard manifests; a recipe binding
    several modalities reads the mean of their vals."""
    calls = []

    def fake_val_top1(manifest, perturb=None):
        calls.append((manifest, perturb))
        return {"a.val": 0.6, "b.val": 0.2}[manifest] - (0.1 if perturb == "snr=5" else 0.0)

    spec = lambda name: SimpleNamespace(val=f"{name}.val", test=f"{name}.test", hard=f"{name}.hard")  # noqa: E731
    trainer = SimpleNamespace(val_top1=fake_val_top1, recipe=SimpleNamespace(modalities=[spec("a"), spec("b")]))
    out = shifted_val(trainer, ("snr=5", "gain=-20"))
    assert out == {"snr=5": pytest.approx(0.3), "gain=-20": pytest.approx(0.4)}
    assert sorted(calls) == [("a.val", "gain=-20"), ("a.val", "snr=5"), ("b.val", "gain=-20"), ("b.val", "snr=5")]


def test_the_table_shows_the_shifted_val_mean_or_a_dash(tmp_path):
    write_json(tmp_path / "depth.json", merge({}, "depth", {
        "plain": summarize(curve((100, 0.5)), True, 1.0),
        "shifted": summarize(curve((100, 0.5)), True, 1.0, {"noise=0.02": 0.25, "rotate=25": 0.35})}))
    plain, shifted = markdown_table(tmp_path).splitlines()[2:]
    assert "| 100 | – |" in plain and "| 100 | 0.300 |" in shifted
