"""Inference precision of a BindingModel: ``fp32`` (as trained), ``fp16``/``bf16`` (on a GPU) or
``int8`` (faster on CPU); ``auto`` picks by device (``binder.device.resolve_precision``).

``int8`` is torch's dynamic quantization (``torch.ao.quantization.quantize_dynamic``, onednn
backend): every ``nn.Linear`` weight is stored as int8 with one scale per output channel, and
activations are quantized on the fly, so no calibration data is needed. Activations get their
own 8-bit grid per batch item (``ItemwiseInt8Linear``), so an embedding never depends on what else
is in its batch, and NaN still comes out as NaN for ``BindingModel``'s checks. The transformer's
attention keeps its in-projection as a raw parameter inside ``nn.MultiheadAttention``, out of
quantization's reach; ``int8`` first swaps every such module for ``ProjectedAttention``, the same
computation with its q/k/v and output projections as ``nn.Linear`` (checked equal in fp32), so
that the attention projections are quantized too. ``benchmarks/int8_engines.py`` measured this
engine against torchao, ONNX Runtime and OpenVINO (docs/guides/performance.md, "Faster CPU inference").

Convolution stems, layer norms, position embeddings and the anchor's final projection matrices
stay fp32: together they are a few percent of the work, and keeping them exact costs nothing.
"""
from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, cast

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from binder.config import INFERENCE_PRECISIONS
from binder.errors import AnybindError

with warnings.catch_warnings():  # torch.ao.quantization announces its move to torchao
    warnings.simplefilter("ignore")
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

if TYPE_CHECKING:
    from binder.model import BindingModel

# torch's quantized backends for int8, fastest first (benchmarks/int8_engines.py): onednn runs int8
# products on AMX / VNNI where the CPU has them; the first one this torch build has is used.
ENGINES = ("onednn", "x86", "fbgemm", "qnnpack")
CHUNK_ROWS = 1024  # rows an int8 layer quantizes and multiplies at a time (its buffers stay in cache)
# int8 is used for an encoder only from this width on (docs/guides/performance.md, "Which encoders
# int8 is used for"): at ImageBind-Huge size every encoder from 512 wide ran at >= INT8_MIN_SPEEDUP x
# the fp32 reference with int8 (benchmarks/vs_imagebind.py), the 384-wide depth encoder did not, and
# below 256 int8 gains little or loses (benchmarks/int8_width.py). Narrower encoders stay fp32.
INT8_MIN_WIDTH = 512
INT8_MIN_SPEEDUP = 2.0


class PrecisionError(AnybindError):
    """An unknown precision name, or a model that cannot be run at the precision asked for."""


def check_precision(precision: str) -> str:
    """``precision`` itself when it is one of ``INFERENCE_PRECISIONS``, else a ``PrecisionError`` listing them."""
    if precision not in INFERENCE_PRECISIONS:
        raise PrecisionError(f"unknown precision {precision!r}; choose one of: {', '.join(INFERENCE_PRECISIONS)}")
    return precision


