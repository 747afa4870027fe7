"""Make torchvision (and so timm) importable when its compiled operators cannot load.

The torchvision 0.28.0 wheel on PyPI is a CUDA build.  Next to the CPU build of torch
2.13.0 its ``_C`` extension fails to load, and ``import torchvision`` then dies with
"operator torchvision::nms does not exist" (its fake-tensor registrations for ``nms`` and
``qnms`` assume the operators were defined by ``_C``).

This module runs before anything imports torchvision.  It checks whether torchvision's
``_C`` library loads; if it does (a CUDA machine, a matching CPU build), it does nothing.
If it does not, it defines the operator schemas torchvision needs at import time,
``torchvision::nms`` and ``torchvision::qnms``, with a pure-PyTorch greedy NMS behind
them, and lets ``torchvision.ops.nms`` call it.  It also defines ``torchvision::roi_align``
(what ``torchvision.ops.roi_align`` and ``MultiScaleRoIAlign`` call; the detection models of
``reprolib.models.detection`` pool every region of interest with it) with
:func:`roi_align_reference` behind it, registered as a composite of differentiable torch
operations, so autograd gives its backward.  torchvision's own Python fallback for
``roi_align`` is not used: it is ``torch.compile``d on first call and, with adaptive sampling
(``sampling_ratio <= 0``), samples every pixel of the feature map for every bin.  The other
compiled operators (deform_conv2d, ps_roi_align, ...) stay unavailable and fail with
torchvision's own message; nothing in reprolib uses them.

``ACTIVE`` tells which branch ran.
"""

from __future__ import annotations

import glob
import importlib.util
import os
import sys

import numpy as np
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
    # the greedy pass walks the boxes in score order; on a boolean NumPy matrix each step is
    # one row OR (tensor ops per step would cost microseconds of dispatch each)
    over = (iou > iou_threshold).cpu().numpy()
    suppressed = np.zeros(len(order), dtype=bool)
    keep = []
    for i in range(len(order)):
        if suppressed[i]:
            continue
        keep.append(i)
        suppressed |= over[i]
    return order[torch.tensor(keep, dtype=torch.long, device=boxes.device)]


