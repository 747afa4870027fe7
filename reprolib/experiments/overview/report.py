"""The overview's tables, figure and summary: the conformance table, the cross-method chart,
the export table, every part gathered from the papers' pipelines (their ``conformance()``,
``points(recs, profile)``, ``reported_points()``, ``export_cases()`` and ``overview``
presentation), none of them known here.

How a pipeline presents itself (its ``overview`` attribute, all optional): ``label`` (the
chart's legend), ``color``, ``short`` (its name in the chart's titles), ``reported`` (where
the paper reports its own sizes, the chart's bottom row; "" = it prints none) and
``mismatch_reasons`` (the kinds of explained conformance mismatches it has, for the summary).
A pipeline without one shows under its name in a colour of matplotlib's cycle.
"""

from __future__ import annotations

import functools
import math
import re

import numpy as np
import pandas as pd

from reprolib import paths
from reprolib.configs import get_config, get_paper
from reprolib.core import report, results
from reprolib.core.pipeline import Pipeline, profile_note
from reprolib.errors import ReprolibError
from reprolib.experiments.overview.rows import POINT_COLUMNS

MARKERS = {"cpu": "o", "evidence": "s", "smoke": "^", "gpu": "D", "paper": "*"}
VERDICTS = ("match", "explained mismatch", "unexplained mismatch", "not counted", "not printed")
CONFORMANCE_COLUMNS = ("paper", "table", "quantity", "unit", "paper_value", "ours", "difference",
                       "tolerance", "verdict", "explanation", "counted")
_WORDS = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")


# =========================================================================== the papers


def _has(p: Pipeline, method: str) -> bool:
    """Whether ``p`` implements ``method`` itself (not the base's empty one)."""
    own = getattr(type(p), method, None)
    return own is not None and own is not getattr(Pipeline, method, None)


def _pipelines() -> dict[str, Pipeline]:
    from reprolib.experiments import pipelines

    return pipelines()


def shown() -> dict[str, Pipeline]:
    """Every pipeline the chart may show (one with ``points`` or ``reported_points``), in
    the overview's order: those with export cases in the order of their first case in
    ``reprolib.configs.overview.EXPORT_CASES`` (the export table's order), then the others
    in notebook order."""
    from reprolib.configs.overview import EXPORT_CASES

    pipes = {n: p for n, p in _pipelines().items()
             if _has(p, "points") or _has(p, "reported_points")}
    first = {}
    for n, p in pipes.items():
        ranks = [EXPORT_CASES.index(c) for c in p.export_cases() if c in EXPORT_CASES]
        first[n] = min(ranks) if ranks else len(EXPORT_CASES)
    return dict(sorted(pipes.items(), key=lambda kv: first[kv[0]]))


def style(method: str) -> dict:
    """How ``method`` (a paper's name) shows: its pipeline's ``overview`` presentation, else
    its name and a colour of matplotlib's cycle."""
    p = _pipelines().get(method)
    own = dict(getattr(p, "overview", None) or {})
    if not own.get("color"):
        known = list(shown())
        i = known.index(method) if method in known else len(known) + sum(map(ord, method))
        own["color"] = f"C{i % 10}"
    own.setdefault("label", method)
    own.setdefault("short", method)
    return own


def method_labels() -> dict[str, str]:
    """``{paper: its chart label}`` of every pipeline the chart may show, in order."""
    return {n: style(n)["label"] for n in shown()}


def _order(methods) -> list[str]:
    """The methods present (a column of points), in the overview's order; unknown ones last,
    in their order of appearance."""
    present = list(dict.fromkeys(methods))
    known = [m for m in shown() if m in present]
    return known + [m for m in present if m not in known]


def _spell(n: int) -> str:
    return _WORDS[n] if 0 <= n < len(_WORDS) else str(n)


