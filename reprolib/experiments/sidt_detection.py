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

import copy

import pandas as pd
import torch
import torch.nn as nn

from reprolib.configs.sidt import PAPER_TABLE2
from reprolib.configs.sidt_detection import SWIN_BASELINE
from reprolib.core import report
from reprolib.core.compressed import build
from reprolib.core.device import resolve_device, world
from reprolib.core.measure import count_params, measure_model
from reprolib.core.pipeline import (ModelSpec, Pipeline, Stage, key_of, load_data, profile_note,
                                    register_pipeline, resources, select_stages, training)
from reprolib.core.registry import create_model, list_models
from reprolib.core.train import fit
from reprolib.data.coco import SHAPES, coco_root, evaluate_coco, limit_data
from reprolib.errors import ReprolibError
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
        base = create_model(cfg.reference_model, num_classes=cfg.reference_classes)
        prefix = "backbone.body."
        rows = []
        scored = sidt.attach_scores(copy.deepcopy(base))
        for r in ratios:                      # uniform: every layer loses the fraction r
            rows.append({"kind": "uniform", "ratio": r,
                         **_counts(cfg, sidt.prune(scored, r, "layer"))})
        del scored
        for t in tunes:                       # learned: the searched per-stage kept fractions
            mt = t.metrics()
            dims = sidt.transfer_dims(mt, base.backbone.body)
            step = {"kind": "sidt",
                    "attn_dims": {prefix + k: v for k, v in dims["attn_dims"].items()},
                    "mlp_dims": {prefix + k: v for k, v in dims["mlp_dims"].items()}}
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


# --------------------------------------------------------------------------- records -> frames


def _read(pipe, cfg) -> dict:
    """The records of every stage, by role: train, search, fine-tunes (by ratio), reference,
    provenance."""
    g = pipe.graph(cfg)
    recs = {s.name: s.record() for s in g}
    tunes = sorted((recs[s.name] for s in g.select("finetune")),
                   key=lambda r: r["metrics"]["ratio"])
    prov = report.provenance(cfg, pd.DataFrame(list(recs.values())))
    return {"train": recs[g.get("train").name], "search": recs[g.get("search").name],
            "tunes": tunes, "reference": recs[g.get("reference").name], "prov": prov,
            "note": profile_note(cfg)}


def _ref_rows(r: dict) -> dict:
    return {(x["kind"], x["ratio"]): x for x in r["reference"]["metrics"]["rows"]}


def _m(v) -> float:
    return round(v / 1e6, 2)


def _table2(r: dict) -> pd.DataFrame:
    rows = _ref_rows(r)
    nan = float("nan")
    out = []
    for t in r["tunes"]:
        m = t["metrics"]
        ratio = m["ratio"]
        p = PAPER_TABLE2.get(round(ratio, 2), (nan,) * 4)
        u, lr = rows.get(("uniform", ratio), {}), rows.get(("learned", ratio), {})
        out.append({
            "PR": f"{ratio:.0%}",
            "box AP": round(m["bbox_AP"], 2), "mask AP": round(m["segm_AP"], 2),
            "box AP50": round(m["bbox_AP50"], 2),
            "paper box mAP": p[0], "paper mask mAP": p[1],
            "total params learned (M)": _m(lr.get("params", nan)),
            "total params uniform (M)": _m(u.get("params", nan)),
            "paper total (M)": p[2],
            "backbone learned (M)": _m(lr.get("backbone_params", nan)),
            "backbone uniform (M)": _m(u.get("backbone_params", nan)),
            "paper backbone (M)": p[3],
            "FLOPs learned (G)": round(lr.get("flops", nan) / 1e9, 1),
            "FLOPs uniform (G)": round(u.get("flops", nan) / 1e9, 1),
            "Swin baseline FLOPs (G)": SWIN_BASELINE["flops_G"] if ratio == 0 else nan,
        })
    return pd.DataFrame(out)


def _runs(r: dict) -> pd.DataFrame:
    out = []
    tr = r["train"]["metrics"]
    for name, m in (("untrained", tr["untrained"]), ("train", tr), ("search", r["search"]["metrics"])):
        out.append({"stage": name, "PR": "", "epochs": m.get("epochs", 0),
                    **{k: round(m[k], 2) for k in AP_KEYS}, "params (M)": _m(m["params"])
                    if "params" in m else _m(tr["params"]), "GFLOPs": None})
    for t in r["tunes"]:
        m = t["metrics"]
        for name, x in (("pruned, no FT", m["pruned_no_ft"]), ("fine-tuned", m)):
            out.append({"stage": name, "PR": f"{m['ratio']:.0%}",
                        "epochs": m["epochs"] if x is m else 0,
                        **{k: round(x[k], 2) for k in AP_KEYS}, "params (M)": _m(m["params"]),
                        "GFLOPs": round(m["flops"] / 1e9, 2)})
    return pd.DataFrame(out)


