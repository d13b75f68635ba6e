"""int8 CPU inference engines side by side: items/s and cosine to fp32, one process, same inputs.

Each encoder (a modality's preprocessed batch → unit embeddings) of a preset with random weights
runs through every engine that is installed:

    torch-fp32        the model as it is (the reference)
    torch-int8-mlp    torch.ao dynamic int8 of the nn.Linear layers alone (attention projections fp32)
    torch-int8        anybind's int8 (binder.precision): attention swapped for ProjectedAttention, every
                      projection int8, one activation scale per item, torch's onednn backend
    torch-int8-fbgemm the same on torch's x86 (fbgemm) backend
    torchao-int8      torchao's int8 dynamic-activation / int8-weight config on the same swapped model
    ort-fp32/-int8    ONNX Runtime on the exported graph, and on its dynamic int8 quantization
    openvino-fp32     OpenVINO on the exported graph (f32 inference precision)
    openvino-int8     OpenVINO on the graph with int8 weights (nncf.compress_weights, INT8_SYM)

torchao, OpenVINO and nncf are not dependencies of anybind: ``pip install torchao openvino nncf``
adds their rows, and an engine that is missing or fails is reported and left out. Engines are
timed in turns (every engine once per round, ``--repeats`` rounds after a warm-up), so that load
from other processes falls on all of them alike. items/s comes from each engine's
fastest round (the least disturbed on a shared machine); the JSON also keeps the median. The CPU
time of the process per item (all threads, fastest round) is printed too: on a machine shared with
other jobs it tracks the work an engine does better than the wall clock does. Usage:

    python benchmarks/int8_engines.py --preset imagebind-test --modalities audio image
    python benchmarks/int8_engines.py --preset imagebind-huge --layers 4 --batches 1 8
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import gc
import json
import logging
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from binder.export import OUTPUT, EncoderGraph, example_batch, export_graph, ort_session, quantize_graph
from binder.model import BindingModel
from binder.precision import apply_precision, project_attention, quantize_int8
from binder.presets import preset_config

Runner = Callable[[torch.Tensor], torch.Tensor]


def build_model(preset: str, modalities: list[str], layers: int | None) -> BindingModel:
    """The preset with random weights, only ``modalities`` bound, every transformer cut to ``layers``."""
    import open_clip

    cfg = preset_config(preset, pretrained=None)
    mods = []
    for m in cfg.modalities:
        if m.name in modalities or m.name in ("image", "text"):
            if layers and m.trunk is not None:
                m = dataclasses.replace(m, trunk=dataclasses.replace(m.trunk, layers=min(layers, m.trunk.layers)))
            mods.append(m)
    arch = copy.deepcopy(open_clip.get_model_config(cfg.anchor.model))
    if layers:
        for tower in ("vision_cfg", "text_cfg"):
            arch[tower]["layers"] = min(layers, arch[tower]["layers"])
    model = BindingModel(dataclasses.replace(cfg, modalities=tuple(mods)), anchor_arch={"model_cfg": arch,
                                                                                        "preprocess_cfg": {}})
    return model.eval().requires_grad_(False)


def torch_runner(model: BindingModel, name: str) -> Runner:
    graph = EncoderGraph(model, name).eval()

    def run(x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return graph(x)
    return run


def linear_only_int8(model: BindingModel) -> BindingModel:
    """torch.ao dynamic int8 of the plain nn.Linear layers, attention modules left as they are."""
    from torch.ao.quantization import quantize_dynamic

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8, inplace=True)
    for sub in model.modules():
        if hasattr(sub, "_packed_params"):
            sub.int8_original_dtype = torch.float32
    return model


def torchao_int8(model: BindingModel) -> BindingModel:
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_

    project_attention(model)
    seen: set[int] = set()  # the shared trunk is the anchor's own blocks: quantize each layer once

    def first_visit(module: torch.nn.Module, fqn: str) -> bool:
        new = isinstance(module, torch.nn.Linear) and id(module) not in seen
        seen.add(id(module))
        return new

    quantize_(model, Int8DynamicActivationInt8WeightConfig(), filter_fn=first_visit)
    return model


def onnx_runners(model: BindingModel, name: str, folder: Path, threads: int) -> dict[str, Runner]:
    """ONNX Runtime and OpenVINO runners (fp32 and int8) on one exported graph."""
    runners: dict[str, Runner] = {}
    fp32, int8 = folder / f"{name}.onnx", folder / f"{name}.int8.onnx"
    export_graph(model, name, fp32, example_batch(model, name))
    quantize_graph(fp32, int8)
    for tag, path in (("ort-fp32", fp32), ("ort-int8", int8)):
        session = ort_session(path, threads)
        runners[tag] = lambda x, s=session: torch.from_numpy(s.run([OUTPUT], {"input": x.numpy()})[0])
    try:
        runners.update(openvino_runners(fp32, threads))
    except ImportError as exc:
        print(f"skipping openvino: {exc}", file=sys.stderr)
    return runners


def openvino_runners(path: Path, threads: int) -> dict[str, Runner]:
    import openvino as ov

    core = ov.Core()
    config = {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"}
    runners: dict[str, Runner] = {}
    models = {"openvino-fp32": core.read_model(str(path))}
    try:
        import nncf

        models["openvino-int8"] = nncf.compress_weights(core.read_model(str(path)),
                                                         mode=nncf.CompressWeightsMode.INT8_SYM)
    except ImportError as exc:
        print(f"skipping openvino-int8: {exc}", file=sys.stderr)
    for tag, ov_model in models.items():
        compiled = core.compile_model(ov_model, "CPU", config)
        runners[tag] = lambda x, c=compiled: torch.from_numpy(np.asarray(c(x.numpy())[0]))
    return runners


def engines(preset: str, name: str, layers: int | None, folder: Path, threads: int,
            skip: set[str]) -> dict[str, Runner]:
    """Every installed engine's runner for modality ``name`` (each on its own copy of the model)."""
    base = build_model(preset, [name], layers)
    out = {"torch-fp32": torch_runner(base, name)}
    makers: dict[str, Callable[[], BindingModel]] = {
        "torch-int8-mlp": lambda: linear_only_int8(copy.deepcopy(base)),
        "torch-int8": lambda: apply_precision(copy.deepcopy(base), "int8"),
        "torch-int8-fbgemm": lambda: quantize_int8(copy.deepcopy(base), "x86"),
        "torchao-int8": lambda: torchao_int8(copy.deepcopy(base)),
    }
    for tag, make in makers.items():
        if tag in skip:
            continue
        try:
            out[tag] = torch_runner(make(), name)
        except Exception as exc:  # an engine that fails is reported and left out, the others still run
            print(f"skipping {tag}: {exc}", file=sys.stderr)
    if "onnx" not in skip:
        out.update(onnx_runners(base, name, folder, threads))
    return out


