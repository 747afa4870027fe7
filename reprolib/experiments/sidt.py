"""SiDT pipeline (Xue et al., "Searching Intrinsic Dimensions of Vision Transformers",
../shared/papers/sidt.md): search -> prune at every ratio + fine-tune -> Swin-T sizes.

Stages (each one cached record under ``results/sidt/<profile>/``):

* ``search``: ``cfg.model`` with scores attached (:func:`reprolib.methods.sidt.attach_scores`),
  weights and scores trained with the ``search`` recipe plus ``l1_strength * sum |alpha|``;
  the scored model is saved (``stage.save_model``).
* ``finetune-p00``, ``finetune-p20``, ...: the searched model pruned at ratio 0 and at each of
  ``cfg.ratios`` (:func:`reprolib.methods.sidt.prune`, ``cfg.scope`` ranking), evaluated, then
  fine-tuned with the ``finetune`` recipe (warm start, no L1) and measured.
* ``reference``: the full Swin-T (``cfg.reference_model`` at ``cfg.reference_size`` px,
  ``cfg.reference_classes`` classes) pruned at every ratio uniformly and with the per-layer
  kept fractions the search learned, counted; plus the section 3 per-layer complexity.

``tables``, ``figures`` and ``summary`` read these records back (Table I, the complexity
table, Table II's backbone columns, the Swin-T sizes).
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pandas as pd
import torch

from reprolib.core import report
from reprolib.core.compressed import build
from reprolib.configs.sidt import PAPER_TABLE1, PAPER_TABLE2
from reprolib.core.device import resolve_device
from reprolib.errors import ReprolibError, choose
from reprolib.experiments import evidence
from reprolib.core.pipeline import (Stage, key_of, load_data, profile_note, run_stages,
                                         train_and_measure)
from reprolib.core.measure import count_flops, count_params
from reprolib.methods import sidt
from reprolib.core.registry import create_model
from reprolib.core.train import evaluate

PAPER = "sidt"
README_FIGURE = "tradeoff"
README_EVIDENCE_FIGURE = "evidence"
#: The pruning controls of the evidence profile (``cfg.controls``).
CONTROLS = ("uniform", "random")


# --------------------------------------------------------------------------- stages


def _ratios(cfg) -> list[float]:
    """0 (the searched model without its scores) and every ratio of ``cfg``, in order."""
    return [0.0, *(float(r) for r in cfg.ratios if float(r) != 0.0)]


def _tune_name(ratio: float) -> str:
    return f"finetune-p{round(100 * ratio):02d}"


def _plan(cfg) -> dict:
    """Every stage of ``cfg`` by role: ``baseline`` / ``search`` (by seed), ``tunes`` (by seed,
    then ratio), ``controls`` (by seed, then (control, ratio)), ``reference`` and ``stages``
    (all, in run order).  Without ``cfg.seeds`` only ``cfg.seed`` is there and no controls."""
    for k in cfg.controls:
        choose("SiDT control", k, CONTROLS)
    seeds = list(dict.fromkeys([cfg.seed, *(int(x) for x in cfg.seeds)]))
    plan = {"baseline": {}, "search": {}, "tunes": {}, "controls": {}, "stages": []}
    for seed in seeds:
        c = evidence.seeded(cfg, seed)
        sfx = evidence.seed_suffix(seed, cfg.seed)
        base = _baseline_stage(c, sfx)
        search = _search_stage(c, base, sfx)
        tunes = {r: _finetune_stage(c, r, search, sfx) for r in _ratios(cfg)}
        plan["baseline"][seed], plan["search"][seed], plan["tunes"][seed] = base, search, tunes
        plan["stages"] += [*([base] if base else []), search, *tunes.values()]
        if seed == cfg.seed:
            plan["reference"] = _reference_stage(cfg, list(tunes.values()))
            plan["stages"].append(plan["reference"])
        if cfg.seeds:
            ctl = {(k, r): _control_stage(c, k, r, search, sfx)
                   for k in cfg.controls for r in _ratios(cfg) if r > 0}
            plan["controls"][seed] = ctl
            plan["stages"] += list(ctl.values())
    return plan


def stages(cfg) -> list[Stage]:
    """``baseline`` (when ``baseline.epochs`` > 0), ``search``, ``finetune-p00`` and one
    ``finetune-pNN`` per ratio, ``reference``; with ``cfg.seeds`` (the ``evidence`` profile)
    also, per seed, the controls ``uniform-pNN`` / ``random-pNN`` and, for every seed but
    ``cfg.seed``, its own baseline / search / fine-tunes (names ending ``-s<seed>``)."""
    return _plan(cfg)["stages"]


def run(cfg, force: bool = False) -> dict[str, dict]:
    """Every stage (cached records); returns ``{stage name: record}``."""
    return run_stages(stages(cfg), force)


def _counts(model, size: int) -> dict:
    """Parameters, backbone parameters (classifier head excluded) and FLOPs at ``size`` px."""
    n = count_params(model)
    return {"params": n, "backbone_params": n - count_params(model.head),
            "flops": count_flops(model, (3, size, size))}


def _new_model(cfg, num_classes: int):
    """``cfg.model`` (with ``cfg.model_kwargs``) for ``num_classes`` at ``cfg.image_size``."""
    return create_model(cfg.model, num_classes=num_classes, img_size=cfg.image_size,
                        **cfg.model_kwargs)


def _model_key(cfg) -> dict:
    """``model_kwargs`` in a stage key only when given (older records keep their keys)."""
    return {"model_kwargs": dict(cfg.model_kwargs)} if cfg.model_kwargs else {}


def _baseline_stage(cfg, suffix: str = "") -> Stage | None:
    """The dense model trained with the ``baseline`` recipe (no scores, no L1); None when
    ``baseline.epochs`` is 0 (the search then starts from scratch)."""
    if cfg.baseline.epochs == 0:
        return None

    def fn(stage: Stage) -> dict:
        data = load_data(cfg, cfg.baseline)
        model = _new_model(cfg, data.num_classes)
        m = train_and_measure(model, data, cfg.baseline, stage.ckpt_dir, device=cfg.device,
                              desc="SiDT dense baseline", latency_repeats=0)
        stage.save_model(model)
        return {**m, "backbone_params": m["params"] - count_params(model.head)}

    key = key_of(cfg, "dataset", "image_size", "model", "baseline", **_model_key(cfg))
    return Stage(cfg, f"baseline{suffix}", key, fn)


def _search_stage(cfg, baseline: Stage | None = None, suffix: str = "") -> Stage:
    def fn(stage: Stage) -> dict:
        data = load_data(cfg, cfg.search)
        model = sidt.attach_scores(baseline.model() if baseline is not None
                                   else _new_model(cfg, data.num_classes))
        m = train_and_measure(model, data, cfg.search, stage.ckpt_dir, device=cfg.device,
                              desc="SiDT search", latency_repeats=0,
                              extra_loss=lambda mod: sidt.l1_penalty(mod, cfg.l1_strength))
        stage.save_model(model)
        sc = sidt.scores(model)
        s = torch.cat([a.detach().abs().flatten().cpu() for a in sc.values()])
        q = torch.quantile(s, torch.tensor([0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0]))
        return {**m, "backbone_params": m["params"] - count_params(model.head),
                "n_scores": int(s.numel()), "score_quantiles": [float(v) for v in q],
                "scores": {n: [round(float(v), 5) for v in a.detach()] for n, a in sc.items()}}

    key = key_of(cfg, "dataset", "image_size", "model", "l1_strength", "search",
                 **_model_key(cfg))
    return Stage(cfg, f"search{suffix}", key, fn, after=[baseline] if baseline else [])


def _finetune_stage(cfg, ratio: float, search: Stage, suffix: str = "") -> Stage:
    def fn(stage: Stage) -> dict:
        data = load_data(cfg, cfg.finetune)
        dev = resolve_device(cfg.device)
        model = sidt.prune(search.model(), ratio, cfg.scope)
        acc0 = evaluate(model.to(dev), data.test, dev)["acc"]
        m = train_and_measure(model, data, cfg.finetune, stage.ckpt_dir, device=cfg.device,
                              desc=f"SiDT fine-tune PR={ratio:g}",
                              latency_batch=cfg.latency_batch,
                              latency_repeats=cfg.latency_repeats)
        stage.save_model(model)
        a = sidt.arch(model)
        return {**m, "acc_pruned_no_ft": acc0, "ratio": ratio, "scope": cfg.scope,
                "search_epochs": search.metrics()["epochs"], "test_images": data.test_size,
                "backbone_params": m["params"] - count_params(model.head),
                "attn_dims": a["attn_dims"], "mlp_dims": a["mlp_dims"], "swin": a["swin"]}

    key = key_of(cfg, "dataset", "image_size", "scope", "finetune", "latency_batch",
                 "latency_repeats", ratio=ratio)
    return Stage(cfg, f"{_tune_name(ratio)}{suffix}", key, fn, after=[search])


def _ranking(model, control: str, seed: int):
    """(scope, ranking) of a control: "uniform" ranks the learned scores within each layer;
    "random" ranks random values (from ``seed``) over all layers."""
    if control == "uniform":
        return "layer", None
    if control == "random":
        g = torch.Generator().manual_seed(int(seed))
        return "global", {n: torch.rand(a.numel(), generator=g)
                          for n, a in sidt.scores(model).items()}
    raise ReprolibError(f"unknown SiDT control {control!r}; valid: {', '.join(CONTROLS)}")


def matched_prune(model, target_params: int, control: str, seed: int = 0, steps: int = 30):
    """``model`` (scored) pruned by ``control`` at the ratio whose parameter count is closest
    to ``target_params`` (bisection on the ratio; the count falls as the ratio grows).
    Returns ``(pruned model, ratio)``."""
    scope, ranking = _ranking(model, control, seed)
    lo, hi = 0.0, 0.999
    best = None
    for _ in range(steps):
        mid = (lo + hi) / 2
        n = _count_pruned(model, mid, scope, ranking)
        if best is None or abs(n - target_params) < abs(best[1] - target_params):
            best = (mid, n)
        if n == target_params:
            break
        lo, hi = (mid, hi) if n > target_params else (lo, mid)
    return sidt.prune(model, best[0], scope, ranking=ranking), best[0]


def _count_pruned(model, ratio: float, scope: str, ranking) -> int:
    """Parameters of ``sidt.prune(model, ratio, scope, ranking)`` by the closed form (no
    model is built)."""
    keep = sidt.keep_indices(model, ratio, scope, ranking=ranking)
    dims = {"attn_dims": {n: len(i) for n, i in keep.items() if n.endswith(".attn")},
            "mlp_dims": {n: len(i) for n, i in keep.items() if n.endswith(".mlp")}}
    return sidt.param_count_closed_form(model, dims)


def _control_stage(cfg, control: str, ratio: float, search: Stage, suffix: str = "") -> Stage:
    """The searched model pruned by ``control`` to the parameter count of the learned pruning
    at ``ratio``, then fine-tuned exactly as the learned one."""
    def fn(stage: Stage) -> dict:
        data = load_data(cfg, cfg.finetune)
        dev = resolve_device(cfg.device)
        scored = search.model()
        target = count_params(sidt.prune(scored, ratio, cfg.scope))
        model, used = matched_prune(scored, target, control, seed=stage.seed)
        acc0 = evaluate(model.to(dev), data.test, dev)["acc"]
        m = train_and_measure(model, data, cfg.finetune, stage.ckpt_dir, device=cfg.device,
                              desc=f"SiDT {control} PR={ratio:g}",
                              latency_batch=cfg.latency_batch,
                              latency_repeats=cfg.latency_repeats)
        stage.save_model(model)
        a = sidt.arch(model)
        return {**m, "acc_pruned_no_ft": acc0, "ratio": ratio, "control": control,
                "control_ratio": used, "target_params": target, "test_images": data.test_size,
                "backbone_params": m["params"] - count_params(model.head),
                "attn_dims": a["attn_dims"], "mlp_dims": a["mlp_dims"]}

    key = key_of(cfg, "dataset", "image_size", "scope", "finetune", "latency_batch",
                 "latency_repeats", ratio=ratio, control=control)
    name = f"{control}-p{round(100 * ratio):02d}{suffix}"
    return Stage(cfg, name, key, fn, after=[search])


def _reference_stage(cfg, tunes: list[Stage]) -> Stage:
    ratios = _ratios(cfg)

    def fn(stage: Stage) -> dict:
        size = cfg.reference_size
        base = create_model(cfg.reference_model, num_classes=cfg.reference_classes,
                            img_size=size).eval()
        scored = sidt.attach_scores(copy.deepcopy(base))
        rows, layers = [], []
        for r in ratios:                      # uniform: every layer loses the fraction r
            m = sidt.prune(scored, r, "layer")
            rows.append({"kind": "uniform", "ratio": r, **_counts(m, size)})
            layers += [{"ratio": r, **row} for row in sidt.layer_complexity(m, (3, size, size))]
        for t in tunes:                       # learned: the searched per-layer kept fractions
            mt = t.metrics()
            m = build(sidt.compressed_spec(sidt.transfer_dims(mt, base)))
            rows.append({"kind": "learned", "ratio": mt["ratio"], **_counts(m, size)})
        return {"rows": rows, "layers": layers}

    key = key_of(cfg, "reference_model", "reference_classes", "reference_size", ratios=ratios)
    return Stage(cfg, "reference", key, fn, after=tunes)


# --------------------------------------------------------------------------- records -> frames


def _read(cfg) -> dict:
    """The records of ``cfg.seed``'s stages: search, fine-tunes (by ratio), reference,
    provenance."""
    plan = _plan(cfg)
    search = plan["search"][cfg.seed].record()
    tunes = sorted((s.record() for s in plan["tunes"][cfg.seed].values()),
                   key=lambda r: r["metrics"]["ratio"])
    ref = plan["reference"].record()
    base = plan["baseline"].get(cfg.seed)
    base = base.record() if base is not None else None
    prov = report.provenance(cfg, pd.DataFrame([r for r in (base, search, *tunes, ref) if r]))
    return {"baseline": base, "search": search, "tunes": tunes, "reference": ref,
            "prov": prov, "note": profile_note(cfg)}


def _ref_label(cfg) -> str:
    return "Swin-T" if cfg.reference_model == "swin_t" else f"`{cfg.reference_model}`"


def _table1(r: dict) -> pd.DataFrame:
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


def _complexity(r: dict) -> pd.DataFrame:
    cx = pd.DataFrame(r["reference"]["metrics"]["layers"])
    cx = cx[cx["layer"].str.contains(r"blocks\.0\.")].copy()     # first block of each stage
    cx["measured (MMAC)"] = (cx["measured_macs"] / 1e6).round(3)
    cx["formula (MMAC)"] = (cx["formula_macs"] / 1e6).round(3)
    cx["formula"] = cx["kind"].map({"W-MSA": "4nd(rho d) + 2nM^2(rho d)", "MLP": "2nd(rho d_m)"})
    cx = cx[["ratio", "stage", "kind", "n", "d", "M", "kept", "full", "rho", "measured (MMAC)",
             "formula (MMAC)", "formula"]].sort_values(["ratio", "stage", "kind"])
    return cx.reset_index(drop=True)


def _table2(r: dict) -> pd.DataFrame:
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


def _sizes(r: dict) -> pd.DataFrame:
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


def tables(cfg) -> dict[str, pd.DataFrame]:
    """``table1``: Table I (ours: accuracy before / after fine-tuning, params, FLOPs, CPU
    latency of ``cfg.model``; Swin-T pruned with the learned and with uniform widths; the
    paper's columns); ``complexity``: measured vs closed-form MACs of the first block of each
    Swin-T stage at every ratio (section 3); ``table2``: Table II's backbone columns;
    ``swin_t``: the reference Swin-T's params / FLOPs at every ratio, uniform and learned."""
    r = _read(cfg)
    ours, ref = f"Ours: {r['prov']}{r['note']}", _ref_label(cfg)
    size = f"{cfg.reference_size} px, {cfg.reference_classes} classes"
    t1 = _table1(r)
    t1.attrs["caption"] = (f"SiDT Table I. {ours}. {report.FLOPS_NOTE}. Swin-T columns: "
                           f"{ref} at {size}. Paper: Table I, CIFAR-100, Swin-T.")
    cx = _complexity(r)
    cx.attrs["caption"] = (f"SiDT section 3: per-layer MACs of {ref} ({size}) measured vs "
                           f"formula, first block of each stage, uniform pruning. {ours}. "
                           f"{report.FLOPS_NOTE}.")
    t2 = _table2(r)
    t2.attrs["caption"] = f"SiDT Table II backbone columns. {ours}."
    sw = _sizes(r)
    sw.attrs["caption"] = (f"SiDT: {ref} ({size}) pruned uniformly (every layer loses the "
                           f"ratio) and with the per-layer kept fractions of our search. {ours}. "
                           f"{report.FLOPS_NOTE}. Paper: Table I.")
    out = {"table1": t1, "complexity": cx, "table2": t2, "swin_t": sw}
    if cfg.seeds:
        out.update(evidence_tables(cfg))
    return out


# --------------------------------------------------------------------------- figures


def figures(cfg) -> dict:
    """``tradeoff``: accuracy change vs relative params and vs relative FLOPs (ours and the
    paper's Table I, each relative to its own unpruned model) and Swin-T params at each ratio;
    ``complexity``: section 3 MACs per layer vs rho (formula lines, measured dots) and
    measured CPU latency vs FLOPs of our pruned models."""
    r = _read(cfg)
    title = f"{r['prov']}{r['note']}"
    out = {"tradeoff": _plot_tradeoff(cfg, r, f"SiDT Table I as plots — {title}"),
           "complexity": _plot_complexity(cfg, r, f"Section 3 complexity and measured "
                                                  f"latency — {title}")}
    if cfg.seeds:
        out["evidence"] = plot_evidence(cfg)
    return out


def _plot_tradeoff(cfg, r: dict, title: str):
    import matplotlib.pyplot as plt

    t = _table1(r)
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
    sw = _sizes(r)
    for kind, g in sw.groupby("kind"):
        axes[2].plot(g["ratio"], g["params (M)"], marker="o", label=f"ours, {kind}")
    axes[2].scatter(list(PAPER_TABLE1), [v[1] for v in PAPER_TABLE1.values()], marker="x",
                    color="black", zorder=5, label="paper")
    axes[2].set_xlabel("pruning ratio (fraction of dimensions removed)")
    axes[2].set_ylabel(f"{_ref_label(cfg).strip('`')} params (M), "
                       f"{cfg.reference_classes} classes")
    axes[2].legend(fontsize=7)
    axes[2].grid(alpha=0.3)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def _plot_complexity(cfg, r: dict, title: str):
    import matplotlib.pyplot as plt

    cx = _complexity(r)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for (kind, st), g in cx.groupby(["kind", "stage"]):
        g = g.sort_values("rho")
        line, = axes[0].plot(g["rho"], g["formula (MMAC)"], ls="-", lw=1,
                             label=f"{kind} stage {st + 1}")
        axes[0].scatter(g["rho"], g["measured (MMAC)"], color=line.get_color(), s=18)
    axes[0].set_xlabel("rho (kept fraction of the layer)")
    axes[0].set_ylabel("MMAC (lines: section 3 formula; dots: measured)")
    axes[0].set_title(f"{_ref_label(cfg).strip('`')} {cfg.reference_size} px, uniform pruning",
                      fontsize=9)
    axes[0].legend(fontsize=6, ncol=2)
    axes[0].grid(alpha=0.3)
    t1 = _table1(r)
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


def _test_images(tunes: list[dict]) -> int | None:
    """The size of the test set the accuracies were measured on: recorded by the fine-tune
    stages (``test_images``); for records made before it was, the smallest ``n`` for which
    every recorded test accuracy is ``100 k / n`` with an integer ``k`` (None if none <= 10^6)."""
    for t in tunes:
        if "test_images" in t["metrics"]:
            return int(t["metrics"]["test_images"])
    accs = np.array([h["test_acc"] for t in tunes for h in t["metrics"].get("history", [])
                     if "test_acc" in h] + [t["metrics"]["acc_pruned_no_ft"] for t in tunes])
    if len(accs) < 4:
        return None
    for lo in range(1, 1_000_001, 100_000):
        n = np.arange(lo, lo + 100_000)
        k = accs[:, None] * n[None, :] / 100.0
        ok = np.all(np.abs(k - np.round(k)) < 1e-6, axis=0)
        if ok.any():
            return int(n[ok.argmax()])
    return None


def _join(values, fmt: str) -> str:
    return " / ".join(format(v, fmt) for v in values)


def summary(cfg) -> str:
    """The SiDT paragraph of the README, every number read from the records: the reference
    Swin-T's size, its pruned sizes (uniform and learned) beside the paper's, whether the
    section 3 formulas equal the measured MACs, and the trained part (accuracy at every
    ratio, epochs, time) with how it compares to the noise of a single run."""
    r = _read(cfg)
    p = cfg.profile
    s, ft = r["search"]["metrics"], [t["metrics"] for t in r["tunes"]]
    ref = r["reference"]["metrics"]
    rows = {(x["kind"], x["ratio"]): x for x in ref["rows"]}
    ratios = [m["ratio"] for m in ft]
    pr = [x for x in ratios if x > 0]
    u0 = rows[("uniform", 0.0)]
    name = _ref_label(cfg)

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
        base += (f"; pruned by the same fraction in every layer it counts {_join(uni, '.2f')} M "
                 f"at {_join([100 * x for x in pr], '.0f')} %")
        paper = [PAPER_TABLE1[round(x, 2)][1] for x in pr if round(x, 2) in PAPER_TABLE1]
        if len(paper) == len(pr):
            base += f" (paper {_join(paper, '.2f')} M)"
        if len(lrn) == len(pr):
            base += (f", and with the per-layer kept fractions our search learned "
                     f"{_join(lrn, '.2f')} M")
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
                 f"dimensions and {_join([100 * k / f for k, f in mlp.values()], '.0f')} % of "
                 f"the MLP units of stages {_join([i + 1 for i in mlp], 'd')}")
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
    ds = cfg.dataset[4:].rsplit("/", 1)[-1] if cfg.dataset.startswith("npz:") else cfg.dataset
    out.append(f"Trained part (`{p}` profile): `{cfg.model}` on `{ds}`, {s['epochs']} search "
               f"+ {ft[0]['epochs']} fine-tune epochs "
               f"per ratio, {wall:.0f} min on {dev}: {_join(accs, '.1f')} % top-1 after "
               f"fine-tuning at PR {_join([100 * x for x in ratios], '.0f')} % "
               f"({_join([m['acc_pruned_no_ft'] for m in ft], '.1f')} % right after pruning; "
               f"the searched model: {s['acc']:.1f} %) (`figures/sidt/table1-{p}.md`).")
    n = _test_images(r["tunes"])
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
                   f"sizes are: {_join([x['backbone_params'] / 1e6 for x in t2], '.2f')} M at "
                   f"{_join([100 * x for x in PAPER_TABLE2], '.0f')} % uniform pruning "
                   f"(paper {_join([v[3] for v in PAPER_TABLE2.values()], 'g')} M).")
    return " ".join(out)


