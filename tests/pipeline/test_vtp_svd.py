"""The VTP + decomposition pipeline end to end on the smoke data, made as small as it goes:
run -> tables -> figures -> summary (reprolib.experiments.vtp_svd)."""

import math

import pandas as pd
import pytest

from reprolib import configs
from reprolib.errors import ReprolibError
from reprolib.experiments import vtp_svd

TINY = {"image_size": 16, "patch_sizes": (8,), "sweep_patch": 8, "pretrain.epochs": 1, "sparsity.epochs": 1,
        "finetune.epochs": 1, "decompose_finetune.epochs": 1, "methods": ("svd", "qr"),
        "sweep_methods": ("svd", "lu"), "sweep_ratios": (0.25,), "merits_repeats": 1}


@pytest.fixture(scope="module")
def done():
    cfg = configs.get_config("vtp_svd", "smoke", **TINY)
    return cfg, vtp_svd.run(cfg)


def test_stage_names_and_upstreams():
    cfg = configs.get_config("vtp_svd", "smoke", **TINY)
    st = vtp_svd.stages(cfg)
    assert [s.name for s in st] == [
        "dense-p8", "sparse-p8", "vtp-p8", "decomp-p8-svd-r0.25-ft1", "decomp-p8-qr-r0.25-ft1",
        "decomp-p8-svd-r0.25-ft0", "decomp-p8-lu-r0.25-ft0", "analysis-p8", "identity-p8"]
    by = {s.name: s for s in st}
    assert by["vtp-p8"].config["after"] == {"dense-p8": by["dense-p8"].run_id,
                                            "sparse-p8": by["sparse-p8"].run_id}
    # an upstream setting re-keys everything after it, not what comes before
    cfg2 = configs.get_config("vtp_svd", "smoke", **{**TINY, "sparsity.lr": 5e-4})
    by2 = {s.name: s for s in vtp_svd.stages(cfg2)}
    assert by2["dense-p8"].run_id == by["dense-p8"].run_id
    assert all(by2[n].run_id != by[n].run_id for n in by if n != "dense-p8")
    # the same computation asked twice (sweep point == Table 2 point) is one stage, found
    # under both tag sets
    cfg3 = configs.get_config("vtp_svd", "smoke", **{**TINY, "sweep_finetune.epochs": 1})
    names = [s.name for s in vtp_svd.stages(cfg3)]
    assert names.count("decomp-p8-svd-r0.25-ft1") == 1
    g = vtp_svd.PIPELINE.graph(cfg3)
    t2 = g.get("decompose", use="table2", patch=8, method="svd", seed=cfg3.seed)
    assert g.get("decompose", use="sweep", patch=8, method="svd", ratio=0.25) is t2


def test_run_tables_figures_summary(done):
    cfg, recs = done
    assert len(recs) == 9 and all(r["run_id"].startswith(n) for n, r in recs.items())
    v = recs["vtp-p8"]["metrics"]
    assert v["params"] < v["params_dense"] and 0 <= v["acc"] <= 100
    assert set(v["history"]) == {"pretrain", "sparsity", "finetune"}
    assert v["acc_dense"] == recs["dense-p8"]["metrics"]["acc"]
    d = recs["decomp-p8-svd-r0.25-ft0"]["metrics"]
    assert d["params"] < v["params"] and d["acc"] == d["acc_no_ft"] and d["ranks"]

    tabs = vtp_svd.tables(cfg)
    assert set(tabs) == {"table2", "table2_layout", "rank_sweep", "error_vs_rank",
                         "lstsq_merits", "full_rank_identity"}
    t2 = tabs["table2"]
    assert list(t2["model"]) == ["ViT (dense baseline)", "ViT (after L1, before pruning)",
                                 "VTP", "VTP+SVD", "VTP+QR"]
    assert list(t2["epochs"]) == [1, 2, 3, 4, 4]
    assert list(t2["phases"]) == ["1", "1+1", "1+1+1", "1+1+1+1", "1+1+1+1"]
    assert t2.loc[t2["model"] == "VTP", "acc_paper"].item() == 30.0
    assert t2["acc"].between(0, 100).all() and (t2["wall_s"] > 0).all()
    assert t2["params"].iloc[-1] < t2["params"].iloc[2] < t2["params"].iloc[0]
    lay = tabs["table2_layout"]
    assert lay["patch"].tolist() == ["ViT patch=8"] and "(53.2)" in lay["VTP+SVD"].item()
    assert tabs["rank_sweep"][["method", "rank_ratio"]].values.tolist() == [["lu", 0.25],
                                                                          ["svd", 0.25]]
    err = tabs["error_vs_rank"].set_index(["method", "rank_ratio"])["rel_fro_mean"]
    assert err[("svd", 1.0)] < 1e-12 and err[("svd", 0.25)] <= err[("qr", 0.25)]
    mt = tabs["lstsq_merits"]
    assert len(mt) == 6 and (mt["layers"] == 12).all()
    assert all(math.isfinite(x) and x > 0 for x in mt["rel_error_median"])
    assert tabs["full_rank_identity"]["max_abs_diff"].max() < 1e-4
    for df in tabs.values():
        assert "profile=smoke" in df.attrs["caption"]
        assert "[smoke run: not the paper's setting]" in df.attrs["caption"]

    figs = vtp_svd.figures(cfg)
    assert set(figs) == {"acc_vs_params", "error_vs_rank"}
    assert "smoke run" in figs["acc_vs_params"].axes[0].get_title()

    text = vtp_svd.summary(cfg)
    assert "9,786,378 params at patch 4; 9,866,250 at patch 2; 9,835,530 at patch 8" in text
    assert f"{v['acc']:.1f} / {recs['decomp-p8-svd-r0.25-ft1']['metrics']['acc']:.1f}" in text
    assert "speed order" in text and "accuracy order" in text


