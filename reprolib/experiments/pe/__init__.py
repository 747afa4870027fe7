"""PE pipeline (Koyun & Töreyin 2024, ``../shared/papers/pe.md``): Tables 1-2 counted, the
ResNet sharing rule analysed, a PE model trained against its unshared twin (and, with seeds,
against the twin narrowed to its parameter count: the claims test).

The graph (:meth:`PE.declare`), by role and tags, in run order:

* role ``count``, tag ``table`` (``table1``, ``table2``, ``sharing``; :func:`count_stage`):
  params and FLOPs (224 px, 1000 classes, 1 multiply-add = 1 FLOP) of every row of the
  paper's Tables 1-2 that reprolib, timm or torchvision can build, counted on PyTorch's
  ``meta`` device beside the printed numbers; ``sharing``: ResNet50-PE¹ / PE² params under
  every sharing rule and two classifier widths;
* role ``train`` (:func:`training_stage`), one stage per run of :func:`training_runs` and
  seed, tags ``run`` (the run's name), ``family`` (``vit`` / ``resnet``), ``kind`` (``pe``;
  ``twin``, the unshared twin; ``long``, ViT-PE again for ``vit_long_epochs``; ``narrow``, the
  twin narrowed to the PE model's parameter count), ``seed`` and ``model`` (the builder):
  DeiT recipe ``vit_train`` for the ViTs, torchvision recipe ``resnet_train`` for the
  ResNets; fit, measure, save in the compressed-model format.  A stage is named as its run,
  plus ``-s<seed>`` for the seeds of ``cfg.seeds`` other than ``cfg.seed``.

No stage reads another (a narrowed twin counts the PE model it is narrowed to on the meta
device itself), so every stage can run alone (``reprolib compute pe --stage NAME``).

Stages per profile (every profile starts with ``table1``, ``table2``, ``sharing``):

* ``smoke``: ``vit_pe_test``, ``vit_test_unshared``;
* ``cpu``: ``vit_pe_cifar``, ``vit_cifar_unshared``;
* ``evidence``: for each of the seeds 0, 1, 2 (names ``-s1``, ``-s2`` for the last two):
  ``vit_pe_cifar``, ``vit_cifar_unshared``, ``resnet50_pe_cifar-stages1234``,
  ``resnet50_cifar_unshared``, ``vit_cifar_unshared-narrow``, ``resnet50_cifar_unshared-narrow``;
* ``gpu``: ``vit_pe_small``, ``vit_small``, ``resnet50_pe-stages1234``,
  ``resnet50_pe-stages34``, ``resnet50``;
* ``paper``: ``vit_pe_small``, ``vit_small``, ``vit_pe_small-600ep`` (Table 1's ViT-PE²),
  ``resnet50_pe-stages1234``, ``resnet50_pe-stages34``, ``resnet50``.

Readers: :mod:`.report` (tables, figures, summary, :func:`reading`) reads the ``count``
stages and the ``train`` stages of ``seed=cfg.seed``; :mod:`.assess` (the evidence tables,
the claims, the evidence figure) the ``train`` stages of every seed of ``cfg.seeds``.

Multi-GPU: ``torchrun --nproc_per_node=8 -m reprolib compute pe --profile paper`` runs
:func:`run` in every process; each training stage trains under DistributedDataParallel (the
recipes' lr is scaled to the global batch), rank 0 alone writes records and models.
"""

from __future__ import annotations

from reprolib.core.pipeline import Pipeline, register_pipeline
from reprolib.experiments import evidence
from reprolib.experiments.pe.assess import PAPER_GAP, json_kwargs, seed_stages  # noqa: F401
from reprolib.experiments.pe import examples as _examples
from reprolib.experiments.pe import views as _views
from reprolib.experiments.pe.assess import evidence_claims as _evidence_claims
from reprolib.experiments.pe.assess import evidence_frame as _evidence_frame
from reprolib.experiments.pe.assess import evidence_tables as _evidence_tables
from reprolib.experiments.pe.assess import plot_evidence as _plot_evidence
from reprolib.experiments.pe.graph import (COUNT_TABLES, KIND_LABELS,  # noqa: F401
                                            PAPER_MODELS, RUN_KINDS, TABLE1_SOURCES,
                                            TABLE2_SOURCES, build, count_stage, count_table,
                                            family, model_counts, model_kwargs,
                                            narrowed_kwargs, pair_runs, resnet_sharing_table,
                                            run_kind, run_recipe, scaled_lr, train_config,
                                            train_model, training_runs, training_stage)
from reprolib.experiments.pe.report import (count_frame, place_labels,  # noqa: F401
                                            plot_accuracy_vs_params, stage_records,
                                            training_frame)
from reprolib.experiments.pe.report import figures as _figures
from reprolib.experiments.pe.report import reading as _reading
from reprolib.experiments.pe.report import summary as _summary
from reprolib.experiments.pe.report import tables as _tables

