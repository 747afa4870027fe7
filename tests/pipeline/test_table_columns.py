"""A table's column order is fixed by the code: rebuilt from the committed `cpu` records (JSON
files store their keys sorted), every table has exactly the columns, in the same order, of the
committed `figures/<paper>/<name>-cpu.md`, so a rerun never reorders a committed table."""

from __future__ import annotations

import pandas as pd
import pytest

from reprolib import paths
from reprolib.configs import get_config
from reprolib.experiments import EXPERIMENTS, get_experiment

PAPERS = [p for p in EXPERIMENTS if (paths.ROOT / "figures" / p).is_dir()
          and list((paths.ROOT / "results" / p / "cpu").glob("*.json"))]


def _header(md) -> list[str]:
    line = next(ln for ln in md.read_text().splitlines() if ln.startswith("| "))
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _columns(df: pd.DataFrame) -> list[str]:
    cols = [str(c) for c in df.columns]
    if not isinstance(df.index, pd.RangeIndex) or df.index.name:
        cols = [str(df.index.name or "")] + cols
    return cols


def test_the_committed_cpu_tables_are_there():
    """The check below is per paper with committed cpu records and tables: there must be
    some (it would pass with none)."""
    assert len(PAPERS) >= 6, PAPERS


@pytest.mark.parametrize("paper", [pytest.param(p, marks=pytest.mark.slow) if p == "overview"
                                   else p for p in PAPERS])   # overview: ~14 s (counting)
def test_tables_from_records_keep_the_committed_column_order(paper, monkeypatch):
    monkeypatch.delenv("REPROLIB_RESULTS", raising=False)     # the committed records
    tables = get_experiment(paper).tables(get_config(paper, "cpu"))
    checked = 0
    for name, df in tables.items():
        md = paths.ROOT / "figures" / paper / f"{name}-cpu.md"
        if not md.exists():
            continue
        assert _columns(df) == _header(md), f"{paper}/{name}: columns differ from {md.name}"
        checked += 1
    assert checked, f"{paper}: no committed cpu table to compare"
