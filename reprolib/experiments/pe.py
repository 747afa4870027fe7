"""PE pipeline (Koyun & Töreyin 2024, ``../shared/papers/pe.md``): Tables 1-2 counted, the
ResNet sharing rule analysed, a PE model trained against its unshared twin.

Stages, in run order (:func:`stages`):

* ``table1`` / ``table2``: params and FLOPs (224 px, 1000 classes, 1 multiply-add = 1 FLOP)
  of every row of the paper's Tables 1-2 that reprolib, timm or torchvision can build,
  counted on PyTorch's ``meta`` device, beside the printed numbers;
* ``sharing``: ResNet50-PE¹ / PE² params under every sharing rule and two classifier widths;
* one training stage per model (DeiT recipe ``cfg.vit_train`` for ``vit_model`` /
  ``vit_twin``, torchvision recipe ``cfg.resnet_train`` for ``<resnet_model>-stages<v>`` and
  ``resnet_twin``): fit, measure, save in the compressed-model format.

Multi-GPU: ``torchrun --nproc_per_node=8 -m reprolib compute pe --profile paper`` runs
:func:`run` in every process; each training stage trains under DistributedDataParallel (the
recipes' lr is scaled to the global batch), rank 0 alone writes records and models.
"""

from __future__ import annotations

import dataclasses

import functools
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn as nn

from reprolib.core import report
from reprolib.configs.pe import PAPER_TABLE1, PAPER_TABLE2
from reprolib.core.device import is_main_process, world
from reprolib.errors import ReprolibError
from reprolib.experiments import evidence
from reprolib.core.pipeline import (Stage, key_of, load_data, profile_note, records,
                                         run_stages, seed_everything, train_and_measure)
from reprolib.core.measure import count_flops, count_params
from reprolib.methods import pe as M
from reprolib.core.registry import create_model

PAPER = "pe"
README_FIGURE = "acc_vs_params"
README_EVIDENCE_FIGURE = "evidence"

# Paper row name -> how we build it: ("timm", name, kwargs), ("torchvision", name, kwargs),
# ("reprolib", name, kwargs) or None when neither timm nor torchvision has the model.
TABLE1_SOURCES: dict[str, tuple | None] = {
    "DeiT-T/16": ("timm", "deit_tiny_patch16_224", {}),
    "PVT-T": None, "PVT-S": None, "PVT-M": None, "PVT-L": None,   # PVT v1: not in timm
    "PVTv2-B1": ("timm", "pvt_v2_b1", {}),
    "ViT-PE¹ (ours)": ("reprolib", "vit_pe_small", {}),
    "ViT-PE² (ours)": ("reprolib", "vit_pe_small", {}),           # same net, 600 epochs
    "DeiT-S/16": ("timm", "deit_small_patch16_224", {}),
    "T2T-ViT-14": None, "T2T-ViT-19": None, "T2T-ViT-24": None,   # not in timm
    "TNT-S": ("timm", "tnt_s_patch16_224", {}),
    "SWin-T": ("timm", "swin_tiny_patch4_window7_224", {}),
    "CvT-13": None, "CvT-21": None,                               # not in timm
    "Twins-SVT-S": ("timm", "twins_svt_small", {}),
    "FocalAtt-Tiny": None, "FocalAtt-Small": None, "FocalAtt-Base": None,  # timm has FocalNet, a different model
    "PVTv2-B2": ("timm", "pvt_v2_b2", {}),
    "PVTv2-B2-li": ("timm", "pvt_v2_b2_li", {}),
    "TNT-B": ("timm", "tnt_b_patch16_224", {}),
    "SWin-S": ("timm", "swin_small_patch4_window7_224", {}),
    "SWin-B": ("timm", "swin_base_patch4_window7_224", {}),
    "Twins-SVT-B": ("timm", "twins_svt_base", {}),
    "Twins-SVT-L": ("timm", "twins_svt_large", {}),
    "PVTv2-B3": ("timm", "pvt_v2_b3", {}),
    "PVTv2-B4": ("timm", "pvt_v2_b4", {}),
    "PVTv2-B5": ("timm", "pvt_v2_b5", {}),
}
TABLE2_SOURCES: dict[str, tuple | None] = {
    "ResNet18": ("torchvision", "resnet18", {}),
    "ResNet34": ("torchvision", "resnet34", {}),
    "ResNet50": ("torchvision", "resnet50", {}),
    "ResNet50-PE¹ (Ours)": ("reprolib", "resnet50_pe", {"pe_stages": (1, 2, 3, 4)}),
    "ResNet50-PE² (Ours)": ("reprolib", "resnet50_pe", {"pe_stages": (3, 4)}),
}

#: The paper's own models and their unshared twins (builder, kwargs), as counted in the
#: summary and the notebook's checked cell.
PAPER_MODELS: dict[str, tuple[str, dict]] = {
    "ViT-PE": ("vit_pe_small", {}),
    "DeiT-S": ("vit_small", {}),
    "ResNet50-PE¹": ("resnet50_pe", {"pe_stages": (1, 2, 3, 4)}),
    "ResNet50-PE²": ("resnet50_pe", {"pe_stages": (3, 4)}),
    "ResNet-50": ("resnet50", {}),
}


# --------------------------------------------------------------------------- counting


def build(source: tuple, num_classes: int = 1000, device: str = "meta") -> nn.Module:
    """Build a model from a ``(library, name, kwargs)`` source without pretrained weights.

    device: "meta" (default) allocates nothing, which is all counting needs; "cpu" for a
    usable model.  num_classes: classifier outputs (1000).
    """
    lib, name, kw = source
    with torch.device(device):
        if lib == "timm":
            import timm
            return timm.create_model(name, pretrained=False, num_classes=num_classes, **kw)
        if lib == "torchvision":
            import torchvision
            return getattr(torchvision.models, name)(weights=None, num_classes=num_classes, **kw)
        if lib == "reprolib":
            return create_model(name, num_classes=num_classes, **kw)
    raise ReprolibError(f"unknown model library {lib!r}; valid: timm, torchvision, reprolib")


def count_table(sources: dict[str, tuple | None], paper: dict[str, dict], image_size: int = 224,
                num_classes: int = 1000) -> list[dict]:
    """One row per paper row: our counted params / FLOPs (M / G) beside the printed ones.

    sources: TABLE1_SOURCES or TABLE2_SOURCES.  paper: the printed table
    (``reprolib.configs.pe.PAPER_TABLE1`` / ``PAPER_TABLE2``).  image_size / num_classes:
    input side (224, the tables') and classifier width (1000, ImageNet-1k).  Models the
    libraries lack get ``None`` in our columns and ``source = "not in timm/torchvision"``.
    Counted on the meta device: ``count_params`` (a shared tensor once), ``count_flops``
    (batch 1, 1 multiply-add = 1 FLOP, attention matmuls included).
    """
    rows = []
    for name, src in sources.items():
        p = paper[name]
        row = {"model": name, "source": "not in timm/torchvision", "params_M": None,
               "GFLOPs": None, "paper_params_M": p["params_M"], "paper_GFLOPs": p["GFLOPs"],
               "paper_top1": p["top1"]}
        if src is not None:
            m = build(src, num_classes)
            row.update(source=f"{src[0]}:{src[1]}" + "".join(f" {k}={v}" for k, v in src[2].items()),
                       params_M=count_params(m) / 1e6,
                       GFLOPs=count_flops(m, (3, image_size, image_size)) / 1e9)
        rows.append(row)
    return rows


