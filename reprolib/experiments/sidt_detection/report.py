"""SiDT on detection: Table II's rows and the runs table, the AP-vs-backbone figure and the
summary, read back from the records."""

from __future__ import annotations

import pandas as pd

from reprolib.configs.sidt import PAPER_TABLE2
from reprolib.configs.sidt_detection import SWIN_BASELINE
from reprolib.core import report
from reprolib.core.pipeline import profile_note
from reprolib.experiments.sidt_detection.graph import AP_KEYS

# --------------------------------------------------------------------------- records -> frames


def _read(pipe, cfg) -> dict:
    """The records of every stage, by role: train, search, fine-tunes (by ratio), reference,
    provenance."""
    g = pipe.graph(cfg)
    recs = {s.name: s.record() for s in g}
    tunes = sorted((recs[s.name] for s in g.select("finetune")),
                   key=lambda r: r["metrics"]["ratio"])
    prov = report.provenance(cfg, pd.DataFrame(list(recs.values())))
    return {"train": recs[g.get("train").name], "search": recs[g.get("search").name],
            "tunes": tunes, "reference": recs[g.get("reference").name], "prov": prov,
            "note": profile_note(cfg)}


def _ref_rows(r: dict) -> dict:
    return {(x["kind"], x["ratio"]): x for x in r["reference"]["metrics"]["rows"]}


def _m(v) -> float:
    return round(v / 1e6, 2)


def _table2(r: dict) -> pd.DataFrame:
    rows = _ref_rows(r)
    nan = float("nan")
    out = []
    for t in r["tunes"]:
        m = t["metrics"]
        ratio = m["ratio"]
        p = PAPER_TABLE2.get(round(ratio, 2), (nan,) * 4)
        u, lr = rows.get(("uniform", ratio), {}), rows.get(("learned", ratio), {})
        out.append({
            "PR": f"{ratio:.0%}",
            "box AP": round(m["bbox_AP"], 2), "mask AP": round(m["segm_AP"], 2),
            "box AP50": round(m["bbox_AP50"], 2),
            "paper box mAP": p[0], "paper mask mAP": p[1],
            "total params learned (M)": _m(lr.get("params", nan)),
            "total params uniform (M)": _m(u.get("params", nan)),
            "paper total (M)": p[2],
            "backbone learned (M)": _m(lr.get("backbone_params", nan)),
            "backbone uniform (M)": _m(u.get("backbone_params", nan)),
            "paper backbone (M)": p[3],
            "FLOPs learned (G)": round(lr.get("flops", nan) / 1e9, 1),
            "FLOPs uniform (G)": round(u.get("flops", nan) / 1e9, 1),
            "Swin baseline FLOPs (G)": SWIN_BASELINE["flops_G"] if ratio == 0 else nan,
        })
    return pd.DataFrame(out)


def _runs(r: dict) -> pd.DataFrame:
    out = []
    tr = r["train"]["metrics"]
    for name, m in (("untrained", tr["untrained"]), ("train", tr), ("search", r["search"]["metrics"])):
        out.append({"stage": name, "PR": "", "epochs": m.get("epochs", 0),
                    **{k: round(m[k], 2) for k in AP_KEYS}, "params (M)": _m(m["params"])
                    if "params" in m else _m(tr["params"]), "GFLOPs": None})
    for t in r["tunes"]:
        m = t["metrics"]
        for name, x in (("pruned, no FT", m["pruned_no_ft"]), ("fine-tuned", m)):
            out.append({"stage": name, "PR": f"{m['ratio']:.0%}",
                        "epochs": m["epochs"] if x is m else 0,
                        **{k: round(x[k], 2) for k in AP_KEYS}, "params (M)": _m(m["params"]),
                        "GFLOPs": round(m["flops"] / 1e9, 2)})
    return pd.DataFrame(out)


