"""Filter redistribution templates pipeline (``papers/templates.md``): a grid of independent
training runs, a measurement-only grid for Table 2, Tables 1-2 and Figures 2-5 from the records.

The graph (``PIPELINE.graph(cfg)``), in run order; readers find stages by role and tags
(``g.select("cell", dataset=cfg.dataset, model=m)``):

* role ``measure``, tags ``model``, ``template`` -- ``measure-<model>-<template>`` for every
  ``table2_models`` x ``table2_templates``: the model at width 1.0 for 10 classes, measured
  (params, FLOPs and, as the config asks, peak training memory at ``memory_batch`` and CPU
  latency); nothing is trained (Table 2).  Group ``measure``.
* role ``cell``, tags ``dataset``, ``model``, ``template``, ``width``, ``seed`` --
  ``<model>-<template>-w<width>-<data>`` for every cell of :func:`grid` (data set x model x
  template x width; ``<data>`` is ``npz`` for an ``npz:`` file): the model built from scratch
  (seeded from the config's seed), trained with the ``train`` recipe, measured and saved
  (``stage.save_model``; ``stage.model()`` loads it back).  With ``cfg.seeds`` every cell is
  trained once per seed, seed by seed (``...-s<seed>``, the config re-seeded).  The cells of
  one data set and model share a group (``<dataset> <model>``: ``plan`` shows one block).
  Table 1, the runs table, Figures 3-5, the summaries and the claims read these.

No stage reads another (no ``after``).  Per profile (``reprolib.configs.templates``):

* ``smoke``: 20 ``measure`` stages (the four full-size models x five templates, params and
  FLOPs only) + 16 ``cell`` stages (the four tiny models x base, uniform x widths 0.125,
  0.25 on digits, 1 epoch);
* ``cpu``: 20 ``measure`` stages (memory and latency measured; cells over the limit skipped)
  + 12 ``cell`` stages on the CIFAR-10 subset (VGG-19 and MobileNet at widths 0.05, 0.1,
  ResNet-50 and GoogLeNet at 0.05; base and uniform; 2 epochs);
* ``evidence``: no ``measure`` stage + 30 ``cell`` stages (VGG-19 and MobileNet x the five
  templates x width 0.05 x seeds 0, 1, 2, 10 epochs, on the CIFAR-10 subset); the tables and
  Figures 3-5 show mean ± std over the seeds and ``claims(cfg)`` tests the paper's claim that
  templates cut parameters, memory and time with little or no accuracy loss;
* ``gpu``: 20 ``measure`` + 80 ``cell`` stages (full CIFAR-10, the four models x five
  templates x widths 1.0, 0.5, 0.25, 0.1, 30 epochs);
* ``paper``: 20 ``measure`` + 320 ``cell`` stages (CIFAR-10 and CIFAR-100 x four models x five
  templates x the eight widths, 160 epochs).

The width rules themselves are ``reprolib.methods.templates``; the networks are
``reprolib.models.templates_cifar``.  The stage builders are :mod:`.graph`, the tables,
figures and one-seed paragraphs :mod:`.report`, the evidence tables and claims
:mod:`.assess`.
"""

from __future__ import annotations

import dataclasses

from reprolib.core.pipeline import Pipeline, register_pipeline
from reprolib.experiments import evidence as ev
from reprolib.experiments.templates.graph import (cell_stage, datasets, grid, measure,
                                                   measure_stage, model_widths, run_name)
from reprolib.experiments.templates.report import (COLORS, FIGURES, LABELS, MARKERS,
                                                   MODEL_LABELS, PAPER, PARAMS_NOTES,
                                                   cell_stats, fig2_frame, grid_frame,
                                                   grid_summary, make_figures, make_summary,
                                                   make_tables, plot_fig2, plot_figure,
                                                   ran_summary, resnet_stage_reading, runs_table,
                                                   table1, table2, table2_frame)
from reprolib.experiments.templates import examples as _examples
from reprolib.experiments.templates import views as _views
from reprolib.experiments.templates.assess import (RESOURCES, evidence_caption,
                                                   evidence_claims, evidence_runs,
                                                   evidence_summary, evidence_table1,
                                                   evidence_tables, seed_accuracies)


