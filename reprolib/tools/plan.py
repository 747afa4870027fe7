"""``reprolib plan PAPER``: what a profile would really run, before a GPU hour is spent.

For every training stage of a paper's pipeline at a profile (and ``--nproc N`` processes
under torchrun) it resolves what ``fit`` and the data path will use: the model (parameters
and FLOPs, counted on the meta device: nothing is allocated), the data set and image size
(and whether the data is on this machine, checked without reading it), the global and
per-process batch, optimizer, lr after the linear scaling rule, schedule and warmup, epochs
and optimizer steps, augmentations, regularisers (L1, drop path, label smoothing,
mixup / cutmix), the checkpoint folder, and the estimated GPU-hours where a benchmark record
(``results/bench/<profile>/``, ``reprolib bench``) times a training step of the same model
at the same size.  Beside every field the paper states (:data:`STATED`) it shows the paper's
value, and a ``≠`` mark with the reason where the profile departs from it.

    reprolib plan pe --profile paper --nproc 8
    from reprolib.tools.plan import plan, format_plan
    print(format_plan(plan("sidt", "paper")))

Nothing is trained, no data set is read, nothing is written.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math

from reprolib import paths
from reprolib.configs import TrainConfig, get_config
from reprolib.errors import ReprolibError

__all__ = ["plan", "format_plan", "STATED", "DATASET_INFO", "data_present", "model_size",
           "bench_estimate"]

# --------------------------------------------------------------------------- data sets

#: classes, training images (the split ``fit`` trains on) and validation images, per data set
DATASET_INFO = {
    "digits": {"classes": 10, "train": 1437, "test": 360},
    "cifar10_subset": {"classes": 10, "train": 5085, "test": 1017},
    "cifar10": {"classes": 10, "train": 50_000, "test": 10_000},
    "cifar100": {"classes": 100, "train": 50_000, "test": 10_000},
    "flowers102": {"classes": 102, "train": 2040, "train_only": 1020, "val": 1020,
                   "test": 6149},
    "imagenet": {"classes": 1000, "train": 1_281_167, "test": 50_000},
}


def data_present(dataset: str, data_root=None) -> str:
    """Whether ``dataset`` is on this machine, by looking at files only (nothing is read)."""
    root = paths.resolve(data_root) if data_root else paths.data_root()
    if dataset == "digits":
        return "yes (embedded)"
    if dataset.startswith("npz:"):
        p = paths.resolve(dataset[4:])
        return f"yes ({paths.rel(p)})" if p.exists() else f"MISSING: {dataset[4:]}"
    if dataset == "cifar10_subset":
        from reprolib.data import cifar10_subset_file
        try:
            return f"yes ({paths.rel(cifar10_subset_file(data_root, build=False))})"
        except ReprolibError:
            return "MISSING: built once from the CIFAR-10 download on first use"
    folder = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python",
              "flowers102": "flowers-102"}.get(dataset)
    if folder:
        p = root / folder
        return (f"yes ({paths.rel(p)})" if p.exists()
                else f"MISSING: {paths.rel(p)} (downloaded on first use, or -p data_root=DIR)")
    if dataset == "imagenet":
        if not data_root:
            return "MISSING: pass -p data_root=/path/to/imagenet (train/ and val/ folders)"
        ok = (root / "train").is_dir() and (root / "val").is_dir()
        return f"yes ({paths.rel(root)})" if ok else f"MISSING: {paths.rel(root)}/train, val"
    return "unknown data set"


def _classes(dataset: str) -> int:
    return DATASET_INFO.get(dataset, {"classes": 10})["classes"]


# --------------------------------------------------------------------------- models


@functools.lru_cache(maxsize=256)
def _size_cached(name: str, kwargs_json: str, image_size: int) -> tuple[int, int | None]:
    import torch

    from reprolib.core.measure import count_flops, count_params
    from reprolib.core.registry import create_model

    with torch.device("meta"):
        m = create_model(name, **json.loads(kwargs_json))
    params = count_params(m)
    try:
        flops = count_flops(m, (3, image_size, image_size))
    except Exception:  # noqa: BLE001 - a model the meta device cannot trace: params only
        flops = None
    return params, flops


def model_size(name: str, kwargs: dict, image_size: int) -> tuple[int, int | None]:
    """(parameters, FLOPs of one image) of ``create_model(name, **kwargs)``, on the meta
    device (cached)."""
    return _size_cached(name, json.dumps(kwargs, sort_keys=True, default=list), int(image_size))


# --------------------------------------------------------------------------- bench records


def bench_estimate(model: str, image_size: int, images: int, device_hint: str = "cuda"):
    """``(hours, text)``: ``images`` training images of ``model`` at ``image_size`` timed by a
    benchmark record's training step (``train_ms`` / ``train_batch``), or ``(None, why)``."""
    root = paths.results_root() / "bench"
    best = None
    for f in sorted(root.glob("*/*.json")) if root.exists() else []:
        try:
            rec = json.loads(f.read_text())
            fam, met = rec["config"]["family"], rec["metrics"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if int(fam.get("input_size", [0, 0, 0])[-1]) != int(image_size):
            continue
        for case, row in zip(fam.get("cases", []), met.get("rows", [])):
            if case.get("model") == model and case.get("method") == "dense" \
                    and row.get("train_ms") and met.get("train_batch"):
                dev = str(met.get("device_name") or met.get("device") or "?")
                on_gpu = device_hint in dev.lower() or "gpu" in dev.lower() \
                    or "nvidia" in dev.lower()
                cand = (on_gpu, row["train_ms"] / met["train_batch"], dev, f)
                if best is None or cand[0] > best[0]:
                    best = cand
    if best is None:
        return None, (f"no benchmark record of {model} at {image_size} px "
                      "(reprolib bench --profile gpu makes one)")
    hours = best[1] * images / 3.6e6
    return hours, (f"{hours:,.1f} device-hours on {best[2]} ({best[1]:.3f} ms / image, "
                   f"{paths.rel(best[3])})")


# --------------------------------------------------------------------------- what the papers state

#: The values the papers state (or the recipe they cite), per paper and recipe:
#: ``field -> (value, source)``.  Fields: dataset, image_size, epochs, global_batch, optimizer,
#: lr (after scaling, at the stated global batch), schedule, warmup_epochs, weight_decay,
#: label_smoothing, mixup, cutmix, drop_path, randaugment, random_erasing, repeated_aug, l1,
#: select_every, model.
_DEIT = {"dataset": ("imagenet", "§4"), "image_size": (224, "§4"), "epochs": (300, "§4, Table 1"),
         "global_batch": (1024, "DeiT (cited recipe)"), "optimizer": ("adamw", "§4"),
         "lr": (1e-3, "§4: lr_512 x batch / 512, DeiT lr_512 = 5e-4"),
         "schedule": ("cosine", "DeiT"), "warmup_epochs": (5.0, "DeiT"),
         "weight_decay": (0.05, "§4"), "label_smoothing": (0.1, "DeiT"),
         "mixup": (0.8, "§4 (names it), DeiT value"), "cutmix": (1.0, "§4 (names it), DeiT value"),
         "drop_path": (0.1, "§4 (stochastic depth), DeiT-S value"),
         "randaugment": ("rand-m9-mstd0.5-inc1", "DeiT"), "random_erasing": (0.25, "DeiT"),
         "repeated_aug": (3, "DeiT")}
_SWIN = {"dataset": ("cifar100", "§4"), "image_size": (224, "§4: Swin-T, patch 4, window 7"),
         "epochs": (160, "§4"), "global_batch": (256, "§4"), "optimizer": ("adamw", "§4 / Swin"),
         "lr": (2.5e-4, "§4"), "weight_decay": (0.05, "§4"), "schedule": ("cosine", "Swin"),
         "warmup_epochs": (20.0, "Swin"), "label_smoothing": (0.1, "Swin"),
         "mixup": (0.8, "Swin"), "cutmix": (1.0, "Swin"), "drop_path": (0.2, "Swin-T"),
         "randaugment": ("rand-m9-mstd0.5-inc1", "Swin"), "random_erasing": (0.25, "Swin"),
         "repeated_aug": (0, "Swin (off)")}
_VTP = {"dataset": ("cifar10", "§3.2"), "image_size": (32, "§3.1 CIFAR-10"),
        "global_batch": (64, "§3.2.1"), "optimizer": ("adamw", "§3.2.1 (DeiT)"),
        "schedule": ("cosine", "§3.2.1"),
        "model": ("12 layers, dim 768, 10 heads", "§3.2.1 text (released VTP model: 6 / 512 / 8)")}
_NAS_RETRAIN = {"dataset": ("flowers102", "§4"), "image_size": (224, "§4"),
                "epochs": (600, "§4.2"), "optimizer": ("adamw", "§4.2"), "lr": (1e-3, "§4.2"),
                "weight_decay": (1e-4, "§4.2"), "select_every": (10, "§4.2: saved every 10 "
                                                                "epochs, best on val tested")}
STATED: dict[str, dict[str, dict[str, tuple]]] = {
    "pe": {"vit_train": _DEIT, "vit_train@600": {**_DEIT, "epochs": (600, "Table 1, ViT-PE²")},
           "resnet_train": {"dataset": ("imagenet", "§4"), "image_size": (224, "§4"),
                            "optimizer": ("sgd", "§4"), "lr": (0.1, "§4"),
                            "weight_decay": (1e-4, "§4"), "schedule": ("cosine", "§4"),
                            "warmup_epochs": (5.0, "§4"),
                            "global_batch": (256, "torchvision reference (paper silent)"),
                            "epochs": (90, "torchvision reference (paper silent)")}},
    "sidt": {"search": {**_SWIN, "l1": (1e-4, "§4 gamma")},
             "finetune": {**_SWIN, "l1": (0.0, "§4: fine-tune without the L1 term")},
             "baseline": {**_SWIN, "l1": (0.0, "baseline, no L1")}},
    "vtp_svd": {"pretrain": {**_VTP},
                "baseline": {**_VTP, "epochs": (30, "§3.2.1"), "lr": (6.25e-7, "§3.2.1")},
                "sparsity": {**_VTP, "epochs": (100, "§3.2.2"), "lr": (6.25e-6, "§3.2.2"),
                             "l1": (1e-4, "§3.2.2")},
                "finetune": {**_VTP, "epochs": (100, "§3.2.2: as training"),
                             "lr": (6.25e-6, "§3.2.2: as training")},
                "decompose_finetune": {**_VTP, "epochs": (100, "§3.2: as training"),
                                       "lr": (6.25e-6, "§3.2: as training")}},
    "metaformer_nas": {"search": {"dataset": ("flowers102", "§4"), "image_size": (224, "§4"),
                                  "epochs": (100, "§4.1: 100 rounds x 1 epoch"),
                                  "global_batch": (128, "§4.1"), "optimizer": ("adamw", "§4.1"),
                                  "lr": (1e-3, "§4.1"), "weight_decay": (1e-4, "§4.1")},
                       "retrain": _NAS_RETRAIN},
    "templates": {"train": {"dataset": ("cifar10", "§4 (and CIFAR-100)"),
                            "image_size": (32, "§4"), "epochs": (160, "§4"),
                            "global_batch": (64, "§4"), "optimizer": ("sgd", "§4"),
                            "lr": (0.1, "§4"), "schedule": ("multistep", "§4: 0.1/0.01/0.001"),
                            "milestones": ((80, 120), "§4")}},
}

#: Why a ``paper`` profile departs from a stated value: (paper, recipe, field) -> reason.
PAPER_REASONS = {
    ("sidt", "search", "drop_path"): "swin_t builds with drop path 0.2 (Swin-T's), shown here",
    ("pe", "resnet_train", "epochs"): "the paper does not state it; torchvision's 90",
    ("vtp_svd", "*", "model"): ("the package follows the released 6-layer / 512 / 8-head "
                                "model the paper starts from; the text's geometry is "
                                "-p model=vit_cifar_text"),
    ("metaformer_nas", "search", "epochs"): "rounds x shared_epochs",
}


def _reason(paper: str, profile: str, recipe: str, fld: str, nproc: int) -> str:
    for key in ((paper, recipe, fld), (paper, "*", fld)):
        if key in PAPER_REASONS and profile == "paper":
            return PAPER_REASONS[key]
    if fld == "global_batch" and nproc > 1:
        return (f"the recipe states a per-process batch: {nproc} processes multiply it "
                "(set <recipe>.global_batch to fix the global batch)")
    if profile != "paper":
        return f"{profile} profile: scaled down on purpose (configs/{paper}.py)"
    return "not explained: check configs/" + paper + ".py"


# --------------------------------------------------------------------------- stages


@dataclasses.dataclass
class _Stage:
    name: str                      # stage / run name
    recipe_name: str               # the recipe it trains with ("" = none)
    recipe: TrainConfig | None
    model: str
    kwargs: dict
    runs: int = 1                  # how many trainings of this shape
    dataset: str = ""
    image_size: int = 32
    l1: float = 0.0
    drop_path: float | None = None
    val_split: bool = False        # trains on train only, a val split selects / rewards
    note: str = ""
    stated_key: str = ""           # key of STATED[paper] (default: recipe_name)
    ckpt: str = ""                 # the checkpoint folder


def _stages(paper: str, cfg) -> list[_Stage]:
    fn = globals().get(f"_stages_{paper}")
    return fn(cfg) if fn else _stages_generic(cfg)


def _recipes(cfg) -> dict[str, TrainConfig]:
    return {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)
            if isinstance(getattr(cfg, f.name), TrainConfig)}