def test_rerun_reuses_records_and_models(done):
    cfg, recs = done
    again = vtp_svd.run(cfg)
    assert {n: r["started"] for n, r in again.items()} == {n: r["started"] for n, r in recs.items()}
    st = {s.name: s for s in vtp_svd.stages(cfg)}
    dec = st["decomp-p8-svd-r0.25-ft0"].model()
    assert sum(p.numel() for p in dec.parameters()) == recs["decomp-p8-svd-r0.25-ft0"]["metrics"]["params"]


def test_tables_need_the_records():
    cfg = configs.get_config("vtp_svd", "smoke", **{**TINY, "prune_rate": 0.4})
    with pytest.raises(ReprolibError, match="no record for stage"):
        vtp_svd.tables(cfg)


def test_patch_overrides_use_dotted_keys():
    cfg = configs.get_config("vtp_svd", "smoke", patch_overrides={
        2: {"model": "vit_cifar_small_d2", "pretrain.epochs": 3}})
    assert vtp_svd.patch_cfg(cfg, 4) is cfg
    c2 = vtp_svd.patch_cfg(cfg, 2)
    assert (c2.model, c2.pretrain.epochs, c2.sparsity.epochs) == ("vit_cifar_small_d2", 3,
                                                                   cfg.sparsity.epochs)
    assert cfg.pretrain.epochs == 2                     # the base config is untouched
    assert "patch 2: vit_cifar_small_d2: dense baseline 3 ep" in vtp_svd.phase_note(
        configs.get_config("vtp_svd", "smoke", patch_sizes=(2, 4), patch_overrides={
            2: {"model": "vit_cifar_small_d2", "pretrain.epochs": 3}}))
    cpu = configs.get_config("vtp_svd", "cpu")
    assert vtp_svd.patch_cfg(cpu, 2).sparsity.epochs == 2 and cpu.sparsity.epochs == 3
    with pytest.raises(ReprolibError, match=r"unknown patch_overrides\[2\] key 'pretrain_epochs'"):
        configs.get_config("vtp_svd", "smoke", patch_overrides={2: {"pretrain_epochs": 3}})
    for bad in ({"seed": 1}, {"pretrain.seed": 1}):
        with pytest.raises(ReprolibError, match="not a per-patch setting"):
            vtp_svd.patch_cfg(configs.get_config("vtp_svd", "smoke", patch_overrides={2: bad}), 2)


# ---- the evidence machinery at smoke size: 2 seeds, 1 epoch per phase

EVIDENCE = {**TINY, "dataset": "digits", "model": "test_vit_cifar", "seeds": (0, 1),
            "methods": ("svd",), "rank_ratio": 0.5, "sweep_methods": ("svd", "qr", "lu"),
            "sweep_ratios": (0.5,), "sweep_finetune.epochs": 1,
            "flops_controls": ("vtp_more", "tp_global")}


