"""SiDT's tables, figures and summary (``reprolib.experiments.sidt``), read back from the
records of ``cfg.seed``'s stages, found in the graph by role: Table I, the section 3
complexity table, Table II's backbone columns, the Swin-T sizes, their plots and the README
paragraph.  With ``cfg.seeds`` the evidence tables and figure are added (``claims``)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from reprolib.configs.sidt import PAPER_TABLE1, PAPER_TABLE2
from reprolib.core import report
from reprolib.core.pipeline import profile_note, test_images
from reprolib.experiments.sidt import assess as C


# --------------------------------------------------------------------------- records -> frames


def read(pipe, cfg) -> dict:
    """The records of ``cfg.seed``'s stages: baseline (None without one), search, fine-tunes
    (by ratio), reference, provenance."""
    g = pipe.graph(cfg)
    search = g.get("search", seed=cfg.seed).record()
    tunes = sorted((s.record() for s in g.select("finetune", seed=cfg.seed)),
                   key=lambda r: r["metrics"]["ratio"])
    ref = g.get("reference").record()
    base = g.find("baseline", seed=cfg.seed)
    base = base.record() if base is not None else None
    prov = report.provenance(cfg, pd.DataFrame([r for r in (base, search, *tunes, ref) if r]))
    return {"baseline": base, "search": search, "tunes": tunes, "reference": ref,
            "prov": prov, "note": profile_note(cfg)}


def ref_label(cfg) -> str:
    return "Swin-T" if cfg.reference_model == "swin_t" else f"`{cfg.reference_model}`"


def table1(r: dict) -> pd.DataFrame:
    ft = [t["metrics"] for t in r["tunes"]]
    rows = {(x["kind"], x["ratio"]): x for x in r["reference"]["metrics"]["rows"]}
    base = ft[0]
    nan = float("nan")
    out = []
    for m in ft:
        p = PAPER_TABLE1.get(round(m["ratio"], 2), (nan,) * 3)
        u, lr = rows[("uniform", m["ratio"])], rows.get(("learned", m["ratio"]), {})
        out.append({
            "PR": f"{m['ratio']:.0%}",
            "acc no FT (%)": round(m["acc_pruned_no_ft"], 2),
            "acc (%)": round(m["acc"], 2),
            "params (M)": round(m["params"] / 1e6, 3),
            "FLOPs (M)": round(m["flops"] / 1e6, 2),
            "params rel.": round(m["params"] / base["params"], 3),
            "FLOPs rel.": round(m["flops"] / base["flops"], 3),
            "latency (ms)": round(m["latency_ms"], 2),
            "Swin-T learned params (M)": round(lr.get("params", nan) / 1e6, 2),
            "Swin-T learned FLOPs (G)": round(lr.get("flops", nan) / 1e9, 2),
            "Swin-T uniform params (M)": round(u["params"] / 1e6, 2),
            "Swin-T uniform FLOPs (G)": round(u["flops"] / 1e9, 2),
            "paper acc (%)": p[0], "paper params (M)": p[1], "paper FLOPs (G)": p[2],
        })
    if r.get("baseline"):       # the paper's 0 % row: the dense baseline the search started from
        bm, first = r["baseline"]["metrics"], out[0]
        out[0] = {**first, "PR": "0% (searched, fine-tuned)"}
        out.insert(0, {**first, "PR": "0% (dense baseline)", "acc no FT (%)": nan,
                       "acc (%)": round(bm["acc"], 2),
                       "params (M)": round(bm["params"] / 1e6, 3),
                       "FLOPs (M)": round(bm["flops"] / 1e6, 2),
                       "params rel.": round(bm["params"] / base["params"], 3),
                       "FLOPs rel.": round(bm["flops"] / base["flops"], 3),
                       "latency (ms)": round(bm.get("latency_ms") or nan, 2)})
    return pd.DataFrame(out)


def complexity(r: dict) -> pd.DataFrame:
    cx = pd.DataFrame(r["reference"]["metrics"]["layers"])
    cx = cx[cx["layer"].str.contains(r"blocks\.0\.")].copy()     # first block of each stage
    cx["measured (MMAC)"] = (cx["measured_macs"] / 1e6).round(3)
    cx["formula (MMAC)"] = (cx["formula_macs"] / 1e6).round(3)
    cx["formula"] = cx["kind"].map({"W-MSA": "4nd(rho d) + 2nM^2(rho d)", "MLP": "2nd(rho d_m)"})
    cx = cx[["ratio", "stage", "kind", "n", "d", "M", "kept", "full", "rho", "measured (MMAC)",
             "formula (MMAC)", "formula"]].sort_values(["ratio", "stage", "kind"])
    return cx.reset_index(drop=True)


def table2(r: dict) -> pd.DataFrame:
    rows = {(x["kind"], x["ratio"]): x for x in r["reference"]["metrics"]["rows"]}
    out = []
    for ratio, p in PAPER_TABLE2.items():
        u, lr = rows.get(("uniform", ratio)), rows.get(("learned", ratio))
        out.append({"PR": f"{ratio:.0%}",
                    "backbone params uniform (M)":
                        round(u["backbone_params"] / 1e6, 2) if u else None,
                    "backbone params learned (M)":
                        round(lr["backbone_params"] / 1e6, 2) if lr else None,
                    "paper backbone (M)": p[3], "paper total (M)": p[2],
                    "paper box mAP": p[0], "paper mask mAP": p[1]})
    return pd.DataFrame(out)


def sizes(r: dict) -> pd.DataFrame:
    nan = float("nan")
    out = []
    for x in r["reference"]["metrics"]["rows"]:
        p = PAPER_TABLE1.get(round(x["ratio"], 2), (nan,) * 3)
        out.append({"kind": x["kind"], "PR": f"{x['ratio']:.0%}", "ratio": x["ratio"],
                    "params (M)": round(x["params"] / 1e6, 2),
                    "backbone params (M)": round(x["backbone_params"] / 1e6, 2),
                    "FLOPs (G)": round(x["flops"] / 1e9, 3),
                    "paper params (M)": p[1], "paper FLOPs (G)": p[2]})
    return pd.DataFrame(out)


def tables(pipe, cfg) -> dict[str, pd.DataFrame]:
    """``table1``: Table I (ours: accuracy before / after fine-tuning, params, FLOPs, CPU
    latency of ``cfg.model``; Swin-T pruned with the learned and with uniform widths; the
    paper's columns); ``complexity``: measured vs closed-form MACs of the first block of each
    Swin-T stage at every ratio (section 3); ``table2``: Table II's backbone columns;
    ``swin_t``: the reference Swin-T's params / FLOPs at every ratio, uniform and learned."""
    r = read(pipe, cfg)
    ours, ref = f"Ours: {r['prov']}{r['note']}", ref_label(cfg)
    size = f"{cfg.reference_size} px, {cfg.reference_classes} classes"
    t1 = table1(r)
    t1.attrs["caption"] = (f"SiDT Table I. {ours}. {report.FLOPS_NOTE}. Swin-T columns: "
                           f"{ref} at {size}. Paper: Table I, CIFAR-100, Swin-T.")
    cx = complexity(r)
    cx.attrs["caption"] = (f"SiDT section 3: per-layer MACs of {ref} ({size}) measured vs "
                           f"formula, first block of each stage, uniform pruning. {ours}. "
                           f"{report.FLOPS_NOTE}.")
    t2 = table2(r)
    t2.attrs["caption"] = f"SiDT Table II backbone columns. {ours}."
    sw = sizes(r)
    sw.attrs["caption"] = (f"SiDT: {ref} ({size}) pruned uniformly (every layer loses the "
                           f"ratio) and with the per-layer kept fractions of our search. {ours}. "
                           f"{report.FLOPS_NOTE}. Paper: Table I.")
    out = {"table1": t1, "complexity": cx, "table2": t2, "swin_t": sw}
    if cfg.seeds:
        out.update(C.evidence_tables(pipe, cfg))
    return out


# --------------------------------------------------------------------------- figures


def figures(pipe, cfg) -> dict:
    """``tradeoff``: accuracy change vs relative params and vs relative FLOPs (ours and the
    paper's Table I, each relative to its own unpruned model) and Swin-T params at each ratio;
    ``complexity``: section 3 MACs per layer vs rho (formula lines, measured dots) and
    measured CPU latency vs FLOPs of our pruned models."""
    r = read(pipe, cfg)
    title = f"{r['prov']}{r['note']}"
    out = {"tradeoff": plot_tradeoff(cfg, r, f"SiDT Table I as plots — {title}"),
           "complexity": plot_complexity(cfg, r, f"Section 3 complexity and measured "
                                                 f"latency — {title}")}
    if cfg.seeds:
        out["evidence"] = C.plot_evidence(pipe, cfg)
    return out


def plot_tradeoff(cfg, r: dict, title: str):
    import matplotlib.pyplot as plt

    t = table1(r)
    a0 = t["acc (%)"].iloc[0]
    ours = pd.DataFrame({"params rel.": t["params rel."], "FLOPs rel.": t["FLOPs rel."],
                         "acc change (pp)": t["acc (%)"] - a0, "series": "ours (fine-tuned)"})
    p0 = PAPER_TABLE1[0.0]
    paper = pd.DataFrame([{"params rel.": v[1] / p0[1], "FLOPs rel.": v[2] / p0[2],
                           "acc change (pp)": v[0] - p0[0]} for v in PAPER_TABLE1.values()])
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for ax, x in zip(axes[:2], ("params rel.", "FLOPs rel.")):
        report.plot_tradeoff(ours, x, "acc change (pp)", hue="series", style="series",
                             paper_df=paper, ax=ax, xlabel=f"{x.split()[0]} / unpruned",
                             ylabel="accuracy - unpruned (pp)")
    sw = sizes(r)
    for kind, g in sw.groupby("kind"):
        axes[2].plot(g["ratio"], g["params (M)"], marker="o", label=f"ours, {kind}")
    axes[2].scatter(list(PAPER_TABLE1), [v[1] for v in PAPER_TABLE1.values()], marker="x",
                    color="black", zorder=5, label="paper")
    axes[2].set_xlabel("pruning ratio (fraction of dimensions removed)")
    axes[2].set_ylabel(f"{ref_label(cfg).strip('`')} params (M), "
                       f"{cfg.reference_classes} classes")
    axes[2].legend(fontsize=7)
    axes[2].grid(alpha=0.3)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def plot_complexity(cfg, r: dict, title: str):
    import matplotlib.pyplot as plt

    cx = complexity(r)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for (kind, st), g in cx.groupby(["kind", "stage"]):
        g = g.sort_values("rho")
        line, = axes[0].plot(g["rho"], g["formula (MMAC)"], ls="-", lw=1,
                             label=f"{kind} stage {st + 1}")
        axes[0].scatter(g["rho"], g["measured (MMAC)"], color=line.get_color(), s=18)
    axes[0].set_xlabel("rho (kept fraction of the layer)")
    axes[0].set_ylabel("MMAC (lines: section 3 formula; dots: measured)")
    axes[0].set_title(f"{ref_label(cfg).strip('`')} {cfg.reference_size} px, uniform pruning",
                      fontsize=9)
    axes[0].legend(fontsize=6, ncol=2)
    axes[0].grid(alpha=0.3)
    t1 = table1(r)
    t1 = t1[~t1["PR"].str.contains("baseline")].reset_index(drop=True)   # no latency measured
    lat0 = t1["latency (ms)"].iloc[0]
    threads = r["tunes"][0]["metrics"].get("latency_threads", 1)
    axes[1].plot(t1["FLOPs rel."], t1["latency (ms)"] / lat0, marker="o", label="ours, measured")
    axes[1].plot([0, 1], [0, 1], ls="--", color="grey", lw=0.8, label="latency ∝ FLOPs")
    for _, row in t1.iterrows():
        axes[1].annotate(row["PR"], (row["FLOPs rel."], row["latency (ms)"] / lat0), fontsize=7)
    axes[1].set_xlabel("FLOPs / unpruned")
    axes[1].set_ylabel(f"CPU latency / unpruned (batch {cfg.latency_batch}, "
                       f"{threads} thread{'s' if threads != 1 else ''})")
    axes[1].legend(fontsize=7)
    axes[1].grid(alpha=0.3)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- summary


def test_set_size(tunes: list[dict]) -> int | None:
    """The size of the test set the fine-tunes' accuracies were measured on
    (:func:`reprolib.core.pipeline.test_images`)."""
    return test_images(tunes)


def join(values, fmt: str) -> str:
    return " / ".join(format(v, fmt) for v in values)


def summary(pipe, cfg) -> str:
    """The SiDT paragraph of the README, every number read from the records: the reference
    Swin-T's size, its pruned sizes (uniform and learned) beside the paper's, whether the
    section 3 formulas equal the measured MACs, and the trained part (accuracy at every
    ratio, epochs, time) with how it compares to the noise of a single run."""
    r = read(pipe, cfg)
    p = cfg.profile
    s, ft = r["search"]["metrics"], [t["metrics"] for t in r["tunes"]]
    ref = r["reference"]["metrics"]
    rows = {(x["kind"], x["ratio"]): x for x in ref["rows"]}
    ratios = [m["ratio"] for m in ft]
    pr = [x for x in ratios if x > 0]
    u0 = rows[("uniform", 0.0)]
    name = ref_label(cfg)

    out = [f"A score vector over the head dimension of every W-MSA layer (shared by Q, K, V, "
           f"all heads and windows) and one over each MLP's hidden units ({s['n_scores']:,} "
           f"scores in `{cfg.model}`); L1 search (strength {cfg.l1_strength:g}); {cfg.scope} "
           f"|score| ranking; physical pruning of qkv/proj and fc1/fc2 with the kept scores "
           f"folded in and the unpruned softmax scale kept "
           f"(`reprolib.methods.sidt.attach_scores / scores / prune`; pruned and searched "
           f"models are saved with `reprolib.save_compressed`)."]
    flops = (f"{u0['flops'] / 1e9:.2f} G" if u0["flops"] >= 1e8 else
             f"{u0['flops'] / 1e6:.2f} MFLOPs")
    base = (f"{name} at {cfg.reference_classes} classes / {cfg.reference_size} px counts "
            f"{u0['params'] / 1e6:.2f} M / {flops}")
    if cfg.reference_model == "swin_t" and cfg.reference_classes == 100 \
            and cfg.reference_size == 224:
        base += (f" (the paper's baseline: {PAPER_TABLE1[0.0][1]:.2f} M / "
                 f"{PAPER_TABLE1[0.0][2]:.2f} G)")
    if pr:
        uni = [rows[("uniform", x)]["params"] / 1e6 for x in pr]
        lrn = [rows[("learned", x)]["params"] / 1e6 for x in pr if ("learned", x) in rows]
        base += (f"; pruned by the same fraction in every layer it counts {join(uni, '.2f')} M "
                 f"at {join([100 * x for x in pr], '.0f')} %")
        paper = [PAPER_TABLE1[round(x, 2)][1] for x in pr if round(x, 2) in PAPER_TABLE1]
        if len(paper) == len(pr):
            base += f" (paper {join(paper, '.2f')} M)"
        if len(lrn) == len(pr):
            base += (f", and with the per-layer kept fractions our search learned "
                     f"{join(lrn, '.2f')} M")
    base += "."
    if pr and all(("learned", x) in rows for x in pr):
        top = ft[-1]
        sw = top["swin"]
        full_a = sum(sw["head_dim"][int(k.split(".")[1])] for k in top["attn_dims"])
        mlp = {}
        for k, v in top["mlp_dims"].items():
            st = int(k.split(".")[1])
            kept, full = mlp.get(st, (0, 0))
            mlp[st] = (kept + v, full + int(sw["embed_dim"] * 2 ** st * sw["mlp_ratio"][st]))
        more = all(rows[("learned", x)]["params"] > rows[("uniform", x)]["params"] for x in pr)
        base += (f" At PR {100 * top['ratio']:.0f} % our search kept "
                 f"{100 * sum(top['attn_dims'].values()) / full_a:.0f} % of the attention "
                 f"dimensions and {join([100 * k / f for k, f in mlp.values()], '.0f')} % of "
                 f"the MLP units of stages {join([i + 1 for i in mlp], 'd')}")
        base += ("; a ratio counts dimensions, not parameters, and one attention dimension "
                 "(shared by every head of its layer) carries many parameters, so the learned "
                 "widths keep more parameters than uniform pruning at every ratio."
                 if more else ".")
    lay = ref["layers"]
    same = sum(x["measured_macs"] == x["formula_macs"] for x in lay)
    verdict = ("equal the measured per-layer multiply-adds exactly, in all "
               f"{len(lay)} W-MSA and MLP layers at every ratio" if same == len(lay) else
               f"equal the measured per-layer multiply-adds in {same} of {len(lay)} layers")
    out.append(f"{base} The section 3 complexity formulas {verdict} "
               f"(`figures/sidt/complexity-{p}.md`).")

    wall = (r["search"]["wall_time_s"] + sum(t["wall_time_s"] for t in r["tunes"])) / 60
    accs = [m["acc"] for m in ft]
    dev = report.device_label([r["search"], *r["tunes"]])
    ds = pipe.data_label(cfg)
    out.append(f"Trained part (`{p}` profile): `{cfg.model}` on `{ds}`, {s['epochs']} search "
               f"+ {ft[0]['epochs']} fine-tune epochs "
               f"per ratio, {wall:.0f} min on {dev}: {join(accs, '.1f')} % top-1 after "
               f"fine-tuning at PR {join([100 * x for x in ratios], '.0f')} % "
               f"({join([m['acc_pruned_no_ft'] for m in ft], '.1f')} % right after pruning; "
               f"the searched model: {s['acc']:.1f} %) (`figures/sidt/table1-{p}.md`).")
    n = test_set_size(r["tunes"])
    spread = max(accs) - min(accs)
    if getattr(cfg, "seeds", ()):
        out.append(f"These are seed {cfg.seed}'s numbers; the claims table below tests pruning "
                   f"over {len(cfg.seeds)} seeds, against uniform and random pruning at equal "
                   f"parameters.")
    elif n and len(accs) > 1:
        pm = sum(accs) / len(accs) / 100
        se = 100 * math.sqrt(pm * (1 - pm) / n)
        sed = math.sqrt(2) * se
        noise = (f"With one seed and {n:,} test images the binomial standard error of one "
                 f"accuracy is {se:.1f} pp ({sed:.1f} pp for a difference of two), so")
        if spread <= sed:
            out.append(f"{noise} at this scale the accuracies across ratios differ by less "
                       f"than their noise (largest gap {spread:.1f} pp): this run shows that "
                       f"the pipeline works end to end, not what pruning costs in accuracy.")
        elif spread <= 2 * sed:
            out.append(f"{noise} the largest gap between ratios ({spread:.1f} pp) is within "
                       f"two standard errors: not a clear effect of pruning at this scale.")
        else:
            out.append(f"The accuracies across ratios differ by up to {spread:.1f} pp, more "
                       f"than twice the standard error of a difference ({sed:.1f} pp, one "
                       f"seed, {n:,} test images).")
    t2 = [rows.get(("uniform", x)) for x in PAPER_TABLE2]
    if all(t2):
        out.append(f"Table II's detector (Cascade Mask R-CNN on COCO, box / mask mAP) is "
                   f"searched and pruned in the `sidt_detection` notebook; the backbone "
                   f"sizes are: {join([x['backbone_params'] / 1e6 for x in t2], '.2f')} M at "
                   f"{join([100 * x for x in PAPER_TABLE2], '.0f')} % uniform pruning "
                   f"(paper {join([v[3] for v in PAPER_TABLE2.values()], 'g')} M).")
    return " ".join(out)
