"""The tables, figures and summary of the VTP + decomposition pipeline, every number read
back from the records of its graph (``pipe.graph(cfg)``: roles ``vtp`` / ``decompose`` /
``analysis`` / ``identity``, see :mod:`reprolib.experiments.vtp_svd`)."""

from __future__ import annotations

import functools
import textwrap

import pandas as pd
import torch

from reprolib.configs.vtp_svd import PAPER_TABLE1, PAPER_TABLE2, TABLE2_METHODS
from reprolib.core import report
from reprolib.core.device import on_meta
from reprolib.core.measure import count_params
from reprolib.core.pipeline import profile_note, records
from reprolib.core.registry import create_model
from reprolib.data.catalog import dataset_label
from reprolib.experiments.vtp_svd.graph import patch_cfg
from reprolib.models.vit_cifar import TEXT_GEOMETRY_NOTE

# --------------------------------------------------------------------------- captions


def phase_note(cfg, patches=None, decomposition: str = "table2") -> str:
    """One line for captions: the model and the epochs of each phase (dense baseline, L1,
    fine-tune after pruning, fine-tune after decomposition: ``decomposition`` = "table2"
    (``decompose_finetune``), "sweep" (``sweep_finetune``) or "" (left out, for results of
    the VTP model itself)), grouped by patch size where ``cfg.patch_overrides`` makes them
    differ."""
    def one(c):
        txt = (f"{c.model}: dense baseline {c.pretrain.epochs + c.baseline.epochs} ep, L1 "
               f"{c.sparsity.epochs} ep, fine-tune {c.finetune.epochs} ep")
        if decomposition:
            dec = c.sweep_finetune if decomposition == "sweep" else c.decompose_finetune
            txt += f", decomposition fine-tune {dec.epochs} ep"
        return txt
    patches = list(cfg.patch_sizes if patches is None else patches)
    over = cfg.patch_overrides or {}
    base = [p for p in patches if p not in over]
    parts = [f"patch {', '.join(map(str, base))}: {one(cfg)}"] if base else []
    parts += [f"patch {p}: {one(patch_cfg(cfg, p))}" for p in patches if p in over]
    return "; ".join(parts)


def provenance(cfg, recs) -> str:
    """``profile=... · data=... · device=...`` of ``recs`` plus the profile note (the epochs
    of each phase are in :func:`phase_note`)."""
    return (report.provenance(None, None, profile=cfg.profile, data=dataset_label(cfg.dataset))
            + f" · device={report.device_label(recs)}" + profile_note(cfg))


def _epoch_seconds(history: list[dict]) -> float:
    """Training wall time of a phase: the sum of its epochs' ``time_s`` (kept across resumes)."""
    return float(sum(h.get("time_s", 0.0) for h in history))


# --------------------------------------------------------------------------- tables


