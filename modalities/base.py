"""The Modality interface every built-in and plugin modality implements.

A modality knows how to read its files (``load``), turn what it read into one fixed-shape
tensor under an explicit length policy (``preprocess``), and build the tokenizer that maps a
batch of those tensors to a token sequence of the trunk's width (``build_tokenizer``). For
training it may also declare augmentations (``AugmentOptions``, ``augment`` on the decoded item,
``augment_tensor`` on the preprocessed one) that the trainer draws from a generator seeded by
(seed, step, item), so a resumed run sees the same variations.

Two more optional hooks keep what only the modality knows inside it, so a plugin carries them too:
``preview`` (the picture of a file on the search page) and ``perturbations`` (the named,
fixed-strength conditions ``anybind eval --perturb`` applies to test items).
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

import numpy as np
import torch
from torch import nn

from binder.errors import AugmentationError, ConfigError, ModalityError

if TYPE_CHECKING:
    from PIL import Image

PerturbFn = Callable[[Any, float, np.random.Generator, Any], Any]
"""``(raw, value, rng, modality) -> raw``: one perturbation of a decoded item at strength ``value``.

``rng`` is the only source of randomness (seeded per item, so an evaluation repeats); ``modality`` is
the instance being evaluated (its options, e.g. the sample rate), or None where a caller has none."""


class Perturber(NamedTuple):
    """A named perturbation's function and a short description of its value (listed in errors)."""

    apply: PerturbFn
    doc: str


@dataclasses.dataclass(frozen=True)
class NoOptions:
    """Options of a modality that has none."""