def resnet_sharing_table(num_classes=(1000, 100)) -> list[dict]:
    """Params of ResNet50-PE^1 / PE^2 under every sharing rule and classifier width (counted).

    Rules (``reprolib.methods.pe.SHARING_RULES``): eq. (6) alone (tie W / W^T inside each
    block), + one 3x3 kernel per stage (share_3x3), + one W per stage (share_1x1), both.
    num_classes: classifier widths to try.  Shows which rule and width give the printed
    12.8 M / 13.4 M (``reprolib.methods.pe.sharing_verdict``).
    """
    rows = []
    for s1 in (False, True):
        for s3 in (False, True):
            for nc in num_classes:
                row = {"share_1x1": s1, "share_3x3": s3, "num_classes": nc}
                for tag, stages_ in (("PE1", (1, 2, 3, 4)), ("PE2", (3, 4))):
                    m = build(("reprolib", "resnet50_pe",
                               dict(pe_stages=stages_, share_1x1=s1, share_3x3=s3)), nc)
                    row[f"{tag}_params_M"] = count_params(m) / 1e6
                rows.append(row)
    return rows


@functools.lru_cache(maxsize=32)
def _count(builder: str, kwargs: tuple, num_classes: int, image_size: int) -> tuple[int, int]:
    m = build(("reprolib", builder, dict(kwargs)), num_classes)
    return count_params(m), count_flops(m, (3, image_size, image_size))


def model_counts(num_classes: int = 1000, image_size: int = 224,
                 models=None) -> list[dict]:
    """Params and FLOPs of the paper's models and twins (:data:`PAPER_MODELS`, or the labels
    in ``models``) with a ``num_classes`` head at ``image_size`` px, counted on the meta
    device (deterministic, memoised): ``[{"model", "builder", "kwargs", "params", "flops"}]``."""
    out = []
    for label in (models or PAPER_MODELS):
        name, kw = PAPER_MODELS[label]
        p, f = _count(name, tuple(sorted(kw.items())), int(num_classes), int(image_size))
        out.append({"model": label, "builder": name, "kwargs": dict(kw), "params": p, "flops": f})
    return out


# --------------------------------------------------------------------------- training


def family(model_name: str) -> str:
    """"vit" or "resnet": which recipe (DeiT or torchvision) trains ``model_name``."""
    if "vit" in model_name:
        return "vit"
    if "resnet" in model_name:
        return "resnet"
    raise ReprolibError(f"model {model_name!r} is neither a ViT nor a ResNet of the PE paper")


def train_config(cfg, fam: str):
    """The training recipe (``TrainConfig``) of family ``fam``: ``cfg.vit_train`` (DeiT) for
    "vit", ``cfg.resnet_train`` (torchvision) for "resnet"."""
    if fam not in ("vit", "resnet"):
        raise ReprolibError(f"unknown recipe {fam!r}; valid: vit, resnet")
    return getattr(cfg, f"{fam}_train")


def scaled_lr(recipe, processes: int | None = None) -> float:
    """The peak lr ``fit`` uses: ``lr x batch_size x processes / lr_ref_batch`` when the
    recipe states its lr for a reference batch (the linear scaling rule), else ``lr``.
    processes: default the current torch.distributed world size."""
    return recipe.peak_lr(world()[1] if processes is None else processes)


def model_kwargs(cfg, model_name: str, kwargs: dict | None = None) -> dict:
    """The builder arguments of a training run beyond ``num_classes``: the family's
    ``cfg.vit_kwargs`` / ``cfg.resnet_kwargs``, then ``kwargs`` (e.g. ``pe_stages``),
    stochastic depth for ViTs, the input side for the 224 px DeiT-S pair."""
    kw = {**dict(getattr(cfg, f"{family(model_name)}_kwargs", None) or {}), **dict(kwargs or {})}
    if family(model_name) == "vit":
        kw["drop_path_rate"] = cfg.vit_drop_path
    if cfg.image_size != 224 and model_name in ("vit_pe_small", "vit_small"):
        kw["img_size"] = cfg.image_size
    return kw


def training_runs(cfg) -> list[dict]:
    """The trainings ``cfg`` asks for: ``{"name", "model", "kwargs", "recipe"}`` each.

    ViT: ``vit_model`` and ``vit_twin`` (recipe "vit_train").  ResNet: ``resnet_model`` once
    per entry of ``resnet_variants`` (a string of stage digits, "1234" = PE^1, "34" = PE^2)
    and ``resnet_twin`` (recipe "resnet_train").  Empty names are skipped.
    """
    runs = []
    for m in (cfg.vit_model, cfg.vit_twin):
        if m:
            runs.append({"name": m, "model": m, "kwargs": {}, "recipe": "vit_train"})
    if cfg.vit_model and cfg.vit_long_epochs:   # the ViT-PE^2 row: same recipe, longer
        runs.append({"name": f"{cfg.vit_model}-{cfg.vit_long_epochs}ep", "model": cfg.vit_model,
                     "kwargs": {}, "recipe": "vit_train", "epochs": cfg.vit_long_epochs})
    if cfg.resnet_model:
        for v in cfg.resnet_variants:
            stages_ = tuple(int(c) for c in str(v))
            runs.append({"name": f"{cfg.resnet_model}-stages{v}", "model": cfg.resnet_model,
                         "kwargs": {"pe_stages": stages_}, "recipe": "resnet_train"})
    if cfg.resnet_twin:
        runs.append({"name": cfg.resnet_twin, "model": cfg.resnet_twin, "kwargs": {},
                     "recipe": "resnet_train"})
    if cfg.narrowed:
        for pe_run, twin in _pair_runs(cfg, runs):
            runs.append({"name": f"{twin['name']}-narrow", "model": twin["model"], "kwargs": {},
                         "recipe": twin["recipe"], "narrow_to": pe_run})
    return runs


