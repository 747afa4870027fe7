"""VTP + matrix decomposition pipeline (Tianyi Sun, "Vision Transformer Pruning Via Matrix
Decomposition", ``../shared/papers/vtp_svd.md``) on the engine of
:mod:`reprolib.core.pipeline`.

Stages, in the paper's order, per patch size ``p`` of ``cfg.patch_sizes`` (each one cached
record; ``cfg.patch_overrides[p]`` may give a patch size its own model or epochs,
:func:`patch_cfg`), every profile (``smoke``, ``cpu``, ``evidence``, ``gpu``, ``paper``):

* ``dense-p{p}`` (role ``dense``, tags ``patch``, ``seed``): the code book's ViT with
  importance scores (all 1) trained from scratch (``pretrain``) then fine-tuned
  (``baseline``), no L1 (section 3.2.1); the dense baseline of Table 2;
* ``sparse-p{p}`` (role ``sparse``, reads dense): ``sparsity`` training with the L1 term of
  weight ``l1_strength`` on the scores (3.2.2);
* ``vtp-p{p}`` (role ``vtp``, reads dense and sparse): ``vtp.prune`` at ``prune_rate`` (a
  physically smaller ViT), then ``finetune`` without L1 (3.2.3);
* ``decomp-p{p}-{method}-r{ratio}-ft{epochs}`` (role ``decompose``, tags ``patch``,
  ``method``, ``ratio``, ``use="table2"``, ``seed``; reads vtp): every pruned linear layer
  factored by ``method`` at ``rank_ratio`` (``decompose.decompose_model``), then
  ``decompose_finetune``, for each of ``cfg.methods`` (Table 2);

and at ``cfg.sweep_patch`` (when it is one of ``patch_sizes``):

* the rank sweep: ``decomp-p{p}-{method}-r{ratio}-ft{epochs}`` for ``sweep_methods`` x
  ``sweep_ratios``, each fine-tuned with ``sweep_finetune`` (role ``decompose``,
  ``use="sweep"``); a sweep point equal to a Table 2 point is one stage found under both;
* ``analysis-p{p}`` (role ``analysis``, tag ``patch``; reads vtp): reconstruction error vs
  rank and section 2.3's least-squares merits on the pruned layers;
* ``identity-p{p}`` (role ``identity``, tag ``patch``; reads vtp): full-rank factors
  reproduce every pruned layer.

The ``evidence`` profile (``cfg.seeds``) adds, at ``sweep_patch``, per seed of ``cfg.seeds``
other than ``cfg.seed`` its own chain ``dense-p{p}-s{seed}``, ``sparse-p{p}-s{seed}``,
``vtp-p{p}-s{seed}`` and rank sweep ``decomp-p{p}-{method}-r{ratio}-ft{epochs}-s{seed}``
(same roles, tag ``seed``; ``cfg.seed`` reuses the stages above), and for every seed the
control ``vtpft-p{p}-ft{epochs}[-s{seed}]`` (role ``control``, tags ``patch``, ``seed``;
reads that seed's vtp): the VTP model fine-tuned with ``sweep_finetune``, not decomposed;
and the equal-FLOP controls ``{control}-p{p}-r{ratio}-ft{epochs}[-s{seed}]`` (role
``flops_control``, tags ``patch``, ``seed``, ``ratio``, ``control``; reads that seed's SVD
point at the ratio and its sparse (``vtp``) or vtp (Torch-Pruning) stage): the ViT pruned
further to each decomposed model's FLOPs by each of ``cfg.flops_controls``, fine-tuned alike.

Per profile: ``smoke`` patch 4 and 8, the sweep (6 methods x 2 ratios), analysis and
identity at patch 4 (26 stages); ``cpu``, ``gpu`` and ``paper`` patch 2, 4 and 8, the sweep
(6 methods x 3 ratios) at patch 4 (38 stages; ``cpu`` gives patch 2 its own model and
epochs); ``evidence`` patch 8 only, the sweep (SVD / QR / LU x 3 ratios) at patch 8, whose
rank-0.25 points are the Table 2 stages, and seeds 0, 1, 2 (41 stages).

Readers find their stages with ``g.get("vtp", patch=p, seed=cfg.seed)``,
``g.select("decompose", use="sweep", patch=p, seed=s)``, ``g.find("analysis")`` on
``PIPELINE.graph(cfg)``.  Models pass from stage to stage through ``stage.save_model`` /
``upstream.model()``.  Stage builders: :mod:`.graph`; tables, figures and summary:
:mod:`.report`; the evidence tables, claims and figure: :mod:`.assess`.
"""

