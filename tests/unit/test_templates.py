"""Unit tests of the filter-redistribution templates (papers/templates.md, section 3), of
the four CIFAR models they are applied to, of their saved form and of the experiment's
measurement and table helpers (records written by the tests, nothing trained)."""

import math

import pytest
import torch

import reprolib
from reprolib.errors import ReprolibError
from reprolib.experiments import templates as E
from reprolib.methods import templates as T
from reprolib.models import templates_cifar as M

VGG = M.VGG19_FILTERS
LISTS = [VGG, M.RESNET50_FILTERS, M.GOOGLENET_FILTERS, M.MOBILENET_FILTERS,
         [3, 7, 1, 9, 4], [16, 16, 32, 32, 64, 64, 128]]


def n_params(m):
    return sum(p.numel() for p in m.parameters())


# ---- templates --------------------------------------------------------------------------

@pytest.mark.parametrize("template", T.TEMPLATES)
def test_every_template_name_is_accepted(template):
    # each name the package lists is a template redistribute and create_model really apply
    out = T.redistribute([3, 7, 1, 9, 4], template)
    assert sum(out) == 24 and len(out) == 5
    m = reprolib.create_model("vgg19_cifar_tiny", template=template)
    assert m.filters == T.redistribute(M.base_filters("vgg19_cifar_tiny"), template)
    assert m.arch["template"] == template


def test_templates_are_distinct_and_unknown_names_fail():
    # the five templates give five different VGG-19 distributions (none is an alias)
    table = T.template_table(VGG)
    assert list(table) == list(T.TEMPLATES) and len(T.TEMPLATES) == 5
    assert len({tuple(v) for v in table.values()}) == len(T.TEMPLATES)
    for bad in ("cubic", "Uniform", "", "negative-quadratic"):
        with pytest.raises(ReprolibError) as e:
            T.redistribute(VGG, bad)
        assert all(t in str(e.value) for t in T.TEMPLATES)
        with pytest.raises(ReprolibError) as e:
            reprolib.create_model("mobilenet_cifar_tiny", template=bad)
        assert all(t in str(e.value) for t in T.TEMPLATES)


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



def test_width_scales_stems():
    # the width multiplier scales every layer, the fixed stems included (section 4)
    r = reprolib.create_model("resnet50_cifar", width=0.25)
    g = reprolib.create_model("googlenet_cifar", width=0.05)
    assert r.stem[0].out_channels == 16 and g.stem[0].out_channels == 10
    assert reprolib.create_model("resnet50_cifar").stem[0].out_channels == M.RESNET50_STEM
    explicit = reprolib.create_model("resnet50_cifar", filters=M.RESNET50_FILTERS)
    assert explicit.stem[0].out_channels == M.RESNET50_STEM


# ---- the saved form: save_compressed / load_compressed ----------------------------------

@pytest.mark.parametrize("name,template,width,unit", [
    ("vgg19_cifar_tiny", "quadratic", 0.5, "block"),
    ("resnet50_cifar_tiny", "reverse", 1.0, "stage"),
    ("googlenet_cifar_tiny", "negative_quadratic", 0.5, "block"),
    ("mobilenet_cifar", "uniform", 0.1, "block"),
])
def test_save_load_roundtrip_same_outputs(tmp_path, name, template, width, unit):
    torch.manual_seed(0)
    m = reprolib.create_model(name, num_classes=7, template=template, width=width, unit=unit)
    for bn in m.modules():  # non-trivial BN statistics, so the buffers must round-trip too
        if isinstance(bn, torch.nn.BatchNorm2d):
            bn.running_mean.normal_()
            bn.running_var.uniform_(0.5, 2.0)
    m.eval()
    js = reprolib.save_compressed(m, tmp_path / "tpl")
    back = reprolib.load_compressed(js).eval()
    assert back.filters == m.filters and back.arch == m.arch
    assert n_params(back) == n_params(m)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(m(x), back(x))


def test_load_mismatched_or_corrupt_file_is_one_error(tmp_path):
    import json

    m = reprolib.create_model("vgg19_cifar_tiny", template="uniform", width=0.5)
    js = reprolib.save_compressed(m, tmp_path / "tpl")
    spec = json.loads(js.read_text())
    spec["kwargs"]["template"] = "reverse"          # another architecture, same weights
    js.write_text(json.dumps(spec))
    with pytest.raises(ReprolibError, match="do not fit the architecture"):
        reprolib.load_compressed(js)
    (tmp_path / "tpl.safetensors").write_bytes(b"not a safetensors file")
    spec["kwargs"]["template"] = "uniform"
    js.write_text(json.dumps(spec))
    with pytest.raises(ReprolibError, match="tpl.safetensors"):
        reprolib.load_compressed(js)