def _pair_runs(cfg, runs: list[dict]) -> list[tuple[dict, dict]]:
    """(PE run, its unshared twin run) per family: the ViT pair, the first ResNet variant."""
    by = {r["name"]: r for r in runs}
    out = []
    if cfg.vit_model and cfg.vit_twin:
        out.append((by[cfg.vit_model], by[cfg.vit_twin]))
    if cfg.resnet_model and cfg.resnet_twin and cfg.resnet_variants:
        out.append((by[f"{cfg.resnet_model}-stages{cfg.resnet_variants[0]}"], by[cfg.resnet_twin]))
    return out


def narrowed_kwargs(model_name: str, kwargs: dict, target_params: int,
                    num_classes: int) -> dict:
    """``kwargs`` of the unshared ``model_name`` with its width narrowed so its parameter
    count is closest to ``target_params`` (counted on the meta device): a ViT's
    ``embed_dim`` in steps of its head count, a ResNet's ``base`` width in steps of 1."""
    def build_(kw):
        with torch.device("meta"):
            return create_model(model_name, num_classes=num_classes, **kw)

    m = build_(kwargs)
    if family(model_name) == "vit":
        key, step, full = "embed_dim", int(m.blocks[0].attn.num_heads), int(m.embed_dim)
    else:
        key, step, full = "base", 1, int(m.conv1.out_channels)
    best = min(range(step, full + 1, step),
               key=lambda w: abs(count_params(build_({**kwargs, key: w})) - target_params))
    return {**kwargs, key: best}


def train_model(cfg, model_name: str, ckpt_dir=None, kwargs: dict | None = None,
                seed: int | None = None, epochs: int | None = None) -> tuple[nn.Module, dict]:
    """Train the registered ``model_name`` with its recipe on ``cfg.dataset``.

    Returns ``(model, metrics)``: the metrics of ``train_and_measure`` (test top-1 ``acc`` %,
    ``params``, ``flops`` at ``cfg.image_size``, latency, ``epochs``, ``history`` ...) plus
    the peak ``lr`` used and the number of ``processes``.  ckpt_dir: checkpoint folder
    (resumes).  kwargs: builder arguments (:func:`model_kwargs`); a callable
    ``kwargs(num_classes) -> dict`` is called with the data set's class count first.  The
    weights are initialised from ``seed`` (default ``cfg.seed``) right before the model is
    built.
    """
    recipe = train_config(cfg, family(model_name))
    if epochs:    # a longer run of the same recipe (ViT-PE^2: 600 epochs)
        recipe = dataclasses.replace(recipe, epochs=int(epochs))
    data = load_data(cfg, recipe)   # per-process batch from the global one, recipe's augmentation
    if callable(kwargs):
        kwargs = kwargs(data.num_classes)
    seed_everything(cfg.seed if seed is None else seed)
    model = create_model(model_name, num_classes=data.num_classes, **(kwargs or {}))
    metrics = train_and_measure(model, data, recipe, ckpt_dir, device=cfg.device,
                                desc=model_name)
    return model, {**metrics, "lr": scaled_lr(recipe), "processes": world()[1]}


# --------------------------------------------------------------------------- stages


def table_stages(cfg) -> list[Stage]:
    """``table1``, ``table2``, ``sharing``: counts at ``table_image_size`` /
    ``table_num_classes`` (``{"rows": [...]}`` each)."""
    # meta-device counts: nothing random, so the seed is pinned (changing cfg.seed re-keys
    # only the trainings)
    key = key_of(cfg, "table_image_size", "table_num_classes", seed=0)
    conf = {"image_size": cfg.table_image_size, "num_classes": cfg.table_num_classes}
    jobs = {
        "table1": lambda _: {"rows": count_table(TABLE1_SOURCES, PAPER_TABLE1, **conf)},
        "table2": lambda _: {"rows": count_table(TABLE2_SOURCES, PAPER_TABLE2, **conf)},
        "sharing": lambda _: {"rows": resnet_sharing_table((cfg.table_num_classes, 100))},
    }
    # a table's rows are part of what it depends on: another list of sources is another record
    rows = {"table1": list(TABLE1_SOURCES), "table2": list(TABLE2_SOURCES), "sharing": None}
    return [Stage(cfg, name, {**key, "rows": rows[name]} if rows[name] else key, fn)
            for name, fn in jobs.items()]


def _training_stage(cfg, run: dict, suffix: str = "") -> Stage:
    kw = model_kwargs(cfg, run["model"], run["kwargs"])
    extra, build_kw, narrow = {}, kw, {}
    if run.get("narrow_to"):       # the twin narrowed to the PE model's parameter count
        to = run["narrow_to"]
        to_kw = model_kwargs(cfg, to["model"], to["kwargs"])
        extra = {"narrow_to": {"model": to["model"], "model_kwargs": to_kw}}

        def build_kw(num_classes):
            with torch.device("meta"):
                target = count_params(create_model(to["model"], num_classes=num_classes, **to_kw))
            narrow.update(narrowed_kwargs(run["model"], kw, target, num_classes))
            narrow["target_params"] = target
            return {k: v for k, v in narrow.items() if k != "target_params"}

    def fn(stage: Stage) -> dict:
        model, metrics = train_model(cfg, run["model"], stage.ckpt_dir, build_kw,
                                     seed=stage.seed, epochs=run.get("epochs"))
        if is_main_process():
            stage.save_model(model)
        if narrow:
            metrics = {**metrics, "narrowed_kwargs": {k: v for k, v in narrow.items()
                                                      if k != "target_params"},
                       "target_params": narrow["target_params"]}
        return metrics

    key = key_of(cfg, "dataset", "image_size", run["recipe"], model=run["model"],
                 model_kwargs=kw, **extra)
    if run.get("epochs"):
        key[run["recipe"]] = {**key[run["recipe"]], "epochs": run["epochs"]}
    return Stage(cfg, f"{run['name']}{suffix}", key, fn)


def training_stages(cfg) -> list[Stage]:
    """One stage per run of :func:`training_runs`, named as the run."""
    return [_training_stage(cfg, r) for r in training_runs(cfg)]


def evidence_stages(cfg) -> dict[int, dict[str, Stage]]:
    """With ``cfg.seeds``: per seed, every run of :func:`training_runs` by run name
    (``cfg.seed``'s are :func:`training_stages`; the others' names end ``-s<seed>``)."""
    out = {}
    for seed in dict.fromkeys(int(x) for x in cfg.seeds):
        c = evidence.seeded(cfg, seed)
        sfx = evidence.seed_suffix(seed, cfg.seed)
        out[seed] = {r["name"]: _training_stage(c, r, sfx) for r in training_runs(cfg)}
    return out


def stages(cfg) -> list[Stage]:
    """Every stage in run order: the three count tables, then the trainings, then (with
    ``cfg.seeds``) the trainings of the other seeds."""
    ev = [s for seed, st in evidence_stages(cfg).items() if seed != cfg.seed
          for s in st.values()]
    return table_stages(cfg) + training_stages(cfg) + ev