def _stages_generic(cfg) -> list[_Stage]:
    model = getattr(cfg, "model", "") or ""
    return [_Stage(n, n, r, model, {"num_classes": _classes(cfg.dataset)}, dataset=cfg.dataset,
                   image_size=cfg.image_size) for n, r in _recipes(cfg).items() if r.epochs > 0]


def _stages_sidt(cfg) -> list[_Stage]:
    from reprolib.experiments import sidt as E

    nc = _classes(cfg.dataset)
    kw = {"num_classes": nc, "img_size": cfg.image_size}
    dp = _drop_path_of(cfg.model, kw)
    st = {s.name: s for s in E.stages(cfg)}
    out = []
    if isinstance(getattr(cfg, "baseline", None), TrainConfig) and cfg.baseline.epochs > 0:
        out.append(_Stage("baseline", "baseline", cfg.baseline, cfg.model, kw,
                          dataset=cfg.dataset, image_size=cfg.image_size, drop_path=dp,
                          note="the Table I 0 % row (evidence work: configs/sidt.py)",
                          ckpt=_ckpt(st.get("baseline"))))
    out.append(_Stage("search", "search", cfg.search, cfg.model, kw, dataset=cfg.dataset,
                      image_size=cfg.image_size, l1=cfg.l1_strength, drop_path=dp,
                      note="scores attached to every dimension; L1 on the scores",
                      ckpt=_ckpt(st.get("search"))))
    tunes = [s for n, s in st.items() if n.startswith("finetune")]
    ratios = E._ratios(cfg)
    first = tunes[0] if tunes else None
    out.append(_Stage(f"finetune x{len(ratios)}", "finetune", cfg.finetune, cfg.model, kw,
                      runs=len(ratios), dataset=cfg.dataset, image_size=cfg.image_size,
                      drop_path=dp, note=f"pruned models at ratios {ratios} (sizes shown: "
                      "the unpruned model, an upper bound)", ckpt=_ckpt(first)))
    return out


