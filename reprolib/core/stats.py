"""Statistics the claims tables share, with no dependency above ``reprolib.core``: Holm's
family-wise adjustment and the power of a t-test (how many seeds a claim needs).  Re-exported
by ``reprolib.experiments.evidence``."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment of ``pvalues`` (the family-wise error of all of them at
    once; ``statsmodels``' ``multipletests(method="holm")``): the k-th smallest p times
    (m - k + 1), made monotone, capped at 1.  NaN stays NaN (not part of the family)."""
    p = np.asarray(pvalues, dtype=float)
    ok = np.flatnonzero(np.isfinite(p))
    out = np.full(p.shape, np.nan)
    m = len(ok)
    running = 0.0
    for rank, i in enumerate(ok[np.argsort(p[ok], kind="stable")]):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return [float(x) for x in out]


def t_power(n: int, effect: float, *, alpha: float = 0.05, paired: bool = True) -> float:
    """The power of a two-sided t-test at ``alpha`` with ``n`` seeds per arm against the
    standardised ``effect`` (the mean difference over the standard deviation of the paired
    differences; unpaired: over the per-arm standard deviation), from the noncentral t."""
    from scipy import stats

    if n < 2 or not math.isfinite(effect):
        return float("nan")
    dof = n - 1 if paired else 2 * n - 2
    nc = effect * math.sqrt(n if paired else n / 2)
    crit = stats.t.ppf(1 - alpha / 2, dof)
    pw = float(stats.nct.sf(crit, dof, nc) + stats.nct.cdf(-crit, dof, nc))
    if math.isfinite(pw):
        return pw
    # scipy's noncentral t can return NaN far in its tails (few dof, a large nc): the same
    # probability as an integral over the chi-square of the denominator, T = (Z + nc) / sqrt(V / dof)
    from scipy import integrate

    def tail(v):
        s = crit * math.sqrt(v / dof)
        return (stats.norm.sf(s - nc) + stats.norm.cdf(-s - nc)) * stats.chi2.pdf(v, dof)

    return float(min(1.0, integrate.quad(tail, 0, math.inf, limit=200)[0]))


def seeds_needed(diff: float, sd: float, *, alpha: float = 0.05, power: float = 0.8,
                 paired: bool = True, max_n: int = 10_000) -> int | None:
    """The seeds per arm a two-sided t-test at ``alpha`` needs to detect ``diff`` with
    ``power``, if the spread stays ``sd`` (paired: of the seeds' differences; unpaired: of
    each arm); None when more than ``max_n`` (or no effect at all)."""
    if not (math.isfinite(diff) and math.isfinite(sd)) or diff == 0:
        return None
    if sd == 0:
        return 2
    effect = abs(diff) / sd

    def enough(n: int) -> bool:            # scipy's noncentral t is NaN at 1 dof, large nc
        pw = t_power(n, effect, alpha=alpha, paired=paired)
        return math.isfinite(pw) and pw >= power

    lo, hi = 2, 2
    while not enough(hi):
        lo, hi = hi, hi * 2
        if hi > max_n:
            return None
    while lo < hi:                          # the smallest n with enough power
        mid = (lo + hi) // 2
        if enough(mid):
            hi = mid
        else:
            lo = mid + 1
    return lo
