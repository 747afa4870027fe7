"""PE's claims test (profile ``evidence``: ``cfg.seeds``, ``cfg.narrowed``): per family the PE
model, its unshared twin and the twin narrowed to the PE model's parameter count, every one
trained with the family's recipe for every seed -- the evidence tables, the claims and the
evidence figure, read back from the ``train`` stages of the seeds (tags ``seed``, ``run``,
``family``, ``kind``).

Every function takes the paper's pipeline (``reprolib.experiments.pe.PIPELINE``) first.
"""

from __future__ import annotations

import textwrap

import pandas as pd

from reprolib.configs.pe import PAPER_TABLE1, PAPER_TABLE2
from reprolib.core import report
from reprolib.core.claims import verdict_rule
from reprolib.core.pipeline import profile_note
from reprolib.experiments import evidence
from reprolib.experiments.pe.graph import (KIND_LABELS, RUN_KINDS, family, pair_runs,
                                            training_runs)

#: The paper's own accuracy gap between its PE model and the unshared baseline (ImageNet,
#: same recipe): the margin of "sharing costs little" (pp).
PAPER_GAP = {"vit": ("ViT-PE¹ (ours)", "DeiT-S/16", PAPER_TABLE1),
             "resnet": ("ResNet50-PE¹ (Ours)", "ResNet50", PAPER_TABLE2)}


def seed_stages(pipe, cfg) -> dict[int, dict]:
    """Per seed of ``cfg.seeds`` (in their order), its ``train`` stages by run name (the
    ``run`` tag; the names of the seeds other than ``cfg.seed`` end ``-s<seed>``)."""
    g = pipe.graph(cfg)
    return {seed: {s.tags["run"]: s for s in g.select("train", seed=seed)}
            for seed in dict.fromkeys(int(x) for x in cfg.seeds)}


def evidence_frame(pipe, cfg) -> pd.DataFrame:
    """One row per (seed, run): family, kind (PE / unshared twin / narrowed twin), params,
    FLOPs, test top-1, epochs, the width of a narrowed twin."""
    rows = []
    for seed, st in seed_stages(pipe, cfg).items():
        for name, stage in st.items():
            m = stage.metrics()
            rows.append({"seed": seed, "family": stage.tags["family"], "run": name,
                         "kind": KIND_LABELS[stage.tags["kind"]], "params": m["params"],
                         "flops": m["flops"],
                         "acc": m["acc"], "epochs": m["epochs"],
                         "narrowed": json_kwargs(m.get("narrowed_kwargs"))})
    return pd.DataFrame(rows, columns=["seed", "family", "run", "kind", "params", "flops",
                                       "acc", "epochs", "narrowed"])


def json_kwargs(kw: dict | None) -> str:
    """``"embed_dim=66"``: the narrowed width of a run ("" for none)."""
    return ", ".join(f"{k}={v}" for k, v in (kw or {}).items()
                     if k in ("embed_dim", "base"))


def _twin_histories(pipe, cfg) -> list:
    """The unshared twins' histories (the dense baselines the plateau rule reads), per
    family and seed."""
    pairs = pair_runs(cfg, training_runs(cfg))
    st = seed_stages(pipe, cfg)
    return [st[seed][twin["name"]].metrics()["history"] for _, twin in pairs for seed in st]


def _plateau(pipe, cfg) -> str:
    """The plateau sentence over the unshared twins' histories (one per family and seed)."""
    return evidence.plateau_note(_twin_histories(pipe, cfg), what="the unshared twin",
                                 unit="runs (family x seed)")


def _evidence_note(pipe, cfg) -> str:
    recs = [s.record() for st in seed_stages(pipe, cfg).values() for s in st.values()]
    fams = sorted({family(r["model"]) for r in training_runs(cfg)})
    eps = ", ".join(f"{f}_train {getattr(cfg, f'{f}_train').epochs} ep" for f in fams)
    kws = "; ".join(f"{f}_kwargs {getattr(cfg, f'{f}_kwargs')}" for f in fams
                    if getattr(cfg, f"{f}_kwargs"))
    seeds = ", ".join(str(int(x)) for x in cfg.seeds)
    return (f"`{pipe.data_label(cfg)}` at {cfg.image_size} px, {eps}" + (f" ({kws})" if kws else "")
            + f", seeds {seeds}; "
            f"{_plateau(pipe, cfg)}; "
            f"{evidence.cost_note(recs)}{profile_note(cfg)}")