def _stages_pe(cfg) -> list[_Stage]:
    from reprolib.experiments import pe as E

    nc = _classes(cfg.dataset)
    st = {s.name: s for s in E.training_stages(cfg)}
    out = []
    for r in E.training_runs(cfg):
        kw = {"num_classes": nc, **E.model_kwargs(cfg, r["model"], r["kwargs"])}
        rec = getattr(cfg, r["recipe"])
        key = r["recipe"]
        if r.get("epochs"):
            rec = dataclasses.replace(rec, epochs=int(r["epochs"]))
            key = f"{r['recipe']}@{r['epochs']}" if r["epochs"] == 600 else key
        out.append(_Stage(r["name"], r["recipe"], rec, r["model"], kw, dataset=cfg.dataset,
                          image_size=cfg.image_size, drop_path=kw.get("drop_path_rate"),
                          stated_key=key, ckpt=_ckpt(st.get(r["name"]))))
    return out


def _stages_vtp_svd(cfg) -> list[_Stage]:
    from reprolib.configs.vtp_svd import RECIPES
    from reprolib.experiments import vtp_svd as E

    out = []
    for p in cfg.patch_sizes:
        pc = E.patch_cfg(cfg, p)
        kw = {"num_classes": _classes(pc.dataset), "image_size": pc.image_size,
              "patch_size": p, "dropout": pc.dropout, "attn_scale": pc.attn_scale}
        counts = {"decompose_finetune": len(pc.methods),
                  "sweep_finetune": (len(pc.sweep_methods) * len(pc.sweep_ratios)
                                     if p == pc.sweep_patch else 0)}
        for r in RECIPES:
            rec = getattr(pc, r)
            n = counts.get(r, 1)
            if rec.epochs <= 0 or n == 0:
                continue
            out.append(_Stage(f"p{p} {r}" + (f" x{n}" if n > 1 else ""), r, rec, pc.model, kw,
                              runs=n, dataset=pc.dataset, image_size=pc.image_size,
                              l1=pc.l1_strength if r == "sparsity" else 0.0,
                              note=f"patch {p}"))
    return out