def _tables(pipe, cfg) -> dict[str, pd.DataFrame]:
    """``table2``: SiDT Table II beside ours (box / mask AP of our run on its data; total and
    backbone params and FLOPs at 1280 x 800 of the Swin-T Cascade Mask R-CNN pruned with our
    learned widths and uniformly); ``runs``: every stage of our run (AP before and after
    fine-tuning, the untrained detector as chance, params and FLOPs of the detector we
    trained, at its own test size)."""
    r = _read(pipe, cfg)
    h, w = cfg.flops_size
    ours = f"Ours: {r['prov']}{r['note']}"
    t2 = _table2(r)
    t2.attrs["caption"] = (
        f"SiDT Table II. {ours}. Box / mask AP (COCOeval, IoU 0.50:0.95) of our `{cfg.model}` "
        f"on {pipe.data_label(cfg)}, after fine-tuning; params and FLOPs: `{cfg.reference_model}` "
        f"({cfg.reference_classes} classes) with its backbone pruned by our learned per-stage "
        f"widths and uniformly, FLOPs at {w} x {h} with {cfg.flops_boxes} / {cfg.flops_masks} "
        f"RoIs through the box / mask heads ({report.FLOPS_NOTE}; attention matmuls counted, "
        f"RoIAlign / NMS not). Paper: Table II, COCO val, Swin-T; the Swin baseline's FLOPs "
        f"from its model zoo.")
    ru = _runs(r)
    ru.attrs["caption"] = (f"Every stage of our run. {ours}. AP on {pipe.data_label(cfg)}; "
                           f"`untrained` = the randomly initialised detector (chance); params "
                           f"and FLOPs of `{cfg.model}` at its test size.")
    return {"table2": t2, "runs": ru}


# --------------------------------------------------------------------------- figures


def _figures(pipe, cfg) -> dict:
    """``tradeoff``: box / mask AP change vs pruning ratio (ours after fine-tuning and right
    after pruning, the paper's Table II), the Swin-T detector's params vs ratio (ours learned
    / uniform, paper), and the training loss of every stage."""
    import matplotlib.pyplot as plt

    r = _read(pipe, cfg)
    t = _runs(r)
    ft = t[t["stage"] == "fine-tuned"]
    nf = t[t["stage"] == "pruned, no FT"]
    ratios = [x["metrics"]["ratio"] for x in r["tunes"]]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    ax = axes[0]
    for key, label, mk in (("bbox_AP", "box", "o"), ("segm_AP", "mask", "s")):
        ax.plot([100 * x for x in ratios], ft[key] - ft[key].iloc[0], marker=mk,
                label=f"ours {label}, fine-tuned")
        ax.plot([100 * x for x in ratios], nf[key].values - ft[key].iloc[0], marker=mk, ls=":",
                label=f"ours {label}, pruned, no FT")
    pr = sorted(PAPER_TABLE2)
    for i, (label, mk) in enumerate((("box", "x"), ("mask", "+"))):
        ax.scatter([100 * x for x in pr], [PAPER_TABLE2[x][i] - PAPER_TABLE2[0.0][i] for x in pr],
                   marker=mk, color="black", zorder=5, label=f"paper {label} (COCO)")
    ax.axhline(0, color="grey", lw=0.8, ls="--")
    ax.set_xlabel("pruning ratio (%)")
    ax.set_ylabel("AP - AP at PR 0 (points)")
    ax.set_title(f"ours on {pipe.data_label(cfg)}", fontsize=8)
    ax.legend(fontsize=6)
    ax.grid(alpha=0.3)
    ax = axes[1]
    ref = pd.DataFrame(r["reference"]["metrics"]["rows"])
    for kind, g in ref.groupby("kind"):
        g = g.sort_values("ratio")
        ax.plot(100 * g["ratio"], g["params"] / 1e6, marker="o", label=f"ours total, {kind}")
        ax.plot(100 * g["ratio"], g["backbone_params"] / 1e6, marker="s", ls=":",
                label=f"ours backbone, {kind}")
    ax.scatter([100 * x for x in pr], [PAPER_TABLE2[x][2] for x in pr], marker="x",
               color="black", zorder=5, label="paper total")
    ax.scatter([100 * x for x in pr], [PAPER_TABLE2[x][3] for x in pr], marker="+",
               color="black", zorder=5, label="paper backbone")
    ax.set_xlabel("pruning ratio (%)")
    ax.set_ylabel(f"params (M), {cfg.reference_model}, {cfg.reference_classes} classes")
    ax.legend(fontsize=6)
    ax.grid(alpha=0.3)
    ax = axes[2]
    start = 0
    for rec in [r["train"], r["search"], *r["tunes"]]:
        hist = rec["metrics"]["history"]
        xs = range(start + 1, start + len(hist) + 1)
        ax.plot(xs, [h["train_loss"] for h in hist], marker=".", label=rec["name"])
        start += len(hist)
    ax.set_xlabel("epoch (stages one after another)")
    ax.set_ylabel("training loss (sum of the detector's losses)")
    ax.legend(fontsize=6)
    ax.grid(alpha=0.3)
    fig.suptitle(f"SiDT Table II as plots — {r['prov']}{r['note']}", fontsize=9)
    fig.tight_layout()
    return {"tradeoff": fig}


