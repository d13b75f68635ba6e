"""The house rules of docs/architecture.md, checked on the source: arrows point down.

serve and the CLI both stand on the library (serve never imports binder.cli; of the CLI only the
``serve`` command module imports binder.serve, to start it); index and serve never import train;
no module imports another module's private (``_``-prefixed) name. Imports inside functions count.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

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
