"""The overview end to end: the conformance table against the committed one (a match that
turns into a mismatch fails here), and run -> tables -> figures -> summary at the smoke
profile with one export stage (results in the test session's temporary folder)."""

import math

import pandas as pd
import pytest

from reprolib import paths
from reprolib.configs import get_config
from reprolib.experiments import overview as O

# counting every printed architecture takes ~14 s on 2 cores (nbval runs the notebook)
pytestmark = pytest.mark.slow

COMMITTED = paths.ROOT / "figures" / "overview" / "conformance-cpu.csv"


@pytest.fixture(scope="module")
def conf():
    return O.conformance()


def test_conformance_is_well_formed(conf):
    assert list(conf.columns[:6]) == ["paper", "table", "quantity", "unit", "paper_value", "ours"]
    for col in ("paper", "quantity", "paper_value", "ours", "tolerance", "verdict"):
        assert col in conf
    assert set(conf["verdict"]) <= set(O.VERDICTS)
    assert set(conf["paper"]) == {"SiDT", "PE", "VTP+SVD", "MetaFormer-NAS", "Templates"}
    assert (conf["paper"] == "Templates").sum() == 20                # Table 2's 20 cells
    assert not conf.duplicated(["paper", "table", "quantity"]).any()
    counted = conf[conf["verdict"].isin(["match", "explained mismatch", "unexplained mismatch"])]
    within = (counted["difference"].abs() <= counted["tolerance"] + 1e-9)
    assert (within == (counted["verdict"] == "match")).all()
    mism = conf[conf["verdict"].str.contains("mismatch") | (conf["verdict"] == "not counted")]
    assert (mism["explanation"].str.len() > 20).all()              # every one says why
    # numbers the papers print and reprolib reproduces exactly
    v = conf.set_index("quantity")
    assert v.loc["search-space size, N = 7", "ours"] == 92_160
    assert v.loc["Swin-T params, PR 0%", "verdict"] == "match"
    assert "10-class head" in v.loc["Swin-T params", "explanation"]


def test_no_committed_match_turns_into_a_mismatch(conf):
    if not COMMITTED.exists():
        pytest.skip(f"{COMMITTED.name} not committed yet (reprolib run overview --profile cpu)")
    old = pd.read_csv(COMMITTED)
    key = ["paper", "table", "quantity"]
    now = conf.set_index(key)["verdict"]
    was = old[old["verdict"] == "match"].set_index(key)
    lost = [f"{' / '.join(k)}: now {now.get(k, 'missing')}" for k in was.index
            if now.get(k) != "match"]
    assert not lost, "matches lost:\n" + "\n".join(lost)
    # and nothing counted before is silently dropped
    assert set(map(tuple, old[key].values)) <= set(now.index)


def test_overview_smoke_pipeline(conf):
    cfg = get_config("overview", "smoke", export_cases=("vit_pe",))
    recs = O.run(cfg)
    assert list(recs) == ["export-vit_pe"]
    m = recs["export-vit_pe"]["metrics"]
    assert m["max_abs_diff"] < 1e-4 and m["opset"] >= 17 and m["ties_kept"] is True
    assert O.run(cfg)["export-vit_pe"]["started"] == recs["export-vit_pe"]["started"]  # cached
    tabs = O.tables(cfg)
    assert set(tabs) == {"conformance", "conformance_counts", "export", "points", "paper_points"}
    ex = tabs["export"]
    assert len(ex) == 1 and ex.iloc[0]["tied stay tied"] == "yes"
    for t in tabs.values():
        assert t.attrs["caption"]
    counts = tabs["conformance_counts"].set_index("paper")
    assert counts.loc["all", "total"] == len(conf)
    assert counts.loc["all", "match"] == (conf["verdict"] == "match").sum()
    fig = O.figures(cfg)["tradeoff"]
    assert len(fig.axes) >= 6
    text = O.summary(cfg)
    assert "ViT-PE" in text and f"{len(conf)} architecture-determined numbers" in text
    assert not any(math.isnan(x) for x in ex["ORT max abs diff"])
