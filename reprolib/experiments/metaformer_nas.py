"""MetaFormer-NAS pipeline (Zhang & Liu, "基于 MetaFormer 的高效神经架构搜索"): the toy-reward
REINFORCE check, the search for each DAG size N (Table 1), and the from-scratch retraining of
the hand-designed and the searched token mixers (Table 2), on the engine of
:mod:`reprolib.experiments.common`.

Stages, in run order (``stages(cfg)``):

    toy-nas<N>          REINFORCE on a toy reward whose best cell is known (per N)
    search-nas<N>       the search (``reprolib.methods.metaformer_nas.search``), per N; its
                        per-round checkpoint ``search.pt`` and the derived ``arch.json`` live in
                        the stage's ckpt folder
    retrain-<mixer>     ``cfg.model`` with a hand-designed mixer, trained from scratch
    retrain-nas<N>      ``cfg.model`` with the architecture derived by ``search-nas<N>``
                        (keyed by that stage, read from its metrics), trained from scratch

Each retrained model is saved in the one compressed-model format (``stage.model()``): the
builder and ``mixer=<the architecture's JSON>`` rebuild a searched model exactly.

With ``cfg.seeds`` (the ``evidence`` profile) every stage after the toy check runs once per
seed, named ``<stage>-s<seed>``, plus the random-search control with the same budget:

    random-nas<N>-s<seed>       K = ``random_samples`` cells drawn uniformly, each trained with
                                the ``proxy`` recipe on the search's training split and scored
                                on its validation split; the best is kept
    retrain-random<N>-s<seed>   that cell, retrained like the searched one

and ``claims(cfg)`` tests the paper's claim (searched cell >= pooling / spatial MLP / MHSA)
and the control's (>= random search), and whether the controller learned at all (policy
entropy against the uniform policy's, sampled cells' reward against uniformly drawn cells').
"""

from __future__ import annotations

import dataclasses
import math
import textwrap
import time
from pathlib import Path

import pandas as pd

from reprolib.core import report
from reprolib.configs.metaformer_nas import (PAPER_DEVICE, PAPER_TABLE1, PAPER_TABLE2,
                                             TABLE2_LABELS, TABLE2_MIXERS)
from reprolib.core.device import resolve_device
from reprolib.errors import check_number
from reprolib.experiments import evidence as ev
from reprolib.core.pipeline import (Stage, key_of, load_data, profile_note, records,
                                         run_stages, train_and_measure)
from reprolib.core.measure import count_params
from reprolib.methods.metaformer_nas import (NASConfig, count_architectures, paper_space_size,
                                             search, toy_reinforce, uniform_architecture,
                                             uniform_entropy)
from reprolib.models.metaformer import OPS, Architecture, save_architecture
from reprolib.core.registry import create_model
from reprolib.core.train import fit

PAPER = "metaformer_nas"
README_FIGURE = "search_curves"
#: The evidence profile's figure in the README: test accuracy of every mixer, mean ± std.
README_EVIDENCE_FIGURE = "evidence"

#: The paper's figure-5 example cell (0, id) (1, pool) (1, id) (3, pool).
FIG5_ARCH = [[0, "identity"], [1, "pooling"], [1, "identity"], [3, "pooling"]]
#: PoolFormer's (and the paper's) initial layer scale.
POOLFORMER_LAYER_SCALE = 1e-5


# --------------------------------------------------------------------------- configs


def nas_config(cfg, n_nodes: int) -> NASConfig:
    """The ``NASConfig`` of a notebook config (``MetaFormerNASConfig``) for ``n_nodes``: every
    NASConfig field the notebook config has (the flat search fields), the rest defaults."""
    names = {f.name for f in dataclasses.fields(NASConfig)} - {"n_nodes"}
    names &= {f.name for f in dataclasses.fields(cfg)}
    return NASConfig(n_nodes=n_nodes, **{k: getattr(cfg, k) for k in names})


#: NASConfig fields added after records were made: left out of a search key at these values,
#: so the records of earlier runs keep their keys.
_LATER_NAS_FIELDS = {"reward_batches": 1, "uniform_samples": 0}


def search_run_config(cfg, n_nodes: int) -> dict:
    """The key of stage ``search-nas<N>``: the data, backbone and layer scale of the shared
    model, the search batch and validation split, and the whole ``NASConfig``."""
    nas = {k: v for k, v in dataclasses.asdict(nas_config(cfg, n_nodes)).items()
           if _LATER_NAS_FIELDS.get(k, object()) != v}
    return key_of(cfg, "dataset", "model", "image_size", "batch_size", "val_fraction",
                  "layer_scale_init", **nas)


def toy_target(n_nodes: int) -> Architecture:
    """The best architecture of the toy reward: the paper's figure-5 cell extended (node i
    > 4 takes node i - 2, ops alternate)."""
    nodes = [tuple(x) for x in FIG5_ARCH][:n_nodes]
    for i in range(len(nodes) + 1, n_nodes + 1):
        nodes.append((i - 2, OPS[i % 2]))
    return Architecture(tuple(nodes))


