"""Tables, figures and the summary of a MetaFormer-NAS run without seeds, read back from the
records of its graph (``g``: the package's ``MetaFormerNAS.graph(cfg)``): Table 1 (search
time, space size), Table 2 (the retrained mixers), the controller's curves, the searched
cells and the toy-reward check.  The evidence profile's are in ``claims``."""

from __future__ import annotations

import math

import pandas as pd

from reprolib.configs.metaformer_nas import (PAPER_DEVICE, PAPER_TABLE1, PAPER_TABLE2,
                                             TABLE2_LABELS, TABLE2_MIXERS)
from reprolib.core import report
from reprolib.core.pipeline import Graph, profile_note, records, test_images
from reprolib.data.catalog import dataset_label
from reprolib.experiments.metaformer_nas.graph import POOLFORMER_LAYER_SCALE
from reprolib.methods.metaformer_nas import count_architectures, paper_space_size
from reprolib.models.metaformer import Architecture

PAPER = "metaformer_nas"


# --------------------------------------------------------------------------- records


def role_records(g: Graph, role: str, **tags) -> dict[str, dict]:
    """The records of the stages of ``role`` / ``tags`` in ``g``, by stage name, in run
    order."""
    return records(g.select(role, **tags))


def searches(g: Graph) -> dict[int, dict]:
    """The search records by N."""
    return {int(r["metrics"]["n_nodes"]): r for r in role_records(g, "search").values()}


def toys(g: Graph) -> dict[int, dict]:
    """The toy-reward records by N."""
    return {s.tags["n_nodes"]: s.record() for s in g.select("toy")}


def retrains(g: Graph) -> dict[str, dict]:
    """The retraining records, by the stages' ``mixer`` tag (``pooling``, ``nas4``,
    ``random4``), in run order."""
    return {s.tags["mixer"]: s.record() for s in g.select("retrain")}


def _provenance(cfg, recs, *, search: bool = True, retrain: bool = True) -> str:
    """Profile, data, search rounds and/or retraining epochs, and the devices of ``recs``."""
    parts = [f"profile={cfg.profile}", f"data={dataset_label(str(cfg.dataset))}"]
    if search:
        parts.append(f"rounds={cfg.rounds}")
    if retrain:
        parts.append(f"retrain={cfg.retrain.epochs} ep")
    parts.append(f"device={report.device_label(list(recs))}")
    return " · ".join(parts)


# --------------------------------------------------------------------------- tables


def table1(g: Graph) -> pd.DataFrame:
    """Table 1 from the search records: ours (rounds, wall time, device, counted space size)
    beside the paper's (hours on a Quadro RTX 8000, printed space size)."""
    cfg = g.cfg
    recs = searches(g)
    rows = []
    for n, r in sorted(recs.items()):
        m, p = r["metrics"], PAPER_TABLE1.get(n, {})
        rows.append({"nodes N": n, "rounds": len(m["history"]),
                     "search time (ours, s)": round(m["search_time_s"], 1),
                     "search time (ours, h)": round(m["search_time_s"] / 3600, 4),
                     "device (ours)": m["device"],
                     "search time (paper, h)": p.get("search_time_h"),
                     "architectures (counted)": count_architectures(n),
                     "2^N (N-1)!": paper_space_size(n),
                     "architectures (paper)": p.get("space_size"),
                     "paper device": PAPER_DEVICE})
    df = pd.DataFrame(rows)
    df.attrs["caption"] = ("Table 1: search wall time and search-space size. Ours: "
                           + _provenance(cfg, recs.values(), retrain=False)
                           + "; paper: 100 rounds on Flowers-102 at 224 px."
                           + profile_note(cfg))
    return df