def _stages_metaformer_nas(cfg) -> list[_Stage]:
    nc = _classes(cfg.dataset)
    kw = {"num_classes": nc, "image_size": cfg.image_size,
          "layer_scale_init_value": cfg.layer_scale_init}
    search = TrainConfig(epochs=cfg.rounds * cfg.shared_epochs, batch_size=cfg.batch_size,
                         optimizer="adamw", lr=cfg.shared_lr, weight_decay=cfg.shared_wd,
                         schedule="constant", progress=False)
    out = [_Stage(f"search N={n}", "search", search, cfg.model, {**kw, "mixer": {"shared": n}},
                  dataset=cfg.dataset, image_size=cfg.image_size, val_split=True,
                  note=f"{cfg.rounds} rounds x (shared weights 1 epoch"
                  + (f", capped at {cfg.max_train_batches} batches" if cfg.max_train_batches
                     else "") + f", {cfg.controller_samples} controller samples, Adam "
                  f"{cfg.controller_lr:g}); rewards on the val split")
           for n in cfg.node_counts]
    mixers = list(cfg.baselines) + [f"searched N={n}" for n in cfg.node_counts]
    out.append(_Stage(f"retrain x{len(mixers)}", "retrain", cfg.retrain, cfg.model,
                      {**kw, "mixer": "pooling"}, runs=len(mixers), dataset=cfg.dataset,
                      image_size=cfg.image_size, val_split=cfg.retrain.select_every > 0,
                      note=f"mixers {', '.join(mixers)} (sizes shown: pooling)"))
    return out


