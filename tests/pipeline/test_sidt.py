"""SiDT pipeline end to end at the smoke profile, made small (one ratio, one epoch per stage,
16 px, batch 256, the tiny Swin as the reference model): run -> tables -> figures -> summary
(results in the test session's temporary folder, see conftest.py)."""

import math

import pytest
import torch

import reprolib  # noqa: F401,I001  (installs the torchvision shim before timm)
from reprolib.configs import get_config
from reprolib.experiments import sidt
from reprolib.core.measure import count_params
from reprolib.methods import sidt as method

SMALL = {"search.epochs": 1, "finetune.epochs": 1, "ratios": (0.5,), "image_size": 16,
         "search.batch_size": 256, "finetune.batch_size": 256, "latency_repeats": 2,
         "reference_model": "swin_tiny_test", "reference_size": 16, "reference_classes": 10}


@pytest.fixture(scope="module")
def cfg():
    c = get_config("sidt", "smoke", **SMALL)
    sidt.run(c)
    return c


def test_stages_and_records(cfg):
    names = [s.name for s in sidt.stages(cfg)]
    assert names == ["search", "finetune-p00", "finetune-p50", "reference"]
    st = sidt.stages(cfg)
    assert all(s.done for s in st)
    first = {n: r["started"] for n, r in sidt.run(cfg).items()}
    assert {n: r["started"] for n, r in sidt.run(cfg).items()} == first   # cached
    search, p00, p50, ref = (s.record() for s in st)
    assert p50["config"]["after"] == {"search": search["run_id"]}
    assert set(ref["config"]["after"]) == {"finetune-p00", "finetune-p50"}
    s = search["metrics"]
    assert s["epochs"] == 1 and s["n_scores"] == 2048 and 0 <= s["acc"] <= 100
    # ratio 0 removes only the scores: same function as the searched model
    assert s["params"] - s["n_scores"] == p00["metrics"]["params"]
    assert p00["metrics"]["acc_pruned_no_ft"] == pytest.approx(s["acc"])
    m50 = p50["metrics"]
    assert m50["params"] < p00["metrics"]["params"] and m50["flops"] < p00["metrics"]["flops"]
    assert m50["test_images"] > 0 and math.isfinite(m50["latency_ms"])


def test_saved_models_come_back(cfg):
    search, _, p50, _ = sidt.stages(cfg)
    scored = search.model()
    assert method.scores(scored) and count_params(scored) == search.metrics()["params"]
    small = p50.model()
    assert not method.scores(small) and count_params(small) == p50.metrics()["params"]
    assert small(torch.randn(2, 3, 16, 16)).shape == (2, 10)
    assert method.arch(small)["attn_dims"] == p50.metrics()["attn_dims"]


def test_tables(cfg):
    tabs = sidt.tables(cfg)
    assert list(tabs) == ["table1", "complexity", "table2", "swin_t"]
    t1, cx, t2, sw = (tabs[k] for k in tabs)
    assert list(t1["PR"]) == ["0%", "50%"]
    assert t1["acc (%)"].between(0, 100).all() and t1["acc no FT (%)"].between(0, 100).all()
    assert t1["params rel."].iloc[0] == 1 and 0 < t1["params rel."].iloc[1] < 1
    assert t1["paper acc (%)"].iloc[0] == 81.78 and math.isnan(t1["paper acc (%)"].iloc[1])
    assert len(cx) == 2 * 4 * 2                   # 2 ratios x 4 stages x (W-MSA, MLP)
    assert (cx["measured (MMAC)"] == cx["formula (MMAC)"]).all()
    assert list(t2["PR"]) == ["0%", "20%", "40%"]
    assert t2["paper backbone (M)"].tolist() == [28, 22, 16]
    assert sorted(set(sw["kind"])) == ["learned", "uniform"] and len(sw) == 4
    u = sw[sw["kind"] == "uniform"].set_index("PR")
    assert u.loc["50%", "params (M)"] < u.loc["0%", "params (M)"]
    for df in tabs.values():
        cap = df.attrs["caption"]
        assert "profile=smoke" in cap and "[smoke run: not the paper's setting]" in cap
        assert "search=1 ep" in cap and "finetune=1 ep" in cap and "data=digits" in cap