# ---- configs --------------------------------------------------------------------------

def test_config_presets():
    from reprolib.configs import get_config, profiles

    assert profiles("templates") == ["smoke", "cpu", "evidence", "evidence_widths", "gpu",
                                     "paper"]
    paper = get_config("templates", "paper")
    tr = paper.train
    assert tr.epochs == 160 and tr.lr == 0.1 and tr.batch_size == 64 and tr.optimizer == "sgd"
    assert tr.milestones == (80, 120) and tr.lr_decay == 0.1 and tr.schedule == "multistep"
    assert tr.momentum == 0.9 and tr.weight_decay == 5e-4
    assert not hasattr(paper, "gamma") and not hasattr(paper, "epochs")
    assert paper.widths == T.PAPER_WIDTHS and paper.templates == T.TEMPLATES
    assert len(E.grid(paper)) == 320
    assert "320 runs" in E.grid_summary(paper)
    cpu = get_config("templates", "cpu")
    assert (cpu.train.epochs, cpu.train.batch_size, cpu.train.lr, cpu.train.schedule) == \
        (2, 64, 0.05, "cosine")
    assert get_config("templates", "smoke", **{"train.epochs": 3}).train.epochs == 3
    with pytest.raises(ReprolibError, match="valid keys"):
        get_config("templates", "smoke", epoch=3)
    with pytest.raises(ReprolibError, match="valid keys of train"):
        get_config("templates", "smoke", **{"train.gamma": 0.5})
    with pytest.raises(ReprolibError, match=r"templates\[1\]='cubic' is not one of: base"):
        get_config("templates", "smoke", templates=("base", "cubic"))   # before any grid


def test_paper_tables_complete():
    from reprolib.configs.templates import PAPER_BASE_PARAMS_M, PAPER_TABLE1, PAPER_TABLE2

    for tab in (*PAPER_TABLE1.values(), *PAPER_TABLE2.values()):
        assert set(tab) == set(PAPER_PARAMS)
        assert all(set(v) == set(T.TEMPLATES) for v in tab.values())
    assert PAPER_TABLE2["params_M"]["vgg19_cifar"]["uniform"] == 16.0
    assert {m: round(v, 1) for m, v in PAPER_PARAMS.items()} == PAPER_BASE_PARAMS_M


# ---- the experiment's measurement and tables (records written here, nothing trained) ---

def test_measure_counts():
    from reprolib.core import measure
    from reprolib.configs import get_config

    cfg = get_config("templates", "smoke")            # memory and latency off
    m = reprolib.create_model("mobilenet_cifar_tiny", template="uniform")
    out = E.measure(m, cfg)
    assert out["flops"] == measure.count_flops(m, (3, 32, 32))
    assert out["params"] == n_params(m) and out["filters"] == m.filters
    assert "latency_ms" not in out and "peak_memory_bytes" not in out


# The memory guard is model-independent: a small CNN keeps the tracked training steps cheap.
def test_memory_probe_extrapolates():
    from reprolib.core import measure
    from reprolib.configs import get_config

    m = reprolib.create_model("small_cnn", width=0.25)
    cfg = get_config("templates", "smoke", measure_memory=True, memory_probe=(1, 2),
                     memory_batch=5)
    out = E.measure(m, cfg)
    assert out["memory_method"] == "cpu, extrapolated from batches 1,2"
    m1, m2 = (measure.peak_memory(m, (3, 32, 32), b, "cpu") for b in (1, 2))
    assert out["peak_memory_bytes"] == int(m1 + (m2 - m1) * 4)
    assert out["peak_memory_bytes"] > 4 * n_params(m)  # at least the fp32 weights


def test_memory_limit_skips_or_measures_directly():
    from reprolib.core import measure
    from reprolib.configs import get_config

    m = reprolib.create_model("small_cnn", width=0.25)
    cfg = get_config("templates", "smoke", measure_memory=True, memory_batch=4)
    out = E.measure(m, cfg, memory_limit_gb=100.0)   # a generous limit: measured directly
    assert out["memory_method"] == "cpu, measured at batch 4"
    assert out["peak_memory_bytes"] == measure.peak_memory(m, (3, 32, 32), 4, "cpu")
    out = E.measure(m, cfg, memory_limit_gb=1e-6)
    assert out["memory_method"].startswith("skipped: batch-1/2 probe predicts")
    assert math.isnan(out["peak_memory_bytes"]) and out["memory_batch"] == 4


