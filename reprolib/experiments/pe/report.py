"""PE's tables, figures and prose, read back from the records of the ``count`` stages and of
the ``train`` stages of ``cfg.seed`` (the evidence tables and figure: :mod:`.assess`).

Every function takes the paper's pipeline (``reprolib.experiments.pe.PIPELINE``) first; the
pipeline's ``tables`` / ``figures`` / ``summary`` / ``reading`` methods call them.
"""

from __future__ import annotations

import functools
import textwrap

import numpy as np
import pandas as pd
import torch

from reprolib.configs.pe import PAPER_TABLE1, PAPER_TABLE2
from reprolib.core import report
from reprolib.core.device import on_meta
from reprolib.core.pipeline import profile_note, records
from reprolib.core.registry import create_model
from reprolib.experiments.pe.assess import evidence_tables, plot_evidence
from reprolib.experiments.pe.graph import (RUN_KINDS, family, model_counts, run_kind,
                                            training_runs)
from reprolib.methods import pe as M

# --------------------------------------------------------------------------- frames


_OURS_RUN = {"ViT-PE¹ (ours)": "vit_pe_small", "ViT-PE² (ours)": "vit_pe_small-600ep",
             "DeiT-S/16": "vit_small",
             "ResNet50-PE¹ (Ours)": "resnet50_pe-stages1234",
             "ResNet50-PE² (Ours)": "resnet50_pe-stages34", "ResNet50": "resnet50"}


_COUNT_COLS = ("model", "source", "params_M", "GFLOPs", "paper_params_M", "paper_GFLOPs",
               "paper_top1")
_SHARING_COLS = ("share_1x1", "share_3x3", "num_classes", "PE1_params_M", "PE2_params_M")


def _imagenet_top1(train_recs: dict) -> dict[str, float]:
    """Our ImageNet top-1 by run name (only records trained on ImageNet count)."""
    return {n: r["metrics"]["acc"] for n, r in train_recs.items()
            if r["config"].get("dataset") == "imagenet" and "acc" in r["metrics"]}


def count_frame(recs: dict, which: str, train_recs: dict | None = None) -> pd.DataFrame:
    """The ``which`` ("table1" / "table2" / "sharing") record as a DataFrame; Tables 1-2 get
    a ``top1`` column (ours on ImageNet where we trained it, else the paper's) and
    ``top1_from`` saying which.  recs / train_recs: ``{stage name: record}``."""
    cols = _SHARING_COLS if which == "sharing" else _COUNT_COLS
    df = pd.DataFrame(recs[which]["metrics"]["rows"])[list(cols)]  # records store keys sorted
    if which == "sharing":
        return df
    ours = _imagenet_top1(train_recs or {})
    run_ = df["model"].map(_OURS_RUN)
    df["top1"] = [ours.get(r, p) for r, p in zip(run_, df["paper_top1"])]
    df["top1_from"] = ["ours (ImageNet)" if r in ours else "paper" for r in run_]
    return df


def training_frame(train_recs: dict) -> pd.DataFrame:
    """One row per training record: run, params, FLOPs at the training resolution, epochs,
    test top-1, training time, data set."""
    cols = ["run", "params", "flops", "epochs", "top1", "train_time_s", "data"]
    rows = [{"run": n, "params": int(r["metrics"]["params"]), "flops": int(r["metrics"]["flops"]),
             "epochs": int(r["metrics"]["epochs"]), "top1": r["metrics"]["acc"],
             "train_time_s": r["metrics"]["train_time_s"], "data": r["config"]["dataset"]}
            for n, r in sorted(train_recs.items()) if r["metrics"].get("acc") is not None]
    return pd.DataFrame(rows, columns=cols)


def stage_records(pipe, cfg) -> tuple[dict, dict]:
    """(the ``count`` stages' records, the records of the ``train`` stages of ``cfg.seed``)
    of ``cfg``, by stage name."""
    g = pipe.graph(cfg)
    return records(g.select("count")), records(g.select("train", seed=int(cfg.seed)))


