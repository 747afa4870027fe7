"""The evidence of MetaFormer-NAS (a run with ``cfg.seeds``), read back from the records of
its graph (``g``): every condition's records per seed by role and tags, Tables 1 and 2 as
mean ± std, the controller against the uniform policy, the claims and the evidence
figures and paragraph."""

from __future__ import annotations

import math
import textwrap

import pandas as pd

from reprolib.configs.metaformer_nas import (PAPER_DEVICE, PAPER_TABLE1, PAPER_TABLE2,
                                             TABLE2_LABELS, TABLE2_MIXERS)
from reprolib.core import report
from reprolib.core.claims import verdict_rule
from reprolib.core.pipeline import Graph, profile_note
from reprolib.data.catalog import dataset_label
from reprolib.experiments import evidence as ev
from reprolib.experiments.metaformer_nas.report import PAPER, draw_architecture, toy_figure
from reprolib.methods.metaformer_nas import count_architectures, uniform_entropy

#: Rounds at the end of a search whose controller and uniform rewards are averaged.
TAIL_ROUNDS = 3
#: "Well below uniform": the claim's threshold on the final entropy, a fraction of ln |space|.
ENTROPY_FRACTION = 0.5


# --------------------------------------------------------------------------- records per seed


def by_seed(g: Graph, role: str, *, ordered: bool = False, **tags) -> dict[int, dict]:
    """``{seed: record}`` of the stages of ``role`` / ``tags`` (their ``seed`` tag), in run
    order (the order of ``cfg.seeds``), or by seed when ``ordered``."""
    out = {s.tags["seed"]: s.record() for s in g.select(role, **tags)}
    return dict(sorted(out.items())) if ordered else out


def _mixer_label(key: str) -> str:
    """``pooling`` -> ``Pooling``, ``nas4`` -> ``searched 4-node``, ``random4`` -> ``random
    search 4-node``."""
    if key.startswith("nas"):
        return f"searched {key[3:]}-node"
    if key.startswith("random"):
        return f"random search {key[6:]}-node"
    return TABLE2_MIXERS.get(key, key)


def _mixer_order(cfg) -> list[str]:
    return ([*cfg.baselines] + [f"random{n}" for n in cfg.node_counts if cfg.random_samples]
            + [f"nas{n}" for n in cfg.node_counts])


def mixer_accuracies(g: Graph) -> dict[str, list[float]]:
    """Test accuracy (%) of every retrained mixer, one value per seed (seed order)."""
    return {k: [r["metrics"]["acc"] for r in by_seed(g, "retrain", ordered=True,
                                                     mixer=k).values()]
            for k in _mixer_order(g.cfg)}


def _tail(hist: list[dict], key: str) -> float:
    vals = [h[key] for h in hist[-TAIL_ROUNDS:] if h.get(key) is not None]
    return sum(vals) / len(vals) if vals else math.nan


def controller_stats(g: Graph, n_nodes: int) -> dict[str, list]:
    """Per seed of the ``n_nodes`` search: final policy entropy (the last round's mean over
    its samples), the controller's and the uniform policy's mean validation reward (%) over
    the last ``TAIL_ROUNDS`` rounds, the derived cell and its most likely cell."""
    recs = by_seed(g, "search", ordered=True, n_nodes=n_nodes)
    out = {"seed": [], "entropy": [], "reward": [], "uniform_reward": [], "arch": [],
           "most_likely": [], "search_time_s": []}
    for seed, r in recs.items():
        h = r["metrics"]["history"]
        out["seed"].append(seed)
        out["entropy"].append(h[-1]["entropy"])
        out["reward"].append(100 * _tail(h, "reward"))
        out["uniform_reward"].append(100 * _tail(h, "uniform_reward"))
        out["arch"].append(r["metrics"]["arch_str"])
        out["most_likely"].append(h[-1]["most_likely_str"])
        out["search_time_s"].append(r["metrics"]["search_time_s"])
    return out