def test_figures(cfg):
    figs = sidt.figures(cfg)
    assert set(figs) == {"tradeoff", "complexity"}
    for fig in figs.values():
        assert "profile=smoke" in fig._suptitle.get_text()
        assert "[smoke run: not the paper's setting]" in fig._suptitle.get_text()
    assert len(figs["tradeoff"].axes) == 3 and len(figs["complexity"].axes) == 2


def test_summary(cfg):
    text = sidt.summary(cfg)
    t1 = sidt.tables(cfg)["table1"]
    accs = " / ".join(f"{a:.1f}" for a in t1["acc (%)"])
    assert f"{accs} % top-1 after fine-tuning at PR 0 / 50 %" in text
    assert "2,048 scores in `swin_tiny_test`" in text
    assert "equal the measured per-layer multiply-adds exactly, in all 32" in text
    assert "1 search + 1 fine-tune epochs" in text and "`digits`" in text
    assert "binomial standard error" in text or "more than twice" in text


# ---- the evidence machinery at smoke size: 2 seeds, 1 epoch per phase, two ratios

EVIDENCE = {"dataset": "digits", "model": "swin_tiny_test", "model_kwargs": {}, "seeds": (0, 1),
            "baseline.epochs": 1, "search.epochs": 1, "finetune.epochs": 1,
            "ratios": (0.4,), "image_size": 16, "baseline.batch_size": 256,
            "search.batch_size": 256, "finetune.batch_size": 256, "latency_repeats": 2,
            "reference_model": "swin_tiny_test", "reference_size": 16, "reference_classes": 10,
            "controls": ("uniform", "random", "tp_uniform", "tp_global")}


@pytest.fixture(scope="module")
def ev():
    c = get_config("sidt", "evidence", **EVIDENCE)
    sidt.run(c)
    return c


@pytest.mark.slow   # ~1-6 min of one core: the evidence path at smoke size
def test_evidence_stages_resume_and_match_parameters(ev):
    from reprolib.experiments import evidence as E

    st = {s.name: s for s in sidt.stages(ev)}
    assert {"baseline", "search", "finetune-p40", "uniform-p40", "random-p40", "baseline-s1",
            "search-s1", "finetune-p00-s1", "uniform-p40-s1", "random-p40-s1"} <= set(st)
    assert {"tp_uniform-p40", "tp_global-p40-s1"} <= set(st)
    assert len(st) == 2 * (2 + 2 + 4) + 1                  # + the reference counts
    assert st["search"].config["after"] == {"baseline": st["baseline"].run_id}
    assert st["search-s1"].config["seed"] == 1 and st["baseline-s1"].config["baseline"]["seed"] == 1
    g = sidt.PIPELINE.graph(ev)                    # found by role and tags, not by name
    assert g.get("control", seed=1, ratio=0.4, control="uniform") is g["uniform-p40-s1"]
    assert g.get("search", seed=1).after == [g.get("baseline", seed=1)]
    assert g.get("reference").after == g.select("finetune", seed=0)
    assert [s.name for s in g.select("finetune", ratio=0.0)] == ["finetune-p00", "finetune-p00-s1"]
    first = {n: r["started"] for n, r in sidt.run(ev).items()}
    assert {n: r["started"] for n, r in sidt.run(ev).items()} == first   # every stage cached
    df = sidt.evidence_frame(ev)
    assert len(df) == 2 * (2 + 4) and set(df["seed"]) == {0, 1}
    for (seed, r), g in df[df["ratio"] > 0].groupby(["seed", "ratio"]):
        p, f = g.set_index("condition")["params"], g.set_index("condition")["flops"]
        assert abs(p["uniform"] - p["learned"]) / p["learned"] < 0.03
        assert abs(p["random"] - p["learned"]) / p["learned"] < 0.03
        for k in ("tp_uniform", "tp_global"):          # Torch-Pruning: at the learned FLOPs
            assert abs(f[k] - f["learned"]) / f["learned"] < 0.1, (k, f[k], f["learned"])
    assert E.plateau_note([st["baseline"].metrics()["history"]]).endswith("(rise n/a pp)")