class Templates(Pipeline):
    name = "templates"
    readme_figure = "fig3_acc_vs_params"
    #: The evidence profile's figure in the README: Figure 3 over the seeds (mean ± std).
    readme_evidence_figure = "fig3_acc_vs_params"
    #: What the paper states for the grid's recipe (section 4).
    stated = {"train": {"dataset": ("cifar10", "§4 (and CIFAR-100)"),
                        "image_size": (32, "§4"), "epochs": (160, "§4"),
                        "global_batch": (64, "§4"), "optimizer": ("sgd", "§4"),
                        "lr": (0.1, "§4"), "schedule": ("multistep", "§4: 0.1/0.01/0.001"),
                        "milestones": ((80, 120), "§4")}}
    departures: dict = {}

    def declare(self, cfg, g) -> None:
        """The Table 2 measurements (role ``measure``), then the grid's cells (role
        ``cell``), seed by seed with ``cfg.seeds``, then with ``cfg.check_epochs`` the
        longer-run plateau check (role ``check``: every cell at the first seed, trained for
        ``check_epochs``)."""
        for m in cfg.table2_models:
            for t in cfg.table2_templates:
                g.add(measure_stage(cfg, m, t), role="measure", model=m, template=t)
        cells = grid(cfg)
        for seed in (cfg.seeds or (None,)):
            c = cfg if seed is None else self.seeded(cfg, seed)
            suffix = "" if seed is None else ev.seed_suffix(seed)
            for ds, m, t, w in cells:
                g.add(cell_stage(c, ds, m, t, w, suffix=suffix), role="cell", dataset=ds,
                      model=m, template=t, width=w, seed=c.seed)
        if cfg.seeds and cfg.check_epochs:
            # the longer-run plateau check: the first seed once more at check_epochs
            c = self.seeded(cfg, cfg.seeds[0])
            c = dataclasses.replace(c, train=dataclasses.replace(c.train,
                                                                 epochs=cfg.check_epochs))
            suffix = f"{ev.seed_suffix(c.seed)}-long{cfg.check_epochs}"
            for ds, m, t, w in cells:
                g.add(cell_stage(c, ds, m, t, w, suffix=suffix), role="check", dataset=ds,
                      model=m, template=t, width=w, seed=c.seed)

    def tables(self, cfg) -> dict:
        """``table2`` (params / memory / time at width 1.0), ``table1`` (accuracy per template)
        and ``runs`` (every trained cell), all read back from the records; with ``cfg.seeds``
        Table 1 and the runs as mean ± std over the seeds (Table 2 when it has cells) and the
        ``claims``."""
        return evidence_tables(cfg) if cfg.seeds else make_tables(cfg)

    def figures(self, cfg) -> dict:
        """``fig2_vgg19_templates`` and Figures 3-5 (``fig3_acc_vs_params``,
        ``fig4_acc_vs_memory``, ``fig5_acc_vs_time``) from the training grid's records."""
        return make_figures(cfg)

    def summary(self, cfg) -> str:
        """The paragraph about this run, every number from the records (with ``cfg.seeds``:
        :func:`evidence_summary`)."""
        return evidence_summary(cfg) if cfg.seeds else make_summary(cfg)

    def evidence_claims(self, cfg):
        """The claims of the evidence run (:func:`.assess.evidence_claims`)."""
        return evidence_claims(cfg)

    # ---- what the overview and the bench read (.views, .examples)
    overview = _views.OVERVIEW

    def conformance(self) -> list[dict]:
        """The overview's conformance rows (:func:`.views.conformance_rows`)."""
        return _views.conformance_rows()

    def points(self, recs: dict, profile: str) -> list[dict]:
        """The overview chart's points (:func:`.views.points`)."""
        return _views.points(self, recs, profile)

    def reported_points(self) -> list[dict]:
        """The points the paper reports itself (:func:`.views.reported_points`)."""
        return _views.reported_points()

    def export_cases(self) -> dict:
        """The compressed models the overview exports (:func:`.examples.export_cases`)."""
        return _examples.export_cases()

    def bench_families(self, bench_cfg) -> list[dict]:
        """The families ``reprolib bench`` times (:func:`.examples.bench_families`)."""
        return _examples.bench_families(bench_cfg)


def grid_stages(cfg) -> list:
    """The graph's ``cell`` stages (every grid cell, and seed), in run order."""
    return PIPELINE.graph(cfg).select("cell")


def table2_stages(cfg) -> list:
    """The graph's ``measure`` stages (the Table 2 cells), in run order."""
    return PIPELINE.graph(cfg).select("measure")


PIPELINE = register_pipeline(Templates())
stages, run, tables, figures, summary, claims = PIPELINE.api()

__all__ = ["PIPELINE", "Templates", "PAPER", "stages", "run", "tables", "figures", "summary",
           "claims", "datasets", "grid", "run_name", "model_widths", "measure", "grid_stages",
           "table2_stages", "grid_frame", "table2_frame", "cell_stats", "table1", "table2",
           "runs_table", "PARAMS_NOTES", "FIGURES", "LABELS", "COLORS", "MARKERS",
           "MODEL_LABELS", "plot_figure", "fig2_frame", "plot_fig2", "grid_summary",
           "ran_summary", "resnet_stage_reading", "RESOURCES", "seed_accuracies",
           "evidence_caption", "evidence_table1", "evidence_runs", "evidence_summary"]