def table2(cfg, g) -> pd.DataFrame:
    """Table 2 in long form, one row per (patch, model), from the ``vtp`` stages and the
    ``decompose`` stages of use ``table2`` (seed ``cfg.seed``)."""
    rows = []
    for patch in cfg.patch_sizes:
        m = g.get("vtp", patch=patch, seed=cfg.seed).metrics()
        paper = PAPER_TABLE2.get(patch, {})
        pc = patch_cfg(cfg, patch)
        dense_ep = pc.pretrain.epochs + pc.baseline.epochs
        train_ep = dense_ep + pc.sparsity.epochs
        phases = f"{dense_ep}+{pc.sparsity.epochs}"
        h = m["history"]
        wall_base = sum(_epoch_seconds(h.get(k, [])) for k in ("pretrain", "baseline"))
        wall_dense = wall_base + _epoch_seconds(h.get("sparsity", []))
        wall_vtp = wall_dense + _epoch_seconds(h.get("finetune", []))
        common = {"patch": patch, "acc_paper": float("nan"), "arch": pc.model}
        rows.append({**common, "model": "ViT (dense baseline)", "acc": m["acc_dense"],
                     "params": m["params_dense"], "flops": m["flops_dense"], "epochs": dense_ep,
                     "phases": f"{dense_ep}", "wall_s": wall_base})
        rows.append({**common, "model": "ViT (after L1, before pruning)", "acc": m["acc_sparse"],
                     "params": m["params_dense"], "flops": m["flops_dense"], "epochs": train_ep,
                     "phases": phases, "wall_s": wall_dense})
        rows.append({**common, "model": "VTP", "acc": m["acc"],
                     "acc_paper": paper.get("VTP", float("nan")), "params": m["params"],
                     "flops": m["flops"], "epochs": train_ep + pc.finetune.epochs,
                     "phases": f"{phases}+{pc.finetune.epochs}", "wall_s": wall_vtp})
        for col, meth in TABLE2_METHODS.items():
            st = g.find("decompose", use="table2", patch=patch, method=meth, seed=cfg.seed)
            if st is None:
                continue
            dm = st.metrics()
            dft = pc.decompose_finetune.epochs
            rows.append({**common, "model": col, "acc": dm["acc"],
                         "acc_paper": paper.get(col, float("nan")), "params": dm["params"],
                         "flops": dm["flops"], "epochs": train_ep + pc.finetune.epochs + dft,
                         "phases": f"{phases}+{pc.finetune.epochs}+{dft}",
                         "wall_s": wall_vtp + _epoch_seconds(dm["history"])})
    cols = ["patch", "model", "acc", "acc_paper", "params", "flops", "epochs", "phases", "arch",
            "wall_s"]
    return pd.DataFrame(rows, columns=cols)


def table2_layout(long: pd.DataFrame) -> pd.DataFrame:
    """Table 2's own layout: rows = patch sizes, columns = VTP / VTP+SVD / VTP+QR / VTP+LU,
    cells "ours (paper)" accuracy in %."""
    cols = ["VTP", "VTP+SVD", "VTP+QR", "VTP+LU"]
    out = []
    for patch, g in long.groupby("patch", sort=True):
        dec = g[g["model"].isin(cols[1:])]
        row = {"patch": f"ViT patch={patch}", "model": g["arch"].iloc[0],
               "epochs (dense+L1+ft+dec-ft)": (dec["phases"].iloc[0] if len(dec)
                                               else g["phases"].iloc[-1])}
        for c in cols:
            hit = g[g["model"] == c]
            if len(hit):
                row[c] = f"{hit['acc'].iloc[0]:.1f} ({hit['acc_paper'].iloc[0]:.1f})"
        out.append(row)
    return pd.DataFrame(out, columns=["patch", "model", "epochs (dense+L1+ft+dec-ft)", *cols])


def rank_sweep(cfg, g) -> pd.DataFrame:
    """Accuracy, params and FLOPs per (method, rank ratio) of the ``decompose`` stages of use
    ``sweep`` at ``cfg.sweep_patch`` (seed ``cfg.seed``)."""
    rows = []
    for st in g.select("decompose", use="sweep", patch=cfg.sweep_patch, seed=cfg.seed):
        m = st.metrics()
        rows.append({"method": m["method"], "rank_ratio": m["rank_ratio"], "acc": m["acc"],
                     "params": m["params"], "flops": m["flops"]})
    df = pd.DataFrame(rows, columns=["method", "rank_ratio", "acc", "params", "flops"])
    return df.sort_values(["method", "rank_ratio"]).reset_index(drop=True)


def errors(analysis) -> pd.DataFrame:
    """Relative Frobenius error per (method, rank ratio), mean and max over the pruned
    layers, from the ``analysis`` stage."""
    df = pd.DataFrame(analysis.metrics()["errors"])
    return (df.groupby(["method", "rank_ratio"])["rel_fro"].agg(["mean", "max"])
            .rename(columns={"mean": "rel_fro_mean", "max": "rel_fro_max"}).reset_index())


