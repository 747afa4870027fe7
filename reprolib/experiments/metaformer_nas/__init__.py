"""MetaFormer-NAS pipeline (Zhang & Liu, "基于 MetaFormer 的高效神经架构搜索"): the toy-reward
REINFORCE check, the search for each DAG size N (Table 1), and the from-scratch retraining of
the hand-designed and the searched token mixers (Table 2), a graph of stages on the engine of
:mod:`reprolib.core.pipeline`.

Stages of every profile without seeds (``smoke``, ``cpu``, ``gpu``, ``paper``), in run order
(``stages(cfg)``), with the role and tags readers find them by (``g.select(role, **tags)``):

    toy-nas<N>          role "toy", n_nodes: REINFORCE on a toy reward whose best cell is
                        known (per N in ``node_counts``; trains only the controller)
    search-nas<N>       role "search", n_nodes, seed: the search
                        (``reprolib.methods.metaformer_nas.search``), per N: shared weights on
                        the training split, rewards on the held-out validation split; its
                        per-round checkpoint ``search.pt`` and the derived ``arch.json`` live
                        in the stage's ckpt folder
    retrain-<mixer>     role "retrain", mixer=<mixer>, origin "designed", searched False,
                        seed: ``cfg.model`` with a hand-designed mixer (per ``baselines``:
                        pooling, mlp, attention), trained from scratch
    retrain-nas<N>      role "retrain", mixer "nas<N>", n_nodes, origin "search", searched
                        True, seed: ``cfg.model`` with the architecture derived by
                        ``search-nas<N>`` (after it: keyed by its run id, the cell read from
                        its metrics), trained from scratch

Each retrained model is saved in the one compressed-model format (``stage.model()``): the
builder and ``mixer=<the architecture's JSON>`` rebuild a searched model exactly.

With ``cfg.seeds`` (the ``evidence`` profile) the toy check runs once (``cfg.seed``) and
every stage after it once per seed of ``cfg.seeds``, named ``<stage>-s<seed>`` (tag ``seed``),
plus the random-search control with the same budget (also without seeds when
``random_samples`` > 0, then unsuffixed):

    random-nas<N>-s<seed>       role "random", n_nodes, seed: K = ``random_samples`` cells
                                drawn uniformly, each trained with the ``proxy`` recipe on the
                                search's training split and scored on its validation split;
                                the best is kept
    retrain-random<N>-s<seed>   role "retrain", mixer "random<N>", n_nodes, origin "random",
                                searched False, seed: that cell (after ``random-nas<N>-s<seed>``,
                                read from its metrics), retrained like the searched one

Each seed's stages come together (search, random search, baselines, the chosen cells), and
``claims(cfg)`` tests the paper's claim (searched cell >= pooling / spatial MLP / MHSA) and
the control's (>= random search), and whether the controller learned at all (policy entropy
against the uniform policy's, sampled cells' reward against uniformly drawn cells').

The package: :mod:`.graph` (what each stage runs, its key and declarations), :mod:`.report`
(Tables 1 and 2, figures and summary of a run without seeds), :mod:`.assess` (the evidence
tables, claims, figures and paragraph).
"""

from __future__ import annotations

from reprolib.core.pipeline import Pipeline, register_pipeline
from reprolib.experiments.metaformer_nas.assess import (  # noqa: F401
    ENTROPY_FRACTION, TAIL_ROUNDS, by_seed, controller_stats, controller_table, evidence_caption,
    evidence_claims, evidence_figures, evidence_summary, evidence_table1, evidence_table2,
    mixer_accuracies, plot_evidence, plot_search_seeds)
from reprolib.experiments.metaformer_nas.graph import (  # noqa: F401
    FIG5_ARCH, POOLFORMER_LAYER_SCALE, model_spec, nas_config,
    random_stage, retrain_cell_stage, retrain_stage, run_random, run_retrain, run_search,
    run_toy, search_recipe, search_run_config, search_stage, toy_stage, toy_target)
from reprolib.experiments.metaformer_nas.report import (  # noqa: F401
    PAPER, draw_architecture, plot_search, plot_toy, retrains, searches, table1, table2,
    toy_figure, toys)
from reprolib.experiments.metaformer_nas import examples as _examples
from reprolib.experiments.metaformer_nas import views as _views
from reprolib.experiments.metaformer_nas import assess as _claims
from reprolib.experiments.metaformer_nas import report as _tables