def run(cfg, force: bool = False) -> dict[str, dict]:
    """Count, analyse and train (cached records); returns ``{stage name: record}``.  Under
    torchrun every process runs this; rank 0 writes the records and models."""
    return run_stages(stages(cfg), force)


def run_tables(cfg, force: bool = False) -> dict[str, dict]:
    """Only the count stages (``table1``, ``table2``, ``sharing``)."""
    return run_stages(table_stages(cfg), force)


def run_training(cfg, force: bool = False) -> dict[str, dict]:
    """Only the training stages."""
    return run_stages(training_stages(cfg), force)


# --------------------------------------------------------------------------- frames


_OURS_RUN = {"ViT-PE¹ (ours)": "vit_pe_small", "ViT-PE² (ours)": "vit_pe_small-600ep",
             "DeiT-S/16": "vit_small",
             "ResNet50-PE¹ (Ours)": "resnet50_pe-stages1234",
             "ResNet50-PE² (Ours)": "resnet50_pe-stages34", "ResNet50": "resnet50"}


_COUNT_COLS = ("model", "source", "params_M", "GFLOPs", "paper_params_M", "paper_GFLOPs",
               "paper_top1")
_SHARING_COLS = ("share_1x1", "share_3x3", "num_classes", "PE1_params_M", "PE2_params_M")


def _imagenet_top1(train_recs: dict) -> dict[str, float]:
    """Our ImageNet top-1 by run name (only records trained on ImageNet count)."""
    return {n: r["metrics"]["acc"] for n, r in train_recs.items()
            if r["config"].get("dataset") == "imagenet" and "acc" in r["metrics"]}


def count_frame(recs: dict, which: str, train_recs: dict | None = None) -> pd.DataFrame:
    """The ``which`` ("table1" / "table2" / "sharing") record as a DataFrame; Tables 1-2 get
    a ``top1`` column (ours on ImageNet where we trained it, else the paper's) and
    ``top1_from`` saying which.  recs / train_recs: ``{stage name: record}``."""
    cols = _SHARING_COLS if which == "sharing" else _COUNT_COLS
    df = pd.DataFrame(recs[which]["metrics"]["rows"])[list(cols)]  # records store keys sorted
    if which == "sharing":
        return df
    ours = _imagenet_top1(train_recs or {})
    run_ = df["model"].map(_OURS_RUN)
    df["top1"] = [ours.get(r, p) for r, p in zip(run_, df["paper_top1"])]
    df["top1_from"] = ["ours (ImageNet)" if r in ours else "paper" for r in run_]
    return df


def training_frame(train_recs: dict) -> pd.DataFrame:
    """One row per training record: run, params, FLOPs at the training resolution, epochs,
    test top-1, training time, data set."""
    cols = ["run", "params", "flops", "epochs", "top1", "train_time_s", "data"]
    rows = [{"run": n, "params": int(r["metrics"]["params"]), "flops": int(r["metrics"]["flops"]),
             "epochs": int(r["metrics"]["epochs"]), "top1": r["metrics"]["acc"],
             "train_time_s": r["metrics"]["train_time_s"], "data": r["config"]["dataset"]}
            for n, r in sorted(train_recs.items()) if r["metrics"].get("acc") is not None]
    return pd.DataFrame(rows, columns=cols)


def _records(cfg) -> tuple[dict, dict]:
    """(count-table records, training records) of ``cfg``, by stage name."""
    return records(table_stages(cfg)), records(training_stages(cfg))


def _data_name(cfg) -> str:
    ds = str(cfg.dataset)
    return Path(ds[4:]).name if ds.startswith("npz:") else ds


def _train_provenance(cfg, train_recs: dict) -> str:
    """profile, data, epochs of the recipes that trained something, device."""
    used = []
    for r in training_runs(cfg):
        if r["recipe"] not in used:
            used.append(r["recipe"])
    parts = [f"profile={cfg.profile}", f"data={_data_name(cfg)}"]
    parts += [f"{u}={getattr(cfg, u).epochs} ep" for u in used]
    parts.append(f"device={report.device_label(train_recs.values())}")
    return " · ".join(parts)


# --------------------------------------------------------------------------- tables, figures


def tables(cfg) -> dict[str, pd.DataFrame]:
    """``table1`` / ``table2`` (the paper's Tables 1-2: our counts beside the printed params,
    FLOPs, top-1), ``sharing`` (ResNet50-PE params by sharing rule and classifier width),
    ``training`` (PE vs unshared twin: params, FLOPs, epochs, top-1, time)."""
    recs, train_recs = _records(cfg)
    note = profile_note(cfg)
    counted = (f"counted by reprolib on PyTorch's meta device at {cfg.table_image_size} px, "
               f"{cfg.table_num_classes} classes, beside the paper's; {report.FLOPS_NOTE}; "
               f"profile={cfg.profile}{note}")
    t1 = count_frame(recs, "table1", train_recs)
    t1.attrs["caption"] = f"Table 1 (ImageNet ViTs): params (M) and GFLOPs {counted}"
    t2 = count_frame(recs, "table2", train_recs)
    t2.attrs["caption"] = f"Table 2 (ImageNet ResNets): params (M) and GFLOPs {counted}"
    sh = count_frame(recs, "sharing")
    p1, p2 = (PAPER_TABLE2[k]["params_M"] for k in ("ResNet50-PE¹ (Ours)", "ResNet50-PE² (Ours)"))
    sh.attrs["caption"] = (f"ResNet50-PE params (M) by sharing rule and classifier width; "
                           f"paper: PE¹ {p1:g}, PE² {p2:g}; counted at {cfg.table_image_size} "
                           f"px; profile={cfg.profile}{note}")
    tr = training_frame(train_recs)
    tr.attrs["caption"] = (f"PE vs unshared twin ({_train_provenance(cfg, train_recs)}); FLOPs at "
                           f"{cfg.image_size} px ({report.FLOPS_NOTE}){note}")
    out = {"table1": t1, "table2": t2, "sharing": sh, "training": tr}
    if cfg.seeds:
        out.update(evidence_tables(cfg))
    return out


#: The kinds of our training runs, with their colour and marker in every figure.
RUN_KINDS = {"PE": {"color": "tab:red", "marker": "o"},
             "unshared twin": {"color": "tab:blue", "marker": "s"},
             "narrowed twin": {"color": "tab:grey", "marker": "^"}}


def run_kind(run: str) -> str:
    """"PE", "narrowed twin" or "unshared twin": what a training run of this paper is."""
    base = run.rsplit("-s", 1)[0] if "-s" in run and run.rsplit("-s", 1)[1].isdigit() else run
    if base.endswith("-narrow"):
        return "narrowed twin"
    return "PE" if "pe" in base.split("-stages")[0].replace("unshared", "") else "unshared twin"


