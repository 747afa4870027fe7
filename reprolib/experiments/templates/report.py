"""The templates tables, figures and summaries, read back from the records: Table 2 (the
``measure`` stages), Table 1 and the runs table (the ``cell`` stages), Figures 2-5 and the
paragraphs of a one-seed run.  Stages are found in the pipeline's graph by role and tags
(``graph.select("cell", dataset=..., model=...)``)."""

from __future__ import annotations

import math
import textwrap

import pandas as pd

from reprolib.configs.templates import PAPER_BASE_PARAMS_M, PAPER_TABLE1, PAPER_TABLE2
from reprolib.core import report
from reprolib.core.measure import count_params
from reprolib.core.pipeline import profile_note, records
from reprolib.core.registry import create_model
from reprolib.core.results import records_frame
from reprolib.data.catalog import dataset_label
from reprolib.experiments import evidence as ev
from reprolib.experiments.templates.graph import _table2_limit, datasets, grid
from reprolib.methods.templates import PAPER_WIDTHS, TEMPLATES, template_table
from reprolib.models.templates_cifar import PAPER_MODELS, VGG19_FILTERS

PAPER = "templates"

#: The paper's names of the templates (its table headers).
LABELS = {"base": "Base", "reverse": "Reverse-Base", "uniform": "Uniform",
          "quadratic": "Quadratic", "negative_quadratic": "Negative-Quadratic"}

#: One colour and marker per template, the same in every figure (tab10 colours).
COLORS = {"base": "#1f77b4", "reverse": "#d62728", "uniform": "#2ca02c",
          "quadratic": "#9467bd", "negative_quadratic": "#ff7f0e"}
MARKERS = {"base": "o", "reverse": "v", "uniform": "s", "quadratic": "D",
           "negative_quadratic": "^"}

#: The paper's names of the models (its text and tables).
MODEL_LABELS = {"vgg19_cifar": "VGG-19", "resnet50_cifar": "ResNet-50",
                "googlenet_cifar": "Inception", "mobilenet_cifar": "MobileNet"}


def _paper_model(name: str) -> str:
    """``vgg19_cifar_tiny`` -> ``vgg19_cifar`` (the paper's numbers are for the full models)."""
    return name.removesuffix("_tiny")


def _paper_key(ds: str) -> str:
    """The paper's table key for a data set: the CIFAR-10 subset counts as ``cifar10``."""
    return "cifar100" if "100" in dataset_label(ds) else "cifar10"


# --------------------------------------------------------------------------- frames


def _graph(cfg):
    """The templates graph of ``cfg`` (the package's pipeline)."""
    from reprolib.experiments.templates import PIPELINE

    return PIPELINE.graph(cfg)


def _frame(stage_list, history: bool = False) -> pd.DataFrame:
    """The records of ``stage_list`` (``records_frame``); ``history`` (the per-epoch log)
    only when asked for: :func:`cell_stats` counts plateaus from it."""
    recs = list(records(stage_list).values())
    df = records_frame(recs)
    return df if history else df.drop(columns=["history"], errors="ignore")


def grid_frame(cfg, **tags) -> pd.DataFrame:
    """The training grid's records (``reprolib.results.records_frame``: metrics and
    ``config.<key>`` columns, ``history`` kept for :func:`cell_stats`' plateau count), in
    grid order: the ``cell`` stages whose tags include ``tags`` (``dataset``, ``model``,
    ``template``, ``width``, ``seed``)."""
    return _frame(_graph(cfg).select("cell", **tags), history=True)


def table2_frame(cfg) -> pd.DataFrame:
    """The Table 2 measurement records (``records_frame``), model-major: the ``measure``
    stages."""
    return _frame(_graph(cfg).select("measure"))


def _col(df: pd.DataFrame, name: str) -> pd.Series:
    return df[name] if name in df else pd.Series([math.nan] * len(df), index=df.index)


# --------------------------------------------------------------------------- tables


