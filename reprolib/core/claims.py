"""The claims table every paper's pipeline ends with: its columns, its verdicts, and the
empty table (with a caption saying why) of a profile that has nothing to test yet.  The
statistics that fill it are ``reprolib.experiments.evidence``'s."""

from __future__ import annotations

from typing import Iterable

import pandas as pd

#: The columns of every paper's claims table, in this order.
CLAIM_COLUMNS = ("claim", "ours", "paper", "verdict", "reason")
VERDICTS = ("holds", "does not hold", "inconclusive")


def claim_row(claim: str, ours: str, paper: str, verdict: str, reason: str) -> dict:
    """One row of a claims table (see :data:`CLAIM_COLUMNS`)."""
    if verdict not in VERDICTS:
        raise ValueError(f"verdict {verdict!r} is not one of {VERDICTS}")
    return dict(zip(CLAIM_COLUMNS, (claim, ours, paper, verdict, reason)))


def claims_frame(rows: Iterable[dict]) -> pd.DataFrame:
    """The claims table: one row per claim, columns :data:`CLAIM_COLUMNS`."""
    return pd.DataFrame(list(rows), columns=list(CLAIM_COLUMNS))


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