# --------------------------------------------------------------------------- evidence
# The claims test (profile ``evidence``: ``cfg.seeds``): per seed a dense baseline, a search
# from it, then learned pruning and the controls at equal parameters, each fine-tuned alike.

_CONDITIONS = ("unpruned", "learned", *CONTROLS)
_STYLES = {"learned": {"color": "tab:red", "marker": "o"},
           "uniform": {"color": "tab:blue", "marker": "s", "ls": "--"},
           "random": {"color": "tab:grey", "marker": "^", "ls": ":"}}


def _need_seeds(cfg) -> None:
    if not cfg.seeds:
        raise ReprolibError(f"sidt profile {cfg.profile!r} has no seeds: the claims are tested "
                            f"by the evidence profile (reprolib run sidt --profile evidence)")


def evidence_frame(cfg) -> pd.DataFrame:
    """One row per (seed, condition, ratio): ``condition`` "unpruned" (the searched model at
    ratio 0, fine-tuned alike), "learned" (global |score| ranking at ``ratio``) or a control
    pruned to the learned model's parameter count; params, FLOPs, accuracy right after pruning
    (``acc_no_ft``) and after fine-tuning (``acc``), the ratio the control needed."""
    _need_seeds(cfg)
    plan = _plan(cfg)
    rows = []
    for seed in plan["search"]:
        if seed not in (int(x) for x in cfg.seeds):
            continue
        for r, st in plan["tunes"][seed].items():
            m = st.metrics()
            rows.append({"seed": seed, "condition": "unpruned" if r == 0 else "learned",
                         "ratio": r, "control_ratio": r, **_row(m)})
        for (k, r), st in plan["controls"][seed].items():
            m = st.metrics()
            rows.append({"seed": seed, "condition": k, "ratio": r,
                         "control_ratio": m["control_ratio"], **_row(m)})
    return pd.DataFrame(rows, columns=["seed", "condition", "ratio", "control_ratio", "params",
                                       "flops", "acc_no_ft", "acc"])