@pytest.mark.slow   # ~1-6 min of one core: the evidence path at smoke size
def test_evidence_machinery():
    from reprolib.experiments import evidence as E

    cfg = configs.get_config("vtp_svd", "evidence", **EVIDENCE)
    recs = vtp_svd.run(cfg)
    names = list(recs)
    assert {"vtpft-p8-ft1", "dense-p8-s1", "vtp-p8-s1", "decomp-p8-lu-r0.5-ft1-s1",
            "vtpft-p8-ft1-s1", "vtp_more-p8-r0.5-ft1", "tp_global-p8-r0.5-ft1-s1"} <= set(names)
    for k in ("vtp_more-p8-r0.5-ft1-s1", "tp_global-p8-r0.5-ft1-s1"):   # at SVD's FLOPs
        m, svd = recs[k]["metrics"], recs["decomp-p8-svd-r0.5-ft1-s1"]["metrics"]
        assert m["target_flops"] == svd["flops"]
        assert abs(m["flops"] / svd["flops"] - 1) < 0.1 or m.get("pruning_ratio") == 0.0, k
    assert names.count("decomp-p8-svd-r0.5-ft1") == 1        # Table 2 point == sweep point
    assert recs["dense-p8-s1"]["config"]["seed"] == 1
    ctl = recs["vtpft-p8-ft1"]["metrics"]
    assert ctl["params"] == recs["vtp-p8"]["metrics"]["params"] and not ctl["ranks"]
    df = vtp_svd.evidence_frame(cfg)
    assert len(df) == 2 * (3 + 1 + 2) and set(df["seed"]) == {0, 1}
    tabs = vtp_svd.tables(cfg)
    t = tabs["evidence"]
    assert t["method"].iloc[0] == "VTP (not decomposed)" and len(t) == 1 + 3 + 2
    assert list(t["method"].iloc[-2:]) == ["VTP pruned further", "Torch-Pruning global"]
    assert t["acc after FT (%)"].str.contains("n = 2").all()
    assert t.set_index(["method", "rank ratio"]).loc[("SVD", "0.5"), "paper acc (%)"] == 53.2
    cl = vtp_svd.claims(cfg)
    assert list(cl.columns) == list(E.CLAIM_COLUMNS) and len(cl) == 2 * 2 + 2
    assert cl["claim"].str.contains("than Torch-Pruning global to its FLOPs").sum() == 1
    assert set(cl["verdict"]) <= set(E.VERDICTS)
    assert cl["claim"].str.contains("SVD keeps the most").sum() == 2
    assert "seeds 0, 1" in cl.attrs["caption"] and "plateau rule" in cl.attrs["caption"]
    # every decomposition records which test images it gets right: the claims add the paired
    # permutation test over images x seeds to the reason
    from reprolib.core.io import unpack_bits
    dec = recs["decomp-p8-lu-r0.5-ft1-s1"]["metrics"]
    assert len(unpack_bits(dec["test_correct"])) == dec["test_images"]
    assert 100 * unpack_bits(dec["test_correct"]).mean() == pytest.approx(dec["acc"])
    after = cl["claim"].str.contains("fine-tune")
    assert cl[after]["reason"].str.contains("paired permutation").all()
    assert not cl[~after]["reason"].str.contains("paired permutation").any()
    assert set(cl["test"]) <= {"paired t"} and cl["p (Holm)"].ne("").all()
    figs = vtp_svd.figures(cfg)
    assert len(figs["evidence"].axes) == 3
    # the issue-12 figure fixes: the title names every phase's epochs, the paper's Table 2
    # levels are drawn, coinciding curves are drawn once
    ax = figs["acc_vs_params"].axes[0]
    assert "decomposition fine-tune 1 ep" in ax.get_title()
    levels = [t.get_text() for t in ax.texts]          # each paper level labelled on its line
    assert any(lab.startswith("paper Table 2: VTP+SVD 53.2") for lab in levels)
    assert not any(lab.startswith("paper") for lab in ax.get_legend_handles_labels()[1])
    err = figs["error_vs_rank"].axes[0].get_legend_handles_labels()[1]
    assert len(err) == len(set(err))
    assert vtp_svd.coinciding(pd.DataFrame({"method": ["qr", "qr", "qr_reduced", "qr_reduced",
                                                       "lu", "lu"], "r": [1, 2] * 3,
                                            "v": [1.0, 2.0, 1.0, 2.0, 1.0, 3.0]}), "r", "v") \
        == [["qr", "qr_reduced"], ["lu"]]