def _train_provenance(pipe, cfg, train_recs: dict) -> str:
    """profile, data, epochs of the recipes that trained something, device."""
    used = []
    for r in training_runs(cfg):
        if r["recipe"] not in used:
            used.append(r["recipe"])
    parts = [f"profile={cfg.profile}", f"data={pipe.data_label(cfg)}"]
    parts += [f"{u}={getattr(cfg, u).epochs} ep" for u in used]
    parts.append(f"device={report.device_label(train_recs.values())}")
    return " · ".join(parts)


# --------------------------------------------------------------------------- tables, figures


def tables(pipe, cfg) -> dict[str, pd.DataFrame]:
    """``table1`` / ``table2`` (the paper's Tables 1-2: our counts beside the printed params,
    FLOPs, top-1), ``sharing`` (ResNet50-PE params by sharing rule and classifier width),
    ``training`` (PE vs unshared twin: params, FLOPs, epochs, top-1, time)."""
    recs, train_recs = stage_records(pipe, cfg)
    note = profile_note(cfg)
    counted = (f"counted by reprolib on PyTorch's meta device at {cfg.table_image_size} px, "
               f"{cfg.table_num_classes} classes, beside the paper's; {report.FLOPS_NOTE}; "
               f"profile={cfg.profile}{note}")
    t1 = count_frame(recs, "table1", train_recs)
    t1.attrs["caption"] = f"Table 1 (ImageNet ViTs): params (M) and GFLOPs {counted}"
    t2 = count_frame(recs, "table2", train_recs)
    t2.attrs["caption"] = f"Table 2 (ImageNet ResNets): params (M) and GFLOPs {counted}"
    sh = count_frame(recs, "sharing")
    p1, p2 = (PAPER_TABLE2[k]["params_M"] for k in ("ResNet50-PE¹ (Ours)", "ResNet50-PE² (Ours)"))
    sh.attrs["caption"] = (f"ResNet50-PE params (M) by sharing rule and classifier width; "
                           f"paper: PE¹ {p1:g}, PE² {p2:g}; counted at {cfg.table_image_size} "
                           f"px; profile={cfg.profile}{note}")
    tr = training_frame(train_recs)
    tr.attrs["caption"] = (f"PE vs unshared twin ({_train_provenance(pipe, cfg, train_recs)}); "
                           f"FLOPs at {cfg.image_size} px ({report.FLOPS_NOTE}){note}")
    out = {"table1": t1, "table2": t2, "sharing": sh, "training": tr}
    if cfg.seeds:
        out.update(evidence_tables(pipe, cfg))
    return out


def place_labels(ax, xs, ys, labels, fontsize: float = 7, colors=None) -> None:
    """Annotate each point with its label at the first of eight offsets around it whose box
    overlaps no label placed before and no point (greedy, in display coordinates; the axes
    limits are fixed first)."""
    ax.autoscale_view()
    ax.set_xlim(ax.get_xlim())
    ax.set_ylim(ax.get_ylim())
    scale = ax.figure.dpi / 72.0
    pts = ax.transData.transform(np.column_stack([np.asarray(xs, float), np.asarray(ys, float)]))
    cands = [(3, 2), (3, -8), (-3, 2), (-3, -8), (3, 8), (-3, 8), (3, -14), (-3, -14)]
    boxes = []

    def hits(b):
        x0, y0, x1, y1 = b
        if any(x0 < bx1 and bx0 < x1 and y0 < by1 and by0 < y1 for bx0, by0, bx1, by1 in boxes):
            return True
        return any(x0 - 2 < px < x1 + 2 and y0 - 2 < py < y1 + 2 for px, py in pts)

    for i, ((px, py), text) in enumerate(zip(pts, labels)):
        w, h = 0.6 * fontsize * len(text) * scale, fontsize * scale
        choice = None
        for dx, dy in cands:
            x0 = px + dx * scale if dx >= 0 else px + dx * scale - w
            b = (x0, py + dy * scale, x0 + w, py + dy * scale + h)
            if not hits(b):
                choice = (dx, dy, b)
                break
        if choice is None:
            dx, dy = cands[0]
            choice = (dx, dy, (px + dx * scale, py + dy * scale, px + dx * scale + w,
                               py + dy * scale + h))
        dx, dy, b = choice
        boxes.append(b)
        ax.annotate(text, (xs.iloc[i] if hasattr(xs, "iloc") else xs[i],
                           ys.iloc[i] if hasattr(ys, "iloc") else ys[i]),
                    xytext=(dx, dy), textcoords="offset points", fontsize=fontsize,
                    ha="left" if dx >= 0 else "right",
                    color=(colors[i] if colors is not None else "black"))