def merits(analysis) -> pd.DataFrame:
    """Table 1 measured (per dtype and solver), from the ``analysis`` stage."""
    df = pd.DataFrame(analysis.metrics()["merits"])
    order = {"normal_equations": 0, "qr": 1, "svd": 2}
    g = df.groupby(["dtype", "solver"]).agg(
        layers=("matrix", "count"), rel_error_median=("rel_error", "median"),
        rel_error_max=("rel_error", "max"), rel_residual_median=("rel_residual", "median"),
        time_ms_total=("time_ms", "sum"), cond_median=("cond", "median"),
        cond_max=("cond", "max")).reset_index()
    g["_o"] = g["solver"].map(order)
    return g.sort_values(["dtype", "_o"]).drop(columns="_o").reset_index(drop=True)


def identity(ident) -> pd.DataFrame:
    """Largest output difference of full-rank factors per method, from the ``identity``
    stage."""
    df = pd.DataFrame(ident.metrics()["identity"])
    return df.groupby("method", sort=False).agg(layers=("layer", "count"),
                                                max_abs_diff=("max_abs_diff", "max")).reset_index()


def tables(pipe, cfg) -> dict[str, pd.DataFrame]:
    """From the records of the graph (run it first):

    ``table2``: Table 2 in long form, one row per (patch, model): our accuracy (%), the
    paper's, params, FLOPs (1 MAC = 1 FLOP, one image), the cumulative epochs behind the
    model (``phases``: dense + L1 + fine-tune + decomposition fine-tune), the model and the
    wall time of those epochs (s); ``table2_layout``: the paper's layout, "ours (paper)";
    and at ``cfg.sweep_patch``: ``rank_sweep`` (accuracy, params, FLOPs per method and rank
    ratio), ``error_vs_rank`` (relative Frobenius error ||W - AB||_F / ||W||_F, mean and max
    over the pruned layers), ``lstsq_merits`` (Table 1 measured: least squares by normal
    equations / QR / SVD on the pruned layer matrices, float32 and float64) and
    ``full_rank_identity`` (largest output difference of full-rank factors per method).
    The evidence tables are added by the pipeline (:mod:`.assess`).
    """
    g = pipe.graph(cfg)
    prov = provenance(cfg, list(records(g.stages).values()))
    t2 = table2(cfg, g)
    t2.attrs["caption"] = (f"VTP+decomposition Table 2 (long form). Ours: {prov}; rank ratio "
                           f"{cfg.rank_ratio}, prune rate {cfg.prune_rate}; {phase_note(cfg)}. "
                           f"{report.FLOPS_NOTE}. Paper: Table 2 (CIFAR-10, accuracy only). "
                           f"{TEXT_GEOMETRY_NOTE}")
    t2w = table2_layout(t2)
    t2w.attrs["caption"] = (f"Table 2 layout, accuracy % as 'ours (paper)'. Ours: {prov}; "
                            f"{phase_note(cfg)}. {TEXT_GEOMETRY_NOTE}")
    out = {"table2": t2, "table2_layout": t2w}
    analysis = g.find("analysis")
    if analysis is None:
        return out
    sp = cfg.sweep_patch
    note, vnote = phase_note(cfg, [sp], "sweep"), phase_note(cfg, [sp], "")
    sw = rank_sweep(cfg, g)
    sw.attrs["caption"] = (f"Rank sweep, patch {sp}. Ours: {prov}; {note}. "
                           f"{report.FLOPS_NOTE}.")
    err = errors(analysis)
    err.attrs["caption"] = (f"Relative Frobenius error of rank-r factorizations of the pruned "
                            f"layers, patch {sp}. {prov}; {vnote}.")
    mt = merits(analysis)
    mt.attrs["caption"] = (f"Table 1 measured on the pruned layer matrices (patch {sp}). Ours: "
                           f"{prov}; {vnote}. Paper: {PAPER_TABLE1}.")
    idt = identity(g.get("identity"))
    idt.attrs["caption"] = (f"Full-rank identity on the pruned layers, patch {sp}. {prov}; "
                            f"{vnote}.")
    out.update(rank_sweep=sw, error_vs_rank=err, lstsq_merits=mt, full_rank_identity=idt)
    return out


# --------------------------------------------------------------------------- figures


