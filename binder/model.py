"""BindingModel: tokenizer → shared trunk → head for every modality it holds, in the anchor's space."""
from __future__ import annotations

import contextlib
import dataclasses
import itertools
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from binder.anchor import Anchor, load_anchor
from binder.checkpoint import (
    CONFIG,
    bundle_option_files,
    check_buildable,
    load_weights,
    read_config,
    resolve_option_files,
    save_checkpoint,
    with_former_defaults,
)
from binder.config import BindConfig, ModalityConfig
from binder.device import resolve_device
from binder.errors import AnybindError, CheckpointError, ConfigError, ModalityError
from binder.heads import FusionHead, Head
from binder.lazy import UnfilledPartError, load_parts
from binder.registry import get_modality, list_modalities
from binder.tokenizers import StreamTokens
from binder.trunk import Trunk, build_trunk
from binder.vectors import UNIT_TOLERANCE
from modalities.base import Modality

# 2: files a modality option names are inside the folder (binder.checkpoint);
# 3: option defaults may differ from format 2's (Modality.former_defaults: depth's hole_fill).
FORMAT_VERSION = 3
READABLE_VERSIONS = (1, 2, 3)
CONFIG_KEYS = ("format_version", "bind", "anchor_arch")
NON_FINITE = "non-finite output: the model produced NaN/Inf (or a zero vector) for this input"


def bad_rows(z: torch.Tensor, unit: bool = True) -> list[int]:
    """Rows of ``(B, D)`` embeddings that are not finite (and, with ``unit``, not unit-norm).

    Rows are independent through every encoder (no batch statistics), so one bad row says
    nothing about the others: callers drop it and keep the rest.
    """
    flat = z.detach().float().reshape(z.shape[0], -1)
    ok = torch.isfinite(flat).all(dim=1)
    if unit:
        ok &= (flat.norm(dim=1) - 1.0).abs() <= UNIT_TOLERANCE
    return (~ok).nonzero().flatten().tolist()


