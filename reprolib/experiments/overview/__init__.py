"""One view over every paper: a cross-method chart, a conformance table, and every compressed
model exported to ONNX.  The overview knows no paper: it walks the papers' pipelines
(``reprolib.experiments.pipelines()``) and asks each for what it has to show (a pipeline
without one of these methods contributes nothing to that part):

* **Cross-method chart** (:func:`points`, figure ``tradeoff``): ``Pipeline.points(recs,
  profile)`` turns a paper's records at each of ``cfg.profiles`` (read through its
  ``stages(cfg)``, so only the stages of the current configuration count; records of several
  seeds of one condition, names ending in ``-s<k>`` / ``-seed<k>``, averaged:
  :func:`by_condition`) into points -- a compressed model's accuracy minus that of its own
  dense parent, against parameters, FLOPs and measured latency relative to the parent
  (:func:`reprolib.experiments.overview.rows.pair`); one colour per method, one marker per
  profile.  Below, ``Pipeline.reported_points()``: the same axes at the points the papers
  themselves report.  Latency comes from the record itself, or from a benchmark record when
  one names the same compressed model: ``results/bench/<profile>/*.json`` whose metrics hold
  ``paper``, ``stage`` (the paper's stage name, e.g. ``finetune-p40``), ``latency_ratio``
  (compressed / dense, measured), ``device`` and ``batch_size``.  How a method shows (label,
  colour, where it reports its sizes): its pipeline's ``overview`` attribute
  (:mod:`.report`).
* **Conformance** (:func:`conformance`): ``Pipeline.conformance()`` of every paper -- each
  architecture-determined number it prints, counted from code (on PyTorch's meta device: no
  memory, no weights) beside the printed value (:func:`reprolib.experiments.overview.rows.row`)
  -- with the printed precision as tolerance and a verdict.
* **Export** (stages ``export-<case>``): ``Pipeline.export_cases()`` -- each method's
  compressed model, built at ``cfg.scale`` (seeded random weights and scores; BatchNorm
  statistics calibrated on random images so that outputs have a trained model's scale),
  written with :func:`reprolib.export.to_onnx`, run under ONNX Runtime and through
  ``torch.export``; the record holds the differences to PyTorch and whether tied weights
  stayed one initializer.

The graph (:meth:`Overview.declare`): one stage ``export-<case>`` (role ``export``, tags
``case`` and ``method``, the paper whose case it is) per entry of ``cfg.export_cases`` --
every case of ``reprolib.configs.overview.EXPORT_CASES`` at ``cpu`` / ``gpu`` / ``paper``
(scale ``paper``), four test variants at ``smoke`` (scale ``tiny``).  No stage reads another;
the chart and the conformance table need no stage (they read the papers' records and the
code).  Stage builders: :mod:`.graph`; tables, figure, summary: :mod:`.report`.
"""

from __future__ import annotations

from reprolib.core.pipeline import Pipeline, register_pipeline
from reprolib.experiments.overview import graph as _graph
from reprolib.experiments.overview import report as _report
from reprolib.experiments.overview.graph import build_case, export_cases, export_stage
from reprolib.experiments.overview.report import (CONFORMANCE_COLUMNS, MARKERS, VERDICTS,
                                                  bench_records, by_condition, conformance,
                                                  conformance_counts, export_frame,
                                                  method_labels, paper_points, paper_records,
                                                  points, shown, style, verdict)
from reprolib.experiments.overview.rows import POINT_COLUMNS, meta_model, pair, row

PAPER = "overview"
README_FIGURE = "tradeoff"


class Overview(Pipeline):
    """The overview's graph (module docstring): role ``export``, tags ``case``, ``method``."""

    name = PAPER
    readme_figure = README_FIGURE

    def declare(self, cfg, g) -> None:
        """One ``export-<case>`` stage per entry of ``cfg.export_cases``
        (:func:`.graph.declare`)."""
        _graph.declare(cfg, g)

    def tables(self, cfg) -> dict:
        """``conformance``, ``conformance_counts``, ``export``, ``points`` and
        ``paper_points`` (:func:`.report.tables`)."""
        return _report.tables(cfg)

    def figures(self, cfg) -> dict:
        """``tradeoff`` (:func:`.report.figures`)."""
        return _report.figures(cfg)

    def summary(self, cfg) -> str:
        """The README paragraph (:func:`.report.summary`)."""
        return _report.summary(cfg)


PIPELINE = register_pipeline(Overview())
stages, run, tables, figures, summary, claims = PIPELINE.api()


__all__ = ["Overview", "PIPELINE", "PAPER", "README_FIGURE", "stages", "run", "tables",
           "figures", "summary", "claims", "conformance", "conformance_counts", "points",
           "paper_points", "export_frame", "bench_records", "by_condition", "paper_records",
           "verdict", "build_case", "export_cases", "export_stage", "method_labels", "shown",
           "style", "MARKERS", "VERDICTS", "CONFORMANCE_COLUMNS",
           "POINT_COLUMNS", "meta_model", "pair", "row"]
