"""Results store (reuse, force, atomic records, DataFrame) and report (tables, plots)."""

import json

import pytest

import matplotlib

matplotlib.use("Agg")
import pandas as pd  # noqa: E402

from reprolib import results  # noqa: E402
from reprolib.core import report


def test_run_cached_reuses_and_forces(tmp_path):
    calls = []

    def fn(ckpt_dir):
        calls.append(ckpt_dir)
        return {"acc": 90.0 + len(calls), "params": 10}

    cfg = {"model": "m", "seed": 3, "widths": [1, 2]}
    a = results.run_cached("p", "smoke", "m", cfg, fn, root=tmp_path)
    b = results.run_cached("p", "smoke", "m", cfg, fn, root=tmp_path)
    assert len(calls) == 1 and a == b and a["metrics"]["acc"] == 91.0
    assert a["seed"] == 3 and a["config"] == cfg and "torch" in a["versions"]
    assert a["git"] and a["device"] and a["run_id"].startswith("m-")
    assert calls[0].name == a["run_id"] and calls[0].parent.name == "ckpt"
    c = results.run_cached("p", "smoke", "m", cfg, fn, root=tmp_path, force=True)
    assert len(calls) == 2 and c["metrics"]["acc"] == 92.0
    d = results.run_cached("p", "smoke", "m", {**cfg, "seed": 4}, fn, root=tmp_path)
    assert d["run_id"] != a["run_id"] and len(calls) == 3
    files = sorted(p.name for p in (tmp_path / "p" / "smoke").iterdir())
    assert len([f for f in files if f.endswith(".json")]) == 2 and not any("tmp" in f for f in files)


def test_failed_run_writes_no_record(tmp_path):
    def boom(_):
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError, match="killed"):
        results.run_cached("p", "smoke", "x", {"a": 1}, boom, root=tmp_path)
    assert not list((tmp_path).rglob("*.json"))


def test_load_results_flattens(tmp_path):
    for w in (0.5, 1.0):
        results.run_cached("p", "cpu", f"w{w}", {"width": w}, lambda _, w=w: {"acc": w * 50},
                           root=tmp_path)
    df = results.load_results("p", "cpu", root=tmp_path)
    assert sorted(df["config.width"]) == [0.5, 1.0] and sorted(df.acc) == [25.0, 50.0]
    assert results.load_results("p", "smoke", root=tmp_path).empty
    rec = json.loads(next((tmp_path / "p" / "cpu").glob("w0.5-*.json")).read_text())
    assert rec["metrics"] == {"acc": 25.0}


def test_config_hash_is_order_independent():
    assert results.config_hash({"a": 1, "b": 2}) == results.config_hash({"b": 2, "a": 1})
    assert results.config_hash({"a": 1}) != results.config_hash({"a": 2})


def test_tables_and_plots(tmp_path, monkeypatch):
    monkeypatch.setenv("REPROLIB_FIGURES", str(tmp_path))
    df = pd.DataFrame({"model": ["a", "b"], "params_M": [1.0, 2.5], "acc": [90.1234, float("nan")],
                       "paper_acc": [91.0, 92.0]})
    md = report.save_table(df, "p", "t1", "smoke", caption="Table 1 (smoke)")
    text = md.read_text()
    assert text.startswith("Table 1 (smoke)") and "| model | params_M | acc | paper_acc |" in text
    assert "| a | 1 | 90.12 | 91 |" in text and "| b | 2.5 |  | 92 |" in text
    assert pd.read_csv(tmp_path / "p" / "t1-smoke.csv").shape == (2, 4)
    ax = report.plot_tradeoff(df, "params_M", "paper_acc", hue="model",
                              paper_df=pd.DataFrame({"params_M": [1.5], "paper_acc": [91.5]}),
                              baseline=(1.0, 91.0), title="t")
    png = report.save_figure(ax.figure, "p", "fig", "smoke")
    assert png.name == "fig-smoke.png" and png.stat().st_size > 1000
    assert "paper" in [t.get_text() for t in ax.get_legend().get_texts()]


def test_provenance_line():
    from reprolib import configs

    cfg = configs.get_config("quickstart", "cpu")
    line = report.provenance(cfg, pd.DataFrame({"device": ["cpu:x86_64 x2 threads=1"]}))
    assert line == "profile=cpu · data=cifar10_subset · train=15 ep · device=cpu:x86_64 x2"


def test_corrupt_record_is_a_clear_error(tmp_path):
    import pytest

    from reprolib.errors import ReprolibError

    rec = results.run_cached("p", "cpu", "x", {"a": 1}, lambda _: {"acc": 1.0}, root=tmp_path)
    path = tmp_path / "p" / "cpu" / f"{rec['run_id']}.json"
    path.write_text('{"metrics": ')
    with pytest.raises(ReprolibError, match=r"results record .*x-.*\.json is corrupt.*force"):
        results.run_cached("p", "cpu", "x", {"a": 1}, lambda _: {"acc": 1.0}, root=tmp_path)
    again = results.run_cached("p", "cpu", "x", {"a": 1}, lambda _: {"acc": 2.0}, root=tmp_path,
                               force=True)
    assert again["metrics"]["acc"] == 2.0


def test_a_record_of_the_wrong_shape_is_a_clear_error(tmp_path):
    """Valid JSON that is not a record (no 'metrics' / 'config' objects): a ReprolibError
    naming the file, from run_cached and load_results alike, never a KeyError."""
    import pytest

    from reprolib.errors import ReprolibError

    rec = results.run_cached("p", "cpu", "x", {"a": 1}, lambda _: {"acc": 1.0}, root=tmp_path)
    path = tmp_path / "p" / "cpu" / f"{rec['run_id']}.json"
    for text in ('{"config": {"a": 1}}', '[1, 2]', '{"config": {}, "metrics": 3}'):
        path.write_text(text)
        with pytest.raises(ReprolibError, match=r"x-.*\.json is not a reprolib record"):
            results.run_cached("p", "cpu", "x", {"a": 1}, lambda _: {"acc": 1.0}, root=tmp_path)
        with pytest.raises(ReprolibError, match="is not a reprolib record"):
            results.load_results("p", "cpu", root=tmp_path)


def test_records_are_strict_json_with_null_for_missing_values(tmp_path):
    import json

    rec = results.run_cached("p", "cpu", "nan", {"a": 1},
                             lambda _: {"loss": float("nan"), "lr": float("inf"), "acc": 1.0},
                             root=tmp_path)
    text = (tmp_path / "p" / "cpu" / f"{rec['run_id']}.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    stored = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-strict {c}"))
    assert stored["metrics"]["loss"] is None and stored["metrics"]["acc"] == 1.0