def table2(g: Graph) -> pd.DataFrame:
    """Table 2 from the retraining records: each row is the backbone actually trained
    (``cfg.model``) with one token mixer, beside the paper's row (MetaFormer-S12) and its
    Flowers-102 accuracy; epochs, params and FLOPs (1 multiply-add = 1 FLOP)."""
    cfg = g.cfg
    recs = retrains(g)
    rows = []
    for key, r in recs.items():
        m = r["metrics"]
        mixer = TABLE2_MIXERS.get(key, f"{key[3:]} Node NAS" if key.startswith("nas") else key)
        rows.append({"model": f"{r['config']['model']} + {mixer}",
                     "acc (ours, %)": round(m["acc"], 2), "epochs": int(m["epochs"]),
                     "params (M)": round(m["params"] / 1e6, 3),
                     "FLOPs (M)": round(m["flops"] / 1e6, 2),
                     "train time (s)": round(m["train_time_s"], 1),
                     "paper model": TABLE2_LABELS.get(key),
                     "acc (paper, Flowers-102, %)": PAPER_TABLE2.get(key)})
    df = pd.DataFrame(rows)
    df.attrs["caption"] = ("Table 2: top-1 test accuracy. Ours: " + _provenance(cfg, recs.values())
                           + "; paper: MetaFormer-S12, Flowers-102, 224 px, 600 epochs. "
                           + report.FLOPS_NOTE + profile_note(cfg))
    return df


# --------------------------------------------------------------------------- figures


