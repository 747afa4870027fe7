"""The claims test of the VTP + decomposition pipeline (profile ``evidence``: ``cfg.seeds``):
per seed its own dense -> L1 -> VTP chain at ``sweep_patch``, every (method, rank) decomposed
and fine-tuned alike (role ``decompose``, use ``sweep``), and the VTP model fine-tuned with
the same recipe (role ``control``).  Its tables, its claims and its figure, read back from
the records of the graph."""

from __future__ import annotations

import textwrap

import pandas as pd

from reprolib.configs.vtp_svd import PAPER_TABLE2, TABLE2_METHODS
from reprolib.core import report
from reprolib.core.claims import claim_row, claims_frame, verdict_rule
from reprolib.core.pipeline import profile_note
from reprolib.data.catalog import dataset_label
from reprolib.experiments import evidence
from reprolib.experiments.vtp_svd.graph import patch_cfg
from reprolib.experiments.vtp_svd.report import METHOD_STYLES, phase_note

_NAMES = {"svd": "SVD", "qr": "QR", "qr_reduced": "reduced QR", "qr_pivoted": "pivoted QR",
          "cod": "COD", "lu": "LU", "none": "VTP (not decomposed)",
          "vtp_more": "VTP pruned further", "tp_uniform": "Torch-Pruning uniform",
          "tp_global": "Torch-Pruning global"}
#: Styles of the equal-FLOP controls in the evidence figure.
_CONTROL_STYLES = {"vtp_more": {"color": "black", "marker": "x", "ls": "--"},
                   "tp_uniform": {"color": "tab:purple", "marker": "v", "ls": "-."},
                   "tp_global": {"color": "tab:orange", "marker": "D", "ls": "-."}}


def evidence_seeds(cfg) -> list[int]:
    """The seeds of the evidence stages: ``cfg.seeds`` in order, each once (``cfg.seed``'s
    chain is the Table 2 one)."""
    return list(dict.fromkeys(int(x) for x in cfg.seeds))


def evidence_frame(pipe, cfg) -> pd.DataFrame:
    """One row per (seed, method, rank ratio), plus the control (method "none", rank ratio
    1): accuracy right after decomposition (``acc_no_ft``) and after the fine-tune
    (``acc``), params, FLOPs, and the VTP model's accuracy before either (``acc_vtp``);
    empty without seeds."""
    g = pipe.graph(cfg)
    sp = cfg.sweep_patch
    rows = []
    for seed in evidence_seeds(cfg):
        vm = g.get("vtp", patch=sp, seed=seed).metrics()
        points = [((m, float(r)), g.get("decompose", use="sweep", patch=sp, seed=seed,
                                        method=m, ratio=float(r)))
                  for m in cfg.sweep_methods for r in cfg.sweep_ratios]
        points += [((st.tags["control"], float(st.tags["ratio"])), st)
                   for st in g.select("flops_control", patch=sp, seed=seed)]
        for (m, r), st in [*points, (("none", 1.0), g.get("control", patch=sp, seed=seed))]:
            x = st.metrics()
            rows.append({"seed": seed, "method": m, "rank_ratio": r, "params": x["params"],
                         "flops": x["flops"], "latency_ms": x.get("latency_ms"),
                         "acc_no_ft": x["acc_no_ft"], "acc": x["acc"],
                         "acc_vtp": vm["acc"], "acc_dense": vm["acc_dense"]})
    return pd.DataFrame(rows, columns=["seed", "method", "rank_ratio", "params", "flops",
                                       "latency_ms", "acc_no_ft", "acc", "acc_vtp",
                                       "acc_dense"])


def _dense_histories(g, cfg) -> list[list[dict]]:
    """The dense baselines' ``pretrain`` histories, one per evidence seed."""
    return [g.get("dense", patch=cfg.sweep_patch, seed=s).metrics()["history"].get("pretrain", [])
            for s in evidence_seeds(cfg)]


def evidence_note(pipe, cfg) -> str:
    """The evidence captions' line: phases, data, seeds, the plateau rule, the run cost."""
    g = pipe.graph(cfg)
    sp = cfg.sweep_patch
    hist = _dense_histories(g, cfg)
    recs = [s.record() for s in g.stages]
    seeds = ", ".join(str(s) for s in evidence_seeds(cfg))
    return (f"{phase_note(cfg, [sp], 'sweep')}, `{dataset_label(cfg.dataset)}`, seeds {seeds}; "
            f"{evidence.plateau_note(hist, what='the dense baseline')}; "
            f"{evidence.cost_note(recs)}{profile_note(cfg)}")