# --------------------------------------------------------------------------- stage bodies


def run_toy(cfg, n_nodes: int) -> dict:
    """REINFORCE on the toy reward (``toy_reinforce``) with ``cfg.toy_samples`` updates."""
    h = toy_reinforce(n_nodes, toy_target(n_nodes), samples=cfg.toy_samples, lr=cfg.toy_lr,
                      seed=cfg.seed, clip=cfg.controller_clip,
                      entropy_weight=cfg.entropy_weight, baseline_decay=cfg.baseline_decay)
    h["converged"] = h["most_likely"] == h["target"]
    return h


def _print(line: str) -> None:
    print(line, flush=True)


def run_search(cfg, n_nodes: int, ckpt_dir=None, log=_print) -> dict:
    """Search an ``n_nodes`` mixer with the settings of ``cfg``; returns the metrics of a
    results record (``search``'s dict, the 10 best candidates, ``n_nodes``, ``device``,
    ``shared_params``).  The derived architecture is also saved as ``ckpt_dir/arch.json``."""
    device = resolve_device(cfg.device)
    data = load_data(cfg, cfg.batch_size, val_fraction=cfg.val_fraction,
                     eval_batch_size=cfg.batch_size)
    model = create_model(cfg.model, mixer={"shared": n_nodes}, num_classes=data.num_classes,
                         image_size=cfg.image_size, layer_scale_init_value=cfg.layer_scale_init)
    out = search(model, data, nas_config(cfg, n_nodes), ckpt_dir=ckpt_dir, device=device,
                 seed=cfg.seed, log=log)
    if ckpt_dir is not None:
        save_architecture(out["arch"], Path(ckpt_dir) / "arch.json")
    out["candidates"] = out["candidates"][:10]
    out.update(n_nodes=n_nodes, device=str(device), shared_params=count_params(model))
    return out


def run_retrain(cfg, mixer, stage: Stage | None = None) -> dict:
    """Train ``cfg.model`` with token mixer ``mixer`` (a name or an architecture's JSON) from
    scratch with the ``retrain`` recipe and measure it: on the whole training set, or, when
    ``retrain.select_every`` > 0 (the paper: every 10 epochs), on the training split with the
    checkpoint best on the validation split reported (Flowers-102: its official val split); with a
    ``stage``, checkpoint in its folder and save the trained model there."""
    # select_every > 0 (paper): the checkpoint best on the validation split is reported
    # (Flowers-102: its official val split; other sets: val_fraction of train held out)
    data = load_data(cfg, cfg.retrain,
                     val_fraction=cfg.val_fraction if cfg.retrain.select_every else 0.0)
    model = create_model(cfg.model, mixer=mixer, num_classes=data.num_classes,
                         image_size=cfg.image_size, layer_scale_init_value=cfg.layer_scale_init)
    name = mixer if isinstance(mixer, str) else f"searched {Architecture.parse(mixer).n_nodes}-node"
    metrics = train_and_measure(model, data, cfg.retrain, stage.ckpt_dir if stage else None,
                                device=cfg.device, desc=f"retrain {name}", latency_repeats=5)
    metrics["test_images"] = data.test_size
    if stage is not None:
        stage.save_model(model)
    return metrics


def run_random(cfg, n_nodes: int, stage: Stage | None = None) -> dict:
    """The random-search control: ``cfg.random_samples`` cells drawn uniformly (seeded by
    ``cfg.seed``), each trained from scratch with the ``proxy`` recipe on the search's
    training split and scored on its validation split (the test images are never seen);
    returns the metrics of a results record: ``arch`` (the best on validation), every
    ``candidate`` with its validation accuracy, history and time, and ``search_time_s``."""
    import torch

    data = load_data(cfg, cfg.proxy, val_fraction=cfg.val_fraction,
                     eval_batch_size=cfg.batch_size)
    on_val = dataclasses.replace(data, test=data.val)     # fit evaluates on the held-out split
    gen = torch.Generator().manual_seed(cfg.seed)
    cands, t0 = [], time.perf_counter()
    for k in range(cfg.random_samples):
        arch = uniform_architecture(n_nodes, gen)
        model = create_model(cfg.model, mixer=arch.to_json(), num_classes=data.num_classes,
                             image_size=cfg.image_size,
                             layer_scale_init_value=cfg.layer_scale_init)
        ck = stage.ckpt_dir / f"candidate{k}" if stage else None
        res = fit(model, on_val, cfg.proxy, ckpt_dir=ck, device=cfg.device,
                  desc=f"random cell {k + 1}/{cfg.random_samples}")
        cands.append({"arch": arch.to_json(), "arch_str": str(arch), "val_acc": res.acc,
                      "history": res.history,
                      "time_s": round(sum(h["time_s"] for h in res.history), 2)})
    best = max(cands, key=lambda c: c["val_acc"])
    return {"arch": best["arch"], "arch_str": best["arch_str"], "val_acc": best["val_acc"],
            "candidates": cands, "n_nodes": n_nodes, "val_images": data.val.dataset_size,
            "search_time_s": round(sum(c["time_s"] for c in cands), 2),
            "wall_time_s": round(time.perf_counter() - t0, 2),
            "device": str(resolve_device(cfg.device))}


