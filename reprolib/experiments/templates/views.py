"""What the overview shows of the filter templates (``reprolib.experiments.overview``): the
conformance rows (Table 2's parameter counts per model and template at width 1.0), the
chart's points (each redistributed CNN against the base distribution at the same width) and
the points Tables 1-2 report (CIFAR-10)."""

from __future__ import annotations

from reprolib.configs import get_config
from reprolib.configs.templates import PAPER_TABLE1, PAPER_TABLE2, TEMPLATES
from reprolib.core.measure import count_params
from reprolib.experiments.evidence import split_seed
from reprolib.experiments.overview.rows import meta_model, pair, row
from reprolib.experiments.templates.report import LABELS, MODEL_LABELS, PARAMS_NOTES

#: How the overview presents the templates.
OVERVIEW = {"label": "filter templates", "color": "tab:purple", "short": "templates",
            "reported": "Tables 1-2 (CIFAR-10, Titan X time)",
            "mismatch_reasons": ("the templates' width rules",)}


def conformance_rows() -> list[dict]:
    """Table 2's params of every model x template (10 classes, width 1.0), counted beside the
    printed ones; where they differ, what the width rules give (``PARAMS_NOTES``)."""
    rows = []
    for model, cells in PAPER_TABLE2["params_M"].items():
        for t in TEMPLATES:
            ours = count_params(meta_model(model, num_classes=10, template=t)) / 1e6
            rows.append(row("Templates", "Table 2", f"{MODEL_LABELS[model]} {LABELS[t]} params",
                            "M", cells[t], 1, ours,
                            f"create_model('{model}', template='{t}'), 10 classes, width 1.0",
                            PARAMS_NOTES.get(model, ""), bool(PARAMS_NOTES.get(model))))
    return rows


def points(pipe, recs: dict, profile: str) -> list[dict]:
    """The chart's points at ``profile``: every trained cell of a template other than base
    (role ``cell``; ``recs`` holds each condition once, its seeds averaged) against the base cell of the
    same model, width and data set, in (model, template, width, data set) order."""
    g = pipe.graph(get_config(pipe.name, profile))
    cells = {}
    for s in g.select("cell"):
        n = split_seed(s.name)[0]
        if n in recs:
            t = s.tags
            cells[(t["model"], t["template"], float(t["width"]), t["dataset"])] = (n, recs[n])
    out = []
    for (model, t, w, ds), (n, r) in sorted(cells.items()):
        base = cells.get((model, "base", w, ds))
        if t != "base" and base:
            parent = {**base[1], "label": f"base, width {w:g}"}
            out.append(pair(pipe.name, profile,
                            f"{MODEL_LABELS.get(model, model)} {LABELS.get(t, t)} w{w:g}",
                            n, r, parent))
    return out


def reported_points() -> list[dict]:
    """Tables 1-2 on CIFAR-10: each template against base at width 1.0 (accuracy change,
    params ratio, the printed inference time's ratio; no FLOPs printed)."""
    rows = []
    for model, accs in PAPER_TABLE1["cifar10"].items():
        for t, a in accs.items():
            if t == "base":
                continue
            rows.append({"method": "templates", "label": f"{MODEL_LABELS[model]} {LABELS[t]}",
                         "acc_change": a - accs["base"],
                         "params_ratio": (PAPER_TABLE2["params_M"][model][t]
                                          / PAPER_TABLE2["params_M"][model]["base"]),
                         "flops_ratio": None,
                         "latency_ratio": (PAPER_TABLE2["time_us"][model][t]
                                           / PAPER_TABLE2["time_us"][model]["base"])})
    return rows
