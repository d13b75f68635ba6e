"""How hits of several modalities are ranked together: the modality gap, measured and removed.

In a contrastive space a query's cosine to items of its own modality sits far above its cosine to
items of any other (0.8-0.95 against 0.3-0.5 in the demo), so a raw ranking over a mixed index
returns one modality only. Each mix ranks the best ``k`` of every modality by a score that
compares across modalities:

- ``calibrated``: how many standard deviations the cosine lies above what this query scores
  against that modality on average: ``(s - q·μ_m) / sqrt(qᵀ Σ_m q)``, with the modality's mean
  ``μ_m`` and covariance ``Σ_m`` estimated once per index generation from its own rows (shrunk toward the whole
  index's by a few pseudo-rows, so a modality of one row still has a spread): a z-score per query
  and modality.
- ``centered``: the cosine less the query's average over that modality, ``s - q·μ_m`` (the mean
  gap only).
- ``interleave``: rank 1 of every modality, then rank 2, ... (modalities ordered by their best hit).
- ``raw``: plain cosine, as a single-modality search ranks.

Hits keep their cosine in ``score``; ``rank_score`` says what the mix ranked by.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from binder.errors import QueryError
from binder.index.choices import MIXES

STATS_SAMPLE = 4096  # rows per modality the mean and covariance are estimated from
MIN_SPREAD = 1e-4  # a modality whose rows barely differ is not blown up into huge z-scores
PRIOR_ROWS = 4  # pseudo-rows of the whole index's statistics added to each modality's own


@dataclass(frozen=True)
class ModalityStats:
    """The mean and covariance of one modality's unit vectors: what any query expects to score there."""

    mean: np.ndarray  # (D,)
    cov: np.ndarray  # (D, D)
    rows: int

    def expected(self, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(mean, spread) of each query's cosine over this modality's rows: q·μ and sqrt(qᵀΣq)."""
        mean = queries @ self.mean
        var = np.einsum("qd,de,qe->q", queries, self.cov, queries)
        return mean, np.sqrt(np.maximum(var, 0.0)) + MIN_SPREAD


def modality_stats(vectors: np.ndarray, modality_of: np.ndarray,
                   sample: int = STATS_SAMPLE) -> dict[str, ModalityStats]:
    """Per-modality mean and covariance, each from at most ``sample`` evenly spaced rows, shrunk toward
    the statistics of all rows by ``PRIOR_ROWS`` pseudo-rows: a modality of one or a few rows (whose
    own spread is zero or noise) is judged mostly by the index's spread as a whole."""
    pooled = _mean_cov(vectors[_spaced(np.arange(len(vectors)), sample)])
    out = {}
    for name in sorted(set(modality_of.tolist())):
        rows = _spaced(np.flatnonzero(modality_of == name), sample)
        mean, cov = _mean_cov(vectors[rows])
        w = len(rows) / (len(rows) + PRIOR_ROWS)
        out[str(name)] = ModalityStats(w * mean + (1 - w) * pooled[0], w * cov + (1 - w) * pooled[1], len(rows))
    return out


def _spaced(rows: np.ndarray, sample: int) -> np.ndarray:
    return rows[np.linspace(0, len(rows) - 1, sample).astype(np.int64)] if len(rows) > sample else rows


def _mean_cov(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = x.astype(np.float64)
    mean = x.mean(axis=0)
    centred = x - mean
    return mean, centred.T @ centred / max(len(x), 1)


def check_mix(mix: str) -> str:
    """``mix`` when it is one of ``MIXES``; a QueryError listing them otherwise."""
    if mix not in MIXES:
        raise QueryError(f"unknown mix {mix!r}; choose one of: {', '.join(MIXES)}")
    return mix


def rank_scores(mix: str, scores: np.ndarray, query: np.ndarray, stats: ModalityStats) -> np.ndarray:
    """What ``mix`` ranks one query's hits of one modality by (scores are their cosines)."""
    if mix == "raw":
        return scores
    mean, spread = stats.expected(query[None].astype(np.float64))
    if mix == "centered":
        return scores - mean[0]
    return (scores - mean[0]) / spread[0]


def interleave_order(per_modality: Sequence[Sequence[float]]) -> list[tuple[int, int]]:
    """(modality position, rank) pairs: rank 0 of every list, then rank 1, ...; lists ordered by their best."""
    order = sorted(range(len(per_modality)), key=lambda m: -per_modality[m][0] if per_modality[m] else 0.0)
    longest = max((len(s) for s in per_modality), default=0)
    return [(m, r) for r in range(longest) for m in order if r < len(per_modality[m])]
