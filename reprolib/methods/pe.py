"""PE (Koyun & Töreyin 2024, ``../shared/papers/pe.md``): closed-form parameter counts, the
measured params/FLOPs of Tables 1-2 (ours and every baseline timm / torchvision provides), the
analysis of the ResNet sharing rule against the printed counts, and the training recipes.

The models are in :mod:`reprolib.models.pe`.  Counts are measured on the ``meta`` device
(no memory, no initialisation time): ``reprolib.measure.count_params`` (a shared tensor
counts once) and ``reprolib.measure.count_flops`` (batch 1, 1 multiply-add = 1 FLOP,
attention matmuls included).
"""

from __future__ import annotations

import os
import time
from typing import Sequence

import torch
import torch.nn as nn

import reprolib
from reprolib.errors import ReprolibError
from reprolib.measure import count_flops, count_params

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


# ------------------------------------------------------------------------ closed-form counts
def vit_param_count(embed_dim: int = 384, depth: int = 12, mlp_ratio: float = 4.0,
                    num_classes: int = 1000, img_size: int = 224, patch_size: int = 16,
                    in_chans: int = 3, pe: bool = True) -> int:
    """Parameters of a class-token ViT (timm layout, biases everywhere) in closed form.

    Per block: attention ``2 d^2 + 4 d`` with eq. (1)-(2) (``4 d^2 + 4 d`` plain), FFN
    ``r d^2 + r d + d`` with eq. (4) (``2 r d^2 + r d + d`` plain), two LayerNorms ``4 d``.
    Arguments as in :func:`reprolib.models.pe.vit_pe` (d = embed_dim, r = mlp_ratio).
    """
    d, h = embed_dim, int(embed_dim * mlp_ratio)
    attn = (2 if pe else 4) * d * d + 4 * d
    ffn = (1 if pe else 2) * h * d + h + d
    tokens = (img_size // patch_size) ** 2 + 1
    embed = in_chans * patch_size ** 2 * d + d + d + tokens * d   # patch conv, cls, pos
    head = 2 * d + d * num_classes + num_classes                  # final norm, classifier
    return embed + depth * (attn + ffn + 4 * d) + head


def resnet_param_count(num_classes: int = 1000, layers: Sequence[int] = (3, 4, 6, 3),
                       base: int = 64, small_stem: bool = False, pe_stages: Sequence[int] = (),
                       share_1x1: bool = True, share_3x3: bool = True) -> int:
    """Parameters of a torchvision bottleneck ResNet with eq. (6)-(9) in closed form.

    Stage k (width ``w = base 2^(k-1)``, ``n`` blocks, input ``c``): first block
    ``c w + 9 w^2 + 4 w^2 + 4 c w`` (with projection shortcut) + BN; the other ``n - 1``
    blocks ``17 w^2`` each, or with PE: ``4 w^2`` per distinct ``W`` (1 if share_1x1 else
    ``n - 1``) + ``9 w^2`` per distinct 3x3 kernel (1 if share_3x3 else ``n - 1``); BN
    ``12 w`` per block always.  Arguments as in :func:`reprolib.models.pe.resnet_bottleneck`.
    """
    stem = 3 * base * (9 if small_stem else 49) + 2 * base
    total, c = stem, base
    for k, n in enumerate(layers):
        w = base * 2 ** k
        first = c * w + 9 * w * w + 4 * w * w + c * 4 * w + 2 * (6 * w) + 2 * 4 * w
        rest_bn = (n - 1) * 2 * 6 * w
        if (k + 1) in pe_stages and n > 1:
            rest = (1 if share_1x1 else n - 1) * 4 * w * w + (1 if share_3x3 else n - 1) * 9 * w * w
        else:
            rest = (n - 1) * 17 * w * w
        total += first + rest + rest_bn
        c = 4 * w
    return total + c * num_classes + num_classes


# ------------------------------------------------------------------------ measured counts
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
            return reprolib.create_model(name, num_classes=num_classes, **kw)
    raise ReprolibError(f"unknown model library {lib!r}; valid: timm, torchvision, reprolib")


def measure_counts(model: nn.Module, image_size: int = 224) -> dict:
    """{"params": distinct parameters, "flops": FLOPs of one image (1 MAC = 1 FLOP)}."""
    return {"params": count_params(model), "flops": count_flops(model, (3, image_size, image_size))}


def count_table(sources: dict[str, tuple | None], paper: dict[str, dict], image_size: int = 224,
                num_classes: int = 1000) -> list[dict]:
    """One row per paper row: our measured params / FLOPs (M / G) beside the printed ones.

    sources: TABLE1_SOURCES or TABLE2_SOURCES.  paper: the printed table
    (``reprolib.configs.pe.PAPER_TABLE1`` / ``PAPER_TABLE2``).  image_size / num_classes:
    input side (224, the tables') and classifier width (1000, ImageNet-1k).  Models the
    libraries lack get ``None`` in our columns and ``source = "not in timm/torchvision"``.
    """
    rows = []
    for name, src in sources.items():
        p = paper[name]
        row = {"model": name, "source": "not in timm/torchvision", "params_M": None,
               "GFLOPs": None, "paper_params_M": p["params_M"], "paper_GFLOPs": p["GFLOPs"],
               "paper_top1": p["top1"]}
        if src is not None:
            c = measure_counts(build(src, num_classes), image_size)
            row.update(source=f"{src[0]}:{src[1]}" + "".join(f" {k}={v}" for k, v in src[2].items()),
                       params_M=c["params"] / 1e6, GFLOPs=c["flops"] / 1e9)
        rows.append(row)
    return rows


def resnet_sharing_table(num_classes: Sequence[int] = (1000, 100)) -> list[dict]:
    """Params of ResNet50-PE^1 / PE^2 under every sharing rule and classifier width (measured).

    Rules: eq. (6) alone (tie W / W^T inside each block), + one W per stage (share_1x1),
    + one 3x3 kernel per stage (share_3x3), both.  num_classes: classifier widths to try.
    Shows which rule and width reproduce the printed 12.8 M / 13.4 M.
    """
    rows = []
    for s1 in (False, True):
        for s3 in (False, True):
            for nc in num_classes:
                row = {"share_1x1": s1, "share_3x3": s3, "num_classes": nc}
                for tag, stages in (("PE1", (1, 2, 3, 4)), ("PE2", (3, 4))):
                    m = build(("reprolib", "resnet50_pe",
                               dict(pe_stages=stages, share_1x1=s1, share_3x3=s3)), nc)
                    row[f"{tag}_params_M"] = count_params(m) / 1e6
                rows.append(row)
    return rows


# ------------------------------------------------------------------------------- training
def family(model_name: str) -> str:
    """"vit" or "resnet": which recipe (DeiT or torchvision) trains ``model_name``."""
    if "vit" in model_name:
        return "vit"
    if "resnet" in model_name:
        return "resnet"
    raise ReprolibError(f"model {model_name!r} is neither a ViT nor a ResNet of the PE paper")


def world_size() -> int:
    """Processes of a torchrun job (1 outside one): the global batch is batch x this."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def train_config(cfg, fam: str):
    """The ``reprolib.train.TrainConfig`` of recipe ``fam`` ("vit" = DeiT, "resnet" =
    torchvision) from a :class:`reprolib.configs.pe.PEConfig`.

    DeiT: AdamW, lr = vit_lr_512 x global batch / 512, wd 0.05 (no decay on norms and biases),
    cosine with warmup, mixup + cutmix + label smoothing (stochastic depth is in the model).
    torchvision: SGD momentum 0.9, lr 0.1, wd 1e-4, cosine, 5 warmup epochs (crop + flip
    are the data set's training transform).
    """
    from reprolib.train import TrainConfig

    if fam == "vit":
        lr = cfg.vit_lr_512 * cfg.vit_batch_size * world_size() / 512   # Goyal et al. scaling
        return TrainConfig(epochs=cfg.vit_epochs, batch_size=cfg.vit_batch_size,
                           optimizer="adamw", lr=lr,
                           weight_decay=cfg.vit_weight_decay, no_decay_norm_bias=True,
                           schedule="cosine", warmup_epochs=cfg.vit_warmup_epochs,
                           warmup_start=min(1.0, cfg.vit_warmup_lr / lr), min_lr=cfg.vit_min_lr,
                           label_smoothing=cfg.vit_label_smoothing, mixup=cfg.vit_mixup,
                           cutmix=cfg.vit_cutmix, clip_grad=None, seed=cfg.seed)
    if fam == "resnet":
        return TrainConfig(epochs=cfg.resnet_epochs, batch_size=cfg.resnet_batch_size,
                           optimizer="sgd", lr=cfg.resnet_lr, momentum=0.9,
                           weight_decay=cfg.resnet_weight_decay, schedule="cosine",
                           warmup_epochs=cfg.resnet_warmup_epochs,
                           label_smoothing=cfg.resnet_label_smoothing, seed=cfg.seed)
    raise ReprolibError(f"unknown recipe {fam!r}; valid: vit, resnet")


def train_model(cfg, model_name: str, ckpt_dir=None, data=None,
                model_kwargs: dict | None = None) -> dict:
    """Train the registered ``model_name`` with its recipe on ``cfg.dataset``; return metrics.

    Metrics: top-1 ``acc`` (%) on the test split, ``params``, ``flops`` (at
    ``cfg.image_size``), ``epochs``, ``train_time_s``, per-epoch ``history``.
    ckpt_dir: checkpoint folder (resumes).  data: a ``reprolib.data.Data`` to reuse.
    model_kwargs: extra builder arguments (e.g. ``pe_stages``).
    """
    from reprolib.data import get_data
    from reprolib.train import fit, resolve_device

    fam = family(model_name)
    tc = train_config(cfg, fam)
    torch.manual_seed(cfg.seed)
    device = resolve_device(cfg.device)
    if data is None:
        data = get_data(cfg.dataset, cfg.image_size, tc.batch_size, root=cfg.data_root,
                        device=device, seed=cfg.seed)
    kw = dict(model_kwargs or {})
    if fam == "vit":
        kw["drop_path_rate"] = cfg.vit_drop_path
    if cfg.image_size != 224 and model_name in ("vit_pe_small", "vit_small"):
        kw["img_size"] = cfg.image_size
    model = reprolib.create_model(model_name, num_classes=data.num_classes, **kw)
    counts = measure_counts(model, cfg.image_size)
    t0 = time.perf_counter()
    res = fit(model, data, tc, ckpt_dir=ckpt_dir, device=device, desc=model_name)
    return {"acc": res.acc, "loss": res.loss, "epochs": tc.epochs, "lr": tc.lr,
            "train_time_s": round(time.perf_counter() - t0, 2), **counts,
            "history": res.history}


# ------------------------------------------------------------------ runs, records, tables
PAPER = "pe"


def training_runs(cfg) -> list[dict]:
    """The trainings ``cfg`` asks for: ``{"name", "model", "kwargs", "recipe"}`` each.

    ViT: ``vit_model`` and ``vit_twin`` (DeiT recipe).  ResNet: ``resnet_model`` once per
    entry of ``resnet_variants`` (a string of stage digits, "1234" = PE^1, "34" = PE^2) and
    ``resnet_twin`` (torchvision recipe).  Empty names are skipped.
    """
    runs = []
    for m in (cfg.vit_model, cfg.vit_twin):
        if m:
            runs.append({"name": m, "model": m, "kwargs": {}, "recipe": "vit"})
    if cfg.resnet_model:
        for v in cfg.resnet_variants:
            stages = tuple(int(c) for c in str(v))
            runs.append({"name": f"{cfg.resnet_model}-stages{v}", "model": cfg.resnet_model,
                         "kwargs": {"pe_stages": stages}, "recipe": "resnet"})
    if cfg.resnet_twin:
        runs.append({"name": cfg.resnet_twin, "model": cfg.resnet_twin, "kwargs": {},
                     "recipe": "resnet"})
    return runs


def run_training(cfg, force: bool = False) -> list[dict]:
    """Train every run of :func:`training_runs` through ``run_cached`` (records under
    ``results/pe/<profile>/``); a finished run is reused unless ``force``."""
    from reprolib.configs import config_dict
    from reprolib.data import get_data
    from reprolib.results import record_path, run_cached
    from reprolib.train import resolve_device

    recs, cache = [], {}
    for run in training_runs(cfg):
        conf = {**config_dict(cfg), "run_model": run["model"], "run_kwargs": run["kwargs"]}

        def fn(ckpt, run=run):
            bs = cfg.vit_batch_size if run["recipe"] == "vit" else cfg.resnet_batch_size
            if bs not in cache:  # one loader per batch size, shared by a pair
                cache[bs] = get_data(cfg.dataset, cfg.image_size, bs, root=cfg.data_root,
                                     device=resolve_device(cfg.device), seed=cfg.seed)
            return train_model(cfg, run["model"], ckpt, data=cache[bs], model_kwargs=run["kwargs"])

        rank = torch.distributed.get_rank() if torch.distributed.is_available() and \
            torch.distributed.is_initialized() else 0
        if rank == 0:
            recs.append(run_cached(PAPER, cfg.profile, run["name"], conf, fn, force=force))
        else:  # other torchrun ranks train alongside rank 0, which alone writes the record
            path = record_path(PAPER, cfg.profile, run["name"], conf)
            if force or not path.exists():
                fn(path.parent / "ckpt" / path.stem)
    return recs


def main(argv=None) -> None:
    """Train the runs of a profile outside the notebook, e.g. on ImageNet with 8 GPUs:

        torchrun --nproc_per_node=8 -m reprolib.methods.pe --profile paper \\
            -p data_root=/data/imagenet -p vit_epochs=600

    The records land in ``results/pe/<profile>/``; the notebook then tabulates them.
    """
    import argparse
    import ast

    from reprolib.configs import get_config
    from reprolib.train import init_distributed

    ap = argparse.ArgumentParser(prog="python -m reprolib.methods.pe")
    ap.add_argument("--profile", default="smoke")
    ap.add_argument("-p", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--force", action="store_true")
    a = ap.parse_args(argv)
    over = {}
    for kv in a.p:
        k, _, v = kv.partition("=")
        try:
            over[k] = ast.literal_eval(v)
        except (ValueError, SyntaxError):
            over[k] = v
    cfg = get_config(PAPER, a.profile, **over)
    init_distributed()
    for r in run_training(cfg, force=a.force):
        print(f"{r['name']}: top-1 {r['metrics']['acc']:.2f} %, {r['metrics']['params']:,} params")


if __name__ == "__main__":
    main()


def run_tables(cfg, force: bool = False) -> dict[str, dict]:
    """Measure Table 1, Table 2 and the sharing-rule table (records ``table1``, ``table2``,
    ``sharing``; ``{"rows": [...]}`` each) at ``cfg.table_image_size`` / ``table_num_classes``."""
    from reprolib.configs.pe import PAPER_TABLE1, PAPER_TABLE2
    from reprolib.results import run_cached

    conf = {"image_size": cfg.table_image_size, "num_classes": cfg.table_num_classes}
    jobs = {
        "table1": lambda _: {"rows": count_table(TABLE1_SOURCES, PAPER_TABLE1, **conf)},
        "table2": lambda _: {"rows": count_table(TABLE2_SOURCES, PAPER_TABLE2, **conf)},
        "sharing": lambda _: {"rows": resnet_sharing_table((cfg.table_num_classes, 100))},
    }
    return {k: run_cached(PAPER, cfg.profile, k, conf, fn, force=force) for k, fn in jobs.items()}


def _imagenet_top1(train_df) -> dict[str, float]:
    """Our ImageNet top-1 by run name (only records trained on ImageNet count)."""
    if train_df is None or not len(train_df) or "acc" not in train_df:
        return {}
    d = train_df[train_df["config.dataset"] == "imagenet"]
    return dict(zip(d["name"], d["acc"]))


_OURS_RUN = {"ViT-PE¹ (ours)": "vit_pe_small", "DeiT-S/16": "vit_small",
             "ResNet50-PE¹ (Ours)": "resnet50_pe-stages1234",
             "ResNet50-PE² (Ours)": "resnet50_pe-stages34", "ResNet50": "resnet50"}


def count_frame(records: dict, which: str, train_df=None):
    """The ``which`` ("table1" / "table2" / "sharing") record as a DataFrame; Tables 1-2 get
    a ``top1`` column (ours on ImageNet where we trained it, else the paper's) and
    ``top1_from`` saying which."""
    import pandas as pd

    df = pd.DataFrame(records[which]["metrics"]["rows"])
    if which == "sharing":
        return df
    ours = _imagenet_top1(train_df)
    run = df["model"].map(_OURS_RUN)
    df["top1"] = [ours.get(r, p) for r, p in zip(run, df["paper_top1"])]
    df["top1_from"] = ["ours (ImageNet)" if r in ours else "paper" for r in run]
    return df


def training_frame(train_df):
    """One row per training record: model, params, FLOPs at the training resolution, epochs,
    test top-1, training time."""
    cols = {"name": "run", "params": "params", "flops": "flops", "epochs": "epochs",
            "acc": "top1", "train_time_s": "train_time_s", "config.dataset": "data"}
    if train_df is None or not len(train_df) or "acc" not in train_df:
        import pandas as pd
        return pd.DataFrame(columns=list(cols.values()))
    df = train_df[train_df["acc"].notna()][list(cols)].rename(columns=cols).reset_index(drop=True)
    return df.astype({"params": int, "flops": int, "epochs": int})


def plot_accuracy_vs_params(t1, t2, train, title_tables: str = "", title_train: str = ""):
    """Two panels.  Left: ImageNet top-1 vs params of Tables 1-2 (params measured by us where
    timm / torchvision has the model, filled markers; the paper's printed params otherwise,
    hollow; top-1 from ``top1_from``).  Right: this profile's training runs, top-1 vs params
    (PE vs unshared twin).  t1 / t2: :func:`count_frame` outputs; train: :func:`training_frame`.
    """
    import matplotlib.pyplot as plt
    import pandas as pd

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2))
    df = pd.concat([t1.assign(table="Table 1 (ViT)"), t2.assign(table="Table 2 (ResNet)")])
    df = df.drop_duplicates(subset=["model"])
    for table, marker in (("Table 1 (ViT)", "o"), ("Table 2 (ResNet)", "s")):
        d = df[df["table"] == table]
        ours = d["model"].str.contains("PE")
        measured = d["params_M"].notna()
        x = d["params_M"].where(measured, d["paper_params_M"])
        for sel, kw in ((measured & ~ours, dict(color="tab:blue")),
                        (~measured, dict(facecolors="none", edgecolors="tab:blue")),
                        (ours, dict(color="tab:red"))):
            a.scatter(x[sel], d["top1"][sel], marker=marker, s=30, **kw)
        for name, xi, yi, o in zip(d["model"], x, d["top1"], ours):
            if o or name in ("DeiT-S/16", "DeiT-T/16", "PVTv2-B1", "ResNet18", "ResNet34", "ResNet50"):
                a.annotate(name, (xi, yi), fontsize=6, xytext=(3, 2), textcoords="offset points")
    a.set_xscale("log")
    a.set_xlabel("params (M): filled = measured by us, hollow = paper's (not in timm/torchvision)")
    a.set_ylabel("ImageNet top-1 (%) (paper's unless trained here)")
    a.set_title(title_tables, fontsize=8)
    a.grid(alpha=0.3)
    if len(train):
        tr = train.assign(kind=["PE" if "pe" in r else "unshared twin" for r in train["run"]])
        for kind, color in (("PE", "tab:red"), ("unshared twin", "tab:blue")):
            d = tr[tr["kind"] == kind]
            b.scatter(d["params"] / 1e6, d["top1"], color=color, label=kind)
            for r, xi, yi in zip(d["run"], d["params"] / 1e6, d["top1"]):
                b.annotate(r, (xi, yi), fontsize=7, xytext=(3, 2), textcoords="offset points")
        b.legend(fontsize=7)
    b.set_xlabel("params (M)")
    b.set_ylabel("test top-1 (%)")
    b.set_title(title_train, fontsize=8)
    b.grid(alpha=0.3)
    fig.tight_layout()
    return fig