def _stages_templates(cfg) -> list[_Stage]:
    from reprolib.experiments import templates as E

    out = []
    cells = E.grid(cfg)
    for ds in E.datasets(cfg):
        for model in cfg.models:
            n = sum(1 for c in cells if c[0] == ds and c[1] == model)
            if not n:
                continue
            out.append(_Stage(f"{ds} {model} x{n}", "train", cfg.train, model,
                              {"num_classes": _classes(ds), "template": "base", "width": 1.0},
                              runs=n, dataset=ds, image_size=cfg.image_size,
                              note=f"templates {', '.join(cfg.templates)} x widths "
                              f"{', '.join(str(w) for w in E.model_widths(cfg, model))} "
                              "(sizes shown: base at width 1.0)"))
    return out


def _drop_path_of(model: str, kwargs: dict) -> float | None:
    import inspect

    from reprolib.core import registry

    try:
        fn = registry.builder(model)
    except ReprolibError:
        return None
    p = inspect.signature(fn).parameters.get("drop_path_rate")
    return kwargs.get("drop_path_rate", p.default if p is not None else None)


def _ckpt(stage) -> str:
    return paths.rel(stage.ckpt_dir) if stage is not None else ""


# --------------------------------------------------------------------------- the plan


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, tuple):
        return "(" + ", ".join(_fmt(x) for x in v) + ")"
    return str(v)