def _plateau_note(recs: list[dict]) -> str:
    """How many training runs ended on a plateau (``evidence.plateaued``), and the rule."""
    flags = [ev.plateaued(r["metrics"].get("history", []))["plateau"] for r in recs]
    return (f"plateau reached in {sum(flags)} of {len(flags)} runs (mean test accuracy of the "
            "last 3 epochs < 1 point above the 3 before; evidence.plateaued)")


def _retrain_records(g: Graph) -> list[dict]:
    return [r for k in _mixer_order(g.cfg) for r in by_seed(g, "retrain", mixer=k).values()]


def _wall_minutes(g: Graph) -> float:
    """The evidence run's wall time: the sum of its stages' recorded wall times (minutes)."""
    return sum(float(s.record().get("wall_time_s", 0.0)) for s in g) / 60


def evidence_caption(g: Graph) -> str:
    """What produced the evidence: profile, data, backbone, seeds, search / control / retrain
    budgets, the plateau rule's outcome, wall time and device."""
    cfg = g.cfg
    every = [s.record() for s in g]
    seeds = ", ".join(str(s) for s in cfg.seeds)
    search = (f"search {cfg.rounds} rounds × ({cfg.max_train_batches or 'all'} shared batches + "
              f"{cfg.controller_samples} controller updates, reward = mean accuracy on "
              f"{cfg.reward_batches} validation batch(es) of {cfg.batch_size}, entropy weight "
              f"{cfg.entropy_weight:g}, controller lr {cfg.controller_lr:g}; "
              f"{cfg.uniform_samples} uniformly drawn cells scored per round)")
    rand = (f"random search: {cfg.random_samples} uniform cells × {cfg.proxy.epochs} proxy "
            "epochs each, best on validation" if cfg.random_samples else "no random search")
    return (f"profile={cfg.profile} · data={dataset_label(str(cfg.dataset))} · {cfg.model} at "
            f"{cfg.image_size} px · N = {', '.join(map(str, cfg.node_counts))} · seeds {seeds} · "
            f"{search} · {rand} · retrain {cfg.retrain.epochs} epochs "
            f"({cfg.retrain.optimizer} lr {cfg.retrain.lr:g}, {cfg.retrain.schedule}); "
            f"{_plateau_note(_retrain_records(g))} · wall time {_wall_minutes(g):.0f} min "
            f"(sum of the stages) · device={report.device_label(every)}{profile_note(cfg)}")


# --------------------------------------------------------------------------- tables


def evidence_table1(g: Graph) -> pd.DataFrame:
    """Table 1 over the seeds: search time of the controller and of the random-search
    control (the same budget), mean ± std, beside the paper's hours and space size."""
    cfg = g.cfg
    rows = []
    for n in cfg.node_counts:
        st = [r["metrics"]["search_time_s"] for r in by_seed(g, "search", n_nodes=n).values()]
        rt = [r["metrics"]["search_time_s"] for r in by_seed(g, "random", n_nodes=n).values()]
        p = PAPER_TABLE1.get(n, {})
        rows.append({"nodes N": n, "seeds": len(st), "rounds": cfg.rounds,
                     "search time (ours, s)": ev.fmt(st, 0),
                     "random search time (ours, s)": ev.fmt(rt, 0) if rt else "",
                     "search time (paper, h)": p.get("search_time_h"),
                     "architectures (counted)": count_architectures(n),
                     "architectures (paper)": p.get("space_size"),
                     "paper device": PAPER_DEVICE})
    df = pd.DataFrame(rows)
    df.attrs["caption"] = ("Table 1 (mean ± std over seeds): search wall time and space size. "
                           "Ours: " + evidence_caption(g)
                           + "; paper: 100 rounds on Flowers-102 at 224 px.")
    return df


