"""One rank of the distributed-training tests (tests/test_distributed.py starts two of these).

Each rank is told its place through torchrun's variables (RANK, WORLD_SIZE, LOCAL_RANK) and
meets the other through $ANYBIND_INIT_METHOD (a file, so no port is opened beyond gloo's own on
the loopback interface). It runs, for each recipe given:

- ``first``: step 0 by hand, writing that step's loss and gradients, then the rest of the run;
- ``plain``: the whole run;
- ``resume``: the run stopped after 2 steps (a kill), then resumed by a fresh trainer;

and writes every rank's final trainable weights, so the test can compare ranks and runs.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

from binder.train.recipe import load_recipe
from binder.train.trainer import Trainer


def trainable(trainer: Trainer) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}


def grads(trainer: Trainer) -> dict[str, torch.Tensor]:
    return {n: p.grad.detach().clone() for n, p in trainer.model.named_parameters() if p.grad is not None}


def main(out: Path, jobs: list[str]) -> None:
    rank = int(os.environ["RANK"])
    for job in jobs:
        mode, recipe = job.split("=", 1)
        rec = load_recipe(recipe)
        trainer = Trainer(rec, progress=False)
        if mode == "first":
            loss = trainer.train_step(0)
            save_file(grads(trainer), str(out / f"{rec.train.out.rsplit('/', 1)[-1]}.grads.{rank}.safetensors"))
            (out / f"{rec.train.out.rsplit('/', 1)[-1]}.loss.{rank}.json").write_text(json.dumps(loss))
            trainer.step = 1
            trainer.run()
        elif mode == "plain":
            trainer.run()
        elif mode == "resume":
            assert trainer.run(stop_after=2) == {"stopped_at": 2}
            trainer = Trainer(rec, progress=False)
            trainer.run(resume=True)
        else:
            raise SystemExit(f"unknown job {mode}")
        save_file(trainable(trainer), str(out / f"{rec.train.out.rsplit('/', 1)[-1]}.final.{rank}.safetensors"))


if __name__ == "__main__":
    torch.set_num_threads(1)
    main(Path(sys.argv[1]), sys.argv[2:])
