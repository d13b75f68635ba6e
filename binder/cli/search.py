"""`anybind search` and `anybind classify` (registered in binder/cli/__init__.py)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from binder.cli import common
from binder.cli.embed import PRECISION_OPTION
from binder.index.choices import AUTO_APPROX, AUTO_EXACT_MAX_ROWS, BACKENDS, MIXES

FORMATS = ("table", "jsonl")

SEARCH_HELP = f"""Find the K items of INDEX_DIR nearest to QUERY, across modalities.

INDEX_DIR is an index folder (`anybind index build`), an `anybind embed` output folder, or
a LanceDB folder written by `anybind index export-lance` (searched on disk; --table).
QUERY is text, a file of any modality, or a weighted sum of them (embedding arithmetic):

\b
  anybind search idx "a dog barking"
  anybind search idx rain.wav --modality image
  anybind search idx "rain.wav + 0.5*street.jpg - night"
  anybind search idx "'a + b' - text:photo.jpg"
  anybind search idx -- "-0.5*night + day"      (a query starting with '-')
  anybind search idx --query "-night + day"

\b
Grammar: terms joined by ' + ' or ' - ' (spaces around the operator), each
term [WEIGHT*]OPERAND. An OPERAND naming an existing file is embedded as that
file (modality by extension); anything else is text. Quote an operand that
contains ' + ' or ' - '; prefix text: to force text (text:photo.jpg). Each
term is unit-normalized, the weighted sum taken, then renormalized.

\b
Backends: exact (numpy, default up to {AUTO_EXACT_MAX_ROWS:,} rows), flat, hnsw,
ivfpq (faiss, `pip install 'anybind[faiss]'`); auto = exact up to that size,
else {AUTO_APPROX}. Approximate indexes are cached in INDEX_DIR/ann/.
"""


def register(app: click.Group) -> None:
    """Attach this module's commands to the top-level ``anybind`` group."""
    app.add_command(search_cmd)
    app.add_command(classify_cmd)


def _default_format(fmt: str | None) -> str:
    return fmt or ("table" if sys.stdout.isatty() else "jsonl")


@click.command("search", help=SEARCH_HELP)
@click.argument("index_dir", type=click.Path(exists=True, file_okay=False))
@click.argument("query", required=False)
@click.option("--query", "-q", "query_opt", default=None, metavar="QUERY",
              help="The query, for one that starts with '-' (or write it after --).")
@click.option("--k", "-k", "k", type=click.IntRange(min=1), default=10, show_default=True, help="Results to return.")
@click.option("--modality", default=None, help="Only results of this registered modality.")
@click.option("--mix", type=click.Choice(MIXES), default="calibrated", show_default=True,
              help="How results of several modalities are ranked together: calibrated (a z-score of the "
                   "cosine against what the query scores on that modality), centered, interleave or raw "
                   "cosine (which keeps to the query's own modality). LanceDB tables rank raw.")
@click.option("--backend", type=click.Choice(BACKENDS), default="auto", show_default=True)
@click.option("--format", "fmt", type=click.Choice(FORMATS), default=None,
              help="table (default on a terminal) or jsonl (default otherwise).")
@click.option("--model", "model_dir", metavar="MODEL", default=None,
              help="Model to embed the query with when the index records none (else $ANYBIND_MODEL).")
@click.option("--ef-search", type=click.IntRange(min=1), default=None, help="hnsw: candidate list size.")
@click.option("--nprobe", type=click.IntRange(min=1), default=None, help="ivfpq: cells visited.")
@click.option("--no-cache", is_flag=True, help="Do not read or write INDEX_DIR/ann/.")
@click.option("--table", default="anybind", show_default=True, help="LanceDB INDEX_DIR: the table to search.")
@click.option("--quiet", is_flag=True, help="No progress bars or notes.")
@PRECISION_OPTION
@common.DEVICE_OPTION
def search_cmd(index_dir, query, query_opt, k, modality, mix, backend, fmt, model_dir, ef_search, nprobe,
               no_cache, table, quiet, precision, device) -> None:
    from binder.index.lance import lance_tables
    from binder.index.query import embed_terms, parse_query, query_modalities
    from binder.registry import get_modality

    if (query is None) == (query_opt is None):
        raise click.UsageError("give the query once: as QUERY, or as --query QUERY (for one starting with '-')")
    terms = parse_query(query if query is not None else query_opt)
    if modality is not None:
        get_modality(modality)
    shown = None  # the mix that ranked the hits, when one did
    tables = lance_tables(index_dir)
    if tables:
        if table not in tables:
            from binder.errors import IndexStoreError

            raise IndexStoreError(f"{index_dir}: this LanceDB folder has no table {table!r} "
                                  f"(it holds {', '.join(tables)}); pass --table")
        hits = _search_lance(index_dir, table, terms, k, modality, model_dir, quiet, precision, device)
    else:
        from binder.index.search import EmbeddingIndex

        index = EmbeddingIndex.open(index_dir, backend, cache=not no_cache, progress=not quiet,
                                    ef_search=ef_search, nprobe=nprobe)
        model = _query_model(index.model, model_dir, index_dir, quiet, query_modalities(terms), precision,
                             device)
        _check_dim(model, index.dim, index_dir)
        hits = index.search(embed_terms(model, terms), k, modality, mix)
        if modality is None and len(index.modalities()) > 1 and mix != "raw":
            shown = mix
    _print_hits(hits, _default_format(fmt), shown)


