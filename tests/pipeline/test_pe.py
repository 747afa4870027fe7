"""PE pipeline end to end at the smoke profile: run -> tables -> figures -> summary (results in
the test session's temporary folder, see conftest.py)."""

import importlib
import math
import os
import subprocess
import sys

import pytest
import torch

import reprolib  # noqa: F401,I001  (installs the torchvision shim before timm)
from reprolib import paths
from reprolib.configs import get_config
from reprolib.experiments import pe
from reprolib.core.measure import count_params

# Table 1 has 21 buildable models (45 s on 2 cores); the pipeline needs the PE row and DeiT-S.
_T1 = ("PVT-T", "ViT-PE¹ (ours)", "DeiT-S/16")


@pytest.fixture
def small_tables(monkeypatch):
    # the count stages read the sources of the stage builders' module (``pe.stages`` is the
    # pipeline's function of that name, so the module is imported by its full name)
    builders = importlib.import_module("reprolib.experiments.pe.graph")
    monkeypatch.setattr(builders, "TABLE1_SOURCES", {k: pe.TABLE1_SOURCES[k] for k in _T1})


def _trained(cfg, run):
    """The ``train`` stage of ``run`` at ``cfg.seed``."""
    return pe.PIPELINE.graph(cfg).get("train", run=run, seed=cfg.seed)


def _cfg(**over):
    return get_config("pe", "smoke", **{"vit_train.epochs": 1, **over})


def test_run_tables_figures_summary(small_tables):
    cfg = _cfg()
    recs = pe.run(cfg)
    assert list(recs) == ["table1", "table2", "sharing", "vit_pe_test", "vit_test_unshared"]
    for st in pe.stages(cfg):
        assert st.path.exists(), st.path
    first = {n: r["started"] for n, r in recs.items()}
    assert {n: r["started"] for n, r in pe.run(cfg).items()} == first   # cached, not recomputed

    tabs = pe.tables(cfg)
    assert set(tabs) == {"table1", "table2", "sharing", "training"}
    t1, t2, sh, tr = (tabs[k] for k in ("table1", "table2", "sharing", "training"))
    assert list(t1["model"]) == list(_T1)
    assert list(t1.columns) == ["model", "source", "params_M", "GFLOPs", "paper_params_M",
                                "paper_GFLOPs", "paper_top1", "top1", "top1_from"]
    vit = t1.set_index("model").loc["ViT-PE¹ (ours)"]
    assert vit["params_M"] == pytest.approx(11.433832) and vit["top1_from"] == "paper"
    assert math.isnan(t1.set_index("model").loc["PVT-T", "params_M"])
    assert len(t2) == 5 and t2["GFLOPs"].between(1, 5).all()
    assert len(sh) == 8 and sh["PE1_params_M"].between(10, 25).all()
    assert list(tr["run"]) == ["vit_pe_test", "vit_test_unshared"]
    assert tr["epochs"].tolist() == [1, 1] and tr["top1"].between(0, 100).all()
    assert tr["params"].tolist() == [20_266, 32_554]
    for df in tabs.values():
        cap = df.attrs["caption"]
        assert "profile=smoke" in cap and "[smoke run: not the paper's setting]" in cap
    assert "vit_train=1 ep" in tr.attrs["caption"] and "data=digits" in tr.attrs["caption"]

    figs = pe.figures(cfg)
    assert set(figs) == {"acc_vs_params"}
    ax_tables, ax_runs = figs["acc_vs_params"].axes
    assert "profile=smoke" in ax_runs.get_title() and "smoke run" in ax_tables.get_title()

    text = pe.summary(cfg)
    acc_pe, acc_twin = tr["top1"].tolist()
    assert "11.09 M" in text and "12.78 M" in text and "13.49 M" in text   # 100-class heads
    assert "no sharing rule gives both printed ResNet counts" in text
    assert f"{acc_pe:.1f} % at 0.02 M vs {acc_twin:.1f} % at 0.03 M" in text
    assert "a 2-layer ViT-PE" in text and "1 epochs" in text
    read = pe.reading(cfg)
    assert "11.43 M with the 1000-class head" in read and "one 3x3 kernel per stage" in read

    # the trained model is saved in the compressed format, ties and all
    st = _trained(cfg, "vit_pe_test")
    m = st.model()
    assert count_params(m) == 20_266 and m(torch.randn(1, 3, 32, 32)).shape == (1, 10)
    assert recs["vit_pe_test"]["metrics"]["lr"] == pytest.approx(8e-3 * 64 / 512)

    # a record trained on ImageNet replaces the paper's top-1 in Tables 1-2
    t = pe.count_frame(recs, "table2",
                       {"resnet50": {"config": {"dataset": "imagenet"}, "metrics": {"acc": 70.0}}})
    row = t.set_index("model").loc["ResNet50"]
    assert (row["top1"], row["top1_from"]) == (70.0, "ours (ImageNet)")
    assert set(t.set_index("model").drop("ResNet50")["top1_from"]) == {"paper"}


