"""Speech-unit codebooks: k-means centroids of speech features, their safetensors files, and the trunk
blocks of a later iteration's feature extractor.

A first-iteration codebook clusters MFCC+Δ+ΔΔ frames; a later one (HuBERT's second) clusters the
hidden features of a trained ``speech_units`` binding and carries that extractor (its description
in the file's metadata, its frozen weights as ``source.*`` tensors). ``Codebook.fit`` runs the
k-means on feature rows; fitting from speech files (which needs the modality to read them) is
``binder.train.units``. The modality itself (``modalities.speech_units``) loads a codebook file
when it builds its tokenizer, and quantizes with ``nearest_units``.
"""
from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from binder.errors import CheckpointError, TrainingError
from binder.io import atomic_path

CODEBOOK_KEYS = ("centroids", "mean", "std")
EXTRA_PREFIX = "source."  # a later iteration's feature extractor, inside its codebook file
CODEBOOK_FORMAT = "anybind.speech_units.codebook"


def _valid_rows(features: np.ndarray) -> np.ndarray:
    return ~np.isnan(features).any(axis=-1)


def nearest_units(features: torch.Tensor, mean: torch.Tensor, std: torch.Tensor,
                  centroids: torch.Tensor) -> torch.Tensor:
    """Index of the nearest centroid for each row of ``(..., D)`` features, after standardization.

    NaN rows get an arbitrary id; callers mask them. Shared by Codebook.assign and the tokenizer
    so that both give the same units.
    """
    centroids = centroids.float()
    z = (torch.nan_to_num(features.float()) - mean.float()) / std.float()
    dist = (z * z).sum(-1, keepdim=True) - 2 * z @ centroids.T + (centroids * centroids).sum(-1)
    return dist.argmin(dim=-1)


@dataclasses.dataclass(eq=False)
class Codebook:
    """k-means centroids in standardized feature space plus the feature mean/std used to standardize.

    A first-iteration codebook clusters MFCC frames. A later iteration (HuBERT's second) clusters
    the hidden features of a trained speech binding: ``info`` then describes that feature
    extractor (the previous tokenizer and the first trunk layers, see ``HiddenUnits``) and
    ``extras`` holds its frozen weights, so the file alone turns speech into units.
    """

    centroids: np.ndarray  # (k, D) float32
    mean: np.ndarray  # (D,) float32
    std: np.ndarray  # (D,) float32
    info: dict[str, Any] = dataclasses.field(default_factory=dict)
    extras: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        self.centroids = np.ascontiguousarray(self.centroids, dtype=np.float32)
        self.mean = np.ascontiguousarray(self.mean, dtype=np.float32).reshape(-1)
        self.std = np.ascontiguousarray(self.std, dtype=np.float32).reshape(-1)
        k_dim = self.centroids.shape
        if len(k_dim) != 2 or self.mean.shape != (k_dim[1],) or self.std.shape != (k_dim[1],):
            raise CheckpointError(f"codebook shapes disagree: centroids {k_dim}, "
                             f"mean {self.mean.shape}, std {self.std.shape}")

    @property
    def k(self) -> int:
        return self.centroids.shape[0]

    @property
    def iteration(self) -> int:
        """1 for MFCC units; n + 1 for units of the hidden features of an iteration-n binding."""
        return int(self.info.get("iteration", 1))

    @classmethod
    def fit(cls, features: Sequence[np.ndarray] | np.ndarray, k: int, seed: int = 0) -> Codebook:
        """Fit k centroids with scikit-learn's MiniBatchKMeans on standardized frames (NaN rows ignored)."""
        from sklearn.cluster import MiniBatchKMeans

        rows = _stack_rows(features)
        if rows.shape[0] < k:
            raise TrainingError(f"need at least k={k} feature frames to fit a codebook, got {rows.shape[0]}")
        mean = rows.mean(axis=0)
        std = np.maximum(rows.std(axis=0), 1e-6)
        km = MiniBatchKMeans(n_clusters=k, random_state=seed, n_init=3, batch_size=1024)
        km.fit((rows - mean) / std)
        return cls(km.cluster_centers_, mean, std)

    def assign(self, features: np.ndarray) -> np.ndarray:
        """Unit id of each row of (T, D) features; NaN (padding) rows get -1."""
        feats = np.asarray(features, dtype=np.float32)
        ids = nearest_units(torch.from_numpy(feats), torch.from_numpy(self.mean), torch.from_numpy(self.std),
                            torch.from_numpy(self.centroids)).numpy()
        return np.where(_valid_rows(feats), ids, -1)

    def save(self, path: str | os.PathLike) -> None:
        """Write as safetensors, atomically (binder.io)."""
        from safetensors.numpy import save_file

        from binder.checkpoint import canonicalize_safetensors

        tensors = {"centroids": self.centroids, "mean": self.mean, "std": self.std}
        tensors.update({f"{EXTRA_PREFIX}{k}": np.ascontiguousarray(v) for k, v in self.extras.items()})
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp), metadata={"format": CODEBOOK_FORMAT,
                                                   "info": json.dumps(self.info, sort_keys=True)})
            canonicalize_safetensors(tmp)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Codebook:
        """Read a codebook saved by ``save``; anything that is not safetensors (e.g. a pickle) is refused,
        and so are non-finite values and a later iteration without its extractor's description."""
        from safetensors import safe_open

        where = os.fspath(path)
        if not Path(path).is_file():
            raise CheckpointError(f"{where}: codebook file not found")
        try:
            with safe_open(where, framework="numpy") as f:
                data = {key: f.get_tensor(key) for key in f.keys()}
                info = json.loads((f.metadata() or {}).get("info", "{}"))
        except Exception as exc:  # safetensors raises SafetensorError / OSError on anything else
            raise CheckpointError(f"{where}: not a safetensors codebook (pickles are refused): {exc}") from None
        missing = [key for key in CODEBOOK_KEYS if key not in data]
        if missing:
            raise CheckpointError(f"{where}: codebook lacks tensors {missing}")
        _check_codebook_contents(where, data, info)
        extras = {k[len(EXTRA_PREFIX):]: v for k, v in data.items() if k.startswith(EXTRA_PREFIX)}
        try:
            return cls(data["centroids"], data["mean"], data["std"], info, extras)
        except (ValueError, CheckpointError) as exc:
            raise CheckpointError(f"{where}: {exc}") from None