#: Why our Table 2 parameter counts differ from the paper's, per model (the cells whose
#: rounding to 0.1 M differs).  Alternative readings of section 3 were checked: the
#: quadratic's vertex equation as printed (``D^2/2``) or as defined (``D^2/4``), the stems
#: counted as layers, GoogLeNet modules counted by all six convolution widths instead of
#: their outputs, MobileNet with only its 13 pointwise layers, ResNet-50 stages (D = 4)
#: instead of blocks (D = 16).  None reproduces the paper's redistributed cells beyond what
#: is noted here.
PARAMS_NOTES = {
    "vgg19_cifar": "base/reverse/uniform/neg-quadratic agree; quadratic 15.8 M is below the "
                   "uniform 16.0 M, which no parabola with vertex f_min=64 and sum F gives "
                   "(19.42 M as defined, 18.91 M with the printed D^2/2 coefficient)",
    "resnet50_cifar": "the paper does not say how a block's count maps to its 3 convs, nor "
                      "the unit; blocks (D=16, default) match base only; stages as layers "
                      "(Figure 1 caption, unit='stage', D=4) match base and neg-quadratic "
                      "(33.03 M) and give 21.97/18.34/18.27 M for reverse/uniform/quadratic "
                      "(paper 23.1/12.9/19.0)",
    "googlenet_cifar": "module outputs (default), all six conv widths per module, or the stem "
                       "as a 10th layer each match base only; the paper's neg-quadratic "
                       "3.2 M (half of base) is not reachable with both ends = f_min = 256 "
                       "and the total kept",
    "mobilenet_cifar": "reversing a chain keeps every adjacent pointwise product f_(l-1) f_l, "
                       "so reverse must stay ~3.2 M (ours 3.25; paper 2.2) under any reading; "
                       "with the 13 pointwise layers only (stem fixed) 3.22/3.25/2.61/3.06/3.35 M "
                       "(still 1/5)",
}


def table2(cfg) -> pd.DataFrame:
    """Table 2: per model x template (width 1.0, 10 classes): params (M), GFLOPs, memory (GB
    per batch of ``memory_batch``) and inference time (us per image), ours beside the
    paper's, with a note where our memory cell was skipped or our parameter count cannot
    match the paper's."""
    df = table2_frame(cfg)
    nan = math.nan
    rows = []
    for r in df.to_dict("records"):
        m, t = r["config.model"], r["config.template"]
        pm = _paper_model(m)
        mem, lat = r.get("peak_memory_bytes", nan), r.get("latency_us_per_image", nan)
        mem = nan if mem is None else float(mem)
        p_ppr = PAPER_TABLE2["params_M"].get(pm, {}).get(t, nan)
        agree = round(r["params"] / 1e6, 1) == p_ppr
        how = r.get("memory_method", "")
        rows.append({
            "model": m, "template": LABELS[t],
            "params_M ours": r["params"] / 1e6,
            "params_M paper": p_ppr,
            "GFLOPs ours": r["flops"] / 1e9,
            "memory_GB ours": mem / 1e9 if mem == mem else nan,
            "memory_GB paper": PAPER_TABLE2["memory_GB"].get(pm, {}).get(t, nan),
            "time_us ours": nan if lat is None else lat,
            "time_us paper": PAPER_TABLE2["time_us"].get(pm, {}).get(t, nan),
            "memory note": how if isinstance(how, str) and how.startswith("skipped") else "",
            "params note": "" if agree else PARAMS_NOTES.get(pm, "")})
    out = pd.DataFrame(rows)
    prov = report.provenance(cfg, df)
    if cfg.measure_memory:
        mem_txt = (f"memory: peak of one training step measured at batch {cfg.memory_batch} "
                   "on the CPU" if not cfg.memory_probe else
                   f"memory: peak of one training step on the CPU, extrapolated to batch "
                   f"{cfg.memory_batch} from batches {cfg.memory_probe[0]},{cfg.memory_probe[1]}")
    else:
        mem_txt = "memory: not measured (measure_memory off)"
    if cfg.measure_latency:
        threads = sorted({int(x) for x in _col(df, "latency_threads").dropna()})
        th = "/".join(map(str, threads)) or "?"
        time_txt = (f"time: median of {cfg.latency_repeats} forward passes at batch "
                    f"{cfg.latency_batch}, {th} thread{'s' if th != '1' else ''}, us per image; "
                    "CPU timings on a shared machine are indicative only")
    else:
        time_txt = "time: not measured (measure_latency off)"
    out.attrs["caption"] = (f"Table 2 (ours vs paper), width 1.0, 10 classes · {prov} · "
                            f"{mem_txt} · {time_txt} · paper: Titan X GPU · "
                            f"{report.FLOPS_NOTE}{profile_note(cfg)}")
    return out