def evidence_table2(g: Graph) -> pd.DataFrame:
    """Table 2 over the seeds: test accuracy of every mixer retrained from scratch, mean ±
    std (n seeds), size, epochs and how many runs reached a plateau, beside the paper's."""
    cfg = g.cfg
    accs = mixer_accuracies(g)
    rows = []
    for k in _mixer_order(cfg):
        rs = list(by_seed(g, "retrain", mixer=k).values())
        if not rs:
            continue
        m, s, n = ev.mean_std(accs[k])
        met = rs[0]["metrics"]
        rows.append({"mixer": _mixer_label(k), "acc (ours, %)": ev.fmt(accs[k], 2),
                     "acc mean": round(m, 2), "acc std": round(s, 2), "seeds": n,
                     "params (M)": round(met["params"] / 1e6, 3),
                     "FLOPs (M)": round(met["flops"] / 1e6, 2), "epochs": int(met["epochs"]),
                     "plateaued": f"{sum(ev.plateaued(r['metrics']['history'])['plateau'] for r in rs)}/{n}",
                     "train time (s)": ev.fmt([r["metrics"]["train_time_s"] for r in rs], 0),
                     "paper model": TABLE2_LABELS.get(k),
                     "acc (paper, Flowers-102, %)": PAPER_TABLE2.get(k)})
    df = pd.DataFrame(rows)
    df.attrs["caption"] = ("Table 2 (mean ± std over seeds): top-1 test accuracy of each mixer "
                           f"on {cfg.model}. Ours: " + evidence_caption(g)
                           + "; paper: MetaFormer-S12, Flowers-102, 224 px, 600 epochs. "
                           + report.FLOPS_NOTE)
    return df


def controller_table(g: Graph) -> pd.DataFrame:
    """Does the controller learn?  Per N: final policy entropy against the uniform policy's
    ln |space|, and the mean validation reward of the cells it samples against that of
    uniformly drawn cells on the same shared weights (last rounds), mean ± std over seeds;
    the derived and the most likely cell of each seed."""
    rows = []
    for n in g.cfg.node_counts:
        c = controller_stats(g, n)
        uni = uniform_entropy(n)
        gap = [a - b for a, b in zip(c["reward"], c["uniform_reward"])]
        rows.append({"nodes N": n, "seeds": len(c["seed"]),
                     "final entropy (nats)": ev.fmt(c["entropy"], 2),
                     "uniform entropy (nats)": round(uni, 2),
                     "final / uniform": ev.fmt([e / uni for e in c["entropy"]], 2),
                     f"controller reward (last {TAIL_ROUNDS} rounds, %)": ev.fmt(c["reward"], 1),
                     f"uniform reward (last {TAIL_ROUNDS} rounds, %)": ev.fmt(c["uniform_reward"], 1),
                     "gap (points)": ev.fmt(gap, 1),
                     "derived cells": "; ".join(f"s{s}: {a}" for s, a in zip(c["seed"], c["arch"])),
                     "paper": "not reported"})
    df = pd.DataFrame(rows)
    df.attrs["caption"] = ("The controller against the uniform policy (mean ± std over seeds; "
                           "reward = accuracy on held-out training images on the shared "
                           "weights). " + evidence_caption(g))
    return df


