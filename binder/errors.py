"""Typed errors: every failure a user can cause has its own class and names what went wrong."""
from __future__ import annotations

import os


class AnybindError(Exception):
    """Base class of every error anybind raises on purpose."""


class ModalityError(AnybindError):
    """A file could not be turned into a tensor for its modality (bad, empty, truncated, wrong shape)."""

    def __init__(self, path: str | os.PathLike | None, reason: str):
        self.path = None if path is None else os.fspath(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}" if self.path else reason)


class AnchorError(AnybindError):
    """The frozen CLIP anchor could not be built or its weights could not be found."""


class CheckpointError(AnybindError):
    """A checkpoint is missing, malformed, or not in the safe (safetensors + JSON) format."""


class RegistryError(AnybindError):
    """Unknown or duplicate modality name, or a plugin that failed to register."""


class IndexStoreError(AnybindError):
    """An index folder is missing, malformed, locked by another writer, or built with another model."""


class QueryError(AnybindError):
    """A search query expression is malformed, or one of its terms cannot be read or embedded."""


class IndexDamageError(IndexStoreError):
    """A file of an index is not what its manifest says it is (truncated, not finite, reordered, ...).

    ``path`` is the damaged file (``manifest.json`` for damage in the manifest itself) and
    ``damage`` says what is wrong with it, so that a reader never takes a damaged index as whole.
    """

    def __init__(self, path: str | os.PathLike, damage: str):
        self.path = os.fspath(path)
        self.damage = damage
        super().__init__(f"{self.path}: {damage}")


class IndexFileMissingError(IndexDamageError):
    """A shard file the manifest lists is not there (deleted, or dropped by a writer since)."""

    def __init__(self, path: str | os.PathLike):
        super().__init__(path, "missing")


class TrainingError(AnybindError):
    """A training run cannot go on: its loss stopped being finite, a step has too few pairs that could be
    read to contrast, or its devices or ranks do not fit it."""


class AugmentationError(TrainingError):
    """Training augmentation failed on a file that reads and preprocesses without it: a fault of the
    augmentation (or its options), not of the file, so the run stops instead of dropping the file."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path, self.reason = os.fspath(path), reason
        super().__init__(f"{self.path}: training augmentation failed on a file that reads without it: {reason}. "
                         "Turn the modality's augmentation off (augment = false) to train on, and report this file")


class ConfigError(AnybindError, ValueError):
    """A config or recipe value is malformed: an unknown or repeated key, a value of the wrong type,
    NaN or infinity, a number out of range. The message names the key (and the expected type)."""