class Modality(ABC):
    """Base class: subclass it, set ``name``/``extensions``/``Options``, register it.

    ``tower`` is ``"image"`` or ``"text"`` for modalities the frozen anchor encodes itself;
    those skip the shared trunk. ``has_clips`` means ``preprocess`` returns a leading clip axis
    (k clips of a long recording) whose embeddings are averaged. A modality whose tokenizer
    returns several streams (``binder.tokenizers.StreamTokens``) names them in ``streams()``: each
    runs through the trunk on its own and the model fuses them late (``binder.heads.FusionHead``).
    """

    name: ClassVar[str]
    extensions: ClassVar[tuple[str, ...]] = ()
    Options: ClassVar[type] = NoOptions
    AugmentOptions: ClassVar[type | None] = None
    tower: ClassVar[str | None] = None
    has_clips: ClassVar[bool] = False
    # Option defaults this modality has changed, keyed by the model format version that changed them:
    # {3: {"hole_fill": "mean"}} says a model folder saved before format 3 meant "mean" where it named
    # no hole_fill, so it is read that way (binder.checkpoint.with_former_defaults).
    former_defaults: ClassVar[dict[int, dict[str, Any]]] = {}

    def __init__(self, **options: Any):
        try:
            self.options = self.Options(**options)
        except TypeError as exc:
            fields = [f.name for f in dataclasses.fields(self.Options)]
            raise ConfigError(f"bad options for modality {self.name!r}: {exc}; valid options: {fields}") from None

    def streams(self) -> tuple[str, ...]:
        """The streams this modality's tokenizer returns, in order; () for one sequence (the usual)."""
        return ()

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

    # ---------------------------------------------------------------- training augmentation
    def augment_options(self, values: Mapping[str, Any] | bool | None = True) -> Any | None:
        """A recipe's ``augment`` value as this modality's ``AugmentOptions`` (None = no augmentation).

        ``True`` or ``{}`` takes the defaults, a table overrides fields, ``False`` switches it off.
        """
        if self.AugmentOptions is None:
            if isinstance(values, Mapping) and values:
                raise ConfigError(f"modality {self.name!r} has no augmentations to tune (got {sorted(values)})")
            return None
        if values is False or values is None:
            return None
        kwargs = {} if values is True else dict(values)
        try:
            opts = self.AugmentOptions(**kwargs)
        except TypeError as exc:
            fields = [f.name for f in dataclasses.fields(self.AugmentOptions)]
            raise ConfigError(f"bad augment options for modality {self.name!r}: {exc}; valid: {fields}") from None
        return opts if getattr(opts, "enabled", True) else None

    def augment_with_data(self, options: Any, paths: Sequence[str], seed: int) -> Any:
        """``options`` completed with what only the training set can give (audio: babble from other
        training utterances), drawn from ``paths`` by ``seed``. Default: unchanged."""
        return options

    def load_for_training(self, path: str | os.PathLike, augment_options: Any) -> Any:
        """What training decodes when augmentation is on (e.g. more frames than inference uses, so
        ``augment`` has real frames to re-pick from); ``augment`` must map it back to what
        ``preprocess`` expects. Every failure is a ModalityError naming the file, as in
        ``load_checked``. Default: ``load_checked(path)``."""
        return self.load_checked(path)

    def augment(self, raw: Any, rng: np.random.Generator, options: Any) -> Any:
        """A training-time variation of a decoded item, drawn from ``rng`` only. Default: unchanged."""
        return raw

    def augment_tensor(self, tensor: torch.Tensor, rng: np.random.Generator, options: Any) -> torch.Tensor:
        """A variation of the preprocessed tensor (e.g. SpecAugment masks). Default: unchanged."""
        return tensor

    # ---------------------------------------------------------------- preview and perturbations
    def preview(self, path: Path, size: int) -> Image.Image:
        """A picture of the file at ``path`` for the search page, about ``size`` px on its long side.

        Read it with the modality's own bounded readers and raise ModalityError for a bad file; the
        server shrinks the result to ``size``, encodes it as PNG and turns any error into a 422.
        It lives here, not in the server, so a plugin modality brings its own picture.
        Default: a neutral card with the modality's name and the file name.
        """
        from modalities.preview import card

        return card(path, size, title=self.name)

    def perturbations(self) -> Mapping[str, Perturber]:
        """Named, fixed-strength perturbations of decoded items for robustness evaluation
        (``anybind eval --perturb "name=value,..."``), each with a description of its value.

        They live with the modality, since only it knows what its raw items are, so a plugin can
        declare its own. Default: none (asking for one is an error that says so).
        """
        return {}

    # ---------------------------------------------------------------- file → tensor, errors named
    def load_checked(self, path: str | os.PathLike) -> Any:
        """``load`` with every failure turned into a ModalityError that names the file."""
        with self._named_errors(path):
            return self.load(path)

    def prepare(self, path: str | os.PathLike) -> torch.Tensor:
        """load + preprocess with every failure turned into a ModalityError that names the file."""
        return self.prepare_raw(path, self.load_checked(path))

    def prepare_raw(self, path: str | os.PathLike, raw: Any) -> torch.Tensor:
        """preprocess of an item already decoded from ``path``, errors named and shape checked."""
        with self._named_errors(path):
            tensor = self.preprocess(raw)
        return self._checked_shape(path, tensor)

    def prepare_augmented(self, path: str | os.PathLike, raw: Any, rng: np.random.Generator,
                          options: Any) -> torch.Tensor:
        """augment + preprocess + augment_tensor of an item decoded from ``path`` (training).

        A failure is the file's (a ModalityError, and the file is skipped) only when the item also
        fails without augmentation; otherwise it is the augmentation's, and an AugmentationError
        stops the run: dropping every file a faulty augmentation touches would train on what is left.
        """
        try:
            with self._named_errors(path):
                tensor = self.augment_tensor(self.preprocess(self.augment(raw, rng, options)), rng, options)
            return self._checked_shape(path, tensor)
        except ModalityError as exc:
            # read as inference reads it (a training decode, a FlowClip say, need not preprocess as it is):
            # this raises the file's own ModalityError when the file is at fault
            self.prepare(path)
            raise AugmentationError(path, exc.reason) from exc

    @contextlib.contextmanager
    def _named_errors(self, path: str | os.PathLike) -> Iterator[None]:
        try:
            yield
        except ModalityError as exc:
            if exc.path is None:
                raise ModalityError(path, exc.reason) from exc
            raise
        except KeyboardInterrupt:
            raise
        except MemoryError as exc:  # one oversized item must not abort the batch it came in
            raise ModalityError(path, f"decoding needs more memory than is available ({type(exc).__name__}: "
                                      f"{str(exc)[:200]})") from exc
        except Exception as exc:  # decoder libraries raise anything; the user needs the file name
            raise ModalityError(path, f"cannot read as {self.name}: {type(exc).__name__}: {exc}") from exc

    def _checked_shape(self, path: str | os.PathLike, tensor: torch.Tensor) -> torch.Tensor:
        if tuple(tensor.shape) != self.input_shape():
            raise ModalityError(path, f"preprocessed to shape {tuple(tensor.shape)}, expected {self.input_shape()}")
        return tensor

    def describe(self) -> str:
        """One-line summary of the length policy, shown by ``anybind modalities``."""
        # The summary is the docstring's first paragraph, which may be wrapped over several lines.
        summary = (type(self).__doc__ or "").strip().split("\n\n")[0]
        return " ".join(line.strip() for line in summary.splitlines())
