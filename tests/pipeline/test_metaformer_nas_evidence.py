"""The MetaFormer-NAS evidence machinery at smoke size (2 seeds, 1 epoch, digits): every
condition x seed one stage (search, random-search control, baselines, the chosen cells
retrained), the uniform policy's reward logged beside the controller's, tables with mean ± std,
figures with error bars, and a claims table whose verdicts come from evidence.compare."""

import matplotlib
import pytest
import torch

from reprolib import configs
from reprolib.experiments import evidence as ev
from reprolib.experiments import metaformer_nas as E
from reprolib.methods.metaformer_nas import uniform_entropy

TINY = {"dataset": "digits", "model": "test_metaformer", "image_size": 16, "batch_size": 64,
        "node_counts": (3,), "baselines": ("pooling", "mlp"), "rounds": 2,
        "max_train_batches": 2, "controller_samples": 3, "reward_batches": 2,
        "uniform_samples": 2, "derive_samples": 3, "derive_batches": 2, "toy_samples": 30,
        "random_samples": 2, "seeds": (0, 1), "retrain.epochs": 1, "retrain.batch_size": 64,
        "proxy.epochs": 1, "proxy.batch_size": 64}


@pytest.fixture(scope="module")
def cfg():
    torch.set_num_threads(1)
    c = configs.get_config("metaformer_nas", "evidence", **TINY)
    E.run(c)
    return c


def test_every_condition_and_seed_is_one_stage(cfg):
    names = [s.name for s in E.stages(cfg)]
    per_seed = ["search-nas3", "random-nas3", "retrain-pooling", "retrain-mlp", "retrain-nas3",
                "retrain-random3"]
    assert names == ["toy-nas3"] + [f"{n}-s{s}" for s in (0, 1) for n in per_seed]
    st = {s.name: s for s in E.stages(cfg)}
    assert all(s.done for s in st.values())
    assert st["retrain-pooling-s0"].seed == 0 and st["retrain-pooling-s1"].seed == 1
    assert st["retrain-pooling-s0"].run_id != st["retrain-pooling-s1"].run_id
    # the random-search control keeps its best cell on validation and the retrain trains it
    rnd = st["random-nas3-s1"].metrics()
    assert len(rnd["candidates"]) == 2
    assert rnd["val_acc"] == max(c["val_acc"] for c in rnd["candidates"])
    assert st["retrain-random3-s1"].model().arch.to_json() == rnd["arch"]
    # every chosen cell is read from its own seed's stage (roles and tags, not names)
    g = E.PIPELINE.graph(cfg)
    for seed in (0, 1):
        assert g.get("retrain", mixer="nas3", seed=seed).after == [
            g.get("search", n_nodes=3, seed=seed)]
        assert g.get("retrain", mixer="random3", seed=seed).after == [
            g.get("random", n_nodes=3, seed=seed)]
    assert list(E.by_seed(g, "search", n_nodes=3)) == [0, 1]
    assert [s.name for s in g.select("search")] == ["search-nas3-s0", "search-nas3-s1"]
    # the search logged the uniform policy's reward every round
    hist = st["search-nas3-s0"].metrics()["history"]
    assert len(hist) == 2 and all(0 <= h["uniform_reward"] <= 1 for h in hist)


def test_tables_have_mean_and_std(cfg):
    tabs = E.tables(cfg)
    assert list(tabs) == ["table1", "table2", "controller", "claims"]
    t2 = tabs["table2"]
    assert list(t2["mixer"]) == ["Pooling", "SpatialMLP", "random search 3-node",
                                 "searched 3-node"]
    assert all("±" in a and "(n = 2)" in a for a in t2["acc (ours, %)"])
    assert (t2["seeds"] == 2).all()
    c = tabs["controller"].iloc[0]
    assert c["uniform entropy (nats)"] == pytest.approx(uniform_entropy(3), abs=0.01)
    for df in tabs.values():
        assert "seeds 0, 1" in df.attrs["caption"]
        assert "[evidence run: not the paper's setting]" in df.attrs["caption"]


def test_claims_verdicts(cfg):
    cl = E.claims(cfg)
    assert list(cl.columns) == list(ev.CLAIM_COLUMNS)
    assert set(cl["verdict"]) <= set(ev.VERDICTS)
    assert len(cl) == 2 + 3                        # controller x 2, searched vs 2 mixers + random
    assert cl["claim"].str.contains("≥ random search").any()
    assert "wall time" in cl.attrs["caption"] and "plateau" in cl.attrs["caption"]
    md = ev.claims_markdown("metaformer_nas", cfg)
    assert md.startswith("Claims (MetaFormer-NAS)") and "| claim |" in md


def test_evidence_figures_have_error_bars(cfg):
    figs = E.figures(cfg)
    assert list(figs) == ["evidence", "search_curves", "searched_cells", "toy_reinforce"]
    for name in ("evidence", "search_curves"):
        bars = [c for ax in figs[name].axes for c in ax.containers
                if isinstance(c, matplotlib.container.ErrorbarContainer)]
        assert bars, name
    labels = [t.get_text() for t in figs["search_curves"].axes[0].get_legend().get_texts()]
    assert any("uniformly drawn" in t for t in labels)
    import matplotlib.pyplot as plt
    plt.close("all")


def test_summary_states_every_verdict(cfg):
    text = E.summary(cfg)
    for v in E.claims(cfg)["verdict"]:
        assert f"**{v}**" in text
