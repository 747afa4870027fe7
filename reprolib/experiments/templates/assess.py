"""The templates evidence run (``cfg.seeds``): Table 1 and the runs table over the seeds
(mean ± std), the claims table and the evidence paragraph, from the records of the ``cell``
stages (found by their tags: ``graph.select("cell", dataset=..., seed=...)``).

The claims (:func:`evidence_claims`): per model, (1) the paper's best template against the
base model at equal width, (2-4) a template reaching the base model's accuracy with fewer
parameters / less training memory / less inference time, and (5) the paper's "less than 5 %
variation across templates"."""

from __future__ import annotations

import math

import pandas as pd

from reprolib.configs.templates import PAPER_TABLE1
from reprolib.core import report
from reprolib.core.claims import verdict_rule
from reprolib.core.pipeline import profile_note
from reprolib.experiments import evidence as ev
from reprolib.experiments.templates.graph import model_widths
from reprolib.experiments.templates.report import (LABELS, PAPER, _graph, _label, _paper_key,
                                                   _paper_model, cell_stats, grid_frame,
                                                   table2)
from reprolib.methods.templates import TEMPLATES


#: Figures 3-5's resources as the claims name them: (metric column, words, unit scale, unit).
RESOURCES = (("params", "parameters", 1e-6, "M"),
             ("peak_memory_bytes", "training memory (batch 64)", 1e-6, "MB"),
             ("latency_us_per_image", "inference time", 1.0, "us/image"))


def seed_accuracies(cfg) -> dict[tuple[str, str, float], list[float]]:
    """Test accuracy (%) of every grid cell of ``cfg.dataset``, one value per seed (seed
    order): ``{(model, template, width): [acc, ...]}``, from the ``cell`` stages' tags."""
    out: dict[tuple[str, str, float], list[float]] = {}
    cells = sorted(_graph(cfg).select("cell", dataset=cfg.dataset), key=lambda s: s.tags["seed"])
    for s in cells:
        t = s.tags
        out.setdefault((t["model"], t["template"], float(t["width"])), []).append(
            float(s.metrics()["acc"]))
    return out


def seed_records(cfg) -> dict[tuple[str, str, float], list[dict]]:
    """The records of :func:`seed_accuracies`' cells, in the same (seed) order."""
    out: dict[tuple[str, str, float], list[dict]] = {}
    cells = sorted(_graph(cfg).select("cell", dataset=cfg.dataset), key=lambda s: s.tags["seed"])
    for s in cells:
        t = s.tags
        out.setdefault((t["model"], t["template"], float(t["width"])), []).append(s.record())
    return out


def plateau_checks(cfg) -> dict[tuple[str, str, float], dict]:
    """The longer-run plateau check (``cfg.check_epochs``): per cell of ``cfg.dataset`` whose
    check stage has a record, the first seed's accuracy at the recipe's epochs and at
    ``check_epochs``, the gain and whether it is below ``cfg.plateau_margin`` (converged).
    A schedule that anneals to lr ~ 0 flattens the last epochs of any run; a run twice as long
    that gains no more than the margin is what says the recipe had converged."""
    out = {}
    g = _graph(cfg)
    short = {(s.tags["model"], s.tags["template"], float(s.tags["width"])): s
             for s in g.select("cell", dataset=cfg.dataset)
             if cfg.seeds and s.tags["seed"] == cfg.seeds[0]}
    for s in g.select("check", dataset=cfg.dataset):
        key = (s.tags["model"], s.tags["template"], float(s.tags["width"]))
        if not s.done or key not in short or not short[key].done:
            continue
        a, b = float(short[key].metrics()["acc"]), float(s.metrics()["acc"])
        out[key] = {"short": a, "long": b, "gain": b - a, "epochs": cfg.train.epochs,
                    "check_epochs": cfg.check_epochs,
                    "converged": b - a < cfg.plateau_margin}
    return out


def _converged(checks: dict, keys) -> bool | None:
    """False when the longer run of any of ``keys`` gained the margin or more, True when all
    were checked and none did, None when some were not checked."""
    got = [checks[k]["converged"] for k in keys if k in checks]
    if not all(got):
        return False
    return True if got and len(got) == len(list(keys)) else None