def _row(m: dict) -> dict:
    return {"params": m["params"], "flops": m["flops"], "acc_no_ft": m["acc_pruned_no_ft"],
            "acc": m["acc"]}


def _evidence_records(cfg) -> list[dict]:
    plan = _plan(cfg)
    return [s.record() for s in plan["stages"] if s is not plan["reference"]]


def _baseline_histories(cfg) -> tuple[list, str]:
    """The histories the plateau rule reads (the dense baseline per seed; the search when
    there is no baseline) and which phase that is."""
    plan = _plan(cfg)
    seeds = [int(x) for x in cfg.seeds]
    if cfg.baseline.epochs:
        return [plan["baseline"][s].metrics()["history"] for s in seeds], "the dense baseline"
    return [plan["search"][s].metrics()["history"] for s in seeds], "the search"


def _evidence_note(cfg) -> str:
    """Model, data, seeds, epochs, plateau decision, cost and device of the evidence run."""
    hist, what = _baseline_histories(cfg)
    kw = ", ".join(f"{k}={v}" for k, v in cfg.model_kwargs.items())
    model = f"`{cfg.model}`" + (f" ({kw})" if kw else "")
    ds = cfg.dataset[4:].rsplit("/", 1)[-1] if cfg.dataset.startswith("npz:") else cfg.dataset
    seeds = ", ".join(str(int(x)) for x in cfg.seeds)
    return (f"{model} on `{ds}`, seeds {seeds}; dense baseline {cfg.baseline.epochs} ep, search "
            f"{cfg.search.epochs} ep (L1 {cfg.l1_strength:g}) from it, every pruned model "
            f"fine-tuned {cfg.finetune.epochs} ep alike; {evidence.plateau_note(hist, what=what)}; "
            f"{evidence.cost_note(_evidence_records(cfg))}{profile_note(cfg)}")