def measure(runners: dict[str, Runner], x: torch.Tensor, repeats: int) -> dict[str, dict]:
    """Best and median seconds per call and cosine to torch-fp32 per engine, timed in interleaved rounds."""
    outs = {tag: run(x) for tag, run in runners.items()}  # warm-up, and the outputs compared
    times: dict[str, list[float]] = {tag: [] for tag in runners}
    cpu: dict[str, list[float]] = {tag: [] for tag in runners}
    for _ in range(repeats):
        for tag, run in runners.items():
            t0, c0 = time.perf_counter(), time.process_time()
            run(x)
            times[tag].append(time.perf_counter() - t0)
            cpu[tag].append(time.process_time() - c0)
    ref = outs["torch-fp32"]
    result = {}
    for tag in runners:
        cos = torch.nn.functional.cosine_similarity(outs[tag].float(), ref, dim=-1)
        result[tag] = {"seconds": min(times[tag]), "median_seconds": statistics.median(times[tag]),
                       "cpu_seconds": min(cpu[tag]), "min_cosine": float(cos.min()), "mean_cosine": float(cos.mean())}
    return result


def run(args: argparse.Namespace) -> list[dict]:
    torch.set_num_threads(args.threads)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.modalities:
            runners = engines(args.preset, name, args.layers, Path(tmp), args.threads, set(args.skip))
            model = build_model(args.preset, [name], args.layers)
            for batch in args.batches:
                x = example_batch(model, name, batch)
                for tag, r in measure(runners, x, args.repeats).items():
                    rows.append({"modality": name, "batch": batch, "engine": tag, "items_s": batch / r["seconds"],
                                 **r})
                base = next(r["items_s"] for r in rows if r["modality"] == name and r["batch"] == batch
                            and r["engine"] == "torch-fp32")
                base_cpu = next(r["cpu_seconds"] for r in rows if r["modality"] == name and r["batch"] == batch
                                and r["engine"] == "torch-fp32")
                for r in rows:
                    if r["modality"] == name and r["batch"] == batch:
                        r["speedup"] = r["items_s"] / base
                        r["cpu_speedup"] = base_cpu / r["cpu_seconds"]
                print_rows([r for r in rows if r["modality"] == name and r["batch"] == batch])
            del runners, model
            gc.collect()
    return rows


def print_rows(rows: list[dict]) -> None:
    for r in rows:
        cpu_ms = r["cpu_seconds"] / r["batch"] * 1e3
        print(f"| {r['modality']} | {r['batch']} | {r['engine']} | {r['items_s']:.2f} | {r['speedup']:.2f}× | "
              f"{cpu_ms:.0f} | {r['cpu_speedup']:.2f}× | {r['min_cosine']:.5f} |", flush=True)


def main() -> None:
    logging.getLogger().setLevel(logging.ERROR)  # quantizers' advice and progress tables
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="imagebind-test")
    parser.add_argument("--modalities", nargs="+", default=["audio", "image"])
    parser.add_argument("--layers", type=int, default=None, help="Cut every transformer to this many blocks.")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip", nargs="*", default=[], help="Engines to leave out (torch-int8-mlp, torchao-int8, "
                                                              "onnx).")
    parser.add_argument("--json", type=Path, default=None, help="Also write the rows here.")
    args = parser.parse_args()
    print(f"{args.preset}, layers {args.layers or 'all'}, {args.threads} threads, random weights")
    print("| modality | batch | engine | items/s | vs torch-fp32 | CPU ms/item | CPU vs torch-fp32 | min cosine |\n"
          "|---|---:|---|---:|---:|---:|---:|---:|")
    rows = run(args)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"preset": args.preset, "layers": args.layers, "threads": args.threads,
                                         "repeats": args.repeats, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