def place_labels(ax, xs, ys, labels, fontsize: float = 7, colors=None) -> None:
    """Annotate each point with its label at the first of eight offsets around it whose box
    overlaps no label placed before and no point (greedy, in display coordinates; the axes
    limits are fixed first)."""
    ax.autoscale_view()
    ax.set_xlim(ax.get_xlim())
    ax.set_ylim(ax.get_ylim())
    scale = ax.figure.dpi / 72.0
    pts = ax.transData.transform(np.column_stack([np.asarray(xs, float), np.asarray(ys, float)]))
    cands = [(3, 2), (3, -8), (-3, 2), (-3, -8), (3, 8), (-3, 8), (3, -14), (-3, -14)]
    boxes = []

    def hits(b):
        x0, y0, x1, y1 = b
        if any(x0 < bx1 and bx0 < x1 and y0 < by1 and by0 < y1 for bx0, by0, bx1, by1 in boxes):
            return True
        return any(x0 - 2 < px < x1 + 2 and y0 - 2 < py < y1 + 2 for px, py in pts)

    for i, ((px, py), text) in enumerate(zip(pts, labels)):
        w, h = 0.6 * fontsize * len(text) * scale, fontsize * scale
        choice = None
        for dx, dy in cands:
            x0 = px + dx * scale if dx >= 0 else px + dx * scale - w
            b = (x0, py + dy * scale, x0 + w, py + dy * scale + h)
            if not hits(b):
                choice = (dx, dy, b)
                break
        if choice is None:
            dx, dy = cands[0]
            choice = (dx, dy, (px + dx * scale, py + dy * scale, px + dx * scale + w,
                               py + dy * scale + h))
        dx, dy, b = choice
        boxes.append(b)
        ax.annotate(text, (xs.iloc[i] if hasattr(xs, "iloc") else xs[i],
                           ys.iloc[i] if hasattr(ys, "iloc") else ys[i]),
                    xytext=(dx, dy), textcoords="offset points", fontsize=fontsize,
                    ha="left" if dx >= 0 else "right",
                    color=(colors[i] if colors is not None else "black"))


