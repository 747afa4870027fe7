"""The claims table every paper's pipeline ends with: its columns, its verdicts, the
family-wise control over its rows, and the empty table (with a caption saying why) of a
profile that has nothing to test yet.  The tests that fill it are
``reprolib.experiments.evidence``'s.

A row is made from a test result (``evidence.compare`` / ``paired_compare`` / ``all_of``):
its raw p enters the table's family, :func:`claims_frame` adjusts the family by Holm and only
then decides the verdicts, so a claim "holds" or "does not hold" only when its adjusted p is
below ``ALPHA``; an inconclusive row shows the seeds per arm that would resolve it."""

from __future__ import annotations

import math
from typing import Iterable

import pandas as pd

#: The columns of every paper's claims table, in this order.
CLAIM_COLUMNS = ("claim", "ours", "paper", "test", "n", "p", "p (Holm)", "n needed", "budget",
                 "verdict", "reason")
VERDICTS = ("holds", "does not hold", "inconclusive", "inconclusive: not converged")
#: The family-wise error rate every claims table controls.
ALPHA = 0.05
#: The CPU time a paper's evidence profile may spend on extra seeds (1.5 CPU-hours): a row
#: whose n needed costs more says what scale it needs instead.
EXTRA_SEED_BUDGET_S = 5400.0


def verdict_rule(alpha: float = ALPHA) -> str:
    """The verdict rules, stated once at the head of every claims caption."""
    return (f"Verdicts: each row's test gives a raw p; the rows' p-values are adjusted together "
            f"by Holm (family-wise error {alpha:g} over the table); 'holds' when the adjusted p "
            f"< {alpha:g} in the claim's favour, 'does not hold' only when it is < {alpha:g} "
            f"the other way, otherwise 'inconclusive' ('inconclusive: not converged' whatever "
            f"the p when the longer-run plateau check failed). A 'no worse than m' claim is "
            f"tested against a difference of -m. 'n needed': seeds per arm that would give the "
            f"row 80 % power at the observed effect and spread, at {alpha:g}/k (k rows: Holm's "
            f"strictest step).")


def claim_row(claim: str, ours: str, paper: str, verdict, reason: str | None = None, *,
              budget: str = "", converged: bool | None = None) -> dict:
    """One row of a claims table (see :data:`CLAIM_COLUMNS`).  ``verdict`` is either a test
    result of ``reprolib.experiments.evidence`` (its verdict, reason, test, n, p and the
    effect and spread for the power computation; ``reason`` then adds to its reason) or a
    verdict in words for a row without a test.  ``budget``: the arms' training budgets
    (epochs, images seen, wall time).  ``converged=False``: the longer-run check showed the
    recipe had not converged (the verdict is then "inconclusive: not converged")."""
    test = verdict if isinstance(verdict, dict) else None
    if test is not None:
        verdict = test["verdict"]
        reason = test["reason"] + (f"; {reason}" if reason else "")
    if verdict not in VERDICTS:
        raise ValueError(f"verdict {verdict!r} is not one of {VERDICTS}")
    row = dict.fromkeys(CLAIM_COLUMNS, "")
    row.update(claim=claim, ours=ours, paper=paper, verdict=verdict, reason=reason or "",
               budget=budget)
    if test is not None:
        row.update(test=test.get("test", ""), n=test.get("n", ""))
        row["_p"] = float(test.get("p", float("nan")))
        row["_gain"] = float(test.get("gain", float("nan")))
        row["_sd"] = float(test.get("sd", float("nan")))
        row["_paired"] = bool(test.get("paired", True))
    row["_converged"] = converged
    return row


def _p(x: float) -> str:
    return "" if not math.isfinite(x) else "< 0.0001" if x < 1e-4 else f"{x:.2g}"