# --------------------------------------------------------------------------- stages


def _sfx(cfg) -> str:
    """The stage-name suffix of a seeded config: ``-s<seed>`` with ``cfg.seeds``, else ""."""
    return ev.seed_suffix(cfg.seed) if cfg.seeds else ""


def toy_stage(cfg, n_nodes: int) -> Stage:
    key = key_of(cfg, "toy_samples", "toy_lr", "controller_clip", "entropy_weight",
                 "baseline_decay", n_nodes=n_nodes)
    return Stage(cfg, f"toy-nas{n_nodes}", key, lambda st: run_toy(cfg, n_nodes))


def search_stage(cfg, n_nodes: int) -> Stage:
    return Stage(cfg, f"search-nas{n_nodes}{_sfx(cfg)}", search_run_config(cfg, n_nodes),
                 lambda st: run_search(cfg, n_nodes, st.ckpt_dir))


def random_stage(cfg, n_nodes: int) -> Stage:
    """``random-nas<N>[-s<seed>]``: the random-search control (:func:`run_random`)."""
    key = key_of(cfg, "dataset", "model", "image_size", "batch_size", "val_fraction",
                 "layer_scale_init", "random_samples", "proxy", n_nodes=n_nodes)
    return Stage(cfg, f"random-nas{n_nodes}{_sfx(cfg)}", key,
                 lambda st: run_random(cfg, n_nodes, st))


def _retrain_key(cfg, **extra) -> dict:
    return key_of(cfg, "dataset", "model", "image_size", "layer_scale_init", "retrain", **extra)


def retrain_stage(cfg, mixer: str) -> Stage:
    """``retrain-<mixer>`` for a hand-designed mixer ("pooling", "mlp", "attention")."""
    return Stage(cfg, f"retrain-{mixer}{_sfx(cfg)}", _retrain_key(cfg, mixer=mixer),
                 lambda st: run_retrain(cfg, mixer, st))


def retrain_searched_stage(cfg, searched: Stage) -> Stage:
    """``retrain-nas<N>`` (after ``search-nas<N>``) or ``retrain-random<N>`` (after
    ``random-nas<N>``): the architecture the upstream stage chose, read from its metrics."""
    kind, rest = searched.name.split("-", 1)                 # "search" | "random", "nas4-s0"
    n = rest[len("nas"):].split("-")[0]
    name = f"retrain-{'nas' if kind == 'search' else 'random'}{n}{_sfx(cfg)}"

    def fn(st: Stage) -> dict:
        return run_retrain(cfg, Architecture.parse(searched.metrics()["arch"]).to_json(), st)

    return Stage(cfg, name, _retrain_key(cfg), fn, after=[searched])


def _seed_stages(cfg) -> list[Stage]:
    """The stages of one seed: search, random search, baselines, the chosen cells retrained."""
    searches = [search_stage(cfg, n) for n in cfg.node_counts]
    randoms = [random_stage(cfg, n) for n in cfg.node_counts] if cfg.random_samples else []
    base = [retrain_stage(cfg, b) for b in cfg.baselines]
    chosen = [retrain_searched_stage(cfg, s) for s in searches + randoms]
    return searches + randoms + base + chosen


def stages(cfg) -> list[Stage]:
    """toy-nas<N>, search-nas<N> (per N in ``node_counts``), retrain-<mixer> (per baseline),
    retrain-nas<N> (per N, after search-nas<N>); with ``cfg.seeds`` the stages after the toy
    check once per seed (``-s<seed>``), each seed's stages together, with the random-search
    control when ``random_samples`` > 0."""
    check_number("random_samples", cfg.random_samples, 0, 10_000)
    check_number("margin", cfg.margin, 0.0, 100.0)
    toys = [toy_stage(cfg, n) for n in cfg.node_counts]
    if cfg.seeds:
        return toys + [st for s in cfg.seeds for st in _seed_stages(ev.seeded(cfg, s))]
    if cfg.random_samples:
        return toys + _seed_stages(cfg)
    searches = [search_stage(cfg, n) for n in cfg.node_counts]
    base = [retrain_stage(cfg, b) for b in cfg.baselines]
    nas = [retrain_searched_stage(cfg, s) for s in searches]
    return toys + searches + base + nas


def run(cfg, force: bool = False) -> dict[str, dict]:
    """Every stage (cached records); returns ``{stage name: record}``."""
    return run_stages(stages(cfg), force)


def _records(cfg, prefix: str) -> dict[str, dict]:
    return {k: r for k, r in records(stages(cfg)).items() if k.startswith(prefix)}