def evidence_tables(cfg) -> dict[str, pd.DataFrame]:
    """``evidence``: per condition and ratio, params and accuracy before / after fine-tuning
    as mean ± std over the seeds, beside the paper's Table I; ``evidence_runs``: every seed."""
    df = evidence_frame(cfg)
    note = _evidence_note(cfg)
    rows = []
    order = {c: i for i, c in enumerate(_CONDITIONS)}
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
    tab.attrs["caption"] = (f"SiDT evidence: learned pruning vs controls at equal parameters "
                            f"(mean ± std over seeds). {note}. Paper: Table I (CIFAR-100, "
                            f"Swin-T, one run, no control).")
    runs = df.assign(params=df["params"], acc=df["acc"].round(2),
                     acc_no_ft=df["acc_no_ft"].round(2), control_ratio=df["control_ratio"].round(4))
    runs.attrs["caption"] = f"SiDT evidence, every seed. {note}."
    return {"evidence": tab, "evidence_runs": runs, "claims": claims(cfg)}


def _margin(cfg, df: pd.DataFrame) -> tuple[float, str]:
    if cfg.kept_margin > 0:
        return cfg.kept_margin, f"margin {cfg.kept_margin:g} pp (set)"
    n = int(_plan(cfg)["tunes"][int(cfg.seeds[0])][0.0].metrics()["test_images"])
    acc0 = df[df["condition"] == "unpruned"]["acc"].mean()
    m = math.sqrt(2) * evidence.binomial_se(acc0, n)
    return m, (f"margin {m:.1f} pp = √2 × the binomial standard error of the unpruned "
               f"accuracy on {n:,} test images")


