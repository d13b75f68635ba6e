"""Validation curves on the offline world: one bind recipe trained with (modality, image) pairs under
several augmentation candidates, val zero-shot top-1 measured on the way (``train.eval_every``), so
one sees which augmentation helps and where each curve flattens.

    python benchmarks/val_curves.py video --candidate defaults=true --candidate off=false \\
        --candidate light='{"p_temporal": 0.3}' [--steps 600] [--eval-every 30]

Each candidate's JSON is the ``augment`` value of the recipe's [[modality]] (true: the defaults,
false: off, a table: fields overridden), or a recipe variant: an object with an ``augment`` key and
any of ``options``, ``head``, ``init`` (merged into the [[modality]]'s) and ``train`` (into [train]),
e.g. ``--candidate 'flow5={"augment": true, "options": {"winsize": 5}, "train": {"lr": 1e-3}}'``.
Each finished run is also measured on val under each named perturbation of its modality's
``SHIFTS`` (``anybind eval --perturb``, one at a time; ``--shift SPEC`` replaces them, ``--shift
none`` skips them): a robustness val, so a candidate that buys robustness with some clean
accuracy can be weighed on val, never on the test or hard splits.
Writes benchmarks/results/val_curves/NAME.json (per candidate: the curve, best val top-1 and its
step, the final one, ``flat_step``, minutes, and ``shifted``: top-1 under each perturbation and
their mean) and NAME.png (val top-1 against steps, one line per
candidate; needs the ``bench`` extra, matplotlib). Re-running some candidates keeps the others'
earlier results; ``val_curves.py table`` prints them all as one markdown table. Needs out/world and
out/anchor (built when missing, as benchmarks/emergence.py does).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from emergence import add_world_arguments, ensure_anchor, recipe_for  # noqa: E402

from binder.config import HeadConfig, TrunkConfig  # noqa: E402
from binder.train.perturb import parse_perturbation  # noqa: E402
from binder.train.recipe import Recipe, build_section, check_options  # noqa: E402
from binder.train.trainer import VAL_CURVE, Trainer  # noqa: E402
from recipes.world.build import build_world  # noqa: E402
from recipes.world.config import WorldConfig  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "val_curves"
FLAT = 0.01  # a curve has flattened at the first step within this much top-1 of its best
POINTS = 20  # evaluations per run when --eval-every is not given
_AUDIO_SHIFTS = ("snr=10", "pink=10", "silence=1", "speed=1.25", "pitch=3", "gain=-20")
_VIDEO_SHIFTS = ("crop=0.6", "stride=2", "rotate=20", "offset=2")
SHIFTS: dict[str, tuple[str, ...]] = {
    # Each modality's own perturbations, one at a time, past what its recipe's augmentation draws:
    # ordinary sensor conditions a user's data may have. Fixed before any result was read, except
    # the rasters' shift=0.1 (a 10 % move), added once a move was found missing from them: a recipe's
    # shifted val before and after it are two measures, so the recipe is re-measured beside a candidate.
    "audio": _AUDIO_SHIFTS, "speech_units": _AUDIO_SHIFTS,
    "thermal": ("noise=0.1", "blur=0.03", "rotate=25", "crop=0.5", "holes=0.05", "shift=0.1"),
    "depth": ("noise=0.02", "blur=0.03", "rotate=25", "crop=0.5", "holes=0.1", "shift=0.1"),
    "video": _VIDEO_SHIFTS, "two_stream": _VIDEO_SHIFTS,
    "imu": ("scale=1.5", "noise=0.3", "crop=0.7", "dropout=0"),
}


def row_top1(row: dict[str, Any]) -> float:
    """A curve row's val top-1: its modality's, or the mean over a recipe's modalities."""
    values = [float(v) for k, v in row.items() if k != "step"]
    return sum(values) / len(values)


