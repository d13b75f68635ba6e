"""The binding trainer: InfoNCE between each modality and frozen anchor targets of its pairs.

Anchor targets are precomputed (and cached) once. Inputs stream (binder.train.stream): worker
processes decode, augment and preprocess each step's batch, so every step sees a new variation
of each file and a data set larger than memory trains. Each step takes one batch of one modality
(round-robin when a recipe binds several) in an order derived from (seed, modality, epoch), and
every augmentation is drawn from (seed, step, item), so a run resumed from a checkpoint replays
exactly the batches an unbroken run would have seen. ``train.stream = false`` keeps the older
preprocess-once path (no augmentation), which the training benchmark compares against.

A file that fails to decode is reported and left out of its batch; a step left with fewer than two
pairs that could be read (nothing to contrast) stops the run with a TrainingError naming the files
and why they failed, before any model is written.

With ``train.eval_every = N`` rank 0 measures zero-shot top-1 on each modality's val manifest every
N steps and at the last (``Trainer.val_point``), in eval mode with the torch RNG restored afterwards,
so the weights end bit-identical to a run without it; the rows go to metrics.json's ``val_curve``
and into each checkpoint, so a resumed run keeps the rows before its resume step.

Under ``torchrun`` each rank streams its contiguous share of every step's global batch and the
loss sees the rows of all ranks (binder.train.step), so N ranks train the binding one process
trains with the same global batch. Rank 0 writes checkpoints, the model and the metrics, and
draws the progress bar.
"""
from __future__ import annotations

import itertools
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import torch
from tqdm import tqdm

from binder.checkpoint import load_weights
from binder.errors import AnybindError, AugmentationError, CheckpointError, ConfigError, TrainingError
from binder.heads import FusionHead
from binder.io import atomic_dir, atomic_write_json
from binder.model import BindingModel
from binder.train.amp import Precision
from binder.train.data import (
    PairRecord,
    PreparedSet,
    anchor_targets,
    prepare_inputs,
    read_pairs,
    target_keys,
    under_root,
)
from binder.train.distributed import Ranks
from binder.train.evaluate import evaluate_manifest, prepared_manifest
from binder.train.gate import choose_gate
from binder.train.loss import make_loss
from binder.train.optim import adamw, schedule
from binder.train.recipe import BindSpec, Recipe
from binder.train.state import load_train_state, save_train_state
from binder.train.step import StepBatch, StepRunner
from binder.train.stream import PairStream, StepSampler, StreamBatch, StreamSource, stream_loader
from binder.train.warm_start import parse_warm_start, warm_start


@dataclass
class BindData:
    """One modality's training data: its records, the index of each record's target, the targets,
    the augmentation drawn for it (None = off) and, on the preprocess-once path, its inputs."""

    spec: BindSpec
    records: list[PairRecord]
    ids: torch.Tensor
    targets: torch.Tensor
    augment: Any = None
    inputs: torch.Tensor | None = None