def plot_accuracy_vs_params(t1, t2, train, title_tables: str = "", title_train: str = ""):
    """Two panels.  Left: ImageNet top-1 vs params of Tables 1-2, every point numbered with
    its key beside the panel (params counted by us where timm / torchvision has the model,
    filled markers; the paper's printed params otherwise, hollow; circles Table 1, squares
    Table 2, red the paper's PE models; top-1 from ``top1_from``).  Right: this profile's
    training runs, top-1 vs params (PE, unshared twin, narrowed twin), each labelled.
    t1 / t2: :func:`count_frame` outputs; train: :func:`training_frame`."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    fig, (a, b) = plt.subplots(1, 2, figsize=(14, 5.2), gridspec_kw={"width_ratios": [1.35, 1]})
    df = pd.concat([t1.assign(table="Table 1 (ViT)"), t2.assign(table="Table 2 (ResNet)")])
    df = df.drop_duplicates(subset=["model"]).reset_index(drop=True)
    df["x"] = df["params_M"].where(df["params_M"].notna(), df["paper_params_M"])
    df["num"] = range(1, len(df) + 1)
    for table, marker in (("Table 1 (ViT)", "o"), ("Table 2 (ResNet)", "s")):
        d = df[df["table"] == table]
        ours = d["model"].str.contains("PE")
        measured = d["params_M"].notna()
        for sel, kw in ((measured & ~ours, dict(color="tab:blue")),
                        (~measured, dict(facecolors="none", edgecolors="tab:blue")),
                        (ours, dict(color="tab:red"))):
            a.scatter(d["x"][sel], d["top1"][sel], marker=marker, s=32, **kw)
    a.set_xscale("log")
    place_labels(a, df["x"], df["top1"], [str(n) for n in df["num"]], fontsize=6.5,
                 colors=["tab:red" if "PE" in m else "black" for m in df["model"]])
    key = "\n".join(f"{n:>2} {m}" for n, m in zip(df["num"], df["model"]))
    a.text(1.02, 1.0, key, transform=a.transAxes, fontsize=6.2, va="top", family="monospace")
    a.set_xlabel("params (M), log scale")
    a.set_ylabel("ImageNet top-1 (%) (paper's unless trained here)")
    a.set_title(title_tables, fontsize=8)
    a.grid(alpha=0.3)
    handles = [Line2D([], [], ls="", marker="o", color="tab:blue", label="Table 1 (ViT)"),
               Line2D([], [], ls="", marker="s", color="tab:blue", label="Table 2 (ResNet)"),
               Line2D([], [], ls="", marker="o", color="tab:blue",
                      label="filled: params counted by us"),
               Line2D([], [], ls="", marker="o", mfc="none", mec="tab:blue",
                      label="hollow: params as printed (not in timm / torchvision)"),
               Line2D([], [], ls="", marker="o", color="tab:red", label="the paper's PE models")]
    a.legend(handles=handles, fontsize=6.5, loc="lower right")
    if len(train):
        tr = train.assign(kind=[run_kind(r) for r in train["run"]])
        for kind, st in RUN_KINDS.items():
            d = tr[tr["kind"] == kind]
            if not len(d):
                continue
            b.scatter(d["params"] / 1e6, d["top1"], s=36, label=kind, **st)
            dy = {"PE": 6, "unshared twin": 6, "narrowed twin": -11}[kind]
            for r, xi, yi in zip(d["run"], d["params"] / 1e6, d["top1"]):
                b.annotate(r, (xi, yi), fontsize=7, xytext=(4, dy), textcoords="offset points")
        b.legend(fontsize=7)
        b.margins(x=0.25, y=0.15)
    b.set_xlabel("params (M)")
    b.set_ylabel("test top-1 (%)")
    b.set_title(title_train, fontsize=8)
    b.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def figures(cfg) -> dict:
    """``acc_vs_params``: Tables 1-2 top-1 vs params (left), our PE / twin runs (right)."""
    tabs = tables(cfg)
    _, train_recs = _records(cfg)
    note = profile_note(cfg)
    wrap = functools.partial(textwrap.fill, width=90)
    fig = plot_accuracy_vs_params(
        tabs["table1"], tabs["table2"], tabs["training"],
        title_tables=("Tables 1-2: ImageNet top-1 (paper's unless trained here) vs params\n"
                      + wrap(f"profile={cfg.profile}{note}")),
        title_train="Our runs: PE vs unshared twin\n" + wrap(
            f"{_train_provenance(cfg, train_recs)}{note}"))
    out = {"acc_vs_params": fig}
    if cfg.seeds:
        out["evidence"] = plot_evidence(cfg)
    return out


# --------------------------------------------------------------------------- prose


def _pairs(cfg, train_recs: dict) -> list[tuple[str, str]]:
    """(PE run, unshared twin run) pairs that both have records."""
    out = []
    if cfg.vit_model and cfg.vit_twin:
        out.append((cfg.vit_model, cfg.vit_twin))
    if cfg.resnet_model and cfg.resnet_twin:
        out += [(f"{cfg.resnet_model}-stages{v}", cfg.resnet_twin) for v in cfg.resnet_variants]
    return [(a, b) for a, b in out if a in train_recs and b in train_recs]


def _rule(row: dict) -> str:
    return M.sharing_rule_name(row["share_1x1"], row["share_3x3"])


def _matches(value_M: float, printed: float, ndigits: int = 1) -> bool:
    return round(value_M, ndigits) == round(printed, ndigits)


def _counts(cfg, recs: dict) -> dict:
    """The counts the prose quotes: ``table_num_classes`` ones from the table records, the
    100-class ones from the sharing record (ResNets) and :func:`model_counts` (ViT-PE and the
    FLOPs), the printed ones, and :func:`reprolib.methods.pe.sharing_verdict`."""
    t1 = {r["model"]: r for r in recs["table1"]["metrics"]["rows"]}
    t2 = {r["model"]: r for r in recs["table2"]["metrics"]["rows"]}
    sh = recs["sharing"]["metrics"]["rows"]
    nc = cfg.table_num_classes
    c100 = {r["model"]: r for r in model_counts(100, cfg.table_image_size,
                                                models=("ViT-PE", "ResNet50-PE¹"))}
    default = {r["num_classes"]: r for r in sh if r["share_1x1"] and r["share_3x3"]}
    r1, r2 = PAPER_TABLE2["ResNet50-PE¹ (Ours)"], PAPER_TABLE2["ResNet50-PE² (Ours)"]
    return {
        "nc": nc, "t1": t1, "t2": t2, "sh": sh, "default": default,
        "vit_p": PAPER_TABLE1["ViT-PE¹ (ours)"], "r1": r1, "r2": r2,
        "vit": t1["ViT-PE¹ (ours)"]["params_M"], "vit100": c100["ViT-PE"]["params"] / 1e6,
        "vit_gflops100": c100["ViT-PE"]["flops"] / 1e9,
        "res_gflops100": c100["ResNet50-PE¹"]["flops"] / 1e9,
        "pe1": t2["ResNet50-PE¹ (Ours)"]["params_M"],
        "pe2": t2["ResNet50-PE² (Ours)"]["params_M"],
        "pe1_100": default[100]["PE1_params_M"], "pe2_100": default[100]["PE2_params_M"],
        "verdict": M.sharing_verdict(sh, r1["params_M"], r2["params_M"]),
    }


def summary(cfg) -> str:
    """The README paragraph: the PE layers, the counted sizes (100- and 1000-class heads)
    beside the printed ones, which sharing rule reproduces them, and the trained pairs."""
    recs, train_recs = _records(cfg)
    c = _counts(cfg, recs)
    vit_p, r1, r2, v = c["vit_p"], c["r1"], c["r2"], c["verdict"]
    head = "a 100-class head"
    if _matches(c["vit100"], vit_p["params_M"]) and _matches(c["pe1_100"], r1["params_M"]) \
            and not _matches(c["vit"], vit_p["params_M"]):
        head += " (the width that reproduces the printed counts)"
    if v["both"]:
        b = v["both"][0]
        rule = f"{_rule(b)} with {b['num_classes']} classes gives both printed ResNet counts"
    else:
        rule = "no sharing rule gives both printed ResNet counts"
    out = [
        "ViT-PE attention `Q = W_q x, K = W_kv x, V = W_kv^T x`, output `W_q^T`, FFN "
        "`W^T F(Wx + b1) + b2`; ResNet50-PE bottleneck `W^T G(W x)` with the blocks of a stage "
        "sharing `W` and the 3x3 kernel (`create_model(\"vit_pe_small\")`, "
        "`(\"resnet50_pe\", pe_stages=(1, 2, 3, 4) | (3, 4))`). Each tied weight is one "
        "`nn.Parameter` used twice.",
        f"Counted at {cfg.table_image_size} px with {head}: ViT-PE {c['vit100']:.2f} M / "
        f"{c['vit_gflops100']:.2f} G (paper {vit_p['params_M']:g} M / {vit_p['GFLOPs']:g} G), "
        f"ResNet50-PE¹ {c['pe1_100']:.2f} M (paper {r1['params_M']:g}), PE² {c['pe2_100']:.2f} M "
        f"(paper {r2['params_M']:g}; {rule}, `figures/pe/sharing-{cfg.profile}.md`), "
        f"{c['res_gflops100']:.2f} G; with {c['nc']} classes {c['vit']:.2f} / {c['pe1']:.2f} / "
        f"{c['pe2']:.2f} M. Baselines from timm/torchvision in "
        f"`figures/pe/table1-{cfg.profile}.md`, `table2-{cfg.profile}.md`.",
    ]
    pairs = _pairs(cfg, train_recs)
    if pairs:
        bits = []
        for pe_run, twin in pairs:
            a, b = train_recs[pe_run]["metrics"], train_recs[twin]["metrics"]
            depth = _depth(train_recs[pe_run])
            what = f"a {depth}-layer ViT-PE" if depth else f"`{pe_run}`"
            diff = a["acc"] - b["acc"]
            bits.append(f"{what} vs its unshared twin on {_data_label(cfg)}, {int(a['epochs'])} "
                        f"epochs: {a['acc']:.1f} % at {a['params'] / 1e6:.2f} M vs "
                        f"{b['acc']:.1f} % at {b['params'] / 1e6:.2f} M params "
                        f"({abs(diff):.1f} points {'below' if diff < 0 else 'above'} with "
                        f"{a['params'] / b['params']:.0%} of the parameters)")
        gap = PAPER_TABLE1["DeiT-S/16"]["top1"] - vit_p["top1"]
        out.append(f"Trained (`{cfg.profile}`): " + "; ".join(bits) + ". The paper's ViT-PE¹ is "
                   f"{gap:.1f} points below DeiT-S/16 after 300 ImageNet epochs"
                   + ("." if cfg.profile == "paper" else
                      f"; the `{cfg.profile}` run is far shorter and smaller than that setting."))
    return " ".join(out)


def _depth(rec: dict) -> int | None:
    """Blocks of a trained ViT (its builder on the meta device), None for a ResNet."""
    name = rec["config"].get("model", "")
    if family(name) != "vit":
        return None
    with torch.device("meta"):
        return len(create_model(name, **rec["config"].get("model_kwargs", {})).blocks)


def _data_label(cfg) -> str:
    name = _data_name(cfg)
    return "the CIFAR-10 subset" if name in ("cifar10_subset", "cifar10_subset.npz") else f"`{name}`"


def reading(cfg) -> str:
    """The notebook's reading of Tables 1-2 and the sharing table: which classifier width and
    sharing rule give the printed counts, and that tying leaves the FLOPs unchanged."""
    recs, _ = _records(cfg)
    c = _counts(cfg, recs)
    vit_p, r1, r2, v, nc = c["vit_p"], c["r1"], c["r2"], c["verdict"], c["nc"]
    d = c["default"]
    vit_words = (f"the printed {vit_p['params_M']:g} M is the count with a 100-class head "
                 f"({c['vit100']:.2f} M)" if _matches(c["vit100"], vit_p["params_M"])
                 else f"with a 100-class head it is {c['vit100']:.2f} M (printed "
                      f"{vit_p['params_M']:g} M)")
    out = [f"Reading: ViT-PE is {c['vit']:.2f} M with the {nc}-class head; {vit_words}.",
           f"ResNet50-PE¹ with {_rule(d[100])} is {d[nc]['PE1_params_M']:.2f} M with {nc} "
           f"classes and {d[100]['PE1_params_M']:.2f} M (printed {r1['params_M']:g}) with 100; "
           f"PE² is then {d[100]['PE2_params_M']:.2f} M (printed {r2['params_M']:g})."]
    if v["both"]:
        b = v["both"][0]
        rule = _rule(b)
        out.append(f"{rule[0].upper()}{rule[1:]} with {b['num_classes']} classes reproduces both "
                   "printed ResNet numbers.")
    else:
        g = v["gap_rule"]
        same = [r for r in c["sh"]
                if (r["share_1x1"], r["share_3x3"]) == (g["share_1x1"], g["share_3x3"])]
        per_head = " and ".join(f"{r['PE1_params_M']:.2f} / {r['PE2_params_M']:.2f} M with "
                                f"{r['num_classes']} classes" for r in same)
        out.append(f"No rule reproduces both printed ResNet numbers with the same head (the "
                   f"printed {v['printed_gap']:.1f} M gap between PE² and PE¹ is closest under "
                   f"{_rule(g)}, {g['PE2_params_M'] - g['PE1_params_M']:.2f} M, but that rule "
                   f"gives {per_head}).")
    vit_f, deit_f = c["t1"]["ViT-PE¹ (ours)"]["GFLOPs"], c["t1"]["DeiT-S/16"]["GFLOPs"]
    res_f, base_f = c["t2"]["ResNet50-PE¹ (Ours)"]["GFLOPs"], c["t2"]["ResNet50"]["GFLOPs"]
    same_f = vit_f == deit_f and res_f == base_f
    out.append(f"FLOPs are {'unchanged' if same_f else 'changed'} by tying: ViT-PE {vit_f:.2f} G "
               f"(DeiT-S {deit_f:.2f} G, printed {vit_p['GFLOPs']:g} G) and ResNet50-PE "
               f"{res_f:.2f} G (ResNet-50 {base_f:.2f} G, printed {r1['GFLOPs']:g} G).")
    return " ".join(out)


# --------------------------------------------------------------------------- evidence
# The claims test (profile ``evidence``: ``cfg.seeds``, ``cfg.narrowed``): per family the PE
# model, its unshared twin and the twin narrowed to the PE model's parameter count, every one
# trained with the family's recipe for every seed.

#: The paper's own accuracy gap between its PE model and the unshared baseline (ImageNet,
#: same recipe): the margin of "sharing costs little" (pp).
PAPER_GAP = {"vit": ("ViT-PE¹ (ours)", "DeiT-S/16", PAPER_TABLE1),
             "resnet": ("ResNet50-PE¹ (Ours)", "ResNet50", PAPER_TABLE2)}


def _need_seeds(cfg) -> None:
    if not cfg.seeds:
        raise ReprolibError(f"pe profile {cfg.profile!r} has no seeds: the claims are tested by "
                            f"the evidence profile (reprolib run pe --profile evidence)")


def evidence_frame(cfg) -> pd.DataFrame:
    """One row per (seed, run): family, kind (PE / unshared twin / narrowed twin), params,
    FLOPs, test top-1, epochs, the width of a narrowed twin."""
    _need_seeds(cfg)
    rows = []
    runs = {r["name"]: r for r in training_runs(cfg)}
    for seed, st in evidence_stages(cfg).items():
        for name, stage in st.items():
            m = stage.metrics()
            rows.append({"seed": seed, "family": family(runs[name]["model"]), "run": name,
                         "kind": run_kind(name), "params": m["params"], "flops": m["flops"],
                         "acc": m["acc"], "epochs": m["epochs"],
                         "narrowed": json_kwargs(m.get("narrowed_kwargs"))})
    return pd.DataFrame(rows, columns=["seed", "family", "run", "kind", "params", "flops",
                                       "acc", "epochs", "narrowed"])


def json_kwargs(kw: dict | None) -> str:
    """``"embed_dim=66"``: the narrowed width of a run ("" for none)."""
    return ", ".join(f"{k}={v}" for k, v in (kw or {}).items()
                     if k in ("embed_dim", "base"))


def _twin_histories(cfg) -> list:
    """The unshared twins' histories (the dense baselines the plateau rule reads), per
    family and seed."""
    pairs = _pair_runs(cfg, training_runs(cfg))
    st = evidence_stages(cfg)
    return [st[seed][twin["name"]].metrics()["history"] for _, twin in pairs for seed in st]


def _plateau(cfg) -> str:
    """The plateau sentence over the unshared twins' histories (one per family and seed)."""
    return evidence.plateau_note(_twin_histories(cfg), what="the unshared twin",
                                 unit="runs (family x seed)")


