"""The Modality interface every built-in and plugin modality implements.

A modality knows how to read its files (``load``), turn what it read into one fixed-shape
tensor under an explicit length policy (``preprocess``), and build the tokenizer that maps a
batch of those tensors to a token sequence of the trunk's width (``build_tokenizer``).
"""
from __future__ import annotations

import dataclasses
import os
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import torch
from torch import nn

from binder.errors import ModalityError


@dataclasses.dataclass(frozen=True)
class NoOptions:
    """Options of a modality that has none."""


class Modality(ABC):
    """Base class: subclass it, set ``name``/``extensions``/``Options``, register it.

    ``tower`` is ``"image"`` or ``"text"`` for modalities the frozen anchor encodes itself;
    those skip the shared trunk. ``has_clips`` means ``preprocess`` returns a leading clip axis
    (k clips of a long recording) whose embeddings are averaged.
    """

    name: ClassVar[str]
    extensions: ClassVar[tuple[str, ...]] = ()
    Options: ClassVar[type] = NoOptions
    tower: ClassVar[str | None] = None
    has_clips: ClassVar[bool] = False

    def __init__(self, **options: Any):
        try:
            self.options = self.Options(**options)
        except TypeError as exc:
            fields = [f.name for f in dataclasses.fields(self.Options)]
            raise ValueError(f"bad options for modality {self.name!r}: {exc}; valid options: {fields}") from None

    def configure(self, anchor: Any) -> None:
        """Take what preprocessing needs from the anchor (image size, tokenizer). Default: nothing."""

    @abstractmethod
    def load(self, path: str | os.PathLike) -> Any:
        """Decode one file; raise ModalityError(path, reason) on bad input."""

    @abstractmethod
    def preprocess(self, raw: Any) -> torch.Tensor:
        """Map a decoded file to a tensor of ``input_shape()`` by the modality's length policy."""

    @abstractmethod
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one preprocessed item (without the batch axis)."""

    def build_tokenizer(self, cfg: Any, width: int) -> nn.Module:
        """Module mapping a batch ``(B, *input_shape)`` to tokens ``(B, N, width)``.

        It may return ``(tokens, pad_mask)`` where ``pad_mask`` is ``(B, N)`` and True marks padding.
        """
        raise NotImplementedError(f"modality {self.name!r} is encoded by the anchor's {self.tower} tower")

    def collate(self, items: list[torch.Tensor]) -> torch.Tensor:
        """Stack preprocessed items into a batch."""
        return torch.stack(items)

    def prepare(self, path: str | os.PathLike) -> torch.Tensor:
        """load + preprocess with every failure turned into a ModalityError that names the file."""
        try:
            tensor = self.preprocess(self.load(path))
        except ModalityError as exc:
            if exc.path is None:
                raise ModalityError(path, exc.reason) from exc
            raise
        except (MemoryError, KeyboardInterrupt):
            raise
        except Exception as exc:  # decoder libraries raise anything; the user needs the file name
            raise ModalityError(path, f"cannot read as {self.name}: {type(exc).__name__}: {exc}") from exc
        if tuple(tensor.shape) != self.input_shape():
            raise ModalityError(path, f"preprocessed to shape {tuple(tensor.shape)}, expected {self.input_shape()}")
        return tensor

    def describe(self) -> str:
        """One-line summary of the length policy, shown by ``anybind modalities``."""
        doc = (type(self).__doc__ or "").strip().splitlines()
        return doc[0] if doc else ""
