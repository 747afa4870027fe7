"""The overview's pieces that need no counting or exporting: verdicts, the cross-method points
read from (synthetic) records of the papers' real stages, benchmark records, the papers'
reported points, the figure; and that the overview knows no paper (it asks the pipelines)."""

import math

import pytest

from reprolib.core import io
from reprolib.configs import get_config
from reprolib.experiments import overview as O
from reprolib.experiments import sidt, templates


def _title(fig) -> str:
    """The figure's title and the provenance lines under it."""
    return "\n".join([fig._suptitle.get_text(), *(t.get_text() for t in fig.texts)])


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("REPROLIB_RESULTS", str(tmp_path / "results"))
    return tmp_path / "results"


def _write(stage, metrics, device="cpu:test x2 threads=1"):
    io.write_json({"paper": stage.paper, "profile": stage.profile, "name": stage.name,
                   "run_id": stage.run_id, "config": stage.config, "metrics": metrics,
                   "device": device}, stage.path)


def _row(printed, ours, decimals, explanation="", explained=False):
    r = {"paper_value": printed, "ours": ours, "explanation": explanation,
         "explained": explained, "tolerance": 0.0 if decimals is None else 0.5 * 10 ** -decimals}
    r["difference"] = None if printed is None or ours is None else ours - printed
    return O.verdict(r)


def test_verdicts_use_the_printed_precision():
    assert _row(27.60, 27.5963, 2) == "match"
    assert _row(27.60, 27.5949, 2) == "unexplained mismatch"        # just outside 0.005
    assert _row(27.60, 27.59, 2, "10-class head", True) == "explained mismatch"
    assert _row(28, 27.52, 0) == "match" and _row(16, 17.10, 0) == "unexplained mismatch"
    assert _row(96, 96, None) == "match" and _row(96, 97, None) == "unexplained mismatch"
    assert _row(86, None, 0) == "not counted" and _row(None, 9_786_378, None) == "not printed"


def test_points_read_the_papers_records(store):
    cfg = get_config("overview", "smoke")
    # SiDT: the parent (PR 0) and one pruned model
    st = {s.name: s for s in sidt.stages(get_config("sidt", "smoke"))}
    _write(st["finetune-p00"], {"acc": 50.0, "params": 1000, "flops": 2000, "latency_ms": 4.0})
    _write(st["finetune-p40"], {"acc": 47.5, "params": 600, "flops": 1000, "latency_ms": 3.0})
    # templates: base and uniform at one width
    grid = {(s.config["model"], s.config["template"], s.config["width"]): s
            for s in templates.grid_stages(get_config("templates", "smoke"))}
    (m, _, w) = next(k for k in grid if k[1] == "uniform")
    _write(grid[(m, "base", w)], {"acc": 30.0, "params": 100, "flops": 10, "latency_ms": 1.0})
    _write(grid[(m, "uniform", w)], {"acc": 33.0, "params": 80, "flops": 50})
    pts = O.points(cfg)
    assert sorted(pts["method"]) == ["sidt", "templates"]
    s = pts[pts["method"] == "sidt"].iloc[0]
    assert s["stage"] == "finetune-p40" and s["profile"] == "smoke" and s["device"] == "cpu:test x2"
    assert (s["acc_change"], s["params_ratio"], s["flops_ratio"], s["latency_ratio"]) == \
        (-2.5, 0.6, 0.5, 0.75)
    t = pts[pts["method"] == "templates"].iloc[0]
    assert t["acc_change"] == 3.0 and t["params_ratio"] == 0.8 and t["flops_ratio"] == 5.0
    assert math.isnan(t["latency_ratio"])                  # no latency in the record: no point
    # a benchmark record naming the SiDT stage replaces its latency; malformed ones are ignored
    from reprolib.core.results import record_path

    bench = record_path("bench", "cpu", "sidt-p40", {}, root=store)
    io.write_json({"name": "sidt-p40", "run_id": bench.stem, "paper": "bench", "profile": "cpu",
                   "config": {}, "metrics": {"paper": "sidt", "stage": "finetune-p40",
                                             "latency_ratio": 0.5, "device": "cuda:H100",
                                             "batch_size": 64}, "device": "cuda:H100"}, bench)
    # a record under another record's name is not trusted (reprolib.results.check_record)
    io.write_json({"name": "sidt-p40", "run_id": "sidt-p40-0000000000", "config": {},
                   "metrics": {"paper": "sidt", "stage": "finetune-p40", "latency_ratio": 0.1}},
                  store / "bench" / "cpu" / "sidt-p40-0000000000.json")
    io.write_json({"config": {}, "metrics": {"latency_ratio": 0.1}}, store / "bench" / "cpu" / "x.json")
    (store / "bench" / "cpu" / "broken.json").write_text("{ not json")
    pts = O.points(cfg)
    s = pts[pts["method"] == "sidt"].iloc[0]
    assert s["latency_ratio"] == 0.5 and s["latency_from"] == "bench cuda:H100 batch 64"
    figs = O.figures(cfg)
    assert set(figs) == {"tradeoff"}
    assert "profile smoke" in _title(figs["tradeoff"])       # devices differ: one line each