def plot_accuracy_vs_params(t1, t2, train, title_tables: str = "", title_train: str = ""):
    """Two panels.  Left: ImageNet top-1 vs params of Tables 1-2, every point numbered with
    its key beside the panel (params counted by us where timm / torchvision has the model,
    filled markers; the paper's printed params otherwise, hollow; circles Table 1, squares
    Table 2, red the paper's PE models; top-1 from ``top1_from``).  Right: this profile's
    training runs, top-1 vs params (PE, unshared twin, narrowed twin), each labelled.
    t1 / t2: :func:`count_frame` outputs; train: :func:`training_frame`."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    fig, (a, b) = plt.subplots(1, 2, figsize=(14, 5.2), gridspec_kw={"width_ratios": [1.35, 1]})
    df = pd.concat([t1.assign(table="Table 1 (ViT)"), t2.assign(table="Table 2 (ResNet)")])
    df = df.drop_duplicates(subset=["model"]).reset_index(drop=True)
    df["x"] = df["params_M"].where(df["params_M"].notna(), df["paper_params_M"])
    df["num"] = range(1, len(df) + 1)
    for table, marker in (("Table 1 (ViT)", "o"), ("Table 2 (ResNet)", "s")):
        d = df[df["table"] == table]
        ours = d["model"].str.contains("PE")
        measured = d["params_M"].notna()
        for sel, kw in ((measured & ~ours, dict(color="tab:blue")),
                        (~measured, dict(facecolors="none", edgecolors="tab:blue")),
                        (ours, dict(color="tab:red"))):
            a.scatter(d["x"][sel], d["top1"][sel], marker=marker, s=32, **kw)
    a.set_xscale("log")
    place_labels(a, df["x"], df["top1"], [str(n) for n in df["num"]], fontsize=6.5,
                 colors=["tab:red" if "PE" in m else "black" for m in df["model"]])
    key = "\n".join(f"{n:>2} {m}" for n, m in zip(df["num"], df["model"]))
    a.text(1.02, 1.0, key, transform=a.transAxes, fontsize=6.2, va="top", family="monospace")
    a.set_xlabel("params (M), log scale")
    a.set_ylabel("ImageNet top-1 (%) (paper's unless trained here)")
    a.set_title(title_tables, fontsize=8)
    a.grid(alpha=0.3)
    handles = [Line2D([], [], ls="", marker="o", color="tab:blue", label="Table 1 (ViT)"),
               Line2D([], [], ls="", marker="s", color="tab:blue", label="Table 2 (ResNet)"),
               Line2D([], [], ls="", marker="o", color="tab:blue",
                      label="filled: params counted by us"),
               Line2D([], [], ls="", marker="o", mfc="none", mec="tab:blue",
                      label="hollow: params as printed (not in timm / torchvision)"),
               Line2D([], [], ls="", marker="o", color="tab:red", label="the paper's PE models")]
    a.legend(handles=handles, fontsize=6.5, loc="lower right")
    if len(train):
        tr = train.assign(kind=[run_kind(r) for r in train["run"]])
        for kind, st in RUN_KINDS.items():
            d = tr[tr["kind"] == kind]
            if not len(d):
                continue
            b.scatter(d["params"] / 1e6, d["top1"], s=36, label=kind, **st)
            dy = {"PE": 6, "unshared twin": 6, "narrowed twin": -11}[kind]
            for r, xi, yi in zip(d["run"], d["params"] / 1e6, d["top1"]):
                b.annotate(r, (xi, yi), fontsize=7, xytext=(4, dy), textcoords="offset points")
        b.legend(fontsize=7)
        b.margins(x=0.25, y=0.15)
    b.set_xlabel("params (M)")
    b.set_ylabel("test top-1 (%)")
    b.set_title(title_train, fontsize=8)
    b.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def figures(pipe, cfg) -> dict:
    """``acc_vs_params``: Tables 1-2 top-1 vs params (left), our PE / twin runs (right)."""
    tabs = pipe.tables(cfg)
    _, train_recs = stage_records(pipe, cfg)
    note = profile_note(cfg)
    wrap = functools.partial(textwrap.fill, width=90)
    fig = plot_accuracy_vs_params(
        tabs["table1"], tabs["table2"], tabs["training"],
        title_tables=("Tables 1-2: ImageNet top-1 (paper's unless trained here) vs params\n"
                      + wrap(f"profile={cfg.profile}{note}")),
        title_train="Our runs: PE vs unshared twin\n" + wrap(
            f"{_train_provenance(pipe, cfg, train_recs)}{note}"))
    out = {"acc_vs_params": fig}
    if cfg.seeds:
        out["evidence"] = plot_evidence(pipe, cfg)
    return out


# --------------------------------------------------------------------------- prose


def _pairs(cfg, train_recs: dict) -> list[tuple[str, str]]:
    """(PE run, unshared twin run) pairs that both have records."""
    out = []
    if cfg.vit_model and cfg.vit_twin:
        out.append((cfg.vit_model, cfg.vit_twin))
    if cfg.resnet_model and cfg.resnet_twin:
        out += [(f"{cfg.resnet_model}-stages{v}", cfg.resnet_twin) for v in cfg.resnet_variants]
    return [(a, b) for a, b in out if a in train_recs and b in train_recs]


def _rule(row: dict) -> str:
    return M.sharing_rule_name(row["share_1x1"], row["share_3x3"])


def _matches(value_M: float, printed: float, ndigits: int = 1) -> bool:
    return round(value_M, ndigits) == round(printed, ndigits)


def _counts(cfg, recs: dict) -> dict:
    """The counts the prose quotes: ``table_num_classes`` ones from the table records, the
    100-class ones from the sharing record (ResNets) and :func:`model_counts` (ViT-PE and the
    FLOPs), the printed ones, and :func:`reprolib.methods.pe.sharing_verdict`."""
    t1 = {r["model"]: r for r in recs["table1"]["metrics"]["rows"]}
    t2 = {r["model"]: r for r in recs["table2"]["metrics"]["rows"]}
    sh = recs["sharing"]["metrics"]["rows"]
    nc = cfg.table_num_classes
    c100 = {r["model"]: r for r in model_counts(100, cfg.table_image_size,
                                                models=("ViT-PE", "ResNet50-PE¹"))}
    default = {r["num_classes"]: r for r in sh if r["share_1x1"] and r["share_3x3"]}
    r1, r2 = PAPER_TABLE2["ResNet50-PE¹ (Ours)"], PAPER_TABLE2["ResNet50-PE² (Ours)"]
    return {
        "nc": nc, "t1": t1, "t2": t2, "sh": sh, "default": default,
        "vit_p": PAPER_TABLE1["ViT-PE¹ (ours)"], "r1": r1, "r2": r2,
        "vit": t1["ViT-PE¹ (ours)"]["params_M"], "vit100": c100["ViT-PE"]["params"] / 1e6,
        "vit_gflops100": c100["ViT-PE"]["flops"] / 1e9,
        "res_gflops100": c100["ResNet50-PE¹"]["flops"] / 1e9,
        "pe1": t2["ResNet50-PE¹ (Ours)"]["params_M"],
        "pe2": t2["ResNet50-PE² (Ours)"]["params_M"],
        "pe1_100": default[100]["PE1_params_M"], "pe2_100": default[100]["PE2_params_M"],
        "verdict": M.sharing_verdict(sh, r1["params_M"], r2["params_M"]),
    }


def summary(pipe, cfg) -> str:
    """The README paragraph: the PE layers, the counted sizes (100- and 1000-class heads)
    beside the printed ones, which sharing rule reproduces them, and the trained pairs."""
    recs, train_recs = stage_records(pipe, cfg)
    c = _counts(cfg, recs)
    vit_p, r1, r2, v = c["vit_p"], c["r1"], c["r2"], c["verdict"]
    head = "a 100-class head"
    if _matches(c["vit100"], vit_p["params_M"]) and _matches(c["pe1_100"], r1["params_M"]) \
            and not _matches(c["vit"], vit_p["params_M"]):
        head += " (the width that reproduces the printed counts)"
    if v["both"]:
        b = v["both"][0]
        rule = f"{_rule(b)} with {b['num_classes']} classes gives both printed ResNet counts"
    else:
        rule = "no sharing rule gives both printed ResNet counts"
    out = [
        "ViT-PE attention `Q = W_q x, K = W_kv x, V = W_kv^T x`, output `W_q^T`, FFN "
        "`W^T F(Wx + b1) + b2`; ResNet50-PE bottleneck `W^T G(W x)` with the blocks of a stage "
        "sharing `W` and the 3x3 kernel (`create_model(\"vit_pe_small\")`, "
        "`(\"resnet50_pe\", pe_stages=(1, 2, 3, 4) | (3, 4))`). Each tied weight is one "
        "`nn.Parameter` used twice.",
        f"Counted at {cfg.table_image_size} px with {head}: ViT-PE {c['vit100']:.2f} M / "
        f"{c['vit_gflops100']:.2f} G (paper {vit_p['params_M']:g} M / {vit_p['GFLOPs']:g} G), "
        f"ResNet50-PE¹ {c['pe1_100']:.2f} M (paper {r1['params_M']:g}), PE² {c['pe2_100']:.2f} M "
        f"(paper {r2['params_M']:g}; {rule}, `figures/pe/sharing-{cfg.profile}.md`), "
        f"{c['res_gflops100']:.2f} G; with {c['nc']} classes {c['vit']:.2f} / {c['pe1']:.2f} / "
        f"{c['pe2']:.2f} M. Baselines from timm/torchvision in "
        f"`figures/pe/table1-{cfg.profile}.md`, `table2-{cfg.profile}.md`.",
    ]
    pairs = _pairs(cfg, train_recs)
    if pairs:
        bits = []
        for pe_run, twin in pairs:
            a, b = train_recs[pe_run]["metrics"], train_recs[twin]["metrics"]
            depth = _depth(train_recs[pe_run])
            what = f"a {depth}-layer ViT-PE" if depth else f"`{pe_run}`"
            diff = a["acc"] - b["acc"]
            bits.append(f"{what} vs its unshared twin on {_data_label(pipe, cfg)}, "
                        f"{int(a['epochs'])} epochs: {a['acc']:.1f} % at "
                        f"{a['params'] / 1e6:.2f} M vs {b['acc']:.1f} % at "
                        f"{b['params'] / 1e6:.2f} M params "
                        f"({abs(diff):.1f} points {'below' if diff < 0 else 'above'} with "
                        f"{a['params'] / b['params']:.0%} of the parameters)")
        gap = PAPER_TABLE1["DeiT-S/16"]["top1"] - vit_p["top1"]
        out.append(f"Trained (`{cfg.profile}`): " + "; ".join(bits) + ". The paper's ViT-PE¹ is "
                   f"{gap:.1f} points below DeiT-S/16 after 300 ImageNet epochs"
                   + ("." if cfg.profile == "paper" else
                      f"; the `{cfg.profile}` run is far shorter and smaller than that setting."))
    return " ".join(out)


def _depth(rec: dict) -> int | None:
    """Blocks of a trained ViT (its builder on the meta device), None for a ResNet."""
    name = rec["config"].get("model", "")
    if family(name) != "vit":
        return None
    with on_meta():
        return len(create_model(name, **rec["config"].get("model_kwargs", {})).blocks)


def _data_label(pipe, cfg) -> str:
    name = pipe.data_label(cfg)
    return "the CIFAR-10 subset" if name in ("cifar10_subset", "cifar10_subset.npz") else f"`{name}`"


def reading(pipe, cfg) -> str:
    """The notebook's reading of Tables 1-2 and the sharing table: which classifier width and
    sharing rule give the printed counts, and that tying leaves the FLOPs unchanged."""
    recs, _ = stage_records(pipe, cfg)
    c = _counts(cfg, recs)
    vit_p, r1, r2, v, nc = c["vit_p"], c["r1"], c["r2"], c["verdict"], c["nc"]
    d = c["default"]
    vit_words = (f"the printed {vit_p['params_M']:g} M is the count with a 100-class head "
                 f"({c['vit100']:.2f} M)" if _matches(c["vit100"], vit_p["params_M"])
                 else f"with a 100-class head it is {c['vit100']:.2f} M (printed "
                      f"{vit_p['params_M']:g} M)")
    out = [f"Reading: ViT-PE is {c['vit']:.2f} M with the {nc}-class head; {vit_words}.",
           f"ResNet50-PE¹ with {_rule(d[100])} is {d[nc]['PE1_params_M']:.2f} M with {nc} "
           f"classes and {d[100]['PE1_params_M']:.2f} M (printed {r1['params_M']:g}) with 100; "
           f"PE² is then {d[100]['PE2_params_M']:.2f} M (printed {r2['params_M']:g})."]
    if v["both"]:
        b = v["both"][0]
        rule = _rule(b)
        out.append(f"{rule[0].upper()}{rule[1:]} with {b['num_classes']} classes reproduces both "
                   "printed ResNet numbers.")
    else:
        g = v["gap_rule"]
        same = [r for r in c["sh"]
                if (r["share_1x1"], r["share_3x3"]) == (g["share_1x1"], g["share_3x3"])]
        per_head = " and ".join(f"{r['PE1_params_M']:.2f} / {r['PE2_params_M']:.2f} M with "
                                f"{r['num_classes']} classes" for r in same)
        out.append(f"No rule reproduces both printed ResNet numbers with the same head (the "
                   f"printed {v['printed_gap']:.1f} M gap between PE² and PE¹ is closest under "
                   f"{_rule(g)}, {g['PE2_params_M'] - g['PE1_params_M']:.2f} M, but that rule "
                   f"gives {per_head}).")
    vit_f, deit_f = c["t1"]["ViT-PE¹ (ours)"]["GFLOPs"], c["t1"]["DeiT-S/16"]["GFLOPs"]
    res_f, base_f = c["t2"]["ResNet50-PE¹ (Ours)"]["GFLOPs"], c["t2"]["ResNet50"]["GFLOPs"]
    same_f = vit_f == deit_f and res_f == base_f
    out.append(f"FLOPs are {'unchanged' if same_f else 'changed'} by tying: ViT-PE {vit_f:.2f} G "
               f"(DeiT-S {deit_f:.2f} G, printed {vit_p['GFLOPs']:g} G) and ResNet50-PE "
               f"{res_f:.2f} G (ResNet-50 {base_f:.2f} G, printed {r1['GFLOPs']:g} G).")
    return " ".join(out)