def plateau_table(cfg) -> pd.DataFrame:
    """The longer-run check per cell: accuracy of the first seed at the recipe's epochs and
    at ``check_epochs``, the gain, converged or not."""
    rows = [{"model": m, "template": t, "width": w, "seed": cfg.seeds[0],
             f"acc at {c['epochs']} ep": c["short"], f"acc at {c['check_epochs']} ep": c["long"],
             "gain": c["gain"], "converged": "yes" if c["converged"] else "no"}
            for (m, t, w), c in plateau_checks(cfg).items()]
    out = pd.DataFrame(rows)
    out.attrs["caption"] = (
        f"Longer-run plateau check: every cell once more at seed {cfg.seeds[0] if cfg.seeds else ''}"
        f" for {cfg.check_epochs} epochs (the recipe otherwise alike); converged = the longer "
        f"run gains less than {cfg.plateau_margin:g} point(s) · {evidence_caption(cfg)}")
    return out


def _stats(cfg) -> pd.DataFrame:
    """:func:`cell_stats` of the cells of ``cfg.dataset``."""
    return cell_stats(grid_frame(cfg, dataset=cfg.dataset)).reset_index(drop=True)


def _wall_minutes(cfg) -> float:
    return sum(float(s.record().get("wall_time_s", 0.0))
               for s in _graph(cfg).select("cell")) / 60


def evidence_caption(cfg) -> str:
    """Profile, data, models, templates, widths, seeds, recipe, the plateau rule's outcome,
    wall time and device of the evidence run."""
    df = grid_frame(cfg)
    st = cell_stats(df)
    n_plat, n_runs = int(st["plateaued"].sum()), int(st["n"].sum())
    widths = ", ".join(f"{w:g}" for w in sorted({float(w) for w in df["config.width"]}))
    r = cfg.train
    return (f"{report.provenance(cfg, df)} · {len(cfg.models)} models × {len(cfg.templates)} "
            f"templates × widths {widths} × seeds {', '.join(map(str, cfg.seeds))} "
            f"({n_runs} runs; {r.optimizer} lr {r.lr:g}, {r.schedule}, batch {r.batch_size}) · "
            f"plateau reached in {n_plat} of {n_runs} runs (mean test accuracy of the last 3 "
            f"epochs < 1 point above the 3 before; evidence.plateaued){_check_note(cfg)} · "
            "memory: peak of one "
            f"training step at batch {cfg.memory_batch} on the CPU; time: median of "
            f"{cfg.latency_repeats} batch-{cfg.latency_batch} CPU passes (the paper: Titan X) "
            f"· wall time {_wall_minutes(cfg):.0f} min (sum of the stages){profile_note(cfg)}")


def _check_note(cfg) -> str:
    """The longer-run check in the caption: how many cells converged, the median gain."""
    if not (cfg.seeds and cfg.check_epochs):
        return ""
    ch = plateau_checks(cfg)
    if not ch:
        return f"; longer-run check ({cfg.check_epochs} epochs): no records yet"
    gains = sorted(c["gain"] for c in ch.values())
    k = sum(c["converged"] for c in ch.values())
    return (f"; longer-run check (seed {cfg.seeds[0]} at {cfg.check_epochs} epochs): gain < "
            f"{cfg.plateau_margin:g} point in {k} of {len(ch)} cells (median gain "
            f"{gains[len(gains) // 2]:+.2f}, max {gains[-1]:+.2f})")


def evidence_table1(cfg) -> pd.DataFrame:
    """Table 1 over the seeds: per model and width, the test accuracy of every template
    (mean ± std, n seeds) beside the paper's (width 1.0, 160 epochs)."""
    accs = seed_accuracies(cfg)
    rows = []
    for m in cfg.models:
        ppr = PAPER_TABLE1.get(_paper_key(cfg.dataset), {}).get(_paper_model(m), {})
        for w in model_widths(cfg, m):
            row = {"model": m, "width": float(w)}
            for t in TEMPLATES:
                row[f"{LABELS[t]} ours"] = ev.fmt(accs[(m, t, float(w))], 2) \
                    if (m, t, float(w)) in accs else ""
                row[f"{LABELS[t]} paper"] = ppr.get(t, math.nan)
            rows.append(row)
    out = pd.DataFrame(rows)
    out.attrs["caption"] = (f"Table 1 (mean ± std over seeds): test accuracy (%) · "
                            f"{evidence_caption(cfg)} · paper columns: width 1.0, 160 epochs, "
                            "full CIFAR-10")
    return out