@pytest.mark.slow   # ~1-6 min of one core: the evidence path at smoke size
def test_evidence_tables_figure_claims(ev):
    from reprolib.experiments import evidence as E

    tabs = sidt.tables(ev)
    assert {"table1", "evidence", "evidence_runs", "claims"} <= set(tabs)
    t = tabs["evidence"]
    assert list(t["condition"]) == ["unpruned", "learned", "uniform", "random", "tp_uniform",
                                    "tp_global"]
    assert t["acc (%)"].str.contains("±").all() and t["acc (%)"].str.contains("n = 2").all()
    assert "seeds 0, 1" in t.attrs["caption"] and "plateau rule" in t.attrs["caption"]
    cl = sidt.claims(ev)
    assert list(cl.columns) == list(E.CLAIM_COLUMNS) and len(cl) == 4 + 1
    assert cl["claim"].str.contains("Torch-Pruning global at equal FLOPs").any()
    assert set(cl["verdict"]) <= set(E.VERDICTS) and cl["ours"].str.contains("±").all()
    cap = cl.attrs["caption"]
    assert "seeds 0, 1" in cap and "dense baseline 1 ep" in cap and "stage records" in cap
    assert "[evidence run: not the paper's setting]" in cap
    figs = sidt.figures(ev)
    assert set(figs) == {"tradeoff", "complexity", "evidence"}
    assert len(figs["evidence"].axes) == 3 and figs["evidence"].axes[0].containers
    md = E.claims_markdown("sidt", ev)
    assert md.startswith(cap) and f"| {' | '.join(E.CLAIM_COLUMNS)} |" in md
    assert "p (Holm)" in md and cap.index("Holm") < cap.index("seeds 0, 1")   # rule first
    smoke = sidt.claims(get_config("sidt", "smoke", **SMALL))     # no seeds: an empty table
    assert smoke.empty and list(smoke.columns) == list(E.CLAIM_COLUMNS)
    assert "has no seeds" in smoke.attrs["caption"] and "--profile evidence" in smoke.attrs["caption"]
    part = get_config("sidt", "evidence", **{**EVIDENCE, "ratios": (0.6,)})   # not run yet
    assert sidt.claims(part).empty and "not run" in sidt.claims(part).attrs["caption"]
    assert E.claims_markdown("sidt", part).startswith("sidt claims: not run: ")


def test_search_from_a_trained_baseline_which_is_table1s_zero_row():
    """The paper's order (issue 16): a dense baseline first, the search warm-started from it,
    Table I's 0 % row = that baseline; its figures still draw."""
    c = get_config("sidt", "smoke", **SMALL, **{"baseline.epochs": 1,
                                                  "baseline.batch_size": 256})
    sidt.run(c)
    base, search = sidt.stages(c)[:2]
    assert base.name == "baseline" and search.record()["config"]["after"] == \
        {"baseline": base.record()["run_id"]}
    t1 = sidt.tables(c)["table1"]
    assert t1["PR"].tolist()[:2] == ["0% (dense baseline)", "0% (searched, fine-tuned)"]
    assert t1["acc (%)"].iloc[0] == round(base.metrics()["acc"], 2)
    assert t1["params (M)"].iloc[0] == round(base.metrics()["params"] / 1e6, 3)
    figs = sidt.figures(c)
    assert figs
    import matplotlib.pyplot as plt

    for f in (figs.values() if isinstance(figs, dict) else figs):
        plt.close(f)
