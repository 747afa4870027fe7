"""PE's stage builders: the meta-device counts of Tables 1-2 and the sharing rules, and the
trainings (a PE model, its unshared twin, the twin narrowed to the PE model's parameter
count, the longer ViT-PE² run), each one :class:`~reprolib.core.pipeline.Stage`.

:func:`count_stage` builds a ``count`` stage, :func:`training_stage` a ``train`` stage from
one run of :func:`training_runs`; ``reprolib.experiments.pe.PE.declare`` adds them to the
graph.  No stage reads another: a narrowed twin counts the PE model it is narrowed to on the
meta device itself (:func:`narrowed_kwargs`), it loads no record or model.
"""

from __future__ import annotations

import dataclasses
import functools

import torch
import torch.nn as nn

from reprolib.configs.pe import PAPER_TABLE1, PAPER_TABLE2
from reprolib.core.device import is_main_process, on_meta, world
from reprolib.core.measure import count_flops_by_op, count_params
from reprolib.core.pipeline import (ModelSpec, Stage, key_of, load_data, resources,
                                    seed_everything, train_and_measure, training)
from reprolib.core.registry import create_model
from reprolib.data.catalog import num_classes
from reprolib.errors import ReprolibError

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

#: The count stages, in run order (role ``count``, tag ``table``).
COUNT_TABLES = ("table1", "table2", "sharing")

#: The kinds of our training runs (a ``train`` stage's ``kind`` tag -> how tables name it).
KIND_LABELS = {"pe": "PE", "long": "PE", "twin": "unshared twin", "narrow": "narrowed twin"}

#: The kinds of our training runs as tables name them, with their colour and marker in every
#: figure.
RUN_KINDS = {"PE": {"color": "tab:red", "marker": "o"},
             "unshared twin": {"color": "tab:blue", "marker": "s"},
             "narrowed twin": {"color": "tab:grey", "marker": "^"}}


def run_kind(run: str) -> str:
    """"PE", "narrowed twin" or "unshared twin": what a training run of this paper is, from
    its name (a stage's ``kind`` tag says it too: :data:`KIND_LABELS`)."""
    base = run.rsplit("-s", 1)[0] if "-s" in run and run.rsplit("-s", 1)[1].isdigit() else run
    if base.endswith("-narrow"):
        return "narrowed twin"
    return "PE" if "pe" in base.split("-stages")[0].replace("unshared", "") else "unshared twin"


# --------------------------------------------------------------------------- counting


def build(source: tuple, num_classes: int = 1000, device: str = "meta") -> nn.Module:
    """Build a model from a ``(library, name, kwargs)`` source without pretrained weights.

    device: "meta" (default) allocates nothing, which is all counting needs; "cpu" for a
    usable model.  num_classes: classifier outputs (1000).
    """
    lib, name, kw = source
    with (on_meta() if device == "meta" else torch.device(device)):
        if lib == "timm":
            import timm
            return timm.create_model(name, pretrained=False, num_classes=num_classes, **kw)
        if lib == "torchvision":
            import torchvision
            return getattr(torchvision.models, name)(weights=None, num_classes=num_classes, **kw)
        if lib == "reprolib":
            return create_model(name, num_classes=num_classes, **kw)
    raise ReprolibError(f"unknown model library {lib!r}; valid: timm, torchvision, reprolib")


@functools.lru_cache(maxsize=128)
def _source_counts(lib: str, name: str, kwargs: tuple, num_classes: int,
                   image_size: int) -> tuple[int, tuple]:
    m = build((lib, name, dict(kwargs)), num_classes)
    ops = count_flops_by_op(m, (3, image_size, image_size))
    return count_params(m), tuple(sorted(ops.items()))