def _searches(cfg) -> dict[int, dict]:
    """The search records by N."""
    return {int(r["metrics"]["n_nodes"]): r for r in _records(cfg, "search-").values()}


def _toys(cfg) -> dict[int, dict]:
    return {int(k[len("toy-nas"):]): r for k, r in _records(cfg, "toy-").items()}


def _provenance(cfg, recs, *, search: bool = True, retrain: bool = True) -> str:
    """Profile, data, search rounds and/or retraining epochs, and the devices of ``recs``."""
    ds = str(cfg.dataset)
    data = Path(ds[4:]).name if ds.startswith("npz:") else ds
    parts = [f"profile={cfg.profile}", f"data={data}"]
    if search:
        parts.append(f"rounds={cfg.rounds}")
    if retrain:
        parts.append(f"retrain={cfg.retrain.epochs} ep")
    parts.append(f"device={report.device_label(list(recs))}")
    return " · ".join(parts)


# --------------------------------------------------------------------------- tables


def table1(cfg) -> pd.DataFrame:
    """Table 1 from the search records: ours (rounds, wall time, device, counted space size)
    beside the paper's (hours on a Quadro RTX 8000, printed space size)."""
    recs = _searches(cfg)
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


def _mixer_key(name: str) -> str:
    return name[len("retrain-"):]


def table2(cfg) -> pd.DataFrame:
    """Table 2 from the retraining records: each row is the backbone actually trained
    (``cfg.model``) with one token mixer, beside the paper's row (MetaFormer-S12) and its
    Flowers-102 accuracy; epochs, params and FLOPs (1 multiply-add = 1 FLOP)."""
    recs = _records(cfg, "retrain-")
    rows = []
    for name, r in recs.items():
        key, m = _mixer_key(name), r["metrics"]
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


def tables(cfg) -> dict[str, pd.DataFrame]:
    """``table1`` (search time, space size) and ``table2`` (retrained mixers); with
    ``cfg.seeds`` both as mean ± std over the seeds, plus ``controller`` (entropy and reward
    against the uniform policy's) and ``claims``."""
    if cfg.seeds:
        return {"table1": evidence_table1(cfg), "table2": evidence_table2(cfg),
                "controller": controller_table(cfg), "claims": claims(cfg)}
    return {"table1": table1(cfg), "table2": table2(cfg)}


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
    """Mean controller reward and entropy per round, one line per N: ``histories`` maps N
    to a search history (list of round dicts).  Returns the figure."""
    import matplotlib.pyplot as plt

    if ax is None:
        fig, ax = plt.subplots(1, 2, figsize=(9, 3.2))
    else:
        fig = ax[0].figure
    for n, hist in sorted(histories.items()):
        rounds = [h["round"] for h in hist]
        ax[0].plot(rounds, [h["reward"] for h in hist], marker="o", label=f"N = {n} (mean)")
        ax[0].plot(rounds, [h["most_likely_reward"] for h in hist], ls="--", alpha=0.6,
                   label=f"N = {n} (most likely arch)")
        ax[1].plot(rounds, [h["entropy"] for h in hist], marker="o", label=f"N = {n}")
        ax[1].axhline(math.log(count_architectures(n)), ls=":", lw=0.8, color="grey")
    ax[0].set(xlabel="round", ylabel="reward (val-batch accuracy)")
    ax[1].set(xlabel="round", ylabel="policy entropy (nats; dotted: uniform)")
    for a in ax:
        a.legend(fontsize=7)
        a.grid(alpha=0.3)
    fig.suptitle(title, fontsize=9)
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