def table1(cfg) -> pd.DataFrame:
    """Table 1: accuracy (%) per data set x model x template at width ``cfg.table1_width``,
    ours beside the paper's (which is at width 1.0, 160 epochs); templates not trained here
    are empty."""
    g = _graph(cfg)
    df = _frame(g.select("cell"))
    w = float(cfg.table1_width)
    rows = []
    for ds in datasets(cfg):
        for m in cfg.models:
            row = {"dataset": dataset_label(ds), "model": m, "width": w}
            ppr = PAPER_TABLE1.get(_paper_key(ds), {}).get(_paper_model(m), {})
            for t in TEMPLATES:
                cell = g.select("cell", dataset=ds, model=m, template=t, width=w)
                row[f"{LABELS[t]} ours"] = (float(cell[0].metrics()["acc"]) if cell
                                            else math.nan)
                row[f"{LABELS[t]} paper"] = ppr.get(t, math.nan)
            rows.append(row)
    out = pd.DataFrame(rows)
    out.attrs["caption"] = (f"Table 1: test accuracy (%) at width {w:g} · "
                            f"{report.provenance(cfg, df)} · paper columns: width 1.0, 160 "
                            f"epochs, full CIFAR{profile_note(cfg)}")
    return out


def runs_table(cfg) -> pd.DataFrame:
    """Every trained grid cell: data set, model, template, width, accuracy, params, FLOPs,
    memory, latency, epochs and training time."""
    df = grid_frame(cfg)
    out = pd.DataFrame({
        "dataset": df["config.dataset"].map(dataset_label), "model": df["config.model"],
        "template": df["config.template"], "width": df["config.width"], "acc": df["acc"],
        "params_M": df["params"] / 1e6, "MFLOPs": df["flops"] / 1e6,
        "memory_MB": _col(df, "peak_memory_bytes") / 1e6,
        "latency_us": _col(df, "latency_us_per_image"),
        "epochs": df["epochs"], "train_time_s": df["train_time_s"]})
    mem = (f"memory: peak of one training step at batch {cfg.memory_batch} (CPU)"
           if cfg.measure_memory else "memory: not measured")
    lat = (f"latency: batch {cfg.latency_batch}, CPU, us per image" if cfg.measure_latency
           else "latency: not measured")
    out.attrs["caption"] = (f"Training grid: every cell's record · {report.provenance(cfg, df)}"
                            f" · {report.FLOPS_NOTE}; {mem}; {lat}{profile_note(cfg)}")
    return out


def make_tables(cfg) -> dict[str, pd.DataFrame]:
    """A one-seed run's tables: ``table2`` (params / memory / time at width 1.0), ``table1``
    (accuracy per template) and ``runs`` (every trained cell), read back from the records."""
    return {"table2": table2(cfg), "table1": table1(cfg), "runs": runs_table(cfg)}


# --------------------------------------------------------------------------- figures


#: Figures 3-5: the x axis of each (metric column, axis label, figure name, scale).
FIGURES = {
    "params": ("params", "parameters (M)", "fig3_acc_vs_params", 1e-6),
    "memory": ("peak_memory_bytes", "memory footprint (GB / batch of 64)", "fig4_acc_vs_memory",
               1e-9),
    "latency": ("latency_us_per_image", "inference time (us / image)", "fig5_acc_vs_time", 1.0),
}


