"""SiDT on detection (Xue et al., ../shared/papers/sidt.md, section 4, Table II): a Cascade
Mask R-CNN whose Swin backbone is searched and pruned.

Stages (each one cached record under ``results/sidt_detection/<profile>/``), the same at
every profile, by role and tags in the graph (:meth:`SiDTDetection.declare`; readers find
them with ``graph.get`` / ``select``):

* ``train`` (role ``train``): ``cfg.model`` (``reprolib.models.detection``) trained with the
  ``train`` recipe (``paper``: the Swin-T baseline from ImageNet-1k Swin-T weights, 3x), the
  detector the search starts from; its box / mask AP before training (``untrained``) is the
  chance level.
* ``search`` (role ``search``): the trained detector with SiDT scores on its backbone
  (``reprolib.methods.sidt.attach_scores``), trained with the ``search`` recipe and
  ``l1_strength * sum |alpha|`` added to the detection loss.  Reads the train stage's model.
* ``finetune-p00``, ``finetune-p20``, ``finetune-p40`` (role ``finetune``, tag ``ratio``): the
  searched detector with its backbone pruned (``sidt.prune(detector, ratio, scope)``:
  physically smaller), evaluated, fine-tuned with the ``finetune`` recipe (warm start, no
  L1), evaluated and counted; ``finetune-p00`` also records how far the ratio-0 detector's
  detections are from the searched detector's (the identity check).  Reads the search's
  model.
* ``reference`` (role ``reference``): Table II's detector (``cfg.reference_model``,
  ``cfg.reference_classes``: Cascade Mask R-CNN Swin-T, 81 classes) with its backbone pruned
  at every ratio uniformly and with the per-stage kept fractions our search learned:
  parameters (total and backbone) and FLOPs at ``cfg.flops_size`` (1280 x 800) by the
  baseline's protocol (``CascadeMaskRCNN.flops_probe``: 1000 RoIs through the box heads, 100
  through the mask heads), counted on the meta device.  Reads every fine-tune's metrics.

Training runs on ``reprolib.core.train.fit`` with the detector's own losses (``criterion``)
and COCO AP as the per-epoch test metric (``evaluator``: ``reprolib.data.coco.evaluate_coco``);
``reprolib compute sidt_detection`` under ``torchrun`` runs the same stages on several GPUs.
The classification part of the paper (Table I, section 3) is the paper ``sidt``.
"""

from __future__ import annotations

from reprolib.core.pipeline import Pipeline, register_pipeline, select_stages
from reprolib.core.registry import list_models
from reprolib.data.coco import coco_root
from reprolib.errors import ReprolibError
from reprolib.experiments.sidt_detection.graph import (AP_KEYS, PAPER, _finetune_stage,  # noqa: F401
                                                       _ratios, _reference_stage, _search_stage,
                                                       _train_stage, backbone_params,
                                                       detection_loss)
from reprolib.experiments.sidt_detection.report import _figures, _summary, _tables

# --------------------------------------------------------------------------- the pipeline


class SiDTDetection(Pipeline):
    """SiDT's detection graph (module docstring): roles ``train``, ``search``, ``finetune``
    (tag ``ratio``), ``reference``."""

    name = PAPER
    readme_figure = "tradeoff"

    def declare(self, cfg, g) -> None:
        """``train``, ``search``, ``finetune-p00`` and one ``finetune-pNN`` per ratio,
        ``reference``.  A model that is not a registered detector is an error here, before
        any work."""
        detectors = list_models("cascade_mask_rcnn_*")
        for key in ("model", "reference_model"):
            if getattr(cfg, key) not in detectors:
                raise ReprolibError(f"{key}={getattr(cfg, key)!r} is not a detector; valid "
                                    f"detectors: {', '.join(detectors)}")
        train = g.add(_train_stage(cfg), role="train")
        search = g.add(_search_stage(cfg, train), role="search")
        tunes = [g.add(_finetune_stage(cfg, r, search), role="finetune", ratio=r)
                 for r in _ratios(cfg)]
        g.add(_reference_stage(cfg, tunes), role="reference")

    def run(self, cfg, force: bool = False, only=None) -> dict[str, dict]:
        """Every stage (or those named in ``only``); returns ``{stage name: record}``.  The
        data set's folder is checked first when a stage will run (``coco``: COCO's layout
        under ``data_root``, one clear error naming what is missing; ``coco_shapes``:
        generated on first use)."""
        g = self.graph(cfg)
        st = g.stages if only is None else select_stages(g, only)
        if force or not all(s.done for s in st):
            coco_root(cfg.dataset, cfg.data_root)
        return super().run(cfg, force, only)

    def data_label(self, cfg) -> str:
        """How captions name the data the AP is measured on."""
        return ("COCO val2017" if cfg.dataset == "coco" else
                "coco_shapes (generated shapes, not COCO)")

    tables = _tables          # ``table2``, ``runs``
    figures = _figures        # ``tradeoff``
    summary = _summary        # the README paragraph


PIPELINE = register_pipeline(SiDTDetection())
stages, run, tables, figures, summary, claims = PIPELINE.api()