def evidence_tables(pipe, cfg) -> dict[str, pd.DataFrame]:
    """``evidence``: per family and kind, params, FLOPs and top-1 mean ± std over the seeds,
    beside the paper's (ImageNet) numbers; ``evidence_runs``: every seed."""
    df = evidence_frame(pipe, cfg)
    order = {k: i for i, k in enumerate(RUN_KINDS)}
    rows = []
    for (fam, kind), g in sorted(df.groupby(["family", "kind"]),
                                 key=lambda kv: (kv[0][0] != "vit", order[kv[0][1]])):
        pe_row, base_row, table = PAPER_GAP[fam]
        p = table[pe_row] if kind == "PE" else table[base_row] if kind == "unshared twin" else {}
        rows.append({"family": "ViT" if fam == "vit" else "ResNet", "kind": kind,
                     "run": g["run"].iloc[0].rsplit("-s", 1)[0] if g["seed"].iloc[0] != cfg.seed
                     else g["run"].iloc[0],
                     "width": g["narrowed"].iloc[0],
                     "params (M)": round(g["params"].mean() / 1e6, 4),
                     "FLOPs (M)": round(g["flops"].mean() / 1e6, 2),
                     "top-1 (%)": evidence.fmt(g["acc"]),
                     "paper": (f"{pe_row if kind == 'PE' else base_row}: {p['top1']} % at "
                               f"{p['params_M']} M (ImageNet)") if p else "no such control"})
    tab = pd.DataFrame(rows)
    note = _evidence_note(pipe, cfg)
    tab.attrs["caption"] = (f"PE evidence: PE vs its unshared twin vs the twin narrowed to PE's "
                            f"parameter count, mean ± std over seeds. {note}. FLOPs at "
                            f"{cfg.image_size} px ({report.FLOPS_NOTE}). Paper: Tables 1-2 "
                            f"(ImageNet, 224 px, 300 / 90 epochs).")
    runs = df.assign(acc=df["acc"].round(2))
    runs.attrs["caption"] = f"PE evidence, every seed. {note}."
    return {"evidence": tab, "evidence_runs": runs, "claims": pipe.claims(cfg)}


def evidence_claims(pipe, cfg) -> pd.DataFrame:
    """PE's claims tested on the evidence records, per family: sharing beats shrinking at
    equal parameters (PE vs the narrowed twin, Welch's t-test over the seeds), and sharing
    costs little against the twin (non-inferiority on the 95 % CI with the paper's own
    ImageNet gap as the margin).  ``pipe.claims`` calls it once every stage has a record."""
    df = evidence_frame(pipe, cfg).sort_values("seed", kind="stable")
    recs = {(stage.tags["family"], KIND_LABELS[stage.tags["kind"]], seed): stage.record()
            for seed, st in seed_stages(pipe, cfg).items() for stage in st.values()}
    n_train = evidence.train_images(cfg.dataset)
    seeds = list(dict.fromkeys(int(x) for x in cfg.seeds))
    rows = []
    for fam in ("vit", "resnet"):
        g = df[df["family"] == fam]
        if not len(g):
            continue
        acc = {k: x["acc"].tolist() for k, x in g.groupby("kind")}     # in seed order
        prm = {k: x["params"].mean() / 1e6 for k, x in g.groupby("kind")}
        name = "ViT" if fam == "vit" else "ResNet"
        pe_row, base_row, table = PAPER_GAP[fam]
        pp, pb = table[pe_row], table[base_row]
        gap = round(pb["top1"] - pp["top1"], 2)

        def shown(k):
            return f"{k} {evidence.fmt(acc[k])} % at {prm[k]:.3f} M"

        def spent(*kinds):
            return evidence.budget({k: [recs.get((fam, k, s)) for s in seeds] for k in kinds},
                                   n_train)

        def paired(a, b, **kw):
            return evidence.paired_records([recs.get((fam, a, s)) for s in seeds],
                                           [recs.get((fam, b, s)) for s in seeds], **kw)

        if "narrowed twin" in acc and "PE" in acc:
            rows.append(evidence.claim_row(
                f"{name}: sharing beats shrinking at equal parameters",
                f"{shown('PE')} vs {shown('narrowed twin')} "
                f"({prm['narrowed twin'] / prm['PE'] - 1:+.2%} parameters)",
                f"no narrowed control in the paper ({pe_row} {pp['top1']} % at "
                f"{pp['params_M']} M)", paired("PE", "narrowed twin"),
                budget=spent("PE", "narrowed twin")))
        if "unshared twin" in acc and "PE" in acc:
            rows.append(evidence.claim_row(
                f"{name}: sharing costs little against the unshared twin "
                f"({prm['unshared twin'] / prm['PE']:.1f}x the parameters)",
                f"{shown('PE')} vs {shown('unshared twin')}",
                f"{pe_row} {pp['top1']} % at {pp['params_M']} M vs {base_row} {pb['top1']} % "
                f"at {pb['params_M']} M (ImageNet): {gap:g} pp",
                paired("PE", "unshared twin", margin=gap),
                f"margin: the paper's own {gap:g} pp gap", budget=spent("PE", "unshared twin")))
    every = [s.record() for s in pipe.graph(cfg) if s.role != "reference"]
    out = evidence.claims_frame(rows, seeds=len(seeds),
                                seed_cost_s=evidence.seed_cost(every, len(seeds)))
    out.attrs["caption"] = (f"PE claims (`{cfg.profile}` profile). {verdict_rule()} Tests: "
                            f"paired t over the seeds (the three models of a seed are trained "
                            f"with that seed's data order and tested on the same images). The "
                            f"narrowed twin is the unshared model with its width chosen so its "
                            f"parameter count is closest to the PE model's (its difference in "
                            f"parameters is shown; it has fewer FLOPs); 'costs little' is tested "
                            f"against the paper's own gap as the margin. "
                            f"{_evidence_note(pipe, cfg)}.")
    return out


