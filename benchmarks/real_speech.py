"""How far a binding carries to real human speech: zero-shot top-1 through the text tower, per speaker.

The folder holds ``{digit}_{speaker}_{take}.wav`` files (the Free Spoken Digit Dataset's naming; the
default is the development set in ``../shared/data/real_speech_dev``, which no binding trains on).
Every file is embedded with the model's ``--modality`` (``audio`` or ``speech_units``) and classified
by its nearest digit prompt, with the classes and templates of the recipe's ``[eval]``. A file the
modality refuses counts as refused, and as wrong in the overall figure (``top1_all``): a user's folder
loses it either way.

    python benchmarks/real_speech.py --model out/demo/model [--modality audio] [--name demo/audio]

Results are merged into ``--json`` under ``--name`` (default: the model folder and the modality).
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from binder.embed.classify import class_embeddings  # noqa: E402
from binder.errors import AnybindError  # noqa: E402
from binder.io import atomic_write_text  # noqa: E402
from binder.model import BindingModel  # noqa: E402
from binder.train.data import PairRecord  # noqa: E402
from binder.train.evaluate import evaluate_manifest  # noqa: E402
from binder.train.recipe import Recipe, load_recipe  # noqa: E402
from recipes.bench.run import embed_records  # noqa: E402

NAME = re.compile(r"^(?P<digit>[0-9])_(?P<speaker>[^_]+)_(?P<take>[0-9]+)\.wav$")
DEV_SET = ROOT.parent / "shared" / "data" / "real_speech_dev"


def spoken_digits(folder: Path, modality: str) -> list[PairRecord]:
    """One record per ``{digit}_{speaker}_{take}.wav`` in ``folder``, labelled by the digit; other
    files are ignored. An empty match is an error naming the folder and the pattern."""
    records = []
    for path in sorted(folder.iterdir()) if folder.is_dir() else []:
        m = NAME.match(path.name)
        if m:
            records.append(PairRecord(modality, str(path), label=int(m["digit"]), text=m["speaker"]))
    if not records:
        raise AnybindError(f"{folder}: no {{digit}}_{{speaker}}_{{take}}.wav files")
    return records


def score(model: BindingModel, records: list[PairRecord], classes: tuple[str, ...], templates: tuple[str, ...],
          workers: int = 2, progress: bool = True) -> dict[str, Any]:
    """Top-1 per speaker and overall (over embedded files, and over all files with refusals wrong)."""
    embedded = embed_records(model, records[0].modality, records, batch_size=32, workers=workers, progress=progress)
    prompts = class_embeddings(model.anchor, classes, templates)
    hits: dict[str, list[int]] = defaultdict(list)
    refused: dict[str, int] = defaultdict(int)
    failed = {f.path for f in embedded.failures}
    for rec in records:
        speaker = str(rec.text)
        if rec.path in failed:
            refused[speaker] += 1
            continue
        pred = int(torch.argmax(embedded.vectors[embedded.rows[rec.path]] @ prompts.T))
        hits[speaker].append(int(pred == rec.label))
    speakers = sorted(set(hits) | set(refused))
    per = {s: {"items": len(hits[s]) + refused[s], "refused": refused[s],
               "top1": sum(hits[s]) / max(1, len(hits[s]))} for s in speakers}
    n_hit, n_kept = sum(sum(h) for h in hits.values()), sum(len(h) for h in hits.values())
    return {"items": len(records), "refused": len(failed), "top1": n_hit / max(1, n_kept),
            "top1_all": n_hit / len(records), "speakers": per,
            "refusals": [{"path": f.path, "reason": f.reason} for f in embedded.failures]}


SPLITS = ("val", "test", "hard")


def measure_binding(model: BindingModel, recipe: Recipe, dev: Path, modality: str = "audio") -> dict[str, Any]:
    """What a trained variant is judged by: zero-shot top-1 of each of ``recipe``'s modalities on its val,
    test and hard manifests (``splits[modality][split]``; val chooses, test and hard are reported), and
    ``modality`` on the real speech in ``dev`` (``dev``, ``dev_refused``, ``dev_speakers``)."""
    ev, root = recipe.eval, recipe.train.root
    splits = {spec.name: {split: evaluate_manifest(model, str(Path(root or ".") / getattr(spec, split)), root,
                                                   ev.classes, ev.templates)["zero_shot_top1"]
                          for split in SPLITS if getattr(spec, split)}
              for spec in recipe.modalities}
    real = score(model, spoken_digits(dev, modality), ev.names or ev.classes, ev.templates, progress=False)
    return {"splits": splits, "dev": real["top1_all"], "dev_refused": real["refused"],
            "dev_speakers": {s: r["top1"] for s, r in real["speakers"].items()}}


def merge_result(path: Path, name: str, result: dict[str, Any]) -> None:
    """Write ``result`` under ``name`` in the JSON file at ``path``, keeping the other entries."""
    data = json.loads(path.read_text()) if path.is_file() else {}
    data[name] = result
    atomic_write_text(path, json.dumps(data, indent=2) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, required=True, help="a trained binding's folder")
    ap.add_argument("--folder", type=Path, default=DEV_SET, help="{digit}_{speaker}_{take}.wav files")
    ap.add_argument("--modality", default="audio", help="audio or speech_units")
    ap.add_argument("--recipe", type=Path, default=ROOT / "recipes" / "demo.toml", help="its [eval] gives the prompts")
    ap.add_argument("--name", default=None)
    ap.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "real_speech.json")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    ev = load_recipe(args.recipe).eval
    model = BindingModel.load(args.model, [args.modality, "text"])  # the text tower encodes the prompts
    result = score(model, spoken_digits(args.folder, args.modality), ev.names or ev.classes, ev.templates)
    result.update(model=str(args.model), modality=args.modality, folder=str(args.folder))
    name = args.name or f"{args.model.name}/{args.modality}"
    merge_result(args.json, name, result)
    for speaker, row in result["speakers"].items():
        print(f"  {speaker:<12} top-1 {row['top1']:.3f}  refused {row['refused']} of {row['items']}")
    print(f"{name}: top-1 {result['top1']:.3f} ({result['top1_all']:.3f} counting refusals as wrong), "
          f"refused {result['refused']} of {result['items']}")


if __name__ == "__main__":
    main()
