"""The binding trainer, its loss, recipes, resumable checkpoints, and the anchor trainer."""
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from PIL import Image
from sklearn.datasets import load_digits

from binder.cli import app
from binder.config import AnchorConfig, BindConfig, ModalityConfig
from binder.errors import AnybindError
from binder.model import BindingModel, drop_tokens
from binder.train.anchor_train import load_anchor_recipe, train_anchor
from binder.train.data import anchor_targets, read_pairs
from binder.train.evaluate import recall_at_k
from binder.train.loss import BindingLoss, SoftTargetLoss
from binder.train.recipe import load_recipe
from binder.train.trainer import Trainer

WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


@pytest.fixture(scope="module")
def digits_world(tmp_path_factory) -> Path:
    """Digits as images plus a depth-like .npy of each, with train/test manifests."""
    root = tmp_path_factory.mktemp("digits")
    d = load_digits()
    for split, rows in (("train", range(0, 160)), ("test", range(160, 220))):
        pairs, images = [], []
        for i in rows:
            img = Image.fromarray((d.images[i] / 16 * 255).astype(np.uint8)).resize((32, 32)).convert("RGB")
            img.save(root / f"{i}.png")
            np.save(root / f"{i}.depth.npy", (1.0 + d.images[i] / 16).astype(np.float32))
            label, text = int(d.target[i]), f"the digit {WORDS[d.target[i]]}"
            pairs.append({"modality": "depth", "path": f"{i}.depth.npy", "image": f"{i}.png",
                          "label": label, "text": text})
            images.append({"modality": "image", "path": f"{i}.png", "label": label, "text": text})
        (root / f"depth.{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in pairs))
        (root / f"images.{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in images))
    return root


@pytest.fixture(scope="module")
def trained_anchor(digits_world, tmp_path_factory) -> tuple[Path, dict]:
    """A tiny anchor trained on the fixture's digits (random anchors map every image to ~one point)."""
    folder = tmp_path_factory.mktemp("anchor")
    recipe = folder / "anchor.toml"
    recipe.write_text("\n".join([
        "[train]", 'model = "anybind-tiny"', f'train = "{digits_world}/images.train.jsonl"',
        f'test = "{digits_world}/images.train.jsonl"', f'out = "{folder}/anchor"', "epochs = 40", "batch_size = 32",
        "lr = 1e-3", "augment = false", "warmup_steps = 10",
        "[eval]", f"classes = {json.dumps(WORDS)}", 'templates = ["the digit {}"]']) + "\n")
    cfg, ev = load_anchor_recipe(recipe)
    return folder / "anchor", train_anchor(cfg, ev, progress=False)


def write_recipe(root: Path, out: Path, anchor: str = "anybind-tiny", **train) -> Path:
    settings = {"steps": 6, "batch_size": 16, "warmup_steps": 2, "checkpoint_every": 3, "memory_size": 48,
                "token_drop": 0.25, **train}
    lines = ["[anchor]", f'model = "{anchor}"', "[train]", f'root = "{root}"', f'out = "{out}"',
             f'cache_dir = "{out}/cache"']
    lines += [f"{k} = {json.dumps(v)}" for k, v in settings.items()]
    lines += ["[[modality]]", 'name = "depth"', f'train = "{root}/depth.train.jsonl"',
              f'test = "{root}/depth.test.jsonl"', "options = { image_size = 32, patch = 8 }",
              "[eval]", f"classes = {json.dumps(WORDS)}", 'templates = ["the digit {}", "a handwritten {}"]',
              f'image_gallery = "{root}/images.test.jsonl"']
    path = out.parent / f"{out.name}.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_loss_matches_symmetric_cross_entropy():
    torch.manual_seed(0)
    z, t = F.normalize(torch.randn(8, 16), dim=-1), F.normalize(torch.randn(8, 16), dim=-1)
    ids, scale = torch.arange(8), torch.tensor(12.0)
    expected = (F.cross_entropy(scale * z @ t.T, ids) + F.cross_entropy(scale * t @ z.T, ids)) / 2
    assert torch.allclose(BindingLoss(16)(z, t, ids, scale), expected, atol=1e-5)


def test_loss_counts_shared_targets_as_positives():
    torch.manual_seed(1)
    t = F.normalize(torch.randn(2, 16), dim=-1)
    z = t[[0, 0, 1, 1]]  # two items per target, each exactly on its target
    distinct = BindingLoss(16)(z, t[[0, 0, 1, 1]], torch.arange(4), torch.tensor(20.0))
    shared = BindingLoss(16)(z, t[[0, 0, 1, 1]], torch.tensor([0, 0, 1, 1]), torch.tensor(20.0))
    assert shared < distinct


def test_memory_queue_adds_negatives_across_batches():
    torch.manual_seed(2)
    loss = BindingLoss(16, memory_size=32)
    z, t = F.normalize(torch.randn(8, 16), dim=-1), F.normalize(torch.randn(8, 16), dim=-1)
    first = loss(z, t, torch.arange(8), torch.tensor(10.0))
    second = loss(z, t, torch.arange(8, 16), torch.tensor(10.0))  # same vectors, queue now holds 8 more
    assert second > first


def test_token_drop_keeps_cls_and_real_tokens_first():
    tokens = torch.arange(2 * 9, dtype=torch.float32).view(2, 9, 1).expand(2, 9, 4).clone()
    pad = torch.zeros(2, 9, dtype=torch.bool)
    pad[:, 5:] = True
    out, mask = drop_tokens(tokens, pad, 0.5, torch.Generator().manual_seed(0))
    assert out.shape == (2, 5, 4) and torch.equal(out[:, 0], tokens[:, 0])
    assert not mask.any()  # 4 real body tokens and 4 kept: padding went first


def test_targets_are_cached_and_reused(digits_world, tmp_path):
    model = BindingModel.default(["image", "depth"])
    records = read_pairs(digits_world / "depth.train.jsonl")[:20]
    keys = [r.image for r in records]
    t1, ids = anchor_targets(model.anchor, keys, "image", tmp_path, image_modality=model.modalities["image"])
    cached = list(tmp_path.glob("targets-image-*.safetensors"))
    assert len(cached) == 1 and t1.shape == (len(set(keys)), model.embed_dim)
    t2, _ = anchor_targets(model.anchor, keys, "image", tmp_path, image_modality=None)  # no modality: must hit cache
    assert torch.equal(t1, t2) and torch.equal(t1[ids[3]], t1[ids][3])


def test_training_lowers_loss_and_reports_metrics(digits_world, trained_anchor, tmp_path):
    rec = load_recipe(write_recipe(digits_world, tmp_path / "run", f"local-dir:{trained_anchor[0]}", steps=40,
                                   token_drop=0.0, memory_size=0, checkpoint_every=40, lr=3e-3))
    trainer = Trainer(rec, progress=False)
    early = np.mean([trainer.train_step(s) for s in range(5)])
    for s in range(5, 35):
        trainer.train_step(s)
    late = np.mean([trainer.train_step(s) for s in range(35, 40)])
    assert late < early - 0.2
    trainer.step = 40
    metrics = trainer.evaluate()["depth"]
    assert metrics["items"] == 60 and set(metrics["to_image"]) == {"R@1", "R@5", "R@10"}
    assert 0 <= metrics["zero_shot_top1"] <= 1 and metrics["chance_top1"] >= 0.1


@pytest.mark.parametrize("soft_targets", [0.0, 0.05])  # one-hot InfoNCE, and soft labels with their queue
def test_killed_run_resumes_to_the_same_weights(digits_world, tmp_path, soft_targets):
    recipe = write_recipe(digits_world, tmp_path / "run", soft_targets=soft_targets)
    unbroken = Trainer(load_recipe(recipe), progress=False)
    assert isinstance(unbroken.losses["depth"], SoftTargetLoss if soft_targets else BindingLoss)
    unbroken.run()
    want = {k: v.clone() for k, v in unbroken.model.state_dict().items()}
    shutil.rmtree(tmp_path / "run")
    assert Trainer(load_recipe(recipe), progress=False).run(stop_after=5) == {"stopped_at": 5}  # "killed" after 5
    resumed = Trainer(load_recipe(recipe), progress=False)
    resumed.run(resume=True)
    assert resumed.step == 6
    for k, v in resumed.model.state_dict().items():
        assert torch.equal(v, want[k]), k
    model = BindingModel.load(tmp_path / "run" / "model")
    assert torch.equal(model.state_dict()["heads.depth.proj.weight"], want["heads.depth.proj.weight"])


def test_resume_without_checkpoint_is_a_clear_error(digits_world, tmp_path):
    with pytest.raises(AnybindError, match="no checkpoint"):
        Trainer(load_recipe(write_recipe(digits_world, tmp_path / "none")), progress=False).run(resume=True)


def test_recipe_errors_name_the_section(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[train]\nstepz = 3\n[[modality]]\nname = "depth"\ntrain = "x.jsonl"\n')
    with pytest.raises(AnybindError, match=r"\[train\].*stepz"):
        load_recipe(bad)
    bad.write_text('[[modality]]\nname = "depth"\ntrain = "x.jsonl"\ntarget = "audio"\n')
    with pytest.raises(AnybindError, match="target"):
        load_recipe(bad)


def test_recall_at_k_by_label():
    q = torch.eye(3)
    g = torch.tensor([[0.0, 1, 0], [1, 0, 0], [0, 0, 1]])
    r = recall_at_k(q, g, ["a", "b", "c"], ["b", "a", "x"], ks=(1, 2))
    assert r == {"R@1": pytest.approx(2 / 3), "R@2": pytest.approx(2 / 3)}


def test_cli_train_and_eval(digits_world, tmp_path):
    recipe = write_recipe(digits_world, tmp_path / "cli")
    runner = CliRunner()
    out = runner.invoke(app, ["train", str(recipe), "--quiet", "--set", "train.steps=3"])
    assert out.exit_code == 0, out.output
    assert json.loads((tmp_path / "cli" / "metrics.json").read_text())["depth"]["items"] == 60
    res = runner.invoke(app, ["eval", str(digits_world / "depth.test.jsonl"),
                              "--model", str(tmp_path / "cli" / "model"),
                              "--classes", ",".join(WORDS), "--template", "the digit {}",
                              "--gallery", str(digits_world / "images.test.jsonl")])
    assert res.exit_code == 0, res.output
    result = json.loads(res.output)
    assert result["modality"] == "depth" and "R@10" in result["to_image"] and "zero_shot_top1" in result


def test_anchor_training_learns_digits(trained_anchor):
    folder, metrics = trained_anchor
    assert metrics["zero_shot_top1"] > 0.5  # on its own training digits, chance is ~0.1
    model = BindingModel(BindConfig(anchor=AnchorConfig(model=f"local-dir:{folder}"),
                                    modalities=(ModalityConfig("image"),)))
    assert (folder / "open_clip_config.json").is_file() and model.embed_dim == 64


def test_a_saved_anchor_reads_its_test_digits_as_it_did_when_trained(digits_world, trained_anchor):
    from binder.anchor import load_anchor
    from binder.train.anchor_train import anchor_zero_shot
    from binder.train.recipe import EvalSpec

    folder, metrics = trained_anchor
    ev = EvalSpec(classes=tuple(WORDS), templates=("the digit {}",))
    again = anchor_zero_shot(load_anchor(AnchorConfig(model=f"local-dir:{folder}")), "images.train.jsonl",
                             str(digits_world), ev)
    assert again == {"zero_shot_top1": metrics["zero_shot_top1"], "test_items": 160}


def _missing_files_world(root: Path, tmp_path: Path) -> Path:
    """A copy of the depth manifest whose every depth file is missing (the paired images exist)."""
    lines = [json.loads(line) for line in (root / "depth.train.jsonl").read_text().splitlines()]
    manifest = tmp_path / "missing.train.jsonl"
    manifest.write_text("".join(json.dumps({**r, "path": f"gone/{r['path']}", "image": str(root / r["image"])}) + "\n"
                                for r in lines))
    return manifest


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "preprocess_once"])
def test_a_run_whose_files_are_all_missing_stops_and_saves_nothing(digits_world, tmp_path, capfd, stream):
    from cli_helpers import run_cli

    recipe = write_recipe(digits_world, tmp_path / "run", workers=0)
    manifest = _missing_files_world(digits_world, tmp_path)
    recipe.write_text(recipe.read_text().replace(f'train = "{digits_world}/depth.train.jsonl"',
                                                 f'train = "{manifest}"'))
    sets = [] if stream else ["--set", "train.stream=false"]
    if not stream:  # the preprocess-once path takes no augmentation
        recipe.write_text(recipe.read_text().replace('name = "depth"', 'name = "depth"\naugment = false'))
    code, out, err = run_cli(["train", str(recipe), "--quiet", *sets], capfd)
    last = err.strip().splitlines()[-1]
    assert code == 2 and not out, err
    said = "no pair could be read" if stream else "no usable depth files (160 failed)"
    assert last.startswith("anybind: error:") and said in last and "gone/" in last, last
    assert "loss=nan" not in err and "Traceback" not in err
    assert not (tmp_path / "run" / "model").exists() and not (tmp_path / "run" / "metrics.json").exists()


def test_a_test_manifest_that_cannot_be_read_leaves_the_trained_model_saved(digits_world, tmp_path, capfd):
    from cli_helpers import run_cli

    recipe = write_recipe(digits_world, tmp_path / "run", workers=0)
    missing = _missing_files_world(digits_world, tmp_path)
    recipe.write_text(recipe.read_text().replace(f'test = "{digits_world}/depth.test.jsonl"', f'test = "{missing}"'))
    code, out, err = run_cli(["train", str(recipe), "--quiet"], capfd)
    last = err.strip().splitlines()[-1]
    assert code == 2 and "Traceback" not in err, err
    assert last.startswith("anybind: error: training finished and the model is saved in") and "gone/" in last, last
    assert "--resume" in last and "metrics.json is not written" in last, last
    assert not (tmp_path / "run" / "metrics.json").exists()
    model = BindingModel.load(tmp_path / "run" / "model")
    trained = BindingModel.load(tmp_path / "run" / "checkpoint")
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), trained.state_dict().values()))

    recipe.write_text(recipe.read_text().replace(f'test = "{missing}"', f'test = "{digits_world}/depth.test.jsonl"'))
    code, out, err = run_cli(["train", str(recipe), "--quiet", "--resume"], capfd)
    assert code == 0, err
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["depth"]["items"] == 60