def _log_ticks(ax, xs) -> None:
    """Readable ticks on a log x axis: at 1, 2 and 5 x 10^k, labelled as plain numbers, the
    limits padded so that at least two of them fall inside (a single point included)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    xs = [x for x in xs if x and x > 0 and math.isfinite(x)]
    if not xs:
        return
    lo, hi = min(xs) / 1.5, max(xs) * 1.5
    ticks = [m * 10.0 ** k for k in range(math.floor(math.log10(lo)) - 1,
                                          math.ceil(math.log10(hi)) + 2) for m in (1, 2, 5)]
    while sum(lo <= t <= hi for t in ticks) < 2:   # LogLocator falls back to linear ticks
        lo, hi = lo / 1.25, hi * 1.25
    ax.set_xlim(lo, hi)
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())


def cell_stats(df: pd.DataFrame) -> pd.DataFrame:
    """The training grid's records (one row per cell and seed) as one row per cell: accuracy,
    parameters, FLOPs, memory and latency as mean and std over the seeds (``<col>`` and
    ``<col>_std``), ``n`` seeds, ``plateaued`` (how many of them ended on a plateau,
    ``evidence.plateaued``), epochs and training time."""
    keys = ["config.dataset", "config.model", "config.template", "config.width"]
    rows = []
    for (ds, m, t, w), g in df.groupby(keys, sort=False):
        row = {"dataset": ds, "model": m, "template": t, "width": float(w), "n": len(g)}
        for col in ("acc", "params", "flops", "peak_memory_bytes", "latency_us_per_image",
                    "train_time_s"):
            mean, std, _ = ev.mean_std(_col(g, col).astype(float))
            row[col], row[f"{col}_std"] = mean, std
        row["epochs"] = int(g["epochs"].max())
        row["plateaued"] = int(sum(ev.plateaued(h)["plateau"] for h in _col(g, "history")
                                   if isinstance(h, list)))
        rows.append(row)
    return pd.DataFrame(rows)


def plot_figure(df: pd.DataFrame, cfg, which: str, title: str = ""):
    """One of Figures 3-5: accuracy vs params / memory / inference time, one curve per
    template over the widths (the same colour and marker per template in every figure), one
    panel per model, one row per data set; error bars = std over the seeds (accuracy, and
    latency on the x axis); dashed lines through the base model at the largest trained width
    <= 1.0 (the paper: width 1.0); each point labelled with its width.  The panels of a row
    share one accuracy range (a 2-point gap looks like one beside a 10-point gap), said in
    the title.

    Args:
        df: the training grid's records (:func:`grid_frame`), one row per cell and seed.
        cfg: a ``TemplatesConfig`` (its models and data sets give the panels).
        which: ``"params"``, ``"memory"`` or ``"latency"``.
        title: the figure's suptitle (give it the provenance).
    """
    import matplotlib.pyplot as plt

    col, xlabel, _, scale = FIGURES[which]
    stats = cell_stats(df) if len(df) else pd.DataFrame()
    dss = datasets(cfg)
    fig, axes = plt.subplots(len(dss), len(cfg.models), figsize=(4.2 * len(cfg.models),
                             3.6 * len(dss)), squeeze=False, sharey="row")
    for i, ds in enumerate(dss):
        for j, m in enumerate(cfg.models):
            ax = axes[i][j]
            sub = (stats[(stats["dataset"] == ds) & (stats["model"] == m)]
                   if len(stats) else stats)
            if not len(sub) or sub[col].isna().all():
                ax.set_title(f"{_label(m)} ({dataset_label(ds)}): {which} not measured", fontsize=8)
                continue
            for t in TEMPLATES:
                c = sub[sub["template"] == t].sort_values(col)
                if not len(c):
                    continue
                x = c[col] * scale
                xerr = c[f"{col}_std"] * scale if which == "latency" else None
                ax.errorbar(x, c["acc"], yerr=c["acc_std"], xerr=xerr, color=COLORS[t],
                            marker=MARKERS[t], ms=5, capsize=3, lw=1.3, label=LABELS[t])
                for xv, yv, w in zip(x, c["acc"], c["width"]):
                    ax.annotate(f"w{w:g}", (xv, yv), xytext=(4, 3), textcoords="offset points",
                                fontsize=8, color=COLORS[t])
            base = sub[(sub["template"] == "base") & (sub["width"] <= 1.0)]
            if len(base):
                b = base.sort_values("width").iloc[-1]
                ax.axvline(b[col] * scale, ls="--", lw=0.8, color="grey")
                ax.axhline(b["acc"], ls="--", lw=0.8, color="grey")
            ax.set_xscale("log")
            _log_ticks(ax, list(sub[col] * scale))
            ax.margins(y=0.12)
            ax.set(xlabel=xlabel, ylabel="test accuracy (%)" if j == 0 else "")
            ax.set_title(f"{_label(m)} · {dataset_label(ds)}", fontsize=9)
            ax.grid(alpha=0.3, which="both")
            ax.legend(fontsize=7)
    if title:
        width = int(fig.get_figwidth() * 17)          # characters of 8-pt text per figure row
        fig.suptitle("\n".join(textwrap.fill(line, width) for line in title.split("\n")),
                     fontsize=8)
    fig.tight_layout()
    return fig


#: The sentence a Figure 3-5 title adds: its panels share the accuracy axis.
SHARED_RANGE = "the panels of a row share one accuracy axis"


def fig2_frame() -> pd.DataFrame:
    """Figure 2's data: VGG-19's filters per layer (rows 1..16) under every template
    (columns), from the width rules (no training)."""
    df = pd.DataFrame(template_table(VGG19_FILTERS), index=range(1, len(VGG19_FILTERS) + 1))
    df.index.name = "layer"
    return df


def plot_fig2():
    """Figure 2: filters per layer of VGG-19 under every template (computed from the width
    rules, no training)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for t, fs in fig2_frame().items():
        ax.plot(fs.index, fs.values, marker=MARKERS[t], color=COLORS[t], label=LABELS[t])
    ax.set_xlabel("layer")
    ax.set_ylabel("filters")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    ax.set_title("Figure 2: filters per layer of VGG-19 per template (section 3's rules, "
                 f"F = {sum(VGG19_FILTERS)} kept; computed, no training)", fontsize=9)
    return fig


