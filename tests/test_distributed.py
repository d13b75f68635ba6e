"""Training on several ranks (gloo, CPU): the same binding as one process with the same global batch.

Two ranks are started the way torchrun starts them (RANK, WORLD_SIZE, LOCAL_RANK in the
environment) and meet through a file ($ANYBIND_INIT_METHOD) with gloo on the loopback interface.
"""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from sklearn.datasets import load_digits

from binder.errors import AnybindError, TrainingError
from binder.model import drop_tokens
from binder.train.amp import Precision
from binder.train.distributed import Ranks, pick_device
from binder.train.recipe import load_recipe
from binder.train.trainer import Trainer

HERE = Path(__file__).parent
WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
BAD_ROW = 5  # a truncated thermal file: the rank holding it keeps fewer rows than the other


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """64 digits as image + depth pairs and 16 as image + thermal pairs (one thermal file broken)."""
    root = tmp_path_factory.mktemp("ddp_digits")
    d = load_digits()
    for split, rows in (("train", range(64)), ("test", range(64, 94))):
        depth, thermal = [], []
        for i in rows:
            Image.fromarray((d.images[i] / 16 * 255).astype(np.uint8)).resize((32, 32)).convert("RGB").save(
                root / f"{i}.png")
            np.save(root / f"{i}.depth.npy", (1.0 + d.images[i] / 16).astype(np.float32))
            np.save(root / f"{i}.thermal.npy", (d.images[i][::-1] / 16).astype(np.float32))
            pair = {"image": f"{i}.png", "label": int(d.target[i])}
            depth.append({"modality": "depth", "path": f"{i}.depth.npy", **pair})
            thermal.append({"modality": "thermal", "path": f"{i}.thermal.npy", **pair})
        thermal = thermal[:16]  # every thermal step takes all 16, so the broken one is in each
        for name, rows_ in (("depth", depth), ("thermal", thermal)):
            (root / f"{name}.{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows_))
    (root / f"{BAD_ROW}.thermal.npy").write_bytes((root / f"{BAD_ROW}.thermal.npy").read_bytes()[:40])
    return root


def write_recipe(root: Path, out: Path, test: bool = False, **train) -> Path:
    settings = {"steps": 4, "batch_size": 16, "warmup_steps": 1, "checkpoint_every": 2, "memory_size": 32,
                "token_drop": 0.25, "workers": 0, "threads": 1, "lr": 2e-3, **train}
    lines = ["[anchor]", 'model = "anybind-tiny"', "[train]", f'root = "{root}"', f'out = "{out}"',
             f'cache_dir = "{out.parent}/cache"']
    lines += [f"{k} = {json.dumps(v)}" for k, v in settings.items()]
    for name in ("depth", "thermal"):
        lines += ["[[modality]]", f'name = "{name}"', f'train = "{root}/{name}.train.jsonl"',
                  "options = { image_size = 32, patch = 8 }"]
        if test and name == "depth":
            lines.append(f'test = "{root}/depth.test.jsonl"')
    lines += ["[eval]", f"classes = {json.dumps(WORDS)}", 'templates = ["the digit {}"]']
    path = out.parent / f"{out.name}.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def launch(command: list[str], tmp: Path, world_size: int = 2, timeout: float = 400) -> list[tuple[int, str, str]]:
    """Start ``world_size`` ranks of ``command`` as torchrun would; (returncode, stdout, stderr) per rank.

    A rank that fails ends the others at once (they would otherwise wait for it at a collective)."""
    rendezvous = tmp / f"rendezvous-{time.monotonic_ns()}"
    procs = []
    for rank in range(world_size):
        env = {**os.environ, "RANK": str(rank), "WORLD_SIZE": str(world_size), "LOCAL_RANK": str(rank),
               "LOCAL_WORLD_SIZE": str(world_size), "ANYBIND_INIT_METHOD": f"file://{rendezvous}",
               "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1"}
        procs.append(subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                      cwd=HERE.parent))
    deadline = time.monotonic() + timeout
    while any(p.poll() is None for p in procs):
        if time.monotonic() > deadline or any(p.poll() not in (None, 0) for p in procs):
            for p in procs:
                p.kill()
            break
        time.sleep(0.2)
    results = [(p.wait(), *p.communicate()) for p in procs]
    for rank, (code, _, err) in enumerate(results):
        assert code == 0, f"rank {rank} exited {code}:\n{err[-3000:]}"
    return results


