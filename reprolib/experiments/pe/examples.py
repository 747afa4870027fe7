"""PE's compressed-model examples, built without training: ViT-PE and ResNet50-PE (tied
``W`` / ``Wᵀ``, one kernel per stage) with seeded random weights.  The overview exports one of
each per scale (:func:`export_cases`); ``reprolib bench`` times each beside its dense parent
(:func:`bench_families`)."""

from __future__ import annotations

import torch

from reprolib.core.registry import create_model

#: The model each export scale builds: (builder, kwargs, input side) -- the test variants,
#: the CIFAR models the cpu profiles train, the paper's ViT-PE-S and ResNet50-PE¹ (ImageNet
#: classes, 224 px).
VIT_SCALES = {"tiny": ("vit_pe_test", {"num_classes": 10}, 32),
              "cifar": ("vit_pe_cifar", {"num_classes": 10}, 32),
              "paper": ("vit_pe_small", {"num_classes": 1000}, 224)}
RESNET_SCALES = {"tiny": ("resnet_pe_test", {"num_classes": 10}, 32),
                 "cifar": ("resnet50_pe_cifar", {"num_classes": 10}, 32),
                 "paper": ("resnet50_pe", {"num_classes": 1000, "pe_stages": [1, 2, 3, 4]}, 224)}


def _export(scales: dict):
    def build(scale: str = "tiny", seed: int = 0):
        """The PE model of ``scale`` with weights seeded by ``seed``; ``(model, input_size)``."""
        b, kw, side = scales[scale]
        torch.manual_seed(seed)
        return create_model(b, **kw), (3, side, side)

    return build


export_vit = _export(VIT_SCALES)
export_resnet = _export(RESNET_SCALES)


def export_cases() -> dict:
    """The overview's export cases ``vit_pe`` and ``resnet50_pe`` (no settings beyond the
    scale)."""
    return {"vit_pe": {"label": "ViT-PE", "settings": lambda cfg: {}, "build": export_vit},
            "resnet50_pe": {"label": "ResNet50-PE¹", "settings": lambda cfg: {},
                            "build": export_resnet}}


def bench_families(bc) -> list[dict]:
    """The ``pe`` families of the bench config ``bc``: one per dense model of ``pe_pairs``,
    the dense model first, then each PE model paired with it (``name:3,4`` = ``pe_stages``
    3 and 4), at ``pe_size`` px and ``pe_classes`` classes."""
    if "pe" not in bc.groups:
        return []
    by_dense: dict[str, list] = {}
    for dense, pe in bc.pe_pairs:
        by_dense.setdefault(dense, []).append(pe)
    out = []
    for dense, pes in by_dense.items():
        kw = {"num_classes": bc.pe_classes}
        cases = [{"label": "dense", "method": "dense", "model": dense, "kwargs": kw}]
        for pe in pes:
            name, _, stages = pe.partition(":")
            k = dict(kw, **({"pe_stages": [int(s) for s in stages.split(",")]} if stages else {}))
            cases.append({"label": pe, "method": "PE", "model": name, "kwargs": k})
        size = int(bc.pe_size)
        out.append({"name": f"pe-{dense}", "group": "pe", "input_size": [3, size, size],
                    "batch": int(bc.pe_batch), "train_batch": int(bc.pe_train_batch),
                    "cases": cases})
    return out