def plot_evidence(pipe, cfg):
    """One panel per family (top-1 vs params, mean ± std over seeds: PE, unshared twin,
    narrowed twin) and the unshared twins' test accuracy per epoch and seed (what the plateau
    rule read)."""
    import matplotlib.pyplot as plt

    df = evidence_frame(pipe, cfg)
    fams = [f for f in ("vit", "resnet") if f in set(df["family"])]
    fig, axes = plt.subplots(1, len(fams) + 1, figsize=(5.6 * (len(fams) + 1), 4.6))
    for ax, fam in zip(axes, fams):
        g = df[df["family"] == fam]
        n = g["seed"].nunique()
        for kind, st in RUN_KINDS.items():
            d = g[g["kind"] == kind]
            if not len(d):
                continue
            m, sd, _ = evidence.mean_std(d["acc"])
            x = d["params"].mean() / 1e6
            ax.errorbar([x], [m], yerr=[sd], capsize=4, ms=7, ls="", label=kind, **st)
            ax.annotate(f"{m:.1f} ± {sd:.1f} %", (x, m), fontsize=7, xytext=(6, -3),
                        textcoords="offset points")
        ax.margins(x=0.3, y=0.3)
        ax.set_xlabel("params (M)")
        ax.set_ylabel("test top-1 (%)")
        ax.set_title(f"{'ViT' if fam == 'vit' else 'ResNet'}: mean ± std over {n} seeds, "
                     f"{getattr(cfg, f'{fam}_train').epochs} ep", fontsize=9)
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    st = seed_stages(pipe, cfg)
    for _, twin in pair_runs(cfg, training_runs(cfg)):
        for seed in st:
            h = [x for x in st[seed][twin["name"]].metrics()["history"]
                 if x.get("test_acc") is not None]
            axes[-1].plot([x["epoch"] for x in h], [x["test_acc"] for x in h], marker=".",
                          label=f"{twin['name']}, seed {seed}")
    axes[-1].set_xlabel("epoch")
    axes[-1].set_ylabel("test top-1 (%) of the unshared twin")
    axes[-1].set_title(textwrap.fill(_plateau(pipe, cfg), 70), fontsize=8)
    axes[-1].legend(fontsize=6)
    axes[-1].grid(alpha=0.3)
    fig.suptitle(textwrap.fill(f"PE evidence — {_evidence_note(pipe, cfg)}", 200), fontsize=8)
    fig.tight_layout()
    return fig