def _fake_measure_records(cfg, metrics: dict):
    """Write a record for every Table 2 stage of ``cfg`` (metrics by template)."""
    from reprolib.core import io

    for st in E.PIPELINE.graph(cfg).select("measure"):
        t = st.tags["template"]
        io.write_json({"name": st.name, "profile": cfg.profile, "run_id": st.run_id,
                       "device": "cpu:test threads=1", "wall_time_s": 0.0,
                       "config": st.config, "metrics": metrics[t]}, st.path)


def test_table2_from_records(tmp_path, monkeypatch):
    from reprolib.configs import get_config

    monkeypatch.setenv("REPROLIB_RESULTS", str(tmp_path))
    cfg = get_config("templates", "smoke", table2_models=("vgg19_cifar",),
                     table2_templates=("base", "quadratic"))
    g = E.PIPELINE.graph(cfg)
    assert [s.name for s in g.select("measure")] == ["measure-vgg19_cifar-base",
                                                     "measure-vgg19_cifar-quadratic"]
    assert g.get("measure", model="vgg19_cifar", template="quadratic").name == \
        "measure-vgg19_cifar-quadratic"
    with pytest.raises(ReprolibError, match="no record for stage"):
        E.table2(cfg)
    _fake_measure_records(cfg, {
        "base": {"params": 20040522, "flops": 398136320},
        "quadratic": {"params": 19420000, "flops": 1, "peak_memory_bytes": float("nan"),
                      "memory_method": "skipped: test"}})
    t2 = E.table2(cfg)
    assert list(t2["template"]) == ["Base", "Quadratic"]
    assert t2.loc[0, "params_M paper"] == 20.0 and round(t2.loc[0, "params_M ours"], 1) == 20.0
    assert t2.loc[0, "GFLOPs ours"] == pytest.approx(0.398136320)
    assert t2.loc[0, "params note"] == "" and "quadratic" in t2.loc[1, "params note"]
    assert t2.loc[1, "memory note"] == "skipped: test"
    cap = t2.attrs["caption"]
    assert "profile=smoke" in cap and "[smoke run: not the paper's setting]" in cap
    assert "one multiply-add = one FLOP" in cap
    assert set(E.PARAMS_NOTES) == set(M.PAPER_MODELS)


def test_stage_names_and_keys():
    from reprolib.configs import get_config

    cfg = get_config("templates", "cpu")
    names = [s.name for s in E.stages(cfg)]
    assert names[:5] == [f"measure-vgg19_cifar-{t}" for t in T.TEMPLATES]
    assert len(names) == 20 + 12 and len(set(names)) == len(names)
    assert "resnet50_cifar-uniform-w0.05-cifar10_subset" in names
    assert "resnet50_cifar-uniform-w0.1-cifar10_subset" not in names
    cell = next(s for s in E.stages(cfg) if s.name == "vgg19_cifar-base-w0.05-cifar10_subset")
    assert cell.config["train"]["lr_decay"] == 0.1 and cell.config["train"]["epochs"] == 2
    assert "gamma" not in cell.config["train"] and "progress" not in cell.config["train"]
    assert cell.config["seed"] == cfg.seed and cell.config["dataset"] == cfg.dataset
    # a recipe value re-keys the training cells but not the Table 2 measurements
    other = get_config("templates", "cpu", **{"train.lr": 0.01})
    by_name = {s.name: s for s in E.stages(other)}
    assert by_name[cell.name].run_id != cell.run_id
    m = "measure-vgg19_cifar-base"
    assert by_name[m].run_id == next(s for s in E.stages(cfg) if s.name == m).run_id
    assert E.run_name("vgg19_cifar", "uniform", 0.25, "cifar10") == \
        "vgg19_cifar-uniform-w0.25-cifar10"


def test_cpu_grid_model_widths_and_summaries():
    from reprolib.configs import get_config

    cfg = get_config("templates", "cpu")
    g = E.grid(cfg)
    assert {w for _, m, _, w in g if m == "resnet50_cifar"} == {0.05}
    assert {w for _, m, _, w in g if m == "vgg19_cifar"} == {0.05, 0.1}
    assert len(g) == 2 * (2 + 1 + 1 + 2) and {m for _, m, _, _ in g} == set(M.PAPER_MODELS)
    assert "(resnet50_cifar: 0.05 only)" in E.grid_summary(cfg)
    assert "Part of the paper's grid" in E.grid_summary(cfg)
    assert "no part of the paper's grid" in E.grid_summary(get_config("templates", "smoke"))


def test_resnet_stage_reading():
    got = E.resnet_stage_reading(("base", "negative_quadratic"))
    assert round(got["base"], 2) == 23.52 and round(got["negative_quadratic"], 1) == 33.0


# ---- the graph: roles, tags, groups, declarations ---------------------------------------