def _tables(pipe, cfg) -> dict[str, pd.DataFrame]:
    """``table2``: SiDT Table II beside ours (box / mask AP of our run on its data; total and
    backbone params and FLOPs at 1280 x 800 of the Swin-T Cascade Mask R-CNN pruned with our
    learned widths and uniformly); ``runs``: every stage of our run (AP before and after
    fine-tuning, the untrained detector as chance, params and FLOPs of the detector we
    trained, at its own test size)."""
    r = _read(pipe, cfg)
    h, w = cfg.flops_size
    ours = f"Ours: {r['prov']}{r['note']}"
    t2 = _table2(r)
    t2.attrs["caption"] = (
        f"SiDT Table II. {ours}. Box / mask AP (COCOeval, IoU 0.50:0.95) of our `{cfg.model}` "
        f"on {pipe.data_label(cfg)}, after fine-tuning; params and FLOPs: `{cfg.reference_model}` "
        f"({cfg.reference_classes} classes) with its backbone pruned by our learned per-stage "
        f"widths and uniformly, FLOPs at {w} x {h} with {cfg.flops_boxes} / {cfg.flops_masks} "
        f"RoIs through the box / mask heads ({report.FLOPS_NOTE}; attention matmuls counted, "
        f"RoIAlign / NMS not). Paper: Table II, COCO val, Swin-T; the Swin baseline's FLOPs "
        f"from its model zoo.")
    ru = _runs(r)
    ru.attrs["caption"] = (f"Every stage of our run. {ours}. AP on {pipe.data_label(cfg)}; "
                           f"`untrained` = the randomly initialised detector (chance); params "
                           f"and FLOPs of `{cfg.model}` at its test size.")
    return {"table2": t2, "runs": ru}


# --------------------------------------------------------------------------- figures


def _figures(pipe, cfg) -> dict:
    """``tradeoff``: box / mask AP change vs pruning ratio (ours after fine-tuning and right
    after pruning, the paper's Table II), the Swin-T detector's params vs ratio (ours learned
    / uniform, paper), and the training loss of every stage."""
    import matplotlib.pyplot as plt

    r = _read(pipe, cfg)
    t = _runs(r)
    ft = t[t["stage"] == "fine-tuned"]
    nf = t[t["stage"] == "pruned, no FT"]
    ratios = [x["metrics"]["ratio"] for x in r["tunes"]]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    ax = axes[0]
    for key, label, mk in (("bbox_AP", "box", "o"), ("segm_AP", "mask", "s")):
        ax.plot([100 * x for x in ratios], ft[key] - ft[key].iloc[0], marker=mk,
                label=f"ours {label}, fine-tuned")
        ax.plot([100 * x for x in ratios], nf[key].values - ft[key].iloc[0], marker=mk, ls=":",
                label=f"ours {label}, pruned, no FT")
    pr = sorted(PAPER_TABLE2)
    for i, (label, mk) in enumerate((("box", "x"), ("mask", "+"))):
        ax.scatter([100 * x for x in pr], [PAPER_TABLE2[x][i] - PAPER_TABLE2[0.0][i] for x in pr],
                   marker=mk, color="black", zorder=5, label=f"paper {label} (COCO)")
    ax.axhline(0, color="grey", lw=0.8, ls="--")
    ax.set_xlabel("pruning ratio (%)")
    ax.set_ylabel("AP - AP at PR 0 (points)")
    ax.set_title(f"ours on {pipe.data_label(cfg)}", fontsize=8)
    ax.legend(fontsize=6)
    ax.grid(alpha=0.3)
    ax = axes[1]
    ref = pd.DataFrame(r["reference"]["metrics"]["rows"])
    for kind, g in ref.groupby("kind"):
        g = g.sort_values("ratio")
        ax.plot(100 * g["ratio"], g["params"] / 1e6, marker="o", label=f"ours total, {kind}")
        ax.plot(100 * g["ratio"], g["backbone_params"] / 1e6, marker="s", ls=":",
                label=f"ours backbone, {kind}")
    ax.scatter([100 * x for x in pr], [PAPER_TABLE2[x][2] for x in pr], marker="x",
               color="black", zorder=5, label="paper total")
    ax.scatter([100 * x for x in pr], [PAPER_TABLE2[x][3] for x in pr], marker="+",
               color="black", zorder=5, label="paper backbone")
    ax.set_xlabel("pruning ratio (%)")
    ax.set_ylabel(f"params (M), {cfg.reference_model}, {cfg.reference_classes} classes")
    ax.legend(fontsize=6)
    ax.grid(alpha=0.3)
    ax = axes[2]
    start = 0
    for rec in [r["train"], r["search"], *r["tunes"]]:
        hist = rec["metrics"]["history"]
        xs = range(start + 1, start + len(hist) + 1)
        ax.plot(xs, [h["train_loss"] for h in hist], marker=".", label=rec["name"])
        start += len(hist)
    ax.set_xlabel("epoch (stages one after another)")
    ax.set_ylabel("training loss (sum of the detector's losses)")
    ax.legend(fontsize=6)
    ax.grid(alpha=0.3)
    fig.suptitle(f"SiDT Table II as plots — {r['prov']}{r['note']}", fontsize=9)
    fig.tight_layout()
    return {"tradeoff": fig}


# --------------------------------------------------------------------------- summary


