"""Where reprolib reads and writes, relative to the project root.

The root is the checkout holding ``pyproject.toml`` next to the ``reprolib`` package (or the
current directory for an installed package).  Each location can be moved by an environment
variable, which is how the tests and nbval keep their outputs out of the tracked tree.

| location  | default        | variable            |
| results   | results/       | REPROLIB_RESULTS    |
| figures   | figures/       | REPROLIB_FIGURES    |
| data      | data/          | REPROLIB_DATA       |
| runs      | runs/          | REPROLIB_RUNS       |  (papermill outputs)
"""

from __future__ import annotations

import os
from pathlib import Path

_PKG = Path(__file__).resolve().parent
ROOT = _PKG.parent if (_PKG.parent / "pyproject.toml").exists() else Path.cwd()


def _loc(var: str, default: str) -> Path:
    p = Path(os.environ.get(var, ROOT / default))
    return p if p.is_absolute() else ROOT / p


def results_root() -> Path:
    return _loc("REPROLIB_RESULTS", "results")


def figures_root() -> Path:
    return _loc("REPROLIB_FIGURES", "figures")


def data_root() -> Path:
    return _loc("REPROLIB_DATA", "data")


def runs_root() -> Path:
    return _loc("REPROLIB_RUNS", "runs")


def resolve(path: str | os.PathLike) -> Path:
    """A user path: absolute as given, relative to the project root otherwise."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else ROOT / p


def rel(path: str | os.PathLike) -> str:
    """``path`` relative to the project root where possible (for printing, never absolute)."""
    p = Path(path).resolve()
    try:
        return str(p.relative_to(ROOT.resolve()))
    except ValueError:
        return p.name