@pytest.mark.parametrize("profile", ["smoke", "cpu", "evidence", "gpu", "paper"])
def test_every_stage_declares_what_it_reads_trains_and_builds(profile):
    from reprolib.configs import get_config
    from reprolib.core.stage import declared_reads

    cfg = get_config("templates", profile)
    g = E.PIPELINE.graph(cfg)
    assert set(g.roles()) <= {"measure", "cell"} and len(g.stages) == len(set(g.stages))
    for s in g:
        assert declared_reads(s) == [], s.name
        assert s.model_spec is not None and s.after == []
    cells = g.select("cell")
    assert all(s.train is not None for s in cells)
    assert all(s.train is None for s in g.select("measure"))
    assert [s for s in g if s.train is not None] == cells
    for s in cells:
        t = s.tags
        assert set(t) == {"dataset", "model", "template", "width", "seed"}
        assert s.train.recipe_name == "train" and s.train.dataset == t["dataset"]
        assert s.group == f"{t['dataset']} {t['model']}" and s.seed == t["seed"]
        assert s.model_spec.kwargs == {"num_classes": 100 if t["dataset"] == "cifar100" else 10,
                                       "template": t["template"], "width": t["width"]}
    assert len(cells) == len(E.grid(cfg)) * max(1, len(cfg.seeds))


def test_cells_are_found_by_tags():
    from reprolib.configs import get_config

    cfg = get_config("templates", "evidence")
    g = E.PIPELINE.graph(cfg)
    assert g.select("measure") == []
    s = g.get("cell", model="mobilenet_cifar", template="quadratic", width=0.05, seed=2)
    assert s.name == "mobilenet_cifar-quadratic-w0.05-cifar10_subset-s2"
    assert s.config["train"]["seed"] == 2
    assert len(g.select("cell", seed=1)) == 10 and len(g.select("cell", model="vgg19_cifar")) == 15
    paper = E.PIPELINE.graph(get_config("templates", "paper"))
    assert len(paper.select("cell", dataset="cifar100", model="vgg19_cifar")) == 40
    assert paper.get("cell", dataset="cifar100", model="vgg19_cifar", template="base",
                     width=0.05).name == "vgg19_cifar-base-w0.05-cifar100"


def test_plan_counts_one_block_per_dataset_and_model():
    from reprolib.tools.plan import plan

    p = plan("templates", "paper")
    assert [(s["name"], s["runs"]) for s in p["stages"]] == [
        (f"{ds} {m} x40", 40) for ds in ("cifar10", "cifar100") for m in M.PAPER_MODELS]
    f = {x["field"]: x for x in p["stages"][0]["fields"]}
    assert not any(x["departs"] for s in p["stages"][:4] for x in s["fields"])
    # the CIFAR-100 blocks depart from the stated data set only (STATED keeps one value)
    assert {x["field"] for s in p["stages"][4:] for x in s["fields"] if x["departs"]} == \
        {"dataset"}
    assert f["epochs"]["paper"] == "160" and f["milestones"]["value"] == "(80, 120)"


def test_claims_without_seeds_is_the_empty_table(tmp_path, monkeypatch):
    from reprolib.configs import get_config
    from reprolib.core.claims import CLAIM_COLUMNS

    monkeypatch.setenv("REPROLIB_RESULTS", str(tmp_path))
    cl = E.claims(get_config("templates", "smoke"))
    assert cl.empty and list(cl.columns) == list(CLAIM_COLUMNS)
    assert "has no seeds" in cl.attrs["caption"]
    cl = E.claims(get_config("templates", "evidence"))      # seeds, no records yet
    assert cl.empty and "not run: 30 of 30 stages" in cl.attrs["caption"]


def test_config_field_rules():
    from reprolib.configs import get_config

    for over, msg in [({"margin": -1.0}, "margin=-1.0 must be in [0.0, 100.0]"),
                      ({"seeds": (0, 0)}, "seeds=(0, 0) repeats a value"),
                      ({"extra_datasets": ("",)}, "extra_datasets[0]='' must name a data set"),
                      ({"memory_probe": (0, 2)}, "memory_probe[0]=0 must be >= 1"),
                      ({"table2_templates": ("cubic",)}, "table2_templates[0]='cubic' is not"),
                      ({"latency_repeats": 0}, "latency_repeats=0 must be >= 1"),
                      ({"model_widths": (("vgg19_cifar", (5.0,)),)}, "must be in (0, 4.0]")]:
        with pytest.raises(ReprolibError) as e:
            get_config("templates", "smoke", **over)
        assert msg in str(e.value), (over, str(e.value))
    # a data set name is only a name here: the graph checks that the data set exists
    cfg = get_config("templates", "smoke", extra_datasets=("npz:no/such.npz",))
    with pytest.raises(ReprolibError, match="does not exist"):
        E.stages(cfg)