def _join(values, fmt: str) -> str:
    return " / ".join(format(v, fmt) for v in values)


def _summary(pipe, cfg) -> str:
    """Sentences about the run, every number read from the records: the Swin-T detector's
    size beside the paper's, the pruned sizes, the ratio-0 identity, and the trained part
    (AP per ratio against chance, epochs, time, device)."""
    r = _read(pipe, cfg)
    rows = _ref_rows(r)
    ratios = [t["metrics"]["ratio"] for t in r["tunes"]]
    pr = [x for x in ratios if x > 0]
    u0 = rows[("uniform", 0.0)]
    h, w = cfg.flops_size
    out = [f"Cascade Mask R-CNN with a timm Swin-T + FPN backbone, built from torchvision's "
           f"detection parts in the Swin baseline's configuration (`{cfg.reference_model}`, "
           f"{cfg.reference_classes} classes): {u0['params'] / 1e6:.2f} M parameters "
           f"(paper {PAPER_TABLE2[0.0][2]} M), backbone {u0['backbone_params'] / 1e6:.2f} M "
           f"(paper {PAPER_TABLE2[0.0][3]} M), {u0['flops'] / 1e9:.1f} GFLOPs at {w} x {h} "
           f"(Swin baseline {SWIN_BASELINE['flops_G']} G)."]
    if pr:
        lrn = [rows.get(("learned", x)) for x in pr]
        uni = [rows[("uniform", x)] for x in pr]
        s = (f"Its backbone pruned by {_join([100 * x for x in pr], '.0f')} % of the SiDT "
             f"dimensions counts {_join([u['backbone_params'] / 1e6 for u in uni], '.2f')} M "
             f"uniformly (whole detector {_join([u['params'] / 1e6 for u in uni], '.2f')} M)")
        if all(lrn):
            s += (f" and {_join([x['backbone_params'] / 1e6 for x in lrn], '.2f')} M with our "
                  f"searched per-stage widths (detector "
                  f"{_join([x['params'] / 1e6 for x in lrn], '.2f')} M)")
        s += (f"; paper {_join([PAPER_TABLE2[round(x, 2)][3] for x in pr], 'g')} M backbone, "
              f"{_join([PAPER_TABLE2[round(x, 2)][2] for x in pr], 'g')} M total.")
        out.append(s)
    p0 = r["tunes"][0]["metrics"]
    ident = p0.get("identity")
    if ident:
        same = "the same detections" if ident["same_detections"] else "different detections"
        out.append(f"Pruning at ratio 0 removes only the scores: on {ident['images']} test "
                   f"images the pruned detector gives {same} as the searched one "
                   f"({ident['detections']} boxes; largest differences "
                   f"{ident['max_box_diff']:.1e} px in a box, {ident['max_score_diff']:.1e} in a "
                   f"score, {ident['max_mask_diff']:.1e} in a mask probability).")
    tr, se = r["train"]["metrics"], r["search"]["metrics"]
    ft = [t["metrics"] for t in r["tunes"]]
    wall = (r["train"]["wall_time_s"] + r["search"]["wall_time_s"]
            + sum(t["wall_time_s"] for t in r["tunes"])) / 60
    dev = report.device_label([r["train"], r["search"], *r["tunes"]])
    un = tr["untrained"]
    out.append(
        f"Trained part (`{cfg.profile}` profile, {pipe.data_label(cfg)}, {tr['train_images']} "
        f"training / {tr['test_images']} test images): `{cfg.model}` "
        f"({tr['params'] / 1e6:.2f} M parameters) trained {tr['epochs']} epochs to box AP50 "
        f"{tr['bbox_AP50']:.1f} (AP {tr['bbox_AP']:.1f}, mask AP {tr['segm_AP']:.1f}; the "
        f"untrained detector, chance: box AP50 {un['bbox_AP50']:.1f}), searched "
        f"{se['epochs']} epochs with L1 {cfg.l1_strength:g} (box AP {se['bbox_AP']:.1f}), "
        f"pruned at PR {_join([100 * x for x in ratios], '.0f')} % and fine-tuned "
        f"{ft[0]['epochs']} epochs each: box AP {_join([m['bbox_AP'] for m in ft], '.1f')}, "
        f"mask AP {_join([m['segm_AP'] for m in ft], '.1f')} "
        f"(right after pruning: box AP "
        f"{_join([m['pruned_no_ft']['bbox_AP'] for m in ft], '.1f')}); "
        f"{wall:.0f} min on {dev} (`figures/sidt_detection/table2-{cfg.profile}.md`).")
    return " ".join(out)
