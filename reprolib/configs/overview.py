"""Config and profiles of the overview notebook (notebooks/overview.ipynb): one view over all
five papers (``reprolib.experiments.overview``).

Three parts: the cross-method chart reads the records the five papers' pipelines wrote at
``profiles`` (and the benchmark records ``results/bench/``, when there are any); the
conformance table counts every architecture-determined number the papers print (no
records, no training: built on PyTorch's meta device); the export stages build each
method's compressed model at ``scale``, export it to ONNX and through ``torch.export`` and
record the parity with PyTorch.
"""

from __future__ import annotations

from dataclasses import dataclass

from reprolib.configs import BaseConfig, check_choice, check_each, check_number, register_paper
from reprolib.configs.templates import TEMPLATES

#: The profiles whose records the chart may read.
PROFILES = ("smoke", "cpu", "evidence", "gpu", "paper")

#: What the export stages build: every method's compressed model, by case name (each case
#: is described by its paper's pipeline, ``Pipeline.export_cases``; this order is the export
#: table's and the overview chart's order of methods).
EXPORT_CASES = ("sidt", "vtp", "vtp_svd", "vtp_qr", "vtp_lu", "vit_pe", "resnet50_pe",
                "metaformer_nas", "vgg19_template", "resnet50_template", "googlenet_template",
                "mobilenet_template")
#: Model sizes of the export stages: the test variants, the CIFAR models the cpu profiles
#: train, or the papers' own models (Swin-T, ViT-PE-S, ResNet50-PE, MetaFormer-S12 at 224 px;
#: the code book's ViT and the full-width CIFAR CNNs at 32 px).
SCALES = ("tiny", "cifar", "paper")


@dataclass
class OverviewConfig(BaseConfig):
    profiles: tuple = ("smoke",)      # the papers' profiles whose records the chart shows (each
    #                                   point says its profile and device); absent ones are skipped
    export_cases: tuple = EXPORT_CASES  # compressed models to export (one stage each)
    scale: str = "tiny"               # their size: "tiny", "cifar" or "paper" (SCALES)
    prune_ratio: float = 0.4          # SiDT pruning ratio of the exported Swin (fraction removed)
    vtp_rate: float = 0.3             # VTP pruning rate of the exported ViT (the code book's 0.3)
    rank_ratio: float = 0.25          # decomposition rank / min(out, in) of the +SVD/QR/LU ViTs
    template: str = "uniform"         # filter distribution of the exported template CNNs
    template_width: float = 1.0       # their width multiplier
    opset: int = 18                   # ONNX opset of the exported files (>= 17)

    def check(self) -> None:
        super().check()
        check_each("profiles", self.profiles, lambda k, v: check_choice(k, v, PROFILES))
        check_each("export_cases", self.export_cases,
                   lambda k, v: check_choice(k, v, EXPORT_CASES), allow_empty=True)
        check_choice("scale", self.scale, SCALES)
        check_number("prune_ratio", self.prune_ratio, 0, 1, hi_open=True)
        check_number("vtp_rate", self.vtp_rate, 0, 1, hi_open=True)
        check_number("rank_ratio", self.rank_ratio, 0, 1, lo_open=True)
        check_choice("template", self.template, TEMPLATES)
        check_number("template_width", self.template_width, 0, lo_open=True)
        check_number("opset", self.opset, 17, integer=True)


register_paper(
    "overview", "One view over all five papers: cross-method chart, conformance table, export",
    OverviewConfig,
    presets={
        # the papers' smoke records (absent ones skipped); four quick test variants exported
        # (tests/unit/test_export.py exports every method's)
        "smoke": {"profiles": ("smoke",), "scale": "tiny", "template_width": 0.25,
                  "export_cases": ("vtp_svd", "vit_pe", "resnet50_pe", "mobilenet_template")},
        # the committed cpu records (+ the evidence profile once it has run); the papers'
        # own model sizes exported (Swin-T, ViT-PE-S, ResNet50-PE, MetaFormer-S12 at 224 px)
        "cpu": {"profiles": ("cpu", "evidence"), "scale": "paper"},
        "gpu": {"profiles": ("gpu", "evidence", "cpu"), "scale": "paper"},
        "paper": {"profiles": ("paper",), "scale": "paper"},
    },
    order=90,
)