def _evidence_note(cfg) -> str:
    recs = [s.record() for st in evidence_stages(cfg).values() for s in st.values()]
    fams = sorted({family(r["model"]) for r in training_runs(cfg)})
    eps = ", ".join(f"{f}_train {getattr(cfg, f'{f}_train').epochs} ep" for f in fams)
    kws = "; ".join(f"{f}_kwargs {getattr(cfg, f'{f}_kwargs')}" for f in fams
                    if getattr(cfg, f"{f}_kwargs"))
    seeds = ", ".join(str(int(x)) for x in cfg.seeds)
    return (f"`{_data_name(cfg)}` at {cfg.image_size} px, {eps}" + (f" ({kws})" if kws else "")
            + f", seeds {seeds}; "
            f"{_plateau(cfg)}; "
            f"{evidence.cost_note(recs)}{profile_note(cfg)}")


def evidence_tables(cfg) -> dict[str, pd.DataFrame]:
    """``evidence``: per family and kind, params, FLOPs and top-1 mean ± std over the seeds,
    beside the paper's (ImageNet) numbers; ``evidence_runs``: every seed."""
    df = evidence_frame(cfg)
    order = {k: i for i, k in enumerate(RUN_KINDS)}
    rows = []
    for (fam, kind), g in sorted(df.groupby(["family", "kind"]),
                                 key=lambda kv: (kv[0][0] != "vit", order[kv[0][1]])):
        pe_row, base_row, table = PAPER_GAP[fam]
        p = table[pe_row] if kind == "PE" else table[base_row] if kind == "unshared twin" else {}
        rows.append({"family": "ViT" if fam == "vit" else "ResNet", "kind": kind,
                     "run": g["run"].iloc[0].rsplit("-s", 1)[0] if g["seed"].iloc[0] != cfg.seed
                     else g["run"].iloc[0],
                     "width": g["narrowed"].iloc[0],
                     "params (M)": round(g["params"].mean() / 1e6, 4),
                     "FLOPs (M)": round(g["flops"].mean() / 1e6, 2),
                     "top-1 (%)": evidence.fmt(g["acc"]),
                     "paper": (f"{pe_row if kind == 'PE' else base_row}: {p['top1']} % at "
                               f"{p['params_M']} M (ImageNet)") if p else "no such control"})
    tab = pd.DataFrame(rows)
    note = _evidence_note(cfg)
    tab.attrs["caption"] = (f"PE evidence: PE vs its unshared twin vs the twin narrowed to PE's "
                            f"parameter count, mean ± std over seeds. {note}. FLOPs at "
                            f"{cfg.image_size} px ({report.FLOPS_NOTE}). Paper: Tables 1-2 "
                            f"(ImageNet, 224 px, 300 / 90 epochs).")
    runs = df.assign(acc=df["acc"].round(2))
    runs.attrs["caption"] = f"PE evidence, every seed. {note}."
    return {"evidence": tab, "evidence_runs": runs, "claims": claims(cfg)}


