"""The documentation: the docs site builds strictly, every relative link lands on a file (and heading),
the README stays short, and the README's five-minute tour runs as printed.

The tour is read from README.md's ``console`` block under "A five-minute tour", so the test fails as
soon as the README shows a command that does not work, or output of another kind than it gives. It
runs on the test suite's small world: what ``make demo`` leaves in ``out/demo`` (a model, a mixed
folder of unseen test files, an index of it) is rebuilt from that world with the untrained tiny
model, and the tour's ``out/demo/...`` paths are pointed there.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cli_helpers import run_cli

from binder.model import BindingModel
from recipes.world import read_world_manifest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
README_MAX_LINES = 200
TOUR_HEADING = "## A five-minute tour"

LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)
INLINE_CODE = re.compile(r"`[^`\n]*`")


def markdown_files() -> list[Path]:
    return [README, *sorted(DOCS.rglob("*.md"))]


def prose(text: str) -> str:
    """``text`` without fenced blocks and inline code, where brackets are not links."""
    return INLINE_CODE.sub("", FENCE.sub("", text))


def slug(heading: str) -> str:
    """The anchor mkdocs (Python-Markdown's toc) gives a heading."""
    text = re.sub(r"`([^`]*)`", r"\1", heading).strip().lower()
    text = re.sub(r"[^\w\s-]", "", text)
    return re.sub(r"[-\s]+", "-", text).strip("-")


def anchors(page: Path) -> set[str]:
    headings = re.findall(r"^#{1,6}\s+(.+?)\s*#*$", FENCE.sub("", page.read_text()), re.M)
    return {slug(h) for h in headings}


# the site --------------------------------------------------------------------------------------

@pytest.mark.slow
def test_docs_site_builds_strictly(tmp_path):
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    # the generated references are there, not empty pages
    cli = (site / "reference" / "cli" / "index.html").read_text()
    assert "anybind search" in cli and "anybind index build" in cli and "--model" in cli
    api = (site / "reference" / "api" / "index.html").read_text()
    assert "BindingModel" in api and "embed_files" in api and "build_index" in api


# links and length ------------------------------------------------------------------------------

def test_readme_is_short():
    lines = README.read_text().splitlines()
    assert len(lines) < README_MAX_LINES, f"README.md has {len(lines)} lines; the rest belongs in docs/"


@pytest.mark.parametrize("page", markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_point_at_files_that_exist(page):
    broken = []
    for target in LINK.findall(prose(page.read_text())):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        path, _, fragment = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(f"{target} (no {dest})")
        elif fragment and dest.suffix == ".md" and fragment not in anchors(dest):
            broken.append(f"{target} (no heading #{fragment} in {dest.name})")
    assert not broken, f"{page.relative_to(ROOT)}: broken links: {broken}"


def test_every_docs_page_is_in_the_nav():
    nav = (ROOT / "mkdocs.yml").read_text()
    pages = [p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md")]
    assert pages and all(p in nav for p in pages), [p for p in pages if p not in nav]


# the tour --------------------------------------------------------------------------------------

def tour() -> list[tuple[str, list[str]]]:
    """(command, the output lines the README shows for it) for each ``$ anybind ...`` of the tour."""
    text = README.read_text()
    assert TOUR_HEADING in text, f"README.md has no {TOUR_HEADING!r} section"
    section = text.split(TOUR_HEADING, 1)[1].split("\n## ", 1)[0]
    block = re.search(r"^```console\n(.*?)^```", section, re.S | re.M)
    assert block, "the tour has no ```console block"
    steps: list[tuple[str, list[str]]] = []
    for line in block.group(1).splitlines():
        if line.startswith("$ "):
            steps.append((line[2:], []))
        else:
            assert steps, f"output before the first command: {line!r}"
            steps[-1][1].append(line)
    assert len(steps) >= 3 and all(cmd.startswith("anybind ") for cmd, _ in steps), steps
    return steps


DIGITS = "zero,one,two,three,four,five,six,seven,eight,nine".split(",")
MODALITY_NAMES = {"audio", "depth", "image", "text"}
PICKS = {"audio": ("audio", 6), "depth": ("depth", 6), "images": ("image", 6)}  # as `make demo` mixes them


@pytest.fixture(scope="module")
def demo(small_world, tmp_path_factory) -> dict[str, Path]:
    """What ``make demo`` leaves in out/demo, on the small world: model, mixed folder, index."""
    root = tmp_path_factory.mktemp("demo")
    model_dir = root / "model"
    BindingModel.default(["audio", "depth", "image", "text"]).save(model_dir)
    mixed = root / "mixed"
    mixed.mkdir()
    for name, (kind, count) in PICKS.items():
        rows = read_world_manifest(small_world.manifest(name, "test"))
        for row in rows[:: max(1, len(rows) // count)][:count]:
            src = Path(row["path"])
            shutil.copy2(src, mixed / f"{DIGITS[int(row['label'])]}-{kind}-{src.name}")
    for word in DIGITS:
        (mixed / f"{word}-caption.txt").write_text(f"the digit {word}\n")
    return {"model": model_dir, "mixed": mixed, "index": root / "index"}


def local(command: str, demo: dict[str, Path]) -> list[str]:
    """The tour's command with its out/demo/... paths pointed at the ``demo`` fixture's."""
    def swap(match: re.Match) -> str:
        what, _, rest = match.group(1).partition("/")
        if what in ("model", "index") and not rest:
            return str(demo[what])
        assert what == "mixed" and rest, f"unknown demo path {match.group(0)}"
        kind, suffix = rest.split(".", 1)[0].split("-")[1], "." + rest.split(".", 1)[1]  # WORD-KIND-N.ext
        same = sorted(p for p in demo["mixed"].iterdir() if f"-{kind}" in p.name and p.name.endswith(suffix))
        assert same, f"no *-{kind}*{suffix} in the fixture's mixed folder"
        return str(same[0])
    argv = [re.sub(r"out/demo/([\w./-]+)", swap, arg) for arg in shlex.split(command)]
    assert argv[0] == "anybind"
    return argv[1:]


def check_output_kind(command: str, shown: list[str], printed: str) -> None:
    """``printed`` is output of the kind the README shows: the same JSON keys, or the same table."""
    lines = printed.rstrip("\n").splitlines()
    shown = [line for line in shown if not line.startswith("(")]  # notes on stderr, not results
    if shown and shown[0].startswith("{"):
        got, want = json.loads(printed), json.loads("\n".join(shown))
        assert set(got) == set(want), (command, got)
        return
    assert shown, f"the README shows no output for {command!r}"
    assert lines and lines[0].split() == shown[0].split(), (command, printed)  # the header
    assert set(lines[1].replace(" ", "")) == {"-"}, (command, printed)
    assert len(lines) == len(shown), (command, printed)  # as many rows as the README shows
    header = shown[0].split()
    args = shlex.split(command)
    labels = args[args.index("--labels") + 1].split(",") if "--labels" in args else None
    for got, want in zip(lines[2:], shown[2:]):
        if "modality" in header and "--modality" in args:
            col = header.index("modality")
            assert got.split()[col] == want.split()[col], (command, printed)
        elif "modality" in header:  # ranked across modalities: which ones come first is the model's doing
            assert got.split()[header.index("modality")] in MODALITY_NAMES, (command, printed)
        if "score" in header:
            float(got.split()[header.index("score")])
        if "label" in header and labels:
            assert got.split()[header.index("label")] in labels, (command, printed)


@pytest.mark.slow
def test_readme_tour_runs_as_printed(demo, capfd):
    code, out, err = run_cli(["index", "build", str(demo["index"]), str(demo["mixed"]),
                              "--model", str(demo["model"]), "--quiet"], capfd)
    assert code == 0, out + err
    files = len(list(demo["mixed"].iterdir()))
    for command, shown in tour():
        code, out, err = run_cli(local(command, demo), capfd)
        assert code == 0, f"{command}\n{out}{err}"
        check_output_kind(command, shown, out)
        if command.startswith("anybind index info"):
            assert json.loads(out)["rows"] == files


def test_the_emergence_tables_are_the_results_file():
    """README's emergence table and docs/guides/world.md's are what benchmarks/results/emergence.json
    holds, so a re-run whose figures were not carried into the docs fails here."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from emergence import table

    rows = list(json.loads((ROOT / "benchmarks" / "results" / "emergence.json").read_text())["rows"].values())
    assert table(rows).strip() in (DOCS / "guides" / "world.md").read_text()
    readme = README.read_text()
    for r in rows:
        share = r["emergent_top1"] / r["text_bound_top1"]
        line = (f"| {r['modality']} | **{r['emergent_top1']:.3f}** | {r['emergent_hard_top1']:.3f} | "
                f"{r['text_bound_top1']:.3f} | {share:.2f} | {r['steps']} |")
        assert line in readme, f"README's emergence row for {r['modality']} is not {line}"
