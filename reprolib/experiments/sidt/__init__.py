"""SiDT pipeline (Xue et al., "Searching Intrinsic Dimensions of Vision Transformers",
../shared/papers/sidt.md): dense baseline -> search -> prune at every ratio + fine-tune ->
Swin-T sizes; with seeds, controls pruned to the same parameter counts.  Table I, the section
3 complexity analysis and Table II's backbone columns; Table II's detection part (Cascade Mask
R-CNN on COCO, box / mask mAP) is the paper ``sidt_detection``
(:mod:`reprolib.experiments.sidt_detection`, ``notebooks/sidt_detection.ipynb``).

Stages (each one cached record under ``results/sidt/<profile>/``), by role and tags in the
graph (:meth:`SiDT.declare`; readers find them with ``graph.select`` / ``get``):

* ``baseline`` (role ``baseline``, tag ``seed``; only when ``baseline.epochs`` > 0: the
  ``evidence``, ``gpu`` and ``paper`` profiles): the dense ``cfg.model`` trained with the
  ``baseline`` recipe, no scores, no L1; Table I's 0 % row, and the model the search starts
  from.
* ``search`` (role ``search``, tag ``seed``): ``cfg.model`` (the baseline's, else a fresh
  one) with scores attached (:func:`reprolib.methods.sidt.attach_scores`), weights and
  scores trained with the ``search`` recipe plus ``l1_strength * sum |alpha|``; the scored
  model is saved (``stage.save_model``).  Reads the baseline's model.
* ``finetune-p00``, ``finetune-p20``, ... (role ``finetune``, tags ``seed``, ``ratio``): the
  searched model pruned at ratio 0 and at each of ``cfg.ratios``
  (:func:`reprolib.methods.sidt.prune`, ``cfg.scope`` ranking), evaluated, then fine-tuned
  with the ``finetune`` recipe (warm start, no L1) and measured.  Reads the search's model
  and metrics.
* ``reference`` (role ``reference``, ``cfg.seed`` only): the full Swin-T
  (``cfg.reference_model`` at ``cfg.reference_size`` px, ``cfg.reference_classes`` classes)
  pruned at every ratio uniformly and with the per-layer kept fractions the search learned,
  counted; plus the section 3 per-layer complexity.  Reads every fine-tune's metrics.
* with ``cfg.seeds`` (the ``evidence`` profile) the controls ``uniform-pNN`` /
  ``random-pNN`` / ``tp_uniform-pNN`` / ``tp_global-pNN`` (role ``control``, tags ``seed``,
  ``ratio``, ``control``): the searched model pruned by each of ``cfg.controls`` at every
  ratio but 0, ours to the parameter count of the learned pruning (:func:`matched_prune`),
  Torch-Pruning's to its FLOPs (:func:`tp_prune`), fine-tuned exactly as the learned one
  (reads the search's model); and, for every seed but ``cfg.seed``, its own baseline /
  search / fine-tunes / controls, named with ``-s<seed>``.

The stages of one seed come in the order baseline, search, fine-tunes, (reference,) controls.
``tables``, ``figures`` and ``summary`` read ``cfg.seed``'s records back (Table I, the
complexity table, Table II's backbone columns, the Swin-T sizes: :mod:`.report`); ``claims``
tests the paper's claims on the evidence records (:mod:`.assess`).
"""

from __future__ import annotations

from reprolib.configs.sidt import CONTROLS
from reprolib.core.pipeline import Pipeline, register_pipeline
from reprolib.experiments.evidence import seed_suffix
from reprolib.experiments.sidt import examples as _examples
from reprolib.experiments.sidt import views as _views
from reprolib.experiments.sidt import assess as _claims
from reprolib.experiments.sidt import report as _tables
from reprolib.experiments.sidt.graph import (TP_CONTROLS, baseline_stage, control_stage,
                                              finetune_stage, matched_prune, ratios,
                                              reference_stage, search_stage, tp_prune,
                                              tune_name)

PAPER = "sidt"

