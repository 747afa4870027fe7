"""MetaFormer-NAS pipeline at a tiny smoke size: run -> tables -> figures -> summary, all read
back from the records (conftest.py sends results and figures to a temporary folder)."""

import math

import pytest
import torch

from reprolib import configs
from reprolib.experiments import metaformer_nas as E
from reprolib.models.metaformer import Architecture

TINY = {"node_counts": (3,), "baselines": ("pooling",), "rounds": 2, "max_train_batches": 2,
        "controller_samples": 3, "derive_samples": 3, "toy_samples": 30, "retrain.epochs": 1}


@pytest.fixture(scope="module")
def cfg():
    torch.set_num_threads(1)
    c = configs.get_config("metaformer_nas", "smoke", **TINY)
    E.run(c)
    return c


def test_stages_and_records(cfg):
    names = [s.name for s in E.stages(cfg)]
    assert names == ["toy-nas3", "search-nas3", "retrain-pooling", "retrain-nas3"]
    st = {s.name: s for s in E.stages(cfg)}
    assert all(s.done for s in st.values())
    # retrain-nas3 is keyed by its search stage, not by the architecture it found
    nas = st["retrain-nas3"]
    assert nas.config["after"] == {"search-nas3": st["search-nas3"].run_id}
    assert "mixer" not in nas.config
    g = E.PIPELINE.graph(cfg)                      # found by role and tags, not by name
    assert g.get("retrain", mixer="nas3", searched=True) is g["retrain-nas3"]
    assert g.get("retrain", mixer="nas3").after == [g.get("search", n_nodes=3)]
    assert [s.name for s in g.select("retrain", searched=False)] == ["retrain-pooling"]
    # ... and trains exactly the searched architecture, saved as a compressed model
    arch = Architecture.parse(st["search-nas3"].metrics()["arch"])
    model = nas.model()
    assert model.arch == arch
    assert model.reprolib_spec["kwargs"]["mixer"] == arch.to_json()
    assert (st["search-nas3"].ckpt_dir / "search.pt").exists()
    assert st["search-nas3"].metrics()["space_size"] == 16
    # a second run reuses every record
    recs = E.run(cfg)
    assert {k: r["run_id"] for k, r in recs.items()} == {s.name: s.run_id for s in st.values()}


def test_tables(cfg):
    tabs = E.tables(cfg)
    t1, t2 = tabs["table1"], tabs["table2"]
    assert list(t1["nodes N"]) == [3] and list(t1["rounds"]) == [2]
    assert list(t1["architectures (counted)"]) == [16] == list(t1["2^N (N-1)!"])
    assert t1["search time (ours, s)"].iloc[0] > 0
    assert list(t2["model"]) == ["test_metaformer + Pooling", "test_metaformer + 3 Node NAS"]
    assert t2["paper model"].iloc[0] == "MetaFormer-s12 + Pooling"
    assert t2["paper model"].isna().iloc[1]          # the paper has no 3-node row
    assert t2["acc (ours, %)"].between(0, 100).all() and (t2["epochs"] == 1).all()
    assert (t2["params (M)"] > 0).all() and (t2["FLOPs (M)"] > 0).all()
    for df in (t1, t2):
        assert "profile=smoke" in df.attrs["caption"]
        assert "[smoke run: not the paper's setting]" in df.attrs["caption"]


def test_figures(cfg):
    figs = E.figures(cfg)
    assert set(figs) == {"search_curves", "searched_cells", "toy_reinforce", "table2_acc_params"}
    assert "profile=smoke" in figs["search_curves"]._suptitle.get_text()


def test_summary(cfg):
    text = E.summary(cfg)
    assert "16 (N = 3) = 2^N (N-1)!" in text
    acc = E.tables(cfg)["table2"]["acc (ours, %)"]
    assert all(math.isfinite(a) for a in acc)
    rec = {s.name: s for s in E.stages(cfg)}["retrain-pooling"].metrics()
    assert f"Pooling {rec['acc']:.1f}" in text
    assert "ln 16 = 2.77" in text
    assert "smoke-profile numbers, not the paper's setting" in text