def pick_steps(curve: list[dict[str, Any]], tolerance: float = FLAT) -> int | None:
    """The first evaluated step whose val top-1 is within ``tolerance`` of the curve's best: where the
    curve flattens, so a recipe need not train longer. None for an empty curve."""
    if not curve:
        return None
    best = max(row_top1(r) for r in curve)
    return next(int(r["step"]) for r in curve if row_top1(r) >= best - tolerance)


VARIANT_KEYS = ("augment", "options", "head", "init", "train", "trunk")


def summarize(curve: list[dict[str, Any]], augment: Any, minutes: float,
              shifted: dict[str, float] | None = None) -> dict[str, Any]:
    """One candidate's result: its curve, best val top-1 and its (first) step, the final top-1,
    the step where it flattens, the minutes the run took and, when measured, the final model's
    val top-1 under each perturbation with their mean (``shifted``)."""
    best = max(curve, key=row_top1)  # max keeps the first of equal rows: the earliest best step
    out = {"augment": augment, "curve": curve, "best_top1": row_top1(best), "best_step": int(best["step"]),
           "final_top1": row_top1(curve[-1]), "flat_step": pick_steps(curve), "minutes": minutes}
    if shifted:
        out["shifted"] = {**shifted, "mean": sum(shifted.values()) / len(shifted)}
    return out


def shift_specs(modality: str, given: list[str] | None) -> tuple[str, ...]:
    """The perturbations a candidate's val is measured under: ``--shift`` values when given
    (``none``: no shifted val), else the modality's ``SHIFTS`` (none for a modality without)."""
    if given is None:
        return SHIFTS.get(modality, ())
    return () if given == ["none"] else tuple(given)


def shifted_val(trainer: Trainer, specs: tuple[str, ...]) -> dict[str, float]:
    """The trained model's val zero-shot top-1 under each perturbation spec, one at a time (the
    mean over the recipe's modalities when it binds several)."""
    out: dict[str, float] = {}
    vals = [s.val for s in trainer.recipe.modalities if s.val is not None]
    for spec in specs:
        tops = [trainer.val_top1(val, spec) for val in vals]
        out[spec] = sum(tops) / len(tops)
    return out


def parse_candidate(text: str) -> tuple[str, bool | dict[str, Any]]:
    """``NAME=JSON`` → (name, augment value or recipe variant); true, false or a JSON object (a variant
    when it has an ``augment`` key, whose other keys must be among ``VARIANT_KEYS``)."""
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise ValueError(f"--candidate {text!r}: expected NAME=JSON (e.g. off=false)")
    try:
        augment = json.loads(value)
    except json.JSONDecodeError as exc:
        raise ValueError(f"--candidate {name}: {value!r} is not JSON ({exc})") from None
    if not isinstance(augment, (bool, dict)):
        raise ValueError(f"--candidate {name}: augment must be true, false or an object, got {value!r}")
    if isinstance(augment, dict) and "augment" in augment:
        unknown = sorted(set(augment) - set(VARIANT_KEYS))
        if unknown:
            raise ValueError(f"--candidate {name}: a variant takes {', '.join(VARIANT_KEYS)}; unknown {unknown}")
        if not all(isinstance(augment.get(k, {}), dict) for k in VARIANT_KEYS[1:]):
            raise ValueError(f"--candidate {name}: a variant's {', '.join(VARIANT_KEYS[1:])} must be objects")
    return name, augment


