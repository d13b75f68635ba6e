"""The binding trainer: InfoNCE between each modality and frozen anchor targets of its pairs.

Anchor targets are precomputed (and cached) once; inputs are preprocessed once; each step takes
one batch of one modality (round-robin when a recipe binds several), with a deterministic order
derived from (seed, modality, epoch), so a run resumed from a checkpoint replays exactly the
batches an unbroken run would have seen.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from binder.checkpoint import load_weights
from binder.errors import AnybindError, CheckpointError
from binder.io import atomic_dir, atomic_write_json
from binder.model import BindingModel
from binder.train.data import PreparedSet, anchor_targets, prepare_inputs, read_pairs, target_keys, under_root
from binder.train.evaluate import evaluate_manifest
from binder.train.loss import BindingLoss
from binder.train.recipe import BindSpec, Recipe
from binder.train.state import load_train_state, save_train_state


@dataclass
class BindData:
    """One modality's training tensors: inputs, the index of each input's target, the targets."""

    spec: BindSpec
    inputs: torch.Tensor
    ids: torch.Tensor
    targets: torch.Tensor


class Trainer:
    """Trains the heads and tokenizers (and any unfrozen trunk parts) of a recipe's modalities."""

    def __init__(self, recipe: Recipe, progress: bool = True):
        self.recipe, self.cfg, self.progress = recipe, recipe.train, progress
        torch.manual_seed(self.cfg.seed)
        self.model = BindingModel(recipe.bind)
        self.data = [self._load(spec) for spec in recipe.modalities]
        params = [p for p in self.model.parameters() if p.requires_grad]
        if not params:
            raise AnybindError("nothing to train: every parameter is frozen")
        self.optimizer = torch.optim.AdamW(self._param_groups(), lr=self.cfg.lr, betas=(0.9, 0.98), eps=1e-6)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._lr_factor)
        self.losses = torch.nn.ModuleDict({d.spec.name: BindingLoss(self.model.embed_dim, self.cfg.memory_size)
                                           for d in self.data})
        self.step = 0

    # ------------------------------------------------------------------ setup
    def manifest(self, path: str) -> str:
        return under_root(self.cfg.root, path)

    def _load(self, spec: BindSpec) -> BindData:
        records = read_pairs(self.manifest(spec.train), self.cfg.root)
        prepared = prepare_inputs(self.model.modality(spec.name), records, self.cfg.workers, self.progress)
        _report_failures(prepared)
        keys = target_keys(prepared.records, spec.target)
        targets, ids = anchor_targets(self.model.anchor, keys, spec.target, self.cfg.cache_dir,
                                      image_modality=self.model.modalities.get("image"))
        return BindData(spec, prepared.inputs, ids, targets)

    def _param_groups(self) -> list[dict[str, Any]]:
        """No weight decay on norms, biases, embeddings, CLS/position tokens and logit scales."""
        decay: list[torch.nn.Parameter] = []
        no_decay: list[torch.nn.Parameter] = []
        for name, p in self.model.named_parameters():
            if p.requires_grad:
                no_wd = p.ndim < 2 or any(k in name for k in ("cls", "pos", "embed", "scale"))
                (no_decay if no_wd else decay).append(p)
        return [{"params": decay, "weight_decay": self.cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]

    def _lr_factor(self, step: int) -> float:
        warm = self.cfg.warmup_steps
        if step < warm:
            return (step + 1) / warm
        progress = (step - warm) / max(1, self.cfg.steps - warm)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    # ------------------------------------------------------------------ batches
    def batch_indices(self, step: int) -> tuple[BindData, torch.Tensor]:
        """The modality and the input rows of global ``step`` (a pure function of seed and step)."""
        m = step % len(self.data)
        data, local = self.data[m], step // len(self.data)
        n, bs = len(data.inputs), min(self.cfg.batch_size, len(data.inputs))
        per_epoch = n // bs
        epoch, offset = divmod(local, per_epoch)
        gen = torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + m * 10_007 + epoch)
        perm = torch.randperm(n, generator=gen)
        return data, perm[offset * bs:(offset + 1) * bs]

    def train_step(self, step: int) -> float:
        data, idx = self.batch_indices(step)
        name = data.spec.name
        gen = torch.Generator().manual_seed(self.cfg.seed * 7919 + step)
        z = self.model.encode(name, data.inputs[idx], token_drop=self.cfg.token_drop, generator=gen)
        loss = self.losses[name](z, data.targets[data.ids[idx]], data.ids[idx], self.model.logit_scale(name))
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.scheduler.step()
        return float(loss.detach())

    # ------------------------------------------------------------------ run
    def run(self, resume: bool = False, stop_after: int | None = None) -> dict[str, Any]:
        """Train to ``cfg.steps`` (or stop after ``stop_after`` steps, as a kill would), then evaluate."""
        out = Path(self.cfg.out)
        if resume:
            self.load_checkpoint(out / "checkpoint")
        self.model.train()
        bar = tqdm(total=self.cfg.steps, initial=self.step, disable=not self.progress, desc="bind",
                   unit="step", dynamic_ncols=True)
        ema, t0, seen = None, time.perf_counter(), 0
        while self.step < self.cfg.steps:
            if stop_after is not None and self.step >= stop_after:
                bar.close()
                return {"stopped_at": self.step}
            loss = self.train_step(self.step)
            self.step += 1
            seen += min(self.cfg.batch_size, len(self.data[(self.step - 1) % len(self.data)].inputs))
            ema = loss if ema is None else 0.9 * ema + 0.1 * loss
            bar.set_postfix(loss=f"{ema:.3f}", items_s=f"{seen / (time.perf_counter() - t0):.0f}")
            bar.update(1)
            if self.step % self.cfg.checkpoint_every == 0 or self.step == self.cfg.steps:
                self.save_checkpoint(out / "checkpoint")
        bar.close()
        self.model.eval()
        metrics = self.evaluate()
        self.model.save(out / "model")
        atomic_write_json(out / "metrics.json", metrics)
        return metrics

    # ------------------------------------------------------------------ checkpoints
    def stateful_parts(self) -> dict[str, Any]:
        """Everything besides the model weights that a resumed run needs, by name."""
        return {"optimizer": self.optimizer, "scheduler": self.scheduler, "losses": self.losses}

    def save_checkpoint(self, folder: Path) -> None:
        """Weights + optimizer + scheduler + loss queues + step; built beside, then swapped in whole."""
        with atomic_dir(folder) as tmp:
            self.model.save(tmp)
            save_train_state(tmp, self.stateful_parts(), {"step": self.step, "recipe": self.recipe.path})

    def load_checkpoint(self, folder: Path) -> None:
        if not folder.is_dir():
            raise CheckpointError(f"{folder}: no checkpoint to resume from")
        load_weights(folder, self.model)
        info = load_train_state(folder, self.stateful_parts())
        self.step = int(info["step"])

    # ------------------------------------------------------------------ evaluation
    def evaluate(self) -> dict[str, Any]:
        """Per modality on its test (else val) manifest: zero-shot top-1, chance, R@k to the image gallery."""
        ev, results = self.recipe.eval, {}
        for spec in self.recipe.modalities:
            manifest = spec.test or spec.val
            if manifest is not None:
                gallery = self.manifest(ev.image_gallery) if ev.image_gallery else None
                results[spec.name] = evaluate_manifest(self.model, self.manifest(manifest), self.cfg.root, ev.classes,
                                                       ev.templates, gallery, workers=self.cfg.workers, names=ev.names)
                results[spec.name]["target"] = spec.target
        return results


def _report_failures(prepared: PreparedSet) -> None:
    for path, reason in prepared.failures:
        tqdm.write(f"anybind: skipped {path}: {reason}")