def evidence_runs(cfg) -> pd.DataFrame:
    """Every grid cell over the seeds: accuracy (mean ± std), params, FLOPs, memory, latency
    (mean ± std), the ratio of each to the base model at the same width, epochs, plateaus."""
    st = _stats(cfg)
    rows = []
    for _, r in st.iterrows():
        b = st[(st["model"] == r["model"]) & (st["template"] == "base")
               & (st["width"] == r["width"])]
        b = b.iloc[0] if len(b) else None
        ratio = (lambda c: r[c] / b[c] if b is not None and b[c] else math.nan)
        rows.append({"model": r["model"], "template": r["template"], "width": r["width"],
                     "acc (%)": f"{r['acc']:.2f} ± {r['acc_std']:.2f}", "seeds": int(r["n"]),
                     "params_M": r["params"] / 1e6, "MFLOPs": r["flops"] / 1e6,
                     "memory_MB": r["peak_memory_bytes"] / 1e6,
                     "latency_us": f"{r['latency_us_per_image']:.0f} ± "
                                   f"{r['latency_us_per_image_std']:.0f}",
                     "params / base": ratio("params"),
                     "memory / base": ratio("peak_memory_bytes"),
                     "time / base": ratio("latency_us_per_image"),
                     "epochs": r["epochs"], "plateaued": f"{r['plateaued']}/{int(r['n'])}",
                     "train_time_s": f"{r['train_time_s']:.0f} ± {r['train_time_s_std']:.0f}"})
    out = pd.DataFrame(rows)
    out.attrs["caption"] = ("Training grid over the seeds (ratios: to the base model at the "
                            f"same width) · {evidence_caption(cfg)} · {report.FLOPS_NOTE}")
    return out


def _paper_best(model: str) -> tuple[str, float, float]:
    """The paper's best redistributed template for ``model`` (Table 1, CIFAR-10, width 1.0),
    its accuracy and the base model's."""
    ppr = PAPER_TABLE1["cifar10"][_paper_model(model)]
    t = max((t for t in TEMPLATES if t != "base"), key=lambda t: ppr[t])
    return t, ppr[t], ppr["base"]


def _resource_row(cfg, m: str, st: pd.DataFrame, accs, col: str, words: str, scale: float,
                  unit: str, budget: str = "") -> dict:
    """Claim row: some redistributed template cell reaches the accuracy of the base model at
    the largest width with less of one resource (non-inferiority, Bonferroni over the cells
    that use less)."""
    w_hi, w_lo = max(model_widths(cfg, m)), min(model_widths(cfg, m))
    sub = st[st["model"] == m]
    base = sub[(sub["template"] == "base") & (sub["width"] == w_hi)].iloc[0]
    ref = accs[(m, "base", w_hi)]
    cheaper = sub[(sub["template"] != "base") & (sub[col] < base[col])].sort_values(col)
    k = len(cheaper)
    claim = (f"{_label(m)}: a template reaches the base model's accuracy (width {w_hi:g}; no "
             f"worse than {cfg.margin:g} point{'s' if cfg.margin != 1 else ''}) with less "
             f"{words}")
    lo_b = sub[(sub["template"] == "base") & (sub["width"] == w_lo)]
    control = ""
    if w_lo != w_hi and len(lo_b):
        c = ev.paired_compare(accs[(m, "base", w_lo)], ref)
        control = (f"; control, base at width {w_lo:g}: ×{lo_b.iloc[0][col] / base[col]:.2f} "
                   f"{words}, accuracy {c['diff']:+.2f}")
    paper = "Figures 3–5 (160 ep, widths 0.05–1.6)"
    if not k:
        one = (f"; the grid has one width ({w_hi:g}), so the paper's claim across widths "
               "cannot be judged here" if w_lo == w_hi else "")
        return ev.claim_row(claim, f"base w{w_hi:g}: {base[col] * scale:.3g} {unit}; no "
                            "template cell uses less", paper, "inconclusive",
                            f"no test: every trained template cell uses at least as much "
                            f"{words} at the widths trained{one}" + control, budget=budget)
    tests = []
    for _, r in cheaper.iterrows():
        c = ev.paired_compare(accs[(m, r["template"], r["width"])], ref, margin=cfg.margin)
        tests.append((r, c))
    u = ev.any_of([c for _, c in tests])
    r = next(r for r, c in tests if c is u["part"])
    c = u["part"]
    ours = (f"{LABELS[r['template']]} w{r['width']:g}: ×{r[col] / base[col]:.2f} {words}, "
            f"{ev.fmt(accs[(m, r['template'], r['width'])], 1, ' %')} vs base "
            f"{ev.fmt(ref, 1, ' %')}")
    u["reason"] = (f"{'best' if u['gain'] > 0 else 'closest'} of {k} cheaper cells: "
                   f"{c['reason']} (Bonferroni over {k}){control}")
    return ev.claim_row(claim, ours, paper, u, budget=budget)


