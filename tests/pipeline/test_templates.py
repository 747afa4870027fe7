"""The templates pipeline end to end on the smoke profile made as small as possible:
run -> tables -> figures -> summary, read back from the records (one tiny VGG-19 at two
templates, 1 epoch on digits; two Table 2 cells counted)."""

import math

import matplotlib
import pytest

from reprolib.core import report
from reprolib.configs import get_config
from reprolib.experiments import templates as E
from reprolib.methods import templates as T

OVERRIDES = {"models": ("vgg19_cifar_tiny",), "templates": ("base", "uniform"),
             "widths": (0.25,), "table1_width": 0.25, "train.epochs": 1,
             "table2_models": ("mobilenet_cifar",), "table2_templates": ("base", "uniform"),
             "measure_latency": True, "latency_repeats": 2}


@pytest.fixture(scope="module")
def done():
    cfg = get_config("templates", "smoke", **OVERRIDES)
    recs = E.run(cfg)
    return cfg, recs


def test_run_writes_one_record_per_stage(done):
    cfg, recs = done
    assert list(recs) == ["measure-mobilenet_cifar-base", "measure-mobilenet_cifar-uniform",
                          "vgg19_cifar_tiny-base-w0.25-digits",
                          "vgg19_cifar_tiny-uniform-w0.25-digits"]
    assert all(s.done for s in E.stages(cfg))
    assert list(E.PIPELINE.records(cfg, "cell", template="uniform")) == \
        ["vgg19_cifar_tiny-uniform-w0.25-digits"]
    assert list(E.PIPELINE.records(cfg, "measure")) == list(recs)[:2]
    cell = recs["vgg19_cifar_tiny-uniform-w0.25-digits"]["metrics"]
    assert 0 <= cell["acc"] <= 100 and cell["epochs"] == 1 and math.isfinite(cell["test_loss"])
    assert cell["filters"] == T.distribution([8, 8, 16, 16, 32, 32, 32, 32] + [64] * 8,
                                             "uniform", 0.25)
    assert cell["latency_ms"] > 0 and cell["num_classes"] == 10
    # a second run reuses every record (nothing retrains)
    again = E.run(cfg)
    assert {k: r["started"] for k, r in again.items()} == \
        {k: r["started"] for k, r in recs.items()}


def test_saved_model_is_the_trained_cell(done):
    cfg, recs = done
    st = next(s for s in E.stages(cfg) if s.name == "vgg19_cifar_tiny-base-w0.25-digits")
    m = st.model()
    assert m.filters == recs[st.name]["metrics"]["filters"]
    assert sum(p.numel() for p in m.parameters()) == recs[st.name]["metrics"]["params"]


def test_tables_from_records(done):
    cfg, _ = done
    tabs = E.tables(cfg)
    assert list(tabs) == ["table2", "table1", "runs"]
    t2, t1, runs = tabs["table2"], tabs["table1"], tabs["runs"]
    assert list(t2["template"]) == ["Base", "Uniform"]
    assert round(t2.loc[0, "params_M ours"], 2) == 3.22 and t2.loc[0, "params_M paper"] == 3.2
    assert (t2["time_us ours"] > 0).all() and t2["memory_GB ours"].isna().all()
    assert len(t1) == 1 and t1.loc[0, "model"] == "vgg19_cifar_tiny"
    for t in ("Base", "Uniform"):
        assert 0 <= t1.loc[0, f"{t} ours"] <= 100
    assert math.isnan(t1.loc[0, "Reverse-Base ours"]) and t1.loc[0, "Base paper"] == 93.7
    assert len(runs) == 2 and (runs["params_M"] > 0).all() and (runs["epochs"] == 1).all()
    for df in tabs.values():
        assert "profile=smoke" in df.attrs["caption"]
        assert "[smoke run: not the paper's setting]" in df.attrs["caption"]
    paths = report.save_tables(E.PAPER, cfg.profile, tabs)
    assert all(p.exists() for p in paths)


def test_figures_from_records(done):
    cfg, _ = done
    figs = E.figures(cfg)
    assert list(figs) == ["fig2_vgg19_templates", "fig3_acc_vs_params", "fig4_acc_vs_memory",
                          "fig5_acc_vs_time"]
    assert all(isinstance(f, matplotlib.figure.Figure) for f in figs.values())
    assert "[smoke run: not the paper's setting]" in figs["fig3_acc_vs_params"]._suptitle.get_text()
    assert len(figs["fig2_vgg19_templates"].axes[0].lines) == len(T.TEMPLATES)
    assert "not measured" in figs["fig4_acc_vs_memory"].axes[0].get_title()
    report.save_figures(E.PAPER, cfg.profile, figs)
    import matplotlib.pyplot as plt
    plt.close("all")


def test_summary_from_records(done):
    cfg, recs = done
    s = E.summary(cfg)
    acc = {n: r["metrics"]["acc"] for n, r in recs.items() if not n.startswith("measure")}
    assert "MobileNet in CIFAR form count 3.22 M" in s and "(paper 3.2)" in s
    assert "1 of the 2 parameter cells match" in s
    assert f"base {acc['vgg19_cifar_tiny-base-w0.25-digits']:.1f}" in s
    assert f"uniform {acc['vgg19_cifar_tiny-uniform-w0.25-digits']:.1f}" in s
    assert "not the paper's 160-epoch, 320-run grid" in s
    assert "profile 'smoke' ran 2 of the paper's 320" in E.ran_summary(cfg)
