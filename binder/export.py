"""Export a BindingModel as ONNX graphs: one per modality (the text tower included), checked by ONNX Runtime.

Each graph maps the modality's preprocessed batch (``input``: ``(batch, *input_shape)``, float32;
int64 token ids for text) to unit embeddings (``vectors``: ``(batch, embed_dim)``), with a
dynamic batch axis. ``anybind_onnx.json`` beside the graphs says what each graph takes and
gives, the modality's preprocessing options, and how far ONNX Runtime's output was from
torch's on a test batch. ``int8`` graphs are ONNX Runtime's dynamic quantization of the fp32
graph (weights of every matrix product int8 per output channel, activations quantized on the fly).

Every file is written in a temp folder beside the output and renamed into place, graphs before
the JSON, so a reader that finds the JSON finds whole graphs. Every path the JSON records (the
model folder, a ``local-dir:`` anchor, a file option such as a codebook) is absolute; the graphs
are named by file name, beside the JSON. The exporters' own warnings and log lines (torch.onnx,
onnxscript's optimizer, ONNX Runtime's quantizer) are silenced while they run.
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
import shutil
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from binder.anchor import quiet_root_logger
from binder.config import EXPORT_PRECISIONS, file_options
from binder.errors import AnybindError
from binder.io import atomic_write_json, fsync_dir, fsync_file, temp_name
from binder.precision import PrecisionError, check_precision

if TYPE_CHECKING:
    from binder.model import BindingModel

ONNX_EXTRA = "pip install 'anybind[onnx]'"
MANIFEST = "anybind_onnx.json"
FORMAT = "anybind-onnx"
FORMAT_VERSION = 1
OPSET = 18
INPUT, OUTPUT = "input", "vectors"  # "embedding" would clash with node names inside the graphs
TOLERANCE = {"fp32": 1e-4, "int8": 0.05}  # max |onnx - torch fp32| over a test batch of unit vectors
EXTERNAL_DATA_BYTES = 1 << 30  # larger graphs keep their weights in NAME.onnx.data (protobuf caps at 2 GiB)
CHECK_BATCH = 3  # rows of the test batch; the graph is exported at batch 2, so this also tests the dynamic axis
# Loggers of the exporting libraries, quiet (errors only) during an export: onnxscript's optimizer
# warns "Skipping constant folding for op Split with multiple outputs" for every attention pooling head.
EXPORTER_LOGGERS = ("onnxscript", "onnx_ir", "onnx", "onnxruntime", "torch.onnx", "torch.export", "torch._export",
                    "torch._dynamo", "torch.fx")
LOCAL_DIR = "local-dir:"


class ExportError(AnybindError):
    """A graph could not be exported, or ONNX Runtime's output does not match torch's."""


def require_onnx() -> None:
    """Raise an ``ExportError`` naming the extra to install when onnx / onnxruntime are missing."""
    for package in ("onnx", "onnxruntime", "onnxscript"):
        try:
            __import__(package)
        except ImportError:
            raise ExportError(f"ONNX export needs the {package!r} package: {ONNX_EXTRA}") from None


class EncoderGraph(nn.Module):
    """One modality's whole encoder as a module: preprocessed batch → unit embeddings (no checks)."""

    def __init__(self, model: BindingModel, name: str):
        super().__init__()
        self.model, self.name = model, name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.encode_raw(self.name, x)