def make_figures(cfg) -> dict:
    """``fig2_vgg19_templates`` and Figures 3-5 (``fig3_acc_vs_params``,
    ``fig4_acc_vs_memory``, ``fig5_acc_vs_time``) from the training grid's records."""
    df = grid_frame(cfg)
    prov = report.provenance(cfg, df) + profile_note(cfg)
    seeds = (f" · mean ± std over seeds {', '.join(map(str, cfg.seeds))}" if cfg.seeds
             else " · one seed")
    out = {"fig2_vgg19_templates": plot_fig2()}
    for which, (_, _, name, _) in FIGURES.items():
        out[name] = plot_figure(df, cfg, which, title=f"{name}: accuracy vs {which} · {prov}"
                                f"{seeds}\n(dashed: base model at the largest trained width "
                                f"<= 1; labels: width multiplier; {SHARED_RANGE})")
    return out


# --------------------------------------------------------------------------- text


def grid_summary(cfg) -> str:
    """Plain lines saying which part of the paper's grid ``cfg`` runs (config only, no
    records)."""
    n = len(grid(cfg))
    ep = cfg.train.epochs
    ep_txt = f"{ep} epoch{'s' if ep != 1 else ''}"
    seeds = (f" x seeds {', '.join(map(str, cfg.seeds))} ({n * len(cfg.seeds)} runs in all)"
             if cfg.seeds else "")
    widths = ", ".join(f"{w:g}" for w in cfg.widths) + "".join(
        f" ({m}: {', '.join(f'{w:g}' for w in ws)} only)" for m, ws in (cfg.model_widths or ()))
    lines = [f"profile {cfg.profile!r}: {n} training runs of {ep_txt} = "
             f"{len(datasets(cfg))} data set(s) ({', '.join(dataset_label(d) for d in datasets(cfg))})"
             f" x {len(cfg.models)} models x {len(cfg.templates)} templates "
             f"({', '.join(cfg.templates)}) x widths {widths}{seeds}.",
             "The paper's grid: 2 data sets (CIFAR-10, CIFAR-100) x 4 models x 5 templates x "
             "8 widths = 320 runs of 160 epochs."]
    tiny = [m for m in cfg.models if m.endswith("_tiny")]
    cifar = [d for d in datasets(cfg) if "cifar" in d]
    if tiny or not cifar:
        lines.append("This profile is a code check, no part of the paper's grid: "
                     + ("tiny test models (base widths / 8); " if tiny else "")
                     + ("data set is not CIFAR." if not cifar else "CIFAR data."))
    else:
        sub = [d for d in datasets(cfg) if d.startswith("npz:")]
        cuts = ([f"the CIFAR-10 subset ({dataset_label(sub[0])}) instead of full CIFAR-10"]
                if sub else []) \
            + ([f"{ep_txt} instead of 160"] if ep != 160 else []) \
            + ([f"{n} of the 320 runs"] if n != 320 else [])
        lines.append("Part of the paper's grid at reduced cost (full-size models): "
                     + "; ".join(cuts) + "." if cuts else "The paper's full grid.")
    lines.append(f"Table 2: {len(cfg.table2_models)} models x {len(cfg.table2_templates)} "
                 f"templates at width 1.0 (measured, not trained); memory "
                 f"{'on' if cfg.measure_memory else 'off'}, latency "
                 f"{'on' if cfg.measure_latency else 'off'}.")
    return "\n".join(lines)


