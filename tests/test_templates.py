"""Unit tests of the filter-redistribution templates (papers/templates.md, section 3) and of
the four CIFAR models they are applied to."""

import pytest
import torch

import reprolib
from reprolib.errors import ReprolibError
from reprolib.methods import templates as T
from reprolib.models import templates_cifar as M

VGG = M.VGG19_FILTERS
LISTS = [VGG, M.RESNET50_FILTERS, M.GOOGLENET_FILTERS, M.MOBILENET_FILTERS,
         [3, 7, 1, 9, 4], [16, 16, 32, 32, 64, 64, 128]]


def n_params(m):
    return sum(p.numel() for p in m.parameters())


# ---- templates --------------------------------------------------------------------------

def test_template_names():
    assert T.TEMPLATES == ("base", "reverse", "uniform", "quadratic", "negative_quadratic")


@pytest.mark.parametrize("filters", LISTS)
@pytest.mark.parametrize("template", T.TEMPLATES)
def test_total_kept_exactly(filters, template):
    out = T.redistribute(list(filters), template)
    assert len(out) == len(filters)
    assert sum(out) == sum(filters)
    assert all(isinstance(x, int) and x >= 1 for x in out)
    # rounding moves every layer by less than one filter from the real solution (unless the
    # one-filter floor had to lift a layer: the odd-D quadratic of [3, 7, 1, 9, 4] dips < 1)
    real = T.real_distribution(filters, template)
    if min(real) < 1:
        assert min(out) == 1
        return
    assert max(abs(a - b) for a, b in zip(out, real)) < 1.0 + 1e-9
    assert abs(sum(real) - sum(filters)) < 1e-6


@pytest.mark.parametrize("filters", LISTS)
def test_reverse_and_uniform(filters):
    assert T.redistribute(filters, "reverse") == list(filters)[::-1]
    u = T.redistribute(filters, "uniform")
    assert max(u) - min(u) <= 1
    assert T.redistribute(filters, "base") == list(filters)


def test_vgg_paper_values():
    # section 3: VGG-19, F = 5504, uniform gives 5504 / 16 = 344 per layer
    assert sum(VGG) == 5504
    assert T.redistribute(VGG, "uniform") == [344] * 16