def example_batch(model: BindingModel, name: str, batch: int = CHECK_BATCH, seed: int = 0) -> torch.Tensor:
    """A test batch for ``name``: token ids of short captions for text, else standard normal values.

    The second row of a 2-D input ends in NaN rows (how speech units and time series mark padding)
    when the model embeds such a row finitely, so the padding path of the graph is exercised too.
    """
    modality = model.modality(name)
    if modality.tower == "text":
        return model.anchor.tokenize([f"a photo of {i} dogs in the rain" for i in range(batch)])
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, *modality.input_shape(), generator=g)
    if x.dim() == 3 and batch > 1:
        padded = x.clone()
        padded[1, x.shape[1] // 2:] = float("nan")
        with torch.no_grad():
            z = model.encode_raw(name, padded[1:2])
        if bool(torch.isfinite(z).all()):
            x = padded
    return x


@contextlib.contextmanager
def quiet_exporters() -> Iterator[None]:
    """No warnings and only errors from the exporters' loggers while inside: what they say about
    their own choices (constant folding, pre-processing advice) is not the user's to act on; a
    failed export still raises, and anybind reports it."""
    loggers = [logging.getLogger(name) for name in EXPORTER_LOGGERS]
    levels = [logger.level for logger in loggers]
    try:
        with warnings.catch_warnings(), quiet_root_logger():
            warnings.simplefilter("ignore")
            for logger in loggers:
                logger.setLevel(logging.ERROR)
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def export_graph(model: BindingModel, name: str, path: Path, example: torch.Tensor) -> None:
    """Write ``name``'s fp32 encoder to ``path`` (weights to ``path.data`` when they are large)."""
    graph = EncoderGraph(model, name).eval()
    size = sum(p.numel() * p.element_size() for p in graph.parameters())
    batch = torch.export.Dim("batch", min=1, max=1 << 16)
    try:
        with quiet_exporters(), torch.no_grad():
            torch.onnx.export(graph, (example[:2],), str(path), dynamo=True, opset_version=OPSET,
                              input_names=[INPUT], output_names=[OUTPUT], dynamic_shapes={"x": {0: batch}},
                              external_data=size > EXTERNAL_DATA_BYTES, optimize=True, verbose=False)
    except Exception as exc:  # the exporter raises many kinds; all mean the same thing here
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise ExportError(f"{name}: torch could not export this encoder to ONNX ({type(exc).__name__}: {first})") \
            from None


def quantize_graph(src: Path, dst: Path) -> None:
    """ONNX Runtime's dynamic int8 quantization of every weight matrix product of ``src`` into ``dst``.

    Only products with a constant weight are quantized (attention's q·k and p·v stay fp32, as in
    torch's int8), weights per output channel; embedding tables and convolutions stay fp32.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    large = src.with_name(src.name + ".data").exists()
    with quiet_exporters():  # the quantizer logs advice about static quantization's pre-processing
        quantize_dynamic(src, dst, op_types_to_quantize=["MatMul", "Gemm"], per_channel=True,
                         weight_type=QuantType.QInt8, use_external_data_format=large,
                         extra_options={"MatMulConstBOnly": True})




def ort_session(path: Path, threads: int | None = None) -> Any:
    """An ONNX Runtime CPU session for ``path`` (``threads`` intra-op threads, default torch's count)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or torch.get_num_threads()
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def check_graph(session: Any, reference: torch.Tensor, example: torch.Tensor, name: str,
                tolerance: float) -> dict[str, float]:
    """Max abs difference and min cosine of ONNX Runtime's output to torch's; ExportError above tolerance."""
    out = torch.from_numpy(session.run([OUTPUT], {INPUT: example.numpy()})[0])
    if out.shape != reference.shape or not bool(torch.isfinite(out).all()):
        raise ExportError(f"{name}: the ONNX graph gave {tuple(out.shape)} values (finite: "
                          f"{bool(torch.isfinite(out).all())}) where torch gives {tuple(reference.shape)}")
    diff = float((out - reference).abs().max())
    cosine = float((out * reference).sum(-1).min())
    if diff > tolerance:
        raise ExportError(f"{name}: ONNX Runtime's output differs from torch's by {diff:.3g} "
                          f"(tolerance {tolerance:g}; min cosine {cosine:.6f})")
    return {"max_abs_diff": diff, "min_cosine": cosine, "tolerance": tolerance}


def _json_options(modality: Any) -> dict[str, Any]:
    """A modality's preprocessing options as plain JSON values, a file an option names as an absolute path."""
    options = modality.options
    values = asdict(options) if is_dataclass(options) and not isinstance(options, type) else dict(vars(options))
    for key in file_options(type(options)):
        if isinstance(values.get(key), (str, os.PathLike)):
            values[key] = os.path.abspath(values[key])
    return values


def absolute_anchor(model: str) -> str:
    """An anchor name as it is; a ``local-dir:`` anchor with an absolute path (against the current directory,
    from which a relative one was opened)."""
    if not model.startswith(LOCAL_DIR):
        return model
    return LOCAL_DIR + os.path.abspath(os.path.expanduser(model[len(LOCAL_DIR):]))


def absolute_source(source: str | os.PathLike[str] | None) -> str | None:
    """The exported model as the JSON records it: a folder as an absolute path, a name (a preset) as it is."""
    if source is None:
        return None
    if isinstance(source, os.PathLike) or os.path.isdir(source):
        return os.path.abspath(os.fspath(source))
    return source


def _describe(model: BindingModel, name: str, example: torch.Tensor, files: list[str]) -> dict[str, Any]:
    """What one graph takes and gives, and the preprocessing that makes its input."""
    modality = model.modality(name)
    return {
        "file": files[0], "files": files, "tower": modality.tower,
        "input": {"name": INPUT, "dtype": str(example.dtype).removeprefix("torch."),
                  "shape": ["batch", *example.shape[1:]]},
        "output": {"name": OUTPUT, "dtype": "float32", "shape": ["batch", model.embed_dim], "unit_norm": True},
        "extensions": list(modality.extensions), "options": _json_options(modality),
    }


def _export_one(model: BindingModel, name: str, staged: Path, precision: str, tolerance: float) -> dict[str, Any]:
    """Export, (quantize,) and check one modality's graph into ``staged``; its manifest entry."""
    example = example_batch(model, name)
    with torch.no_grad():
        reference = EncoderGraph(model, name).eval()(example)
    path = staged / f"{name}.onnx"
    if precision == "int8":
        fp32 = staged / "fp32" / path.name
        fp32.parent.mkdir(exist_ok=True)
        export_graph(model, name, fp32, example)
        quantize_graph(fp32, path)
        shutil.rmtree(fp32.parent)
    else:
        export_graph(model, name, path, example)
    files = [p.name for p in (path, path.with_name(path.name + ".data")) if p.exists()]
    check = check_graph(ort_session(path), reference, example, name, tolerance)
    return {**_describe(model, name, example, files), "check": check}


def _commit(staged: Path, out: Path) -> None:
    """Move staged files into ``out``: weight data first, then graphs (each rename is atomic)."""
    files = sorted((p for p in staged.iterdir() if p.is_file()), key=lambda p: p.suffix == ".onnx")
    for f in files:
        fsync_file(f)
        os.replace(f, out / f.name)
    fsync_dir(out)


def check_tolerance(tolerance: float | None) -> None:
    """A parity tolerance must be a finite number >= 0: NaN or infinity would let any graph pass."""
    if tolerance is None:
        return
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not math.isfinite(tolerance) \
            or tolerance < 0:
        raise ExportError(f"tolerance must be a finite number >= 0, got {tolerance!r}")


def export_onnx(model: BindingModel, out_dir: str | os.PathLike, precision: str = "fp32",
                tolerance: float | None = None, source: str | os.PathLike[str] | None = None,
                modalities: Sequence[str] | None = None) -> dict[str, Any]:
    """Write one checked ONNX graph per modality of ``model`` (text included) and ``anybind_onnx.json``.

    ``precision="int8"`` writes ONNX Runtime's dynamic int8 quantization of each graph. Each graph
    is run by ONNX Runtime on a test batch and compared with the torch fp32 model's output: above
    ``tolerance`` (max abs difference; default ``TOLERANCE[precision]``) it is an ``ExportError``
    and nothing is written. ``source`` is the model's folder (recorded as an absolute path) or name.
    Returns the manifest.
    """
    require_onnx()
    if check_precision(precision) not in EXPORT_PRECISIONS:
        raise PrecisionError(f"an exported graph is {' or '.join(EXPORT_PRECISIONS)}, not {precision!r}")
    check_tolerance(tolerance)
    names = list(modalities) if modalities else list(model.modalities)
    for name in names:
        model.modality(name)  # an unknown name fails before any work
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tol = TOLERANCE[precision] if tolerance is None else tolerance
    model.eval()
    staged = temp_name(out / "export")
    staged.mkdir()
    try:
        with quiet_exporters():
            entries = {name: _export_one(model, name, staged, precision, tol) for name in names}
        _commit(staged, out)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    manifest = {"format": FORMAT, "format_version": FORMAT_VERSION, "precision": precision, "opset": OPSET,
                "model": absolute_source(source), "embed_dim": model.embed_dim,
                "anchor": absolute_anchor(model.config.anchor.model),
                "anchor_preprocess": model.anchor.preprocess_cfg,
                "text_context_length": int(getattr(model.anchor.clip, "context_length", 0)) or None,
                "modalities": entries}
    atomic_write_json(out / MANIFEST, manifest, default=str)
    return manifest