class ProjectedAttention(nn.Module):
    """``nn.MultiheadAttention`` (inference) with its projections as ``nn.Linear`` modules.

    Same call signature and result as the module it replaces (``need_weights`` is not supported:
    the attention weights are never asked for at inference). ``in_proj`` holds the q, k and v
    projections stacked, so self-attention is one matrix product, as in the original.
    """

    def __init__(self, embed_dim: int, num_heads: int, bias: bool = True, bias_kv: bool = False,
                 batch_first: bool = False):
        super().__init__()
        if embed_dim % num_heads:
            raise PrecisionError(f"attention width {embed_dim} is not a multiple of its {num_heads} heads")
        self.embed_dim, self.num_heads, self.batch_first = embed_dim, num_heads, batch_first
        self.in_proj = nn.Linear(embed_dim, 3 * embed_dim, bias=bias)
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.bias_k = nn.Parameter(torch.zeros(1, 1, embed_dim)) if bias_kv else None
        self.bias_v = nn.Parameter(torch.zeros(1, 1, embed_dim)) if bias_kv else None

    @classmethod
    def from_mha(cls, mha: nn.MultiheadAttention) -> ProjectedAttention:
        """The same attention as ``mha`` (LoRA merged in), with ``nn.Linear`` projections."""
        if mha.kdim != mha.embed_dim or mha.vdim != mha.embed_dim or mha.add_zero_attn:
            raise PrecisionError("int8 supports attention with equal q/k/v widths and no add_zero_attn")
        new = cls(mha.embed_dim, mha.num_heads, mha.in_proj_bias is not None, mha.bias_k is not None,
                  mha.batch_first)
        with torch.no_grad():  # reading a parametrized weight merges its LoRA update
            new.in_proj.weight.copy_(cast(torch.Tensor, mha.in_proj_weight))
            new.out_proj.weight.copy_(mha.out_proj.weight)
            if mha.in_proj_bias is not None:
                cast(torch.Tensor, new.in_proj.bias).copy_(mha.in_proj_bias)
                cast(torch.Tensor, new.out_proj.bias).copy_(cast(torch.Tensor, mha.out_proj.bias))
            if mha.bias_k is not None and mha.bias_v is not None:
                cast(nn.Parameter, new.bias_k).copy_(mha.bias_k.reshape(1, 1, -1))
                cast(nn.Parameter, new.bias_v).copy_(mha.bias_v.reshape(1, 1, -1))
        return new.requires_grad_(False)

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                key_padding_mask: torch.Tensor | None = None, need_weights: bool = False,
                attn_mask: torch.Tensor | None = None, average_attn_weights: bool = True,
                is_causal: bool = False) -> tuple[torch.Tensor, None]:
        if need_weights:
            raise PrecisionError("ProjectedAttention does not return attention weights")
        if not self.batch_first:
            query, key, value = (t.transpose(0, 1) for t in (query, key, value))
        q, k, v = self._project(query, key, value)
        b, n, s = q.shape[0], q.shape[1], k.shape[1]
        if self.bias_k is not None and self.bias_v is not None:
            k = torch.cat([k, self.bias_k.expand(b, 1, -1)], dim=1)
            v = torch.cat([v, self.bias_v.expand(b, 1, -1)], dim=1)
        mask = self._mask(attn_mask, key_padding_mask, b, n, s, k.shape[1], q.dtype)
        q, k, v = (t.unflatten(-1, (self.num_heads, -1)).transpose(1, 2) for t in (q, k, v))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal and mask is None)
        out = self.out_proj(out.transpose(1, 2).flatten(2))
        return (out if self.batch_first else out.transpose(0, 1)), None

    def _project(self, query: torch.Tensor, key: torch.Tensor,
                 value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """q, k, v as (B, L, E): one product for self-attention, the matching thirds otherwise."""
        if query is key and key is value:
            q, k, v = self.in_proj(query).chunk(3, dim=-1)
            return q, k, v
        q = self.in_proj(query)[..., : self.embed_dim]
        kv = self.in_proj(key)
        k = kv[..., self.embed_dim: 2 * self.embed_dim]
        v = kv[..., 2 * self.embed_dim:] if value is key else self.in_proj(value)[..., 2 * self.embed_dim:]
        return q, k, v

    def _mask(self, attn_mask: torch.Tensor | None, key_padding_mask: torch.Tensor | None, b: int, n: int,
              s: int, s_total: int, dtype: torch.dtype) -> torch.Tensor | None:
        """One additive (B | 1, heads | 1, N, S') mask from nn.MultiheadAttention's two mask kinds."""
        mask = None
        if attn_mask is not None:
            mask = _additive(attn_mask, dtype)
            mask = mask.view(b, self.num_heads, n, s) if mask.dim() == 3 else mask.view(1, 1, n, s)
        if key_padding_mask is not None:
            pad = _additive(key_padding_mask, dtype).view(b, 1, 1, s)
            mask = pad if mask is None else mask + pad
        if mask is not None and s_total > s:  # the learned extra key is never masked
            mask = F.pad(mask, (0, s_total - s))
        return mask


def _additive(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A boolean mask (True = hidden) as an additive one (-inf where hidden); float masks as they are."""
    if mask.dtype == torch.bool:
        return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(mask, float("-inf"))
    return mask.to(dtype)


def project_attention(module: nn.Module, within: set[int] | None = None) -> int:
    """Swap every ``nn.MultiheadAttention`` under ``module`` (whose id is in ``within``, when given;
    the new modules' ids join it) for a ``ProjectedAttention`` in place.

    A module reached along several paths (the anchor's blocks reused as the shared trunk) is
    swapped once and stays shared. Returns how many attention modules were swapped.
    """
    done: dict[int, ProjectedAttention] = {}
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if within is not None and id(child) not in within:
                continue
            if isinstance(child, nn.MultiheadAttention) and not _unloaded(child):
                if id(child) not in done:
                    done[id(child)] = ProjectedAttention.from_mha(child)
                    if within is not None:  # the new projections belong to the part being converted
                        within.update(id(m) for m in done[id(child)].modules())
                setattr(parent, name, done[id(child)])
    return len(done)


def _unloaded(module: nn.Module) -> bool:
    """Whether ``module`` holds tensors on the meta device: a part a partial load left out
    (``BindingModel.load(folder, modalities)``), which is never run and so never quantized."""
    return any(t.is_meta for t in module.parameters()) or any(t.is_meta for t in module.buffers())


def _strip_parametrizations(module: nn.Module) -> None:
    """Fold LoRA (or any parametrization) of a ``nn.Linear`` into a plain weight before quantizing."""
    for sub in module.modules():
        if isinstance(sub, nn.Linear) and parametrize.is_parametrized(sub):
            parametrize.remove_parametrizations(sub, "weight", leave_parametrized=True)


class ItemwiseInt8Linear(DynamicLinear):
    """torch's dynamic int8 linear layer with activation scales per batch item, not per batch.

    torch quantizes a whole input tensor with one scale, so one item with large activations
    would coarsen every other item of its batch, and NaN is silently read as a number. Here each
    item (``batch_dim`` of a 3-D input, each row of a 2-D one) is first mapped onto [-1, 1] by its
    own centre and half-range, two fixed rows holding -1 and 1 pin the tensor's range, and the
    int8 product of all items runs as one call: every item is quantized with its own 8-bit grid,
    its integer products do not depend on its batch-mates, and the centre and scale are undone on
    the output (``W·x = half·W·x' + centre·W·1``, bias added after). An item holding NaN/Inf comes
    out NaN, as in fp32, for ``encode``'s checks to catch. ``reduce_range`` (7-bit activations) is
    only used on CPUs without VNNI, where 8-bit products can saturate.
    """

    batch_dim: int = 0
    reduce_range: bool = True
    int8_original_dtype: torch.dtype = torch.float32  # open_clip asks its first MLP layer for the activations' dtype
    row_sum: torch.Tensor  # W·1 of the int8 weights, per output channel
    item_bias: torch.Tensor | None

    def prepare(self) -> None:
        """Move the bias out of the packed weights (it is added after rescaling) and keep W·1; once."""
        if hasattr(self, "row_sum"):
            return
        weight, bias = self._weight_bias()
        self.set_weight_bias(weight, None)
        self.row_sum = weight.dequantize().sum(dim=1)
        self.item_bias = None if bias is None else bias.detach().clone()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() < 2:
            return self.forward(x.unsqueeze(0)).squeeze(0)
        out = x.new_empty((*x.shape[:-1], self.out_features))
        if x.numel() == 0:
            return out
        dim = self.batch_dim if x.dim() >= 3 else 0
        lo, hi = _item_range(x, dim)  # NaN stays NaN
        centre, half = (hi + lo) / 2, (hi - lo) / 2
        half = torch.where(half > 0, half, 1.0)  # a constant item is its centre, exactly
        shift = centre * self.row_sum if self.item_bias is None else centre * self.row_sum + self.item_bias
        per_item = (1 / half, -centre / half, half, shift)
        # Rows go through in chunks that stay in cache; the pinned range makes the chunking invisible.
        cdim = 0 if x.dim() == 2 else next(d for d in range(x.dim() - 1) if d != dim)
        step = max(1, CHUNK_ROWS * x.shape[cdim] * x.shape[-1] // x.numel())
        for start in range(0, x.shape[cdim], step):
            n = min(step, x.shape[cdim] - start)
            scale, offset, part_half, part_shift = (t.narrow(cdim, start, n) if t.shape[cdim] > 1 else t
                                                    for t in per_item)
            self._chunk(x.narrow(cdim, start, n), scale, offset, part_half, part_shift, out.narrow(cdim, start, n))
        return out

    def _chunk(self, x: torch.Tensor, scale: torch.Tensor, offset: torch.Tensor, half: torch.Tensor,
               shift: torch.Tensor, out: torch.Tensor) -> None:
        """``out = half·W·((x - centre) / half) + centre·W·1 + bias`` for one chunk of rows."""
        rows = x.numel() // x.shape[-1]
        buf = x.new_empty(rows + 2, x.shape[-1])
        torch.addcmul(offset, x, scale, out=buf[:rows].view(x.shape)).clamp_(-1.0, 1.0)  # rounding may step out
        buf[rows].fill_(-1.0)
        buf[rows + 1].fill_(1.0)
        y = torch.ops.quantized.linear_dynamic(buf, self._packed_params._packed_params, self.reduce_range)
        torch.addcmul(shift, y[:rows].view(*x.shape[:-1], self.out_features), half, out=out)


def _item_range(x: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-item minimum and maximum of ``x`` along every axis but ``dim``, shaped to broadcast."""
    shape = [1] * x.dim()
    shape[dim] = x.shape[dim]
    if dim == 0 and x.is_contiguous():  # reductions over contiguous rows (aminmax is slower than both)
        rows = x.view(x.shape[0], -1)
        return rows.amin(dim=1).view(shape), rows.amax(dim=1).view(shape)
    others = [d for d in range(x.dim()) if d != dim]
    return x.amin(dim=others, keepdim=True), x.amax(dim=others, keepdim=True)


def _prepare_int8_layers(module: nn.Module, reduce_range: bool) -> None:
    """Finish each int8 layer: unpacked bias, and where its batch axis is: 1 inside a sequence-first
    transformer (the anchor's text tower), else 0 (attention projections always see batch-first input)."""
    layers = {id(m): m for m in module.modules() if isinstance(m, ItemwiseInt8Linear)}
    for layer in layers.values():
        layer.prepare()
        layer.batch_dim, layer.reduce_range = 0, reduce_range
    for stack in module.modules():
        if hasattr(stack, "resblocks") and getattr(stack, "batch_first", True) is False:
            for sub in stack.modules():
                if isinstance(sub, ItemwiseInt8Linear):
                    sub.batch_dim = 1
    for attn in module.modules():
        if isinstance(attn, ProjectedAttention):
            for proj in (attn.in_proj, attn.out_proj):
                if isinstance(proj, ItemwiseInt8Linear):
                    proj.batch_dim = 0


def default_engine() -> str:
    """The first of ``ENGINES`` that this torch build supports."""
    supported = torch.backends.quantized.supported_engines
    for engine in ENGINES:
        if engine in supported:
            return engine
    raise PrecisionError(f"int8 needs a quantized backend of torch; this build has none of {', '.join(ENGINES)}")


def quantize_int8(module: nn.Module, engine: str | None = None, within: set[int] | None = None) -> nn.Module:
    """Dynamic int8 quantization of every loaded ``nn.Linear`` under ``module`` (attention included), in place.

    Weights get one scale per output channel; ``engine`` is the torch quantized backend whose
    kernels the packed weights are made for (default: ``default_engine()``). ``within`` (ids of
    modules) limits it to those layers: the encoders ``int8_encoders`` picks.
    """
    engine = engine or default_engine()
    if engine not in torch.backends.quantized.supported_engines:
        raise PrecisionError(f"int8 needs torch's {engine!r} quantized backend, which this torch build lacks "
                             f"(it has: {', '.join(torch.backends.quantized.supported_engines)})")
    project_attention(module, within)
    _strip_parametrizations(module)
    previous = torch.backends.quantized.engine
    with warnings.catch_warnings():  # torch.ao.quantization announces its move to torchao
        warnings.simplefilter("ignore")
        from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

        torch.backends.quantized.engine = engine
        try:
            loaded = {name: per_channel_dynamic_qconfig for name, sub in module.named_modules()
                      if isinstance(sub, nn.Linear) and not _unloaded(sub) and (within is None or id(sub) in within)}
            quantize_dynamic(module, loaded, dtype=torch.qint8,
                             mapping={nn.Linear: ItemwiseInt8Linear}, inplace=True)
            # torch.cpu._is_vnni_supported is private torch API, the only way to ask whether fbgemm's int8
            # kernels saturate (no VNNI: reduce_range); tests/test_private_torch.py fails if it changes.
            _prepare_int8_layers(module, reduce_range=not torch.cpu._is_vnni_supported())
        finally:
            torch.backends.quantized.engine = previous
    return module


def is_quantized_linear(module: nn.Module) -> bool:
    """Whether ``module`` is an int8 linear layer of ``quantize_int8``."""
    return isinstance(module, ItemwiseInt8Linear)


HALF_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


def apply_precision(model: BindingModel, precision: str, int8_min_width: int = INT8_MIN_WIDTH) -> BindingModel:
    """``model`` set up for inference at ``precision``; ``model.precision`` says which it got.

    ``fp32`` returns it unchanged. ``auto`` is resolved for the device the model is placed on
    (``binder.device.resolve_precision``: fp32 on the CPU). ``fp16``/``bf16`` cast the weights of
    every loaded part to that type (half the memory) and run inference under autocast to it, so
    that layer norms, softmax and the final normalization still compute in fp32
    (``BindingModel._computing``). ``int8`` converts the model in place (its fp32 weights are
    dropped: a model of ImageBind-Huge size would not fit twice in memory) and returns it in eval
    mode, for inference only. Each encoder at least ``int8_min_width`` wide is quantized
    (``int8_encoders``; ``model.int8_encoders`` names them): the anchor's image and text towers, and
    each modality's tokenizer, trunk (its own or the shared one) and head; narrower ones stay fp32,
    where they run faster. ``encode`` still checks that every embedding is a finite unit vector.
    """
    check_precision(precision)
    if precision == "auto":
        from binder.device import resolve_precision

        precision = resolve_precision(model.input_device, precision)
    if precision == "fp32":
        return model
    model.eval().requires_grad_(False)
    if precision in HALF_DTYPES:
        cast_half(model, HALF_DTYPES[precision])
    else:
        chosen = int8_encoders(model, int8_min_width)
        quantize_int8(model, within={id(m) for name in chosen for part in encoder_parts(model)[name][1]
                                     for m in part.modules()})
        model.int8_encoders = tuple(chosen)
    model.precision = precision
    return model


def encoder_parts(model: BindingModel) -> dict[str, tuple[int, list[nn.Module]]]:
    """Each encoder of ``model`` by the modality it encodes: (width, the modules that make it).

    ``image`` and ``text`` are the anchor's towers; every other modality is its tokenizer, the
    trunk it runs through (its own, or the shared one) and its head.
    """
    clip = model.anchor.clip
    visual_width = getattr(getattr(clip.visual, "transformer", None), "width", model.anchor.embed_dim)
    text_width = getattr(getattr(clip, "transformer", None), "width", model.anchor.embed_dim)
    parts: dict[str, tuple[int, list[nn.Module]]] = {"image": (int(visual_width), [clip.visual])}
    if hasattr(clip, "transformer"):
        parts["text"] = (int(text_width), [clip.transformer])
    for name in model.tokenizers:
        trunk = model.trunk_for(name)
        parts[name] = (int(trunk.width), [model.tokenizers[name], trunk, model.heads[name]])
    return parts


def int8_encoders(model: BindingModel, min_width: int = INT8_MIN_WIDTH) -> list[str]:
    """The encoders int8 is used for: those at least ``min_width`` wide (``INT8_MIN_WIDTH``: the
    narrowest width at which int8 measured faster enough than fp32 to pay); the others stay fp32."""
    return [name for name, (width, _) in encoder_parts(model).items() if width >= min_width]


def cast_half(model: BindingModel, dtype: torch.dtype) -> None:
    """Every loaded floating-point parameter of ``model`` in ``dtype``, in place; buffers (filter
    banks, fixed position tables) stay fp32 and autocast meets them where they are used."""
    for param in model.parameters():
        if param.is_floating_point() and not param.is_meta:
            param.data = param.data.to(dtype)
    model.compute_dtype = dtype