def test_a_step_with_one_readable_pair_stops_with_a_typed_error(digits_world, tmp_path):
    from binder.errors import TrainingError

    manifest = _missing_files_world(digits_world, tmp_path)
    lines = manifest.read_text().splitlines()
    first = json.loads(lines[0])
    lines[0] = json.dumps({**first, "path": str(digits_world / first["path"].removeprefix("gone/"))})
    manifest.write_text("\n".join(lines) + "\n")
    recipe = write_recipe(digits_world, tmp_path / "one", workers=0, batch_size=len(lines))
    recipe.write_text(recipe.read_text().replace(f'train = "{digits_world}/depth.train.jsonl"',
                                                 f'train = "{manifest}"'))
    trainer = Trainer(load_recipe(recipe), progress=False)
    with pytest.raises(TrainingError, match=r"step 1 \(depth\): only 1 of 160 pairs could be read"):
        trainer.run()
    assert not (tmp_path / "one" / "model").exists()


@pytest.mark.parametrize("setting, message", [
    ('train.lr="fast"', r"\[train\]: lr must be a number \(float\), got 'fast'"),
    ("train.lr=nan", r"\[train\]: lr must be a finite number, got nan"),
    ("train.lr=inf", r"\[train\]: lr must be a finite number, got inf"),
    ("train.steps='\"ten\"'", r"\[train\]: steps must be an integer \(int\), got 'ten'"),
    ("train.steps=2.5", r"\[train\]: steps must be an integer \(int\), got 2.5"),
    ("train.stream=1", r"\[train\]: stream must be true or false \(bool\), got 1"),
    ("train.lr=-1", r"train.lr must be > 0"),
    ("trunk.width='\"wide\"'", r"\[trunk\]: width must be an integer"),
    ("anchor.model=3", r"\[anchor\]: model must be a string"),
    ("eval.templates=[1]", r"\[eval\]: templates\[0\] must be a string"),
])
def test_bad_recipe_values_are_one_line_errors_naming_key_and_type(digits_world, tmp_path, capfd, setting, message):
    import re
    import shlex

    from cli_helpers import run_cli

    recipe = write_recipe(digits_world, tmp_path / "run")
    code, out, err = run_cli(["train", str(recipe), "--quiet", "--set", *shlex.split(setting)], capfd)
    assert code == 2 and not out and err.startswith("anybind: error:") and err.count("\n") == 1, err
    assert re.search(message, err), err
    assert "internal error" not in err and not (tmp_path / "run").exists()