def roi_align_reference(input: torch.Tensor, rois: torch.Tensor, spatial_scale: float,
                        pooled_height: int, pooled_width: int, sampling_ratio: int = -1,
                        aligned: bool = False) -> torch.Tensor:
    """RoIAlign (He et al., Mask R-CNN) with torchvision's semantics, in plain PyTorch.

    input: (N, C, H, W) features; rois: (K, 5) rows ``(batch index, x1, y1, x2, y2)`` in input
    coordinates, mapped to the feature map by ``spatial_scale``.  Every output bin of the
    ``pooled_height x pooled_width`` grid averages ``gh x gw`` bilinear samples at the centres
    of a regular sub-grid of the bin: ``gh = gw = sampling_ratio`` when it is > 0, else
    adaptive, ``gh = ceil(roi_h / pooled_height)``, ``gw = ceil(roi_w / pooled_width)``.
    ``aligned`` shifts the box by -0.5 pixel (Detectron2); without it a box is at least 1 x 1.
    As in torchvision's kernel, a sample outside ``[-1, H] x [-1, W]`` counts as 0 and one
    inside it is read at its coordinates clamped to the map.  Returns (K, C, pooled_height,
    pooled_width), differentiable in ``input``.

    The samples of all rois with the same image and the same sub-grid size are read with one
    ``grid_sample`` call (bilinear, exact at the clamped coordinates); memory is bounded by
    splitting large groups.
    """
    import torch.nn.functional as F

    K = rois.shape[0]
    N, C, H, W = input.shape
    ph, pw = int(pooled_height), int(pooled_width)
    if K == 0 or C == 0:
        return input.new_zeros((K, C, ph, pw))
    r = rois.detach().to(input.dtype if input.is_floating_point() else torch.float32)
    off = 0.5 if aligned else 0.0
    x1, y1 = r[:, 1] * spatial_scale - off, r[:, 2] * spatial_scale - off
    rw, rh = r[:, 3] * spatial_scale - off - x1, r[:, 4] * spatial_scale - off - y1
    if not aligned:
        rw, rh = rw.clamp(min=1.0), rh.clamp(min=1.0)
    if sampling_ratio > 0:
        gh = torch.full((K,), int(sampling_ratio), dtype=torch.long, device=r.device)
        gw = gh
    else:
        gh, gw = torch.ceil(rh / ph).long(), torch.ceil(rw / pw).long()
    b = r[:, 0].long()
    key = torch.stack([b, gh, gw], 1)
    groups, inverse = torch.unique(key, dim=0, return_inverse=True)
    budget = 1 << 24                      # elements of one grid_sample output
    pieces, order = [], []
    for g, (bi, nh, nw) in enumerate(groups.tolist()):
        idx = torch.nonzero(inverse == g).flatten()
        if nh <= 0 or nw <= 0:            # an empty box with aligned=True: no samples, 0
            pieces.append(input.new_zeros((len(idx), C, ph, pw)))
            order.append(idx)
            continue
        per = max(1, budget // max(1, C * ph * nh * pw * nw))
        for s in range(0, len(idx), per):
            i = idx[s:s + per]
            k = len(i)
            sub_y = (torch.arange(nh, device=r.device, dtype=r.dtype) + 0.5) / nh
            sub_x = (torch.arange(nw, device=r.device, dtype=r.dtype) + 0.5) / nw
            cell_y = torch.arange(ph, device=r.device, dtype=r.dtype)[:, None] + sub_y
            cell_x = torch.arange(pw, device=r.device, dtype=r.dtype)[:, None] + sub_x
            y = y1[i, None, None] + cell_y * (rh[i] / ph)[:, None, None]     # k, ph, nh
            x = x1[i, None, None] + cell_x * (rw[i] / pw)[:, None, None]     # k, pw, nw
            vy = ((y >= -1.0) & (y <= H)).to(input.dtype)
            vx = ((x >= -1.0) & (x <= W)).to(input.dtype)
            gy = (2 * y.clamp(0, H - 1) + 1) / H - 1       # align_corners=False coordinates
            gx = (2 * x.clamp(0, W - 1) + 1) / W - 1
            grid = torch.stack(torch.broadcast_tensors(
                gx.reshape(k, 1, pw * nw), gy.reshape(k, ph * nh, 1)), -1)  # k, ph*nh, pw*nw, 2
            v = F.grid_sample(input[bi:bi + 1], grid.reshape(1, k * ph * nh, pw * nw, 2)
                              .to(input.dtype), mode="bilinear", padding_mode="border",
                              align_corners=False)         # 1, C, k*ph*nh, pw*nw
            v = v.reshape(C, k, ph, nh, pw, nw)
            v = v * (vy.reshape(1, k, ph, nh, 1, 1) * vx.reshape(1, k, 1, 1, pw, nw))
            pieces.append((v.sum((3, 5)) / (nh * nw)).permute(1, 0, 2, 3))
            order.append(i)
    return torch.cat(pieces)[torch.argsort(torch.cat(order))]


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
    lib.define("roi_align(Tensor input, Tensor rois, float spatial_scale, SymInt pooled_height, "
               "SymInt pooled_width, int sampling_ratio, bool aligned) -> Tensor")
    # a composite of differentiable torch operations: autograd derives the backward
    lib.impl("roi_align", roi_align_reference, "CompositeImplicitAutograd")
    _LIB, ACTIVE = lib, True


def _allow_ops() -> None:
    # torchvision.ops.nms / roi_align assert that the compiled library loaded (roi_align
    # would take torchvision's compiled Python path instead); let them reach our operators.
    import importlib

    boxes = importlib.import_module("torchvision.ops.boxes")
    ra = importlib.import_module("torchvision.ops.roi_align")   # the module, not the function
    boxes._assert_has_ops = lambda: None
    ra._assert_has_ops = lambda: None
    ra._has_ops = lambda: True


def install() -> bool:
    """Register the fallback if (and only if) torchvision's compiled ops cannot load.

    Runs before torchvision is imported (``import reprolib`` arranges that the first
    ``import torchvision`` imports this module first and calls
    :func:`after_torchvision_import` once torchvision has loaded)."""
    if ACTIVE or _torchvision_ops_load():
        return False
    _register_fallback()
    _allow_ops()
    return True


def after_torchvision_import() -> None:
    """Let ``torchvision.ops.nms`` reach the fallback operator (once torchvision is loaded)."""
    if ACTIVE:
        _allow_nms()


install()
