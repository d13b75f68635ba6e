"""Text, encoded by the anchor's own text tower."""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from binder.errors import ModalityError
from binder.registry import register_modality
from modalities.base import Modality
from modalities.common import check_file
from modalities.preview import card


@dataclass(frozen=True)
class TextOptions:
    """``context_length`` comes from the anchor; longer text is truncated by its tokenizer."""

    context_length: int = 77
    max_bytes: int = 1_000_000


@register_modality
class Text(Modality):
    """UTF-8 text file (one item per file), tokenized by the anchor's tokenizer, truncated to its context."""

    name = "text"
    extensions = (".txt",)
    Options = TextOptions
    tower = "text"

    def __init__(self, **options: Any):
        super().__init__(**options)
        self._tokenizer = None

    def configure(self, anchor: Any) -> None:
        self._tokenizer = anchor.tokenizer
        self.options = dataclasses.replace(self.options, context_length=int(anchor.tokenizer.context_length))

    def tokenizer(self):
        if self._tokenizer is None:
            import open_clip

            self._tokenizer = open_clip.get_tokenizer("ViT-B-32", context_length=self.options.context_length)
        return self._tokenizer

    def load(self, path: str | os.PathLike) -> str:
        p = check_file(path)
        if p.stat().st_size > self.options.max_bytes:
            raise ModalityError(path, f"text file is larger than {self.options.max_bytes} bytes")
        try:
            text = p.read_text(encoding="utf-8").strip()
        except UnicodeDecodeError as exc:
            raise ModalityError(path, f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
        if not text:
            raise ModalityError(path, "text file holds only whitespace")
        return text

    def preprocess(self, raw: str) -> torch.Tensor:
        return self.tokenizer()([raw])[0]

    def input_shape(self) -> tuple[int, ...]:
        return (self.options.context_length,)

    def preview(self, path: Path, size: int) -> Image.Image:
        """A card with the first lines of the file (the page itself shows a snippet from the file)."""
        with open(check_file(path), "rb") as fh:
            head = fh.read(4096).decode("utf-8", errors="replace")
        return card(path, size, [ln for ln in head.splitlines() if ln.strip()], title=self.name)
