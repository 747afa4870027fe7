"""The statistics of the claims tables (reprolib.experiments.evidence): paired tests over seeds
and over test images, Holm's family-wise adjustment, the power of a t-test and the seeds it
needs -- checked against scipy and against values known from the literature."""

import math

import numpy as np
import pytest
from scipy import stats

from reprolib.experiments import evidence as E


def test_paired_compare_is_scipys_paired_t_and_differs_from_welch():
    a = [53.3, 52.1, 54.0, 53.0, 52.5]
    b = [51.9, 51.5, 52.0, 52.2, 51.0]     # every seed lower by about the same amount
    r = E.paired_compare(a, b)
    assert r["p"] == pytest.approx(stats.ttest_rel(a, b).pvalue)
    assert r["verdict"] == "holds" and r["n_pairs"] == 5 and r["diff"] == pytest.approx(1.26)
    d = np.subtract(a, b)
    half = stats.t.ppf(0.975, 4) * d.std(ddof=1) / math.sqrt(5)
    assert r["ci"] == pytest.approx((d.mean() - half, d.mean() + half))
    assert E.compare(a, b)["p"] > r["p"]          # the pairing removes the seeds' spread
    assert E.paired_compare(b, a)["verdict"] == "does not hold"
    assert E.paired_compare([1.0], [0.0])["verdict"] == "inconclusive"
    # non-inferiority: "a is at most 2 worse than b" holds, "at most 0.1" is inconclusive
    assert E.paired_compare(b, a, margin=2.0)["verdict"] == "holds"
    assert E.paired_compare(b, a, margin=0.1)["verdict"] == "does not hold"


def test_image_test_is_paired_over_images_and_seeds():
    rng = np.random.default_rng(1)
    base = rng.random((3, 1017)) < 0.5
    better = base.copy()
    flip = rng.random((3, 1017)) < 0.06             # ~6 % of wrong images become right
    better[flip & ~base] = True
    r = E.image_test(better, base)
    assert r["diff"] > 0 and r["p"] < 0.001 and r["ci"][0] > 0
    assert r["n_images"] == 1017 and r["n_seeds"] == 3
    same = E.image_test(base, base)
    assert same["p"] == 1.0 and same["diff"] == 0.0
    noise = rng.random((3, 1017)) < 0.5
    assert E.image_test(noise, base)["p"] > 0.01
    with pytest.raises(ValueError):
        E.image_test(base[:, :10], base)


def test_holm_matches_the_step_down_rule():
    assert E.holm([0.01, 0.04, 0.03, 0.5]) == pytest.approx([0.04, 0.09, 0.09, 0.5])
    out = E.holm([0.2, float("nan"), 0.001])
    assert out[0] == pytest.approx(0.2) and math.isnan(out[1]) and out[2] == pytest.approx(0.002)
    assert E.holm([]) == []
    assert max(E.holm([0.9, 0.8, 0.7])) == 1.0


@pytest.mark.parametrize("effect, n", [(0.5, 34), (1.0, 10), (0.8, 15)])
def test_seeds_needed_for_a_paired_t_test(effect, n):
    """The one-sample / paired t-test at alpha 0.05, power 0.8 (Cohen's tables, G*Power):
    d = 0.5 -> 34, d = 0.8 -> 15, d = 1.0 -> 10."""
    assert E.seeds_needed(effect, 1.0) == n
    assert E.t_power(n, effect) >= 0.8 > E.t_power(n - 1, effect)


def test_seeds_needed_unpaired_and_limits():
    # two-sample t, d = 0.5: 64 per group (Cohen)
    assert E.seeds_needed(0.5, 1.0, paired=False) == 64
    assert E.seeds_needed(0.0, 1.0) is None
    assert E.seeds_needed(0.001, 1.0, max_n=1000) is None
    assert E.seeds_needed(1.0, 0.0) == 2


def test_confidence_label_is_the_interval_actual_level():
    assert E.confidence_label(0.05) == "95 %"
    assert E.confidence_label(0.05 / 2) == "97.5 %"          # Bonferroni over 2, not "98 %"
    c = E.compare([1.0, 2.0, 3.0], [1.5, 2.5, 2.0], margin=1.0, alpha=0.025)
    assert "97.5 % CI" in c["reason"]
    p = E.paired_compare([1.0, 2.0, 3.0], [1.5, 2.5, 2.0], margin=1.0, alpha=0.025)
    assert "97.5 % CI" in p["reason"]


def test_templates_plateau_count_reads_history():
    import pandas as pd

    from reprolib.experiments.templates.report import cell_stats

    flat = [{"epoch": i, "test_acc": 50.0} for i in range(1, 7)]
    rising = [{"epoch": i, "test_acc": 10.0 * i} for i in range(1, 7)]
    df = pd.DataFrame({"config.dataset": "d", "config.model": "m", "config.template": "base",
                       "config.width": 0.5, "acc": [50.0, 60.0], "epochs": 6,
                       "history": [flat, rising]})
    st = cell_stats(df)
    assert int(st["plateaued"].iloc[0]) == 1 and int(st["n"].iloc[0]) == 2


def test_templates_spread_claim_tests_range_against_five_points():
    from reprolib.experiments.templates.assess import _spread_test

    close = {"base": [50.0, 50.2, 49.8], "uniform": [51.0, 51.1, 50.9]}
    far = {"base": [50.0, 50.2, 49.8], "uniform": [60.0, 60.1, 59.9]}
    noisy = {"base": [40.0, 55.0, 50.0], "uniform": [50.0, 65.0, 52.0]}   # range > 0, CI holds 5
    assert _spread_test("m", 1.0, close)["verdict"] == "holds"
    assert _spread_test("m", 1.0, far)["verdict"] == "does not hold"
    r = _spread_test("m", 1.0, noisy)
    assert r["verdict"] == "inconclusive" and "against 5" in r["reason"]
    assert _spread_test("m", 1.0, {"base": [1.0]}) is None
