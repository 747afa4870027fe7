"""What the overview shows of MetaFormer-NAS (``reprolib.experiments.overview``): the
conformance rows (Table 1's search-space sizes, counted by enumerating the controller's
decisions) and the chart's points (each retrained searched cell against the pooling mixer);
the paper prints no model sizes, so it has no reported points."""

from __future__ import annotations

from reprolib.configs import get_config
from reprolib.configs.metaformer_nas import PAPER_TABLE1
from reprolib.experiments.evidence import split_seed
from reprolib.experiments.overview.rows import pair, row

#: How the overview presents MetaFormer-NAS.
OVERVIEW = {"label": "MetaFormer-NAS", "color": "tab:red", "short": "MetaFormer-NAS",
            "reported": "", "mismatch_reasons": ()}


def conformance_rows() -> list[dict]:
    """Table 1's search-space size per DAG size N: the distinct DAGs the controller's
    decisions decode to, counted, beside the printed size."""
    from reprolib.methods.metaformer_nas import count_architectures, paper_space_size

    rows = []
    for n, p in PAPER_TABLE1.items():
        ours = count_architectures(n)
        rows.append(row("MetaFormer-NAS", "Table 1", f"search-space size, N = {n}", "",
                        p["space_size"], None, ours,
                        "controller decisions enumerated and decoded, distinct DAGs counted",
                        f"2^N (N-1)! = {paper_space_size(n):,}", False))
    return rows


def points(pipe, recs: dict, profile: str) -> list[dict]:
    """The chart's points at ``profile``: every retrained searched cell (role ``retrain``,
    origin ``search``; ``recs`` holds each condition once, its seeds averaged) against the
    retrained pooling mixer (PoolFormer)."""
    g = pipe.graph(get_config(pipe.name, profile))
    cond = lambda s: split_seed(s.name)[0]    # noqa: E731 - the name recs are keyed by
    pooling = {cond(s) for s in g.select("retrain", mixer="pooling")}
    parent = next((recs[n] for n in sorted(pooling) if n in recs), None)
    if not parent:
        return []
    parent = {**parent, "label": "pooling mixer"}
    cells = {}
    for s in g.select("retrain", origin="search"):
        cells.setdefault(cond(s), s)
    return [pair(pipe.name, profile, s.tags["mixer"], n, recs[n], parent)
            for n, s in sorted(cells.items()) if n in recs]