def _and(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


# =========================================================================== conformance


def verdict(r: dict) -> str:
    """A conformance row's verdict (:data:`VERDICTS`) from its ``ours``, ``paper_value``,
    ``difference``, ``tolerance`` and explanation."""
    if r["ours"] is None:
        return "not counted"
    if r["paper_value"] is None:
        return "not printed"
    if abs(r["difference"]) <= r["tolerance"] + 1e-9:
        return "match"
    return "explained mismatch" if r["explained"] and r["explanation"] else "unexplained mismatch"


@functools.lru_cache(maxsize=4)
def _conformance_rows(papers: tuple) -> tuple:
    pipes = _pipelines()
    rows = [r for n in papers for r in pipes[n].conformance()]
    for r in rows:
        p, o, d = r["paper_value"], r["ours"], r["decimals"]
        r["tolerance"] = 0.0 if d is None else 0.5 * 10 ** -d
        r["difference"] = None if p is None or o is None else o - p
        r["verdict"] = verdict(r)
        if r["verdict"] == "match":
            r["explanation"] = ""
    return tuple(rows)


def _conformance_papers() -> tuple:
    return tuple(n for n, p in _pipelines().items() if _has(p, "conformance"))


def conformance() -> pd.DataFrame:
    """Every architecture-determined number the papers print, counted from code: the rows of
    each paper's ``conformance()``, in notebook order.

    Columns: ``paper``, ``table`` (where it is printed), ``quantity``, ``unit``,
    ``paper_value`` (as printed), ``ours`` (counted: parameters of the distinct tensors,
    FLOPs with one multiply-add = one FLOP, on PyTorch's meta device), ``difference`` (ours -
    paper), ``tolerance`` (half a unit of the printed last digit; 0 for exact counts),
    ``verdict`` (:data:`VERDICTS`: ``match`` when the difference is within the tolerance;
    ``explained mismatch`` with the reason, e.g. a different classifier width or the
    paper's learned widths that it does not print; ``unexplained mismatch`` when no reading
    we tried gives the printed number; ``not counted`` when reprolib, timm and torchvision
    lack the model; ``not printed``), ``explanation`` and ``counted`` (what was built).
    Deterministic; computed once per process (a few seconds).
    """
    rows = _conformance_rows(_conformance_papers())
    df = pd.DataFrame([{k: r[k] for k in CONFORMANCE_COLUMNS} for r in rows],
                      columns=list(CONFORMANCE_COLUMNS))
    df.attrs["caption"] = (
        f"Conformance: every architecture-determined number the {_spell(df['paper'].nunique())} "
        "papers print, counted "
        "from reprolib's code on PyTorch's meta device (no training, no records), beside the "
        f"printed value. {report.FLOPS_NOTE}. Tolerance: half a unit of the printed last "
        "digit (0 for exact counts); verdict: match / explained mismatch / unexplained "
        "mismatch / not counted (no implementation in reprolib, timm or torchvision) / not "
        "printed.")
    return df


def conformance_counts(df: pd.DataFrame | None = None) -> pd.DataFrame:
    """Rows per paper and verdict (columns :data:`VERDICTS`, plus ``total``)."""
    df = conformance() if df is None else df
    c = pd.crosstab(df["paper"], df["verdict"]).reindex(columns=list(VERDICTS), fill_value=0)
    c = c.reindex([p for p in dict.fromkeys(df["paper"])])
    c.loc["all"] = c.sum()
    c["total"] = c.sum(axis=1)
    c.columns.name = None
    return c.reset_index().rename(columns={"index": "paper"})


# =========================================================================== export


def export_frame(cfg) -> pd.DataFrame:
    """One row per export record that exists: method, model, input, params, ONNX initializer
    weights, file size, ONNX Runtime and ``torch.export`` max abs difference to PyTorch,
    output scale, tied weights and whether each stayed one initializer."""
    from reprolib.experiments import get_experiment

    rows = []
    for s in get_experiment("overview").graph(cfg).select("export"):
        if not s.done:
            continue
        m = s.metrics()
        rows.append({"method": style(s.tags["method"])["label"],
                     "model": _export_label(m["case"]),
                     "builder": m["builder"], "input": "x".join(map(str, m["input_size"])),
                     "params": int(m["params"]), "onnx weights": int(m["onnx_weights"]),
                     "ONNX MB": m["file_bytes"] / 1e6, "opset": m["opset"],
                     "ORT max abs diff": m["max_abs_diff"],
                     "max abs output": m["max_abs_output"],
                     "torch.export max abs diff": m["torch_export_max_abs_diff"],
                     "tied weights": m["tied_weights"],
                     "tied stay tied": ("" if m["ties_kept"] is None else
                                        "yes" if m["ties_kept"] else "no"),
                     "device": s.record()["device"].split(" threads")[0]})
    return pd.DataFrame(rows)


def _export_label(case: str) -> str:
    from reprolib.experiments.overview.graph import export_cases

    got = export_cases().get(case)
    return got[1].get("label", case) if got else case


# =========================================================================== the chart


_SEED = re.compile(r"-(s|seed)\d+$")


def by_condition(recs: list[dict]) -> dict[str, dict]:
    """Records grouped by stage name without a seed suffix; numeric metrics averaged (what a
    paper's ``points`` receives: ``{condition: {"metrics", "config", "n", "device",
    "records"}}``)."""
    groups: dict[str, list[dict]] = {}
    for r in recs:
        groups.setdefault(_SEED.sub("", r["name"]), []).append(r)
    out = {}
    for name, rs in groups.items():
        m = {}
        for k in ("acc", "params", "flops", "latency_ms"):
            v = [r["metrics"].get(k) for r in rs]
            v = [float(x) for x in v if isinstance(x, (int, float)) and math.isfinite(x)]
            m[k] = float(np.mean(v)) if v else None
        out[name] = {"metrics": m, "config": rs[0]["config"], "n": len(rs),
                     "device": report.device_label(rs), "records": rs}
    return out


def paper_records(paper: str, profile: str) -> dict[str, dict]:
    """The stored records of ``paper``'s current stages at ``profile`` ({} when it has no
    such profile or nothing ran), grouped by condition (:func:`by_condition`)."""
    if profile not in get_paper(paper).presets:
        return {}
    try:
        st = _pipelines()[paper].stages(get_config(paper, profile))
    except ReprolibError:
        return {}
    return by_condition([s.record() for s in st if s.done])


#: A point's value where a paper's ``points`` leaves a column out.
_POINT_DEFAULTS = {"latency_from": "", "seeds": 1, "device": "", "parent": "",
                   "latency_ratio": None}


def bench_records() -> list[dict]:
    """Every benchmark record under ``results/bench/`` that names a paper's stage and a
    measured latency ratio (:func:`points`); [] when there are none."""
    base = paths.results_root() / "bench"
    out = []
    for p in sorted(base.glob("*/*.json")) if base.exists() else []:
        try:
            r = results.load_record(p)
        except ReprolibError:
            continue
        m = r["metrics"]
        if isinstance(m.get("latency_ratio"), (int, float)) and m.get("paper") and m.get("stage"):
            out.append(r)
    return out


def points(cfg) -> pd.DataFrame:
    """The chart's points: one row per compressed model recorded at any of ``cfg.profiles``
    (each paper's ``points(recs, profile)``; columns ``method``, ``profile``, ``label``,
    ``stage``, ``acc_change`` (pp vs the parent), ``params_ratio``, ``flops_ratio``,
    ``latency_ratio`` (compressed / parent), ``latency_from`` ("record" / "bench <device>
    batch <b>"), ``seeds``, ``device``, ``parent``).  Benchmark records (``results/bench/``
    records whose metrics hold ``paper``, ``stage``, ``latency_ratio``, ``device`` and
    ``batch_size``) replace the latency ratio of the point they name."""
    rows = []
    for prof in cfg.profiles:
        for paper, p in shown().items():
            if not _has(p, "points"):
                continue
            recs = paper_records(paper, prof)
            if recs:
                rows += [{**_POINT_DEFAULTS, **x} for x in p.points(recs, prof) if x]
    df = pd.DataFrame(rows, columns=list(POINT_COLUMNS))
    for b in bench_records():
        m = b["metrics"]
        hit = (df["method"] == m["paper"]) & (df["stage"] == m["stage"])
        if m.get("profile"):
            hit &= df["profile"] == m["profile"]
        if hit.any():
            df.loc[hit, "latency_ratio"] = float(m["latency_ratio"])
            df.loc[hit, "latency_from"] = (f"bench {str(m.get('device', b.get('device', '')))}"
                                           f" batch {m.get('batch_size', '?')}")
    return df


def paper_points() -> pd.DataFrame:
    """The points the papers themselves report, relative to their own dense parents (each
    pipeline's ``reported_points()``, in notebook order): columns ``method``, ``label``,
    ``acc_change``, ``params_ratio``, ``flops_ratio``, ``latency_ratio``."""
    rows = [r for p in _pipelines().values() if _has(p, "reported_points")
            for r in p.reported_points()]
    return pd.DataFrame(rows)


def _reported_title() -> str:
    """The bottom row's title: where each paper reports its sizes, and which print none."""
    styles = [style(n) for n, p in shown().items() if _has(p, "reported_points")
              or "reported" in (getattr(p, "overview", None) or {})]
    has = [f"{s['short']} {s['reported']}" for s in styles if s.get("reported")]
    none = [s["short"] for s in styles if not s.get("reported")]
    text = "The papers' own numbers: " + (", ".join(has) or "none")
    if none:
        text += f"; {_and(none)} print{'s' if len(none) == 1 else ''} no sizes"
    return text


def _provenance_lines(df: pd.DataFrame) -> list[str]:
    """Per method: profiles, seeds, devices and where the latency came from."""
    lines = []
    for meth, (prof, seeds, dev, lat_txt) in _provenance(df).items():
        lines.append(f"{style(meth)['label']}: profile {prof}, {seeds} seed(s), {dev}, {lat_txt}")
    return lines


def _provenance(df: pd.DataFrame) -> dict[str, tuple[str, str, str, str]]:
    """``{method: (profiles, seeds, devices, latency source)}`` of the chart's points."""
    out = {}
    for meth in _order(df["method"]):
        d = df[df["method"] == meth]
        prof = "/".join(dict.fromkeys(d["profile"]))
        dev = "/".join(sorted(set("/".join(map(str, d["device"])).split("/")) - {""})) \
            or "device not recorded"
        lat = d["latency_from"].replace("", np.nan).dropna()
        lat_txt = ("latency: " + "/".join(sorted(set(lat)))) if len(lat) else "no latency recorded"
        seeds = "/".join(map(str, sorted(set(int(s) for s in d["seeds"]))))
        out[meth] = (prof, seeds, dev, lat_txt)
    return out


def _provenance_text(df: pd.DataFrame) -> str:
    """The chart's provenance in as few words as it takes: what all methods share said once
    (profiles, devices, latency source), then each method's seeds per condition."""
    prov = _provenance(df)
    if not prov:
        return "no records at these profiles"
    shared = {k: {v[i] for v in prov.values()} for i, k in enumerate(("prof", "seeds", "dev",
                                                                        "lat"))}
    if all(len(shared[k]) == 1 for k in ("prof", "dev", "lat")):
        prof, _, dev, lat = next(iter(prov.values()))
        seeds = "; ".join(f"{style(m)['short']} {v[1]}" for m, v in prov.items())
        return (f"profiles {prof} on {dev}, {lat.replace('latency: ', 'latency from the ')}; "
                f"seeds per condition ({prof}): {seeds}")
    return "; ".join(_provenance_lines(df))


def figures(cfg) -> dict:
    """``tradeoff``: top row, our compressed models at ``cfg.profiles`` (accuracy change vs
    the method's own parent against params / FLOPs / latency ratios; colour = method, marker
    = profile); bottom row, the papers' reported points on the same axes.  Plain tick
    labels on the log axes, each row's legend beside its right panel (never over a point),
    a two-line title whose provenance says once what every method shares."""
    import textwrap

    import matplotlib.pyplot as plt

    ours, paper = points(cfg), paper_points()
    fig, axes = plt.subplots(2, 3, figsize=(16, 9), sharey="row")
    cols = (("params_ratio", "parameters / parent"), ("flops_ratio", "FLOPs / parent"),
            ("latency_ratio", "latency / parent"))
    for row, (df, who) in enumerate(((ours, "ours"), (paper, "paper"))):
        methods = _order(df["method"]) if len(df) else []
        for ax, (x, xl) in zip(axes[row], cols):
            seen = set()
            for meth in methods:
                d = df[(df["method"] == meth) & df[x].notna()]
                if not len(d):
                    continue
                st = style(meth)
                groups = d.groupby("profile") if "profile" in d else [("paper", d)]
                for prof, g in groups:
                    lab = f"{st['label']}" + (f" ({prof})" if who == "ours" else "")
                    ax.scatter(g[x], g["acc_change"], color=st["color"],
                               marker=MARKERS.get(prof, "o") if who == "ours" else "x",
                               s=36, label=lab if lab not in seen else None, zorder=3)
                    seen.add(lab)
            ax.axhline(0, color="grey", lw=0.8, ls="--")
            ax.axvline(1, color="grey", lw=0.8, ls="--")
            ax.set_xscale("log")
            ax.set_xlabel(xl + " (log)")
            ax.grid(alpha=0.3)
            if x not in df or not df[x].notna().any():
                ax.text(0.5, 0.5, "no points", transform=ax.transAxes, ha="center", color="grey")
            report.log_axis(ax, "x")
        axes[row][0].set_ylabel(("ours" if who == "ours" else "papers' reported") +
                                ": accuracy − parent (pp)")
        h, lab = [], []
        for ax in axes[row]:
            for hh, ll in zip(*ax.get_legend_handles_labels()):
                if ll not in lab:
                    h.append(hh)
                    lab.append(ll)
        if h:
            axes[row][2].legend(h, lab, fontsize=8, loc="upper left",
                                bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
    axes[0][1].set_title("Our records (" + ", ".join(cfg.profiles) + "; absent profiles "
                         "skipped)", fontsize=10)
    axes[1][1].set_title(textwrap.fill(_reported_title(), 110), fontsize=10)
    note = ("" if cfg.profile == "paper" else
            f" [{', '.join(cfg.profiles)} records: not the papers' settings]")
    fig.suptitle("Accuracy relative to each method's own dense parent vs its size and speed",
                 fontsize=13, y=0.995)
    fig.text(0.5, 0.958, textwrap.fill(_provenance_text(ours) + note, 190), ha="center",
             va="top", fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    return {"tradeoff": fig}


# =========================================================================== tables, summary


def tables(cfg) -> dict[str, pd.DataFrame]:
    """``conformance`` (:func:`conformance`), ``conformance_counts`` (per paper and
    verdict), ``export`` (:func:`export_frame`), ``points`` (:func:`points`) and
    ``paper_points`` (:func:`paper_points`)."""
    from reprolib.experiments import get_experiment

    conf = conformance()
    counts = conformance_counts(conf)
    counts.attrs["caption"] = ("Conformance counts: rows per paper and verdict "
                               f"(`figures/overview/conformance-{cfg.profile}.md`).")
    ex = export_frame(cfg)
    recs = [s.record() for s in get_experiment("overview").stages(cfg) if s.done]
    ex.attrs["caption"] = (
        f"Every method's compressed model exported: torch.onnx (dynamo, opset {cfg.opset}, "
        f"dynamic batch) and torch.export; max abs difference to PyTorch on a random batch "
        f"of 3 (ONNX Runtime, CPU); models at scale '{cfg.scale}' with seeded random weights "
        f"and BatchNorm statistics calibrated on random images; tied weights checked by value "
        f"among the initializers · profile={cfg.profile} · "
        f"device={report.device_label(recs)}")
    pts = points(cfg)
    prov = "; ".join(_provenance_lines(pts)) or "no records at these profiles"
    pts.attrs["caption"] = ("Cross-method points: accuracy change (pp) and size / speed ratios "
                            f"vs each method's own parent · {prov} · "
                            f"profiles={','.join(cfg.profiles)}{profile_note(cfg)}")
    pp = paper_points()
    pp.attrs["caption"] = "The papers' own reported points, relative to their own parents."
    return {"conformance": conf, "conformance_counts": counts, "export": ex, "points": pts,
            "paper_points": pp}


def _fmt_e(x: float) -> str:
    return f"{x:.1e}".replace("e-0", "e-").replace("e+0", "e+")


def _mismatch_reasons() -> str:
    """The kinds of explained mismatches the papers name (their ``overview``
    ``mismatch_reasons``), each once."""
    reasons = [r for n in _conformance_papers()
               for r in (getattr(_pipelines()[n], "overview", None) or {}).get(
                   "mismatch_reasons", ())]
    return ", ".join(dict.fromkeys(reasons))


def summary(cfg) -> str:
    """The README paragraph: conformance counts (per verdict, the unexplained ones named),
    the chart's sources, and the export parity per method, every number from the code and
    the records."""
    conf = conformance()
    n = conf["verdict"].value_counts()
    counted = int(len(conf) - n.get("not counted", 0) - n.get("not printed", 0))
    un = conf[conf["verdict"] == "unexplained mismatch"]
    reasons = _mismatch_reasons()
    out = [f"Conformance (`figures/overview/conformance-{cfg.profile}.md`, counted from code on "
           f"the meta device): of {len(conf)} architecture-determined numbers the "
           f"{_spell(conf['paper'].nunique())} papers "
           f"print, {counted} can be counted here: {n.get('match', 0)} match to the printed "
           f"precision, {n.get('explained mismatch', 0)} differ for a stated reason"
           + (f" ({reasons})" if reasons else "")
           + f", {n.get('unexplained mismatch', 0)} differ unexplained"]
    if len(un):
        out[-1] += " (" + "; ".join(
            f"{r.quantity} {r.ours:.2f} vs {r.paper_value:g} {r.unit}".strip()
            for r in un.itertuples()) + ")"
    out[-1] += (f"; {n.get('not counted', 0)} are of models neither reprolib, timm nor "
                f"torchvision builds and {n.get('not printed', 0)} has no printed value.")
    counts = conformance_counts(conf)
    out.append("\n\n" + report.to_markdown(counts) + "\n\n")
    pts = points(cfg)
    if len(pts):
        per = pts.groupby("method").size()
        out.append(f"The chart (`reprolib run overview --profile {cfg.profile}`) puts "
                   + ", ".join(f"{per[m]} {style(m)['label']}" for m in _order(pts["method"]))
                   + " compressed models on one set of axes, each against its own dense parent; "
                   + "; ".join(_provenance_lines(pts)) + ".")
    else:
        out.append(f"No paper has records at {', '.join(cfg.profiles)} yet: the chart shows "
                   "the papers' own points only.")
    ex = export_frame(cfg)
    if len(ex):
        worst = ex["ORT max abs diff"].max()
        tied = ex[ex["tied weights"] > 0]
        parts = [f"{row['model']} {_fmt_e(row['ORT max abs diff'])}" for _, row in ex.iterrows()]
        ties = ("; ".join(f"{row['model']}: {row['tied weights']} tied weights, "
                          f"{'each one initializer' if row['tied stay tied'] == 'yes' else 'copied'}"
                          for _, row in tied.iterrows()) or "no tied weights")
        out.append(f"Export (`reprolib.export.to_onnx`, `reprolib export PATH --format onnx`): "
                   f"{len(ex)} compressed models at scale '{cfg.scale}' "
                   f"(`figures/overview/export-{cfg.profile}.md`) export through torch.onnx "
                   f"(opset {int(ex['opset'].max())}) and torch.export; ONNX Runtime vs PyTorch, "
                   f"max abs difference on a random batch: " + ", ".join(parts)
                   + f" (largest {_fmt_e(worst)}; torch.export "
                   f"{_fmt_e(ex['torch.export max abs diff'].max())}). Tied weights in the ONNX "
                   f"initializers: {ties}.")
    return " ".join(out)
