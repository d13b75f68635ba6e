"""Rough edges a newcomer meets on the command line: help that says what it needs, listings that
say what to do."""
from __future__ import annotations


def test_bench_help_shows_each_data_set_layout_and_models_lists_no_bare_dash():
    from click.testing import CliRunner

    from binder.cli import app
    from recipes.bench import BENCHMARKS

    out = CliRunner().invoke(app, ["bench", "--help"]).output
    for name, bench in BENCHMARKS.items():
        assert f"{name} ({bench.title}" in out and bench.layout.split()[0] in out
    listing = CliRunner().invoke(app, ["models"]).output
    assert not any(line.rstrip().endswith(" -") for line in listing.splitlines())