def claims(cfg) -> pd.DataFrame:
    """PE's claims tested on the evidence records, per family: sharing beats shrinking at
    equal parameters (PE vs the narrowed twin, Welch's t-test over the seeds), and sharing
    costs little against the twin (non-inferiority on the 95 % CI with the paper's own
    ImageNet gap as the margin)."""
    empty = evidence.not_run(PAPER, cfg, stages(cfg))
    if empty is not None:
        return empty
    df = evidence_frame(cfg)
    rows = []
    for fam in ("vit", "resnet"):
        g = df[df["family"] == fam]
        if not len(g):
            continue
        acc = {k: x["acc"].tolist() for k, x in g.groupby("kind")}
        prm = {k: x["params"].mean() / 1e6 for k, x in g.groupby("kind")}
        name = "ViT" if fam == "vit" else "ResNet"
        pe_row, base_row, table = PAPER_GAP[fam]
        pp, pb = table[pe_row], table[base_row]
        gap = round(pb["top1"] - pp["top1"], 2)

        def shown(k):
            return f"{k} {evidence.fmt(acc[k])} % at {prm[k]:.3f} M"

        if "narrowed twin" in acc and "PE" in acc:
            c = evidence.compare(acc["PE"], acc["narrowed twin"])
            rows.append(evidence.claim_row(
                f"{name}: sharing beats shrinking at equal parameters",
                f"{shown('PE')} vs {shown('narrowed twin')}",
                f"no narrowed control in the paper ({pe_row} {pp['top1']} % at "
                f"{pp['params_M']} M)", c["verdict"], c["reason"]))
        if "unshared twin" in acc and "PE" in acc:
            c = evidence.compare(acc["PE"], acc["unshared twin"], margin=gap)
            rows.append(evidence.claim_row(
                f"{name}: sharing costs little against the unshared twin "
                f"({prm['unshared twin'] / prm['PE']:.1f}x the parameters)",
                f"{shown('PE')} vs {shown('unshared twin')}",
                f"{pe_row} {pp['top1']} % at {pp['params_M']} M vs {base_row} {pb['top1']} % "
                f"at {pb['params_M']} M (ImageNet): {gap:g} pp",
                c["verdict"], f"{c['reason']} (margin: the paper's own {gap:g} pp gap)"))
    out = evidence.claims_frame(rows)
    out.attrs["caption"] = (f"PE claims (`{cfg.profile}` profile): {_evidence_note(cfg)}. The "
                            f"narrowed twin is the unshared model with its width chosen so its "
                            f"parameter count is closest to the PE model's (it has fewer FLOPs). "
                            f"'Beats': Welch's t-test, p < 0.05; 'costs little': 95 % CI of "
                            f"PE - twin above minus the paper's own gap.")
    return out


def plot_evidence(cfg):
    """One panel per family (top-1 vs params, mean ± std over seeds: PE, unshared twin,
    narrowed twin) and the unshared twins' test accuracy per epoch and seed (what the plateau
    rule read)."""
    import matplotlib.pyplot as plt

    df = evidence_frame(cfg)
    fams = [f for f in ("vit", "resnet") if f in set(df["family"])]
    fig, axes = plt.subplots(1, len(fams) + 1, figsize=(5.6 * (len(fams) + 1), 4.6))
    for ax, fam in zip(axes, fams):
        g = df[df["family"] == fam]
        n = g["seed"].nunique()
        for kind, st in RUN_KINDS.items():
            d = g[g["kind"] == kind]
            if not len(d):
                continue
            m, sd, _ = evidence.mean_std(d["acc"])
            x = d["params"].mean() / 1e6
            ax.errorbar([x], [m], yerr=[sd], capsize=4, ms=7, ls="", label=kind, **st)
            ax.annotate(f"{m:.1f} ± {sd:.1f} %", (x, m), fontsize=7, xytext=(6, -3),
                        textcoords="offset points")
        ax.margins(x=0.3, y=0.3)
        ax.set_xlabel("params (M)")
        ax.set_ylabel("test top-1 (%)")
        ax.set_title(f"{'ViT' if fam == 'vit' else 'ResNet'}: mean ± std over {n} seeds, "
                     f"{getattr(cfg, f'{fam}_train').epochs} ep", fontsize=9)
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    st = evidence_stages(cfg)
    for _, twin in _pair_runs(cfg, training_runs(cfg)):
        for seed in st:
            h = [x for x in st[seed][twin["name"]].metrics()["history"]
                 if x.get("test_acc") is not None]
            axes[-1].plot([x["epoch"] for x in h], [x["test_acc"] for x in h], marker=".",
                          label=f"{twin['name']}, seed {seed}")
    axes[-1].set_xlabel("epoch")
    axes[-1].set_ylabel("test top-1 (%) of the unshared twin")
    axes[-1].set_title(textwrap.fill(_plateau(cfg), 70), fontsize=8)
    axes[-1].legend(fontsize=6)
    axes[-1].grid(alpha=0.3)
    fig.suptitle(textwrap.fill(f"PE evidence — {_evidence_note(cfg)}", 200), fontsize=8)
    fig.tight_layout()
    return fig