def test_recipe_modalities_listed_twice_or_with_bad_options_are_refused(digits_world, tmp_path):
    from binder.errors import ConfigError

    recipe = write_recipe(digits_world, tmp_path / "run")
    text = recipe.read_text()
    entry = text[text.index("[[modality]]"):text.index("[eval]")]
    recipe.write_text(text.replace(entry, entry + entry))
    with pytest.raises(ConfigError, match=r"\[\[modality\]\] 'depth' is listed more than once"):
        load_recipe(recipe)
    recipe.write_text(text.replace("options = { image_size = 32, patch = 8 }",
                                   "options = { image_size = 32, patch = 8, colour = 1 }"))
    with pytest.raises(ConfigError, match=r"\[\[modality\]\] depth: unknown option 'colour'"):
        load_recipe(recipe)
    recipe.write_text(text.replace("options = { image_size = 32, patch = 8 }",
                                   'options = { image_size = "big", patch = 8 }'))
    with pytest.raises(ConfigError, match=r"options.image_size must be an integer \(int\), got 'big'"):
        load_recipe(recipe)
    recipe.write_text(text)
    with pytest.raises(ConfigError, match=r"lr must be a finite number"):
        load_recipe(recipe, {"train.lr": float("nan")})


# paths in recipes, the end-of-run summary, the resume line ---------------------------------------