def source_counts(source: tuple, num_classes: int = 1000, image_size: int = 224) -> dict:
    """Params and FLOPs of a ``(library, name, kwargs)`` source built on the meta device:
    ``{"params", "flops" (1 MAC = 1 FLOP), "ops"}``, where ``ops`` is the counter's per-operator
    FLOPs (2 per multiply-add; ``reprolib.core.measure.count_flops_by_op``).  Memoised per
    process: the counts are a function of the source, the head and the input side."""
    lib, name, kw = source
    params, ops = _source_counts(lib, name, tuple(sorted(kw.items())), int(num_classes),
                                 int(image_size))
    ops = dict(ops)
    return {"params": params, "flops": sum(ops.values()) // 2, "ops": ops}


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
            c = source_counts(src, num_classes, image_size)
            row.update(source=f"{src[0]}:{src[1]}" + "".join(f" {k}={v}" for k, v in src[2].items()),
                       params_M=c["params"] / 1e6, GFLOPs=c["flops"] / 1e9)
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


def model_counts(num_classes: int = 1000, image_size: int = 224,
                 models=None) -> list[dict]:
    """Params and FLOPs of the paper's models and twins (:data:`PAPER_MODELS`, or the labels
    in ``models``) with a ``num_classes`` head at ``image_size`` px, counted on the meta
    device (deterministic, memoised): ``[{"model", "builder", "kwargs", "params", "flops"}]``."""
    out = []
    for label in (models or PAPER_MODELS):
        name, kw = PAPER_MODELS[label]
        c = source_counts(("reprolib", name, kw), num_classes, image_size)
        out.append({"model": label, "builder": name, "kwargs": dict(kw), "params": c["params"],
                    "flops": c["flops"]})
    return out


def count_stage(cfg, table: str) -> Stage:
    """The count stage ``table`` (one of :data:`COUNT_TABLES`): ``table1`` / ``table2`` count
    every row of the paper's Tables 1-2 that a library builds, ``sharing`` ResNet50-PE under
    every sharing rule, at ``table_image_size`` / ``table_num_classes`` (``{"rows": [...]}``)."""
    # meta-device counts: nothing random, so the seed is pinned (changing cfg.seed re-keys
    # only the trainings)
    key = key_of(cfg, "table_image_size", "table_num_classes", seed=0)
    conf = {"image_size": cfg.table_image_size, "num_classes": cfg.table_num_classes}
    jobs = {
        "table1": lambda _: {"rows": count_table(TABLE1_SOURCES, PAPER_TABLE1, **conf)},
        "table2": lambda _: {"rows": count_table(TABLE2_SOURCES, PAPER_TABLE2, **conf)},
        "sharing": lambda _: {"rows": resnet_sharing_table((cfg.table_num_classes, 100))},
    }
    notes = {"table1": "Table 1: params / FLOPs of every ViT row a library builds (meta device)",
             "table2": "Table 2: params / FLOPs of every ResNet row (meta device)",
             "sharing": "ResNet50-PE¹ / PE² params under every sharing rule and two heads"}
    if table not in jobs:
        raise ReprolibError(f"unknown count table {table!r}; valid: {', '.join(jobs)}")
    # a table's rows are part of what it depends on: another list of sources is another record
    rows = {"table1": list(TABLE1_SOURCES), "table2": list(TABLE2_SOURCES), "sharing": None}
    return Stage(cfg, table, {**key, "rows": rows[table]} if rows[table] else key, jobs[table],
                 resources=resources(cfg, trains=False), group="count", note=notes[table])


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
    """The trainings ``cfg`` asks for: ``{"name", "model", "kwargs", "recipe", "kind"}`` each
    (``kind``: "pe", "twin", "long" or "narrow", the ``train`` stage's tag).

    ViT: ``vit_model`` and ``vit_twin`` (recipe "vit_train"), with ``vit_long_epochs`` the
    PE model again for that many epochs (``"epochs"``).  ResNet: ``resnet_model`` once per
    entry of ``resnet_variants`` (a string of stage digits, "1234" = PE^1, "34" = PE^2) and
    ``resnet_twin`` (recipe "resnet_train").  With ``narrowed``: each twin narrowed to its PE
    model's parameter count (``"narrow_to"``: that PE model's run).  Empty names are skipped.
    """
    runs = []
    for m, kind in ((cfg.vit_model, "pe"), (cfg.vit_twin, "twin")):
        if m:
            runs.append({"name": m, "model": m, "kwargs": {}, "recipe": "vit_train",
                         "kind": kind})
    if cfg.vit_model and cfg.vit_long_epochs:   # the ViT-PE^2 row: same recipe, longer
        runs.append({"name": f"{cfg.vit_model}-{cfg.vit_long_epochs}ep", "model": cfg.vit_model,
                     "kwargs": {}, "recipe": "vit_train", "epochs": cfg.vit_long_epochs,
                     "kind": "long"})
    if cfg.resnet_model:
        for v in cfg.resnet_variants:
            stages_ = tuple(int(c) for c in str(v))
            runs.append({"name": f"{cfg.resnet_model}-stages{v}", "model": cfg.resnet_model,
                         "kwargs": {"pe_stages": stages_}, "recipe": "resnet_train",
                         "kind": "pe"})
    if cfg.resnet_twin:
        runs.append({"name": cfg.resnet_twin, "model": cfg.resnet_twin, "kwargs": {},
                     "recipe": "resnet_train", "kind": "twin"})
    if cfg.narrowed:
        for pe_run, twin in pair_runs(cfg, runs):
            runs.append({"name": f"{twin['name']}-narrow", "model": twin["model"], "kwargs": {},
                         "recipe": twin["recipe"], "narrow_to": pe_run, "kind": "narrow"})
    return runs


def pair_runs(cfg, runs: list[dict]) -> list[tuple[dict, dict]]:
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
        with on_meta():
            return create_model(model_name, num_classes=num_classes, **kw)

    m = build_(kwargs)
    if family(model_name) == "vit":
        key, step, full = "embed_dim", int(m.blocks[0].attn.num_heads), int(m.embed_dim)
    else:
        key, step, full = "base", 1, int(m.conv1.out_channels)
    best = min(range(step, full + 1, step),
               key=lambda w: abs(count_params(build_({**kwargs, key: w})) - target_params))
    return {**kwargs, key: best}


def run_recipe(cfg, run: dict):
    """The recipe (``TrainConfig``) ``run`` trains with: its family's, with the run's
    ``epochs`` when it sets them (ViT-PE^2: 600)."""
    recipe = getattr(cfg, run["recipe"])
    if run.get("epochs"):
        recipe = dataclasses.replace(recipe, epochs=int(run["epochs"]))
    return recipe


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


def _run_note(run: dict) -> str:
    """The ``plan`` line of a training run: what it trains and why."""
    recipe = {"vit_train": "the DeiT recipe vit_train",
              "resnet_train": "the torchvision recipe resnet_train"}[run["recipe"]]
    kind = run["kind"]
    if kind == "narrow":
        to = run["narrow_to"]["name"]
        width = "embed_dim" if family(run["model"]) == "vit" else "base width"
        return (f"the unshared twin, its {width} narrowed to {to}'s parameter count when it "
                f"runs (counted on the meta device: it reads no stage), {recipe}")
    if kind == "long":
        return (f"{run['model']} again for {run['epochs']} epochs (Table 1's ViT-PE² row), "
                f"{recipe}")
    if kind == "twin":
        return f"the unshared twin (no tied weights), {recipe}"
    if family(run["model"]) == "resnet":
        return f"ResNet-PE with PE stages {run['kwargs']['pe_stages']}, {recipe}"
    return f"ViT-PE (each W used as W and W^T), {recipe}"


def training_stage(cfg, run: dict, suffix: str = "") -> Stage:
    """The ``train`` stage of ``run`` (one of :func:`training_runs`), named as the run plus
    ``suffix`` (an evidence seed's ``-s<seed>``): fit with its recipe, measure, save in the
    compressed-model format (rank 0).  A narrowed twin's width is chosen when it runs, from
    the class count of the data (:func:`narrowed_kwargs`); its record keeps
    ``narrowed_kwargs`` and ``target_params``."""
    kw = model_kwargs(cfg, run["model"], run["kwargs"])
    extra, build_kw, narrow = {}, kw, {}
    spec_note = ""
    if run.get("narrow_to"):       # the twin narrowed to the PE model's parameter count
        to = run["narrow_to"]
        to_kw = model_kwargs(cfg, to["model"], to["kwargs"])
        extra = {"narrow_to": {"model": to["model"], "model_kwargs": to_kw}}
        spec_note = "sizes of the twin at full width: an upper bound"

        def build_kw(num_classes):
            with on_meta():
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
    long_ = run.get("epochs") == 600      # the paper's ViT-PE^2 row states its 600 epochs
    return Stage(cfg, f"{run['name']}{suffix}", key, fn,
                 model=ModelSpec(run["model"], {"num_classes": num_classes(cfg.dataset), **kw},
                                 (3, cfg.image_size, cfg.image_size), note=spec_note),
                 train=training(cfg, run["recipe"], recipe=run_recipe(cfg, run),
                                stated=f"{run['recipe']}@600" if long_ else ""),
                 resources=resources(cfg), group=run["name"], note=_run_note(run))