def figures(cfg) -> dict:
    """``search_curves`` (reward and entropy per round), ``searched_cells`` (the derived
    DAGs), ``toy_reinforce`` (the toy-reward check), ``table2_acc_params``; with
    ``cfg.seeds`` the evidence figures instead (:func:`evidence_figures`)."""
    import matplotlib.pyplot as plt

    if cfg.seeds:
        return evidence_figures(cfg)
    out = {}
    searches = _searches(cfg)
    prov = _provenance(cfg, searches.values(), retrain=False) + profile_note(cfg)
    out["search_curves"] = plot_search({n: r["metrics"]["history"] for n, r in searches.items()},
                                       title="controller during the search · " + prov)
    fig, axes = plt.subplots(len(searches), 1, figsize=(9, 2.6 * len(searches)), squeeze=False)
    for ax, (n, r) in zip(axes[:, 0], sorted(searches.items())):
        draw_architecture(r["metrics"]["arch"], ax,
                          f"searched {n}-node mixer ({cfg.profile}): {r['metrics']['arch_str']}")
    fig.suptitle(prov, fontsize=8)
    fig.tight_layout()
    out["searched_cells"] = fig

    fig, toys = _toy_figure(cfg, f"profile {cfg.profile}")
    fig.suptitle(f"profile={cfg.profile} · seed={cfg.seed} · device="
                 f"{report.device_label(list(toys.values()))}{profile_note(cfg)}", fontsize=8)
    fig.tight_layout()
    out["toy_reinforce"] = fig

    t2 = table2(cfg)
    fig, ax = plt.subplots(figsize=(6, 3.4))
    ax.scatter(t2["params (M)"], t2["acc (ours, %)"])
    for _, r in t2.iterrows():
        ax.annotate(r["model"].split(" + ", 1)[-1], (r["params (M)"], r["acc (ours, %)"]),
                    fontsize=7)
    recs = _records(cfg, "retrain-").values()
    ax.set(xlabel="params (M)", ylabel="test accuracy (%)",
           title=f"Table 2 models ({cfg.model}) · " + _provenance(cfg, recs) + profile_note(cfg))
    ax.title.set_fontsize(8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    out["table2_acc_params"] = fig
    return out


# --------------------------------------------------------------------------- evidence


#: Rounds at the end of a search whose controller and uniform rewards are averaged.
TAIL_ROUNDS = 3
#: "Well below uniform": the claim's threshold on the final entropy, a fraction of ln |space|.
ENTROPY_FRACTION = 0.5


def seed_records(cfg) -> dict[str, dict[int, dict]]:
    """With ``cfg.seeds``: ``{condition: {seed: record}}``, the condition being the stage name
    without ``-s<seed>`` (``search-nas4``, ``random-nas4``, ``retrain-pooling`` ...)."""
    out: dict[str, dict[int, dict]] = {}
    for name, rec in records(stages(cfg)).items():
        cond, seed = ev.split_seed(name)
        if seed is not None:
            out.setdefault(cond, {})[seed] = rec
    return out


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


def mixer_accuracies(cfg) -> dict[str, list[float]]:
    """Test accuracy (%) of every retrained mixer, one value per seed (seed order)."""
    recs = seed_records(cfg)
    return {k: [r["metrics"]["acc"] for _, r in sorted(recs.get(f"retrain-{k}", {}).items())]
            for k in _mixer_order(cfg)}


def _tail(hist: list[dict], key: str) -> float:
    vals = [h[key] for h in hist[-TAIL_ROUNDS:] if h.get(key) is not None]
    return sum(vals) / len(vals) if vals else math.nan


def controller_stats(cfg, n_nodes: int) -> dict[str, list]:
    """Per seed of the ``n_nodes`` search: final policy entropy (the last round's mean over
    its samples), the controller's and the uniform policy's mean validation reward (%) over
    the last ``TAIL_ROUNDS`` rounds, the derived cell and its most likely cell."""
    recs = seed_records(cfg).get(f"search-nas{n_nodes}", {})
    out = {"seed": [], "entropy": [], "reward": [], "uniform_reward": [], "arch": [],
           "most_likely": [], "search_time_s": []}
    for seed, r in sorted(recs.items()):
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


def _retrain_records(cfg) -> list[dict]:
    recs = seed_records(cfg)
    return [r for k in _mixer_order(cfg) for r in recs.get(f"retrain-{k}", {}).values()]


def _wall_minutes(cfg) -> float:
    """The evidence run's wall time: the sum of its stages' recorded wall times (minutes)."""
    return sum(float(s.record().get("wall_time_s", 0.0)) for s in stages(cfg)) / 60


def evidence_caption(cfg) -> str:
    """What produced the evidence: profile, data, backbone, seeds, search / control / retrain
    budgets, the plateau rule's outcome, wall time and device."""
    every = [s.record() for s in stages(cfg)]
    seeds = ", ".join(str(s) for s in cfg.seeds)
    search = (f"search {cfg.rounds} rounds × ({cfg.max_train_batches or 'all'} shared batches + "
              f"{cfg.controller_samples} controller updates, reward = mean accuracy on "
              f"{cfg.reward_batches} validation batch(es) of {cfg.batch_size}, entropy weight "
              f"{cfg.entropy_weight:g}, controller lr {cfg.controller_lr:g}; "
              f"{cfg.uniform_samples} uniformly drawn cells scored per round)")
    rand = (f"random search: {cfg.random_samples} uniform cells × {cfg.proxy.epochs} proxy "
            "epochs each, best on validation" if cfg.random_samples else "no random search")
    return (f"profile={cfg.profile} · data={_short_data(cfg)} · {cfg.model} at "
            f"{cfg.image_size} px · N = {', '.join(map(str, cfg.node_counts))} · seeds {seeds} · "
            f"{search} · {rand} · retrain {cfg.retrain.epochs} epochs "
            f"({cfg.retrain.optimizer} lr {cfg.retrain.lr:g}, {cfg.retrain.schedule}); "
            f"{_plateau_note(_retrain_records(cfg))} · wall time {_wall_minutes(cfg):.0f} min "
            f"(sum of the stages) · device={report.device_label(every)}{profile_note(cfg)}")


def _short_data(cfg) -> str:
    ds = str(cfg.dataset)
    return Path(ds[4:]).name if ds.startswith("npz:") else ds


def evidence_table1(cfg) -> pd.DataFrame:
    """Table 1 over the seeds: search time of the controller and of the random-search
    control (the same budget), mean ± std, beside the paper's hours and space size."""
    recs = seed_records(cfg)
    rows = []
    for n in cfg.node_counts:
        st = [r["metrics"]["search_time_s"] for r in recs.get(f"search-nas{n}", {}).values()]
        rt = [r["metrics"]["search_time_s"] for r in recs.get(f"random-nas{n}", {}).values()]
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
                           "Ours: " + evidence_caption(cfg)
                           + "; paper: 100 rounds on Flowers-102 at 224 px.")
    return df