class Trainer:
    """Trains the heads and tokenizers (and any unfrozen trunk parts) of a recipe's modalities."""

    def __init__(self, recipe: Recipe, progress: bool = True):
        self.recipe, self.cfg = recipe, recipe.train
        _check_eval_every(recipe)
        self.ranks = Ranks.from_env(self.cfg.device)
        self.precision = Precision.resolve(self.cfg.precision, self.ranks.device)
        self.progress = progress and self.ranks.main
        torch.manual_seed(self.cfg.seed)
        self.model = BindingModel(recipe.bind)
        self.warm_starts = {s.name: warm_start(self.model, s.name, parse_warm_start(s.init, f"{recipe.path} {s.name}"))
                            for s in recipe.modalities if s.init}
        with self.ranks.main_first():  # rank 0 fills the target cache, the others then read it
            self.data = [self._load(spec) for spec in recipe.modalities]
        params = [p for p in self.model.parameters() if p.requires_grad]
        if not params:
            raise AnybindError("nothing to train: every parameter is frozen")
        self.losses = torch.nn.ModuleDict({d.spec.name: make_loss(self.cfg.loss, self.model.embed_dim,
                                                                  self.cfg.memory_size, self.cfg.soft_targets)
                                           for d in self.data})
        self._to_device()
        self.optimizer = adamw(self._param_groups(), self.cfg.lr)
        self.scheduler = schedule(self.optimizer, self.cfg.warmup_steps, self.cfg.steps)
        self.runner = StepRunner(self.model, self.losses, self.ranks, self.precision, self.cfg.accumulate,
                                 self.cfg.token_drop)
        self.step = 0
        self._batches: Iterator[StreamBatch] | None = None
        self._reported: set[tuple[int, int]] = set()
        self._failed: list[tuple[str, str]] = []  # (path, reason) of the files the current step could not read
        self.curve: list[dict[str, Any]] = []  # train.eval_every's rows: {"step": s, modality: val top-1}
        self._val_inputs: dict[Any, Any] = {}  # the val manifests, prepared once if they fit train.cache_mb

    # ------------------------------------------------------------------ setup
    def manifest(self, path: str) -> str:
        return under_root(self.cfg.root, path)

    def _load(self, spec: BindSpec) -> BindData:
        modality = self.model.modality(spec.name)
        try:
            augment = modality.augment_options(spec.augment)
        except ValueError as exc:
            raise AnybindError(f"{self.recipe.path} [[modality]] {spec.name}: {exc}") from None
        records, inputs = read_pairs(self.manifest(spec.train), self.cfg.root), None
        if augment is not None:
            augment = modality.augment_with_data(augment, [r.path for r in records], self.cfg.seed)
        if not self.cfg.stream:  # the preprocess-once path: every input decoded up front, no augmentation
            if augment is not None:
                raise AnybindError(f"{spec.name}: augmentation needs train.stream = true (set augment = false)")
            prepared = prepare_inputs(modality, records, self.cfg.workers, self.progress)
            _report_failures(prepared)
            if len(prepared.records) < 2:
                raise TrainingError(f"{spec.name}: {too_few(len(prepared.records), len(records), prepared.failures)}")
            records, inputs = prepared.records, prepared.inputs
        keys = target_keys(records, spec.target)
        targets, ids = anchor_targets(self.model.anchor, keys, spec.target, self.cfg.cache_dir,
                                      image_modality=self.model.modalities.get("image"))
        return BindData(spec, records, ids, targets, augment, inputs)

    def _to_device(self) -> None:
        device = self.ranks.device
        if device.type != "cpu":
            self.model.to(device)
            self.losses.to(device)
            for d in self.data:
                d.targets, d.ids = d.targets.to(device), d.ids.to(device)

    def _param_groups(self) -> list[dict[str, Any]]:
        """The model's and the losses' (SigLIP's bias) trainable parameters; no weight decay on norms,
        biases, embeddings, CLS/position tokens and logit scales. Parts a warm start copied train at
        its ``lr_scale`` times the learning rate (groups of their own)."""
        scaled = {part: ws["lr_scale"] for ws in self.warm_starts.values() for part in ws["parts"]}
        groups: dict[tuple[float, bool], list[torch.nn.Parameter]] = {}
        for name, p in itertools.chain(self.model.named_parameters(), self.losses.named_parameters(prefix="losses")):
            if p.requires_grad:
                no_wd = p.ndim < 2 or any(k in name for k in ("cls", "pos", "embed", "scale"))
                scale = next((v for part, v in scaled.items() if name.startswith(part)), 1.0)
                groups.setdefault((scale, no_wd), []).append(p)
        return [{"params": params, "lr": self.cfg.lr * scale, "weight_decay": 0.0 if no_wd else self.cfg.weight_decay}
                for (scale, no_wd), params in sorted(groups.items())]

    # ------------------------------------------------------------------ batches
    def batch_rows(self, step: int) -> tuple[int, torch.Tensor]:
        """The modality index and this rank's record rows of global ``step`` (a pure function of
        seed, step and rank): a contiguous share of the global batch, in rank order."""
        rows = self.batch_indices(step)[1]
        return step % len(self.data), torch.tensor_split(rows, self.ranks.world)[self.ranks.rank]

    def batch_indices(self, step: int) -> tuple[BindData, torch.Tensor]:
        """The modality and the input rows of global ``step`` (a pure function of seed and step)."""
        m = step % len(self.data)
        data, local = self.data[m], step // len(self.data)
        n, bs = len(data.records), min(self.cfg.batch_size, len(data.records))
        per_epoch = n // bs
        epoch, offset = divmod(local, per_epoch)
        gen = torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + m * 10_007 + epoch)
        perm = torch.randperm(n, generator=gen)
        return data, perm[offset * bs:(offset + 1) * bs]

    def step_inputs(self, step: int) -> tuple[BindData, torch.Tensor, torch.Tensor | None]:
        """(modality data, rows, preprocessed inputs) of ``step``; streamed unless train.stream is off."""
        self._failed = []
        if not self.cfg.stream:
            m, idx = self.batch_rows(step)
            data = self.data[m]
            assert data.inputs is not None
            return data, idx, data.inputs[idx]
        if self._batches is None:
            self.open_stream(step)
        assert self._batches is not None
        batch = next(self._batches)
        if batch.step != step:
            raise RuntimeError(f"data stream is at step {batch.step}, the trainer at {step}")
        if batch.fault is not None:  # a fault of the augmentation, not of a file: nothing sound to train on
            raise AugmentationError(batch.fault.path, batch.fault.reason)
        data = self.data[batch.source]
        self._failed = [(data.records[row].path, reason) for row, reason in batch.failed]
        for row, reason in batch.failed:
            if (batch.source, row) not in self._reported:
                self._reported.add((batch.source, row))
                _report_skipped(data.records[row].path, reason)
        return data, batch.rows, batch.inputs

    def train_step(self, step: int) -> float:
        """One optimizer step on the global batch of ``step``; its loss.

        A batch left with fewer than two pairs that could be read (on all ranks together) has nothing
        to contrast: a TrainingError (every rank raises it) names the files and their reasons.
        """
        data, idx, inputs = self.step_inputs(step)
        self.optimizer.zero_grad(set_to_none=True)
        counts = self.ranks.counts(0 if inputs is None else len(idx))
        if sum(counts) < 2:
            wanted = min(self.cfg.batch_size, len(data.records))
            raise TrainingError(f"step {step + 1} ({data.spec.name}): {too_few(sum(counts), wanted, self._failed)}")
        device = self.ranks.device
        if inputs is not None:
            inputs = inputs.to(device, non_blocking=True)
        rows = self.ranks.gather_rows(idx.to(device), counts)
        ids = data.ids[rows]
        batch = StepBatch(data.spec.name, inputs, data.targets[ids], ids, counts, self.ranks.rank)
        loss = self.runner.run(batch, self.cfg.seed * 7919 + step)
        self.runner.step_optimizer(self.optimizer)
        self.scheduler.step()
        return loss

    def open_stream(self, start: int) -> None:
        """Start the data stream at step ``start`` (worker processes decode ahead of the model).

        The model then runs on ``train.threads`` torch threads, by default the cores the workers
        leave free (at least one): threads that outnumber free cores spin at every parallel region
        and were measured several times slower than one thread.
        """
        cores = (os.cpu_count() or 1) // self.ranks.local_world  # ranks of one node share its cores
        torch.set_num_threads(self.cfg.threads or max(1, cores - self.cfg.workers))
        sources = [StreamSource(self.model.modality(d.spec.name), d.records, d.augment) for d in self.data]
        dataset = PairStream(sources, self.cfg.seed, int(self.cfg.cache_mb * 2**20))
        sampler = StepSampler(self.batch_rows, start, self.cfg.steps)
        pin = self.ranks.device.type == "cuda"
        self._batches = iter(stream_loader(dataset, sampler, self.cfg.workers, pin_memory=pin))

    # ------------------------------------------------------------------ run
    def run(self, resume: bool = False, stop_after: int | None = None) -> dict[str, Any]:
        """Train to ``cfg.steps`` (or stop after ``stop_after`` steps, as a kill would), then evaluate.

        Under torchrun only rank 0 evaluates and writes the model; the other ranks return ``{}``.
        """
        out = Path(self.cfg.out)
        if resume:
            self.load_checkpoint(out / "checkpoint")
            if self.ranks.main:  # said even without a progress bar (--quiet): the run did not start at 0
                tqdm.write(f"anybind: resumed from step {self.step} of {self.cfg.steps} ({out / 'checkpoint'})",
                           file=sys.stderr)
        self.model.train()
        threads = torch.get_num_threads()
        try:
            stopped = self._loop(out, stop_after)
        finally:
            self._batches = None  # ends the loader's worker processes
            torch.set_num_threads(threads)
        if stopped:
            return {"stopped_at": self.step}
        if not self.ranks.main:
            return {}
        self.model.eval()
        self._save_model(out / "model")  # kept whatever happens to the measuring after it
        try:
            metrics = self._measure(out / "model")
        finally:
            self.model.place("cpu")  # the saved model, and the one the caller keeps, live on the CPU
        atomic_write_json(out / "metrics.json", metrics)
        return metrics

    def _save_model(self, folder: Path) -> None:
        """Save the model from the CPU, then put it back where training ran."""
        self.model.place("cpu")
        self.model.save(folder)
        self.model.place(self.ranks.device)  # measuring runs where training ran: on a GPU, there

    def _measure(self, folder: Path) -> dict[str, Any]:
        """Set fusion gates on val (saving the model again when one is set), then evaluate; a failure
        here says that the trained model is already saved and what it holds."""
        gates: dict[str, Any] = {}
        try:
            gates = self.choose_gates()
            if gates:
                self._save_model(folder)
            metrics = self.evaluate()
        except AnybindError as err:
            held = ", with its learned fusion gate," if not gates and self._gated() else ""
            raise TrainingError(f"training finished and the model is saved in {folder}{held} but measuring it "
                                f"failed, so metrics.json is not written ({err}); once mended, --resume measures "
                                f"it again without retraining") from err
        for name, gate in gates.items():
            metrics.setdefault(name, {})["fusion_gate"] = gate
        if self.curve:  # a top-level key no modality is named (_check_eval_every); not a dict, so summaries skip it
            metrics[VAL_CURVE] = self.curve
        return metrics

    def _gated(self) -> bool:
        """Whether choose_gates sets a gate for some modality."""
        return any(self._gate_val(spec) is not None for spec in self.recipe.modalities)

    def _gate_val(self, spec: BindSpec) -> str | None:
        """The val manifest ``spec``'s fusion gate is set on after training; None where none is."""
        gated = self.cfg.fusion_gate == "val" and self.model.modality(spec.name).streams()
        return spec.val if gated else None

    def _loop(self, out: Path, stop_after: int | None) -> bool:
        """Steps until the end (False) or until ``stop_after`` (True), checkpointing on the way."""
        bar = tqdm(total=self.cfg.steps, initial=self.step, disable=not self.progress, desc="bind",
                   unit="step", dynamic_ncols=True)
        ema, t0, seen = None, time.perf_counter(), 0
        global_batch = [min(self.cfg.batch_size, len(d.records)) for d in self.data]
        with bar:
            while self.step < self.cfg.steps:
                if stop_after is not None and self.step >= stop_after:
                    return True
                loss = self.train_step(self.step)
                self.step += 1
                seen += global_batch[(self.step - 1) % len(self.data)]
                ema = loss if ema is None else 0.9 * ema + 0.1 * loss
                bar.set_postfix(loss=f"{ema if ema is not None else float('nan'):.3f}",
                                items_s=f"{seen / (time.perf_counter() - t0):.0f}")
                bar.update(1)
                if self._evaluates(self.step):
                    self.val_point()
                if self.step % self.cfg.checkpoint_every == 0 or self.step == self.cfg.steps:
                    self.save_checkpoint(out / "checkpoint")
        return False

    # ------------------------------------------------------------------ validation curve
    def _evaluates(self, step: int) -> bool:
        every = self.cfg.eval_every
        return bool(every) and self.ranks.main and (step % every == 0 or step == self.cfg.steps)

    def val_point(self) -> dict[str, Any]:
        """Zero-shot top-1 of each modality on its val manifest now, appended to ``self.curve``.

        No image gallery (kept cheap). Eval mode and no autograd while it runs, then train mode again
        (frozen parts stay in eval); the torch RNG states are restored, so training continues exactly
        as it would have without this measurement.
        """
        row: dict[str, Any] = {"step": self.step}
        device, placed = self.ranks.device, self.model.input_device
        cpu_rng = torch.random.get_rng_state()
        cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
        self.model.eval()
        try:
            with torch.no_grad():
                self.model.place(device)  # inputs go where the model is (already there: nothing moves)
                for spec in self.recipe.modalities:
                    if spec.val is not None:
                        row[spec.name] = self.val_top1(spec.val)
        finally:
            self.model.input_device = placed
            self.model.train()
            torch.random.set_rng_state(cpu_rng)
            if cuda_rng is not None:
                torch.cuda.set_rng_state_all(cuda_rng)
        self.curve.append(row)
        if self.progress:
            shown = "  ".join(f"{k} {v:.3f}" for k, v in row.items() if k != "step")
            tqdm.write(f"anybind: step {self.step}: val top-1 {shown}", file=sys.stderr)
        return row

    def val_top1(self, manifest: str, perturb: str | None = None) -> float:
        """Val top-1 of one manifest, with named perturbations (``anybind eval --perturb``) applied when
        given. Its prepared inputs are kept for the next measurement while all kept val inputs fit
        ``train.cache_mb``; past that they are dropped and prepared each time."""
        ev = self.recipe.eval
        result = evaluate_manifest(self.model, self.manifest(manifest), self.cfg.root, ev.classes, ev.templates,
                                   gallery=None, workers=self.cfg.workers, names=ev.names, perturb=perturb,
                                   inputs=self._val_inputs)
        if sum(p.inputs.nbytes for _, p in self._val_inputs.values()) > self.cfg.cache_mb * 2**20:
            self._val_inputs.clear()
        return float(result["zero_shot_top1"])

    def choose_gates(self) -> dict[str, Any]:
        """With ``train.fusion_gate = "val"``, each multi-stream modality's gate set on its val pairs
        (``binder.train.gate``); what each choice compared, by modality."""
        chosen: dict[str, Any] = {}
        for spec in self.recipe.modalities:
            val = self._gate_val(spec)
            if val is None:
                continue
            _, prepared = prepared_manifest(self.model, self.manifest(val), self.cfg.root, self.cfg.workers,
                                            self._val_inputs)
            targets, ids = anchor_targets(self.model.anchor, target_keys(prepared.records, spec.target), spec.target,
                                          self.cfg.cache_dir, image_modality=self.model.modalities.get("image"))
            with torch.no_grad():
                chosen[spec.name] = choose_gate(self.model, spec.name, prepared.inputs, targets, ids)
        return chosen

    # ------------------------------------------------------------------ checkpoints
    def stateful_parts(self) -> dict[str, Any]:
        """Everything besides the model weights that a resumed run needs, by name."""
        parts: dict[str, Any] = {"optimizer": self.optimizer, "scheduler": self.scheduler, "losses": self.losses}
        if self.runner.scaler.is_enabled():
            parts["grad_scaler"] = self.runner.scaler
        return parts

    def save_checkpoint(self, folder: Path) -> None:
        """Weights + optimizer + scheduler + loss queues + step; built beside, then swapped in whole.

        Rank 0 writes it (every rank holds the same state); the others wait until it is whole."""
        if self.ranks.main:
            with atomic_dir(folder) as tmp:
                self.model.save(tmp)
                save_train_state(tmp, self.stateful_parts(), {"step": self.step, "recipe": self.recipe.path,
                                                              "world_size": self.ranks.world,
                                                              VAL_CURVE: self.curve})
        self.ranks.barrier()

    def load_checkpoint(self, folder: Path) -> None:
        """Every rank reads the same checkpoint (under torchrun, ``train.out`` must be a folder all
        nodes see); ranks that cannot see it, or resume at different steps, stop the run on every rank."""
        missing = [r for r, have in enumerate(self.ranks.counts(int(folder.is_dir()))) if not have]
        if missing:
            where = f" on rank(s) {missing} (train.out must be shared by all nodes)" if self.ranks.distributed else ""
            raise CheckpointError(f"{folder}: no checkpoint to resume from{where}")
        load_weights(folder, self.model)
        info = load_train_state(folder, self.stateful_parts())
        self.step = int(info["step"])
        self.curve = [row for row in info.get(VAL_CURVE, []) if row["step"] <= self.step]
        low, high = self.ranks.min_max(self.step)
        if low != high:
            raise TrainingError(f"{folder}: ranks resumed at steps {low} and {high}; "
                                f"they must all read the same checkpoint")

    # ------------------------------------------------------------------ evaluation
    def evaluate(self) -> dict[str, Any]:
        """Per modality on its test (else val) manifest: zero-shot top-1, chance, R@k to the image gallery;
        the same on its ``hard`` manifest (held-out conditions) under the key "hard". A multi-stream
        modality also gets each stream measured alone ("streams") and its fusion weights; a warm
        start is recorded under "init"."""
        results: dict[str, Any] = {}
        for spec in self.recipe.modalities:
            inputs: dict[Any, Any] = {}  # this modality's manifests, decoded once however often measured
            splits = self._evaluate_splits(spec, inputs)
            if not splits:
                continue
            out = results[spec.name] = {**splits, "target": spec.target}
            streams = self.model.modality(spec.name).streams()
            if streams:
                head = cast(FusionHead, self.model.heads[spec.name])
                out["fusion_weights"] = head.weights()
                out["streams"] = {}
                for stream in streams:
                    with self.model.single_stream(spec.name, stream):
                        out["streams"][stream] = _top1_only(self._evaluate_splits(spec, inputs))
            if spec.name in self.warm_starts:
                out["init"] = self.warm_starts[spec.name]
        return results

    def _evaluate_splits(self, spec: BindSpec, inputs: dict[Any, Any]) -> dict[str, Any]:
        """``spec``'s test (else val) figures, with its hard split's under "hard" (manifests decoded
        once into ``inputs``)."""
        out: dict[str, Any] = {}
        manifest = spec.test or spec.val
        if manifest is not None:
            out.update(self._evaluate_one(manifest, inputs))
        if spec.hard is not None:
            out["hard"] = self._evaluate_one(spec.hard, inputs)
        return out

    def _evaluate_one(self, manifest: str, inputs: dict[Any, Any]) -> dict[str, Any]:
        ev = self.recipe.eval
        gallery = self.manifest(ev.image_gallery) if ev.image_gallery else None
        return evaluate_manifest(self.model, self.manifest(manifest), self.cfg.root, ev.classes, ev.templates, gallery,
                                 workers=self.cfg.workers, names=ev.names, inputs=inputs)


