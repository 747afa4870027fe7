"""What the overview shows of SiDT (``reprolib.experiments.overview``): the conformance rows
(Table I / II and the section 4 sizes, counted on the meta device), the chart's points (each
pruned fine-tune against the fine-tune at PR 0) and the points Table I reports."""

from __future__ import annotations

import torch

from reprolib.configs import get_config
from reprolib.configs.sidt import PAPER_TABLE1, PAPER_TABLE2
from reprolib.core.device import on_meta
from reprolib.core.measure import count_flops, count_params
from reprolib.experiments.evidence import split_seed
from reprolib.experiments.overview.rows import meta_model, pair, row

#: How the overview presents SiDT.
OVERVIEW = {"label": "SiDT (Swin dims)", "color": "tab:blue", "short": "SiDT",
            "reported": "Table I",
            "mismatch_reasons": ("learned widths not printed", "another classifier width")}


def swin_uniform(base, ratio: float):
    """``base`` (an unpruned Swin) pruned by ``ratio`` in every layer, as SiDT's
    ``scope="layer"`` keeps ``n - round(ratio n)`` of each layer's ``n`` dimensions; built
    on the meta device from its widths (``reprolib.methods.sidt.compressed_spec``)."""
    from reprolib.core.compressed import build
    from reprolib.methods import sidt

    full = sidt.arch(base)
    keep = lambda n: max(1, n - round(ratio * n))   # noqa: E731
    spec = sidt.compressed_spec({"swin": full["swin"],
                                 "attn_dims": {k: keep(v) for k, v in full["attn_dims"].items()},
                                 "mlp_dims": {k: keep(v) for k, v in full["mlp_dims"].items()}})
    with on_meta():
        return build(spec)


def conformance_rows() -> list[dict]:
    """Table I's params / FLOPs per ratio, the section 4 Swin-T size, Table II's backbone and
    detector params: counted beside the printed values."""
    rows = []
    base = meta_model("swin_t", num_classes=100, img_size=224)
    size = (3, 224, 224)
    how = "swin_t (timm Swin-T), 100 classes, 224 px"
    counts = {}
    for r in PAPER_TABLE1:
        m = base if r == 0 else swin_uniform(base, r)
        n = count_params(m)
        counts[r] = {"params": n / 1e6, "backbone": (n - count_params(m.head)) / 1e6,
                     "flops": count_flops(m, size) / 1e9}
    for r, (_, p_params, p_flops) in PAPER_TABLE1.items():
        c = counts[r]
        why = ("" if r == 0 else
               f"the paper's PR {r:.0%} widths come from its learned global ranking of |score| "
               f"and are not printed, so its pruned model cannot be rebuilt; our Swin-T with every "
               f"layer pruned by {r:.0%} counts {c['params']:.2f} M / {c['flops']:.2f} G")
        tag = "unpruned" if r == 0 else f"PR {r:.0%}, every layer pruned alike"
        rows.append(row("SiDT", "Table I", f"Swin-T params, PR {r:.0%}", "M", p_params, 2,
                        c["params"], f"{how}; {tag}", why, bool(why)))
        rows.append(row("SiDT", "Table I", f"Swin-T FLOPs, PR {r:.0%}", "G", p_flops, 2,
                        c["flops"], f"{how}; {tag}", why, bool(why)))
    ten = count_params(meta_model("swin_t", num_classes=10, img_size=224)) / 1e6
    rows.append(row("SiDT", "section 4 text", "Swin-T params", "M", 27.53, 2,
                    counts[0.0]["params"], f"{how} (the head of Table I)",
                    f"the text's 27.53 M is Swin-T with a 10-class head ({ten:.2f} M); with "
                    f"Table I's 100-class head it counts {counts[0.0]['params']:.2f} M, as "
                    f"Table I prints", round(ten, 2) == 27.53))
    for r, (_, _, p_total, p_backbone) in PAPER_TABLE2.items():
        c = counts.get(r) or {"backbone": count_params(swin_uniform(base, r)) / 1e6}
        why = ("" if r == 0 else
               f"learned widths, not printed (as Table I); every layer pruned by {r:.0%} gives "
               f"{c['backbone']:.2f} M")
        rows.append(row("SiDT", "Table II", f"Swin-T backbone params, PR {r:.0%}", "M",
                        p_backbone, 0, c["backbone"], f"{how}, classifier head left out", why,
                        bool(why)))
        rows.append(row("SiDT", "Table II", f"Cascade Mask R-CNN params (total), PR {r:.0%}",
                        "M", p_total, 0, None, "",
                        "reprolib registers no Cascade Mask R-CNN detector to count"))
    return rows


def points(pipe, recs: dict, profile: str) -> list[dict]:
    """The chart's SiDT points at ``profile``: every fine-tune at a ratio above 0 (role
    ``finetune``; ``recs`` holds each condition once, its seeds averaged) against the
    fine-tune at PR 0, the searched model with its scores removed and the same budget."""
    g = pipe.graph(get_config(pipe.name, profile))
    tunes = {}
    for s in g.select("finetune"):
        tunes.setdefault(split_seed(s.name)[0], s)
    parent = next((recs.get(n) for n, s in tunes.items() if s.tags["ratio"] == 0), None)
    if not parent:
        return []
    parent = {**parent, "label": "PR 0 (searched, fine-tuned)"}
    return [pair(pipe.name, profile, f"PR {round(100 * s.tags['ratio'])}%", n, recs[n], parent)
            for n, s in sorted(tunes.items()) if s.tags["ratio"] > 0 and n in recs]


def reported_points() -> list[dict]:
    """Table I's pruned models against its PR 0 row (accuracy change, params and FLOPs
    ratios; no time printed)."""
    rows = []
    a0, p0, f0 = PAPER_TABLE1[0.0]
    for r, (a, p, f) in PAPER_TABLE1.items():
        if r > 0:
            rows.append({"method": "sidt", "label": f"PR {r:.0%}", "acc_change": a - a0,
                         "params_ratio": p / p0, "flops_ratio": f / f0, "latency_ratio": None})
    return rows