def evidence_table2(cfg) -> pd.DataFrame:
    """Table 2 over the seeds: test accuracy of every mixer retrained from scratch, mean ±
    std (n seeds), size, epochs and how many runs reached a plateau, beside the paper's."""
    recs = seed_records(cfg)
    accs = mixer_accuracies(cfg)
    rows = []
    for k in _mixer_order(cfg):
        rs = list(recs.get(f"retrain-{k}", {}).values())
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
                           f"on {cfg.model}. Ours: " + evidence_caption(cfg)
                           + "; paper: MetaFormer-S12, Flowers-102, 224 px, 600 epochs. "
                           + report.FLOPS_NOTE)
    return df


def controller_table(cfg) -> pd.DataFrame:
    """Does the controller learn?  Per N: final policy entropy against the uniform policy's
    ln |space|, and the mean validation reward of the cells it samples against that of
    uniformly drawn cells on the same shared weights (last rounds), mean ± std over seeds;
    the derived and the most likely cell of each seed."""
    rows = []
    for n in cfg.node_counts:
        c = controller_stats(cfg, n)
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
                           "weights). " + evidence_caption(cfg))
    return df


def claims(cfg) -> pd.DataFrame:
    """The claims table (``evidence.CLAIM_COLUMNS``): per N, whether the controller learned
    (entropy well below uniform; sampled cells' reward above uniformly drawn cells'), and the
    paper's claim that the searched cell is no worse than pooling / spatial MLP / MHSA
    (non-inferiority with ``cfg.margin`` points) and the control's (no worse than random
    search with the same budget).  Caption in ``attrs``."""
    if not cfg.seeds:
        from reprolib.errors import ReprolibError

        raise ReprolibError("claims need seeds: run the evidence profile "
                            f"(reprolib run {PAPER} --profile evidence)")
    accs = mixer_accuracies(cfg)
    rows = []
    for n in cfg.node_counts:
        c = controller_stats(cfg, n)
        uni = uniform_entropy(n)
        thr = ENTROPY_FRACTION * uni
        t = ev.compare(c["entropy"], [thr] * len(c["entropy"]), higher_is_better=False)
        rows.append(ev.claim_row(
            f"N = {n}: the controller learns — policy entropy ends well below the uniform "
            f"policy's (below {ENTROPY_FRACTION:g} × ln {count_architectures(n):,} = {thr:.2f} nats)",
            ev.fmt(c["entropy"], 2, " nats") + f" = {ev.fmt([e / uni for e in c['entropy']], 2)}"
            " of uniform",
            "not reported", t["verdict"],
            f"mean {t['diff'] + thr:.2f} vs threshold {thr:.2f} nats (one-sample t-test, "
            f"p = {t['p']:.2g}, n = {len(c['entropy'])})"))
        t = ev.compare(c["reward"], c["uniform_reward"])
        rows.append(ev.claim_row(
            f"N = {n}: cells the controller samples score above uniformly drawn cells "
            f"(validation reward on the shared weights, last {TAIL_ROUNDS} rounds)",
            f"{ev.fmt(c['reward'], 1, ' %')} vs uniform {ev.fmt(c['uniform_reward'], 1, ' %')}",
            "not reported", t["verdict"], t["reason"]))
        nas = accs.get(f"nas{n}", [])
        for b in [*cfg.baselines] + ([f"random{n}"] if cfg.random_samples else []):
            t = ev.compare(nas, accs.get(b, []), margin=cfg.margin)
            paper = (f"{PAPER_TABLE2[f'nas{n}']:g} vs {PAPER_TABLE2[b]:g} % (Flowers-102, "
                     "600 ep)" if f"nas{n}" in PAPER_TABLE2 and b in PAPER_TABLE2
                     else "not in the paper")
            rows.append(ev.claim_row(
                f"searched {n}-node cell ≥ {_mixer_label(b)} (test accuracy; no worse than "
                f"{cfg.margin:g} point{'s' if cfg.margin != 1 else ''})",
                f"{ev.fmt(nas, 1, ' %')} vs {ev.fmt(accs.get(b, []), 1, ' %')}", paper,
                t["verdict"], t["reason"]))
    df = ev.claims_frame(rows)
    df.attrs["caption"] = "Claims (MetaFormer-NAS): " + evidence_caption(cfg)
    return df