def _search_lance(lance_dir: str, table: str, terms, k: int, modality: str | None, model_dir: str | None,
                  quiet: bool, precision: str = "auto", device: str | None = None) -> list:
    """Search an exported LanceDB table on disk; its rows come back as index hits."""
    from binder.index.lance import lance_table_info, search_lance
    from binder.index.query import embed_terms, query_modalities
    from binder.index.search import Hit

    info = lance_table_info(lance_dir, table)
    model = _query_model(info["model"], model_dir, lance_dir, quiet, query_modalities(terms), precision, device)
    _check_dim(model, info["dim"], lance_dir)
    rows = search_lance(lance_dir, embed_terms(model, terms), k, table, modality)
    return [Hit(r["score"], int(r.get("row", -1)), {c: v for c, v in r.items() if c != "score"}) for r in rows]


def _check_dim(model, dim: int, where: str) -> None:
    if model.embed_dim != dim:
        from binder.errors import QueryError

        raise QueryError(f"the model embeds into {model.embed_dim} dimensions but {where} holds {dim}")


def _query_model(recorded: str | None, model_dir: str | None, index_dir: str, quiet: bool,
                 modalities: set[str] | None = None, precision: str = "auto", device: str | None = None):
    """The model ``binder.model_choice`` picks for this index; only the parts that embed the query's
    ``modalities`` are loaded."""
    from binder.model_choice import index_model_spec

    spec = index_model_spec(index_dir, recorded, model_dir)
    return common.load_model(spec, quiet, modalities=modalities, precision=precision, device=device)


RANK_COLUMN = {"calibrated": "z", "centered": "vs mean", "interleave": "score"}


def _print_hits(hits, fmt: str, mix: str | None = None) -> None:
    """Rank, cosine score, modality and path; with a ``mix``, what it ranked by too (the z-score of
    the cosine for ``calibrated``, the cosine less the query's mean for ``centered``)."""
    rows = [{"rank": r, "score": round(h.score, 6), "modality": h.meta.get("modality", ""),
             "path": h.meta.get("path", "")} for r, h in enumerate(hits, 1)]
    if mix is not None:
        for row, h in zip(rows, hits):
            row.update(mix=mix, rank_score=round(h.rank_score if h.rank_score is not None else h.score, 6))
    if fmt == "jsonl":
        for row, h in zip(rows, hits):
            extra = {k: v for k, v in h.meta.items() if k not in row}
            click.echo(json.dumps({**row, **extra}, ensure_ascii=False))
        return
    ranked = mix is not None and mix != "interleave"
    column = RANK_COLUMN[mix] if mix is not None else ""
    head = ["rank", "score", *([column] if ranked else []), "modality", "path"]
    table = [[str(r["rank"]), f"{r['score']:+.4f}", *([f"{r['rank_score']:+.3f}"] if ranked else []),
              r["modality"], r["path"]] for r in rows]
    for line in format_table(head, table):
        click.echo(line)
    if ranked:
        click.echo(f"(score: cosine; {column}: what --mix {mix} ranked by)", err=True)
    if not hits:
        click.echo("(no results)", err=True)


def format_table(headers: list[str], rows: list[list[str]]) -> list[str]:
    """Left-aligned columns padded to their widest cell, a rule under the headers."""
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    return [line(headers), line(["-" * w for w in widths])] + [line(r) for r in rows]


@click.command("classify")
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--labels", default=None, help="Comma-separated labels, e.g. 'cat,dog,bird'.")
@click.option("--labels-file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Labels, one a line (or comma-separated).")
@click.option("--template", "templates", multiple=True, default=("{}",), show_default=True,
              help="Prompt template, '{}' = the label (repeatable; prompts are averaged).")
@click.option("--top", type=click.IntRange(min=1), default=3, show_default=True, help="Labels shown per file.")
@click.option("--model", "model_dir", metavar="MODEL", default=None,
              help="Model folder or name from `anybind models` (default: $ANYBIND_MODEL, else untrained).")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default=None,
              help="table (default on a terminal) or jsonl (default otherwise).")
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--quiet", is_flag=True, help="No progress bar.")
@PRECISION_OPTION
@common.DEVICE_OPTION
def classify_cmd(paths, labels, labels_file, templates, top, model_dir, fmt, batch_size, quiet, precision,
                 device) -> None:
    """Zero-shot classify files and folders of any modality against text labels.

    Prints each file's best label, its cosine score and the top labels' probabilities. Bad files
    are reported and skipped; exit code 1 if any failed.
    """
    from binder.embed.classify import classify_items, parse_labels
    from binder.embed.pipeline import discover

    if (labels is None) == (labels_file is None):
        raise click.UsageError("give exactly one of --labels or --labels-file")
    names = parse_labels(labels if labels is not None else Path(labels_file).read_text(encoding="utf-8"))
    items, failures = discover(paths)
    model = common.load_model(model_dir, quiet, modalities={i.modality for i in items} | {"text"},
                              precision=precision, device=device)
    preds = list(classify_items(model, items, names, templates, top, batch_size, not quiet, failures))
    _print_predictions(preds, _default_format(fmt))
    for f in failures:
        click.echo(f"anybind: skipped {f.path}: {f.reason}", err=True)
    sys.exit(1 if failures else 0)


def _print_predictions(preds, fmt: str) -> None:
    if fmt == "jsonl":
        for p in preds:
            click.echo(json.dumps({"path": p.path, "modality": p.modality, "label": p.label,
                                   "score": round(p.score, 6),
                                   "top": [{"label": lab, "score": round(s, 6), "prob": round(pr, 6)}
                                           for lab, s, pr in p.top]}, ensure_ascii=False))
        return
    rows = [[p.path, p.modality, p.label, f"{p.score:+.4f}", ", ".join(f"{lab} {pr:.2f}" for lab, _, pr in p.top)]
            for p in preds]
    for line in format_table(["path", "modality", "label", "score", "top (probability)"], rows):
        click.echo(line)