def _resolvable(need: int | None, seed_cost_s: float | None, seeds: int | None) -> str:
    if need is None:
        return ("; more than 1000 seeds per arm at this effect: beyond any seed count, it needs "
                "a larger test set or the paper's scale")
    if not seed_cost_s or seeds is None:
        return ""
    extra = max(need - seeds, 0)
    if not extra:
        return (f"; at this effect and spread {seeds} seeds per arm already had 80 % power: the "
                f"adjusted test missed by chance or the effect is smaller than observed (more "
                f"seeds resolve it)")
    cost = extra * seed_cost_s
    if cost <= EXTRA_SEED_BUDGET_S:
        return (f"; {need} seeds per arm would resolve it at this effect ({extra} more, "
                f"~{cost / 60:.0f} CPU-min: within the extra-seed budget)")
    return (f"; {need} seeds per arm would resolve it at this effect ({extra} more, "
            f"~{cost / 3600:.1f} CPU-h at {seed_cost_s / 60:.0f} min per seed: beyond the "
            f"{EXTRA_SEED_BUDGET_S / 3600:g} CPU-h extra-seed budget, it needs a GPU (the gpu "
            f"profile) or a larger test set)")


def claims_frame(rows: Iterable[dict], alpha: float = ALPHA, *,
                 seed_cost_s: float | None = None, seeds: int | None = None) -> pd.DataFrame:
    """The claims table: one row per claim, columns :data:`CLAIM_COLUMNS`.  The rows with a
    test form one family: their p-values are Holm-adjusted together and each such row's
    verdict follows its adjusted p (:func:`verdict_rule`); an inconclusive row gets the seeds
    per arm a t-test at ``alpha`` / k would need for 80 % power at its effect and spread.
    ``seed_cost_s`` (recorded stage time of one seed of the profile, all arms) and ``seeds``
    (the seeds it has): a row whose extra seeds cost more than
    :data:`EXTRA_SEED_BUDGET_S` says so and what scale it needs; one that fits says so."""
    from reprolib.core.stats import holm, seeds_needed

    rows = [dict(r) for r in rows]
    raw = [r.get("_p", float("nan")) for r in rows]
    adj = holm(raw)
    k = sum(math.isfinite(x) for x in raw)
    for r, p, q in zip(rows, raw, adj):
        if math.isfinite(p):
            gain = r["_gain"]
            r["verdict"] = ("holds" if q < alpha and gain > 0 else
                            "does not hold" if q < alpha and gain < 0 else "inconclusive")
            r["p"], r["p (Holm)"] = _p(p), _p(q)
        if r.get("_converged") is False:
            r["verdict"] = "inconclusive: not converged"
        if r["verdict"] == "inconclusive" and math.isfinite(p) and k:
            need = seeds_needed(r["_gain"], r["_sd"], alpha=alpha / k,
                                paired=r["_paired"], max_n=1000)
            r["n needed"] = "> 1000" if need is None else str(need)
            r["reason"] += _resolvable(need, seed_cost_s, seeds)
    return pd.DataFrame(rows, columns=list(CLAIM_COLUMNS))


def not_run(paper: str, cfg, stages) -> pd.DataFrame | None:
    """None when ``cfg`` has seeds and every one of ``stages`` has a record; else an empty
    claims table (columns :data:`CLAIM_COLUMNS`) whose caption says why there is nothing to
    test and how to make it: a profile without seeds, or an evidence run not (fully) made."""
    from reprolib.configs import papers

    info = papers().get(paper)
    if not getattr(cfg, "seeds", ()) and info is not None and "evidence" not in info.presets:
        why = f"{paper} tests no claims of its own (it has no `evidence` profile)"
    elif not getattr(cfg, "seeds", ()):
        why = (f"profile `{cfg.profile}` has no seeds: the claims are tested by the `evidence` "
               f"profile (`reprolib run {paper} --profile evidence`)")
    else:
        missing = [s.name for s in stages if not s.done]
        if not missing:
            return None
        why = (f"not run: {len(missing)} of {len(stages)} stages of profile `{cfg.profile}` "
               f"have no record yet (`reprolib run {paper} --profile {cfg.profile}`)")
    out = claims_frame([])
    out.attrs["caption"] = f"{paper} claims: {why}."
    return out
