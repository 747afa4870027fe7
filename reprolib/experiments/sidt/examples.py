"""SiDT's compressed-model examples, built without training: a Swin whose score vectors are
seeded random numbers, pruned by :func:`reprolib.methods.sidt.prune` (a pruned model's size
and speed depend on its widths only).  The overview exports one per scale
(:func:`export_cases`); ``reprolib bench`` times a family of them beside the dense Swin
(:func:`bench_families`)."""

from __future__ import annotations

import torch

from reprolib.core.registry import create_model
from reprolib.methods import sidt

#: The Swin each export scale builds: (builder, kwargs, input side) -- the test variant, the
#: CIFAR Swin the cpu profiles train, the paper's Swin-T (100 classes, 224 px).
SCALES = {"tiny": ("swin_tiny_test", {"num_classes": 10, "img_size": 32}, 32),
          "cifar": ("swin_cifar", {"num_classes": 10, "img_size": 32}, 32),
          "paper": ("swin_t", {"num_classes": 100, "img_size": 224}, 224)}


def random_scores(model, seed: int, floor: float = 0.0):
    """``model`` (a Swin) with score vectors attached (:func:`reprolib.methods.sidt.
    attach_scores`) holding seeded uniform random numbers plus ``floor``; returns it."""
    model = sidt.attach_scores(model)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for a in sidt.scores(model).values():
            a.copy_(torch.rand(a.shape, generator=g) + floor)
    return model


def pruned(model, ratio: float, *, seed: int = 0, floor: float = 0.0, scope: str = "global",
           round_to: int = 1):
    """``model`` with random scores (:func:`random_scores`), pruned at ``ratio`` by
    ``scope`` ranking with widths rounded to ``round_to``: a new, smaller Swin."""
    return sidt.prune(random_scores(model, seed, floor), ratio, scope, round_to=round_to)


def export_model(scale: str = "tiny", seed: int = 0, prune_ratio: float = 0.4):
    """The Swin of ``scale`` (:data:`SCALES`, weights seeded by ``seed``) pruned at
    ``prune_ratio``; returns ``(model, input_size)``."""
    b, kw, side = SCALES[scale]
    torch.manual_seed(seed)
    return pruned(create_model(b, **kw), prune_ratio, seed=seed, floor=0.05), (3, side, side)


def export_cases() -> dict:
    """The overview's export case ``sidt``: its label, the settings its model depends on
    (they enter the export stage's key) and its builder."""
    return {"sidt": {"label": "SiDT pruned Swin",
                     "settings": lambda cfg: {"prune_ratio": cfg.prune_ratio},
                     "build": export_model}}


# --------------------------------------------------------------------------- the bench


def bench_model(case: dict, seed: int = 0):
    """The model of one bench case: ``case["model"]`` created (seeded), pruned when the case
    is a SiDT one (``ratio``, ``scope``, ``round_to``; scores from ``seed + 1``)."""
    torch.manual_seed(seed)
    model = create_model(case["model"], **case.get("kwargs", {}))
    if case["method"] == "SiDT":
        model = pruned(model, case["ratio"], seed=seed + 1, scope=case["scope"],
                       round_to=case["round_to"])
    return model.eval()


def describe(model, case: dict) -> dict:
    """What a pruned Swin kept, for the bench table: its head dims and how many of its
    widths are not multiples of 8."""
    if case["method"] != "SiDT":
        return {}
    a = sidt.arch(model)
    ws = [*a["attn_dims"].values(), *a["mlp_dims"].values()]
    return {"head_dims": sorted(set(a["attn_dims"].values())),
            "unaligned_widths": sum(v % 8 != 0 for v in ws), "widths": len(ws)}


def bench_families(bc) -> list[dict]:
    """The ``sidt`` family of the bench config ``bc``: the dense Swin (``sidt_model`` at
    ``sidt_size`` px, ``sidt_classes`` classes), then the model pruned at each of
    ``sidt_ratios`` for each ``round_to``."""
    if "sidt" not in bc.groups:
        return []
    base = {"model": bc.sidt_model, "kwargs": {"num_classes": bc.sidt_classes,
                                               "img_size": bc.sidt_size}}
    cases = [{"label": "dense", "method": "dense", **base}]
    cases += [{"label": f"SiDT {round(100 * r)}% rt{rt}", "method": "SiDT", **base,
               "ratio": float(r), "scope": bc.sidt_scope, "round_to": rt}
              for r in bc.sidt_ratios for rt in (int(x) for x in bc.round_to)]
    size = int(bc.sidt_size)
    return [{"name": f"sidt-{bc.sidt_model}", "group": "sidt", "input_size": [3, size, size],
             "batch": int(bc.sidt_batch), "train_batch": int(bc.sidt_train_batch),
             "cases": cases, "build": bench_model, "describe": describe}]