def ran_summary(cfg) -> str:
    """Plain lines saying which part of the paper's grid the records cover: per data set and
    model, the templates and widths trained and the training time."""
    g = _graph(cfg)
    df = _frame(g.select("cell"))
    lines = [f"profile {cfg.profile!r} ran {len(df)} of the paper's 320 training runs "
             f"({cfg.train.epochs} epoch(s) each instead of 160; paper widths "
             f"{', '.join(f'{w:g}' for w in PAPER_WIDTHS)}):"]
    for ds in datasets(cfg):
        for m in cfg.models:
            sub = _frame(g.select("cell", dataset=ds, model=m))
            if not len(sub):
                lines.append(f"  {dataset_label(ds)} · {m}: nothing")
                continue
            tpl = [t for t in TEMPLATES if t in set(sub["config.template"])]
            ws = sorted(set(sub["config.width"]))
            lines.append(f"  {dataset_label(ds)} · {m}: templates {', '.join(tpl)} x widths "
                         f"{', '.join(f'{w:g}' for w in ws)} ({len(sub)} runs, "
                         f"{sub['train_time_s'].sum() / 60:.1f} min of training)")
    missing = [t for t in TEMPLATES if t not in cfg.templates]
    lines.append(f"not run here: templates {', '.join(missing) or '-'}; "
                 f"data sets other than {', '.join(dataset_label(d) for d in datasets(cfg))}; "
                 f"widths other than the above; the paper's 160-epoch schedule.")
    return "\n".join(lines)


def resnet_stage_reading(templates=TEMPLATES) -> dict[str, float]:
    """ResNet-50 parameters (M, 10 classes, width 1.0) with the four stages as the layers
    (``unit="stage"``, D = 4: the Figure 1 caption's reading), per template."""
    return {t: count_params(create_model("resnet50_cifar", template=t, unit="stage")) / 1e6
            for t in templates}


def _label(model: str) -> str:
    """The paper's name of a model (``VGG-19``); a tiny test variant says so."""
    name = MODEL_LABELS.get(_paper_model(model), model)
    return f"{name} (tiny)" if model.endswith("_tiny") else name


def _rng(values, fmt: str = ".1f") -> str:
    """``"1.6-7.8"``, or one number when all are equal at that precision."""
    lo, hi = format(min(values), fmt), format(max(values), fmt)
    return lo if lo == hi else f"{lo}-{hi}"


def _list(items: list[str]) -> str:
    return ", ".join(items[:-1]) + " and " + items[-1] if len(items) > 1 else "".join(items)


def _matching(ok: pd.DataFrame, tab: pd.DataFrame) -> str:
    """``all four base models and VGG-19 Reverse-Base / Uniform`` from Table 2's matching
    rows ``ok``."""
    if not len(ok):
        return "none"
    bases = list(ok[ok["template"] == LABELS["base"]]["model"])
    n_base = int((tab["template"] == LABELS["base"]).sum())
    words = {2: "both", 3: "all three", 4: "all four"}
    out = []
    if bases:
        out.append(f"{words.get(n_base, f'all {n_base}')} base models"
                   if len(bases) == n_base > 1 else "the base " + _list([_label(m) for m in bases]))
    for m in dict.fromkeys(ok["model"]):
        ts = [t for t in ok[ok["model"] == m]["template"] if t != LABELS["base"]]
        if ts:
            out.append(f"{_label(m)} {' / '.join(ts)}")
    return _list(out)


