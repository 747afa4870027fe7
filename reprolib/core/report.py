"""Tables and plots built from results records, saved under ``figures/<paper>/``.

File stems are ``<name>-<profile>`` so that a smoke run never overwrites the figure of a
larger run; every table caption and figure title carries the provenance (profile, data set,
epochs, device).  The paper's numbers always sit in their own column / as black crosses.

The same records give the same files, byte for byte: tables are text made from the records,
and a figure is saved with fixed PNG metadata (:data:`PNG_METADATA`: no matplotlib version,
no date), so with the locked matplotlib and its bundled fonts the pixels and the bytes repeat
(``tests/pipeline/test_committed_outputs.py`` regenerates every committed table and figure
from the committed records and compares).  matplotlib and pandas are imported when a table
or figure is made, not with this module (``reprolib plan`` reads no records).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

from reprolib import paths
from reprolib.data.catalog import dataset_label
from reprolib.core import io

if TYPE_CHECKING:
    import pandas as pd

FLOPS_NOTE = "FLOPs: one multiply-add = one FLOP"

#: The metadata every saved PNG carries: fixed, so that it does not change with the
#: matplotlib version (its default ``Software`` entry) and holds no date.
PNG_METADATA = {"Software": "reprolib"}


def provenance(cfg=None, records: pd.DataFrame | None = None, **extra) -> str:
    """One line naming what produced a result: profile, data set, epochs, device."""
    import dataclasses

    parts = []
    if cfg is not None:
        parts.append(f"profile={cfg.profile}")
        ds = str(getattr(cfg, "dataset", ""))
        parts.append("data=" + dataset_label(ds))
        for f in dataclasses.fields(cfg):
            v = getattr(cfg, f.name)
            if dataclasses.is_dataclass(v) and hasattr(v, "epochs"):
                parts.append(f"{f.name}={v.epochs} ep")
            elif f.name in ("epochs", "rounds"):
                parts.append(f"{f.name}={v}")
    for k, v in extra.items():
        parts.append(f"{k}={v}")
    if records is not None and "device" in records and len(records):
        devs = sorted({str(d).split(" threads")[0] for d in records["device"].dropna()})
        parts.append("device=" + "/".join(devs))
    return " · ".join(parts)


def device_label(records) -> str:
    """The devices of some records (``device`` fields), thread counts dropped."""
    devs = sorted({str(r.get("device", "")).split(" threads")[0] for r in records if r})
    return "/".join(d for d in devs if d) or "unknown"


def to_markdown(df: pd.DataFrame, floatfmt: str = ".4g") -> str:
    """A GitHub-flavoured Markdown table of ``df`` (index dropped)."""

    def fmt(v):
        if isinstance(v, float):
            return "" if math.isnan(v) else format(v, floatfmt)
        return "" if v is None else str(v)

    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join(" --- " for _ in cols) + "|"]
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join(fmt(v) for v in row) + " |")
    return "\n".join(lines)


def figures_dir(paper: str) -> Path:
    d = paths.figures_root() / paper
    d.mkdir(parents=True, exist_ok=True)
    return d


def save_table(df: pd.DataFrame, paper: str, name: str, profile: str, caption: str = "",
               floatfmt: str = ".4g") -> Path:
    """Write ``df`` as ``figures/<paper>/<name>-<profile>.{csv,md}``; returns the .md path.
    Each file is written atomically (:func:`reprolib.io.atomic_write`): a full disk or a kill
    leaves the previous table in place, never half a file."""
    d = figures_dir(paper)
    stem = f"{name}-{profile}"
    csv = df.to_csv(index=False)
    md = (f"{caption}\n\n" if caption else "") + to_markdown(df, floatfmt) + "\n"
    io.write_text(csv, d / f"{stem}.csv")
    io.write_text(md, d / f"{stem}.md")
    return d / f"{stem}.md"


def save_figure(fig, paper: str, name: str, profile: str, dpi: int = 120) -> Path:
    """Save ``fig`` as ``figures/<paper>/<name>-<profile>.png``, atomically (a full disk
    leaves the previous figure as it was); returns the path."""
    path = figures_dir(paper) / f"{name}-{profile}.png"
    io.atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=dpi,
                                                  bbox_inches="tight",
                                                  metadata=PNG_METADATA))
    return path


def save_tables(paper: str, profile: str, tables: dict[str, pd.DataFrame]) -> list[Path]:
    """Save every table of ``tables`` (``{stem: DataFrame}``, caption in ``df.attrs["caption"]``)
    as ``figures/<paper>/<stem>-<profile>.{csv,md}``; returns the Markdown paths."""
    return [save_table(df, paper, name, profile, df.attrs.get("caption", ""))
            for name, df in tables.items()]


def save_figures(paper: str, profile: str, figures: dict) -> list[Path]:
    """Save every figure of ``figures`` (``{stem: Figure}``) as
    ``figures/<paper>/<stem>-<profile>.png``; returns the paths."""
    return [save_figure(fig, paper, name, profile) for name, fig in figures.items()]


def log_axis(ax, which: str = "x") -> None:
    """A log axis with plain tick labels (0.3, 0.5, 1, 2, 5) at 1-2-5 (1-2-3-5 within about a
    decade) and no labels on the minor ticks, which matplotlib otherwise writes as
    ``3×10⁰4×10⁰`` when the range is short; a major tick at 1 (the parent) when it is in range."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    axis = ax.xaxis if which == "x" else ax.yaxis
    lo, hi = ax.get_xlim() if which == "x" else ax.get_ylim()
    span = math.log10(hi / lo) if lo > 0 and hi > lo else 3.0
    subs = (1.0, 2.0, 3.0, 5.0) if span < 1.3 else (1.0, 2.0, 5.0) if span < 3 else (1.0,)
    axis.set_major_locator(LogLocator(base=10, subs=subs))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def plot_tradeoff(df: pd.DataFrame, x: str, y: str, *, hue: str | None = None,
                  style: str | None = None, paper_df: pd.DataFrame | None = None,
                  paper_x: str | None = None, paper_y: str | None = None,
                  baseline: tuple[float, float] | None = None, ax=None, title: str = "",
                  xlabel: str | None = None, ylabel: str | None = None, logx: bool = False,
                  sort: bool = True):
    """Accuracy-vs-resource plot: one line+marker curve per ``hue`` group.

    paper_df: the paper's points (columns ``paper_x``/``paper_y``, default ``x``/``y``),
        drawn as black crosses labelled "paper".
    baseline: (x, y) of the unmodified model, drawn as dashed reference lines.
    """
    import matplotlib.pyplot as plt
    import seaborn as sns

    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 4))
    data = df.sort_values(x) if sort and len(df) else df
    if len(data):
        sns.lineplot(data=data, x=x, y=y, hue=hue, style=style, markers=True, dashes=False,
                     ax=ax, sort=False, errorbar=None)
    if paper_df is not None and len(paper_df):
        ax.scatter(paper_df[paper_x or x], paper_df[paper_y or y], marker="x", color="black",
                   s=40, zorder=5, label="paper")
    if baseline is not None:
        ax.axvline(baseline[0], ls="--", lw=0.8, color="grey")
        ax.axhline(baseline[1], ls="--", lw=0.8, color="grey")
    if logx:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel or x)
    ax.set_ylabel(ylabel or y)
    if title:
        ax.set_title(title, fontsize=9)
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return ax
