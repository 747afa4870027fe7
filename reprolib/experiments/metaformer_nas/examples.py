"""MetaFormer-NAS's compressed-model examples: a MetaFormer whose token mixer is a searched
cell -- the largest the ``metaformer_nas`` records hold, else the paper's figure-5 cell --
with seeded random weights.  The overview exports one per scale (:func:`export_cases`);
``reprolib bench`` times the searched cells beside the pooling mixer (:func:`bench_families`).
"""

from __future__ import annotations

import torch

from reprolib.configs import get_config, get_paper
from reprolib.core.registry import create_model
from reprolib.experiments.metaformer_nas.graph import FIG5_ARCH

#: The MetaFormer each export scale builds: (builder, kwargs, input side) -- the test
#: variant, the tiny CIFAR MetaFormer, the paper's MetaFormer-S12 (Flowers-102, 224 px).
SCALES = {"tiny": ("test_metaformer", {"num_classes": 10, "image_size": 16}, 16),
          "cifar": ("metaformer_tiny", {"num_classes": 10, "image_size": 32}, 32),
          "paper": ("metaformer_s12", {"num_classes": 102, "image_size": 224}, 224)}
#: The paper's figure 5 cell (4 nodes): the DAG exported when no search has been recorded.
FIG5_CELL = [list(x) for x in FIG5_ARCH]


def _searches(profile: str) -> list:
    """The ``search`` stages of the ``metaformer_nas`` graph at ``profile`` that have a
    record (an unknown profile is a ReprolibError)."""
    from reprolib.experiments.metaformer_nas import PIPELINE

    return [s for s in PIPELINE.graph(get_config(PIPELINE.name, profile)).select("search")
            if s.done]


def searched_cell(cfg) -> tuple[list, str]:
    """The MetaFormer-NAS cell to export: the largest searched cell the metaformer_nas
    records hold at the first of ``cfg.profiles`` that has one, else the paper's figure 5
    cell.  Returns ``(nodes, where it came from)``."""
    for prof in cfg.profiles:
        if prof not in get_paper("metaformer_nas").presets:
            continue
        done = _searches(prof)
        if done:
            best = max(done, key=lambda s: s.metrics()["n_nodes"])
            return ([list(x) for x in best.metrics()["arch"]["nodes"]],
                    f"metaformer_nas/{prof} {best.name}")
    return [list(x) for x in FIG5_CELL], "the paper's figure 5 cell"


def export_model(scale: str = "tiny", seed: int = 0, nas_cell=None):
    """The MetaFormer of ``scale`` (:data:`SCALES`, weights seeded by ``seed``) with the
    token mixer ``nas_cell`` (default: the figure 5 cell); ``(model, input_size)``."""
    b, kw, side = SCALES[scale]
    torch.manual_seed(seed)
    return create_model(b, mixer=nas_cell or FIG5_CELL, **kw), (3, side, side)


def export_cases() -> dict:
    """The overview's export case ``metaformer_nas``: the cell of :func:`searched_cell`
    (it enters the stage's key; the record says where it came from)."""
    return {"metaformer_nas": {"label": "searched MetaFormer",
                               "settings": lambda cfg: {"nas_cell": searched_cell(cfg)[0]},
                               "build": export_model,
                               "about": lambda cfg: dict(zip(("nas_cell", "nas_cell_from"),
                                                             searched_cell(cfg)))}}


def searched_cells(profile: str) -> list[tuple[str, dict]]:
    """The token-mixer cells the ``metaformer_nas`` search derived at ``profile`` (label,
    architecture), from its records; the paper's figure-5 cell when none is recorded (or
    ``profile`` is "")."""
    cells = []
    if profile:
        for st in _searches(profile):
            arch = st.metrics()["arch"]
            cells.append((f"searched {arch['n_nodes']}-node ({profile})", arch))
    return cells or [("figure-5 cell", {"n_nodes": len(FIG5_ARCH), "nodes": FIG5_ARCH})]


def bench_families(bc) -> list[dict]:
    """The ``metaformer`` family of the bench config ``bc``: ``metaformer_model`` with the
    pooling mixer, then with each cell the search derived at ``metaformer_cells``."""
    if "metaformer" not in bc.groups:
        return []
    kw = {"num_classes": bc.metaformer_classes, "image_size": bc.metaformer_size}
    cases = [{"label": "pooling", "method": "dense", "model": bc.metaformer_model,
              "kwargs": dict(kw, mixer="pooling")}]
    for label, arch in searched_cells(bc.metaformer_cells):
        cases.append({"label": label, "method": "MetaFormer-NAS",
                      "model": bc.metaformer_model, "kwargs": dict(kw, mixer=arch)})
    size = int(bc.metaformer_size)
    return [{"name": f"metaformer-{bc.metaformer_model}", "group": "metaformer",
             "input_size": [3, size, size], "batch": int(bc.metaformer_batch),
             "train_batch": int(bc.metaformer_train_batch), "cases": cases}]
