"""The templates evidence machinery at smoke size (2 seeds, 1 epoch, digits): every cell x seed
one stage, Table 1 / runs as mean ± std, Figures 3-5 with error bars and one colour per
template in every panel and figure, and a claims table whose verdicts come from
evidence.compare."""

import matplotlib
import pytest

from reprolib.configs import get_config
from reprolib.experiments import evidence as ev
from reprolib.experiments import templates as E

TINY = {"dataset": "digits", "models": ("vgg19_cifar_tiny",),
        "templates": ("base", "uniform", "quadratic"), "widths": (0.125, 0.25),
        "seeds": (0, 1), "train.epochs": 1, "latency_repeats": 2, "memory_limit_gb": 0.0,
        "table1_width": 0.125, "check_epochs": 0}


@pytest.fixture(scope="module")
def cfg():
    c = get_config("templates", "evidence", **TINY)
    E.run(c)
    return c


def test_every_cell_and_seed_is_one_stage(cfg):
    st = E.stages(cfg)
    assert len(st) == 3 * 2 * 2 and all(s.done for s in st)
    names = [s.name for s in st]
    assert names[0] == "vgg19_cifar_tiny-base-w0.125-digits-s0"
    assert names[-1] == "vgg19_cifar_tiny-quadratic-w0.25-digits-s1"
    by = {s.name: s for s in st}
    a, b = by["vgg19_cifar_tiny-base-w0.125-digits-s0"], by["vgg19_cifar_tiny-base-w0.125-digits-s1"]
    assert (a.seed, b.seed) == (0, 1) and a.config["train"]["seed"] == 0
    assert b.config["train"]["seed"] == 1 and a.run_id != b.run_id
    g = E.PIPELINE.graph(cfg)
    assert [s.run_id for s in g.select("cell", seed=1)] == \
        [s.run_id for s in st if s.name.endswith("-s1")]
    assert g.get("cell", template="base", width=0.125, seed=1).run_id == b.run_id
    acc = E.seed_accuracies(cfg)[("vgg19_cifar_tiny", "base", 0.125)]
    assert acc == [a.metrics()["acc"], b.metrics()["acc"]]


def test_tables_and_claims(cfg):
    tabs = E.tables(cfg)
    assert list(tabs) == ["table1", "runs", "claims"]          # no Table 2 cells here
    t1 = tabs["table1"]
    assert len(t1) == 2 and all("(n = 2)" in v for v in t1["Base ours"])
    assert t1.loc[0, "Base paper"] == 93.7
    runs = tabs["runs"]
    assert len(runs) == 6 and (runs["seeds"] == 2).all()
    assert (runs[runs["template"] == "base"]["params / base"] == 1).all()
    cl = tabs["claims"]
    assert list(cl.columns) == list(ev.CLAIM_COLUMNS)
    assert set(cl["verdict"]) <= set(ev.VERDICTS)
    # per model: the paper's best template (VGG-19: quadratic) + params / memory / time; one
    # spread row over the models
    assert len(cl) == (1 + 3) + 1
    assert cl["claim"].str.contains("Quadratic \\(the paper's best template\\)").any()
    assert cl["claim"].iloc[-1].startswith("Accuracy varies by less than 5 points")
    for df in tabs.values():
        assert "seeds 0, 1" in df.attrs["caption"] and "plateau" in df.attrs["caption"]


def test_figures_one_colour_per_template_and_error_bars(cfg):
    figs = E.figures(cfg)
    colours = {}
    for name in ("fig3_acc_vs_params", "fig4_acc_vs_memory", "fig5_acc_vs_time"):
        fig = figs[name]
        assert "mean ± std over seeds 0, 1" in fig._suptitle.get_text()
        for ax in fig.axes:
            bars = [c for c in ax.containers
                    if isinstance(c, matplotlib.container.ErrorbarContainer)]
            assert len(bars) == 3
            for h, label in zip(*ax.get_legend_handles_labels()):
                c = matplotlib.colors.to_hex(h.lines[0].get_color())
                assert colours.setdefault(label, c) == c, (name, label)
            assert [t.get_text() for t in ax.get_xticklabels() if t.get_text()]
    assert len(set(colours.values())) == 3
    import matplotlib.pyplot as plt
    plt.close("all")


def test_summary_and_claims_markdown(cfg):
    text = E.summary(cfg)
    assert text.startswith("Evidence run (`reprolib run templates --profile evidence`)")
    assert ev.claims_markdown("templates", cfg).startswith("Claims (filter redistribution")
    assert "x seeds 0, 1 (12 runs in all)" in E.grid_summary(cfg)


def test_the_longer_run_check_decides_convergence(tmp_path, monkeypatch):
    """check_epochs: every cell once more at the first seed for that many epochs (role
    ``check``); the plateau table gives both accuracies and the gain, the caption counts the
    converged cells, and a model with an unconverged cell gets 'inconclusive: not converged'
    on every claim whatever its p."""
    from reprolib.core.claims import VERDICTS

    monkeypatch.setenv("REPROLIB_RESULTS", str(tmp_path / "results"))
    c = get_config("templates", "evidence", **{**TINY, "templates": ("base", "uniform"),
                                               "widths": (0.125,), "check_epochs": 3,
                                               "plateau_margin": 0.0})
    E.run(c)
    g = E.PIPELINE.graph(c)
    checks = g.select("check")
    assert [s.name for s in checks] == ["vgg19_cifar_tiny-base-w0.125-digits-s0-long3",
                                        "vgg19_cifar_tiny-uniform-w0.125-digits-s0-long3"]
    assert all(s.config["train"]["epochs"] == 3 and s.seed == 0 for s in checks)
    assert len(g.select("cell")) == 4                       # the grid itself is unchanged
    tab = E.tables(c)["plateau_check"]
    assert list(tab["gain"]) == pytest.approx(
        [s.metrics()["acc"] - g.get("cell", template=s.tags["template"], seed=0).metrics()["acc"]
         for s in checks])
    # margin 0: converged only where the longer run gained nothing
    assert list(tab["converged"]) == ["yes" if x < 0 else "no" for x in tab["gain"]]
    assert "longer-run check (seed 0 at 3 epochs)" in tab.attrs["caption"]
    cl = E.tables(c)["claims"]
    assert set(cl["verdict"]) <= set(VERDICTS)
    if (tab["converged"] == "no").any():
        assert (cl["verdict"] == "inconclusive: not converged").all()
