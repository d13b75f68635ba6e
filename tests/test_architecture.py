"""docs/architecture.md's module map stays true: every module of binder/ and modalities/ has its row
under its package's heading, and no row names a module that is gone."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAP = ROOT / "docs" / "architecture.md"


def sections() -> dict[str, set[str]]:
    """{package folder: module file names its table lists}."""
    out: dict[str, set[str]] = {}
    for part in re.split(r"(?m)^### ", MAP.read_text())[1:]:
        head, _, body = part.partition("\n")
        out[head.strip().strip("`").rstrip("/")] = set(re.findall(r"(?m)^\| `([^`]+\.py)` \|", body))
    return out


def packages() -> list[Path]:
    return sorted(p.parent for top in ("binder", "modalities") for p in (ROOT / top).rglob("__init__.py"))


def test_every_package_has_a_table_and_every_module_a_row():
    listed = sections()
    for folder in packages():
        key = str(folder.relative_to(ROOT))
        files = {f.name for f in folder.glob("*.py")}
        assert key in listed, f"docs/architecture.md has no '### `{key}/`' table"
        assert listed[key] == files, (f"{key}: missing rows {sorted(files - listed[key])}, "
                                      f"rows of no module {sorted(listed[key] - files)}")