# What the paper states per recipe (``reprolib plan``): field -> (value, source).
_DEIT = {"dataset": ("imagenet", "§4"), "image_size": (224, "§4"),
         "epochs": (300, "§4, Table 1"),
         "global_batch": (1024, "DeiT (cited recipe)"), "optimizer": ("adamw", "§4"),
         "lr": (1e-3, "§4: lr_512 x batch / 512, DeiT lr_512 = 5e-4"),
         "schedule": ("cosine", "DeiT"), "warmup_epochs": (5.0, "DeiT"),
         "weight_decay": (0.05, "§4"), "label_smoothing": (0.1, "DeiT"),
         "mixup": (0.8, "§4 (names it), DeiT value"),
         "cutmix": (1.0, "§4 (names it), DeiT value"),
         "drop_path": (0.1, "§4 (stochastic depth), DeiT-S value"),
         "randaugment": ("rand-m9-mstd0.5-inc1", "DeiT"), "random_erasing": (0.25, "DeiT"),
         "repeated_aug": (3, "DeiT")}


class PE(Pipeline):
    """The PE paper's graph (module docstring) and what reads it back."""

    name = "pe"
    readme_figure = "acc_vs_params"
    readme_evidence_figure = "evidence"
    stated = {"vit_train": _DEIT,
              "vit_train@600": {**_DEIT, "epochs": (600, "Table 1, ViT-PE²")},
              "resnet_train": {"dataset": ("imagenet", "§4"), "image_size": (224, "§4"),
                               "optimizer": ("sgd", "§4"), "lr": (0.1, "§4"),
                               "weight_decay": (1e-4, "§4"), "schedule": ("cosine", "§4"),
                               "warmup_epochs": (5.0, "§4"),
                               "global_batch": (256, "torchvision reference (paper silent)"),
                               "epochs": (90, "torchvision reference (paper silent)")}}
    departures = {("resnet_train", "epochs"): "the paper does not state it; torchvision's 90"}

    def declare(self, cfg, g) -> None:
        """The three ``count`` stages, then every run of :func:`training_runs` for
        ``cfg.seed`` and then for each other seed of ``cfg.seeds`` (role ``train``)."""
        for table in COUNT_TABLES:
            g.add(count_stage(cfg, table), role="count", table=table)
        runs = training_runs(cfg)
        for seed in self.seeds(cfg):
            c = self.seeded(cfg, seed)
            suffix = evidence.seed_suffix(seed, cfg.seed)
            for r in runs:
                g.add(training_stage(c, r, suffix), role="train", run=r["name"],
                      family=family(r["model"]), kind=r["kind"], seed=seed, model=r["model"])

    def tables(self, cfg) -> dict:
        """``table1`` / ``table2`` (the paper's Tables 1-2: our counts beside the printed
        params, FLOPs, top-1), ``sharing`` (ResNet50-PE params by sharing rule and classifier
        width), ``training`` (PE vs unshared twin: params, FLOPs, epochs, top-1, time); with
        seeds also ``evidence``, ``evidence_runs`` and ``claims``."""
        return _tables(self, cfg)

    def figures(self, cfg) -> dict:
        """``acc_vs_params``: Tables 1-2 top-1 vs params (left), our PE / twin runs (right);
        with seeds also ``evidence``."""
        return _figures(self, cfg)

    def summary(self, cfg) -> str:
        """The README paragraph: the PE layers, the counted sizes (100- and 1000-class heads)
        beside the printed ones, which sharing rule reproduces them, and the trained pairs."""
        return _summary(self, cfg)

    def reading(self, cfg) -> str:
        """The notebook's reading of Tables 1-2 and the sharing table
        (:func:`reprolib.experiments.pe.report.reading`)."""
        return _reading(self, cfg)

    def evidence_frame(self, cfg):
        """One row per (seed, run) of the evidence seeds
        (:func:`reprolib.experiments.pe.assess.evidence_frame`)."""
        return _evidence_frame(self, cfg)

    def evidence_tables(self, cfg) -> dict:
        """``evidence``, ``evidence_runs`` and ``claims``
        (:func:`reprolib.experiments.pe.assess.evidence_tables`)."""
        return _evidence_tables(self, cfg)

    def evidence_claims(self, cfg):
        """Sharing beats shrinking; sharing costs little
        (:func:`reprolib.experiments.pe.assess.evidence_claims`)."""
        return _evidence_claims(self, cfg)

    def plot_evidence(self, cfg):
        """The evidence figure (:func:`reprolib.experiments.pe.assess.plot_evidence`)."""
        return _plot_evidence(self, cfg)

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


__all__ = ["PE", "PIPELINE", "stages", "run", "tables", "figures", "summary", "claims",
           "reading", "evidence_frame", "evidence_tables", "plot_evidence",
           # stages.py
           "TABLE1_SOURCES", "TABLE2_SOURCES", "PAPER_MODELS", "COUNT_TABLES", "KIND_LABELS",
           "RUN_KINDS", "run_kind", "build", "count_table", "resnet_sharing_table",
           "model_counts", "count_stage", "family", "train_config", "scaled_lr",
           "model_kwargs", "training_runs", "pair_runs", "narrowed_kwargs", "run_recipe",
           "train_model", "training_stage",
           # tables.py, claims.py
           "count_frame", "training_frame", "stage_records", "place_labels",
           "plot_accuracy_vs_params", "PAPER_GAP", "json_kwargs", "seed_stages"]

PIPELINE = register_pipeline(PE())
stages, run, tables, figures, summary, claims = PIPELINE.api()
reading = PIPELINE.reading
evidence_frame = PIPELINE.evidence_frame
evidence_tables = PIPELINE.evidence_tables
plot_evidence = PIPELINE.plot_evidence