@pytest.fixture(scope="module")
def two_ranks(world, tmp_path_factory) -> Path:
    """One launch of two ranks running five recipes (tests/ddp_worker.py): its output folder."""
    tmp = tmp_path_factory.mktemp("ddp_runs")
    jobs = [f"first={write_recipe(world, tmp / 'a')}",
            f"plain={write_recipe(world, tmp / 'b', accumulate=2)}",
            f"resume={write_recipe(world, tmp / 'c', accumulate=2)}",
            f"first={write_recipe(world, tmp / 'd', loss='siglip')}",
            f"first={write_recipe(world, tmp / 'e', soft_targets=0.05)}"]
    launch([sys.executable, str(HERE / "ddp_worker.py"), str(tmp), *jobs], tmp)
    return tmp


def trainable(trainer: Trainer) -> dict[str, torch.Tensor]:
    return {n: p.detach() for n, p in trainer.model.named_parameters() if p.requires_grad}


def assert_close(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], atol: float = 1e-5) -> None:
    assert a.keys() == b.keys() and a
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=atol, rtol=0, msg=lambda m, n=name: f"{n}: {m}")


@pytest.mark.parametrize(("run", "train"), [("a", {}), ("d", {"loss": "siglip"}), ("e", {"soft_targets": 0.05})])
def test_two_ranks_give_the_loss_gradients_and_weights_of_one_process(world, two_ranks, tmp_path, run, train):
    """InfoNCE (one-hot or soft labels) gathers every rank's rows; SigLIP adds up each rank's rows
    against all targets."""
    one = Trainer(load_recipe(write_recipe(world, tmp_path / run, **train)), progress=False)
    first = one.train_step(0)
    grads = {n: p.grad for n, p in one.model.named_parameters() if p.grad is not None}
    one.step = 1
    one.run()
    ddp_grads = [load_file(str(two_ranks / f"{run}.grads.{r}.safetensors")) for r in (0, 1)]
    for r in (0, 1):
        assert abs(json.loads((two_ranks / f"{run}.loss.{r}.json").read_text()) - first) < 1e-5
    assert_close(ddp_grads[0], grads)
    assert_close(ddp_grads[1], ddp_grads[0], atol=0)  # every rank steps with the same averaged gradient
    final = [load_file(str(two_ranks / f"{run}.final.{r}.safetensors")) for r in (0, 1)]
    assert_close(final[0], trainable(one))
    assert_close(final[1], final[0], atol=0)
    assert (two_ranks / run / "model").is_dir() and (two_ranks / run / "checkpoint").is_dir()


def test_resume_on_two_ranks_is_bit_exact_and_accumulation_keeps_the_binding(two_ranks):
    plain, resumed, unsplit = (load_file(str(two_ranks / f"{x}.final.0.safetensors")) for x in "bca")
    assert_close(resumed, plain, atol=0)
    assert_close(load_file(str(two_ranks / "c.final.1.safetensors")), plain, atol=0)
    assert_close(plain, unsplit)  # 2 micro-batches per rank: the same gradients as one batch


def test_accumulation_gives_the_gradient_of_the_whole_batch(world, tmp_path):
    grads = []
    for k in (1, 3):
        trainer = Trainer(load_recipe(write_recipe(world, tmp_path / f"acc{k}", accumulate=k)), progress=False)
        losses = [trainer.train_step(s) for s in range(3)]  # depth, thermal (with the broken file), depth
        grads.append(({n: p.grad.clone() for n, p in trainer.model.named_parameters() if p.grad is not None}, losses))
    assert_close(grads[1][0], grads[0][0])
    assert np.allclose(grads[1][1], grads[0][1], atol=1e-5)


