"""Make torchvision (and so timm) importable when its compiled operators cannot load.

The torchvision 0.28.0 wheel on PyPI is a CUDA build.  Next to the CPU build of torch
2.13.0 its ``_C`` extension fails to load, and ``import torchvision`` then dies with
"operator torchvision::nms does not exist" (its fake-tensor registrations for ``nms`` and
``qnms`` assume the operators were defined by ``_C``).

This module runs before anything imports torchvision.  It checks whether torchvision's
``_C`` library loads; if it does (a CUDA machine, a matching CPU build), it does nothing.
If it does not, it defines the two operator schemas torchvision needs at import time,
``torchvision::nms`` and ``torchvision::qnms``, with a pure-PyTorch greedy NMS behind
them, and lets ``torchvision.ops.nms`` call it.  The other compiled operators
(roi_align, deform_conv2d, ...) stay unavailable and fail with torchvision's own message;
nothing in reprolib uses them.

``ACTIVE`` tells which branch ran.
"""

from __future__ import annotations

import glob
import importlib.util
import os
import sys

import torch

ACTIVE = False  # True when the fallback operators were registered
_LIB = None     # keeps the torch.library.Library alive


def nms_reference(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy non-maximum suppression (torchvision's semantics), in plain PyTorch.

    boxes: (N, 4) as (x1, y1, x2, y2); scores: (N,).  Returns the int64 indices of the kept
    boxes, in decreasing order of score.  A box is dropped when its IoU with an already kept,
    higher-scoring box is greater than ``iou_threshold``.
    """
    if boxes.numel() == 0:
        return torch.empty(0, dtype=torch.long, device=boxes.device)
    boxes = boxes.float()
    x1, y1, x2, y2 = boxes.unbind(1)
    area = (x2 - x1) * (y2 - y1)
    order = scores.argsort(descending=True, stable=True)
    # Pairwise IoU of all boxes in score order: O(N^2) memory, fine for NMS-sized inputs.
    b = boxes[order]
    lt = torch.maximum(b[:, None, :2], b[None, :, :2])
    rb = torch.minimum(b[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    a = area[order]
    iou = inter / (a[:, None] + a[None, :] - inter)
    suppressed = torch.zeros(len(order), dtype=torch.bool, device=boxes.device)
    keep = []
    for i in range(len(order)):
        if suppressed[i]:
            continue
        keep.append(i)
        suppressed |= iou[i] > iou_threshold
    return order[torch.tensor(keep, dtype=torch.long, device=boxes.device)]


def _torchvision_ops_load() -> bool:
    """True when torchvision is absent, already imported, or its ``_C`` library loads."""
    if "torchvision" in sys.modules:
        return True
    spec = importlib.util.find_spec("torchvision")
    if spec is None or spec.origin is None:
        return True
    libs = glob.glob(os.path.join(os.path.dirname(spec.origin), "_C*.so")) + glob.glob(
        os.path.join(os.path.dirname(spec.origin), "_C*.pyd"))
    if not libs:
        return False
    try:
        torch.ops.load_library(libs[0])
        return True
    except (OSError, RuntimeError):
        return False


def _register_fallback() -> None:
    global _LIB, ACTIVE
    lib = torch.library.Library("torchvision", "DEF")
    lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    lib.impl("nms", nms_reference, "CompositeExplicitAutograd")
    lib.impl("qnms", lambda d, s, t: nms_reference(d.float(), s.float(), t),
             "CompositeExplicitAutograd")
    _LIB, ACTIVE = lib, True


def _allow_nms() -> None:
    # torchvision.ops.nms asserts that the compiled library loaded; let it reach our operator.
    import torchvision.ops.boxes as boxes

    boxes._assert_has_ops = lambda: None


def install() -> bool:
    """Register the fallback if (and only if) torchvision's compiled ops cannot load.

    Runs before torchvision is imported (``import reprolib`` arranges that the first
    ``import torchvision`` imports this module first and calls
    :func:`after_torchvision_import` once torchvision has loaded)."""
    if ACTIVE or _torchvision_ops_load():
        return False
    _register_fallback()
    return True


def after_torchvision_import() -> None:
    """Let ``torchvision.ops.nms`` reach the fallback operator (once torchvision is loaded)."""
    if ACTIVE:
        _allow_nms()


install()