def draw_architecture(arch, ax=None, title: str | None = None):
    """Draw a DAG token mixer: entrance (attention fused), nodes with their op, the
    W_{j,i} edges, and the leaves averaged into the output.  Returns the axes."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyArrowPatch

    arch = Architecture.parse(arch)
    n = arch.n_nodes
    if ax is None:
        _, ax = plt.subplots(figsize=(1.3 * (n + 2), 2.6))
    xs = {i: float(i) for i in range(n + 2)}        # 0 entrance, 1..n nodes, n+1 output
    y = 0.0

    def box(i, text, color):
        ax.text(xs[i], y, text, ha="center", va="center", fontsize=8,
                bbox=dict(boxstyle="round,pad=0.35", fc=color, ec="black", lw=0.8))

    box(0, "entrance\n(MHSA+MLP)", "#dddddd")
    for i, (p, op) in enumerate(arch.nodes, start=1):
        box(i, f"{i}\n{'pool' if op == 'pooling' else 'id'}",
            "#9ecae1" if op == "pooling" else "#fdd0a2")
    box(n + 1, "avg", "#c7e9c0")

    def arc(a, b, rad=0.0):
        ax.add_patch(FancyArrowPatch((xs[a] + 0.25, y), (xs[b] - 0.25, y),
                                     connectionstyle=f"arc3,rad={rad}", arrowstyle="-|>",
                                     mutation_scale=10, lw=0.9))

    for i, (p, _) in enumerate(arch.nodes, start=1):
        arc(p, i, rad=0.0 if i - p == 1 else -0.25 - 0.08 * (i - p))
    for leaf in arch.leaves:
        arc(leaf, n + 1, rad=0.0 if leaf == n else 0.3 + 0.06 * (n - leaf))
    ax.set_xlim(-0.7, n + 1.7)
    ax.set_ylim(-0.45 * n - 0.6, 0.3 * n + 0.6)
    ax.axis("off")
    ax.set_title(title or f"searched mixer, N = {n}: {arch}", fontsize=9)
    return ax


def plot_search(histories: dict, ax=None, title: str = ""):
    """Mean controller reward and entropy per round, one colour per N in both panels (solid
    with markers: the mean over the round's sampled cells; dashed: the most likely cell;
    dotted: the uniform policy's entropy ln |space|).  ``histories`` maps N to a search
    history (list of round dicts).  Returns the figure."""
    import textwrap

    import matplotlib.pyplot as plt

    if ax is None:
        fig, ax = plt.subplots(1, 2, figsize=(10, 3.8))
    else:
        fig = ax[0].figure
    for i, (n, hist) in enumerate(sorted(histories.items())):
        col = f"C{i}"
        rounds = [h["round"] for h in hist]
        ax[0].plot(rounds, [100 * h["reward"] for h in hist], marker="o", ms=4, color=col,
                   label=f"N = {n}: mean of sampled cells")
        ax[0].plot(rounds, [100 * h["most_likely_reward"] for h in hist], ls="--", alpha=0.7,
                   color=col, label=f"N = {n}: most likely cell")
        ax[1].plot(rounds, [h["entropy"] for h in hist], marker="o", ms=4, color=col,
                   label=f"N = {n}: controller")
        ax[1].axhline(math.log(count_architectures(n)), ls=":", lw=1.2, color=col,
                      label=f"N = {n}: uniform (ln {count_architectures(n):,})")
    ax[0].set(xlabel="search round", ylabel="reward (%, validation batch)",
              title="reward per round")
    ax[1].set(xlabel="search round", ylabel="policy entropy (nats)", ylim=(0, None),
              title="policy entropy per round")
    for a in ax:
        a.title.set_fontsize(9)
        a.legend(fontsize=7, loc="best")
        a.grid(alpha=0.3)
    width = int(fig.get_figwidth() * 15)          # characters of 9-pt text per figure row
    fig.suptitle(textwrap.fill(title, width), fontsize=9)
    fig.tight_layout()
    return fig


def plot_toy(hist: dict, ax=None, title: str = ""):
    """Toy-reward REINFORCE: reward (running mean of 25), entropy and pi(target) per update."""
    import matplotlib.pyplot as plt
    import numpy as np

    if ax is None:
        fig, ax = plt.subplots(figsize=(5.5, 3.2))
    else:
        fig = ax.figure
    r = np.asarray(hist["reward"])
    w = min(25, len(r))
    ax.plot(np.convolve(r, np.ones(w) / w, mode="valid"), label="reward (running mean)")
    ax.plot(hist["p_target"], label="pi(best architecture)")
    ax.plot(np.asarray(hist["entropy"]) / max(hist["entropy"][0], 1e-9), label="entropy / initial")
    ax.set(xlabel="controller update", ylim=(0, 1.05))
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def toy_figure(g: Graph, what: str):
    """The toy-reward check of every N: target probability per update (``what`` ends each
    panel title: the profile or the seed).  Returns ``(figure, {N: record})``."""
    import matplotlib.pyplot as plt

    ts = toys(g)
    fig, axes = plt.subplots(1, len(ts), figsize=(5.5 * len(ts), 3.4), squeeze=False)
    for ax, (n, r) in zip(axes[0], sorted(ts.items())):
        h = r["metrics"]
        plot_toy(h, ax, f"toy reward, N = {n}: converged = {h['converged']} "
                        f"({len(h['p_target'])} updates, {what})")
    return fig, ts


def figures(g: Graph) -> dict:
    """``search_curves`` (reward and entropy per round), ``searched_cells`` (the derived
    DAGs), ``toy_reinforce`` (the toy-reward check), ``table2_acc_params``."""
    import matplotlib.pyplot as plt

    cfg = g.cfg
    out = {}
    found = searches(g)
    prov = _provenance(cfg, found.values(), retrain=False) + profile_note(cfg)
    out["search_curves"] = plot_search({n: r["metrics"]["history"] for n, r in found.items()},
                                       title="controller during the search · " + prov)
    fig, axes = plt.subplots(len(found), 1, figsize=(9, 2.6 * len(found)), squeeze=False)
    for ax, (n, r) in zip(axes[:, 0], sorted(found.items())):
        draw_architecture(r["metrics"]["arch"], ax,
                          f"searched {n}-node mixer ({cfg.profile}): {r['metrics']['arch_str']}")
    fig.suptitle(prov, fontsize=8)
    fig.tight_layout()
    out["searched_cells"] = fig

    fig, ts = toy_figure(g, f"profile {cfg.profile}")
    fig.suptitle(f"profile={cfg.profile} · seed={cfg.seed} · device="
                 f"{report.device_label(list(ts.values()))}{profile_note(cfg)}", fontsize=8)
    fig.tight_layout()
    out["toy_reinforce"] = fig

    t2 = table2(g)
    fig, ax = plt.subplots(figsize=(6, 3.4))
    ax.scatter(t2["params (M)"], t2["acc (ours, %)"])
    for _, r in t2.iterrows():
        ax.annotate(r["model"].split(" + ", 1)[-1], (r["params (M)"], r["acc (ours, %)"]),
                    fontsize=7)
    recs = retrains(g).values()
    ax.set(xlabel="params (M)", ylabel="test accuracy (%)",
           title=f"Table 2 models ({cfg.model}) · " + _provenance(cfg, recs) + profile_note(cfg))
    ax.title.set_fontsize(8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    out["table2_acc_params"] = fig
    return out


# --------------------------------------------------------------------------- summary


def _fmt_list(xs: list[str]) -> str:
    return xs[0] if len(xs) == 1 else " / ".join(xs)


def summary(g: Graph) -> str:
    """The MetaFormer-NAS paragraph (notebook and README), every number from the records:
    space sizes counted vs 2^N (N-1)!, the toy check, search time vs the paper's hours,
    Table 2 accuracies and the final policy entropy against a uniform policy's."""
    cfg = g.cfg
    found, ts = searches(g), toys(g)
    rts = retrains(g)
    ns = sorted(found)
    out = []
    # the method
    out.append("PoolFormer-S12-like backbone (early 3x3 conv, 16x16 tokens at 224 px) whose token "
               "mixer is an N-node DAG of shared spatial-MLP edges with identity / pooling nodes "
               "and self-attention at the entrance, searched by a 64-unit LSTM controller with "
               "REINFORCE (EMA baseline, entropy bonus) on validation-batch accuracy; the "
               "authors' code bugs are not reproduced.")
    # search spaces
    counted = {n: count_architectures(n) for n in ns}
    agree = all(counted[n] == paper_space_size(n) for n in ns)
    sizes = " and ".join(f"{counted[n]:,} (N = {n})" for n in ns)
    out.append(f"Search spaces counted from the controller's decisions: {sizes}"
               + (" = 2^N (N-1)!." if agree else
                  ", which differs from 2^N (N-1)! = "
                  + " / ".join(f"{paper_space_size(n):,}" for n in ns) + "."))
    # toy check
    if ts:
        parts = []
        for n, r in sorted(ts.items()):
            h = r["metrics"]
            first = next((i + 1 for i, p in enumerate(h["p_target"]) if p > 0.5), None)
            above = f"> 0.5 from update {first}" if first else "never above 0.5"
            parts.append(f"N = {n}: π(best) {h['p_target'][0]:.2g} → {h['p_target'][-1]:.2f} "
                         f"({above}), " + ("most likely cell = best" if h["converged"]
                                           else "the most likely cell is NOT the best"))
        upd = sorted({len(r["metrics"]["p_target"]) for r in ts.values()})
        ok = all(r["metrics"]["converged"] for r in ts.values())
        out.append(("On a toy reward with one known best cell the controller finds it"
                    if ok else "On a toy reward with one known best cell the controller does not "
                    "always find it")
                   + f" (seed {cfg.seed}, {_fmt_list([str(u) for u in upd])} updates; "
                   f"`toy_reinforce-{cfg.profile}.png`): " + "; ".join(parts) + ".")
    # the run
    if ns:
        c = found[ns[0]]["config"]
        ep = sorted({int(r["metrics"]["epochs"]) for r in rts.values()})
        ds = dataset_label(str(c["dataset"]))
        batches = (f"{c['max_train_batches']} batches" if c.get("max_train_batches")
                   else f"{c['shared_epochs']} epoch(s)")
        ls = c.get("layer_scale_init")
        run = (f"The {cfg.profile} run (`reprolib run {PAPER} --profile {cfg.profile}`): "
               f"`{c['model']}` on `{ds}` at {c['image_size']} px, {c['rounds']} rounds × "
               f"({batches} + {c['controller_samples']} controller updates)"
               + (f", {_fmt_list([str(e) for e in ep])} retraining epoch"
                  + ("s" if ep != [1] else "") if ep else ""))
        if ls is not None and ls != POOLFORMER_LAYER_SCALE:
            run += (f", layer scale {ls} instead of PoolFormer's 1e-5 "
                    "(a deviation for short runs: with 1e-5 the mixer branch stays nearly off "
                    "for the first epochs, so all cells compute almost the same function)")
        out.append(run + ".")
        dev = report.device_label(list(found.values()))
        times = " / ".join(f"{found[n]['metrics']['search_time_s']:.0f} s (N = {n})" for n in ns)
        paper_h = [PAPER_TABLE1[n]["search_time_h"] for n in ns if n in PAPER_TABLE1]
        out.append(f"Search {times} on {dev}"
                   + (f", paper {' / '.join(f'{h:g} h' for h in paper_h)} on a Quadro RTX 8000 "
                      f"with 100 rounds" if paper_h else "") + ".")
    # Table 2
    if rts:
        t2 = table2(g)
        raw = [r["metrics"]["acc"] for r in rts.values()]      # table2's row order
        accs = ", ".join(f"{m.split(' + ', 1)[-1]} {a:.1f}" for m, a in zip(t2["model"], raw))
        s = f"Table 2 (`table2-{cfg.profile}.md`): {accs} % top-1"
        paper = t2.dropna(subset=["acc (paper, Flowers-102, %)"])
        if len(paper):
            s += (" (paper, MetaFormer-S12 on Flowers-102, 600 epochs: "
                  + ", ".join(f"{a:g}" for a in paper["acc (paper, Flowers-102, %)"]) + ")")
        if len(paper) >= 2:
            def mixer(col):
                return paper.loc[paper[col].idxmax(), "model"].split(" + ", 1)[-1]

            ours, theirs = mixer("acc (ours, %)"), mixer("acc (paper, Flowers-102, %)")
            s += (f"; best of these here {ours}, in the paper {theirs}"
                  + (" (the same)" if ours == theirs else ""))
        n_test = test_images(list(rts.values()))
        if n_test:
            p = float(t2["acc (ours, %)"].mean()) / 100
            se = 100 * math.sqrt(p * (1 - p) / n_test)
            s += (f". One seed each on {n_test:,} test images: the binomial standard error is "
                  f"±{se:.1f} points per model, so differences under {2 * math.sqrt(2) * se:.1f} "
                  f"points (two standard errors of a difference) are not evidence either way")
        out.append(s + ".")
    # where the controller ended
    if ns:
        parts, gaps = [], []
        for n in ns:
            h = found[n]["metrics"]["history"]
            uni = math.log(count_architectures(n))
            ents = [x["entropy"] for x in h]
            lo = min(range(len(ents)), key=ents.__getitem__)
            gaps.append(1 - ents[-1] / uni)
            parts.append(f"N = {n}: {ents[0]:.2f} after round 1, lowest {ents[lo]:.2f} "
                         f"(round {h[lo]['round']}), {ents[-1]:.2f} at the end, uniform "
                         f"ln {count_architectures(n):,} = {uni:.2f}")
        s = "Policy entropy (nats) " + "; ".join(parts) + ". "
        flat = [n for n, gap in zip(ns, gaps) if gap < 0.05]
        if flat:
            cands = []
            for n in flat:
                cs = [r for _, r in found[n]["metrics"]["candidates"]][:5]
                cands.append((f"all {100 * cs[0]:.2f} %" if min(cs) == max(cs) else
                              f"{100 * min(cs):.2f}-{100 * max(cs):.2f} %") + f" (N = {n})")
            s += (f"For N = {' and '.join(map(str, flat))} the controller ends within "
                  f"{math.ceil(1000 * max(gap for gap in gaps if gap < 0.05)) / 10:.1f} % of the "
                  "uniform policy's entropy: "
                  f"it has not concentrated on any cell. The {len(cs)} best derive candidates "
                  f"score {', '.join(cands)} on one {cfg.batch_size}-image validation batch, so "
                  "the one-batch reward does not separate cells at this scale and the searched "
                  "cells are close to random draws"
                  + ("; the toy check shows that the update itself works."
                     if ts and all(r["metrics"]["converged"] for r in ts.values()) else "."))
        for n, gap in zip(ns, gaps):
            if gap >= 0.05:
                s += (f" For N = {n} the final entropy is {100 * (1 - gap):.0f} % of the uniform "
                      "policy's: the controller " + ("concentrated on a few cells, so the "
                      "derived cell is its preferred one." if gap > 0.5 else
                      "moved away from uniform but is still spread over many cells."))
        out.append(s.strip())
    if cfg.profile != "paper":
        out.append(f"These are {cfg.profile}-profile numbers, not the paper's setting "
                   f"(`figures/{PAPER}/`).")
    return " ".join(out)