def pc_ft(cfg) -> int:
    """Epochs the VTP-pruned-further control trains (``finetune`` + ``sweep_finetune``)."""
    pc = patch_cfg(cfg, cfg.sweep_patch)
    return pc.finetune.epochs + pc.sweep_finetune.epochs


def _flops_note(cfg) -> str:
    """The evidence caption's words on the equal-FLOP controls ('' without them)."""
    if not cfg.flops_controls:
        return ""
    return (f"; 'VTP pruned further' and 'Torch-Pruning' (rank ratio in brackets) are the ViT "
            f"pruned to the FLOPs of SVD at that rank (VTP from the L1 model, fine-tuned "
            f"{pc_ft(cfg)} ep; Torch-Pruning from the VTP model, fine-tuned "
            f"{patch_cfg(cfg, cfg.sweep_patch).sweep_finetune.epochs} ep like the decomposed "
            f"ones). Latency: median of the records' batch-1 CPU latency, timed during the run "
            f"(indicative; `reprolib bench` times them interleaved)")


def evidence_tables(pipe, cfg) -> dict[str, pd.DataFrame]:
    """``evidence``: per method and rank ratio, params and accuracy right after decomposition
    and after its fine-tune, mean ± std over the seeds, beside the paper's Table 2 at
    ``sweep_patch``; ``evidence_runs``: every seed; ``claims``: the pipeline's claims."""
    df = evidence_frame(pipe, cfg)
    paper = PAPER_TABLE2.get(cfg.sweep_patch, {})
    col = {m: c for c, m in TABLE2_METHODS.items()}
    rows = []
    order = {m: i for i, m in enumerate(["none", *cfg.sweep_methods, *cfg.flops_controls])}
    for (m, r), g in sorted(df.groupby(["method", "rank_ratio"]),
                            key=lambda kv: (order.get(kv[0][0], 99), kv[0][1])):
        rows.append({"method": _NAMES.get(m, m),
                     "rank ratio": "-" if m == "none" else
                     f"({r:g})" if m in cfg.flops_controls else f"{r:g}",
                     "params (k)": round(g["params"].mean() / 1e3, 1),
                     "FLOPs (M)": round(g["flops"].mean() / 1e6, 2),
                     **({"latency b1 (ms)": round(g["latency_ms"].median(), 2)
                         if g["latency_ms"].notna().any() else float("nan")}
                        if cfg.flops_controls else {}),
                     "acc before FT (%)": evidence.fmt(g["acc_no_ft"]),
                     "acc after FT (%)": evidence.fmt(g["acc"]),
                     "paper acc (%)": paper.get(col.get(m, "VTP" if m == "none" else ""),
                                                float("nan"))})
    tab = pd.DataFrame(rows)
    note = evidence_note(pipe, cfg)
    tab.attrs["caption"] = (f"VTP + decomposition evidence: accuracy right after decomposing "
                            f"every pruned layer at each rank and after the decomposition "
                            f"fine-tune, mean ± std over seeds; 'VTP (not decomposed)' is the "
                            f"VTP model fine-tuned alike (before FT: the VTP model)"
                            f"{_flops_note(cfg)}. {note}. "
                            f"{report.FLOPS_NOTE}. Paper: Table 2 at patch {cfg.sweep_patch} "
                            f"(after fine-tuning; rank not stated).")
    runs = (df if cfg.flops_controls else df.drop(columns="latency_ms")).round(
        {"acc": 2, "acc_no_ft": 2, "acc_vtp": 2, "acc_dense": 2, "latency_ms": 2})
    runs.attrs["caption"] = f"VTP + decomposition evidence, every seed. {note}."
    return {"evidence": tab, "evidence_runs": runs, "claims": pipe.claims(cfg)}