def _same(a, b) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) \
            and not isinstance(a, bool) and not isinstance(b, bool):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def plan(paper: str, profile: str = "smoke", nproc: int = 1, **overrides) -> dict:
    """The plan of ``paper`` at ``profile`` under ``nproc`` processes: ``{"paper",
    "profile", "nproc", "device", "stages": [{"name", "runs", "fields": [{"field", "value",
    "paper", "source", "departs", "reason"}], "note"}], "total_hours"}``."""
    if int(nproc) < 1:
        raise ReprolibError(f"--nproc {nproc}: need at least one process")
    nproc = int(nproc)
    cfg = get_config(paper, profile, **overrides)
    stated = STATED.get(paper, {})
    out = {"paper": paper, "profile": profile, "nproc": nproc, "device": cfg.device,
           "data_root": cfg.data_root, "stages": [], "total_hours": 0.0, "hours_known": True}
    for s in _stages(paper, cfg):
        r = s.recipe
        info = DATASET_INFO.get(s.dataset, {})
        n_img = info.get("train_only" if s.val_split else "train")
        if n_img is None:
            n_img = info.get("train")
        pb = r.process_batch(nproc)
        gb = r.total_batch(nproc)
        steps = (n_img // gb if n_img else None)
        params, flops = model_size(s.model, s.kwargs, s.image_size) if s.model else (None, None)
        augs = ["crop + flip"]
        if r.randaugment:
            augs.append(f"RandAugment {r.randaugment}")
        if r.random_erasing:
            augs.append(f"random erasing {r.random_erasing:g}")
        if r.repeated_aug > 1:
            folder = s.dataset in ("imagenet", "flowers102")
            # timm's RepeatAugSampler keeps the epoch length: each image x N, 1/N as many
            augs.append(f"repeated aug x{r.repeated_aug}"
                        + ("" if folder else " (folder sets only: not applied here)"))
        values = {
            "model": s.model + (f" {_kw(s.kwargs)}" if s.kwargs else ""),
            "params / FLOPs": (f"{params / 1e6:.2f} M / {flops / 1e9:.2f} GFLOPs"
                               if params is not None and flops is not None else
                               f"{params / 1e6:.2f} M / FLOPs not countable" if params else "-"),
            "dataset": s.dataset,
            "data present": data_present(s.dataset, cfg.data_root),
            "image_size": s.image_size,
            "global_batch": gb,
            "batch per process": f"{pb} x {nproc} process(es)",
            "optimizer": r.optimizer,
            "lr": r.peak_lr(nproc),
            "schedule": r.schedule + (f" {r.milestones}" if r.schedule == "multistep" else ""),
            "warmup_epochs": r.warmup_epochs,
            "epochs": r.epochs,
            "steps": (f"{steps:,} / epoch, {steps * r.epochs:,} in all"
                      + (f" (x{s.runs} runs)" if s.runs > 1 else "") if steps else "-"),
            "weight_decay": r.weight_decay,
            "augmentation": ", ".join(augs),
            "randaugment": r.randaugment or "off",
            "random_erasing": r.random_erasing,
            "repeated_aug": r.repeated_aug,
            "l1": s.l1,
            "drop_path": s.drop_path if s.drop_path is not None else "-",
            "label_smoothing": r.label_smoothing,
            "mixup": r.mixup, "cutmix": r.cutmix,
            "select_every": r.select_every,
            "milestones": r.milestones,
            "checkpoints": s.ckpt or "results/<paper>/<profile>/ckpt/<stage>-<hash>/",
        }
        st = stated.get(s.stated_key or s.recipe_name, {})
        fields = []
        for k, v in values.items():
            if k in ("milestones",) and k not in st:
                continue
            if k in ("randaugment", "random_erasing", "repeated_aug", "select_every") \
                    and k not in st and not v:
                continue
            f = {"field": k, "value": _fmt(v), "paper": "", "source": "", "departs": False,
                 "reason": ""}
            if k in st:
                pv, src = st[k]
                cmp = (r.schedule if k == "schedule" else r.randaugment if k == "randaugment"
                       else s.model if k == "model" else v)
                f["paper"], f["source"] = _fmt(pv), src
                if k == "model":
                    f["departs"] = s.model not in _TEXT_GEOMETRY
                else:
                    f["departs"] = not _same(cmp, pv if pv != "" else cmp)
                if f["departs"]:
                    f["reason"] = _reason(paper, profile, s.recipe_name, k, nproc)
            fields.append(f)
        # the GPU-hour estimate
        hours, text = (None, "no training images known")
        if n_img and s.model:
            hours, text = bench_estimate(s.model, s.image_size,
                                         n_img * r.epochs * s.runs)
        if hours is None:
            out["hours_known"] = False
        else:
            out["total_hours"] += hours
        fields.append({"field": "estimated GPU-hours", "value": text, "paper": "",
                       "source": "", "departs": False, "reason": ""})
        out["stages"].append({"name": s.name, "runs": s.runs, "fields": fields, "note": s.note})
    return out


#: Models with the text's VTP geometry (12 layers, 768, 10 heads): no departure on "model".
_TEXT_GEOMETRY = ("vit_cifar_text",)


def _kw(kwargs: dict) -> str:
    shown = {k: v for k, v in kwargs.items() if k != "num_classes"}
    body = ", ".join(f"{k}={_fmt(v)}" for k, v in shown.items())
    return f"({kwargs.get('num_classes', '?')} classes{', ' + body if body else ''})"


def _compact(s: dict) -> list[str]:
    f = {x["field"]: x for x in s["fields"]}

    def v(k):
        return f[k]["value"] if k in f else "-"
    dep = [x for x in s["fields"] if x["departs"]]
    out = [f"== {s['name']}: {v('model')}; {v('params / FLOPs')}",
           f"   data {v('dataset')} @ {v('image_size')} px ({v('data present')}); batch "
           f"{v('global_batch')} global = {v('batch per process')}; {v('optimizer')} lr "
           f"{v('lr')}, {v('schedule')}, warmup {v('warmup_epochs')}, {v('epochs')} epochs "
           f"({v('steps')})",
           f"   aug: {v('augmentation')}; reg: l1 {v('l1')}, drop path {v('drop_path')}, "
           f"smoothing {v('label_smoothing')}, mixup {v('mixup')} / cutmix {v('cutmix')}"
           + (f", select every {v('select_every')}" if "select_every" in f else ""),
           f"   ckpt {v('checkpoints')}; {v('estimated GPU-hours')}",
           f"   paper values stated for {sum(bool(x['paper']) for x in s['fields'])} fields, "
           f"{len(dep)} departing" + "".join(f"; ≠ {x['field']} {x['value']} (paper "
                                            f"{x['paper']}): {x['reason']}" for x in dep)]
    return out


def format_plan(p: dict, compact: bool = False) -> str:
    """The plan as text: one block per stage, ``field  value  [paper: X (source)]`` with ``≠``
    and the reason where the profile departs from the paper (``compact``: five lines per
    stage, departures listed)."""
    lines = [f"plan: {p['paper']} --profile {p['profile']} --nproc {p['nproc']} "
             f"(device {p['device']}); nothing is trained or read"]
    if not p["stages"]:
        lines.append("this pipeline trains nothing (no training recipe): it measures or reads "
                     "other pipelines' records")
    for s in p["stages"]:
        if compact:
            lines += _compact(s)
            continue
        lines.append("")
        lines.append(f"== {s['name']}" + (f"  [{s['note']}]" if s["note"] else ""))
        for f in s["fields"]:
            mark = "≠" if f["departs"] else " "
            line = f"  {mark} {f['field']:<20} {f['value']}"
            if f["paper"]:
                line += f"   [paper: {f['paper']} ({f['source']})]"
            if f["departs"]:
                line += f"  <- {f['reason']}"
            lines.append(line)
    lines.append("")
    tot = (f"{p['total_hours']:,.1f} device-hours" if p["hours_known"] else
           "unknown (no benchmark record for some stages)"
           + (f"; known part {p['total_hours']:,.1f} h" if p["total_hours"] else ""))
    n_dep = sum(f["departs"] for s in p["stages"] for f in s["fields"])
    lines.append(f"total estimate: {tot}; {n_dep} field(s) depart from the paper (≠)")
    return "\n".join(lines)


def plan_text(paper: str, profile: str = "smoke", nproc: int = 1, **overrides) -> str:
    return format_plan(plan(paper, profile, nproc, **overrides))