def _wrapped(fig, text: str) -> str:
    """``text`` broken into lines that fit ``fig``'s width (less the margins) in 8-pt type."""
    width = int(fig.get_figwidth() * 15)
    return "\n".join(textwrap.fill(line, width) for line in text.split("\n"))


def plot_search_seeds(cfg, ax=None, title: str = ""):
    """Per N and round, mean ± std over seeds: the reward of the cells the controller samples
    and of uniformly drawn cells (left), the policy entropy and the uniform policy's (right)."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator
    import numpy as np

    if ax is None:
        fig, ax = plt.subplots(1, 2, figsize=(10, 3.6))
    else:
        fig = ax[0].figure
    recs = seed_records(cfg)
    for i, n in enumerate(cfg.node_counts):
        hs = [r["metrics"]["history"] for _, r in sorted(recs.get(f"search-nas{n}", {}).items())]
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


def plot_evidence(cfg, ax=None, title: str = ""):
    """Test accuracy of every retrained mixer: each seed a dot, mean ± std as an error bar;
    the searched cells in a darker colour."""
    import matplotlib.pyplot as plt

    accs = mixer_accuracies(cfg)
    keys = [k for k in _mixer_order(cfg) if accs.get(k)]
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


def evidence_figures(cfg) -> dict:
    """``evidence`` (accuracy of every mixer, mean ± std and seeds), ``search_curves``
    (reward and entropy against the uniform policy's, mean ± std), ``searched_cells`` (every
    seed's derived cell) and ``toy_reinforce``."""
    import matplotlib.pyplot as plt

    every = [s.record() for s in stages(cfg)]
    prov = (f"profile={cfg.profile} · data={_short_data(cfg)} · seeds "
            f"{', '.join(map(str, cfg.seeds))} · rounds={cfg.rounds} · retrain="
            f"{cfg.retrain.epochs} ep · device={report.device_label(every)}{profile_note(cfg)}")
    out = {"evidence": plot_evidence(
        cfg, title=f"retrained from scratch ({cfg.model}), mean ± std · {prov}")}
    out["search_curves"] = plot_search_seeds(cfg, title="controller vs uniform policy · " + prov)
    recs = seed_records(cfg)
    cells = [(n, s, r) for n in cfg.node_counts
             for s, r in sorted(recs.get(f"search-nas{n}", {}).items())]
    fig, axes = plt.subplots(len(cells), 1, figsize=(9, 2.4 * len(cells)), squeeze=False)
    for ax, (n, s, r) in zip(axes[:, 0], cells):
        draw_architecture(r["metrics"]["arch"], ax,
                          f"searched {n}-node mixer, seed {s}: {r['metrics']['arch_str']}")
    fig.suptitle(_wrapped(fig, prov), fontsize=8)
    fig.tight_layout()
    out["searched_cells"] = fig
    fig, _ = _toy_figure(cfg, f"seed {cfg.seed}")
    fig.suptitle(_wrapped(fig, prov), fontsize=8)
    fig.tight_layout()
    out["toy_reinforce"] = fig
    return out


def evidence_summary(cfg) -> str:
    """The evidence paragraph: every claim's verdict with its numbers, from the records."""
    cl = claims(cfg)
    parts = [f"Evidence run (`reprolib run {PAPER} --profile {cfg.profile}`): "
             + evidence_caption(cfg) + "."]
    for _, r in cl.iterrows():
        parts.append(f"{r['claim']}: {r['ours']} — **{r['verdict']}** ({r['reason']}).")
    return " ".join(parts)


# --------------------------------------------------------------------------- summary


def _test_images(recs) -> int | None:
    """The test-set size of retraining records: their ``test_images``, or (records written
    before it was stored) the smallest n for which every test accuracy in their histories is a
    whole number of correct images out of n; None if the records disagree or none fits."""
    sizes = {r["metrics"].get("test_images") for r in recs}
    if None not in sizes:
        return sizes.pop() if len(sizes) == 1 else None
    accs = [h["test_acc"] for r in recs for h in r["metrics"].get("history", [])
            if isinstance(h.get("test_acc"), float) and math.isfinite(h["test_acc"])]
    if len(accs) < 5:
        return None
    for n in range(1, 200_001):
        if all(abs(round(a * n / 100) * 100 / n - a) < 1e-9 for a in accs):
            return n
    return None


def _fmt_list(xs: list[str]) -> str:
    return xs[0] if len(xs) == 1 else " / ".join(xs)


def summary(cfg) -> str:
    """The MetaFormer-NAS paragraph (notebook and README), every number from the records:
    space sizes counted vs 2^N (N-1)!, the toy check, search time vs the paper's hours,
    Table 2 accuracies and the final policy entropy against a uniform policy's (with
    ``cfg.seeds``: :func:`evidence_summary`)."""
    if cfg.seeds:
        return evidence_summary(cfg)
    searches, toys = _searches(cfg), _toys(cfg)
    retrains = _records(cfg, "retrain-")
    ns = sorted(searches)
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
    if toys:
        parts = []
        for n, r in sorted(toys.items()):
            h = r["metrics"]
            first = next((i + 1 for i, p in enumerate(h["p_target"]) if p > 0.5), None)
            above = f"> 0.5 from update {first}" if first else "never above 0.5"
            parts.append(f"N = {n}: π(best) {h['p_target'][0]:.2g} → {h['p_target'][-1]:.2f} "
                         f"({above}), " + ("most likely cell = best" if h["converged"]
                                           else "the most likely cell is NOT the best"))
        upd = sorted({len(r["metrics"]["p_target"]) for r in toys.values()})
        ok = all(r["metrics"]["converged"] for r in toys.values())
        out.append(("On a toy reward with one known best cell the controller finds it"
                    if ok else "On a toy reward with one known best cell the controller does not "
                    "always find it")
                   + f" (seed {cfg.seed}, {_fmt_list([str(u) for u in upd])} updates; "
                   f"`toy_reinforce-{cfg.profile}.png`): " + "; ".join(parts) + ".")
    # the run
    if ns:
        c = searches[ns[0]]["config"]
        ep = sorted({int(r["metrics"]["epochs"]) for r in retrains.values()})
        ds = str(c["dataset"])
        ds = Path(ds[4:]).name if ds.startswith("npz:") else ds
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
        dev = report.device_label(list(searches.values()))
        times = " / ".join(f"{searches[n]['metrics']['search_time_s']:.0f} s (N = {n})" for n in ns)
        paper_h = [PAPER_TABLE1[n]["search_time_h"] for n in ns if n in PAPER_TABLE1]
        out.append(f"Search {times} on {dev}"
                   + (f", paper {' / '.join(f'{h:g} h' for h in paper_h)} on a Quadro RTX 8000 "
                      f"with 100 rounds" if paper_h else "") + ".")
    # Table 2
    if retrains:
        t2 = table2(cfg)
        raw = [r["metrics"]["acc"] for r in retrains.values()]      # table2's row order
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
        n_test = _test_images(list(retrains.values()))
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
            h = searches[n]["metrics"]["history"]
            uni = math.log(count_architectures(n))
            ents = [x["entropy"] for x in h]
            lo = min(range(len(ents)), key=ents.__getitem__)
            gaps.append(1 - ents[-1] / uni)
            parts.append(f"N = {n}: {ents[0]:.2f} after round 1, lowest {ents[lo]:.2f} "
                         f"(round {h[lo]['round']}), {ents[-1]:.2f} at the end, uniform "
                         f"ln {count_architectures(n):,} = {uni:.2f}")
        s = "Policy entropy (nats) " + "; ".join(parts) + ". "
        flat = [n for n, g in zip(ns, gaps) if g < 0.05]
        if flat:
            cands = []
            for n in flat:
                cs = [r for _, r in searches[n]["metrics"]["candidates"]][:5]
                cands.append((f"all {100 * cs[0]:.2f} %" if min(cs) == max(cs) else
                              f"{100 * min(cs):.2f}-{100 * max(cs):.2f} %") + f" (N = {n})")
            s += (f"For N = {' and '.join(map(str, flat))} the controller ends within "
                  f"{math.ceil(1000 * max(g for g in gaps if g < 0.05)) / 10:.1f} % of the uniform "
                  "policy's entropy: "
                  f"it has not concentrated on any cell. The {len(cs)} best derive candidates "
                  f"score {', '.join(cands)} on one {cfg.batch_size}-image validation batch, so "
                  "the one-batch reward does not separate cells at this scale and the searched "
                  "cells are close to random draws"
                  + ("; the toy check shows that the update itself works."
                     if toys and all(r["metrics"]["converged"] for r in toys.values()) else "."))
        for n, g in zip(ns, gaps):
            if g >= 0.05:
                s += (f" For N = {n} the final entropy is {100 * (1 - g):.0f} % of the uniform "
                      "policy's: the controller " + ("concentrated on a few cells, so the "
                      "derived cell is its preferred one." if g > 0.5 else
                      "moved away from uniform but is still spread over many cells."))
        out.append(s.strip())
    if cfg.profile != "paper":
        out.append(f"These are {cfg.profile}-profile numbers, not the paper's setting "
                   f"(`figures/{PAPER}/`).")
    return " ".join(out)


def _toy_figure(cfg, what: str):
    """The toy-reward check of every N: target probability per update (``what`` ends each
    panel title: the profile or the seed)."""
    import matplotlib.pyplot as plt

    toys = _toys(cfg)
    fig, axes = plt.subplots(1, len(toys), figsize=(5.5 * len(toys), 3.4), squeeze=False)
    for ax, (n, r) in zip(axes[0], sorted(toys.items())):
        h = r["metrics"]
        plot_toy(h, ax, f"toy reward, N = {n}: converged = {h['converged']} "
                        f"({len(h['p_target'])} updates, {what})")
    return fig, toys