ROOT = Path(__file__).resolve().parents[1]


def test_recipe_paths_resolve_against_the_recipe_folder_and_overrides_against_the_cwd(tmp_path, monkeypatch):
    folder = tmp_path / "project" / "recipes"
    folder.mkdir(parents=True)
    recipe = folder / "r.toml"
    recipe.write_text("\n".join([
        "[anchor]", 'model = "local-dir:../anchor"', "[train]", 'out = "../out/run"', 'cache_dir = "~/cache"',
        "[[modality]]", 'name = "depth"', 'train = "data/depth.train.jsonl"', f'test = "{tmp_path}/abs.jsonl"',
        "[eval]", 'image_gallery = "data/images.jsonl"']) + "\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    rec = load_recipe(Path("..") / "project" / "recipes" / "r.toml")
    assert rec.bind.anchor.model == f"local-dir:{tmp_path / 'project' / 'anchor'}"
    assert rec.train.out == str(tmp_path / "project" / "out" / "run")
    assert rec.train.cache_dir == str(Path("~/cache").expanduser())
    assert rec.train.root is None  # no root: manifests follow the recipe's folder too
    assert rec.modalities[0].train == str(folder / "data" / "depth.train.jsonl")
    assert rec.modalities[0].test == str(tmp_path / "abs.jsonl")  # absolute stays
    assert rec.eval.image_gallery == str(folder / "data" / "images.jsonl")
    # --set values are typed at the current directory, and resolve there
    rec = load_recipe(recipe, {"train.out": "mine", "anchor.model": "local-dir:a", "train.root": "w",
                               "eval.image_gallery": "g.jsonl"})
    assert rec.train.out == str(elsewhere / "mine") and rec.bind.anchor.model == f"local-dir:{elsewhere / 'a'}"
    assert rec.train.root == str(elsewhere / "w")
    # under a root, manifests stay relative to it (as the paths inside them)
    assert rec.modalities[0].train == "data/depth.train.jsonl" and rec.eval.image_gallery == "g.jsonl"
    assert rec.train.cache_dir == str(Path("~/cache").expanduser())
    # names are not paths
    assert load_recipe(recipe, {"anchor.model": "anybind-tiny"}).bind.anchor.model == "anybind-tiny"
    assert load_recipe(recipe, {"anchor.pretrained": "laion2b_s34b_b79k"}).bind.anchor.pretrained == \
        "laion2b_s34b_b79k"


def test_an_augmentation_folder_resolves_against_the_recipe_folder(tmp_path, monkeypatch):
    """An audio recipe's ``augment.noise_dir`` is a path like the recipe's others: relative to the
    recipe, whatever the working directory; the folder is then checked when augmentation is built."""
    from modalities.audio import Audio

    folder = tmp_path / "project" / "recipes"
    (tmp_path / "project" / "noise").mkdir(parents=True)
    folder.mkdir()
    body = ('[[modality]]\nname = "{name}"\ntrain = "t.jsonl"\naugment = {{ noise_dir = "{noise}" }}\n')
    (folder / "r.toml").write_text(body.format(name="audio", noise="../noise"))
    monkeypatch.chdir(tmp_path)
    spec = load_recipe(folder / "r.toml").modalities[0]
    assert spec.augment == {"noise_dir": str(tmp_path / "project" / "noise")}
    assert Audio().augment_options(spec.augment).noise_dir == str(tmp_path / "project" / "noise")
    (folder / "r.toml").write_text(body.format(name="audio", noise="../nowhere"))
    with pytest.raises(ValueError, match="nowhere.*is not a folder"):
        Audio().augment_options(load_recipe(folder / "r.toml").modalities[0].augment)


@pytest.mark.parametrize("name", ["demo.toml", *[f"bind/{p.name}" for p in sorted((ROOT / "recipes" / "bind")
                                                                                     .glob("*.toml"))]])
def test_shipped_recipes_name_the_checkout_from_any_directory(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rec = load_recipe(ROOT / "recipes" / name)
    out = ROOT / "out"
    assert rec.bind.anchor.model == f"local-dir:{out / 'anchor'}"
    assert rec.train.root == str(out / "world") and rec.train.cache_dir == str(out / "cache")
    assert Path(rec.train.out).parent in (out, out / "bind")
    for m in rec.bind.modalities:
        if m.options.get("codebook"):
            assert Path(m.options["codebook"]).is_relative_to(out), m.options


def test_the_anchor_recipe_names_the_checkout_from_any_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg, _ = load_anchor_recipe(ROOT / "recipes" / "anchor_digits.toml")
    assert cfg.root == str(ROOT / "out" / "world") and cfg.out == str(ROOT / "out" / "anchor")
    assert cfg.model == "anybind-digits"  # an architecture name, not a path


def test_cli_train_runs_from_another_directory_and_prints_a_summary(digits_world, tmp_path, monkeypatch, capfd):
    from cli_helpers import run_cli

    folder = tmp_path / "project"
    folder.mkdir()
    shutil.copytree(digits_world, folder / "world")
    recipe = write_recipe(folder / "world", folder / "run")
    text = (recipe.read_text().replace(f'root = "{folder}/world"', 'root = "world"')  # the recipe's folder
            .replace(f"{folder}/world/", "").replace(f"{folder}/", ""))  # manifests: relative to the root
    assert str(tmp_path) not in text
    recipe.write_text(text)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    code, out, err = run_cli(["train", "../project/run.toml", "--quiet", "--set", "train.steps=3"], capfd)
    assert code == 0, err
    assert (folder / "run" / "model" / "config.json").is_file() and not any(elsewhere.iterdir())
    metrics = json.loads((folder / "run" / "metrics.json").read_text())["depth"]
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["modality", "split", "bound"] and "zero-shot top-1" in lines[0]
    assert "R@1 → image" in lines[0] and "R@10 → image" in lines[0]
    row = lines[1].split()
    assert row[:3] == ["depth", "test", "image"] and row[3] == f"{metrics['zero_shot_top1']:.3f}"
    assert row[4] == f"{metrics['chance_top1']:.3f}" and row[5] == f"{metrics['to_image']['R@1']:.3f}"
    assert row[6] == f"{metrics['to_image']['R@10']:.3f}" and row[7] == "60"
    assert not any(len(n) > 5 for n in re.findall(r"\d+\.\d+", out)), out  # rounded: no 0.10000000149011612
    assert f"model saved to {folder / 'run' / 'model'}" in err
    code, out, err = run_cli(["train", "../project/run.toml", "--quiet", "--set", "train.steps=3",
                              "--format", "json"], capfd)
    assert code == 0, err
    assert json.loads(out) == json.loads((folder / "run" / "metrics.json").read_text())


def test_a_resumed_run_says_so_even_when_quiet(digits_world, tmp_path, capfd):
    from cli_helpers import run_cli

    recipe = write_recipe(digits_world, tmp_path / "run")
    assert Trainer(load_recipe(recipe), progress=False).run(stop_after=5) == {"stopped_at": 5}  # checkpoint: step 3
    code, out, err = run_cli(["train", str(recipe), "--resume", "--quiet"], capfd)
    assert code == 0, err
    assert f"anybind: resumed from step 3 of 6 ({tmp_path / 'run' / 'checkpoint'})" in err.splitlines(), err
    assert "resumed" not in out and "%|" not in err  # on stderr; and no progress bar


# train.eval_every: the validation curve -----------------------------------------------------------

def _curve_recipe(root: Path, out: Path, **train) -> Path:
    """write_recipe's depth run, 4 steps, with the test manifest also as its val manifest."""
    recipe = write_recipe(root, out, **{"steps": 4, "checkpoint_every": 2, "workers": 0, **train})
    recipe.write_text(recipe.read_text().replace(f'test = "{root}/depth.test.jsonl"',
                                                 f'val = "{root}/depth.test.jsonl"\ntest = "{root}/depth.test.jsonl"'))
    return recipe


def test_eval_every_writes_a_val_curve_and_leaves_training_unchanged(digits_world, tmp_path):
    from binder.train.trainer import format_summary

    curved = Trainer(load_recipe(_curve_recipe(digits_world, tmp_path / "curve", eval_every=2)), progress=False)
    metrics = curved.run()
    plain = Trainer(load_recipe(_curve_recipe(digits_world, tmp_path / "plain")), progress=False)
    plain_metrics = plain.run()
    assert [row["step"] for row in metrics["val_curve"]] == [2, 4] and "val_curve" not in plain_metrics
    assert all(0 <= row["depth"] <= 1 for row in metrics["val_curve"])
    assert json.loads((tmp_path / "curve" / "metrics.json").read_text())["val_curve"] == metrics["val_curve"]
    want = plain.model.state_dict()
    for k, v in curved.model.state_dict().items():
        assert torch.equal(v, want[k]), k  # measuring on the way changed nothing in the training
    assert next(iter(metrics.values())) is metrics["depth"]  # benchmarks/emergence.py's bind() reads the first
    assert format_summary(metrics).splitlines()[1].split()[0] == "depth"


def test_val_inputs_are_prepared_once_when_they_fit_the_cache_and_each_time_when_not(digits_world, tmp_path,
                                                                                     monkeypatch):
    from binder.train import evaluate

    calls: list[str] = []
    real_prepare = evaluate._prepare
    monkeypatch.setattr(evaluate, "_prepare",
                        lambda model, path, *a: calls.append(path) or real_prepare(model, path, *a))
    curves = []
    for name, cache_mb in (("kept", 1024.0), ("none", 0.0)):
        calls.clear()
        recipe = _curve_recipe(digits_world, tmp_path / name, eval_every=1, cache_mb=cache_mb)
        curves.append(Trainer(load_recipe(recipe), progress=False).run()["val_curve"])
        val = [c for c in calls if c.endswith("depth.test.jsonl")]
        # four val points, then the final evaluation's own test split (a fresh memo of its own)
        assert len(val) == (2 if cache_mb else 5), (name, calls)
    assert curves[0] == curves[1]  # keeping the inputs changes no figure


def test_val_top1_under_a_perturbation_reads_perturbed_inputs_beside_the_clean_ones(digits_world, tmp_path):
    """benchmarks/val_curves.py's robustness val: the trained model on val with named perturbations."""
    trainer = Trainer(load_recipe(_curve_recipe(digits_world, tmp_path / "run", eval_every=4)), progress=False)
    clean = trainer.run()["val_curve"][-1]["depth"]
    val = trainer.recipe.modalities[0].val
    assert trainer.val_top1(val) == clean
    noisy = trainer.val_top1(val, "noise=0.5")
    assert 0 <= noisy <= 1
    kept = {perturb: prepared for (_, perturb), (_, prepared) in trainer._val_inputs.items()}
    assert set(kept) == {None, "noise=0.5"}
    assert not torch.equal(kept[None].inputs, kept["noise=0.5"].inputs)


def test_a_resumed_run_keeps_the_val_curve_before_its_resume_step(digits_world, tmp_path):
    recipe = _curve_recipe(digits_world, tmp_path / "run", eval_every=1, checkpoint_every=2)
    assert Trainer(load_recipe(recipe), progress=False).run(stop_after=3) == {"stopped_at": 3}  # checkpoint: step 2
    resumed = Trainer(load_recipe(recipe), progress=False)
    metrics = resumed.run(resume=True)
    assert [row["step"] for row in metrics["val_curve"]] == [1, 2, 3, 4]


@pytest.mark.parametrize("value", [-1, True, "2", 1.5])
def test_bad_eval_every_values_are_refused_naming_the_key(digits_world, tmp_path, value):
    from binder.errors import ConfigError

    with pytest.raises(ConfigError, match="eval_every"):
        load_recipe(write_recipe(digits_world, tmp_path / "run"), {"train.eval_every": value})


def test_eval_every_without_a_val_manifest_is_refused(digits_world, tmp_path):
    from binder.errors import ConfigError

    with pytest.raises(ConfigError, match="train.eval_every needs eval.classes and a .* val manifest"):
        Trainer(load_recipe(write_recipe(digits_world, tmp_path / "run", eval_every=2)), progress=False)
