"""SiDT's evidence (``reprolib.experiments.sidt``, profile ``evidence``: ``cfg.seeds``): per
seed a dense baseline, a search from it, then learned pruning and the controls at equal
parameters, each fine-tuned alike.  Their records, found in the graph by role and tags
(``finetune`` / ``control`` by ``seed``, ``ratio``, ``control``), become the evidence tables,
the claims table (``SiDT.evidence_claims``) and the evidence figure."""

from __future__ import annotations

import math

import pandas as pd

from reprolib.configs.sidt import CONTROLS, PAPER_TABLE1
from reprolib.core.claims import claim_row, claims_frame, verdict_rule
from reprolib.core.pipeline import profile_note
from reprolib.experiments import evidence
from reprolib.experiments.sidt.graph import TP_CONTROLS, ratios

CONDITIONS = ("unpruned", "learned", *CONTROLS)
_STYLES = {"learned": {"color": "tab:red", "marker": "o"},
           "uniform": {"color": "tab:blue", "marker": "s", "ls": "--"},
           "random": {"color": "tab:grey", "marker": "^", "ls": ":"},
           "tp_uniform": {"color": "tab:purple", "marker": "v", "ls": "-."},
           "tp_global": {"color": "tab:orange", "marker": "D", "ls": "-."}}


def matched_on(control: str) -> str:
    """What a control is matched to the learned model on: "FLOPs" for Torch-Pruning's,
    "parameters" for ours."""
    return "FLOPs" if control in TP_CONTROLS else "parameters"

_COLUMNS = ["seed", "condition", "ratio", "control_ratio", "params", "flops", "acc_no_ft", "acc"]


def evidence_frame(pipe, cfg) -> pd.DataFrame:
    """One row per (seed, condition, ratio): ``condition`` "unpruned" (the searched model at
    ratio 0, fine-tuned alike), "learned" (global |score| ranking at ``ratio``) or a control
    pruned to the learned model's parameter count; params, FLOPs, accuracy right after pruning
    (``acc_no_ft``) and after fine-tuning (``acc``), the ratio the control needed.  Empty
    without ``cfg.seeds``."""
    g = pipe.graph(cfg)
    rows = []
    for seed in pipe.seeds(cfg):
        if seed not in (int(x) for x in cfg.seeds):
            continue
        for st in g.select("finetune", seed=seed):
            r, m = st.tags["ratio"], st.metrics()
            rows.append({"seed": seed, "condition": "unpruned" if r == 0 else "learned",
                         "ratio": r, "control_ratio": r, **_row(m)})
        for st in g.select("control", seed=seed):
            m = st.metrics()
            rows.append({"seed": seed, "condition": st.tags["control"], "ratio": st.tags["ratio"],
                         "control_ratio": m["control_ratio"], **_row(m)})
    return pd.DataFrame(rows, columns=_COLUMNS)


def _row(m: dict) -> dict:
    return {"params": m["params"], "flops": m["flops"], "acc_no_ft": m["acc_pruned_no_ft"],
            "acc": m["acc"]}


def _evidence_records(pipe, cfg) -> list[dict]:
    """Every trained stage's record (all but the reference counts)."""
    return [s.record() for s in pipe.graph(cfg) if s.role != "reference"]


def _baseline_histories(pipe, cfg) -> tuple[list, str]:
    """The histories the plateau rule reads (the dense baseline per seed; the search when
    there is no baseline) and which phase that is."""
    g = pipe.graph(cfg)
    seeds = [int(x) for x in cfg.seeds]
    if cfg.baseline.epochs:
        return [g.get("baseline", seed=s).metrics()["history"] for s in seeds], \
            "the dense baseline"
    return [g.get("search", seed=s).metrics()["history"] for s in seeds], "the search"


def _evidence_note(pipe, cfg) -> str:
    """Model, data, seeds, epochs, plateau decision, cost and device of the evidence run."""
    hist, what = _baseline_histories(pipe, cfg)
    kw = ", ".join(f"{k}={v}" for k, v in cfg.model_kwargs.items())
    model = f"`{cfg.model}`" + (f" ({kw})" if kw else "")
    seeds = ", ".join(str(int(x)) for x in cfg.seeds)
    return (f"{model} on `{pipe.data_label(cfg)}`, seeds {seeds}; dense baseline "
            f"{cfg.baseline.epochs} ep, search {cfg.search.epochs} ep (L1 {cfg.l1_strength:g}) "
            f"from it, every pruned model fine-tuned {cfg.finetune.epochs} ep alike; "
            f"{evidence.plateau_note(hist, what=what)}; "
            f"{evidence.cost_note(_evidence_records(pipe, cfg))}{profile_note(cfg)}")


