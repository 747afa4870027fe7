"""SiDT on detection: the stage builders (train the detector, search the scores of its Swin
backbone, prune and fine-tune per ratio, count Table II's sizes) and the helpers they share."""

from __future__ import annotations

import copy

import torch
import torch.nn as nn

from reprolib.core.compressed import build
from reprolib.core.device import on_meta, resolve_device, world
from reprolib.core.measure import count_params, measure_model
from reprolib.core.pipeline import (ModelSpec, Stage, key_of, load_data, resources,
                                    training)
from reprolib.core.registry import create_model
from reprolib.core.train import fit
from reprolib.data.coco import SHAPES, evaluate_coco, limit_data
from reprolib.methods import sidt
from reprolib.models.detection import load_timm_backbone

PAPER = "sidt_detection"
AP_KEYS = ("bbox_AP", "bbox_AP50", "bbox_AP75", "segm_AP", "segm_AP50", "segm_AP75")


# --------------------------------------------------------------------------- helpers


def _ratios(cfg) -> list[float]:
    return [0.0, *(float(r) for r in cfg.ratios if float(r) != 0.0)]


def _tune_name(ratio: float) -> str:
    return f"finetune-p{round(100 * ratio):02d}"


def _data(cfg, batch_size: int):
    return limit_data(load_data(cfg, batch_size), cfg.train_images, cfg.val_images)


def detection_loss(net: nn.Module, images, targets) -> torch.Tensor:
    """The training loss of a detector: the sum of the losses ``net(images, targets)``
    returns (RPN, every cascade stage's classification, box and mask losses, weighted)."""
    return sum(net(images, targets).values())


def backbone_params(model: nn.Module) -> int:
    """Parameters of a detector's backbone: the Swin and its per-stage output norms (the
    FPN excluded), what Table II's backbone column counts."""
    bb = model.backbone
    return count_params(bb.body) + count_params(bb.norms)


def _counts(cfg, model: nn.Module, size=None) -> dict:
    """Params (total, backbone) and FLOPs at ``size`` (H, W) by the baseline's protocol,
    counted on the meta device (shapes only; the model is not touched)."""
    h, w = size or cfg.flops_size
    meta = copy.deepcopy(model).to("meta")
    m = measure_model(meta.flops_probe(cfg.flops_boxes, cfg.flops_masks), (3, h, w),
                      latency_repeats=0)
    return {"params": count_params(model), "backbone_params": backbone_params(model),
            "flops": m["flops"], "flops_size": [h, w]}