def _spread_test(m: str, width: float, accs: dict, limit: float = 5.0) -> dict | None:
    """Is the range of the template means below ``limit`` points?  Every pair of templates
    (the higher-mean one first) is tested paired over the seeds against a difference of
    ``limit``.  The range is shown above ``limit`` when some pair is (a union: Bonferroni over
    the pairs, p = pairs x the smallest such p); it is shown below when every pair is (an
    intersection-union test: p = the largest of the pairs' p).  ``gain`` is in the claim's
    favour (``limit`` minus the deciding pair's difference).  None for < 2 templates."""
    names = [t for t in accs if len(accs[t])]
    if len(names) < 2:
        return None
    means = {t: ev.mean_std(accs[t])[0] for t in names}
    hi, lo = max(means, key=means.get), min(means, key=means.get)
    pairs = [(a, b) if means[a] >= means[b] else (b, a)
             for i, a in enumerate(names) for b in names[i + 1:]]
    k = len(pairs)
    # margin -limit: "a at most -limit worse than b", i.e. gain = (a - b) - limit
    tests = [(a, b, ev.paired_compare(accs[a], accs[b], margin=-limit)) for a, b in pairs]
    wide = [x for x in tests if x[2].get("gain", float("nan")) > 0]
    if wide:
        a, b, t = min(wide, key=lambda x: x[2]["p"])
        p = min(1.0, k * t["p"])
        how = f"widest-shown pair, Bonferroni over {k} pairs"
    else:
        a, b, t = max(tests, key=lambda x: x[2]["p"])
        p = t["p"]
        how = f"the least-shown of all {k} pairs (intersection-union)"
    gain = -t.get("gain", float("nan"))
    lo_ci, hi_ci = t["ci"]
    why = (f"range {means[hi] - means[lo]:.2f} ({LABELS[hi]} - {LABELS[lo]}); "
           f"{LABELS[a]} - {LABELS[b]}: {means[a] - means[b]:+.2f}, paired t against "
           f"{limit:g}, p = {t['p']:.2g} ({how})")
    verdict = ("holds" if p < 0.05 and gain > 0 else
               "does not hold" if p < 0.05 and gain < 0 else "inconclusive")
    return {"model": m, "width": width, "range": means[hi] - means[lo], "verdict": verdict,
            "reason": why, "p": p, "gain": gain, "sd": t.get("sd", float("nan")),
            "paired": True, "n": t["n"], "test": "paired t vs 5 over template pairs"}


