"""The filter templates' compressed-model examples: each template CNN with one of the
redistributed filter distributions, seeded random weights.  The overview exports one per
model and scale (:func:`export_cases`); ``reprolib bench`` times every template beside the
base distribution (:func:`bench_families`)."""

from __future__ import annotations

import torch

from reprolib.configs.templates import TEMPLATES
from reprolib.core.registry import create_model

#: The builder each export scale uses, ``{m}`` the model (vgg19, resnet50, googlenet,
#: mobilenet): the tiny test variants, else the full-width CIFAR CNNs (32 px).
SCALES = {"tiny": "{m}_cifar_tiny", "cifar": "{m}_cifar", "paper": "{m}_cifar"}
#: The export cases: ``<model>_template`` and its label.
EXPORT_MODELS = {"vgg19": "VGG-19 template", "resnet50": "ResNet-50 template",
                 "googlenet": "Inception template", "mobilenet": "MobileNet template"}


def export_model(model: str, scale: str = "tiny", seed: int = 0, template: str = "uniform",
                 template_width: float = 1.0):
    """``model``'s CIFAR CNN at ``scale`` (:data:`SCALES`) with ``template``'s filter
    distribution at width ``template_width``, 10 classes, weights seeded by ``seed``;
    ``(model, input_size)``."""
    torch.manual_seed(seed)
    net = create_model(SCALES[scale].format(m=model), num_classes=10, template=template,
                       width=template_width)
    return net, (3, 32, 32)


def _case(model: str, label: str) -> dict:
    def build(scale: str = "tiny", seed: int = 0, template: str = "uniform",
              template_width: float = 1.0):
        return export_model(model, scale, seed, template, template_width)

    return {"label": label, "build": build,
            "settings": lambda cfg: {"template": cfg.template,
                                     "template_width": cfg.template_width}}


def export_cases() -> dict:
    """The overview's export cases ``<model>_template`` (``cfg.template`` at
    ``cfg.template_width``)."""
    return {f"{m}_template": _case(m, label) for m, label in EXPORT_MODELS.items()}


def bench_families(bc) -> list[dict]:
    """The ``templates`` families of the bench config ``bc``: per model of
    ``templates_models`` at width ``templates_width``, the base distribution first (the
    dense parent), then every other template."""
    if "templates" not in bc.groups:
        return []
    out = []
    for model in bc.templates_models:
        cases = [{"label": t if t != "base" else "dense",
                  "method": "dense" if t == "base" else "templates", "model": model,
                  "kwargs": {"template": t, "width": float(bc.templates_width)}}
                 for t in TEMPLATES]
        out.append({"name": f"templates-{model}", "group": "templates",
                    "input_size": [3, 32, 32], "batch": int(bc.templates_batch),
                    "train_batch": int(bc.templates_train_batch), "cases": cases})
    return out