def drop_tokens(tokens: torch.Tensor, pad_mask: torch.Tensor | None, ratio: float,
                generator: torch.Generator | None = None,
                window: tuple[int, int] | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Keep the CLS token and a random ``1 - ratio`` share of the others (padding dropped first).

    ``window = (start, total)`` says these rows are rows ``start...`` of a batch of ``total``:
    the noise is drawn for the whole batch and this window of it used, so a batch split across
    ranks or micro-batches drops exactly the tokens the whole batch would have dropped.
    """
    b, n, w = tokens.shape
    keep = max(1, round((n - 1) * (1 - ratio)))
    start, total = window or (0, b)
    if not 0 <= start <= total - b:
        raise ValueError(f"token-drop window {window} does not hold a batch of {b} rows")
    scores = torch.rand(total, n - 1, generator=generator)[start:start + b].to(tokens.device)
    if pad_mask is not None:
        scores = scores + pad_mask[:, 1:].to(scores.dtype) * 2  # real tokens sort first
    idx = scores.argsort(dim=1)[:, :keep]
    body = torch.gather(tokens[:, 1:], 1, idx[..., None].expand(b, keep, w))
    tokens = torch.cat([tokens[:, :1], body], dim=1)
    if pad_mask is not None:
        pad_mask = torch.cat([pad_mask[:, :1], torch.gather(pad_mask[:, 1:], 1, idx)], dim=1)
    return tokens, pad_mask


def written_out(config: BindConfig, modalities: dict[str, Modality]) -> BindConfig:
    """``config`` with each modality's options written out in full, as the built ``modalities`` hold
    them (defaults included, and what they took from the anchor).

    A model keeps the options it was built with: a saved folder then means the same thing after a
    later release changes a default (a flow scale, a fusion mode), instead of being read, or failing
    to load, under the new one.
    """
    mods = []
    for m in config.modalities:
        options = modalities[m.name].options
        if dataclasses.is_dataclass(options) and not isinstance(options, type):
            m = dataclasses.replace(m, options=dataclasses.asdict(options))
        mods.append(m)
    return dataclasses.replace(config, modalities=tuple(mods))


class BindingModel(nn.Module):
    """Embeds any modality it holds into the frozen anchor's space; ``encode`` returns unit vectors."""

    def __init__(self, config: BindConfig, anchor: Anchor | None = None, anchor_arch: dict | None = None):
        super().__init__()
        self.config = config
        self.partial: tuple[str, ...] | None = None  # the modalities a partial load holds (``load``)
        self.stored = tuple(m.name for m in config.modalities)  # the modalities its folder holds
        self.input_device = torch.device("cpu")  # where inference inputs go (``place``)
        self.precision = "fp32"  # how inference computes (``binder.precision.apply_precision``)
        self.compute_dtype: torch.dtype | None = None  # fp16/bf16: inference runs under autocast to it
        self.int8_encoders: tuple[str, ...] = ()  # int8: the encoders it quantized
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            self.anchor = anchor if anchor is not None else load_anchor(config.anchor, anchor_arch)
            visual = self.anchor.visual if config.trunk.kind == "anchor" else None
            self.trunk = build_trunk(config.trunk, visual)
            self.modalities: dict[str, Modality] = {}
            self.tokenizers = nn.ModuleDict()
            self.heads = nn.ModuleDict()
            self.trunks = nn.ModuleDict()  # modalities with an encoder of their own (ImageBind)
            for mcfg in config.modalities:
                self._add_modality(mcfg)
        self.config = written_out(config, self.modalities)

    def _add_modality(self, mcfg: ModalityConfig) -> None:
        modality = get_modality(mcfg.name)(**dict(mcfg.options))
        modality.configure(self.anchor)
        self.modalities[mcfg.name] = modality
        if modality.tower is None:
            if mcfg.trunk is not None:
                self.trunks[mcfg.name] = build_trunk(mcfg.trunk, None)
            width = self.trunk_for(mcfg.name).width
            self.tokenizers[mcfg.name] = modality.build_tokenizer(modality.options, width)
            streams = modality.streams()
            if mcfg.head.stream_pool and not streams:
                raise ConfigError(f"{mcfg.name}: head.stream_pool is for a modality with several streams; "
                                  f"{mcfg.name} has one (set head.pool)")
            head: Head | FusionHead = (FusionHead(width, self.anchor.embed_dim, mcfg.head, streams) if streams
                                       else Head(width, self.anchor.embed_dim, mcfg.head))
            if mcfg.head.init_from_anchor:
                head.init_from_anchor(self.anchor.visual)
            self.heads[mcfg.name] = head

    @classmethod
    def default(cls, modalities: list[str] | None = None, seed: int = 0) -> BindingModel:
        """A randomly initialised tiny model holding every registered modality (untrained)."""
        names = modalities or list_modalities()
        return cls(BindConfig(modalities=tuple(ModalityConfig(n) for n in names), seed=seed))

    @property
    def embed_dim(self) -> int:
        return self.anchor.embed_dim

    def modality(self, name: str) -> Modality:
        try:
            return self.modalities[name]
        except KeyError:
            if self.partial is not None and name in self.stored:
                raise ModalityError(None, f"this model was loaded with only the parts of "
                                          f"{', '.join(self.partial) or 'no modality'}; load it with {name!r} "
                                          f"too to encode {name}") from None
            raise ModalityError(None, f"this model has no binding for modality {name!r} "
                                      f"(it holds: {', '.join(self.stored)})") from None

    def trunk_for(self, name: str) -> Trunk:
        """The transformer ``name`` runs through: its own, else the shared trunk."""
        return cast(Trunk, self.trunks[name]) if name in self.trunks else self.trunk

    def encode(self, name: str, batch: torch.Tensor, token_drop: float = 0.0,
               generator: torch.Generator | None = None, scaled: bool = False,
               window: tuple[int, int] | None = None) -> torch.Tensor:
        """(B, *input_shape) preprocessed batch → (B, embed_dim) L2-normalized embeddings.

        ``token_drop`` (training only) keeps a random ``1 - token_drop`` share of each sequence's
        tokens (FLIP), which makes the trunk pass cheaper in proportion. ``scaled=True`` returns
        ImageBind's post-processed output instead: unit clip vectors times the modality's fixed
        ``output_scale``, averaged over clips without renormalizing. ``window`` places the batch
        in a larger one for token drop (``drop_tokens``).
        """
        modality = self.modality(name)
        batch = self._to_input_device(batch)
        with self._computing():
            if modality.tower is None:
                z = self._encode_tokens(name, batch, modality.has_clips, token_drop, generator, scaled, window)
            else:
                z = self.encode_raw(name, batch)
        z = self._as_fp32(z, unit=not scaled)
        scale = self.config.modality(name).output_scale if scaled else None
        z = z * scale if scale else z
        if not torch.is_grad_enabled():  # inference: nothing non-finite leaves the model
            bad = bad_rows(z, unit=not scaled)
            if bad:
                raise ModalityError(None, f"{NON_FINITE} (batch rows {bad[:8]})")
        return z

    def encode_rows(self, name: str, batch: torch.Tensor) -> tuple[torch.Tensor, list[int]]:
        """Inference: ``(B, embed_dim)`` unit embeddings and the rows that are not finite unit vectors.

        Unlike ``encode`` it does not raise on bad rows, so a batch keeps its good items. The batch
        goes to the model's device (``place``) and the embeddings come back to the CPU.
        """
        with torch.inference_mode(), self._computing():
            z = self.encode_raw(name, self._to_input_device(batch))
        z = self._as_fp32(z, unit=True)
        return z.cpu(), bad_rows(z)

    def _computing(self) -> contextlib.AbstractContextManager:
        """Autocast to the model's half precision (``apply_precision``) on its device, else nothing."""
        if self.compute_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.input_device.type, dtype=self.compute_dtype)

    def _as_fp32(self, z: torch.Tensor, unit: bool) -> torch.Tensor:
        """Embeddings computed in half precision back in fp32, unit ones normalized again there (a
        half-precision norm is 1 only to about 1e-3); NaN stays NaN for the checks."""
        if z.dtype == torch.float32:
            return z
        z = z.float()
        return F.normalize(z, dim=-1) if unit else z

    def _to_input_device(self, batch: torch.Tensor) -> torch.Tensor:
        """A placed model's (``place``) input on its device; otherwise as given (training moves its own)."""
        if self.input_device.type == "cpu" or batch.device == self.input_device:
            return batch
        return batch.to(self.input_device, non_blocking=True)

    def place(self, device: torch.device | str) -> BindingModel:
        """Move the parts this model holds to ``device`` for inference (parts a partial load left
        unread stay unread) and send inference inputs there."""
        device = torch.device(device)
        for tensor in itertools.chain(self.parameters(), self.buffers()):
            if not tensor.is_meta and tensor.device != device:
                tensor.data = tensor.data.to(device)
        self.input_device = device
        return self

    def encode_raw(self, name: str, batch: torch.Tensor) -> torch.Tensor:
        """Embeddings of a preprocessed batch through the anchor's tower or the modality's own encoder,
        without the checks ``encode`` makes (finite rows): for graph export and tests that compare the
        raw forward pass."""
        modality = self.modality(name)
        if modality.tower == "image":
            return self.anchor.encode_image(batch)
        if modality.tower == "text":
            return self.anchor.encode_text(batch)
        return self._encode_tokens(name, batch, modality.has_clips, 0.0, None, False)

    def _encode_tokens(self, name: str, batch: torch.Tensor, has_clips: bool, token_drop: float,
                       generator: torch.Generator | None, scaled: bool,
                       window: tuple[int, int] | None = None) -> torch.Tensor:
        clips = batch.shape[1] if has_clips else 0
        if clips:
            batch = batch.flatten(0, 1)
        if clips and window is not None:
            window = (window[0] * clips, window[1] * clips)
        out = self.tokenizers[name](batch)
        if isinstance(out, StreamTokens):  # late fusion: each stream through the trunk on its own
            z = self._encode_streams(name, out, token_drop, generator, window)
        else:
            tokens, pad_mask = out if isinstance(out, tuple) else (out, None)
            h, pad_mask = self._through_trunk(name, tokens, pad_mask, token_drop, generator, window)
            z = self.heads[name](h, pad_mask)
        if clips:
            z = z.view(-1, clips, z.shape[-1]).mean(dim=1)
            z = z if scaled else F.normalize(z, dim=-1)
        return z

    def _encode_streams(self, name: str, out: StreamTokens, token_drop: float, generator: torch.Generator | None,
                        window: tuple[int, int] | None) -> torch.Tensor:
        """Late fusion: each stream's sequence through the trunk (one call on the streams stacked
        along the batch, each attending only within its own rows), its head, then the gate. Under
        ``single_stream`` only that stream runs."""
        head = cast(FusionHead, self.heads[name])
        if head.only is not None:
            i = head.streams.index(head.only)
            h, mask = self._through_trunk(name, out.streams[i], None, token_drop, generator, window)
            return cast(Head, head.heads[head.only])(h, mask)
        rows = out.streams[0].shape[0]
        kept = [drop_tokens(t, None, token_drop, generator, window) if token_drop > 0 else (t, None)
                for t in out.streams]
        if all(t.shape[1:] == kept[0][0].shape[1:] for t, _ in kept):  # equal lengths: one trunk call
            together = self.trunk_for(name)(torch.cat([t for t, _ in kept]), None)
            hidden = list(together.unflatten(0, (len(kept), -1)).unbind(0))
        else:
            hidden = [self.trunk_for(name)(t, m) for t, m in kept]
        solo = head.draw_solo(rows, generator, window)  # stream dropout, training only
        return head(hidden, [m for _, m in kept], solo)

    def _through_trunk(self, name: str, tokens: torch.Tensor, pad_mask: torch.Tensor | None, token_drop: float,
                       generator: torch.Generator | None,
                       window: tuple[int, int] | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One token sequence (after token drop, in training) through ``name``'s trunk."""
        if token_drop > 0:
            tokens, pad_mask = drop_tokens(tokens, pad_mask, token_drop, generator, window)
        return self.trunk_for(name)(tokens, pad_mask), pad_mask

    @contextlib.contextmanager
    def single_stream(self, name: str, stream: str) -> Iterator[None]:
        """Within the block, ``name`` (a multi-stream modality) embeds with ``stream`` alone: each
        stream's own figure, measured beside the fused one."""
        head = self.heads[name] if name in self.heads else None
        if not isinstance(head, FusionHead) or stream not in head.streams:
            raise ModalityError(None, f"{name!r} has no stream {stream!r} "
                                      f"(streams: {', '.join(getattr(head, 'streams', ())) or 'none'})")
        head.only = stream
        try:
            yield
        finally:
            head.only = None

    def logit_scale(self, name: str) -> torch.Tensor:
        """The modality's learned inverse temperature (the anchor's own for image/text)."""
        if name in self.heads:
            return cast(Head | FusionHead, self.heads[name]).logit_scale
        return self.anchor.clip.logit_scale.exp().clamp(max=100.0)

    def embed_files(self, name: str, paths: list[str | os.PathLike]) -> torch.Tensor:
        """Load, preprocess and encode files of one modality: finite unit vectors, or a ModalityError
        naming the first bad file (bad input, or an input the model turns into NaN)."""
        batch = self.prepare_files(name, paths)
        z, bad = self.encode_rows(name, batch)
        if bad:
            raise ModalityError(paths[bad[0]], NON_FINITE)
        return z

    def prepare_files(self, name: str, paths: Sequence[str | os.PathLike]) -> torch.Tensor:
        """The batch ``embed_files`` encodes: files of one modality loaded and preprocessed by this
        model's options, ``(N, *input_shape)`` (token ids for text). An exported graph takes exactly
        this (``anybind prepare``); a bad file is a ModalityError naming it."""
        modality = self.modality(name)
        return modality.collate([modality.prepare(p) for p in paths])

    @classmethod
    def from_preset(cls, name: str, **overrides) -> BindingModel:
        """A model of a named architecture (``anybind presets`` lists them), randomly initialised.

        Pretrained weights come from the preset's anchor tag or from ``anybind convert``.
        """
        from binder.presets import preset_config

        return cls(preset_config(name, **overrides)).eval()

    def train(self, mode: bool = True) -> BindingModel:
        super().train(mode)
        self.anchor.train(False)
        if self.trunk.shared:
            self.trunk.train(False)
        return self

    def save(self, folder: str | os.PathLike) -> Path:
        """Write ``model.safetensors`` + ``config.json``; the folder is self-contained: a file a modality
        option names (a codebook) is copied in and named relative to the folder."""
        if self.partial is not None:
            raise CheckpointError(f"this model was loaded with only the parts of {', '.join(self.partial)}; "
                                  f"load it whole (BindingModel.load(folder)) to save it")
        config = bundle_option_files(folder, self.config)
        payload = {"format_version": FORMAT_VERSION, "bind": config.to_dict(), "anchor_arch": self.anchor.arch()}
        return save_checkpoint(folder, self, payload)

    @classmethod
    def load(cls, folder: str | os.PathLike, modalities: Iterable[str] | None = None,
             device: str | torch.device | None = None) -> BindingModel:
        """Rebuild from ``config.json`` and load the safetensors weights (bit-exact).

        ``modalities`` loads only what encoding those modalities needs (``binder.lazy``): the
        other modalities are left out, and the anchor's image and text towers are read only for
        ``"image"`` and ``"text"`` (or a trunk shared with the image tower). Such a partial
        model embeds exactly as the whole one does, and refuses to be saved. ``device`` (a
        ``binder.device`` spec such as ``"auto"`` or ``"cuda:1"``, or a torch device) places the
        model there for inference (``place``); None leaves it on the CPU.
        """
        payload = read_config(folder)
        version = payload.get("format_version")
        if version not in READABLE_VERSIONS or isinstance(version, bool) or not isinstance(payload.get("bind"), dict):
            raise CheckpointError(f"{folder}: unsupported model format {version!r}")
        unknown = sorted(k for k in payload if k not in CONFIG_KEYS)
        if unknown:
            raise CheckpointError(f"{folder}: unknown {CONFIG} key(s) {', '.join(map(repr, unknown))} "
                                  f"(known: {', '.join(CONFIG_KEYS)})")
        try:
            config = BindConfig.from_dict(payload["bind"])
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            raise CheckpointError(f"{folder}: bad config ({type(exc).__name__}: {exc})") from None
        config = with_former_defaults(config, version)
        config, cleared = resolve_option_files(folder, config, legacy=version == 1)
        check_buildable(folder, payload)
        where = None if device is None else resolve_device(device if isinstance(device, str) else str(device))
        try:
            model = cls._load_checked(folder, config, payload.get("anchor_arch"), modalities)
        except CheckpointError as exc:
            if cleared:  # a format-1 folder whose option file was left unopened: say so first
                raise CheckpointError(f"{cleared[0].explain(folder)} ({exc})") from None
            raise
        return model if where is None else model.place(where)

    @classmethod
    def _load_checked(cls, folder: str | os.PathLike, config: BindConfig, arch: dict | None,
                      modalities: Iterable[str] | None) -> BindingModel:
        """Build the model of a checked config and fill it from the folder's weights."""
        if modalities is not None:
            return cls._load_parts(folder, config, arch, modalities)
        try:
            with torch.device("meta"):  # no random weights first: half the peak memory, a fraction of the time
                model = cls._build_checked(folder, config, arch)
            return load_parts(model, folder, None).eval()
        except UnfilledPartError:  # a buffer only the constructor computes: build for real, then load
            model = cls._build_checked(folder, config, arch)
            load_weights(folder, model)
            return model.eval()

    @classmethod
    def _load_parts(cls, folder: str | os.PathLike, config: BindConfig, arch: dict | None,
                    modalities: Iterable[str]) -> BindingModel:
        held = [m.name for m in config.modalities]
        wanted = set(modalities)
        names = [n for n in held if n in wanted]  # in the folder's order; others fail at encode, as on the whole model
        partial = dataclasses.replace(config, modalities=tuple(m for m in config.modalities if m.name in names))
        with torch.device("meta"):
            model = cls._build_checked(folder, partial, arch)
        model.partial, model.stored = tuple(names), tuple(held)
        return load_parts(model, folder, names).eval()

    @classmethod
    def _build_checked(cls, folder: str | os.PathLike, config: BindConfig, arch: dict | None) -> BindingModel:
        """Build the model a config describes; whatever the builders raise becomes a CheckpointError."""
        if arch is not None and not isinstance(arch, dict):
            raise CheckpointError(f"{folder}: anchor_arch must be an object, got {type(arch).__name__}")
        try:
            return cls(config, anchor_arch=arch)
        except CheckpointError:
            raise
        except (TypeError, ValueError, KeyError, AttributeError, RuntimeError, IndexError, MemoryError,
                AnybindError) as exc:
            first = (str(exc).strip().splitlines() or [""])[0][:300]
            raise CheckpointError(f"{folder}: config describes a model that cannot be built "
                                  f"({type(exc).__name__}: {first})") from None