#: One colour / marker / dash per decomposition (and the VTP model), fixed across figures.
METHOD_STYLES = {
    "svd": {"color": "tab:red", "marker": "o", "ls": "-"},
    "qr": {"color": "tab:blue", "marker": "s", "ls": "--"},
    "qr_reduced": {"color": "tab:cyan", "marker": "v", "ls": "--"},
    "qr_pivoted": {"color": "tab:green", "marker": "^", "ls": "-."},
    "cod": {"color": "tab:olive", "marker": "P", "ls": "-."},
    "lu": {"color": "tab:purple", "marker": "D", "ls": ":"},
    "none": {"color": "black", "marker": "*", "ls": "-"},
}


def coinciding(df: pd.DataFrame, key: str, value: str) -> list[list[str]]:
    """Groups of methods whose ``value`` curves over ``key`` are identical (to 1e-9), e.g.
    ``qr`` and ``qr_reduced`` (the same rank-r product), in first-seen order."""
    groups: dict[tuple, list[str]] = {}
    for m, g in df.groupby("method", sort=False):
        sig = tuple((round(float(k), 9), round(float(v), 9))
                    for k, v in sorted(zip(g[key], g[value])))
        groups.setdefault(sig, []).append(str(m))
    return list(groups.values())


def _plot_grouped(ax, df: pd.DataFrame, x: str, y: str, key: str) -> None:
    """One line per group of coinciding methods (:func:`coinciding`), labelled "a = b"."""
    for group in coinciding(df, key, y):
        g = df[df["method"] == group[0]].sort_values(x)
        st = METHOD_STYLES.get(group[0], {})
        label = " = ".join(group) + (" (identical)" if len(group) > 1 else "")
        ax.plot(g[x], g[y], label=label, ms=7, **{"marker": "o", **st})