def evidence_claims(g: Graph) -> pd.DataFrame:
    """The claims table (``evidence.CLAIM_COLUMNS``): per N, whether the controller learned
    (entropy well below uniform; sampled cells' reward above uniformly drawn cells'), and the
    paper's claim that the searched cell is no worse than pooling / spatial MLP / MHSA
    (non-inferiority with ``cfg.margin`` points) and the control's (no worse than random
    search with the same budget).  Caption in ``attrs``."""
    cfg = g.cfg
    accs = mixer_accuracies(g)
    n_train = ev.train_images(cfg.dataset)
    rows = []

    def retrained(*keys):
        return ev.budget({_mixer_label(k): by_seed(g, "retrain", ordered=True, mixer=k).values()
                          for k in keys}, n_train)

    for n in cfg.node_counts:
        c = controller_stats(g, n)
        uni = uniform_entropy(n)
        thr = ENTROPY_FRACTION * uni
        t = ev.paired_compare(c["entropy"], [thr] * len(c["entropy"]), higher_is_better=False,
                              name="one-sample t")
        t["reason"] = (f"mean {t['diff'] + thr:.2f} vs threshold {thr:.2f} nats (one-sample "
                       f"t-test, p = {t['p']:.2g}, n = {len(c['entropy'])})")
        rows.append(ev.claim_row(
            f"N = {n}: the controller learns — policy entropy ends well below the uniform "
            f"policy's (below {ENTROPY_FRACTION:g} × ln {count_architectures(n):,} = {thr:.2f} nats)",
            ev.fmt(c["entropy"], 2, " nats") + f" = {ev.fmt([e / uni for e in c['entropy']], 2)}"
            " of uniform",
            "not reported", t, budget=_search_budget(g, n, n_train)))
        t = ev.paired_compare(c["reward"], c["uniform_reward"])
        rows.append(ev.claim_row(
            f"N = {n}: cells the controller samples score above uniformly drawn cells "
            f"(validation reward on the shared weights, last {TAIL_ROUNDS} rounds)",
            f"{ev.fmt(c['reward'], 1, ' %')} vs uniform {ev.fmt(c['uniform_reward'], 1, ' %')}",
            "not reported", t, "both on the same shared weights each round",
            budget=_search_budget(g, n, n_train)))
        nas = accs.get(f"nas{n}", [])
        for b in [*cfg.baselines] + ([f"random{n}"] if cfg.random_samples else []):
            t = ev.paired_compare(nas, accs.get(b, []), margin=cfg.margin)
            paper = (f"{PAPER_TABLE2[f'nas{n}']:g} vs {PAPER_TABLE2[b]:g} % (Flowers-102, "
                     "600 ep)" if f"nas{n}" in PAPER_TABLE2 and b in PAPER_TABLE2
                     else "not in the paper")
            spent = retrained(f"nas{n}", b)
            extra = ""
            if b.startswith("random"):
                spent = f"{_search_budget(g, n, n_train, random=True)}; retrain: {spent}"
                extra = ("the random-search control's budget is shown beside the "
                         "controller's: a larger control budget makes this test conservative")
            rows.append(ev.claim_row(
                f"searched {n}-node cell ≥ {_mixer_label(b)} (test accuracy; no worse than "
                f"{cfg.margin:g} point{'s' if cfg.margin != 1 else ''})",
                f"{ev.fmt(nas, 1, ' %')} vs {ev.fmt(accs.get(b, []), 1, ' %')}", paper,
                t, extra, budget=spent))
    every = [s.record() for s in g]
    df = ev.claims_frame(rows, seeds=len(cfg.seeds),
                         seed_cost_s=ev.seed_cost(every, len(cfg.seeds)))
    df.attrs["caption"] = (f"Claims (MetaFormer-NAS). {verdict_rule()} Tests: paired over the "
                           f"seeds (a seed's cells are retrained with that seed's data order and "
                           f"tested on the same images; the controller's and the uniform cells' "
                           f"rewards come from the same shared weights per round); the entropy "
                           f"claim is a one-sample t-test against its threshold. "
                           + evidence_caption(g))
    return df