def make_summary(cfg) -> str:
    """The paragraph about a one-seed run: base parameters vs the paper's, how many Table 2
    parameter cells match, the trained grid's accuracies; every number from the records (an
    evidence run's paragraph is ``claims.evidence_summary``)."""
    g = _graph(cfg)
    t2 = _frame(g.select("measure"))
    parts = []
    base = t2[t2["config.template"] == "base"]
    full = [m for m in PAPER_MODELS if m in set(base["config.model"])]
    if full:
        ours = " / ".join(f"{base[base['config.model'] == m]['params'].iloc[0] / 1e6:.2f}"
                          for m in full)
        ppr = " / ".join(f"{PAPER_BASE_PARAMS_M[m]:.1f}" for m in full)
        parts.append(f"{_list([MODEL_LABELS[m] for m in full])} in CIFAR form count {ours} M "
                     f"parameters (paper {ppr}).")
    parts.append("Their per-layer (per-block, per-module) filters are redistributed by "
                 "`reverse`, `uniform`, `quadratic` and `negative_quadratic` with the total kept "
                 "exactly (`reprolib.methods.templates.redistribute(filters, template)`; the "
                 "quadratic systems are solved as written, with the vertex coefficient D²/4 "
                 "where the paper prints D²/2), then scaled by the width multipliers "
                 "(`create_model(\"vgg19_cifar\", template=\"uniform\", width=0.5)`).")
    if len(t2):
        tab = table2(cfg)
        ok = tab[tab["params_M ours"].round(1) == tab["params_M paper"]]
        both = _matching(ok, tab)
        skipped = int((tab["memory note"] != "").sum())
        mem = (f" Memory is the peak of one SGD step at batch {cfg.memory_batch} on the CPU"
               + (f" ({skipped} cell{'s' if skipped != 1 else ''} over the "
                  f"{_table2_limit(cfg):g} GB limit not run)" if skipped else "")
               if cfg.measure_memory else " Memory is not measured at this profile")
        lat = (f", latency the median of {cfg.latency_repeats} batch-{cfg.latency_batch} passes "
               "(indicative only on a shared machine)." if cfg.measure_latency
               else "; latency is not measured.")
        parts.append(f"Table 2 (`figures/templates/table2-{cfg.profile}.md`): {len(ok)} of the "
                     f"{len(tab)} parameter cells match the paper to its printed 0.1 M "
                     f"({both}); the table's `params note` says per model why "
                     "the others cannot come from the paper's equations"
                     + ("; ResNet-50 `unit=\"stage\"` is offered as the alternative reading"
                        if "resnet50_cifar" in cfg.table2_models else "") + f".{mem}{lat}")
    df = _frame(g.select("cell"))
    if len(df):
        ep = sorted({int(e) for e in df["epochs"]})
        ws = sorted({float(w) for w in df["config.width"]})
        cells = []
        wins = pairs = 0
        p_ratio, f_ratio = [], []
        for m in cfg.models:
            for w in ws:
                sub = _frame(g.select("cell", dataset=cfg.dataset, model=m, width=w))
                if not len(sub):
                    continue
                accs = {t: float(a) for t, a in zip(sub["config.template"], sub["acc"])}
                txt = " / ".join(f"{t} {accs[t]:.1f}" for t in TEMPLATES if t in accs)
                cells.append(f"{_label(m)} w{w:g}: {txt}")
                if "base" in accs and len(accs) > 1:
                    pairs += 1
                    wins += max(v for t, v in accs.items() if t != "base") > accs["base"]
                    b = sub[sub["config.template"] == "base"].iloc[0]
                    for _, r in sub[sub["config.template"] != "base"].iterrows():
                        p_ratio.append(r["params"] / b["params"])
                        f_ratio.append(r["flops"] / b["flops"])
        tpl = [t for t in TEMPLATES if t in set(df["config.template"])]
        lo, hi = df["acc"].min(), df["acc"].max()
        ppr = [v for m in cfg.models
               for v in PAPER_TABLE1[_paper_key(cfg.dataset)].get(_paper_model(m), {}).values()]
        verdict = (f" A redistributed template beats the base model at the same width in "
                   f"{wins} of these {pairs} pair{'s' if pairs != 1 else ''}, with "
                   f"{_rng(p_ratio, '.2f')}x its parameters but {_rng(f_ratio)}x its FLOPs, "
                   "so the comparison is at equal width, not equal cost." if pairs else "")
        paper_rng = (f" against the paper's {_rng(ppr, 'g')} % at width 1.0 after 160 "
                     "epochs" if ppr else "")
        full_grid = len(df) == 320 and ep == [160] and not any(m.endswith("_tiny")
                                                              for m in cfg.models)
        scope = ("" if full_grid else " This is a check of the pipeline at a small budget, "
                 "not the paper's 160-epoch, 320-run grid (`--profile paper`).")
        ep_txt = "/".join(map(str, ep)) + (" epoch" if ep == [1] else " epochs")
        parts.append(f"Accuracy (`figures/templates/table1-{cfg.profile}.md`, Figures 3–5): "
                     f"{len(df)} runs, {_list(tpl)} at widths "
                     f"{' / '.join(f'{w:g}' for w in ws)}, {ep_txt} on "
                     f"`{dataset_label(cfg.dataset)}` — {'; '.join(cells)} % top-1 "
                     f"({_rng([lo, hi])} %{paper_rng}).{verdict}{scope}")
    return f"`reprolib run templates --profile {cfg.profile}`: " + " ".join(parts)