def test_cli_train_under_two_ranks_writes_once(world, tmp_path):
    recipe = write_recipe(world, tmp_path / "cli", test=True, steps=2)
    results = launch([sys.executable, "cli.py", "train", str(recipe), "--quiet", "--format", "json"],
                     tmp_path)
    (_, out0, err0), (_, out1, err1) = results
    metrics = json.loads(out0)
    assert metrics["depth"]["items"] == 30 and 0 <= metrics["depth"]["zero_shot_top1"] <= 1
    assert out1 == "" and "model saved" not in err1  # rank 1 trains, rank 0 reports
    assert f"skipped {world / f'{BAD_ROW}.thermal.npy'}" in err0 + err1  # by the rank whose share held it
    assert (tmp_path / "cli" / "model" / "model.safetensors").is_file()


def test_token_drop_of_a_split_batch_is_the_drop_of_the_whole():
    tokens = torch.randn(6, 9, 4)
    whole, _ = drop_tokens(tokens, None, 0.5, torch.Generator().manual_seed(3))
    parts = [drop_tokens(tokens[lo:hi], None, 0.5, torch.Generator().manual_seed(3), window=(lo, 6))[0]
             for lo, hi in ((0, 2), (2, 5), (5, 6))]
    assert torch.equal(torch.cat(parts), whole)
    with pytest.raises(ValueError, match="window"):
        drop_tokens(tokens[:4], None, 0.5, None, window=(3, 6))


def test_precision_is_fp32_on_cpu_and_half_precision_there_is_an_error():
    cpu = torch.device("cpu")
    assert Precision.resolve("auto", cpu).name == "fp32"
    with pytest.raises(TrainingError, match="needs a CUDA device"):
        Precision.resolve("bf16", cpu)
    with pytest.raises(AnybindError, match="train.precision"):
        load_recipe(write_recipe(Path("/nonexistent"), Path("/tmp/x"), precision="fp8"))


@pytest.mark.parametrize("name", ["bf16", "fp16"])
def test_half_precision_steps_stay_near_fp32(world, tmp_path, name):
    """The autocast and gradient-scaler plumbing, exercised on CPU autocast (users get it on GPUs)."""
    losses = {}
    for precision in ("fp32", name):
        trainer = Trainer(load_recipe(write_recipe(world, tmp_path / precision, steps=2)), progress=False)
        trainer.precision = Precision(precision, torch.device("cpu"))
        trainer.runner.precision = trainer.precision
        trainer.runner.scaler = trainer.precision.scaler()
        losses[precision] = [trainer.train_step(s) for s in range(2)]
        assert all(torch.isfinite(p).all() for p in trainer.model.parameters())
    assert np.allclose(losses[name], losses["fp32"], atol=0.05)


def test_bad_rank_settings_are_clear_errors(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(TrainingError, match="WORLD_SIZE"):
        Ranks.from_env()
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(TrainingError, match="do not fit"):
        Ranks.from_env()
    if not torch.cuda.is_available():
        with pytest.raises(TrainingError, match="no CUDA device"):
            pick_device("cuda")
    with pytest.raises(TrainingError, match="train.device"):
        pick_device("tpu")


@pytest.mark.parametrize("accumulate", [1, 2])
def test_a_diverged_step_is_a_clear_error(world, tmp_path, accumulate):
    trainer = Trainer(load_recipe(write_recipe(world, tmp_path / "nan", accumulate=accumulate)), progress=False)
    with torch.no_grad():
        next(trainer.model.heads["depth"].parameters()).fill_(float("nan"))
    with pytest.raises(TrainingError, match="diverged"):
        trainer.train_step(0)