def _search_budget(g: Graph, n: int, n_train: int | None, random: bool = False) -> str:
    """The search phase's budget per seed (mean): the controller's shared-weight training
    (rounds x batches x batch size images) and wall time, and with ``random`` the random-search
    control's (K cells x proxy epochs x the training split) beside it."""
    import numpy as np

    cfg = g.cfg
    split = round(n_train * (1 - cfg.val_fraction)) if n_train else None
    per_round = (cfg.max_train_batches * cfg.batch_size if cfg.max_train_batches else split)
    ctl = by_seed(g, "search", ordered=True, n_nodes=n).values()
    t = float(np.mean([r["metrics"].get("search_time_s") or r["wall_time_s"] for r in ctl]))
    img = f", {cfg.rounds * per_round / 1e3:.3g}k img" if per_round else ""
    out = f"controller {cfg.rounds} rounds{img}, {t:.0f} s"
    rnd = list(by_seed(g, "random", ordered=True, n_nodes=n).values()) if random else []
    if rnd:
        tr = float(np.mean([r["metrics"].get("search_time_s") or r["wall_time_s"] for r in rnd]))
        img = (f", {cfg.random_samples * cfg.proxy.epochs * split / 1e3:.3g}k img"
               if split else "")
        out += (f" · random search {cfg.random_samples} cells × {cfg.proxy.epochs} ep{img}, "
                f"{tr:.0f} s")
    return out


# --------------------------------------------------------------------------- figures


def _wrapped(fig, text: str) -> str:
    """``text`` broken into lines that fit ``fig``'s width (less the margins) in 8-pt type."""
    width = int(fig.get_figwidth() * 15)
    return "\n".join(textwrap.fill(line, width) for line in text.split("\n"))