def evidence_tables(pipe, cfg) -> dict[str, pd.DataFrame]:
    """``evidence``: per condition and ratio, params and accuracy before / after fine-tuning
    as mean ± std over the seeds, beside the paper's Table I; ``evidence_runs``: every seed;
    ``claims``: the claims table."""
    df = evidence_frame(pipe, cfg)
    note = _evidence_note(pipe, cfg)
    rows = []
    order = {c: i for i, c in enumerate(CONDITIONS)}
    for (cond, r), g in sorted(df.groupby(["condition", "ratio"]),
                               key=lambda kv: (kv[0][1], order.get(kv[0][0], 9))):
        p = PAPER_TABLE1.get(round(r, 2)) if cond in ("learned", "unpruned") else None
        rows.append({"PR": f"{r:.0%}", "condition": cond,
                     "params (M)": round(g["params"].mean() / 1e6, 4),
                     "FLOPs (M)": round(g["flops"].mean() / 1e6, 2),
                     "ratio used": round(g["control_ratio"].mean(), 3),
                     "acc no FT (%)": evidence.fmt(g["acc_no_ft"]),
                     "acc (%)": evidence.fmt(g["acc"]),
                     "paper acc (%)": p[0] if p else float("nan"),
                     "paper params (M)": p[1] if p else float("nan")})
    tab = pd.DataFrame(rows)
    tp = any(k in TP_CONTROLS for k in cfg.controls)
    tab.attrs["caption"] = (f"SiDT evidence: learned pruning vs controls at equal parameters "
                            + ("(uniform, random) or equal FLOPs (Torch-Pruning, tp_*) "
                               if tp else "")
                            + f"(mean ± std over seeds). {note}. Paper: Table I (CIFAR-100, "
                            f"Swin-T, one run, no control).")
    runs = df.assign(params=df["params"], acc=df["acc"].round(2),
                     acc_no_ft=df["acc_no_ft"].round(2), control_ratio=df["control_ratio"].round(4))
    runs.attrs["caption"] = f"SiDT evidence, every seed. {note}."
    return {"evidence": tab, "evidence_runs": runs, "claims": pipe.claims(cfg)}


def _margin(pipe, cfg, df: pd.DataFrame) -> tuple[float, str]:
    if cfg.kept_margin > 0:
        return cfg.kept_margin, f"margin {cfg.kept_margin:g} pp (set)"
    unpruned = pipe.graph(cfg).get("finetune", seed=int(cfg.seeds[0]), ratio=0.0)
    n = int(unpruned.metrics()["test_images"])
    acc0 = df[df["condition"] == "unpruned"]["acc"].mean()
    m = math.sqrt(2) * evidence.binomial_se(acc0, n)
    return m, (f"margin {m:.1f} pp = √2 × the binomial standard error of the unpruned "
               f"accuracy on {n:,} test images")


def _by_seed(pipe, cfg) -> dict:
    """``{(condition, ratio): {seed: record}}`` over the evidence stages (the pairing key)."""
    g = pipe.graph(cfg)
    out: dict = {}
    for seed in (int(x) for x in cfg.seeds):
        for st in g.select("finetune", seed=seed):
            r = st.tags["ratio"]
            out.setdefault(("unpruned" if r == 0 else "learned", r), {})[seed] = st.record()
        for st in g.select("control", seed=seed):
            out.setdefault((st.tags["control"], st.tags["ratio"]), {})[seed] = st.record()
    return out


def evidence_claims(pipe, cfg) -> pd.DataFrame:
    """SiDT's claims tested on the records of the evidence stages: at every ratio, learned
    widths keep more accuracy than each control at equal parameters; at 20 % and 40 %, the
    fine-tuned accuracy is within a margin of the unpruned model's (non-inferiority).  Every
    arm of a seed is pruned from that seed's searched model and tested on the same images,
    so the tests are paired by seed (paired t over the seeds); Holm over the table."""
    df = evidence_frame(pipe, cfg)
    acc = {(c, r): g["acc"].tolist() for (c, r), g in df.groupby(["condition", "ratio"])}
    prm = df.groupby(["condition", "ratio"])["params"].mean()
    flp = df.groupby(["condition", "ratio"])["flops"].mean()
    recs = _by_seed(pipe, cfg)
    n_train = evidence.train_images(cfg.dataset)
    base = acc[("unpruned", 0.0)]
    rows = []
    for r in sorted(x for x in ratios(cfg) if x > 0):
        p = PAPER_TABLE1.get(round(r, 2))
        paper = (f"no control in the paper; Table I at PR {r:.0%}: {p[0]} % at {p[1]} M"
                 if p else "no control in the paper")
        for k in cfg.controls:
            c = evidence.paired_records(recs[("learned", r)], recs[(k, r)])
            size = flp if k in TP_CONTROLS else prm
            unit = "M FLOPs" if k in TP_CONTROLS else "M"
            who = f"Torch-Pruning {k[3:]}" if k in TP_CONTROLS else f"{k} pruning"
            rows.append(claim_row(
                f"PR {r:.0%}: learned widths keep more accuracy than {who} at equal "
                f"{matched_on(k)}",
                f"learned {evidence.fmt(acc[('learned', r)])} % at "
                f"{size[('learned', r)] / 1e6:.3f} {unit} vs {k} {evidence.fmt(acc[(k, r)])} % "
                f"at {size[(k, r)] / 1e6:.3f} {unit}", paper, c,
                budget=evidence.budget({"learned": recs[("learned", r)].values(),
                                        k: recs[(k, r)].values()}, n_train)))
    margin, why = _margin(pipe, cfg, df)
    for r in (0.2, 0.4):
        if ("learned", r) not in acc:
            continue
        p = PAPER_TABLE1[r]
        c = evidence.paired_records(recs[("learned", r)], recs[("unpruned", 0.0)], margin=margin)
        rows.append(claim_row(
            f"PR {r:.0%}: accuracy kept within noise of the unpruned model",
            f"{evidence.fmt(acc[('learned', r)])} % vs unpruned {evidence.fmt(base)} %",
            f"{p[0]} % vs {PAPER_TABLE1[0.0][0]} % unpruned (Table I, one run)", c, why,
            budget=evidence.budget({"learned": recs[("learned", r)].values(),
                                    "unpruned": recs[("unpruned", 0.0)].values()}, n_train)))
    out = claims_frame(rows, seeds=len(cfg.seeds), seed_cost_s=evidence.seed_cost(
        _evidence_records(pipe, cfg), len(cfg.seeds)))
    out.attrs["caption"] = (f"SiDT claims (`{cfg.profile}` profile). {verdict_rule()} "
                            f"Tests: paired t over the seeds (every arm of a seed is pruned from "
                            f"that seed's searched model, fine-tuned alike and tested on the same "
                            f"images; where the records hold per-image correctness, a paired "
                            f"permutation test over images x seeds is added to the reason). "
                            + (f"Controls are pruned from the same searched model: ours "
                               f"(uniform, random) to the learned model's parameter count, "
                               f"Torch-Pruning's (magnitude importance, uniform / global) to its "
                               f"FLOPs (bisection on their ratio). "
                               if any(k in TP_CONTROLS for k in cfg.controls) else
                               f"Controls are pruned from the same searched model to the "
                               f"learned model's parameter count (bisection on their ratio). ")
                            + f"{_evidence_note(pipe, cfg)}.")
    return out


