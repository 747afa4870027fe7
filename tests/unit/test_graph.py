"""The stage graph (reprolib.core.pipeline): every paper x profile declares every stage it
reads, a stage runs alone once its upstream records exist, and a sixth paper is one config
module, one pipeline module and a notebook -- registered here from inside the test."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from reprolib import cli, configs
from reprolib.configs import BaseConfig, TrainConfig, ranged, recipe, register_paper
from reprolib.core.pipeline import (Graph, ModelSpec, Pipeline, Stage, key_of, load_data,
                                    register_pipeline, resources, train_and_measure, training)
from reprolib.core.stage import declared_reads
from reprolib.errors import ReprolibError
from reprolib.experiments import get_experiment, names

CASES = [(p, pr) for p in names() for pr in configs.profiles(p)]


@pytest.mark.parametrize("paper, profile", CASES)
def test_every_stage_declares_what_it_reads(paper, profile):
    """A static check of each stage's function: the Stage objects it can reach are its
    declared upstreams; training stages say what they train and on which model; the graph
    is closed and in run order (Graph.add refuses otherwise)."""
    g = get_experiment(paper).graph(configs.get_config(paper, profile))
    assert len(g), (paper, profile)
    seen = set()
    for s in g:
        assert declared_reads(s) == [], (paper, profile, s.name, declared_reads(s))
        assert all(u.run_id in seen for u in s.after), (paper, profile, s.name)
        seen.add(s.run_id)
        if s.train is not None:
            assert s.model_spec is not None, (paper, profile, s.name)
            assert s.train.recipe.epochs >= 0 and s.train.dataset
        assert s.role and s.group


def test_reading_an_undeclared_stage_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("REPROLIB_RESULTS", str(tmp_path))
    cfg = configs.get_config("quickstart", "smoke")
    a = Stage(cfg, "a", {"x": 1}, lambda st: {"acc": 1.0}, paper="demo")
    b = Stage(cfg, "b", {"x": 2}, lambda st: {"acc": a.metrics()["acc"]}, paper="demo")
    a.run()
    assert declared_reads(b) == ["a"]
    with pytest.raises(ReprolibError, match="stage 'b' of demo read stage 'a', which it does "
                                            "not declare"):
        b.run()
    c = Stage(cfg, "c", {"x": 2}, lambda st: {"acc": a.metrics()["acc"]}, after=[a], paper="demo")
    assert declared_reads(c) == [] and c.run()["metrics"]["acc"] == 1.0


# --------------------------------------------------------------------------- a sixth paper


@dataclass
class ToyConfig(BaseConfig):
    model: str = ranged("small_cnn", model=True)        # the CNN trained
    widths: tuple = ranged((0.5,), gt=0, each=True)      # one training per width
    train: TrainConfig = recipe(epochs=1, batch_size=64, lr=0.05)  # SGD, cosine


class Toy(Pipeline):
    """Per width: train the CNN, then evaluate it again from its saved model ("check")."""

    name = "toy"
    readme_figure = "acc"
    stated = {"train": {"epochs": (160, "the toy paper, §1")}}

    def __init__(self, notebook):
        self._notebook = notebook

    def notebook(self):
        return self._notebook

    def declare(self, cfg, g: Graph) -> None:
        for w in cfg.widths:
            t = g.add(_train_stage(cfg, w), role="train", width=w)
            g.add(_check_stage(cfg, t), role="check", width=w)

    def tables(self, cfg):
        import pandas as pd

        recs = self.records(cfg, "train")
        return {"acc": pd.DataFrame([{"stage": n, "acc": r["metrics"]["acc"]}
                                     for n, r in recs.items()])}

    def points(self, recs, profile):
        return [{"paper": self.name, "method": self.name, "stage": n, "profile": profile,
                 "acc_change": 0.0, "params_ratio": 1.0, "flops_ratio": 1.0,
                 "latency_ratio": float("nan")} for n in recs if n.startswith("train")]


def _train_stage(cfg, w):
    def fn(stage):
        import reprolib

        data = load_data(cfg, cfg.train)
        model = reprolib.create_model(cfg.model, num_classes=data.num_classes, width=w)
        m = train_and_measure(model, data, cfg.train, stage.ckpt_dir, device="cpu",
                              latency_repeats=0)
        stage.save_model(model)
        return m

    return Stage(cfg, f"train-w{w}", key_of(cfg, "model", "train", width=w), fn,
                 model=ModelSpec(cfg.model, {"num_classes": 10, "width": w}, (3, 16, 16)),
                 train=training(cfg, "train"), resources=resources(cfg), group="train")


def _check_stage(cfg, trained: Stage):
    def fn(stage):
        from reprolib.core.train import evaluate

        data = load_data(cfg, cfg.train)
        return {"acc": evaluate(trained.model(), data.test, "cpu")["acc"],
                "trained_acc": trained.metrics()["acc"]}

    return Stage(cfg, f"check-{trained.name}", {}, fn, after=[trained], group="check")


@pytest.fixture
def toy(tmp_path, monkeypatch):
    """The toy paper: its config registered, its pipeline registered, a two-cell notebook;
    nothing else in the package touched."""
    for var in ("RESULTS", "FIGURES", "RUNS"):
        monkeypatch.setenv(f"REPROLIB_{var}", str(tmp_path / var.lower()))
    nb = tmp_path / "toy.ipynb"
    nb.write_text(json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        "cells": [
            {"cell_type": "code", "id": "c0", "metadata": {"tags": ["parameters"]},
             "execution_count": None, "outputs": [],
             "source": "profile = 'smoke'\noverrides = {}\nforce = False"},
            {"cell_type": "code", "id": "c1", "metadata": {}, "execution_count": None,
             "outputs": [], "source": (
                 "import sys; sys.path.insert(0, %r)\n" % str(__import__("pathlib").Path(
                     __file__).parent) +
                 "import test_graph as T\nT.register(%r)\n" % str(nb) +
                 "from reprolib import configs\nfrom reprolib.experiments import get_experiment\n"
                 "cfg = configs.get_config('toy', profile, **overrides)\n"
                 "print(get_experiment('toy').run(cfg, force=force).keys())")}]}))
    register(str(nb))
    yield get_experiment("toy")
    from reprolib.core import pipeline

    configs._PAPERS.pop("toy", None)           # the rest of the session sees five papers
    pipeline._PIPELINES.pop("toy", None)


def register(notebook: str) -> None:
    """Register the toy paper (its config with two profiles, its pipeline)."""
    register_paper("toy", "A toy paper: a CNN per width, checked from its saved model",
                   ToyConfig, presets={"smoke": {"image_size": 16},
                                       "cpu": {"image_size": 16, "widths": (0.5, 1.0)}},
                   order=60)
    register_pipeline(Toy(__import__("pathlib").Path(notebook)))


def test_a_sixth_paper_is_picked_up_by_every_tool(toy, capsys, tmp_path):
    assert "toy" in names()
    cfg = configs.get_config("toy", "smoke")
    g = toy.graph(cfg)
    assert [s.name for s in g] == ["train-w0.5", "check-train-w0.5"]
    # graph: both missing, the edge shown
    assert cli.main(["graph", "toy"]) == 0
    out = capsys.readouterr().out
    assert "2 stages, 0 done, 2 missing" in out and "<- train-w0.5" in out
    # compute --stage: the check alone needs its upstream record first
    assert cli.main(["compute", "toy", "--stage", "check-train-w0.5"]) == 2
    assert "read train-w0.5, which have no record yet" in capsys.readouterr().err
    assert cli.main(["compute", "toy", "--stage", "train-w0.5"]) == 0
    assert cli.main(["compute", "toy", "--stage", "check-train-w0.5"]) == 0
    capsys.readouterr()
    assert cli.main(["graph", "toy"]) == 0
    assert "2 done, 0 missing" in capsys.readouterr().out
    recs = toy.records(cfg)
    assert recs["check-train-w0.5"]["metrics"]["acc"] == pytest.approx(
        recs["train-w0.5"]["metrics"]["acc"], abs=1e-6)
    # run: the whole graph from the records, through the paper's notebook
    assert cli.main(["run", "toy"]) == 0
    assert (tmp_path / "runs" / "toy-smoke.ipynb").exists()
    # plan: the training stage with the paper's stated epochs beside ours
    assert cli.main(["plan", "toy", "--profile", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "== train x2" in out and "[paper: 160 (the toy paper, §1)]" in out
    # the overview: the toy paper's points beside the others'
    from reprolib.experiments import overview

    pts = overview.points(configs.get_config("overview", "smoke"))
    assert "toy" in set(pts["method"])
