"""Which training settings carry a binding to real speech: augmentation and front-end variants of one
recipe, each trained the same way (seed, steps, data) and measured on the world's val split, on real
human speech (the development set, ``benchmarks/real_speech.py``), and on the test and hard splits.

Choices are made on **val and the real development set only**; test and hard are reported beside
them, never used to choose. Every binding is (modality, image) pairs only.

    python benchmarks/real_transfer.py [--modality audio] [--variants baseline,band,channel] [--steps 400]

Needs a world and an anchor (``make demo`` makes both). Results: ``benchmarks/results/real_transfer.json``.
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

from emergence import add_world_arguments, recipe_for  # noqa: E402
from real_speech import DEV_SET, measure_binding  # noqa: E402

from binder.io import atomic_write_text  # noqa: E402
from binder.model import BindingModel  # noqa: E402
from binder.train.recipe import Recipe  # noqa: E402
from binder.train.trainer import Trainer  # noqa: E402

# The room, microphone and channel augmentations: off (the defaults before they were measured), and
# the setting chosen here, now AudioAugment's default.
NO_CHANNEL = {"p_reverb": 0.0, "p_eq": 0.0, "p_band": 0.0, "p_codec": 0.0}
CHANNEL = {"p_reverb": 0.3, "p_eq": 0.5, "p_band": 0.5, "p_codec": 0.3}
# name: (augmentation options over the recipe's, modality options over the recipe's)
VARIANTS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "baseline": (NO_CHANNEL, {}),
    "band": ({**NO_CHANNEL, "p_band": 0.5}, {}),
    "channel": (CHANNEL, {}),
    "cmn": (NO_CHANNEL, {"normalize": "cmn"}),
    "cmvn": (NO_CHANNEL, {"normalize": "cmvn"}),
    "channel+cmn": (CHANNEL, {"normalize": "cmn"}),
    "channel+cmvn": (CHANNEL, {"normalize": "cmvn"}),
    "channel+warp": ({**CHANNEL, "p_warp": 0.5}, {}),
    "channel strong": ({"p_reverb": 0.5, "p_eq": 0.8, "p_band": 0.8, "p_codec": 0.5}, {}),
    "8 kHz": (NO_CHANNEL, {"sample_rate": 8000}),
    "8 kHz+channel": (CHANNEL, {"sample_rate": 8000}),
    "channel+babble": ({**CHANNEL, "p_babble": 0.3}, {}),
    "channel+babble strong": ({**CHANNEL, "p_babble": 0.6}, {}),
    "pcen": (NO_CHANNEL, {"normalize": "pcen"}),
    "channel+pcen": (CHANNEL, {"normalize": "pcen"}),
    # The voice's pitch and tempo: the world's voices span a few rates and pitches, people more.
    "channel+pitch": ({**CHANNEL, "p_pitch": 0.5}, {}),
    "channel+pitch4": ({**CHANNEL, "p_pitch": 0.5, "pitch_semitones": [-4.0, 4.0]}, {}),
    "channel+speed wide": ({**CHANNEL, "speed": [0.8, 1.25]}, {}),
    # The shared trunk adapted, where the recipe keeps it frozen (Meta-Transformer's default).
    "channel+lora4": (CHANNEL, {}),
    "channel+lora16": (CHANNEL, {}),
    "channel+last block": (CHANNEL, {}),
}
# name: recipe keys over the recipe's, for variants that change more than the modality
RECIPE_OVERRIDES: dict[str, dict[str, Any]] = {
    "channel+lora4": {"trunk.lora_rank": 4},
    "channel+lora16": {"trunk.lora_rank": 16},
    "channel+last block": {"trunk.trainable_blocks": 1},
}


def variant_recipe(args: argparse.Namespace, name: str) -> Recipe:
    """The modality's recipe on the world and anchor given, with variant ``name``'s options."""
    augment, options = VARIANTS[name]
    rec = recipe_for(args.modality, args.world, args.anchor, args.out / name, "image", args.steps,
                     RECIPE_OVERRIDES.get(name))
    specs = tuple(dataclasses.replace(s, augment={**(s.augment if isinstance(s.augment, dict) else {}), **augment})
                  for s in rec.modalities)
    mods = tuple(dataclasses.replace(m, options={**m.options, **options}) if m.name == args.modality else m
                 for m in rec.bind.modalities)
    return dataclasses.replace(rec, modalities=specs, bind=dataclasses.replace(rec.bind, modalities=mods))


def measure(args: argparse.Namespace, name: str) -> dict[str, Any]:
    """Train variant ``name`` (or reuse it with --reuse) and measure it on val, dev, test and hard."""
    rec = variant_recipe(args, name)
    folder = Path(rec.train.out) / "model"
    t0 = time.perf_counter()
    if not (args.reuse and folder.is_dir()):
        Trainer(rec, progress=False).run()
    minutes = (time.perf_counter() - t0) / 60
    model = BindingModel.load(folder)
    row: dict[str, Any] = {"augment": VARIANTS[name][0], "options": VARIANTS[name][1], "minutes": round(minutes, 2)}
    if name in RECIPE_OVERRIDES:
        row["recipe"] = RECIPE_OVERRIDES[name]
    figures = measure_binding(model, rec, args.dev, args.modality)
    row.update(figures.pop("splits")[rec.modalities[0].name], **figures)
    print(f"  {name:<14} val {row['val']:.3f}  dev {row['dev']:.3f} (refused {row['dev_refused']})  "
          f"test {row['test']:.3f}  hard {row['hard']:.3f}  ({minutes:.1f} min)", flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_world_arguments(ap, "real_transfer")
    ap.add_argument("--modality", default="audio")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--steps", type=int, default=None, help="default: the recipe's")
    ap.add_argument("--dev", type=Path, default=DEV_SET)
    ap.add_argument("--reuse", action="store_true", help="measure bindings already trained under --out")
    ap.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "real_transfer.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    args.out = args.out / args.modality
    results = json.loads(args.json.read_text()) if args.json.is_file() else {}
    for name in args.variants.split(","):
        results.setdefault(args.modality, {})[name] = measure(args, name)
        atomic_write_text(args.json, json.dumps(results, indent=2) + "\n")
    rows = results[args.modality]
    print("| variant | val | real dev | test | hard |\n|---|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {r['val']:.3f} | {r['dev']:.3f} | {r['test']:.3f} | {r['hard']:.3f} |")


if __name__ == "__main__":
    main()