def evidence_claims(cfg) -> pd.DataFrame:
    """The claims table (``evidence.CLAIM_COLUMNS``) of an evidence run whose records all
    exist: per model, (1) the paper's best template against the base model at equal width
    (better where the paper's Table 1 has it better, else no worse than ``cfg.margin``),
    (2-4) a template reaching the base model's accuracy with fewer parameters / less
    training memory / less inference time, and (5) the paper's "less than 5 % variation
    across templates".  Caption in ``attrs``.  (``claims(cfg)`` -- the pipeline's -- calls
    it; without seeds or records it is the empty table saying why.)"""
    accs = seed_accuracies(cfg)
    recs = seed_records(cfg)
    st = _stats(cfg)
    n_train = ev.train_images(cfg.dataset)
    checks = plateau_checks(cfg) if cfg.check_epochs else {}
    rows, spreads, conv = [], [], []
    for m in cfg.models:
        w_hi = max(model_widths(cfg, m))
        # a model's claims stand on all of its cells: converged only when every check says so
        ok = _converged(checks, [k for k in accs if k[0] == m]) if cfg.check_epochs else None
        conv.append(ok)
        first = len(rows)
        base = accs.get((m, "base", w_hi), [])
        t, p_t, p_b = _paper_best(m)
        spent = ev.budget({f"{LABELS[x]} w{w:g}": recs[(m, x, w)]
                           for x in TEMPLATES for w in model_widths(cfg, m)
                           if (m, x, w) in recs and (x in ("base", t) and w == w_hi)}, n_train)
        if (m, t, w_hi) in accs:
            if p_t > p_b:
                c = ev.paired_compare(accs[(m, t, w_hi)], base)
                claim = (f"{_label(m)}: {LABELS[t]} (the paper's best template) is more "
                         f"accurate than the base model at equal width {w_hi:g}")
            else:
                c = ev.paired_compare(accs[(m, t, w_hi)], base, margin=cfg.margin)
                claim = (f"{_label(m)}: {LABELS[t]} (the paper's best template, below base "
                         f"in the paper) is as accurate as the base model at width {w_hi:g} "
                         f"(no worse than {cfg.margin:g} point{'s' if cfg.margin != 1 else ''})")
            rows.append(ev.claim_row(
                claim, f"{ev.fmt(accs[(m, t, w_hi)], 1, ' %')} vs {ev.fmt(base, 1, ' %')}",
                f"{p_t:g} vs {p_b:g} % (width 1.0, 160 ep)", c, budget=spent))
        every = ev.budget({"each cell": [r for (mm, _, _), rs in recs.items() if mm == m
                                         for r in rs]}, n_train)
        for col, words, scale, unit in RESOURCES:
            if col in st and st[st["model"] == m][col].notna().all() and base:
                rows.append(_resource_row(cfg, m, st, accs, col, words, scale, unit, every))
        spread = _spread_test(m, w_hi, {tt: accs[(m, tt, w_hi)] for tt in TEMPLATES
                                        if (m, tt, w_hi) in accs})
        if spread:
            spreads.append(spread)
        for r in rows[first:]:
            r["_converged"] = ok
    if spreads:
        c = ev.all_of(spreads)
        ours = "; ".join(f"{_label(x['model'])} w{x['width']:g}: {x['range']:.1f}"
                         for x in spreads) + " points"
        c["reason"] = "; ".join(f"{_label(x['model'])}: {x['reason']}" for x in spreads)
        rows.append(ev.claim_row(
            "Accuracy varies by less than 5 points across the five templates (range of the "
            "template means at the largest width, per model)", ours,
            "< 5 % for all models (conclusions)", c,
            budget=ev.budget({"each cell": [r for rs in recs.values() for r in rs]}, n_train),
            converged=(False if False in conv else True if conv and all(conv) else None)))
    every = [r for rs in recs.values() for r in rs]
    df = ev.claims_frame(rows, seeds=len(cfg.seeds),
                         seed_cost_s=ev.seed_cost(every, len(cfg.seeds)))
    df.attrs["caption"] = (
        f"Claims (filter redistribution templates). {verdict_rule()} Tests: paired t over the "
        f"seeds (every cell of a seed is trained with that seed's data order and tested on the "
        f"same images); a claim that some one of k cells does it, Bonferroni over the k; the "
        f"5-point spread, per model, over the pairs of templates (see the reason), and across "
        f"models an intersection-union test. " + evidence_caption(cfg))
    return df

def evidence_summary(cfg) -> str:
    """The evidence paragraph: what ran, then every claim with its verdict, from the records."""
    from reprolib.experiments.templates import PIPELINE

    cl = PIPELINE.claims(cfg)
    parts = [f"Evidence run (`reprolib run {PAPER} --profile {cfg.profile}`): "
             f"{evidence_caption(cfg)}."]
    for _, r in cl.iterrows():
        parts.append(f"{r['claim']}: {r['ours']} — **{r['verdict']}** ({r['reason']}).")
    return " ".join(parts)


def evidence_tables(cfg) -> dict[str, pd.DataFrame]:
    """An evidence run's tables: ``table2`` when the config measures Table 2 cells, Table 1
    and the runs as mean ± std over the seeds, and the ``claims``."""
    from reprolib.experiments.templates import PIPELINE

    out = {"table2": table2(cfg)} if _graph(cfg).select("measure") else {}
    out = {**out, "table1": evidence_table1(cfg), "runs": evidence_runs(cfg)}
    if _graph(cfg).select("check"):
        out["plateau_check"] = plateau_table(cfg)
    return {**out, "claims": PIPELINE.claims(cfg)}