def with_variant(recipe: Recipe, variant: dict[str, Any]) -> Recipe:
    """``recipe`` with a variant's ``options``, ``head`` and ``init`` merged into every [[modality]] (the
    model's config rebuilt to match, so the change reaches the model), its ``train`` into [train] and its
    ``trunk`` into the shared trunk's config (``{"lora_rank": 4}``)."""
    options, head, init = variant.get("options", {}), variant.get("head", {}), variant.get("init", {})
    specs = tuple(dataclasses.replace(s, options={**s.options, **options}, head={**s.head, **head},
                                      init={**s.init, **init} if s.init or init else s.init)
                  for s in recipe.modalities)
    for spec in specs:
        check_options(spec, f"variant of {spec.name}")
    changed = {s.name for s in specs}
    mods = tuple(dataclasses.replace(m, options={**m.options, **options},
                                     head=build_section(HeadConfig, {**dataclasses.asdict(m.head), **head}, "head"))
                 if m.name in changed else m for m in recipe.bind.modalities)
    train = dataclasses.replace(recipe.train, **variant.get("train", {}))
    trunk = build_section(TrunkConfig, {**dataclasses.asdict(recipe.bind.trunk), **variant.get("trunk", {})}, "trunk")
    return dataclasses.replace(recipe, modalities=specs, train=train,
                               bind=dataclasses.replace(recipe.bind, modalities=mods, trunk=trunk))


def with_augment(recipe: Recipe, augment: bool | dict[str, Any], steps: int, eval_every: int) -> Recipe:
    """``recipe`` with every [[modality]]'s ``augment`` replaced, trained ``steps`` steps and measured
    every ``eval_every``; no checkpoints (a benchmark run is not resumed). Its test and hard
    manifests are dropped: a run that chooses settings never measures them (the end-of-run
    evaluation then reads val), so no choice made from its files can have seen them."""
    specs = tuple(dataclasses.replace(s, augment=augment, test=None, hard=None) for s in recipe.modalities)
    train = dataclasses.replace(recipe.train, steps=steps, eval_every=eval_every, checkpoint_every=10**9)
    return dataclasses.replace(recipe, modalities=specs, train=train)