@pytest.mark.slow
def test_resnet_pair_on_the_torchvision_recipe(small_tables):
    # a ResNet-PE² pair; the ViT pair switched off; 16 px keeps it short
    cfg = _cfg(vit_model="", vit_twin="", resnet_model="resnet_pe_test", image_size=16,
               resnet_twin="resnet_test_unshared", resnet_variants=("34",),
               **{"resnet_train.epochs": 1})
    recs = pe.run(cfg)
    assert list(recs)[3:] == ["resnet_pe_test-stages34", "resnet_test_unshared"]
    assert recs["resnet_pe_test-stages34"]["config"]["model_kwargs"] == {"pe_stages": [3, 4]}
    assert recs["resnet_pe_test-stages34"]["metrics"]["lr"] == 0.1
    tr = pe.tables(cfg)["training"]
    assert tr["params"].iloc[0] < tr["params"].iloc[1]
    assert "resnet_train=1 ep" in tr.attrs["caption"] and "vit_train" not in tr.attrs["caption"]
    assert "`resnet_pe_test-stages34` vs its unshared twin" in pe.summary(cfg)


DDP_SCRIPT = """
import sys
from reprolib import cli
sys.exit(cli.main(["compute", "pe", "--profile", "smoke", "-p", "vit_train.epochs=1",
                   "-p", "vit_twin="]))
"""


@pytest.mark.slow
def test_compute_under_torchrun_two_processes(tmp_path, small_tables, monkeypatch):
    """``torchrun -m reprolib compute pe``: both ranks train (gloo), rank 0 writes one record
    and the model, at the lr scaled to the global batch."""
    monkeypatch.setenv("REPROLIB_RESULTS", str(tmp_path / "results"))
    cfg = _cfg(vit_twin="")
    pe.run(cfg, only=pe.COUNT_TABLES)      # the count tables, made here with the small Table 1
    script = tmp_path / "compute.py"
    script.write_text(DDP_SCRIPT)
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                          "--nproc_per_node=2", str(script)],
                         env={**os.environ, "OMP_NUM_THREADS": "1"}, cwd=paths.ROOT,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.count("pe [smoke]: 4 stages") == 1          # rank 0 reports
    st = _trained(cfg, "vit_pe_test")
    rec = st.record()
    assert rec["metrics"]["processes"] == 2
    assert rec["metrics"]["lr"] == pytest.approx(8e-3 * 64 * 2 / 512)
    assert len(list(st.path.parent.glob("vit_pe_test-*.json"))) == 1
    assert count_params(st.model()) == 20_266


# ---- the evidence machinery at smoke size: 2 seeds, 1 epoch, both families, narrowed twins

@pytest.mark.slow   # ~1-6 min of one core: the evidence path at smoke size
def test_evidence_machinery(small_tables):
    from reprolib.experiments import evidence as E

    cfg = get_config("pe", "evidence", dataset="digits", vit_model="vit_pe_test",
                     vit_twin="vit_test_unshared", vit_kwargs={}, resnet_model="resnet_pe_test",
                     resnet_twin="resnet_test_unshared", resnet_kwargs={}, seeds=(0, 1),
                     **{"vit_train.epochs": 1, "resnet_train.epochs": 1,
                        "vit_train.batch_size": 256, "resnet_train.batch_size": 256})
    recs = pe.run(cfg)
    assert {"vit_test_unshared-narrow", "resnet_test_unshared-narrow", "vit_pe_test-s1",
            "resnet_test_unshared-narrow-s1"} <= set(recs)
    nv = recs["vit_test_unshared-narrow"]
    assert nv["config"]["narrow_to"]["model"] == "vit_pe_test"
    assert set(nv["metrics"]["narrowed_kwargs"]) >= {"embed_dim"}
    df = pe.evidence_frame(cfg)
    assert len(df) == 2 * 6 and set(df["kind"]) == {"PE", "unshared twin", "narrowed twin"}
    for (fam, seed), g in df.groupby(["family", "seed"]):
        p = g.set_index("kind")["params"]
        assert abs(p["narrowed twin"] - p["PE"]) / p["PE"] < 0.15 < p["unshared twin"] / p["PE"] - 1
    tabs = pe.tables(cfg)
    t = tabs["evidence"]
    assert list(t["family"]) == ["ViT"] * 3 + ["ResNet"] * 3
    assert t["top-1 (%)"].str.contains("n = 2").all()
    cl = pe.claims(cfg)
    assert list(cl.columns) == list(E.CLAIM_COLUMNS) and len(cl) == 4
    assert set(cl["verdict"]) <= set(E.VERDICTS)
    assert cl["reason"].str.contains("2.6 pp gap").any()
    assert cl["reason"].str.contains("1.9 pp gap").any()
    assert "seeds 0, 1" in cl.attrs["caption"] and "plateau rule" in cl.attrs["caption"]
    figs = pe.figures(cfg)
    assert len(figs["evidence"].axes) == 3
    # the issue-12 figure fixes: a legend for the marker meanings, every point numbered
    left = figs["acc_vs_params"].axes[0]
    assert left.get_xlabel() == "params (M), log scale" and left.get_legend() is not None
    nums = [t.get_text() for t in left.texts if t.get_text().isdigit()]
    assert sorted(map(int, nums)) == list(range(1, len(nums) + 1)) and len(nums) == 3 + 5