def _test_size(model: nn.Module) -> tuple[int, int]:
    """The square input the small detector sees at test time (its test short side, padded
    to 32), for its own FLOP count."""
    s = int(model.transform.min_size[-1])
    s = -(-s // 32) * 32
    return (s, s)


def _train(cfg, stage: Stage, model: nn.Module, recipe, desc: str, extra_loss=None) -> dict:
    """Train ``model`` with ``recipe`` (checkpointing in the stage's folder) and evaluate it:
    the record's AP numbers, epochs, time, history."""
    data = _data(cfg, recipe.batch_size)
    dev = resolve_device(cfg.device)
    if world()[1] > 1 and dev.type == "cuda":      # the baseline's SyncBN in the box heads
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    res = fit(model, data, recipe, ckpt_dir=stage.ckpt_dir, device=dev, desc=desc,
              extra_loss=extra_loss, criterion=detection_loss, evaluator=evaluate_coco)
    last = [h for h in res.history if "test_bbox_AP" in h][-1]
    return {**{k: last[f"test_{k}"] for k in AP_KEYS}, "epochs": res.epochs,
            "train_time_s": round(sum(h["time_s"] for h in res.history), 2),
            "history": res.history, "train_device": str(dev),
            "train_images": data.train_size, "test_images": data.test_size}


def _identity(a: nn.Module, b: nn.Module, data, dev, n_images: int = 8) -> dict:
    """How far two detectors' outputs are apart on the first ``n_images`` test images."""
    a, b = a.to(dev).eval(), b.to(dev).eval()
    out = {"images": 0, "detections": 0, "same_detections": True, "max_box_diff": 0.0,
           "max_score_diff": 0.0, "max_mask_diff": 0.0}
    with torch.no_grad():
        for imgs, _ in data.test:
            for x, y in zip(a(imgs), b(imgs)):
                out["images"] += 1
                same = len(x["boxes"]) == len(y["boxes"]) and bool((x["labels"] == y["labels"]).all())
                out["same_detections"] &= same
                out["detections"] += len(x["boxes"])
                if same and len(x["boxes"]):
                    for k, key in (("boxes", "max_box_diff"), ("scores", "max_score_diff"),
                                   ("masks", "max_mask_diff")):
                        out[key] = max(out[key], float((x[k] - y[k]).abs().max()))
            if out["images"] >= n_images:
                break
    return out


# --------------------------------------------------------------------------- stages


def _num_classes(dataset: str) -> int:
    """The classes of a detector trained on ``dataset``, the background included (as
    ``reprolib.data.coco`` loads it): COCO's 80 + 1, the generated shapes' 3 + 1."""
    return len(SHAPES) + 1 if dataset == "coco_shapes" else 81


def _spec(cfg, note: str = "") -> ModelSpec:
    """The detector the trained stages build (``cfg.model`` for the data set's classes),
    fed ``cfg.flops_size`` images (its FLOPs are the reference stage's to count)."""
    return ModelSpec(cfg.model, {"num_classes": _num_classes(cfg.dataset), **cfg.model_kwargs},
                     (3, *cfg.flops_size), note=note)


_DATA_KEYS = ("dataset", "data_root", "train_images", "val_images", "model", "model_kwargs")


def _train_stage(cfg) -> Stage:
    def fn(stage: Stage) -> dict:
        data = _data(cfg, cfg.train.batch_size)
        model = create_model(cfg.model, num_classes=data.num_classes, **cfg.model_kwargs)
        if cfg.pretrained_backbone:
            load_timm_backbone(model, cfg.pretrained_backbone)
        dev = resolve_device(cfg.device)
        untrained = evaluate_coco(model.to(dev), data.test, dev)
        m = _train(cfg, stage, model, cfg.train, "detector")
        stage.save_model(model)
        return {**m, "untrained": untrained, "classes": data.classes,
                **_counts(cfg, model, _test_size(model))}

    key = key_of(cfg, *_DATA_KEYS, "pretrained_backbone", "train", "flops_boxes", "flops_masks")
    return Stage(cfg, "train", key, fn, model=_spec(cfg), train=training(cfg, "train"),
                 resources=resources(cfg), group="train",
                 note="the detector the search starts from (its untrained AP: chance)")


def _search_stage(cfg, train: Stage) -> Stage:
    def fn(stage: Stage) -> dict:
        model = sidt.attach_scores(train.model())
        m = _train(cfg, stage, model, cfg.search, "SiDT search",
                   extra_loss=lambda mod: sidt.l1_penalty(mod, cfg.l1_strength))
        stage.save_model(model)
        sc = sidt.scores(model)
        s = torch.cat([a.detach().abs().flatten().cpu() for a in sc.values()])
        q = torch.quantile(s, torch.tensor([0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0]))
        return {**m, "n_scores": int(s.numel()), "score_quantiles": [float(v) for v in q],
                "params": count_params(model), "backbone_params": backbone_params(model)}

    key = key_of(cfg, *_DATA_KEYS, "l1_strength", "search")
    return Stage(cfg, "search", key, fn, after=[train],
                 model=_spec(cfg, note="counted without its scores (one per dimension)"),
                 train=training(cfg, "search", l1=cfg.l1_strength), resources=resources(cfg),
                 group="search", note="scores on every backbone dimension; L1 on the scores")


def _finetune_stage(cfg, ratio: float, search: Stage) -> Stage:
    def fn(stage: Stage) -> dict:
        data = _data(cfg, cfg.finetune.batch_size)
        dev = resolve_device(cfg.device)
        searched = search.model()
        model = sidt.prune(searched, ratio, cfg.scope)
        before = evaluate_coco(model.to(dev), data.test, dev)
        extra = {"identity": _identity(searched, model, data, dev)} if ratio == 0 else {}
        m = _train(cfg, stage, model, cfg.finetune, f"SiDT fine-tune PR={ratio:g}")
        stage.save_model(model)
        a = sidt.arch(model.backbone.body)
        return {**m, **extra, "pruned_no_ft": before, "ratio": ratio, "scope": cfg.scope,
                **_counts(cfg, model.cpu(), _test_size(model)),
                "attn_dims": a["attn_dims"], "mlp_dims": a["mlp_dims"], "swin": a["swin"]}

    key = key_of(cfg, *_DATA_KEYS, "scope", "finetune", "flops_boxes", "flops_masks",
                 ratio=ratio)
    return Stage(cfg, _tune_name(ratio), key, fn, after=[search],
                 model=_spec(cfg, note="counted unpruned: an upper bound"),
                 train=training(cfg, "finetune"), resources=resources(cfg), group="finetune",
                 note=f"the searched detector's backbone pruned at each ratio ({cfg.scope} "
                      "ranking), fine-tuned, no L1")


def _reference_stage(cfg, tunes: list[Stage]) -> Stage:
    ratios = _ratios(cfg)

    def fn(stage: Stage) -> dict:
        # built on the meta device (shapes only: nothing allocated or initialised, the
        # counts are the real model's); uniform pruning ranks all-equal values, as the
        # fresh scores are
        with on_meta():
            base = create_model(cfg.reference_model, num_classes=cfg.reference_classes)
            scored = sidt.attach_scores(copy.deepcopy(base))
        prefix = "backbone.body."
        rows = []
        equal = sidt.equal_ranking(scored)
        for r in ratios:                      # uniform: every layer loses the fraction r
            rows.append({"kind": "uniform", "ratio": r,
                         **_counts(cfg, sidt.prune(scored, r, "layer", ranking=equal))})
        del scored
        for t in tunes:                       # learned: the searched per-stage kept fractions
            mt = t.metrics()
            dims = sidt.transfer_dims(mt, base.backbone.body)
            step = {"kind": "sidt",
                    "attn_dims": {prefix + k: v for k, v in dims["attn_dims"].items()},
                    "mlp_dims": {prefix + k: v for k, v in dims["mlp_dims"].items()}}
            with on_meta():
                m = build({"builder": cfg.reference_model,
                           "kwargs": {"num_classes": cfg.reference_classes}, "arch": [step]})
            rows.append({"kind": "learned", "ratio": mt["ratio"], **_counts(cfg, m)})
        return {"rows": rows}

    key = key_of(cfg, "reference_model", "reference_classes", "flops_size", "flops_boxes",
                 "flops_masks", ratios=ratios)
    return Stage(cfg, "reference", key, fn, after=tunes,
                 model=ModelSpec(cfg.reference_model, {"num_classes": cfg.reference_classes},
                                 (3, *cfg.flops_size), note="counted unpruned and pruned, "
                                                            "not trained"),
                 resources=resources(cfg, trains=False), group="reference",
                 note="Table II's detector pruned uniformly and with the learned widths, "
                      "counted")