def _check_codebook_contents(where: str, data: dict[str, np.ndarray], info: Any) -> None:
    """Finite values, and for a later iteration the description its extractor is built from."""
    from binder.checkpoint import check_config_sizes

    for key, value in data.items():
        if np.issubdtype(value.dtype, np.floating) and not np.isfinite(value).all():
            raise CheckpointError(f"{where}: tensor {key} holds NaN or infinite values")
    if not isinstance(info, dict) or not isinstance(info.get("iteration", 1), int):
        raise CheckpointError(f"{where}: the codebook's info metadata is not a JSON object with an integer iteration")
    check_config_sizes(info, where)  # the extractor it describes is built from these sizes
    if info.get("iteration", 1) > 1:
        lacking = [k for k in ("layer", "trunk", "tokenizer") if k not in info]
        if lacking or not any(k.startswith(EXTRA_PREFIX) for k in data):
            raise CheckpointError(f"{where}: a codebook of iteration {info['iteration']} lacks its feature "
                                  f"extractor ({', '.join(lacking) or 'weights'})")


def _stack_rows(features: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
    """All non-NaN feature rows of one (N, D) array or of a list of (T_i, D) arrays, as float64."""
    arrays = [features] if isinstance(features, np.ndarray) else list(features)
    rows = np.concatenate([np.asarray(a, dtype=np.float64).reshape(-1, np.shape(a)[-1]) for a in arrays])
    return rows[_valid_rows(rows)]


def trunk_layers(arch: dict[str, Any]) -> nn.Module:
    """A standalone trunk of ``arch`` (the first blocks of the binding the codebook was fitted on)."""
    from open_clip.transformer import QuickGELU

    from binder.config import TrunkConfig
    from binder.trunk import standalone_trunk

    acts: dict[str, type[nn.Module]] = {"gelu": nn.GELU, "quick_gelu": QuickGELU}
    if arch["act"] not in acts:
        raise CheckpointError(f"unknown activation {arch['act']!r} in the codebook's trunk description")
    cfg = TrunkConfig(kind="standalone", width=arch["width"], layers=arch["layers"], heads=arch["heads"],
                      mlp_ratio=arch["mlp_ratio"], norm_eps=arch["norm_eps"], pre_norm=arch["pre_norm"])
    return standalone_trunk(cfg, acts[arch["act"]])
