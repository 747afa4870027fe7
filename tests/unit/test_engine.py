"""The engine every pipeline runs on (reprolib.experiments.common): cached stages, keys that
follow their upstream stages, saved models that come back, seeding, and the quickstart
pipeline as its smallest user."""

import pytest
import torch

import reprolib
from reprolib import configs
from reprolib.errors import ReprolibError
from reprolib.experiments import EXPERIMENTS, get_experiment
from reprolib.core.pipeline import Stage, key_of, run_stages


@pytest.fixture
def cfg(tmp_path, monkeypatch):
    monkeypatch.setenv("REPROLIB_RESULTS", str(tmp_path / "results"))
    return configs.get_config("quickstart", "smoke")


def test_stage_runs_once_and_keys_follow_upstream(cfg):
    calls = []

    def up_fn(stage):
        calls.append("up")
        return {"x": 1.0}

    def down_fn(stage):
        calls.append("down")
        return {"y": stage.after[0].metrics()["x"] + 1}

    up = Stage(cfg, "up", {"a": 1}, up_fn)
    down = Stage(cfg, "down", {"b": 2}, down_fn, after=[up])
    recs = run_stages([up, down])
    assert recs["down"]["metrics"]["y"] == 2.0 and calls == ["up", "down"]
    run_stages([up, down])                                   # cached: nothing runs again
    assert calls == ["up", "down"]
    assert down.config["after"] == {"up": up.run_id} and down.config["seed"] == cfg.seed
    up2 = Stage(cfg, "up", {"a": 2}, up_fn)                  # another upstream setting ...
    down2 = Stage(cfg, "down", {"b": 2}, down_fn, after=[up2])
    assert down2.run_id != down.run_id                       # ... re-keys the downstream stage


def test_missing_record_is_a_clear_error(cfg):
    st = Stage(cfg, "never", {"a": 1}, lambda s: {})
    with pytest.raises(ReprolibError, match="no record for stage 'never' of quickstart.*reprolib run"):
        st.record()


def test_stage_model_round_trip_and_recompute(cfg):
    runs = []

    def fn(stage):
        runs.append(1)
        model = reprolib.create_model("test_small_cnn")
        stage.save_model(model)
        return {"w": float(model.head.weight.detach().sum())}

    st = Stage(cfg, "m", {"a": 1}, fn)
    rec = st.run()
    m = st.model()
    assert abs(float(m.head.weight.detach().sum()) - rec["metrics"]["w"]) < 1e-6
    for f in st.ckpt_dir.glob("model.*"):                    # a clone has records, no models
        f.unlink()
    m2 = st.model()                                          # recomputed, same seed: same weights
    assert len(runs) == 2 and torch.equal(m2.head.weight, m.head.weight)


def test_stage_seeds_model_initialisation(cfg):
    def fn(stage):
        return {"w": float(reprolib.create_model("test_small_cnn").head.weight.detach().sum())}

    a = Stage(cfg, "s", {"a": 1}, fn).run()
    torch.manual_seed(12345)                                 # whatever ran before
    b = Stage(cfg, "s", {"a": 1}, fn).run(force=True)
    assert a["metrics"]["w"] == b["metrics"]["w"]


def test_key_of_takes_recipes_without_progress(cfg):
    k = key_of(cfg, "model", "train", width=0.5)
    assert k["model"] == cfg.model and k["width"] == 0.5 and k["train"]["epochs"] == 3
    assert "progress" not in k["train"]


def test_every_experiment_has_the_same_entry_points():
    for paper in EXPERIMENTS:
        exp = get_experiment(paper)
        for fn in ("stages", "run", "tables", "figures", "summary"):
            assert callable(getattr(exp, fn, None)), f"{paper}.{fn}"
        assert isinstance(getattr(exp, "readme_figure", None) or exp.README_FIGURE, str)
        stages = exp.stages(configs.get_config(paper, "smoke"))
        names = [s.name for s in stages]
        assert names and len(names) == len(set(names)), paper


def test_quickstart_pipeline_end_to_end(cfg):
    from reprolib.experiments import quickstart

    cfg = configs.get_config("quickstart", "smoke", widths=(0.25,), **{"train.epochs": 1})
    recs = quickstart.run(cfg)
    assert list(recs) == ["small_cnn-w0.25"]
    t = quickstart.tables(cfg)["widths"]
    assert list(t["width"]) == [0.25] and 0 <= t["acc"].iloc[0] <= 100
    assert t["params_M"].iloc[0] == pytest.approx(18626 / 1e6)
    assert "profile=smoke" in t.attrs["caption"]
    assert set(quickstart.figures(cfg)) == {"acc_vs_params"}
    text = quickstart.summary(cfg)
    assert f"{t['acc'].iloc[0]:.1f} %" in text and "0.019 M" in text
    # which test images the model got right, in the test set's order: the accuracy again
    from reprolib.core.io import unpack_bits

    m = recs["small_cnn-w0.25"]["metrics"]
    hits = unpack_bits(m["test_correct"])
    assert len(hits) == m["test_images"] == 360
    assert 100 * hits.mean() == pytest.approx(m["acc"], abs=1e-9)