# What section 4 states for the three recipes (Swin's settings), for ``reprolib plan``.
_SWIN = {"dataset": ("cifar100", "§4"), "image_size": (224, "§4: Swin-T, patch 4, window 7"),
         "epochs": (160, "§4"), "global_batch": (256, "§4"), "optimizer": ("adamw", "§4 / Swin"),
         "lr": (2.5e-4, "§4"), "weight_decay": (0.05, "§4"), "schedule": ("cosine", "Swin"),
         "warmup_epochs": (20.0, "Swin"), "label_smoothing": (0.1, "Swin"),
         "mixup": (0.8, "Swin"), "cutmix": (1.0, "Swin"), "drop_path": (0.2, "Swin-T"),
         "randaugment": ("rand-m9-mstd0.5-inc1", "Swin"), "random_erasing": (0.25, "Swin"),
         "repeated_aug": (0, "Swin (off)")}


class SiDT(Pipeline):
    """SiDT's graph (module docstring): roles ``baseline``, ``search``, ``finetune``,
    ``reference``, ``control``; tags ``seed``, ``ratio``, ``control``."""

    name = PAPER
    readme_figure = "tradeoff"
    readme_evidence_figure = "evidence"
    stated = {"search": {**_SWIN, "l1": (1e-4, "§4 gamma")},
              "finetune": {**_SWIN, "l1": (0.0, "§4: fine-tune without the L1 term")},
              "baseline": {**_SWIN, "l1": (0.0, "baseline, no L1")}}
    departures = {("search", "drop_path"): "swin_t builds with drop path 0.2 (Swin-T's), "
                                           "shown here"}

    def declare(self, cfg, g) -> None:
        """Per seed (``cfg.seed`` first): baseline (when it trains), search, one fine-tune
        per ratio, then -- for ``cfg.seed`` -- the reference counts, and with ``cfg.seeds``
        the controls at every ratio but 0."""
        for seed in self.seeds(cfg):
            c = self.seeded(cfg, seed)
            sfx = seed_suffix(seed, cfg.seed)
            base = baseline_stage(c, sfx)
            if base is not None:
                g.add(base, role="baseline", seed=seed)
            search = g.add(search_stage(c, base, sfx), role="search", seed=seed)
            tunes = [g.add(finetune_stage(c, r, search, sfx), role="finetune", seed=seed,
                           ratio=r) for r in ratios(cfg)]
            if seed == cfg.seed:
                g.add(reference_stage(cfg, tunes), role="reference")
            if cfg.seeds:
                for k in cfg.controls:
                    for r in ratios(cfg):
                        if r > 0:
                            g.add(control_stage(c, k, r, search, sfx), role="control",
                                  seed=seed, ratio=r, control=k)

    def tables(self, cfg) -> dict:
        """``table1``, ``complexity``, ``table2``, ``swin_t`` (:func:`.report.tables`); with
        ``cfg.seeds`` also ``evidence``, ``evidence_runs`` and ``claims``."""
        return _tables.tables(self, cfg)

    def figures(self, cfg) -> dict:
        """``tradeoff`` and ``complexity`` (:func:`.report.figures`); with ``cfg.seeds`` also
        ``evidence``."""
        return _tables.figures(self, cfg)

    def summary(self, cfg) -> str:
        """The SiDT paragraph of the README, every number from the records
        (:func:`.report.summary`)."""
        return _tables.summary(self, cfg)

    def evidence_claims(self, cfg):
        """The claims tested on the evidence records (:func:`.assess.evidence_claims`)."""
        return _claims.evidence_claims(self, cfg)

    def evidence_frame(self, cfg):
        """Every evidence stage as one row (:func:`.assess.evidence_frame`)."""
        return _claims.evidence_frame(self, cfg)

    def plot_evidence(self, cfg):
        """The evidence figure (:func:`.assess.plot_evidence`)."""
        return _claims.plot_evidence(self, cfg)

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


PIPELINE = register_pipeline(SiDT())
stages, run, tables, figures, summary, claims = PIPELINE.api()
evidence_frame, plot_evidence = PIPELINE.evidence_frame, PIPELINE.plot_evidence

__all__ = ["SiDT", "PIPELINE", "PAPER", "CONTROLS", "stages", "run", "tables", "figures",
           "summary", "claims", "evidence_frame", "plot_evidence", "matched_prune", "tp_prune",
           "TP_CONTROLS", "ratios",
           "tune_name", "baseline_stage", "search_stage", "finetune_stage", "control_stage",
           "reference_stage"]