def test_seeds_of_one_condition_are_averaged(store):
    cfg = get_config("overview", "smoke")
    st = {s.name: s for s in sidt.stages(get_config("sidt", "smoke"))}
    _write(st["finetune-p00"], {"acc": 50.0, "params": 1000, "flops": 2000})
    recs = [{"name": "finetune-p20-s0", "config": {}, "metrics": {"acc": 40.0, "params": 10}},
            {"name": "finetune-p20-s1", "config": {}, "metrics": {"acc": 44.0, "params": 10}}]
    g = O.by_condition(recs)
    assert g["finetune-p20"]["metrics"]["acc"] == 42.0 and g["finetune-p20"]["n"] == 2
    assert O.points(cfg).empty                   # a parent alone is no point


def test_no_records_is_not_an_error(store):
    cfg = get_config("overview", "cpu", profiles=("smoke", "evidence"))
    assert O.points(cfg).empty
    assert "no records" in _title(O.figures(cfg)["tradeoff"])


def test_paper_points():
    pp = O.paper_points()
    s = pp[pp["method"] == "sidt"].set_index("label")
    assert len(s) == 4 and s.loc["PR 80%", "params_ratio"] == pytest.approx(7.17 / 27.60)
    assert s.loc["PR 20%", "acc_change"] == pytest.approx(82.75 - 81.78)
    pe = pp[pp["method"] == "pe"].set_index("label")
    assert pe.loc["ViT-PE¹", "params_ratio"] == pytest.approx(11.1 / 22.1)
    assert len(pp[pp["method"] == "templates"]) == 16          # 4 models x 4 templates
    assert not {"vtp_svd", "metaformer_nas"} & set(pp["method"])   # they print no sizes


def test_bad_config_is_one_clear_error():
    from reprolib.errors import ReprolibError

    with pytest.raises(ReprolibError, match="scale='huge' is not one of: tiny, cifar, paper"):
        get_config("overview", "smoke", scale="huge")
    with pytest.raises(ReprolibError, match=r"export_cases\[0\]='bert' is not one of: sidt"):
        get_config("overview", "smoke", export_cases=("bert",))


def test_the_overview_asks_the_pipelines():
    """Every part comes from the papers' descriptors: the export cases, the conformance rows
    and the chart's methods, in the order the tables show them."""
    from reprolib.core.pipeline import Pipeline
    from reprolib.experiments import pipelines

    pipes = pipelines()
    cases = O.export_cases()
    assert {c: p for c, (p, _) in cases.items()} == {
        c: n for n, p in pipes.items() for c in p.export_cases()}
    assert cases["vtp_qr"][0] == "vtp_svd" and cases["mobilenet_template"][0] == "templates"
    assert list(O.shown()) == ["sidt", "vtp_svd", "pe", "metaformer_nas", "templates"]
    assert O.method_labels()["pe"] == "PE (tied W/Wᵀ)"
    assert [n for n, p in pipes.items() if type(p).conformance is not Pipeline.conformance] \
        == ["sidt", "pe", "vtp_svd", "metaformer_nas", "templates"]
    g = O.PIPELINE.graph(get_config("overview", "smoke"))
    assert [(s.tags["case"], s.tags["method"]) for s in g.select("export")] == [
        ("vtp_svd", "vtp_svd"), ("vit_pe", "pe"), ("resnet50_pe", "pe"),
        ("mobilenet_template", "templates")]


def test_unknown_methods_and_plain_pipelines(store, monkeypatch):
    """A pipeline without ``points`` adds nothing; one with points but no ``overview``
    presentation shows under its name in a colour of the cycle (the figure does not crash
    on a point that leaves columns out)."""
    from reprolib.core.pipeline import Pipeline
    from reprolib.experiments.overview import report

    class Plain(Pipeline):
        name = "plain"

    class Newcomer(Pipeline):
        name = "newcomer"

        def points(self, recs, profile):
            return [{"method": self.name, "profile": profile, "stage": "x", "label": "x",
                     "acc_change": -1.0, "params_ratio": 0.5, "flops_ratio": 0.5}]

    real = report._pipelines()
    monkeypatch.setattr(report, "_pipelines",
                        lambda: {**real, "plain": Plain(), "newcomer": Newcomer()})
    orig = report.paper_records
    monkeypatch.setattr(report, "paper_records", lambda p, prof: (
        {"x": {}} if p in ("plain", "newcomer") else orig(p, prof)))
    cfg = get_config("overview", "smoke")
    pts = O.points(cfg)
    assert list(pts["method"]) == ["newcomer"] and pts.iloc[0]["latency_from"] == ""
    assert "plain" not in O.shown() and O.style("newcomer")["color"].startswith("C")
    fig = O.figures(cfg)["tradeoff"]
    assert "seeds per condition (smoke): newcomer 1" in _title(fig)
    assert [t.get_text() for t in fig.axes[2].get_legend().get_texts()] == ["newcomer (smoke)"]