def claims(pipe, cfg) -> pd.DataFrame:
    """The paper's claims tested on the evidence records, at every rank ratio, right after
    decomposition and after its fine-tune: SVD keeps more accuracy than QR and than LU
    (Welch's t-test over the seeds, both must hold), and QR more than LU (Table 2's order).
    Called by ``pipe.claims`` once every stage of an evidence run has its record."""
    df = evidence_frame(pipe, cfg)
    acc = {(m, r, ph): g[ph].tolist() for (m, r), g in df.groupby(["method", "rank_ratio"])
           for ph in ("acc_no_ft", "acc")}
    sp = cfg.sweep_patch
    paper = PAPER_TABLE2.get(sp, {})
    pt = (f"Table 2, patch {sp}: SVD {paper.get('VTP+SVD', float('nan')):g}, QR "
          f"{paper.get('VTP+QR', float('nan')):g}, LU {paper.get('VTP+LU', float('nan')):g} % "
          f"(after fine-tuning, rank not stated)")
    qr_lu = "; ".join(f"patch {p}: QR {v['VTP+QR']:g} > LU {v['VTP+LU']:g}"
                      for p, v in PAPER_TABLE2.items() if isinstance(p, int))
    rows = []
    phases = (("acc_no_ft", "right after decomposition"),
              ("acc", f"after {patch_cfg(cfg, sp).sweep_finetune.epochs} ep fine-tune"))
    have = set(df["method"])
    g = pipe.graph(cfg)
    seeds = evidence_seeds(cfg)
    n_train = evidence.train_images(cfg.dataset)

    def spent(methods, r):
        return evidence.budget({_NAMES[m]: [g.get("decompose", use="sweep", patch=sp, seed=s,
                                                  method=m, ratio=r).record() for s in seeds]
                                for m in methods}, n_train)

    for ph, words in phases:
        for r in sorted({float(x) for x in cfg.sweep_ratios}):
            # one row per seed and method: the lists are in seed order, paired by position
            a = {m: acc.get((m, r, ph), []) for m in ("svd", "qr", "lu") if m in have}
            def paired(m1, m2):
                # the records' per-image results are the final model's (after the fine-tune)
                return evidence.paired_records(
                    *([g.get("decompose", use="sweep", patch=sp, seed=s, method=m,
                             ratio=r).record() for s in seeds] for m in (m1, m2)),
                    metric=ph, images=ph == "acc", label=f"{m1.upper()} vs {m2.upper()}")

            if "svd" in a and len(a) > 1:
                parts = [paired("svd", m) for m in a if m != "svd"]
                c = evidence.all_of(parts)
                rows.append(claim_row(
                    f"rank {r:g}·min(out, in), {words}: SVD keeps the most accuracy",
                    " vs ".join(f"{_NAMES[m]} {evidence.fmt(v)} %" for m, v in a.items()),
                    f"the text: 'SVD performs pretty well comparing with' QR and LU; {pt}",
                    c, budget=spent(list(a), r)))
            if "qr" in a and "lu" in a:
                c = paired("qr", "lu")
                rows.append(claim_row(
                    f"rank {r:g}·min(out, in), {words}: QR keeps more accuracy than LU",
                    f"QR {evidence.fmt(a['qr'])} % vs LU {evidence.fmt(a['lu'])} %",
                    f"Table 2: {qr_lu}", c, budget=spent(["qr", "lu"], r)))
    # does factoring keep more accuracy than pruning further to the same FLOPs?  SVD's points
    # (QR / LU have its shapes, so the same FLOPs), after the fine-tune, paired by seed
    ft = patch_cfg(cfg, sp).sweep_finetune.epochs
    for r in sorted({float(x) for x in cfg.sweep_ratios}):
        if "svd" not in have:
            break
        svd = {s: g.get("decompose", use="sweep", patch=sp, seed=s, method="svd",
                        ratio=r).record() for s in seeds}
        for k in cfg.flops_controls:
            ctl = {s: g.get("flops_control", patch=sp, seed=s, ratio=r, control=k).record()
                   for s in seeds}
            t = evidence.paired_records(svd, ctl)
            fl = {w: sum(x[s]["metrics"]["flops"] for s in seeds) / len(seeds) / 1e6
                  for w, x in (("svd", svd), ("ctl", ctl))}
            lat = {w: sorted(x[s]["metrics"].get("latency_ms") or 0 for s in seeds)[len(seeds) // 2]
                   for w, x in (("svd", svd), ("ctl", ctl))}
            rows.append(claim_row(
                f"rank {r:g}·min(out, in), after {ft} ep fine-tune: SVD keeps more accuracy "
                f"than {_NAMES[k]} to its FLOPs",
                f"SVD {evidence.fmt(acc[('svd', r, 'acc')])} % at {fl['svd']:.2f} M FLOPs, "
                f"{lat['svd']:.2f} ms vs {_NAMES[k]} {evidence.fmt(acc[(k, r, 'acc')])} % at "
                f"{fl['ctl']:.2f} M, {lat['ctl']:.2f} ms (b1 CPU, during the run)",
                "no such control in the paper (its VTP column is the unpruned ViT)", t,
                budget=evidence.budget({"SVD": svd.values(), _NAMES[k]: ctl.values()},
                                       n_train)))
    recs = [s.record() for s in g.stages]
    out = claims_frame(rows, seeds=len(seeds), seed_cost_s=evidence.seed_cost(recs, len(seeds)))
    out.attrs["caption"] = (f"VTP + decomposition claims (`{cfg.profile}` profile). "
                            f"{verdict_rule()} Tests: paired t over the seeds (every method of "
                            f"a seed factors that seed's VTP model and is fine-tuned alike, "
                            f"tested on the same images; after the fine-tune the reason adds a "
                            f"paired permutation test over images x the seeds whose records "
                            f"hold per-image results); 'SVD keeps the most' is an "
                            f"intersection-union test over SVD vs QR and SVD vs LU (its p is "
                            f"the larger). Every pruned linear layer factored at the same rank "
                            f"ratio by each method."
                            + (" The equal-FLOP rows compare SVD with the ViT pruned further to "
                               "its FLOPs (VTP at a higher rate from the same seed's L1 model; "
                               "Torch-Pruning from the same VTP model), fine-tuned alike, paired "
                               "by seed; every arm has the same epochs after the L1 phase (the "
                               "budget counts each stage's own: VTP pruned further trains the "
                               "fine-tune epochs that SVD and Torch-Pruning inherit from the VTP "
                               "model)." if cfg.flops_controls else "")
                            + f" {evidence_note(pipe, cfg)}.")
    return out


def plot_evidence(pipe, cfg):
    """Three panels: accuracy right after decomposition and after its fine-tune vs rank
    ratio (mean ± std over seeds per method; the VTP model, before and after the same
    fine-tune, as a band; the paper's Table 2 levels dotted), and the dense baseline's test
    accuracy per epoch and seed (what the plateau rule read)."""
    import matplotlib.pyplot as plt

    df = evidence_frame(pipe, cfg)
    sp = cfg.sweep_patch
    dec, ctl = df[df["method"] != "none"], df[df["method"] == "none"]
    methods = [m for m in cfg.sweep_methods if m in set(dec["method"])]   # decompositions
    styles = {m: {k: v for k, v in METHOD_STYLES.get(m, {}).items()} for m in methods}
    paper = PAPER_TABLE2.get(sp, {})
    fig, axes = plt.subplots(1, 3, figsize=(17, 4.8))
    ft = patch_cfg(cfg, sp).sweep_finetune.epochs
    for ax, ph, words, band in ((axes[0], "acc_no_ft", "right after decomposition", "acc_vtp"),
                                (axes[1], "acc", f"after {ft} ep fine-tune", "acc")):
        ctls = [k for k in cfg.flops_controls if k in set(dec["method"])]
        evidence.plot_mean_std(ax, dec, "rank_ratio", ph, "method",
                               order=methods + (ctls if ph == "acc" else []),
                               styles={**styles, **_CONTROL_STYLES}, offset=0.06,
                               label_fmt="{}")
        m, sd, n = evidence.mean_std(ctl[band])
        ax.axhspan(m - sd, m + sd, color="black", alpha=0.08)
        ax.axhline(m, color="black", lw=1,
                   label="VTP, not decomposed" + ("" if ph == "acc_no_ft"
                                                  else f" (+{ft} ep alike)"))
        if ph == "acc":
            for c, meth in TABLE2_METHODS.items():
                if meth in methods and c in paper:
                    ax.axhline(paper[c], ls=(0, (1, 2)), lw=1.2,
                               color=METHOD_STYLES[meth]["color"],
                               label=f"paper Table 2 {c}: {paper[c]:g} % (rank not stated)")
        ax.set_xscale("log", base=2)
        ranks = sorted(dec["rank_ratio"].unique())
        ax.set_xticks(ranks, [f"{r:g}" for r in ranks])
        ax.set_xlabel("rank / min(out, in) of every pruned linear layer")
        ax.set_ylabel(f"test accuracy (%), {words}")
        ax.set_title(f"{words}: mean ± std over {n} seeds", fontsize=9)
        ax.legend(fontsize=6.5)
        ax.grid(alpha=0.3)
    g = pipe.graph(cfg)
    for seed in evidence_seeds(cfg):
        h = [x for x in g.get("dense", patch=sp, seed=seed).metrics()["history"].get("pretrain", [])
             if x.get("test_acc") is not None]
        axes[2].plot([x["epoch"] for x in h], [x["test_acc"] for x in h], marker=".",
                     label=f"seed {seed}")
    hist = _dense_histories(g, cfg)
    axes[2].set_xlabel("epoch")
    axes[2].set_ylabel("test accuracy (%) of the dense baseline")
    axes[2].set_title(textwrap.fill(evidence.plateau_note(hist), 70), fontsize=8)
    axes[2].legend(fontsize=7)
    axes[2].grid(alpha=0.3)
    fig.suptitle(textwrap.fill(f"VTP + decomposition evidence — {evidence_note(pipe, cfg)}",
                               200), fontsize=8)
    fig.tight_layout()
    return fig