@pytest.mark.parametrize("filters", LISTS)
def test_quadratic_constraints(filters):
    D, F, fmin = len(filters), sum(filters), min(filters)
    a, b, c = T.quadratic_coefficients(filters, "quadratic")
    f = lambda l: a * l * l + b * l + c  # noqa: E731
    # (i) total, (ii) f'_{D/2} = f_min, (iii) equal ends; a >= 0 (a minimum in the middle)
    assert sum(f(l) for l in range(1, D + 1)) == pytest.approx(F, rel=1e-10)
    assert f(D / 2) == pytest.approx(fmin, rel=1e-10)
    assert f(1) == pytest.approx(f(D), rel=1e-10)
    assert a >= 0
    # the closed-form sum used by equation (i)
    assert (D**3 / 3 + D**2 / 2 + D / 6) == pytest.approx(sum(l * l for l in range(1, D + 1)))
    out = T.redistribute(filters, "quadratic")
    assert abs(out[0] - out[-1]) <= 1
    if D % 2 == 0:  # both middle layers sit on f_min (the axis is l = (D+1)/2)
        assert out[D // 2 - 1] == fmin and out[D // 2] == fmin


def test_quadratic_vgg_symmetric():
    out = T.redistribute(VGG, "quadratic")
    assert out == out[::-1]
    assert out[7] == out[8] == 64 and out[0] == 811


@pytest.mark.parametrize("filters", LISTS)
def test_negative_quadratic_constraints(filters):
    D, F, fmin = len(filters), sum(filters), min(filters)
    a, b, c = T.quadratic_coefficients(filters, "negative_quadratic")
    f = lambda l: a * l * l + b * l + c  # noqa: E731
    assert f(1) == pytest.approx(fmin) and f(D) == pytest.approx(fmin)
    assert sum(f(l) for l in range(1, D + 1)) == pytest.approx(F, rel=1e-10)
    assert a <= 0
    out = T.redistribute(filters, "negative_quadratic")
    assert out[0] == fmin and out[-1] == fmin


def test_negative_quadratic_vgg_closed_form():
    # ends at f_min: f(l) = f_min + a (l-1)(l-D); sum_l (l-1)(l-16) = 1240 - 15*120 = -560,
    # so a = (5504 - 16*64) / -560 = -8, b = -a (D+1) = 136, c = f_min + a D = -64;
    # f(8) = 64 + 8*7*8 = 512 (the base model's largest layer)
    a, b, c = T.quadratic_coefficients(VGG, "negative_quadratic")
    assert (a, b, c) == pytest.approx((-8.0, 136.0, -64.0))
    assert T.redistribute(VGG, "negative_quadratic")[7] == 512


def test_width_multiplier():
    assert T.apply_width([64, 128, 3], 0.5) == [32, 64, 2]   # round half to even: 1.5 -> 2
    assert T.apply_width([64, 128], 1.6) == [102, 205]
    assert T.apply_width([10, 1], 0.05) == [1, 1]           # never below one filter
    for w in T.PAPER_WIDTHS:
        assert T.distribution(VGG, "uniform", w) == [max(1, round(344 * w))] * 16


@pytest.mark.parametrize("bad", [0, -0.5, 4.5, "1", True])
def test_bad_width(bad):
    with pytest.raises(ReprolibError, match=r"width"):
        T.apply_width(VGG, bad)


def test_bad_template():
    with pytest.raises(ReprolibError, match="valid templates: base, reverse, uniform"):
        T.redistribute(VGG, "cubic")
    with pytest.raises(ReprolibError, match="at least 3 layers"):
        T.redistribute([4, 8], "quadratic")
    with pytest.raises(ReprolibError):
        T.redistribute([4, 0, 8], "uniform")


def test_round_preserving_sum():
    assert T.round_preserving_sum([1.5, 1.5, 1.0], 4) == [2, 1, 1]
    assert T.round_preserving_sum([0.2, 0.2, 9.6], 10) == [1, 1, 8]
    assert T.scale_group([64, 128, 32, 32], 128) == [32, 64, 16, 16]


# ---- models -----------------------------------------------------------------------------

PAPER_PARAMS = {"vgg19_cifar": 20.04, "resnet50_cifar": 23.52, "googlenet_cifar": 6.17,
                "mobilenet_cifar": 3.22}


@pytest.mark.parametrize("name", list(PAPER_PARAMS))
def test_base_param_counts(name):
    m = reprolib.create_model(name, num_classes=10)
    assert round(n_params(m) / 1e6, 2) == PAPER_PARAMS[name]
    # CIFAR-100 changes only the classifier
    m100 = reprolib.create_model(name, num_classes=100)
    assert n_params(m100) - n_params(m) == 90 * (m.classifier.in_features + 1)
    assert m100.classifier.out_features == 100


def test_exact_base_counts():
    # exact counts of the kuangliu/pytorch-cifar layouts at 10 classes
    got = {n: n_params(reprolib.create_model(n)) for n in PAPER_PARAMS}
    assert got == {"vgg19_cifar": 20040522, "resnet50_cifar": 23520842,
                   "googlenet_cifar": 6166250, "mobilenet_cifar": 3217226}


def test_vgg_uniform_params_closed_form():
    # 16 convs of 344 filters (3x3, bias) + 16 BNs + Linear(344, 10)
    m = reprolib.create_model("vgg19_cifar", template="uniform")
    conv = (3 * 344 * 9 + 344) + 15 * (344 * 344 * 9 + 344)
    assert n_params(m) == conv + 16 * 2 * 344 + 344 * 10 + 10
    assert round(n_params(m) / 1e6, 1) == 16.0  # the paper's Table 2


@pytest.mark.parametrize("name", [f"{n}_tiny" for n in PAPER_PARAMS])
@pytest.mark.parametrize("template", T.TEMPLATES)
def test_every_template_runs_forward(name, template):
    torch.manual_seed(0)
    m = reprolib.create_model(name, num_classes=7, template=template, width=0.5).eval()
    with torch.no_grad():
        y = m(torch.randn(2, 3, 32, 32))
    assert y.shape == (2, 7) and torch.isfinite(y).all()
    assert m.filters == T.distribution(M.base_filters(name), template, 0.5)


@pytest.mark.parametrize("name", list(PAPER_PARAMS))
def test_filters_are_physical(name):
    base = M.base_filters(name)
    for t in ("uniform", "negative_quadratic"):
        m = reprolib.create_model(name, template=t, width=0.25)
        assert m.filters == T.distribution(base, t, 0.25)
        assert m.arch["template"] == t and m.arch["width"] == 0.25
    small = reprolib.create_model(name, width=0.25)
    assert n_params(small) < n_params(reprolib.create_model(name)) / 8


def test_layer_widths_follow_filters():
    m = reprolib.create_model("vgg19_cifar", template="quadratic")
    convs = [c.out_channels for c in m.modules() if isinstance(c, torch.nn.Conv2d)]
    assert convs == T.redistribute(VGG, "quadratic")
    r = reprolib.create_model("resnet50_cifar", template="reverse")
    assert [b.conv2.out_channels for b in r.blocks] == M.RESNET50_FILTERS[::-1]
    assert [b.conv3.out_channels for b in r.blocks] == [4 * w for w in M.RESNET50_FILTERS[::-1]]
    mb = reprolib.create_model("mobilenet_cifar", template="uniform")
    pw = [blk[1][0].out_channels for blk in mb.blocks]
    assert [mb.stem[0].out_channels] + pw == T.redistribute(M.MOBILENET_FILTERS, "uniform")


def test_inception_mapping_keeps_ratios():
    specs = M.inception_specs([128] * 9)
    # module a3 (64, 96, 128, 16, 32, 32) -> 256 outputs halved exactly
    assert specs[0] == (32, 48, 64, 8, 16, 16)
    assert all(s[0] + s[2] + s[4] + s[5] == 128 for s in specs)
    g = reprolib.create_model("googlenet_cifar", template="uniform")
    assert g.filters == T.redistribute(M.GOOGLENET_FILTERS, "uniform")
    assert sum(g.filters) == sum(M.GOOGLENET_FILTERS) == 5488


def test_resnet_stage_unit():
    m = reprolib.create_model("resnet50_cifar", template="reverse", unit="stage")
    assert m.filters == [512] * 3 + [256] * 4 + [128] * 6 + [64] * 3
    with pytest.raises(ReprolibError, match="valid units"):
        reprolib.create_model("resnet50_cifar", unit="layer")
    with pytest.raises(ReprolibError, match="only for resnet50"):
        reprolib.create_model("vgg19_cifar", unit="stage")


def test_create_model_errors():
    with pytest.raises(ReprolibError, match="valid templates"):
        reprolib.create_model("vgg19_cifar", template="pyramid")
    with pytest.raises(ReprolibError, match="width"):
        reprolib.create_model("mobilenet_cifar", width=5.0)
    with pytest.raises(ReprolibError, match="unknown arguments"):
        reprolib.create_model("mobilenet_cifar", depth=3)
    assert set(PAPER_PARAMS) <= set(reprolib.list_models(paper="templates"))


def test_explicit_filters_roundtrip():
    fs = T.distribution(VGG, "negative_quadratic", 0.1)
    a = reprolib.create_model("vgg19_cifar", template="negative_quadratic", width=0.1)
    b = reprolib.create_model("vgg19_cifar", filters=a.arch["filters"])
    assert b.filters == fs and n_params(a) == n_params(b)
    assert [p.shape for p in a.parameters()] == [p.shape for p in b.parameters()]


# ---- configs and the experiment helpers -------------------------------------------------

def test_config_presets():
    from reprolib.configs import get_config, profiles

    assert profiles("templates") == ["smoke", "cpu", "gpu", "paper"]
    paper = get_config("templates", "paper")
    assert paper.epochs == 160 and paper.lr == 0.1 and paper.batch_size == 64
    assert paper.milestones == (80, 120) and paper.gamma == 0.1 and paper.schedule == "multistep"
    assert paper.widths == T.PAPER_WIDTHS and paper.templates == T.TEMPLATES
    assert len(T.grid(paper)) == 320
    assert "320 runs" in T.grid_summary(paper)
    with pytest.raises(ReprolibError, match="valid keys"):
        get_config("templates", "smoke", epoch=3)
    bad = get_config("templates", "smoke", templates=("base", "cubic"))
    with pytest.raises(ReprolibError, match="valid templates"):
        T.grid(bad)


def test_paper_tables_complete():
    from reprolib.configs.templates import PAPER_TABLE1, PAPER_TABLE2

    for tab in (*PAPER_TABLE1.values(), *PAPER_TABLE2.values()):
        assert set(tab) == set(PAPER_PARAMS)
        assert all(set(v) == set(T.TEMPLATES) for v in tab.values())
    assert PAPER_TABLE2["params_M"]["vgg19_cifar"]["uniform"] == 16.0


def test_measure_and_table2():
    from reprolib.configs import get_config
    from reprolib.configs.templates import PAPER_TABLE2

    cfg = get_config("templates", "smoke", measure_memory=True, memory_probe=(1, 2))
    m = reprolib.create_model("mobilenet_cifar_tiny", template="uniform")
    out = T.measure_model(m, cfg)
    from reprolib import measure
    assert out["flops"] == measure.count_flops(m, (3, 32, 32))  # meta count == real count
    assert out["params"] == n_params(m) and out["filters"] == m.filters
    assert out["peak_memory_bytes"] > 4 * n_params(m)  # at least the fp32 weights
    rec = {"name": "x", "profile": "smoke", "device": "cpu", "wall_time_s": 0.0,
           "metrics": {"params": 20040522, "flops": 398136320},
           "config": {"model": "vgg19_cifar", "template": "base"}}
    cfg2 = get_config("templates", "smoke", table2_models=("vgg19_cifar",),
                      table2_templates=("base",))
    t2 = T.table2(T.records_frame([rec]), cfg2, PAPER_TABLE2)
    assert t2.loc[0, "params_M paper"] == 20.0
    assert round(t2.loc[0, "params_M ours"], 1) == 20.0


def test_width_scales_stems():
    # the width multiplier scales every layer, the fixed stems included (section 4)
    r = reprolib.create_model("resnet50_cifar", width=0.25)
    g = reprolib.create_model("googlenet_cifar", width=0.05)
    assert r.stem[0].out_channels == 16 and g.stem[0].out_channels == 10
    assert reprolib.create_model("resnet50_cifar").stem[0].out_channels == M.RESNET50_STEM
    explicit = reprolib.create_model("resnet50_cifar", filters=M.RESNET50_FILTERS)
    assert explicit.stem[0].out_channels == M.RESNET50_STEM


def test_cpu_grid_model_widths_and_summaries():
    from reprolib.configs import get_config

    cfg = get_config("templates", "cpu")
    g = T.grid(cfg)
    assert {w for _, m, _, w in g if m == "resnet50_cifar"} == {0.05}
    assert {w for _, m, _, w in g if m == "vgg19_cifar"} == {0.05, 0.1}
    assert len(g) == 2 * (2 + 1 + 1 + 2) and {m for _, m, _, _ in g} == set(M.PAPER_MODELS)
    assert "(resnet50_cifar: 0.05 only)" in T.grid_summary(cfg)
    assert "Part of the paper's grid" in T.grid_summary(cfg)
    assert "no part of the paper's grid" in T.grid_summary(get_config("templates", "smoke"))
    import pandas as pd
    df = pd.DataFrame([{"config.dataset": cfg.dataset, "config.model": "vgg19_cifar",
                        "config.template": "base", "config.width": 0.1, "train_time_s": 60.0}])
    s = T.ran_summary(df, cfg)
    assert "ran 1 of the paper's 320" in s and "vgg19_cifar: templates base x widths 0.1" in s
    assert "resnet50_cifar: nothing" in s


def test_memory_limit_skips_and_direct_batch():
    from reprolib.configs import get_config
    from reprolib import measure

    m = reprolib.create_model("vgg19_cifar_tiny")
    cfg = get_config("templates", "smoke", measure_memory=True, memory_batch=4)
    out = T.measure_model(m, cfg)
    assert out["memory_method"] == "cpu, measured at batch 4"
    assert out["peak_memory_bytes"] == measure.peak_memory(m, (3, 32, 32), 4, "cpu")
    tiny = get_config("templates", "smoke", measure_memory=True, memory_batch=4,
                      memory_limit_gb=1e-6)
    out = T.measure_model(m, tiny)
    assert out["memory_method"].startswith("skipped") and out["peak_memory_bytes"] != out["peak_memory_bytes"]


def test_table2_params_notes():
    from reprolib.configs import get_config
    from reprolib.configs.templates import PAPER_TABLE2

    recs = [{"name": "x", "profile": "smoke", "device": "cpu", "wall_time_s": 0.0,
             "metrics": {"params": p, "flops": 1, "peak_memory_bytes": float("nan"),
                         "memory_method": "skipped: test"},
             "config": {"model": "vgg19_cifar", "template": t}}
            for t, p in (("base", 20040522), ("quadratic", 19420000))]
    cfg = get_config("templates", "smoke", table2_models=("vgg19_cifar",),
                     table2_templates=("base", "quadratic"))
    t2 = T.table2(T.records_frame(recs), cfg, PAPER_TABLE2)
    assert t2.loc[0, "params note"] == "" and "quadratic" in t2.loc[1, "params note"]
    assert t2.loc[1, "memory note"] == "skipped: test"
    assert set(T.PARAMS_NOTES) == set(M.PAPER_MODELS)
