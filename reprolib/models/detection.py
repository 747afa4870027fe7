"""Cascade Mask R-CNN with a timm Swin Transformer + FPN backbone: the detector of SiDT's
Table II (Xue et al., ../shared/papers/sidt.md, section 4: "We use Cascade Mask R-CNN [1] as
the detection head, in accordance with that of the Swin-T baseline").

Cai & Vasconcelos, "Cascade R-CNN: Delving into High Quality Object Detection" (CVPR 2018),
in the configuration of the Swin Transformer detection baseline the paper follows (Liu et
al. 2021, Swin-Transformer-Object-Detection, ``cascade_mask_rcnn_swin_tiny_patch4_window7_
mstrain_480-800_giou_4conv1f_adamw_3x_coco``: 86 M parameters, 745 G FLOPs at 1280 x 800,
box / mask AP 50.5 / 43.7 on COCO val).  Built from torchvision's detection parts; what the
baseline does differently from torchvision's Mask R-CNN is written here:

* Backbone: timm's ``SwinTransformer`` (the module ``reprolib.methods.sidt`` scores and
  prunes, at ``backbone.body``) with a LayerNorm on each of its four stage outputs (the last
  one is timm's final ``norm``), then torchvision's ``FeaturePyramidNetwork`` (256 channels)
  with a max-pooled fifth level.  Windows are always partitioned and shifted; a feature map
  whose side is not a multiple of the window is zero-padded at the bottom / right *before*
  the cyclic shift, as the baseline's backbone pads (timm pads after the shift).
* Inputs of any size: torchvision's ``GeneralizedRCNNTransform`` normalises (ImageNet mean /
  std), resizes (training: short side drawn from ``min_sizes``, 480-800 step 32; testing:
  the last of them, 800; long side <= ``max_size`` 1333) and pads the batch to a multiple
  of 32, as the baseline's ``Pad(size_divisor=32)``.
* RPN (torchvision): anchors 8 x stride (32..512 px) at ratios 0.5 / 1 / 2 on the five FPN
  levels, IoU 0.7 / 0.3, 256 anchors per image, half positive; 2000 / 1000 proposals per
  image (training / testing), NMS 0.7.
* Three box stages (:class:`CascadeRoIHeads`) trained at IoU 0.5 / 0.6 / 0.7 with box-coder
  weights (10, 10, 5, 5) / (20, 20, 10, 10) / (30, 30, 15, 15) (the baseline's target stds
  0.1/0.2, 0.05/0.1, 0.033/0.067) and loss weights 1 / 0.5 / 0.25; 512 RoIs per image, a
  quarter positive, ground truths added as proposals.  Each stage: RoIAlign 7 x 7 (adaptive
  sampling) -> 4 conv 3x3 (256, BatchNorm, ReLU) -> 1 fc (1024) -> classifier (``num_classes``
  with background) and box regression, class-specific (4 per foreground class) as in the
  baseline's 3x config or class-agnostic (``class_agnostic=True``, Cascade R-CNN's original
  head); box loss GIoU on the decoded boxes, weight 10 (``box_loss="giou"``) or smooth L1 on
  the deltas (``"smooth_l1"``).  Each stage's proposals are the previous stage's regressed
  boxes (ground-truth proposals dropped, clipped to the image).
* One mask head per stage (4 conv 3x3, 256; deconv 2x; 1x1 to one 28 x 28 mask per
  foreground class; binary cross-entropy on the ground-truth class, times the stage's loss
  weight), trained on that stage's positive RoIs (RoIAlign 14 x 14).
* Inference: the proposals pass the three stages (each refines them with its own most likely
  class); the class scores are the softmax of the three stages' classifier outputs averaged;
  boxes are the last stage's regression; score > 0.05, per-class NMS 0.5, 100 per image;
  the masks of the kept boxes are the average of the three mask heads' sigmoid masks.

What differs from the baseline's mmdetection config (everything else above is its value):

* RoIAlign: torchvision's ``MultiScaleRoIAlign`` samples with ``aligned=False``; mmcv's
  RoIAlign, which the baseline uses, with ``aligned=True`` (a half-pixel shift of every RoI).
  The level of a RoI is the same in both (``floor(log2(sqrt(area) / 56))``, levels 0-3).
* Training augmentation: the baseline's ``AutoAugment`` draws per image either the
  multi-scale resize (short side 480-800) or a resize to short side 400/500/600, a random
  crop of 384-600 px and then the multi-scale resize; here only the first branch (the
  multi-scale resize) and the horizontal flip are done.
* Mask targets: torchvision's ``maskrcnn_loss`` cuts each ground-truth mask with RoIAlign to
  28 x 28; mmdetection crops the mask to the box and resizes it.  Losses, weights and
  sampling are otherwise the baseline's (GIoU weight 10 on decoded boxes averaged over all
  sampled RoIs, cross-entropy classification, RPN binary cross-entropy and smooth L1 with
  beta 1/9).
* Numerics: bf16 autocast on CUDA instead of the baseline's fp16 (apex O1); the optimiser
  exempts norms and biases from weight decay (the baseline also exempts Swin's relative
  position bias tables).
* The issue asked for class-agnostic regression (Cascade R-CNN's original head); the Swin
  baseline's 3x config regresses per class (``reg_class_agnostic=False``), and only that
  reaches its 86 M parameters, so it is the default here and ``class_agnostic=True`` gives
  the other (85.63 M -> 84.66 M at 81 classes).

Output conventions are torchvision's: training ``model(images, targets)`` returns a dict of
losses (``loss_objectness``, ``loss_rpn_box_reg``, then per stage s = 1, 2, 3
``loss_classifier_s``, ``loss_box_reg_s``, ``loss_mask_s``, already weighted; their sum is
the training loss), evaluation ``model(images)`` a list of dicts with ``boxes`` (x1, y1, x2,
y2 in the input image's pixels), ``labels`` (1..num_classes-1), ``scores`` and ``masks``
(N, 1, H, W probabilities).

| name | what |
| --- | --- |
| ``cascade_mask_rcnn_swin_t`` | the baseline above: Swin-T (embed 96, depths 2-2-6-2, heads 3-6-12-24, window 7), 81 classes: 85.6 M parameters |
| ``cascade_mask_rcnn_swin`` | any timm Swin geometry and head widths (every size argument of the baseline is a keyword) |
| ``cascade_mask_rcnn_swin_tiny`` | a small Swin (embed 32) with narrow heads for small images (short side 80-96): tests, the smoke and cpu profiles |
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.models.swin_transformer import (SwinTransformer, SwinTransformerBlock,
                                          window_partition, window_reverse)
from torchvision.models.detection import _utils as det_utils
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNConvFCHead
from torchvision.models.detection.generalized_rcnn import GeneralizedRCNN
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.models.detection.roi_heads import maskrcnn_loss
from torchvision.models.detection.rpn import RegionProposalNetwork, RPNHead
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from torchvision.ops import FeaturePyramidNetwork, MultiScaleRoIAlign, boxes as box_ops
from torchvision.ops import generalized_box_iou_loss
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from reprolib.errors import ReprolibError, choose
from reprolib.core.registry import register_model

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: The baseline's three stages: training IoU, box-coder weights, loss weight.
STAGE_IOUS = (0.5, 0.6, 0.7)
STAGE_BOX_WEIGHTS = ((10.0, 10.0, 5.0, 5.0), (20.0, 20.0, 10.0, 10.0), (30.0, 30.0, 15.0, 15.0))
STAGE_LOSS_WEIGHTS = (1.0, 0.5, 0.25)
#: Swin's multi-scale training: short side 480..800 in steps of 32 (testing: 800), long <= 1333.
SWIN_MIN_SIZES = tuple(range(480, 801, 32))
SWIN_MAX_SIZE = 1333
BOX_LOSSES = ("giou", "smooth_l1")


# --------------------------------------------------------------------------- backbone


class _DetSwinBlock(SwinTransformerBlock):
    """timm's Swin block with the detection baseline's padding: pad the feature map to a
    multiple of the window at the bottom / right, then shift, partition, attend, reverse,
    unshift and crop (timm shifts first and pads after, which for a side that is not a
    multiple of the window mixes the wrapped-around rows with the padding).  The attention
    mask of shifted windows is built for the padded map on every call."""

    def _attn(self, x: torch.Tensor) -> torch.Tensor:
        B, H, W, C = x.shape
        wh, ww = self.window_size
        pad_h, pad_w = (wh - H % wh) % wh, (ww - W % ww) % ww
        x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
        _, Hp, Wp, _ = x.shape
        shifted = any(self.shift_size)
        if shifted:
            x = torch.roll(x, shifts=(-self.shift_size[0], -self.shift_size[1]), dims=(1, 2))
        mask = self.get_attn_mask(x) if shifted else None
        win = window_partition(x, self.window_size).view(-1, self.window_area, C)
        win = self.attn(win, mask=mask).view(-1, wh, ww, C)
        x = window_reverse(win, self.window_size, Hp, Wp)
        if shifted:
            x = torch.roll(x, shifts=self.shift_size, dims=(1, 2))
        return x[:, :H, :W, :].contiguous()


def det_swin(*, embed_dim: int = 96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24),
             window_size: int = 7, patch_size: int = 4, mlp_ratio: float = 4.0,
             drop_path_rate: float = 0.2) -> SwinTransformer:
    """A timm ``SwinTransformer`` set up as a detection backbone: any input size (a multiple
    of the patch), windows always partitioned and shifted, padded as the baseline pads, no
    classifier (``num_classes=0``)."""
    swin = SwinTransformer(img_size=224, patch_size=patch_size, embed_dim=embed_dim,
                           depths=tuple(depths), num_heads=tuple(num_heads),
                           window_size=window_size, mlp_ratio=mlp_ratio, num_classes=0,
                           drop_path_rate=drop_path_rate, strict_img_size=False,
                           always_partition=True)
    for m in swin.modules():
        if type(m) is SwinTransformerBlock:
            m.__class__ = _DetSwinBlock
    return swin


class SwinFPN(nn.Module):
    """Swin stages -> LayerNorm per stage output -> FPN (+ max-pooled extra level).

    ``body`` is the timm Swin (SiDT acts on its blocks); ``norms`` are the LayerNorms of the
    first three stage outputs (the fourth is ``body.norm``); returns an ``OrderedDict`` of
    NCHW maps ``"0".."3"`` (strides 4..32 for patch 4) and ``"pool"`` (stride 64)."""

    def __init__(self, body: SwinTransformer, out_channels: int = 256):
        super().__init__()
        chans = [int(f["num_chs"]) for f in body.feature_info]
        self.body = body
        self.norms = nn.ModuleList(nn.LayerNorm(c) for c in chans[:-1])
        self.fpn = FeaturePyramidNetwork(chans, out_channels, extra_blocks=LastLevelMaxPool())
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        x = self.body.patch_embed(x)
        feats = OrderedDict()
        last = len(self.body.layers) - 1
        for i, stage in enumerate(self.body.layers):
            x = stage(x)
            norm = self.body.norm if i == last else self.norms[i]
            feats[str(i)] = norm(x).permute(0, 3, 1, 2).contiguous()
        return self.fpn(feats)


# --------------------------------------------------------------------------- cascade heads


class BoxPredictor(nn.Module):
    """Classifier (``num_classes`` logits, background = 0) and box deltas: 4 per foreground
    class, or 4 shared by all classes (``class_agnostic``).  Initialised as the baseline:
    normal(0, 0.01) / normal(0, 0.001), zero biases."""

    def __init__(self, in_features: int, num_classes: int, class_agnostic: bool = False):
        super().__init__()
        self.class_agnostic = class_agnostic
        self.cls_score = nn.Linear(in_features, num_classes)
        self.bbox_pred = nn.Linear(in_features, 4 if class_agnostic else 4 * (num_classes - 1))
        nn.init.normal_(self.cls_score.weight, std=0.01)
        nn.init.normal_(self.bbox_pred.weight, std=0.001)
        nn.init.zeros_(self.cls_score.bias)
        nn.init.zeros_(self.bbox_pred.bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.cls_score(x), self.bbox_pred(x)


class CascadeRoIHeads(nn.Module):
    """The three box stages and the three mask heads of Cascade Mask R-CNN (see the module
    docstring); torchvision's ``RoIHeads`` interface: ``forward(features, proposals,
    image_shapes, targets) -> (detections, losses)``."""

    def __init__(self, box_roi_pool: MultiScaleRoIAlign, box_heads: nn.ModuleList,
                 box_predictors: nn.ModuleList, mask_roi_pool: MultiScaleRoIAlign,
                 mask_heads: nn.ModuleList, mask_predictors: nn.ModuleList, *,
                 num_classes: int, ious=STAGE_IOUS, box_weights=STAGE_BOX_WEIGHTS,
                 stage_weights=STAGE_LOSS_WEIGHTS, batch_size_per_image: int = 512,
                 positive_fraction: float = 0.25, box_loss: str = "giou",
                 box_loss_weight: float = 10.0, score_thresh: float = 0.05,
                 nms_thresh: float = 0.5, detections_per_img: int = 100):
        super().__init__()
        n = len(ious)
        if not (len(box_weights) == len(stage_weights) == len(box_heads) == len(box_predictors)
                == len(mask_heads) == len(mask_predictors) == n):
            raise ReprolibError(f"a cascade of {n} stages needs {n} box weights, loss weights, "
                                "box heads and mask heads")
        choose("box loss", box_loss, BOX_LOSSES)
        self.box_roi_pool, self.mask_roi_pool = box_roi_pool, mask_roi_pool
        self.box_heads, self.box_predictors = box_heads, box_predictors
        self.mask_heads, self.mask_predictors = mask_heads, mask_predictors
        self.num_classes = num_classes
        self.stage_weights = tuple(float(w) for w in stage_weights)
        self.matchers = [det_utils.Matcher(t, t, allow_low_quality_matches=False) for t in ious]
        self.coders = [det_utils.BoxCoder(tuple(float(v) for v in w)) for w in box_weights]
        self.sampler = det_utils.BalancedPositiveNegativeSampler(batch_size_per_image,
                                                                 positive_fraction)
        self.box_loss, self.box_loss_weight = box_loss, float(box_loss_weight)
        self.score_thresh, self.nms_thresh = score_thresh, nms_thresh
        self.detections_per_img = detections_per_img

    @property
    def num_stages(self) -> int:
        return len(self.box_heads)

    # ---- pieces
    def _boxes_of(self, deltas: torch.Tensor, rois: torch.Tensor, labels: torch.Tensor | None,
                  stage: int) -> torch.Tensor:
        """Decoded boxes (K, 4) of each RoI for its class ``labels`` (1..C-1); (K, C-1, 4) for
        every foreground class when ``labels`` is None."""
        k = rois.shape[0]
        d = deltas.reshape(k, -1, 4)
        if labels is not None:
            d = d[:, 0] if d.shape[1] == 1 else d[torch.arange(k, device=d.device), labels - 1]
            return self.coders[stage].decode_single(d, rois)
        dec = self.coders[stage].decode_single(d.reshape(-1, 4),
                                               rois.repeat_interleave(d.shape[1], 0))
        return dec.reshape(k, -1, 4).expand(k, self.num_classes - 1, 4) if d.shape[1] == 1 \
            else dec.reshape(k, -1, 4)

    def _box_forward(self, stage: int, features, rois: list[torch.Tensor], image_shapes):
        x = self.box_roi_pool(features, rois, image_shapes)
        return self.box_predictors[stage](self.box_heads[stage](x))

    def _mask_logits(self, stage: int, features, rois: list[torch.Tensor], image_shapes):
        x = self.mask_roi_pool(features, rois, image_shapes)
        return self.mask_predictors[stage](self.mask_heads[stage](x))

    def _sample(self, stage: int, proposals, targets):
        """Stage ``stage``'s training RoIs per image: ground truths added, matched at the
        stage's IoU, 512 sampled (a quarter positive).  Returns per image the RoIs, labels
        (0 = background), matched gt index and whether each RoI is a ground truth."""
        out = []
        for props, t in zip(proposals, targets):
            gt = t["boxes"].to(props.dtype)
            n_prop = props.shape[0]
            props = torch.cat([props, gt])
            if gt.numel() == 0:
                matched = torch.zeros(props.shape[0], dtype=torch.long, device=props.device)
                labels = torch.zeros_like(matched)
            else:
                m = self.matchers[stage](box_ops.box_iou(gt, props))
                matched = m.clamp(min=0)
                labels = t["labels"][matched].to(torch.long)
                labels[m == det_utils.Matcher.BELOW_LOW_THRESHOLD] = 0
                labels[m == det_utils.Matcher.BETWEEN_THRESHOLDS] = -1
            pos, neg = self.sampler([labels])
            idx = torch.where(pos[0] | neg[0])[0]
            out.append((props[idx], labels[idx], matched[idx], idx >= n_prop))
        return out

    # ---- training
    def _train(self, features, proposals, image_shapes, targets) -> dict[str, torch.Tensor]:
        losses = {}
        for s in range(self.num_stages):
            w = self.stage_weights[s]
            samples = self._sample(s, proposals, targets)
            rois = [x[0] for x in samples]
            labels = torch.cat([x[1] for x in samples])
            logits, deltas = self._box_forward(s, features, rois, image_shapes)
            losses[f"loss_classifier_{s + 1}"] = w * F.cross_entropy(logits, labels)
            allrois = torch.cat(rois)
            pos = torch.where(labels > 0)[0]
            gt_boxes = torch.cat([t["boxes"].to(allrois.dtype)[x[2]] if t["boxes"].numel()
                                  else allrois.new_zeros((len(x[2]), 4))
                                  for t, x in zip(targets, samples)])
            n = max(labels.numel(), 1)
            if self.box_loss == "giou":
                pred = self._boxes_of(deltas[pos], allrois[pos], labels[pos], s)
                box = generalized_box_iou_loss(pred, gt_boxes[pos], reduction="sum")
            else:
                k = pos.numel()
                d = deltas[pos].reshape(k, -1, 4)
                d = d[:, 0] if d.shape[1] == 1 else d[torch.arange(k, device=d.device),
                                                      labels[pos] - 1]
                tgt = self.coders[s].encode_single(gt_boxes[pos], allrois[pos])
                box = F.smooth_l1_loss(d, tgt, beta=1.0, reduction="sum")
            losses[f"loss_box_reg_{s + 1}"] = w * self.box_loss_weight * box / n
            # masks of this stage's positive RoIs
            pos_rois = [x[0][x[1] > 0] for x in samples]
            pos_match = [x[2][x[1] > 0] for x in samples]
            if sum(len(r) for r in pos_rois):
                mlog = self._mask_logits(s, features, pos_rois, image_shapes)
                loss_m = maskrcnn_loss(mlog, pos_rois, [t["masks"] for t in targets],
                                       [t["labels"] - 1 for t in targets], pos_match)
            else:                              # no positives: a zero that keeps DDP's graph whole
                loss_m = sum(p.sum() for m in (self.mask_heads[s], self.mask_predictors[s])
                             for p in m.parameters()) * 0.0
            losses[f"loss_mask_{s + 1}"] = w * loss_m
            if s + 1 < self.num_stages:        # refine: the next stage's proposals
                with torch.no_grad():
                    lab = torch.where(labels > 0, labels, logits[:, 1:].argmax(1) + 1)
                    boxes = self._boxes_of(deltas.detach(), allrois, lab, s)
                    boxes = boxes.split([len(r) for r in rois])
                    proposals = [box_ops.clip_boxes_to_image(b[~x[3]], shape)
                                 for b, x, shape in zip(boxes, samples, image_shapes)]
        return losses

    # ---- inference
    @torch.no_grad()
    def _infer(self, features, proposals, image_shapes) -> list[dict[str, torch.Tensor]]:
        counts = [len(p) for p in proposals]
        rois, all_logits = proposals, []
        for s in range(self.num_stages):
            logits, deltas = self._box_forward(s, features, rois, image_shapes)
            all_logits.append(logits)
            if s + 1 < self.num_stages:
                lab = logits[:, 1:].argmax(1) + 1
                boxes = self._boxes_of(deltas, torch.cat(rois), lab, s).split(counts)
                rois = [box_ops.clip_boxes_to_image(b, shape)
                        for b, shape in zip(boxes, image_shapes)]
        scores = F.softmax(torch.stack(all_logits).mean(0), -1)
        boxes = self._boxes_of(deltas, torch.cat(rois), None, self.num_stages - 1)
        result = []
        for b, sc, shape in zip(boxes.split(counts), scores.split(counts), image_shapes):
            b = box_ops.clip_boxes_to_image(b, shape).reshape(-1, 4)
            c = sc.shape[1] - 1
            lab = torch.arange(1, c + 1, device=sc.device).repeat(sc.shape[0])
            sc = sc[:, 1:].reshape(-1)
            keep = torch.where(sc > self.score_thresh)[0]
            b, sc, lab = b[keep], sc[keep], lab[keep]
            keep = box_ops.remove_small_boxes(b, min_size=1e-2)
            b, sc, lab = b[keep], sc[keep], lab[keep]
            keep = box_ops.batched_nms(b, sc, lab, self.nms_thresh)[:self.detections_per_img]
            result.append({"boxes": b[keep], "labels": lab[keep], "scores": sc[keep]})
        det_boxes = [r["boxes"] for r in result]
        if sum(len(b) for b in det_boxes):
            probs = torch.stack([self._mask_logits(s, features, det_boxes, image_shapes).sigmoid()
                                 for s in range(self.num_stages)]).mean(0)
            lab = torch.cat([r["labels"] for r in result])
            probs = probs[torch.arange(len(lab), device=lab.device), lab - 1][:, None]
            for r, m in zip(result, probs.split([len(b) for b in det_boxes])):
                r["masks"] = m
        else:
            m = self.mask_predictors[0].mask_fcn_logits
            size = 2 * self.mask_roi_pool.output_size[0]
            for r in result:
                r["masks"] = torch.zeros((0, 1, size, size), device=m.weight.device)
        return result

    def forward(self, features, proposals, image_shapes, targets=None):
        if self.training:
            if targets is None:
                raise ReprolibError("a detector in training mode needs targets")
            return [], self._train(features, proposals, image_shapes, targets)
        return self._infer(features, proposals, image_shapes), {}


# --------------------------------------------------------------------------- the detector


class CascadeMaskRCNN(GeneralizedRCNN):
    """torchvision's ``GeneralizedRCNN`` (transform -> backbone -> RPN -> RoI heads ->
    postprocess) with a :class:`SwinFPN` backbone and :class:`CascadeRoIHeads`; build it with
    :func:`cascade_mask_rcnn_swin`."""

    def flops_probe(self, num_boxes: int = 1000, num_masks: int = 100) -> nn.Module:
        """A module whose forward on a padded, normalised batch ``(1, 3, H, W)`` runs what the
        baseline's FLOP count runs (mmdetection's ``forward_dummy``): backbone + FPN, the RPN
        head on every level, the three box heads on ``num_boxes`` RoIs and the three mask
        heads on ``num_masks`` of them.  RoIAlign, NMS and box decoding have no multiply-adds
        to count and are left out (the heads see zero-filled pooled features of the right
        shape).  Count it with ``reprolib.measure.count_flops(probe, (3, H, W))``."""
        return _FlopsProbe(self, num_boxes, num_masks)


class _FlopsProbe(nn.Module):
    def __init__(self, det: CascadeMaskRCNN, num_boxes: int, num_masks: int):
        super().__init__()
        self.det, self.num_boxes, self.num_masks = det, num_boxes, num_masks

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        det = self.det
        feats = det.backbone(x)
        obj, reg = det.rpn.head(list(feats.values()))
        rh = det.roi_heads
        c = det.backbone.out_channels
        out = sum(o.sum() for o in obj) + sum(r.sum() for r in reg)
        bx = x.new_zeros((self.num_boxes, c, *rh.box_roi_pool.output_size))
        mx = x.new_zeros((self.num_masks, c, *rh.mask_roi_pool.output_size))
        for s in range(rh.num_stages):
            logits, deltas = rh.box_predictors[s](rh.box_heads[s](bx))
            out = out + logits.sum() + deltas.sum()
            out = out + rh.mask_predictors[s](rh.mask_heads[s](mx)).sum()
        return out


@register_model(paper="sidt")
def cascade_mask_rcnn_swin(num_classes: int = 81, *, embed_dim: int = 96,
                           depths: tuple = (2, 2, 6, 2), num_heads: tuple = (3, 6, 12, 24),
                           window_size: int = 7, patch_size: int = 4,
                           drop_path_rate: float = 0.2, fpn_channels: int = 256,
                           anchor_scale: int = 8, rpn_pre_nms: tuple = (2000, 1000),
                           rpn_post_nms: tuple = (2000, 1000), rpn_batch: int = 256,
                           roi_batch: int = 512, box_convs: int = 4, box_channels: int = 256,
                           box_fc: int = 1024, mask_convs: int = 4, mask_channels: int = 256,
                           class_agnostic: bool = False, box_loss: str = "giou",
                           min_sizes: tuple = SWIN_MIN_SIZES, max_size: int = SWIN_MAX_SIZE,
                           detections_per_img: int = 100) -> CascadeMaskRCNN:
    """Cascade Mask R-CNN on a Swin + FPN backbone, randomly initialised (module docstring).

    Args:
        num_classes: classifier outputs including the background (81 for COCO's 80 classes).
        embed_dim, depths, num_heads, window_size, patch_size, drop_path_rate: the timm Swin
            (defaults: Swin-T as in the baseline, stochastic depth 0.2).
        fpn_channels: channels of every FPN level, the RPN and the heads' input (256).
        anchor_scale: anchor side in units of the level's stride (8: 32..512 px on strides
            4..64); three aspect ratios 0.5 / 1 / 2.
        rpn_pre_nms, rpn_post_nms: proposals kept per level before NMS and per image after it,
            (training, testing) (2000/1000 both).
        rpn_batch: anchors sampled per image for the RPN loss (256).
        roi_batch: RoIs sampled per image and stage for the box loss (512, a quarter positive).
        box_convs, box_channels, box_fc: each stage's box head, ``box_convs`` conv 3x3 +
            BatchNorm + ReLU of ``box_channels``, then one fc of ``box_fc`` (4 / 256 / 1024).
        mask_convs, mask_channels: each stage's mask head (4 / 256).
        class_agnostic: one box regression for all classes (default False: 4 per class, the
            baseline's 3x config).
        box_loss: ``"giou"`` (default, weight 10, on decoded boxes) or ``"smooth_l1"``.
        min_sizes: training short sides drawn per image; the last is the test short side
            (default 480..800 step 32: Swin's multi-scale training, test 800).
        max_size: longest side after resizing (1333).
        detections_per_img: kept detections per image (100).
    """
    if num_classes < 2:
        raise ReprolibError(f"num_classes={num_classes}: a detector needs the background and "
                            "at least one class")
    choose("box loss", box_loss, BOX_LOSSES)
    body = det_swin(embed_dim=embed_dim, depths=depths, num_heads=num_heads,
                    window_size=window_size, patch_size=patch_size,
                    drop_path_rate=drop_path_rate)
    backbone = SwinFPN(body, fpn_channels)
    levels = len(depths) + 1
    strides = [patch_size * 2 ** i for i in range(levels)]
    anchors = AnchorGenerator(tuple((anchor_scale * s,) for s in strides),
                              ((0.5, 1.0, 2.0),) * levels)
    rpn = RegionProposalNetwork(
        anchors, RPNHead(fpn_channels, 3), fg_iou_thresh=0.7, bg_iou_thresh=0.3,
        batch_size_per_image=rpn_batch, positive_fraction=0.5,
        pre_nms_top_n={"training": rpn_pre_nms[0], "testing": rpn_pre_nms[1]},
        post_nms_top_n={"training": rpn_post_nms[0], "testing": rpn_post_nms[1]},
        nms_thresh=0.7)
    names = [str(i) for i in range(len(depths))]
    box_pool = MultiScaleRoIAlign(names, output_size=7, sampling_ratio=0)
    mask_pool = MultiScaleRoIAlign(names, output_size=14, sampling_ratio=0)
    n = len(STAGE_IOUS)
    box_heads = nn.ModuleList(FastRCNNConvFCHead((fpn_channels, 7, 7), [box_channels] * box_convs,
                                                 [box_fc], norm_layer=nn.BatchNorm2d)
                              for _ in range(n))
    box_preds = nn.ModuleList(BoxPredictor(box_fc, num_classes, class_agnostic) for _ in range(n))
    mask_heads = nn.ModuleList(MaskRCNNHeads(fpn_channels, [mask_channels] * mask_convs, 1)
                               for _ in range(n))
    mask_preds = nn.ModuleList(MaskRCNNPredictor(mask_channels, mask_channels, num_classes - 1)
                               for _ in range(n))
    heads = CascadeRoIHeads(box_pool, box_heads, box_preds, mask_pool, mask_heads, mask_preds,
                            num_classes=num_classes, batch_size_per_image=roi_batch,
                            box_loss=box_loss, box_loss_weight=10.0 if box_loss == "giou" else 1.0,
                            detections_per_img=detections_per_img)
    transform = GeneralizedRCNNTransform(tuple(min_sizes), max_size, list(IMAGENET_MEAN),
                                         list(IMAGENET_STD), size_divisible=32)
    return CascadeMaskRCNN(backbone, rpn, heads, transform)


@register_model(paper="sidt", kwargs_to=cascade_mask_rcnn_swin)
def cascade_mask_rcnn_swin_t(num_classes: int = 81, **kw) -> CascadeMaskRCNN:
    """The Swin-T detection baseline of SiDT Table II (every default of
    :func:`cascade_mask_rcnn_swin`): 85.6 M parameters at 81 classes.

    Args:
        num_classes: classifier outputs including the background (81: COCO).
        **kw: any other :func:`cascade_mask_rcnn_swin` argument.
    """
    return cascade_mask_rcnn_swin(num_classes, **kw)


@register_model(paper="sidt", kwargs_to=cascade_mask_rcnn_swin)
def cascade_mask_rcnn_swin_tiny(num_classes: int = 4, **kw) -> CascadeMaskRCNN:
    """A small Cascade Mask R-CNN for small images (tests, smoke and cpu profiles): a Swin of
    Swin-T's layout scaled down (embed 32, depths 2-2-2-2, heads 1-2-4-8, window 4, patch 4),
    48-channel FPN, 32-channel box and mask heads (box fc 128), anchors 2 x stride (8..128
    px), 64 RoIs per image and stage, proposals per level / image 400 / 200 in training and
    200 / 100 in testing, short side 80 or 96 (test 96), long side <= 160.

    Args:
        num_classes: classifier outputs including the background (default 4: the generated
            shapes data set's three classes).
        **kw: any other :func:`cascade_mask_rcnn_swin` argument (overrides these).
    """
    cfg = dict(embed_dim=32, depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8), window_size=4,
               drop_path_rate=0.1, fpn_channels=48, anchor_scale=2, rpn_pre_nms=(400, 200),
               rpn_post_nms=(200, 100), rpn_batch=128, roi_batch=64, box_channels=32,
               box_fc=128, mask_channels=32, min_sizes=(80, 96), max_size=160)
    return cascade_mask_rcnn_swin(num_classes, **{**cfg, **kw})


def load_timm_backbone(model: CascadeMaskRCNN, name: str = "swin_tiny_patch4_window7_224"):
    """Copy the ImageNet-1k weights of timm's pretrained ``name`` into ``model``'s Swin (the
    baseline starts from ImageNet-1k Swin-T).  Downloads them through timm / the Hugging Face
    hub on first use.  Returns ``model``."""
    import timm

    src = timm.create_model(name, pretrained=True, num_classes=0).state_dict()
    missing, unexpected = model.backbone.body.load_state_dict(src, strict=False)
    bad = [k for k in missing if "attn_mask" not in k and "relative_position_index" not in k]
    if bad or unexpected:
        raise ReprolibError(f"timm weights {name!r} do not fit this Swin: missing {bad[:3]}, "
                            f"unexpected {list(unexpected)[:3]}")
    return model
