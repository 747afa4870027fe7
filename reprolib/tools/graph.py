"""``reprolib graph PAPER --profile P``: a paper's stage graph as it stands -- every stage in
run order with its role and tags, the stages it reads (its edges), whether its record exists,
what it trains and what one run of it needs.  Nothing runs; only record files are looked at.

    reprolib graph sidt --profile evidence
    from reprolib.tools.graph import graph_rows, format_graph
"""

from __future__ import annotations

from reprolib import paths
from reprolib.configs import get_config


def _fmt(v) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def graph_rows(paper: str, profile: str = "smoke", **overrides) -> list[dict]:
    """One dict per stage of the graph: ``name``, ``state`` (done / missing), ``role``,
    ``tags``, ``group``, ``after`` (names), ``record`` (its path), ``resources``
    (processes, gpus, cpus), ``trains`` (recipe and epochs, or "") and ``model`` (builder)."""
    from reprolib.experiments import get_experiment

    cfg = get_config(paper, profile, **overrides)
    rows = []
    for s in get_experiment(paper).graph(cfg):
        r = s.resources
        rows.append({"name": s.name, "state": "done" if s.done else "missing", "role": s.role,
                     "tags": dict(s.tags), "group": s.group,
                     "after": [u.name for u in s.after], "record": paths.rel(s.path),
                     "resources": {"processes": r.processes, "gpus": r.gpus, "cpus": r.cpus},
                     "trains": (f"{s.train.recipe_name} {s.train.recipe.epochs} ep"
                                if s.train is not None else ""),
                     "model": s.model_spec.builder if s.model_spec is not None else ""})
    return rows


def format_graph(paper: str, profile: str, rows: list[dict]) -> str:
    """The rows as text: a header with the counts, one line per stage, then its edges."""
    done = sum(r["state"] == "done" for r in rows)
    where = paths.rel(paths.results_root() / paper / profile)
    lines = [f"graph: {paper} --profile {profile}: {len(rows)} stages, {done} done, "
             f"{len(rows) - done} missing (records in {where}/)", ""]
    w = max([len(r["name"]) for r in rows] + [5])
    for r in rows:
        tags = ", ".join(f"{k}={_fmt(v)}" for k, v in r["tags"].items())
        res = r["resources"]
        need = f"{res['processes']} proc x {res['gpus']} GPU" if res["gpus"] else \
            f"{res['processes']} proc, CPU"
        what = " · ".join(x for x in (r["trains"], r["model"]) if x)
        lines.append(f"  {r['state']:<8}{r['name']:<{w + 2}}{r['role']}"
                     + (f" [{tags}]" if tags else "") + f"  ({need})" + (f"  {what}" if what else ""))
        if r["after"]:
            lines.append(f"  {'':<8}{'':<{w + 2}}<- {', '.join(r['after'])}")
    return "\n".join(lines)