def _plot_sweep(sweep: pd.DataFrame, vtp_point=None, title: str = "", paper: dict | None = None):
    """Accuracy vs params over ranks, one curve per decomposition (fixed marker / dash per
    method; methods with identical curves drawn once, labelled "qr = qr_reduced");
    ``vtp_point`` = (params, acc) of the pruned model before decomposition: a black star with
    dashed reference lines; ``paper``: the paper's Table 2 accuracies at this patch size
    (``{"VTP": ..., "VTP+SVD": ...}``), dotted lines in the method's colour (the paper states
    no rank, so they are levels, not points), each labelled on the line; the legend of our
    curves sits below the axes, as wide as they are."""
    import matplotlib.pyplot as plt
    from matplotlib.transforms import blended_transform_factory

    fig, ax = plt.subplots(figsize=(7.2, 5.6))
    df = sweep.assign(params_k=sweep["params"] / 1e3)
    if len(df):
        _plot_grouped(ax, df, "params_k", "acc", "rank_ratio")
    if vtp_point is not None:
        ax.scatter([vtp_point[0] / 1e3], [vtp_point[1]], marker="*", s=120, color="black",
                   zorder=5, label="VTP (not decomposed)")
        ax.axvline(vtp_point[0] / 1e3, ls="--", lw=0.8, color="grey")
        ax.axhline(vtp_point[1], ls="--", lw=0.8, color="grey")
    levels = []
    for col, acc in (paper or {}).items():
        meth = TABLE2_METHODS.get(col, "none")
        what = " (the code book's unpruned ViT)" if col == "VTP" else ""
        color = METHOD_STYLES[meth]["color"]
        ax.axhline(acc, ls=(0, (1, 2)), lw=1.2, color=color)
        levels.append((acc, f"paper Table 2: {col} {acc:g} %{what}", color))
    # each level labelled on its line; labels of levels closer than a line of text apart
    # side by side (left, middle, right) instead of over each other
    lo, hi = ax.get_ylim()
    if levels:                                   # room above the top level for its label
        ax.set_ylim(lo, hi + 0.04 * (hi - lo))
    along = blended_transform_factory(ax.transAxes, ax.transData)
    slot, last = 0, None
    for acc, text, color in sorted(levels):
        slot = slot + 1 if last is not None and acc - last < 0.045 * (hi - lo) else 0
        last = acc
        ax.text(0.01 + 0.33 * (slot % 3), acc, text, transform=along, fontsize=7,
                color=color, ha="left", va="bottom",
                bbox={"facecolor": "white", "edgecolor": "none", "pad": 0.6, "alpha": 0.85})
    ax.set_xlabel("parameters (thousands)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title, fontsize=8)
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=3,
                  frameon=False)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def _plot_errors(errs: pd.DataFrame, title: str = ""):
    """Mean relative Frobenius reconstruction error of the pruned layers vs rank ratio
    (methods with identical errors drawn once, labelled "a = b")."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.2, 4.6))
    df = errs[errs["rank_ratio"] < 1.0]
    _plot_grouped(ax, df, "rank_ratio", "rel_fro_mean", "rank_ratio")
    ax.set_xlabel("rank / min(out, in)")
    ax.set_ylabel("relative error ||W - AB||_F / ||W||_F\n(mean over the pruned layers)")
    ax.set_title(title, fontsize=8)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def figures(pipe, cfg) -> dict:
    """At ``cfg.sweep_patch`` (when it is one of ``cfg.patch_sizes``): ``acc_vs_params``
    (accuracy vs params over the rank sweep, the VTP model as a star) and ``error_vs_rank``
    (mean reconstruction error of the pruned layers vs rank ratio).  The evidence figure is
    added by the pipeline (:mod:`.assess`)."""
    g = pipe.graph(cfg)
    analysis = g.find("analysis")
    if analysis is None:
        return {}
    prov = provenance(cfg, list(records(g.stages).values()))
    sp = cfg.sweep_patch
    v = g.get("vtp", patch=sp, seed=cfg.seed).metrics()
    wrap = functools.partial(textwrap.fill, width=95)
    fig1 = _plot_sweep(rank_sweep(cfg, g), (v["params"], v["acc"]),
                       title=wrap(f"Accuracy vs params over ranks — "
                                  f"{phase_note(cfg, [sp], 'sweep')}") + "\n" + wrap(prov),
                       paper=PAPER_TABLE2.get(sp))
    fig2 = _plot_errors(errors(analysis), title=wrap(f"Reconstruction error of the pruned "
                                                     f"layers vs rank — "
                                                     f"{phase_note(cfg, [sp], '')}")
                        + "\n" + wrap(prov))
    return {"acc_vs_params": fig1, "error_vs_rank": fig2}


# --------------------------------------------------------------------------- summary


def codebook_params(patch_size: int, num_classes: int = 10) -> int:
    """Parameters of the code book's ViT (``create_model("vit_cifar")``, built on the meta
    device: no memory, no init) at ``patch_size``."""
    with on_meta():
        return count_params(create_model("vit_cifar", patch_size=patch_size,
                                         num_classes=num_classes))


def _e(x: float) -> str:
    """``3.0e-5`` (one decimal, no zero-padded exponent)."""
    m, ex = f"{x:.1e}".split("e")
    return f"{m}e{int(ex)}"


def _merits_sentence(mt: pd.DataFrame, n_layers: int, profile: str) -> str:
    """Table 1 measured: float32 errors and times per solver, then whether the paper's
    orderings hold in float32 and float64."""
    names = {"normal_equations": "normal equations", "qr": "QR", "svd": "SVD"}
    paper = {"accuracy": (["svd", "qr", "normal_equations"], "most to least accurate",
                          "rel_error_median", "normal equations < QR < SVD"),
             "speed": (["normal_equations", "qr", "svd"], "fastest to slowest",
                       "time_ms_total", "normal equations > QR > SVD")}
    f32 = mt[mt["dtype"] == "float32"].set_index("solver")
    head = ", ".join(f"{names[s]} {_e(f32.loc[s, 'rel_error_median'])}"
                     + (" median relative error" if s == "normal_equations" else "")
                     + f" in {f32.loc[s, 'time_ms_total']:.1f} ms"
                     for s in ("normal_equations", "qr", "svd") if s in f32.index)
    verdicts = []
    for what, (expect, words, col, printed) in paper.items():
        holds, fails = [], []
        for dt in ("float32", "float64"):
            g = mt[mt["dtype"] == dt].set_index("solver")[col].to_dict()
            if not g:
                continue
            seen = sorted(g, key=g.get)
            if seen == expect:
                holds.append(dt)
            else:
                fails.append(f"{dt}: " + " > ".join(names[x] for x in seen))
        txt = f"the paper's {what} order ({printed}) "
        if holds:
            txt += f"holds in {' and '.join(holds)}"
        if fails:
            txt += ("; " if holds else "") + f"does not hold ({words}, " + "; ".join(fails) + ")"
        verdicts.append(txt)
    return (f"Section 2.3 measured on those {n_layers} layers (`figures/vtp_svd/lstsq_merits-"
            f"{profile}.md`, float32): {head}; " + "; ".join(verdicts) + ".")


def summary(pipe, cfg) -> str:
    """The README paragraph, every number from the records of the graph (parameter counts
    of the code book ViT from the model itself)."""
    g = pipe.graph(cfg)
    recs = records(g.stages)
    t2 = table2(cfg, g)
    counts = "; ".join(f"{codebook_params(p):,}{' params' if p == 4 else ''} at patch {p}"
                       for p in (4, 2, 8))
    first = (f"The code book's CIFAR ViT ({counts}, which the code book rejects), VTP scores "
             f"with L1 (strength {cfg.l1_strength:g}), one global threshold, physical pruning "
             f"that keeps head boundaries (pruned == masked, tested), then every pruned linear "
             f"layer as two rank-r layers by SVD, QR (full, reduced, pivoted), COD or LU; each "
             f"phase of the paper's order (dense baseline → L1 sparsity → prune "
             f"{cfg.prune_rate:g} → fine-tune → decompose at rank "
             f"{cfg.rank_ratio:g}·min(out, in) → fine-tune) is its own cached record.")
    secs = sum(r.get("wall_time_s", 0.0) for r in recs.values())
    took = f"{secs / 60:.0f} min" if secs >= 120 else f"{secs:.0f} s"
    data = dataset_label(cfg.dataset)
    per_patch = []
    for p in cfg.patch_sizes:
        t = t2[t2["patch"] == p].set_index("model")
        cols = [c for c in ("VTP", "VTP+SVD", "VTP+QR", "VTP+LU") if c in t.index]
        per_patch.append(" / ".join(f"{t.loc[c, 'acc']:.1f}" for c in cols)
                         + f" % (patch {p})")
    labels = " / ".join(["VTP", *[c.replace("VTP", "") for c in TABLE2_METHODS
                                  if TABLE2_METHODS[c] in cfg.methods]])
    second = (f"`reprolib run vtp_svd --profile {cfg.profile}` (`{data}`; {phase_note(cfg)}; "
              f"{took} of recorded stage time{profile_note(cfg)}): {labels} = "
              + ", ".join(per_patch)
              + f", the paper's beside each in `figures/vtp_svd/table2_layout-{cfg.profile}.md`.")
    sents = [first, second]
    sp = cfg.sweep_patch if cfg.sweep_patch in cfg.patch_sizes else cfg.patch_sizes[0]
    t = t2[t2["patch"] == sp].set_index("model")
    dec = [c for c in TABLE2_METHODS if c in t.index]
    if dec:
        v, d = t.loc["VTP"], t.loc[dec[0]]
        sents.append(f"Decomposition at rank {cfg.rank_ratio:g} cuts patch {sp} from "
                     f"{v['params'] / 1e3:.0f}k to {d['params'] / 1e3:.0f}k params and "
                     f"{v['flops'] / 1e6:.1f} M to {d['flops'] / 1e6:.1f} M FLOPs.")
    ident = g.find("identity")
    if ident is not None:
        idt = identity(ident)
        sents.append(f"At full rank every factorization reproduces the real pruned layers to "
                     f"≤ {_e(idt['max_abs_diff'].max())} (float32, largest output difference).")
        mt = merits(g.get("analysis"))
        sents.append(_merits_sentence(mt, int(mt["layers"].max()), cfg.profile))
    return " ".join(sents)
