"""The house rules of docs/architecture.md, checked on the source: arrows point down.

serve and the CLI both stand on the library (serve never imports binder.cli; of the CLI only the
``serve`` command module imports binder.serve, to start it); index and serve never import train;
no module imports another module's private (``_``-prefixed) name. Imports inside functions count.
And the command line starts light: no command's --help, no listing, imports numpy or torch, and the
index commands that load no model never import torch (run in a fresh interpreter).
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest
from samplegen import text_index

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("binder", "modalities", "recipes")
# (importer prefix, imported prefix, allowed importers): the importer may not import the imported
FORBIDDEN = (
    ("binder.serve", "binder.cli", ()),
    ("binder.cli", "binder.serve", ("binder.cli.serve",)),
    ("binder.index", "binder.train", ()),
    ("binder.serve", "binder.train", ()),
    ("binder.embed", "binder.train", ()),
    ("modalities", "binder.cli", ()),
    ("modalities", "binder.serve", ()),
)


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> list[tuple[str, str | None, int]]:
    """(module, name or None, line) of every import in ``path``, relative ones resolved."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, None, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            out += [(base, a.name, node.lineno) for a in node.names]
    return out


def sources() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py") if ".venv" not in p.parts)


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def violations() -> list[str]:
    found = []
    for path in sources():
        me = module_name(path)
        for module, name, line in imports(path):
            for importer, imported, allowed in FORBIDDEN:
                if _under(me, importer) and me not in allowed and (_under(module, imported) or (
                        name is not None and _under(f"{module}.{name}", imported))):
                    found.append(f"{path.relative_to(ROOT)}:{line}: {me} imports {module} ({importer} ↛ {imported})")
            if name and name.startswith("_") and not name.startswith("__") and module != me:
                found.append(f"{path.relative_to(ROOT)}:{line}: {me} imports private {module}.{name}")
    return found


def test_every_module_keeps_the_import_rules():
    assert violations() == []


@pytest.mark.parametrize("importer, code, expected", [
    ("binder/serve/x.py", "from binder.cli.common import load_model\n", "binder.serve ↛ binder.cli"),
    ("binder/index/x.py", "def f():\n    import binder.train.evaluate\n", "binder.index ↛ binder.train"),
    ("binder/serve/x.py", "from binder import train\n", "binder.serve ↛ binder.train"),
    ("modalities/augment/x.py", "from .audio import _check_range\n", "private modalities.augment.audio._check_range"),
])
def test_the_checker_catches_each_kind_of_violation(tmp_path, monkeypatch, importer, code, expected):
    fake = tmp_path / importer
    fake.parent.mkdir(parents=True)
    fake.write_text(code)
    monkeypatch.setattr(__import__(__name__), "ROOT", tmp_path)
    assert any(expected in v for v in violations())


def test_the_command_line_loads_without_torch():
    """`anybind --help` and every one-line error stay fast: commands import torch when they run."""
    import subprocess
    import sys

    code = "import sys, binder.cli; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0


# One fresh interpreter runs `anybind ARGS` for each ARGS in argv[1] (JSON; "*" = `--help` of every
# command and subcommand) through the console entry point, and prints, per run, the arguments, the
# exit code and which of the modules in argv[2] were imported by then.
RUN_FRESH = """
import contextlib, io, json, sys

from binder.cli import app, main

def every_command(cmd, path):
    yield path
    for name, sub in getattr(cmd, "commands", {}).items():
        yield from every_command(sub, [*path, name])

runs = json.loads(sys.argv[1])
if runs == "*":
    runs = [[*path, "--help"] for path in every_command(app, [])]
heavy = json.loads(sys.argv[2])
report = []
for args in runs:
    sys.argv, code = ["anybind", *args], 0
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        try:
            main()
        except SystemExit as exc:
            code = exc.code
    report.append([" ".join(args), code, [m for m in heavy if m in sys.modules]])
print(json.dumps(report))
"""


def run_fresh(runs, heavy: tuple[str, ...], env: dict[str, str] | None = None) -> list[tuple[str, int, list[str]]]:
    """[(args, exit code, the ``heavy`` modules imported by then)] of ``anybind ARGS`` run in order
    in one fresh interpreter; ``runs`` is a list of argument lists, or "*" for every command's --help."""
    import json
    import os
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", RUN_FRESH, json.dumps(runs), json.dumps(heavy)], cwd=ROOT,
                          env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return [tuple(r) for r in json.loads(done.stdout)]


def test_help_of_every_command_imports_neither_torch_nor_numpy():
    """`anybind --help` and `anybind CMD [SUB] --help` stay fast: no command module imports numpy
    (or torch) at load, and listing a command's options needs neither."""
    report = run_fresh("*", ("torch", "numpy"))
    assert len(report) > 20 and {"--help", "index verify --help", "search --help"} <= {r[0] for r in report}
    assert [r for r in report if r[1:] != (0, [])] == []


@pytest.mark.parametrize("args", [["models"], ["presets"], ["--version"], ["pull", "--help"]])
def test_listing_commands_import_neither_torch_nor_numpy(args, tmp_path):
    report = run_fresh([args], ("torch", "numpy"), env={"ANYBIND_HOME": str(tmp_path)})
    assert report == [(" ".join(args), 0, [])]


@pytest.fixture
def small_index(tmp_path) -> Path:
    """An index of three text rows written with IndexWriter (no model); one row's file is gone."""
    return text_index(tmp_path, missing=0)


@pytest.mark.parametrize("command", ["info", "verify", "rm --missing", "compact", "repair"])
def test_index_commands_that_embed_nothing_do_not_import_torch(command, small_index):
    """The index commands that load no model leave torch out (reading shards needs numpy)."""
    name, *options = command.split()
    report = run_fresh([["index", name, str(small_index), *options]], ("torch",))
    assert report == [(f"index {name} {small_index} {' '.join(options)}".strip(), 0, [])]