def claims(cfg) -> pd.DataFrame:
    """SiDT's claims tested on the records of the evidence stages: at every ratio, learned
    widths keep more accuracy than each control at equal parameters (Welch's t-test over the
    seeds); at 20 % and 40 %, the fine-tuned accuracy is within a margin of the unpruned
    model's (non-inferiority on the 95 % CI)."""
    empty = evidence.not_run(PAPER, cfg, _plan(cfg)["stages"])
    if empty is not None:
        return empty
    df = evidence_frame(cfg)
    acc = {(c, r): g["acc"].tolist() for (c, r), g in df.groupby(["condition", "ratio"])}
    prm = df.groupby(["condition", "ratio"])["params"].mean()
    base = acc[("unpruned", 0.0)]
    rows = []
    for r in sorted(x for x in _ratios(cfg) if x > 0):
        p = PAPER_TABLE1.get(round(r, 2))
        paper = (f"no control in the paper; Table I at PR {r:.0%}: {p[0]} % at {p[1]} M"
                 if p else "no control in the paper")
        for k in cfg.controls:
            c = evidence.compare(acc[("learned", r)], acc[(k, r)])
            rows.append(evidence.claim_row(
                f"PR {r:.0%}: learned widths keep more accuracy than {k} pruning at equal "
                f"parameters",
                f"learned {evidence.fmt(acc[('learned', r)])} % at "
                f"{prm[('learned', r)] / 1e6:.3f} M vs {k} {evidence.fmt(acc[(k, r)])} % at "
                f"{prm[(k, r)] / 1e6:.3f} M", paper, c["verdict"], c["reason"]))
    margin, why = _margin(cfg, df)
    for r in (0.2, 0.4):
        if ("learned", r) not in acc:
            continue
        p = PAPER_TABLE1[r]
        c = evidence.compare(acc[("learned", r)], base, margin=margin)
        rows.append(evidence.claim_row(
            f"PR {r:.0%}: accuracy kept within noise of the unpruned model",
            f"{evidence.fmt(acc[('learned', r)])} % vs unpruned {evidence.fmt(base)} %",
            f"{p[0]} % vs {PAPER_TABLE1[0.0][0]} % unpruned (Table I, one run)",
            c["verdict"], f"{c['reason']}; {why}"))
    out = evidence.claims_frame(rows)
    out.attrs["caption"] = (f"SiDT claims (`{cfg.profile}` profile): {_evidence_note(cfg)}. "
                            f"Controls are pruned from the same searched model to the learned "
                            f"model's parameter count (bisection on their ratio). 'Better': "
                            f"Welch's t-test, p < 0.05; 'kept': 95 % CI of the difference "
                            f"against the margin.")
    return out


