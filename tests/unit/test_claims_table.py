"""The claims table's family-wise control (Holm over its rows), its verdict rule, the power
column and the combined tests (intersection-union, Bonferroni union)."""

import math

import pytest
from scipy import stats

from reprolib.core.claims import CLAIM_COLUMNS, claim_row, claims_frame, verdict_rule
from reprolib.experiments import evidence as E


def _row(a, b, **kw):
    return claim_row("c", "o", "p", E.paired_compare(a, b, **kw))


def test_holm_decides_the_verdicts_not_the_raw_p():
    # raw p about 0.03 each: each "holds" alone, none survives Holm over three
    a, b = [50.0, 51.0, 52.5, 50.5], [49.2, 50.3, 51.0, 49.9]
    alone = claims_frame([_row(a, b)])
    assert float(alone["p"].iloc[0]) < 0.05 and alone["verdict"].iloc[0] == "holds"
    three = claims_frame([_row(a, b), _row(a, b), _row(a, b)])
    raw = float(three["p"].iloc[0])
    assert float(three["p (Holm)"].iloc[0]) == pytest.approx(min(1, 3 * raw), rel=0.05)
    assert set(three["verdict"]) == {"inconclusive"}
    assert list(three.columns) == list(CLAIM_COLUMNS)


def test_an_inconclusive_row_shows_the_seeds_it_needs_and_a_decided_row_none():
    strong = _row([60.0, 61.0, 62.0, 60.5], [50.0, 50.5, 51.0, 49.0])
    weak = _row([50.0, 52.0, 49.0, 51.0], [49.5, 51.8, 49.2, 50.1])
    df = claims_frame([strong, weak], seeds=4, seed_cost_s=60.0)
    assert df["verdict"].tolist() == ["holds", "inconclusive"]
    assert df["n needed"].iloc[0] == ""
    need = int(df["n needed"].iloc[1])
    t = E.paired_compare([50.0, 52.0, 49.0, 51.0], [49.5, 51.8, 49.2, 50.1])
    assert E.t_power(need, t["gain"] / t["sd"], alpha=0.05 / 2) >= 0.8
    assert E.t_power(need - 1, t["gain"] / t["sd"], alpha=0.05 / 2) < 0.8
    assert "seeds per arm would resolve it" in df["reason"].iloc[1]


def test_does_not_hold_only_from_a_test_the_other_way():
    worse = _row([40.0, 41.0, 39.5, 40.2], [50.0, 51.0, 50.5, 49.8])
    flat = _row([50.0, 52.0, 49.0, 51.0], [51.0, 50.0, 50.0, 51.5])
    df = claims_frame([worse, flat])
    assert df["verdict"].tolist() == ["does not hold", "inconclusive"]


def test_non_inferiority_p_is_the_paired_test_against_minus_the_margin():
    a, b = [50.0, 50.4, 49.7, 50.1], [50.3, 50.2, 50.0, 50.6]
    t = E.paired_compare(a, b, margin=1.0)
    d = [x - y for x, y in zip(a, b)]
    assert t["p"] == pytest.approx(stats.ttest_1samp(d, -1.0).pvalue)
    assert t["gain"] == pytest.approx(sum(d) / 4 + 1.0) and t["verdict"] == "holds"
    w = E.compare(a, b, margin=1.0)        # Welch: the shifted null as well
    assert w["p"] == pytest.approx(stats.ttest_ind(a, [x - 1.0 for x in b], equal_var=False).pvalue)


def test_all_of_is_an_intersection_union_test():
    good = E.paired_compare([60.0, 61.0, 62.0], [50.0, 50.5, 51.0])
    weaker = E.paired_compare([60.0, 61.0, 62.0], [59.0, 58.0, 61.5])
    c = E.all_of([good, weaker])
    assert c["p"] == max(good["p"], weaker["p"]) and c["gain"] == weaker["gain"]
    bad = E.paired_compare([50.0, 50.5, 51.0], [60.0, 61.0, 62.0])
    c = E.all_of([good, bad])
    assert c["p"] == bad["p"] and c["gain"] < 0 and c["verdict"] == "does not hold"


def test_any_of_is_bonferroni_over_the_cells():
    from reprolib.experiments.evidence import any_of

    parts = [E.paired_compare([50.0, 51.0, 52.0], [49.0, 50.2, 51.4]),
             E.paired_compare([40.0, 41.0, 42.0], [49.0, 50.2, 51.4])]
    u = any_of(parts)
    assert u["p"] == pytest.approx(min(1.0, 2 * parts[0]["p"])) and u["part"] is parts[0]


def test_not_converged_overrides_the_p_value():
    r = claim_row("c", "o", "p", E.paired_compare([60.0, 61.0, 62.0], [50.0, 50.5, 51.0]),
                  converged=False)
    df = claims_frame([r])
    assert df["verdict"].iloc[0] == "inconclusive: not converged" and df["p"].iloc[0] != ""


def test_rows_without_a_test_keep_their_verdict_and_stay_out_of_the_family():
    untested = claim_row("c", "o", "p", "inconclusive", "no test: one width")
    tested = _row([60.0, 61.0, 62.0, 60.5], [50.0, 50.5, 51.0, 49.0])
    df = claims_frame([untested, tested])
    assert df["verdict"].tolist() == ["inconclusive", "holds"]
    assert df["p (Holm)"].iloc[1] == df["p"].iloc[1]          # a family of one


def test_power_is_finite_where_scipys_noncentral_t_is_not():
    # scipy.stats.nct returns NaN at 1 dof and a large noncentrality; the integral does not
    for n in (2, 3, 4, 6):
        assert math.isfinite(E.t_power(n, 27.85, alpha=0.05 / 18))
    assert E.seeds_needed(28.03, 1.0066, alpha=0.05 / 18) == 3
    for n, eff in ((5, 1.2), (10, 0.5)):                  # the fallback agrees where both work
        dof, nc = n - 1, eff * math.sqrt(n)
        crit = stats.t.ppf(0.975, dof)
        assert E.t_power(n, eff) == pytest.approx(stats.nct.sf(crit, dof, nc)
                                                  + stats.nct.cdf(-crit, dof, nc))


def test_the_rule_is_stated_with_its_level():
    assert "Holm" in verdict_rule() and "0.05" in verdict_rule()
