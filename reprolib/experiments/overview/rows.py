"""The rows the papers' pipelines hand the overview: a conformance row (:func:`row`, from
``Pipeline.conformance()``) and a chart point (:func:`pair`, from ``Pipeline.points``), and
the meta-device builder their counts use.  Imports no paper."""

from __future__ import annotations

import torch

from reprolib.core.device import on_meta
from reprolib.core.registry import create_model

#: The columns of a chart point (``Pipeline.points``), in the order of the points table.
POINT_COLUMNS = ("method", "profile", "label", "stage", "acc_change", "params_ratio",
                 "flops_ratio", "latency_ratio", "latency_from", "seeds", "device", "parent")


def meta_model(builder: str, **kw):
    """``create_model(builder, **kw)`` on PyTorch's meta device: shapes only, nothing
    allocated (what the conformance rows count)."""
    with on_meta():
        return create_model(builder, **kw)


def row(paper: str, table: str, quantity: str, unit: str, printed, decimals: int | None,
        ours, counted: str, explanation: str = "", explained: bool = False) -> dict:
    """One conformance row: ``paper`` (as the table shows it), the ``table`` the number is
    printed in, the ``quantity`` and its ``unit``, the ``printed`` value and its precision
    (``decimals``; None = an exact count), ``ours`` (None: not counted), what was built
    (``counted``) and, for a mismatch, the ``explanation`` (``explained``: it accounts for the
    difference).  The overview adds the tolerance, the difference and the verdict."""
    return {"paper": paper, "table": table, "quantity": quantity, "unit": unit,
            "paper_value": printed, "decimals": decimals, "ours": ours, "counted": counted,
            "explanation": explanation, "explained": explained}


def pair(paper: str, profile: str, label: str, name: str, child: dict, parent: dict) -> dict | None:
    """The chart point of the compressed model ``child`` against its dense ``parent``
    (records grouped by condition, as ``Pipeline.points`` receives them; ``parent["label"]``
    names the parent): the accuracy change and the params / FLOPs / latency ratios; None when
    either lacks an accuracy or a parameter count."""
    c, p = child["metrics"], parent["metrics"]
    if c["acc"] is None or p["acc"] is None or not c["params"] or not p["params"]:
        return None
    ratio = lambda k: (c[k] / p[k]) if c.get(k) and p.get(k) else None   # noqa: E731
    return {"method": paper, "profile": profile, "label": label, "stage": name,
            "acc_change": c["acc"] - p["acc"], "params_ratio": ratio("params"),
            "flops_ratio": ratio("flops"), "latency_ratio": ratio("latency_ms"),
            "latency_from": "record" if ratio("latency_ms") else "",
            "seeds": child["n"], "device": child["device"], "parent": parent.get("label", "")}