def plot_search_seeds(g: Graph, ax=None, title: str = ""):
    """Per N and round, mean ± std over seeds: the reward of the cells the controller samples
    and of uniformly drawn cells (left), the policy entropy and the uniform policy's (right)."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator
    import numpy as np

    cfg = g.cfg
    if ax is None:
        fig, ax = plt.subplots(1, 2, figsize=(10, 3.6))
    else:
        fig = ax[0].figure
    for i, n in enumerate(cfg.node_counts):
        hs = [r["metrics"]["history"]
              for r in by_seed(g, "search", ordered=True, n_nodes=n).values()]
        if not hs:
            continue
        rounds = np.arange(1, min(len(h) for h in hs) + 1)

        def band(key, scale=1.0):
            v = np.array([[scale * (h[j].get(key) if h[j].get(key) is not None else np.nan)
                           for j in range(len(rounds))] for h in hs])
            return v.mean(0), (v.std(0, ddof=1) if len(hs) > 1 else np.zeros(len(rounds)))

        col = f"C{i}"
        m, s = band("reward", 100)
        ax[0].errorbar(rounds, m, yerr=s, color=col, marker="o", ms=3, capsize=2,
                       label=f"N = {n}: controller's cells")
        if any(h[0].get("uniform_reward") is not None for h in hs):
            m, s = band("uniform_reward", 100)
            ax[0].errorbar(rounds, m, yerr=s, color=col, ls="--", marker="s", ms=3,
                           capsize=2, alpha=0.7, mfc="white",
                           label=f"N = {n}: uniformly drawn cells")
        m, s = band("entropy")
        ax[1].errorbar(rounds, m, yerr=s, color=col, marker="o", ms=3, capsize=2,
                       label=f"N = {n}: controller")
        ax[1].axhline(uniform_entropy(n), color=col, ls=":", lw=1.2,
                      label=f"N = {n}: uniform policy (ln {count_architectures(n):,})")
        ax[1].axhline(ENTROPY_FRACTION * uniform_entropy(n), color=col, ls="-.", lw=0.8,
                      alpha=0.6, label=f"N = {n}: claim threshold")
    ax[0].set(xlabel="search round", ylabel="validation reward (%)",
              title=f"reward, mean ± std over {len(cfg.seeds)} seeds")
    ax[1].set(xlabel="search round", ylabel="policy entropy (nats)", ylim=(0, None),
              title=f"entropy, mean ± std over {len(cfg.seeds)} seeds")
    for a in ax:
        a.title.set_fontsize(9)
        a.legend(fontsize=7)
        a.grid(alpha=0.3)
        a.xaxis.set_major_locator(MaxNLocator(integer=True))     # rounds are whole numbers
    fig.suptitle(_wrapped(fig, title), fontsize=8)
    fig.tight_layout()
    return fig


def plot_evidence(g: Graph, ax=None, title: str = ""):
    """Test accuracy of every retrained mixer: each seed a dot, mean ± std as an error bar;
    the searched cells in a darker colour."""
    import matplotlib.pyplot as plt

    accs = mixer_accuracies(g)
    keys = [k for k in _mixer_order(g.cfg) if accs.get(k)]
    if ax is None:
        fig, ax = plt.subplots(figsize=(1.3 * len(keys) + 3, 3.6))
    else:
        fig = ax.figure
    for i, k in enumerate(keys):
        m, s, _ = ev.mean_std(accs[k])
        col = "C3" if k.startswith("nas") else "C7" if k.startswith("random") else "C0"
        ax.errorbar([i], [m], yerr=[s], fmt="o", color=col, ms=8, capsize=6, lw=2, zorder=3)
        ax.scatter([i + 0.15] * len(accs[k]), accs[k], color=col, s=14, alpha=0.6, zorder=2)
        ax.annotate(f"{m:.1f} ± {s:.1f}", (i, m), xytext=(-12, 0), textcoords="offset points",
                    fontsize=7, va="center", ha="right")
    ax.set_xticks(range(len(keys)), [_mixer_label(k) for k in keys], fontsize=8, rotation=15)
    ax.set_xlim(-1.0, len(keys) - 0.4)
    ax.set_ylabel("test accuracy (%)")
    ax.grid(alpha=0.3, axis="y")
    ax.set_title(_wrapped(fig, title), fontsize=8)
    fig.tight_layout()
    return fig


def evidence_figures(g: Graph) -> dict:
    """``evidence`` (accuracy of every mixer, mean ± std and seeds), ``search_curves``
    (reward and entropy against the uniform policy's, mean ± std), ``searched_cells`` (every
    seed's derived cell) and ``toy_reinforce``."""
    import matplotlib.pyplot as plt

    cfg = g.cfg
    every = [s.record() for s in g]
    prov = (f"profile={cfg.profile} · data={dataset_label(str(cfg.dataset))} · seeds "
            f"{', '.join(map(str, cfg.seeds))} · rounds={cfg.rounds} · retrain="
            f"{cfg.retrain.epochs} ep · device={report.device_label(every)}{profile_note(cfg)}")
    out = {"evidence": plot_evidence(
        g, title=f"retrained from scratch ({cfg.model}), mean ± std · {prov}")}
    out["search_curves"] = plot_search_seeds(g, title="controller vs uniform policy · " + prov)
    cells = [(n, s, r) for n in cfg.node_counts
             for s, r in by_seed(g, "search", ordered=True, n_nodes=n).items()]
    fig, axes = plt.subplots(len(cells), 1, figsize=(9, 2.4 * len(cells)), squeeze=False)
    for ax, (n, s, r) in zip(axes[:, 0], cells):
        draw_architecture(r["metrics"]["arch"], ax,
                          f"searched {n}-node mixer, seed {s}: {r['metrics']['arch_str']}")
    fig.suptitle(_wrapped(fig, prov), fontsize=8)
    fig.tight_layout()
    out["searched_cells"] = fig
    fig, _ = toy_figure(g, f"seed {cfg.seed}")
    fig.suptitle(_wrapped(fig, prov), fontsize=8)
    fig.tight_layout()
    out["toy_reinforce"] = fig
    return out


def evidence_summary(g: Graph, claims: pd.DataFrame) -> str:
    """The evidence paragraph: every claim's verdict (``claims``, the claims table) with its
    numbers, from the records."""
    parts = [f"Evidence run (`reprolib run {PAPER} --profile {g.cfg.profile}`): "
             + evidence_caption(g) + "."]
    for _, r in claims.iterrows():
        parts.append(f"{r['claim']}: {r['ours']} — **{r['verdict']}** ({r['reason']}).")
    return " ".join(parts)
