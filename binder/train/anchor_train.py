"""Train a small CLIP-format anchor (image ↔ caption) from a manifest, then freeze and save it.

This is how the offline world gets an anchor without any download: a tiny open_clip
architecture is trained contrastively on (image, caption) pairs and written as an open_clip
``local-dir:`` folder, loadable by anybind and by open_clip itself.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import open_clip
import torch
import torch.nn.functional as F
from tqdm import tqdm

from binder.anchor import Anchor, quiet_root_logger, save_anchor_dir
from binder.config import AnchorConfig, check_fields
from binder.embed.classify import class_embeddings
from binder.errors import AnybindError, ConfigError
from binder.train.data import prepare_inputs, read_pairs, under_root
from binder.train.evaluate import label_indices, zero_shot_accuracy
from binder.train.loss import BindingLoss
from binder.train.optim import adamw, schedule
from binder.train.recipe import EvalSpec, build_section, read_recipe_toml
from modalities.image import ImageModality


@dataclass(frozen=True)
class AnchorTrainConfig:
    model: str = "anybind-digits"
    train: str = ""
    test: str | None = None
    root: str | None = None
    out: str = "out/anchor"
    epochs: int = 40
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 0.1
    warmup_steps: int = 30
    seed: int = 0
    augment: bool = True

    def __post_init__(self) -> None:
        check_fields(self)
        if self.epochs < 1 or self.batch_size < 2:
            raise ConfigError("train.epochs must be >= 1 and train.batch_size >= 2 (the loss needs negatives)")
        if self.lr <= 0 or self.weight_decay < 0 or self.warmup_steps < 0:
            raise ConfigError("train.lr must be > 0, train.weight_decay and train.warmup_steps >= 0")


def load_anchor_recipe(path: str | Path, overrides: dict[str, Any] | None = None) -> tuple[AnchorTrainConfig, EvalSpec]:
    data = read_recipe_toml(path, overrides, sections=("train", "eval"))
    ev = {k: tuple(v) if isinstance(v, list) else v for k, v in data.get("eval", {}).items()}
    return (build_section(AnchorTrainConfig, data.get("train", {}), f"{path} [train]"),
            build_section(EvalSpec, ev, f"{path} [eval]"))


def train_anchor(cfg: AnchorTrainConfig, ev: EvalSpec, progress: bool = True) -> dict[str, Any]:
    """Train, evaluate zero-shot image → text on ``cfg.test``, save to ``cfg.out``; return metrics."""
    torch.manual_seed(cfg.seed)
    with quiet_root_logger():  # "no pretrained weights" is the point here
        clip = open_clip.create_model(cfg.model)
    anchor_cfg = AnchorConfig(model=cfg.model)
    tokenizer = open_clip.get_tokenizer(cfg.model)
    image = ImageModality()
    image.use_preprocess_cfg(open_clip.get_model_preprocess_cfg(clip))
    records = read_pairs(under_root(cfg.root, cfg.train), cfg.root)
    images = prepare_inputs(image, records, progress=progress).inputs
    texts = [r.text for r in records]
    if any(t is None for t in texts):
        raise AnybindError(f"{cfg.train}: every record needs a caption in 'text' to train an anchor")
    _fit(clip, tokenizer, images, cast("list[str]", texts), cfg, progress)  # no None: checked above
    anchor = Anchor(clip, tokenizer, anchor_cfg)
    metrics: dict[str, float] = {"train_pairs": len(records)}
    if cfg.test and ev.classes:
        metrics.update(anchor_zero_shot(anchor, cfg.test, cfg.root, ev))
    save_anchor_dir(anchor, cfg.out)
    return metrics


def anchor_zero_shot(anchor: Anchor, manifest: str, root: str | None, ev: EvalSpec) -> dict[str, Any]:
    """The anchor's zero-shot image → text top-1 on an image manifest (its ``zero_shot_top1`` and
    ``test_items``): what every emergent figure read through this anchor is bounded by."""
    test = read_pairs(under_root(root, manifest), root)
    image = ImageModality()
    image.use_preprocess_cfg(anchor.preprocess_cfg)
    x = prepare_inputs(image, test, progress=False).inputs
    with torch.no_grad():
        emb = torch.cat([anchor.encode_image(x[i:i + 256]) for i in range(0, len(x), 256)])
    labels = label_indices([r.label for r in test], ev.classes)
    classes = class_embeddings(anchor, ev.prompt_names, ev.templates)
    return {"zero_shot_top1": zero_shot_accuracy(emb, labels, classes), "test_items": len(test)}


def random_affine(x: torch.Tensor, gen: torch.Generator, degrees: float = 10.0, translate: float = 0.08,
                  scale: tuple[float, float] = (0.9, 1.1)) -> torch.Tensor:
    """A different small rotation/scale/shift for every image of the batch, in one grid_sample."""
    n = x.shape[0]
    angle = (torch.rand(n, generator=gen) * 2 - 1) * math.radians(degrees)
    s = scale[0] + torch.rand(n, generator=gen) * (scale[1] - scale[0])
    shift = (torch.rand(n, 2, generator=gen) * 2 - 1) * translate * 2
    cos, sin = torch.cos(angle) / s, torch.sin(angle) / s
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, padding_mode="border", align_corners=False)


def _fit(clip, tokenizer, images: torch.Tensor, texts: list[str], cfg: AnchorTrainConfig, progress: bool) -> None:
    unique = sorted(set(texts))
    text_ids = torch.tensor([unique.index(t) for t in texts])
    tokens = tokenizer(unique)
    n, bs = len(images), min(cfg.batch_size, len(images))
    steps = cfg.epochs * (n // bs)
    opt = adamw(clip.parameters(), cfg.lr, cfg.weight_decay)
    sched = schedule(opt, cfg.warmup_steps, steps)
    loss_fn = BindingLoss(0, frozen_targets=False)
    clip.train()
    bar = tqdm(total=steps, disable=not progress, desc="anchor", unit="step", dynamic_ncols=True)
    gen = torch.Generator().manual_seed(cfg.seed)
    for _ in range(cfg.epochs):
        perm = torch.randperm(n, generator=gen)
        for b in range(n // bs):
            idx = perm[b * bs:(b + 1) * bs]
            x = random_affine(images[idx], gen) if cfg.augment else images[idx]
            ids = text_ids[idx]
            img = F.normalize(clip.encode_image(x), dim=-1)
            present, where = ids.unique(return_inverse=True)  # each distinct caption encoded once
            txt = F.normalize(clip.encode_text(tokens[present]), dim=-1)[where]
            loss = loss_fn(img, txt, ids, clip.logit_scale.exp().clamp(max=100))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            bar.set_postfix(loss=f"{loss.item():.3f}")
            bar.update(1)
    bar.close()
    clip.eval()