from __future__ import annotations

from reprolib.core.pipeline import Pipeline, register_pipeline
from reprolib.errors import ReprolibError
from reprolib.experiments import evidence
from reprolib.experiments.vtp_svd import examples as _examples
from reprolib.experiments.vtp_svd import views as _views
from reprolib.experiments.vtp_svd import assess as _claims
from reprolib.experiments.vtp_svd import report as _tables
from reprolib.experiments.vtp_svd.graph import (analysis_stage, decomp_stage, dense_stage,
                                                 flops_control_stage, identity_stage,
                                                 patch_cfg, sparse_stage, vtp_stage,
                                                 vtp_to_flops)
from reprolib.experiments.vtp_svd.report import (METHOD_STYLES, codebook_params,  # noqa: F401
                                                 coinciding, phase_note)

PAPER = "vtp_svd"

_VTP = {"dataset": ("cifar10", "§3.2"), "image_size": (32, "§3.1 CIFAR-10"),
        "global_batch": (64, "§3.2.1"), "optimizer": ("adamw", "§3.2.1 (DeiT)"),
        "schedule": ("cosine", "§3.2.1"),
        "model": ("12 layers, dim 768, 10 heads", "§3.2.1 text (released VTP model: 6 / 512 / 8)")}


class VtpSvd(Pipeline):
    """The VTP + decomposition pipeline (module docstring)."""

    name = PAPER
    readme_figure = "acc_vs_params"
    readme_evidence_figure = "evidence"
    stated = {"pretrain": {**_VTP},
              "baseline": {**_VTP, "epochs": (30, "§3.2.1"), "lr": (6.25e-7, "§3.2.1")},
              "sparsity": {**_VTP, "epochs": (100, "§3.2.2"), "lr": (6.25e-6, "§3.2.2"),
                           "l1": (1e-4, "§3.2.2")},
              "finetune": {**_VTP, "epochs": (100, "§3.2.2: as training"),
                           "lr": (6.25e-6, "§3.2.2: as training")},
              "decompose_finetune": {**_VTP, "epochs": (100, "§3.2: as training"),
                                     "lr": (6.25e-6, "§3.2: as training")}}
    departures = {("*", "model"): ("the package follows the released 6-layer / 512 / 8-head "
                                   "model the paper starts from; the text's geometry is "
                                   "-p model=vit_cifar_text")}

    def declare(self, cfg, g) -> None:
        """Per patch size its chain and Table 2's decompositions, then at ``sweep_patch``
        the rank sweep, the analysis and the identity check, then the evidence seeds."""
        for p in cfg.patch_sizes:
            pc = patch_cfg(cfg, p)
            v = self._chain(pc, p, g, cfg.seed)
            for m in cfg.methods:
                g.add(decomp_stage(pc, p, v, m, cfg.rank_ratio, "decompose_finetune"),
                      role="decompose", patch=p, method=m, ratio=float(cfg.rank_ratio),
                      use="table2", seed=cfg.seed)
        if cfg.sweep_patch in cfg.patch_sizes:
            p = cfg.sweep_patch
            pc, v = patch_cfg(cfg, p), g.get("vtp", patch=p, seed=cfg.seed)
            self._sweep(cfg, pc, p, v, g, cfg.seed)
            g.add(analysis_stage(pc, p, v), role="analysis", patch=p)
            g.add(identity_stage(pc, p, v), role="identity", patch=p)
        if cfg.seeds:
            self._evidence(cfg, g)

    @staticmethod
    def _chain(pc, p: int, g, seed: int, sfx: str = ""):
        """``dense`` -> ``sparse`` -> ``vtp`` of patch ``p`` at ``seed``; the vtp stage."""
        d = g.add(dense_stage(pc, p, sfx), role="dense", patch=p, seed=seed)
        s = g.add(sparse_stage(pc, p, d, sfx), role="sparse", patch=p, seed=seed)
        return g.add(vtp_stage(pc, p, d, s, sfx), role="vtp", patch=p, seed=seed)

    @staticmethod
    def _sweep(cfg, pc, p: int, v, g, seed: int, sfx: str = "") -> None:
        for m in cfg.sweep_methods:
            for r in cfg.sweep_ratios:
                g.add(decomp_stage(pc, p, v, m, r, "sweep_finetune", sfx), role="decompose",
                      patch=p, method=m, ratio=float(r), use="sweep", seed=seed)

    def _evidence(self, cfg, g) -> None:
        """Per seed of ``cfg.seeds``, at ``cfg.sweep_patch``: its own dense -> L1 -> VTP
        chain and rank sweep (``cfg.seed`` reuses the stages above) and the control: the
        VTP model fine-tuned with ``sweep_finetune``, not decomposed."""
        p = cfg.sweep_patch
        if p not in cfg.patch_sizes:
            raise ReprolibError(f"the evidence stages run at sweep_patch={p}, which is not one "
                                f"of patch_sizes={tuple(cfg.patch_sizes)}")
        for seed in _claims.evidence_seeds(cfg):
            pc = patch_cfg(self.seeded(cfg, seed), p)
            sfx = evidence.seed_suffix(seed, cfg.seed)
            if seed == cfg.seed:
                v = g.get("vtp", patch=p, seed=seed)
            else:
                v = self._chain(pc, p, g, seed, sfx)
                self._sweep(cfg, pc, p, v, g, seed, sfx)
            g.add(decomp_stage(pc, p, v, "none", 1.0, "sweep_finetune", sfx), role="control",
                  patch=p, seed=seed)
            # pruning further to each decomposed model's FLOPs (SVD's: QR / LU have its shapes)
            target = "svd" if "svd" in cfg.sweep_methods else next(iter(cfg.sweep_methods), None)
            sparse = g.get("sparse", patch=p, seed=seed)
            for r in (cfg.sweep_ratios if target else ()):
                d = g.get("decompose", use="sweep", patch=p, seed=seed, method=target,
                          ratio=float(r))
                for k in cfg.flops_controls:
                    g.add(flops_control_stage(pc, p, sparse, v, d, k, sfx),
                          role="flops_control", patch=p, seed=seed, ratio=float(r), control=k)

    # ---- what the records say
    def tables(self, cfg) -> dict:
        """:func:`.report.tables`, and with ``cfg.seeds`` the evidence tables
        (:func:`.assess.evidence_tables`: ``evidence``, ``evidence_runs``, ``claims``)."""
        out = _tables.tables(self, cfg)
        if cfg.seeds:
            out.update(_claims.evidence_tables(self, cfg))
        return out

    def figures(self, cfg) -> dict:
        """:func:`.report.figures`, and with ``cfg.seeds`` ``evidence``
        (:func:`.assess.plot_evidence`)."""
        out = _tables.figures(self, cfg)
        if cfg.seeds and out:
            out["evidence"] = _claims.plot_evidence(self, cfg)
        return out

    def summary(self, cfg) -> str:
        """:func:`.report.summary`: the README paragraph."""
        return _tables.summary(self, cfg)

    def evidence_claims(self, cfg):
        """:func:`.assess.claims`."""
        return _claims.claims(self, cfg)

    def evidence_frame(self, cfg):
        """:func:`.assess.evidence_frame`: one row per (seed, method, rank ratio) + control."""
        return _claims.evidence_frame(self, cfg)

    def evidence_tables(self, cfg) -> dict:
        """:func:`.assess.evidence_tables`."""
        return _claims.evidence_tables(self, cfg)

    def plot_evidence(self, cfg):
        """:func:`.assess.plot_evidence`."""
        return _claims.plot_evidence(self, cfg)

    # ---- what the overview and the bench read (.views, .examples)
    overview = _views.OVERVIEW

    def conformance(self) -> list[dict]:
        """The overview's conformance rows (:func:`.views.conformance_rows`)."""
        return _views.conformance_rows()

    def points(self, recs: dict, profile: str) -> list[dict]:
        """The overview chart's points (:func:`.views.points`)."""
        return _views.points(self, recs, profile)

    def export_cases(self) -> dict:
        """The compressed models the overview exports (:func:`.examples.export_cases`)."""
        return _examples.export_cases()

    def bench_families(self, bench_cfg) -> list[dict]:
        """The families ``reprolib bench`` times (:func:`.examples.bench_families`)."""
        return _examples.bench_families(bench_cfg)


PIPELINE = register_pipeline(VtpSvd())
stages, run, tables, figures, summary, claims = PIPELINE.api()
evidence_frame, evidence_tables, plot_evidence = (PIPELINE.evidence_frame,
                                                  PIPELINE.evidence_tables,
                                                  PIPELINE.plot_evidence)

__all__ = ["VtpSvd", "PIPELINE", "stages", "run", "tables", "figures", "summary", "claims",
           "evidence_frame", "evidence_tables", "plot_evidence", "patch_cfg", "phase_note",
           "codebook_params", "coinciding", "METHOD_STYLES", "flops_control_stage", "vtp_to_flops"]
