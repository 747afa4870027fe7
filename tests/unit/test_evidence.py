"""The statistics behind every claims table (reprolib.experiments.evidence)."""

import math

import pandas as pd
import pytest

from reprolib.experiments import evidence as E


def test_mean_std_and_format():
    m, s, n = E.mean_std([1.0, 2.0, 3.0, float("nan")])
    assert (m, n) == (2.0, 3) and s == pytest.approx(1.0)
    assert E.fmt([43.1, 44.0, 42.7], unit=" %") == "43.3 ± 0.7 % (n = 3)"
    assert E.fmt([]) == "n/a"


def test_compare_verdicts():
    better = E.compare([43.1, 44.0, 42.7], [41.0, 41.9, 40.2])
    assert better["verdict"] == "holds" and better["p"] < 0.05 and better["diff"] > 0
    worse = E.compare([40, 41, 39], [45, 46, 44])
    assert worse["verdict"] == "does not hold"
    noisy = E.compare([43, 45, 41], [42, 44, 43])
    assert noisy["verdict"] == "inconclusive" and "Welch" in noisy["reason"]
    assert E.compare([1.0], [2.0, 3.0])["verdict"] == "inconclusive"      # one seed
    lower = E.compare([1.0, 1.1, 0.9], [3, 3.2, 2.9], higher_is_better=False)  # e.g. latency
    assert lower["verdict"] == "holds"


def test_non_inferiority_margin():
    close = E.compare([43.0, 43.1, 42.9], [43.2, 43.3, 43.1], margin=1.0)
    assert close["verdict"] == "holds" and close["ci"][0] > -1.0
    far = E.compare([38.0, 38.1, 37.9], [43.2, 43.3, 43.1], margin=1.0)
    assert far["verdict"] == "does not hold"


def test_plateau_rule_and_binomial_se():
    rising = [{"test_acc": a} for a in (10, 20, 30, 40, 50, 60)]
    flat = [{"test_acc": a} for a in (10, 30, 40, 41.0, 41.2, 41.1, 41.3, 41.0, 41.4)]
    assert not E.plateaued(rising)["plateau"] and E.plateaued(flat)["plateau"]
    assert not E.plateaued(flat[:4])["plateau"]                  # too few evaluations
    assert E.binomial_se(50.0, 1017) == pytest.approx(100 * math.sqrt(0.25 / 1017))


def test_claims_frame_columns():
    df = E.claims_frame([E.claim_row("c", "1 ± 0", "2", "holds", "r")])
    assert list(df.columns) == list(E.CLAIM_COLUMNS) and len(df) == 1
    with pytest.raises(ValueError):
        E.claim_row("c", "", "", "maybe", "")


def test_seeded_config_and_seed_suffix():
    from reprolib.configs import get_config

    cfg = get_config("quickstart", "smoke")
    s3 = E.seeded(cfg, 3)
    assert s3.seed == 3 and s3.train.seed == 3 and cfg.seed == 0 and cfg.train.seed == 0
    assert s3.widths == cfg.widths and s3.train.epochs == cfg.train.epochs
    assert E.split_seed("retrain-mlp" + E.seed_suffix(12)) == ("retrain-mlp", 12)
    assert E.split_seed("vgg19_cifar-base-w0.25-cifar10_subset") == \
        ("vgg19_cifar-base-w0.25-cifar10_subset", None)
    assert E.split_seed("toy-nas4") == ("toy-nas4", None)


def test_claims_markdown_without_records_says_how_to_make_them(tmp_path, monkeypatch):
    monkeypatch.setenv("REPROLIB_RESULTS", str(tmp_path))
    text = E.claims_markdown("templates")
    assert "not run" in text and "reprolib run templates --profile evidence" in text
    assert "has no `evidence` profile" in E.claims_markdown("quickstart")


def test_seeded_reseeds_the_config_and_its_recipes():
    from reprolib.configs import get_config

    cfg = get_config("sidt", "smoke")
    c = E.seeded(cfg, 3)
    assert c.seed == 3 and c.search.seed == 3 and c.finetune.seed == 3 and c.baseline.seed == 3
    assert cfg.seed == 0 and cfg.search.seed == 0                 # the original is untouched
    assert E.seed_suffix(0, 0) == "" and E.seed_suffix(2, 0) == "-s2"


def test_spread_and_combined_verdicts():
    df = pd.DataFrame({"c": ["a", "a", "b", "b"], "x": [1, 1, 1, 1], "v": [1.0, 3.0, 5.0, 5.0]})
    sp = E.spread(df, ["c", "x"], "v")
    assert sp["mean"].tolist() == [2.0, 5.0] and sp["n"].tolist() == [2, 2]
    assert sp["shown"].iloc[0] == "2.0 ± 1.4 (n = 2)"
    h, n, i = ({"verdict": v, "reason": v} for v in ("holds", "does not hold", "inconclusive"))
    assert E.all_of([h, h])["verdict"] == "holds"
    assert E.all_of([h, i])["verdict"] == "inconclusive"
    assert E.all_of([h, i, n])["verdict"] == "does not hold"
    assert E.all_of([h, n])["reason"] == "holds; does not hold"


def test_plateau_and_cost_notes():
    flat = [{"test_acc": a} for a in (10, 30, 40, 41.0, 41.2, 41.1, 41.3, 41.0, 41.4)]
    rising = [{"test_acc": a} for a in (10, 20, 30, 40, 50, 60)]
    note = E.plateau_note([flat, rising], what="the baseline")
    assert "met in 1 of 2 seeds" in note and "+0.1 / +30.0 pp" in note
    assert "the baseline" in note
    recs = [{"wall_time_s": 90.0, "device": "cpu:x86_64 x2 threads=2"},
            {"wall_time_s": 60.0, "device": "cpu:x86_64 x2 threads=1"}]
    assert E.cost_note(recs) == "2 stage records, 2 min of recorded stage time on cpu:x86_64 x2"


def test_plot_mean_std_draws_one_errorbar_series_per_group():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    df = pd.DataFrame({"h": ["a"] * 4 + ["b"] * 4, "x": [1, 1, 2, 2] * 2,
                       "y": [1.0, 2.0, 3.0, 4.0, 2.0, 2.0, 5.0, 5.0]})
    fig, ax = plt.subplots()
    sp = E.plot_mean_std(ax, df, "x", "y", "h", offset=0.1)
    assert len(ax.containers) == 2 and len(sp) == 4
    assert sp.set_index(["h", "x"]).loc[("a", 2), "mean"] == 3.5
    plt.close(fig)


def test_not_run_is_an_empty_claims_table_saying_why():
    class St:
        def __init__(self, name, done):
            self.name, self.done = name, done

    class Cfg:
        def __init__(self, profile, seeds):
            self.profile, self.seeds = profile, seeds

    none = E.not_run("p", Cfg("cpu", ()), [St("a", True)])
    assert none.empty and list(none.columns) == list(E.CLAIM_COLUMNS)
    assert "profile `cpu` has no seeds" in none.attrs["caption"]
    half = E.not_run("p", Cfg("evidence", (0, 1)), [St("a", True), St("b", False)])
    assert half.empty and "not run: 1 of 2 stages" in half.attrs["caption"]
    assert "reprolib run p --profile evidence" in half.attrs["caption"]
    assert E.not_run("p", Cfg("evidence", (0, 1)), [St("a", True)]) is None