def plot_evidence(cfg):
    """Three panels: accuracy after fine-tuning vs params, accuracy right after pruning vs
    params (mean ± std over seeds per condition; the unpruned model as a band), and the
    dense baseline's test accuracy per epoch and seed (what the plateau rule read)."""
    import matplotlib.pyplot as plt

    df = evidence_frame(cfg)
    df = df.assign(params_M=df["params"] / 1e6)
    pts = df[df["condition"] != "unpruned"].copy()
    # each condition at the mean params of its ratio group: the x of equal-parameter points
    pts["x"] = pts.groupby("ratio")["params_M"].transform("mean")
    un = df[df["condition"] == "unpruned"]
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.4))
    for ax, col, what in ((axes[0], "acc", f"after {cfg.finetune.epochs} ep fine-tune"),
                          (axes[1], "acc_no_ft", "right after pruning")):
        evidence.plot_mean_std(ax, pts, "x", col, "condition", order=["learned", *cfg.controls],
                               styles=_STYLES, offset=0.04)
        m, sd, n = evidence.mean_std(un[col])
        ax.axhspan(m - sd, m + sd, color="tab:green", alpha=0.15)
        ax.axhline(m, color="tab:green", lw=1, label=f"unpruned ({un['params_M'].mean():.3f} M)")
        for r, g in pts.groupby("ratio"):
            ax.annotate(f"PR {r:.0%}", (g["x"].iloc[0], ax.get_ylim()[0]), fontsize=7,
                        xytext=(0, 3), textcoords="offset points", ha="center")
        ax.set_xlabel("parameters (M), each control pruned to the learned model's count")
        ax.set_ylabel(f"test accuracy (%), {what}")
        ax.set_title(f"accuracy {what}: mean ± std over {n} seeds", fontsize=9)
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    hist, what = _baseline_histories(cfg)
    for seed, h in zip(cfg.seeds, hist):
        h = [x for x in h if x.get("test_acc") is not None]
        axes[2].plot([x["epoch"] for x in h], [x["test_acc"] for x in h], marker=".",
                     label=f"seed {seed}")
    axes[2].set_xlabel("epoch")
    axes[2].set_ylabel(f"test accuracy (%) of {what}")
    axes[2].set_title(textwrap_fill(evidence.plateau_note(hist, what=what), 70), fontsize=8)
    axes[2].legend(fontsize=7)
    axes[2].grid(alpha=0.3)
    fig.suptitle(textwrap_fill(f"SiDT evidence — {_evidence_note(cfg)}", 190), fontsize=8)
    fig.tight_layout()
    return fig


def textwrap_fill(text: str, width: int) -> str:
    import textwrap

    return textwrap.fill(text, width)