VAL_CURVE = "val_curve"  # metrics.json's key (and the checkpoint info's) for train.eval_every's rows


def _check_eval_every(recipe: Recipe) -> None:
    """``train.eval_every`` needs something to measure: eval.classes and a [[modality]] with a val
    manifest; and no modality may be named like the curve's key."""
    if not recipe.train.eval_every:
        return
    if not recipe.eval.classes or not any(s.val for s in recipe.modalities):
        raise ConfigError(f"{recipe.path}: train.eval_every needs eval.classes and a [[modality]] with a val manifest")
    if any(s.name == VAL_CURVE for s in recipe.modalities):
        raise ConfigError(f"{recipe.path}: a modality named {VAL_CURVE!r} clashes with train.eval_every's metrics key")


def format_summary(metrics: dict[str, Any], recipe: Recipe | None = None) -> str:
    """The end of a run for a person: one row per modality and split (test, else val; hard) with
    zero-shot top-1, chance, R@1 and R@10 to the gallery and the items measured, rounded to 3
    places. ``metrics.json`` (and ``anybind train --format json``) keep the numbers whole."""
    splits = {s.name: "test" if s.test else "val" for s in recipe.modalities} if recipe is not None else {}
    rows: list[list[str]] = []
    galleries: list[str] = []
    for name, m in metrics.items():
        if not isinstance(m, dict):
            continue
        for split, r in ((splits.get(name, "test"), m), ("hard", m.get("hard"))):
            if not isinstance(r, dict) or "items" not in r:
                continue
            gallery = next((k for k in r if k.startswith("to_") and isinstance(r[k], dict)), None)
            recall = r[gallery] if gallery else {}
            if gallery and gallery not in galleries:
                galleries.append(gallery)
            items = f"{r['items']}" + (f" ({r['failed']} unreadable)" if r.get("failed") else "")
            rows.append([name, split, str(m.get("target", "-")), _num(r.get("zero_shot_top1")),
                         _num(r.get("chance_top1")), _num(recall.get("R@1")), _num(recall.get("R@10")), items])
    if not rows:
        return "nothing was evaluated (no [[modality]] has a test, val or hard manifest)"
    to = f" → {galleries[0].removeprefix('to_')}" if len(galleries) == 1 else ""
    header = ["modality", "split", "bound to", "zero-shot top-1", "chance", f"R@1{to}", f"R@10{to}", "items"]
    table = [header, *rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) if i < 3 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))
             .rstrip() for row in table]
    return "\n".join(lines + [_gate_line(n, m["fusion_gate"]) for n, m in metrics.items()
                              if isinstance(m, dict) and isinstance(m.get("fusion_gate"), dict)])