def plot_evidence(pipe, cfg):
    """Three panels: accuracy after fine-tuning vs params, accuracy right after pruning vs
    params (mean ± std over seeds per condition; the unpruned model as a band), and the
    dense baseline's test accuracy per epoch and seed (what the plateau rule read)."""
    import textwrap

    import matplotlib.pyplot as plt

    df = evidence_frame(pipe, cfg)
    df = df.assign(params_M=df["params"] / 1e6)
    pts = df[df["condition"] != "unpruned"].copy()
    # each condition at the mean params of its ratio group (the x of equal-parameter
    # points); Torch-Pruning's, matched on FLOPs, at their own mean params
    tp = pts["condition"].isin(list(TP_CONTROLS))
    pts["x"] = pts[~tp].groupby("ratio")["params_M"].transform("mean")
    pts.loc[tp, "x"] = pts[tp].groupby(["ratio", "condition"])["params_M"].transform("mean")
    un = df[df["condition"] == "unpruned"]
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.4))
    for ax, col, what in ((axes[0], "acc", f"after {cfg.finetune.epochs} ep fine-tune"),
                          (axes[1], "acc_no_ft", "right after pruning")):
        evidence.plot_mean_std(ax, pts, "x", col, "condition", order=["learned", *cfg.controls],
                               styles=_STYLES, offset=0.04)
        m, sd, n = evidence.mean_std(un[col])
        ax.axhspan(m - sd, m + sd, color="tab:green", alpha=0.15)
        ax.axhline(m, color="tab:green", lw=1, label=f"unpruned ({un['params_M'].mean():.3f} M)")
        # the pruning ratio of each group of points on a top axis, clear of legend and bars
        at = pts[~tp].groupby("ratio")["x"].first()
        top = ax.secondary_xaxis("top")
        top.set_xticks(list(at.values), [f"PR {r:.0%}" for r in at.index], fontsize=8)
        top.tick_params(length=3, pad=1)
        ax.set_xlabel("parameters (M); uniform / random pruned to the learned model's count, "
                      "Torch-Pruning to its FLOPs" if tp.any() else
                      "parameters (M), each control pruned to the learned model's count",
                      **({"fontsize": 8} if tp.any() else {}))
        ax.set_ylabel(f"test accuracy (%), {what}")
        ax.set_title(f"accuracy {what}: mean ± std over {n} seeds", fontsize=9, pad=18)
        ax.legend(fontsize=7, loc="lower right")
        ax.grid(alpha=0.3)
    hist, what = _baseline_histories(pipe, cfg)
    for seed, h in zip(cfg.seeds, hist):
        h = [x for x in h if x.get("test_acc") is not None]
        axes[2].plot([x["epoch"] for x in h], [x["test_acc"] for x in h], marker=".",
                     label=f"seed {seed}")
    axes[2].set_xlabel("epoch")
    axes[2].set_ylabel(f"test accuracy (%) of {what}")
    axes[2].set_title(textwrap.fill(evidence.plateau_note(hist, what=what), 70), fontsize=8)
    axes[2].legend(fontsize=7)
    axes[2].grid(alpha=0.3)
    fig.suptitle(textwrap.fill(f"SiDT evidence — {_evidence_note(pipe, cfg)}", 190), fontsize=8)
    fig.tight_layout()
    return fig