README_FIGURE = "search_curves"
#: The evidence profile's figure in the README: test accuracy of every mixer, mean ± std.
README_EVIDENCE_FIGURE = "evidence"

_NAS_RETRAIN = {"dataset": ("flowers102", "§4"), "image_size": (224, "§4"),
                "epochs": (600, "§4.2"), "optimizer": ("adamw", "§4.2"), "lr": (1e-3, "§4.2"),
                "weight_decay": (1e-4, "§4.2"), "select_every": (10, "§4.2: saved every 10 "
                                                                "epochs, best on val tested")}


class MetaFormerNAS(Pipeline):
    name = PAPER
    readme_figure = README_FIGURE
    readme_evidence_figure = README_EVIDENCE_FIGURE
    stated = {"search": {"dataset": ("flowers102", "§4"), "image_size": (224, "§4"),
                         "epochs": (100, "§4.1: 100 rounds x 1 epoch"),
                         "global_batch": (128, "§4.1"), "optimizer": ("adamw", "§4.1"),
                         "lr": (1e-3, "§4.1"), "weight_decay": (1e-4, "§4.1")},
              "retrain": _NAS_RETRAIN}
    departures = {("search", "epochs"): "rounds x shared_epochs"}

    def declare(self, cfg, g) -> None:
        """The toy check per N, then (per seed of ``cfg.seeds``, or once) the searches, the
        random-search controls, the designed mixers and the chosen cells retrained."""
        for n in cfg.node_counts:
            g.add(toy_stage(cfg, n), role="toy", n_nodes=n)
        if cfg.seeds:
            for s in cfg.seeds:          # cfg.seeds as given: the order of the records' stages
                self._declare_seed(self.seeded(cfg, s), g)
        else:
            self._declare_seed(cfg, g)

    def _declare_seed(self, cfg, g) -> None:
        """The stages of one seed: search, random search, baselines, the chosen cells."""
        seed = cfg.seed
        found = [(n, g.add(search_stage(cfg, n), role="search", n_nodes=n, seed=seed))
                 for n in cfg.node_counts]
        drawn = ([(n, g.add(random_stage(cfg, n), role="random", n_nodes=n, seed=seed))
                  for n in cfg.node_counts] if cfg.random_samples else [])
        for b in cfg.baselines:
            g.add(retrain_stage(cfg, b), role="retrain", mixer=b, origin="designed",
                  searched=False, seed=seed)
        for n, st in found:
            g.add(retrain_cell_stage(cfg, st, n, "nas"), role="retrain", mixer=f"nas{n}",
                  n_nodes=n, origin="search", searched=True, seed=seed)
        for n, st in drawn:
            g.add(retrain_cell_stage(cfg, st, n, "random"), role="retrain",
                  mixer=f"random{n}", n_nodes=n, origin="random", searched=False, seed=seed)

    def tables(self, cfg) -> dict:
        """``table1`` (search time, space size) and ``table2`` (retrained mixers); with
        ``cfg.seeds`` both as mean ± std over the seeds, plus ``controller`` (entropy and
        reward against the uniform policy's) and ``claims``."""
        g = self.graph(cfg)
        if cfg.seeds:
            return {"table1": evidence_table1(g), "table2": evidence_table2(g),
                    "controller": controller_table(g), "claims": self.claims(cfg)}
        return {"table1": table1(g), "table2": table2(g)}

    def figures(self, cfg) -> dict:
        """``search_curves`` (reward and entropy per round), ``searched_cells`` (the derived
        DAGs), ``toy_reinforce`` (the toy-reward check), ``table2_acc_params``; with
        ``cfg.seeds`` the evidence figures instead (:func:`.assess.evidence_figures`)."""
        g = self.graph(cfg)
        return evidence_figures(g) if cfg.seeds else _tables.figures(g)

    def summary(self, cfg) -> str:
        """The MetaFormer-NAS paragraph (notebook and README), every number from the records
        (:func:`.report.summary`; with ``cfg.seeds``: :func:`.assess.evidence_summary`)."""
        g = self.graph(cfg)
        if cfg.seeds:
            return evidence_summary(g, self.claims(cfg))
        return _tables.summary(g)

    def evidence_claims(self, cfg):
        """The claims of an evidence run (:func:`.assess.evidence_claims`)."""
        return _claims.evidence_claims(self.graph(cfg))

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


PIPELINE = register_pipeline(MetaFormerNAS())
stages, run, tables, figures, summary, claims = PIPELINE.api()