def _gate_line(name: str, gate: dict[str, Any]) -> str:
    """Where a multi-stream modality's gate was set on the val pairs, beside the gate training left."""
    def weights(w: dict[str, float]) -> str:
        return ", ".join(f"{s} {v:.2f}" for s, v in w.items())
    return (f"{name} fusion gate, set on {gate.get('items', '?')} val pairs: {weights(gate['chosen'])} "
            f"(as trained: {weights(gate['learned'])})")


def _top1_only(result: dict[str, Any]) -> dict[str, Any]:
    """One stream's figures: zero-shot top-1 and R@k on test (or val) and on the hard split."""
    keep = {k: v for k, v in result.items() if k == "zero_shot_top1" or k.startswith("to_")}
    if isinstance(result.get("hard"), dict):
        keep["hard"] = _top1_only(result["hard"])
    return keep


def _num(x: Any) -> str:
    return f"{x:.3f}" if isinstance(x, (int, float)) and not isinstance(x, bool) else "-"


def too_few(usable: int, wanted: int, failed: list[tuple[str, str]], shown: int = 3) -> str:
    """Why a batch (or a whole manifest) cannot train: how many pairs could be read, and the first
    few files that could not, with their reasons."""
    named = "; ".join(f"{path}: {reason}" for path, reason in failed[:shown])
    more = f"; and {len(failed) - shown} more" if len(failed) > shown else ""
    what = "no pair" if usable == 0 else f"only {usable} of {wanted} pairs"
    return (f"{what} could be read, and InfoNCE needs at least 2 to contrast"
            + (f" (unreadable: {named}{more})" if named else "") + "; training stops, no model is saved")


def _report_failures(prepared: PreparedSet) -> None:
    for path, reason in prepared.failures:
        _report_skipped(path, reason)


def _report_skipped(path: str, reason: str) -> None:
    tqdm.write(f"anybind: skipped {path}: {reason}", file=sys.stderr)  # stdout carries the metrics JSON