# --------------------------------------------------------------------------- summary


def _join(values, fmt: str) -> str:
    return " / ".join(format(v, fmt) for v in values)


def _summary(pipe, cfg) -> str:
    """Sentences about the run, every number read from the records: the Swin-T detector's
    size beside the paper's, the pruned sizes, the ratio-0 identity, and the trained part
    (AP per ratio against chance, epochs, time, device)."""
    r = _read(pipe, cfg)
    rows = _ref_rows(r)
    ratios = [t["metrics"]["ratio"] for t in r["tunes"]]
    pr = [x for x in ratios if x > 0]
    u0 = rows[("uniform", 0.0)]
    h, w = cfg.flops_size
    out = [f"Cascade Mask R-CNN with a timm Swin-T + FPN backbone, built from torchvision's "
           f"detection parts in the Swin baseline's configuration (`{cfg.reference_model}`, "
           f"{cfg.reference_classes} classes): {u0['params'] / 1e6:.2f} M parameters "
           f"(paper {PAPER_TABLE2[0.0][2]} M), backbone {u0['backbone_params'] / 1e6:.2f} M "
           f"(paper {PAPER_TABLE2[0.0][3]} M), {u0['flops'] / 1e9:.1f} GFLOPs at {w} x {h} "
           f"(Swin baseline {SWIN_BASELINE['flops_G']} G)."]
    if pr:
        lrn = [rows.get(("learned", x)) for x in pr]
        uni = [rows[("uniform", x)] for x in pr]
        s = (f"Its backbone pruned by {_join([100 * x for x in pr], '.0f')} % of the SiDT "
             f"dimensions counts {_join([u['backbone_params'] / 1e6 for u in uni], '.2f')} M "
             f"uniformly (whole detector {_join([u['params'] / 1e6 for u in uni], '.2f')} M)")
        if all(lrn):
            s += (f" and {_join([x['backbone_params'] / 1e6 for x in lrn], '.2f')} M with our "
                  f"searched per-stage widths (detector "
                  f"{_join([x['params'] / 1e6 for x in lrn], '.2f')} M)")
        s += (f"; paper {_join([PAPER_TABLE2[round(x, 2)][3] for x in pr], 'g')} M backbone, "
              f"{_join([PAPER_TABLE2[round(x, 2)][2] for x in pr], 'g')} M total.")
        out.append(s)
    p0 = r["tunes"][0]["metrics"]
    ident = p0.get("identity")
    if ident:
        same = "the same detections" if ident["same_detections"] else "different detections"
        out.append(f"Pruning at ratio 0 removes only the scores: on {ident['images']} test "
                   f"images the pruned detector gives {same} as the searched one "
                   f"({ident['detections']} boxes; largest differences "
                   f"{ident['max_box_diff']:.1e} px in a box, {ident['max_score_diff']:.1e} in a "
                   f"score, {ident['max_mask_diff']:.1e} in a mask probability).")
    tr, se = r["train"]["metrics"], r["search"]["metrics"]
    ft = [t["metrics"] for t in r["tunes"]]
    wall = (r["train"]["wall_time_s"] + r["search"]["wall_time_s"]
            + sum(t["wall_time_s"] for t in r["tunes"])) / 60
    dev = report.device_label([r["train"], r["search"], *r["tunes"]])
    un = tr["untrained"]
    out.append(
        f"Trained part (`{cfg.profile}` profile, {pipe.data_label(cfg)}, {tr['train_images']} "
        f"training / {tr['test_images']} test images): `{cfg.model}` "
        f"({tr['params'] / 1e6:.2f} M parameters) trained {tr['epochs']} epochs to box AP50 "
        f"{tr['bbox_AP50']:.1f} (AP {tr['bbox_AP']:.1f}, mask AP {tr['segm_AP']:.1f}; the "
        f"untrained detector, chance: box AP50 {un['bbox_AP50']:.1f}), searched "
        f"{se['epochs']} epochs with L1 {cfg.l1_strength:g} (box AP {se['bbox_AP']:.1f}), "
        f"pruned at PR {_join([100 * x for x in ratios], '.0f')} % and fine-tuned "
        f"{ft[0]['epochs']} epochs each: box AP {_join([m['bbox_AP'] for m in ft], '.1f')}, "
        f"mask AP {_join([m['segm_AP'] for m in ft], '.1f')} "
        f"(right after pruning: box AP "
        f"{_join([m['pruned_no_ft']['bbox_AP'] for m in ft], '.1f')}); "
        f"{wall:.0f} min on {dev} (`figures/sidt_detection/table2-{cfg.profile}.md`).")
    return " ".join(out)


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