def run_candidate(name: str, candidate: str, augment: bool | dict[str, Any], args: argparse.Namespace) -> dict:
    """Train recipe ``name`` under one augmentation candidate; its summary (``summarize``)."""
    base = recipe_for(name, args.world, args.anchor, args.out / f"{name}-{candidate}", "image", None)
    if isinstance(augment, dict) and "augment" in augment:  # a recipe variant
        base = with_variant(base, augment)
    steps = args.steps or 2 * base.train.steps
    every = args.eval_every or max(1, steps // POINTS)
    recipe = with_augment(base, augment["augment"] if isinstance(augment, dict) and "augment" in augment
                          else augment, steps, every)
    shifts = shift_specs(name, args.shift)
    for spec in recipe.modalities:  # a mistyped perturbation stops the sweep before it trains
        for shift in shifts:
            parse_perturbation(shift, spec.name)
    t0 = time.perf_counter()
    trainer = Trainer(recipe, progress=not args.quiet)
    metrics = trainer.run()
    minutes = (time.perf_counter() - t0) / 60
    result = summarize(metrics[VAL_CURVE], augment, minutes, shifted_val(trainer, shifts))
    shifted = f"  shifted val {result['shifted']['mean']:.3f}" if "shifted" in result else ""
    print(f"  {name} {candidate:<12} best {result['best_top1']:.3f} at step {result['best_step']}  final "
          f"{result['final_top1']:.3f}  flat from step {result['flat_step']}{shifted}  ({minutes:.1f} min)",
          flush=True)
    return result


def merge(previous: dict[str, Any], name: str, fresh: dict[str, dict]) -> dict[str, Any]:
    """The results file's content: an earlier run's candidates, those run now replacing their namesakes."""
    return {"recipe": name, "candidates": {**previous.get("candidates", {}), **fresh}}


def read_previous(path: Path) -> dict[str, Any]:
    """An earlier results file, so re-running some candidates keeps the others; {} when there is none."""
    return json.loads(path.read_text()) if path.is_file() else {}


def plot(name: str, candidates: dict[str, dict], path: Path) -> None:
    """NAME.png: val top-1 against steps, one line per candidate, written atomically. Needs matplotlib
    (the ``bench`` extra), imported here so the rest of the benchmark, and its tests, run without it."""
    try:
        import matplotlib
    except ImportError:
        raise SystemExit("val_curves: plotting needs matplotlib: pip install 'anybind[bench]'") from None
    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    styles = ("-", "--", ":")  # past the ten colours, a line keeps a look of its own
    for i, (candidate, result) in enumerate(candidates.items()):
        curve = result["curve"]
        ax.plot([r["step"] for r in curve], [row_top1(r) for r in curve], marker=".", label=candidate,
                linestyle=styles[i // 10 % len(styles)])
    ax.set(title=name, xlabel="step", ylabel="val zero-shot top-1")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    tmp.replace(path)


def write_json(path: Path, data: dict[str, Any]) -> None:
    """``data`` as JSON at ``path`` through a temp name and a rename (never half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)


def markdown_table(folder: Path) -> str:
    """Every recipe's candidates in ``folder`` as one markdown table: run length, best val top-1 and
    its step, final val top-1, the step where the curve flattens, and the augment value."""
    head = ("| recipe | candidate | steps | best val top-1 (step) | final | flat from | shifted val | augment |\n"
            "|---|---|---|---|---|---|---|---|\n")
    rows = []
    for path in sorted(folder.glob("*.json")):
        data = read_previous(path)
        for candidate, r in data.get("candidates", {}).items():
            rows.append(f"| {data.get('recipe', path.stem)} | {candidate} | {r['curve'][-1]['step']} | "
                        f"{r['best_top1']:.3f} ({r['best_step']}) | {r['final_top1']:.3f} | {r['flat_step']} | "
                        f"{_shifted_cell(r)} | `{json.dumps(r['augment'])}` |\n")
    return head + "".join(rows)


def _shifted_cell(result: dict[str, Any]) -> str:
    """A table cell: the mean val top-1 under the perturbations, or a dash where none was measured."""
    return f"{result['shifted']['mean']:.3f}" if "shifted" in result else "–"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("recipe", help="a bind recipe name: recipes/bind/NAME.toml (video, imu, depth, ...); "
                    "'table' prints every result so far as markdown")
    ap.add_argument("--candidate", action="append", metavar="NAME=JSON",
                    help="an augmentation candidate: the [[modality]]'s augment value as JSON (repeatable)")
    ap.add_argument("--steps", type=int, default=None, help="steps per run (default: twice the recipe's)")
    ap.add_argument("--eval-every", type=int, default=None, help=f"steps between evaluations (default: {POINTS} "
                    "evaluations per run)")
    ap.add_argument("--shift", action="append", metavar="SPEC",
                    help="a perturbation the final model's val is measured under, as anybind eval --perturb "
                    "takes it (repeatable; default: the modality's SHIFTS; 'none': no shifted val)")
    ap.add_argument("--results", type=Path, default=RESULTS, help="folder of NAME.json and NAME.png")
    ap.add_argument("--quiet", action="store_true", help="no progress bars")
    add_world_arguments(ap, "val_curves")
    args = ap.parse_args()
    if args.recipe == "table":  # no training: the table of every result so far
        print(markdown_table(args.results), end="")
        return
    if not args.candidate:
        ap.error("at least one --candidate NAME=JSON")
    if not (ROOT / "recipes" / "bind" / f"{args.recipe}.toml").is_file():
        ap.error(f"no recipe recipes/bind/{args.recipe}.toml")
    try:
        candidates = dict(parse_candidate(c) for c in args.candidate)
    except ValueError as exc:
        ap.error(str(exc))
    torch.set_num_threads(args.threads)
    build_world(args.world, WorldConfig.full())
    print(f"anchor: {ensure_anchor(args.world, args.anchor)}", flush=True)
    json_path, png_path = args.results / f"{args.recipe}.json", args.results / f"{args.recipe}.png"
    results = read_previous(json_path)
    for candidate, augment in candidates.items():  # written after each run: a stopped sweep keeps what finished
        results = merge(results, args.recipe, {candidate: run_candidate(args.recipe, candidate, augment, args)})
        write_json(json_path, results)
    plot(args.recipe, results["candidates"], png_path)
    print(f"wrote {json_path} and {png_path}")


if __name__ == "__main__":
    main()
