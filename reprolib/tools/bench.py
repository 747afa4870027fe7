"""Benchmark: is every compressed model measurably faster, and does ``fit`` run at the
hardware's speed?  ``reprolib bench`` and :func:`speedup`.

FLOPs are counted (``reprolib.measure.count_flops``: one multiply-add = one FLOP); time is
measured.  For each paper's compressed models beside their dense parent this module times
inference at batch 1 and at a large batch, and training throughput (images/s of forward +
backward + SGD step), then reports per compressed model

    flop_ratio    = FLOPs(compressed) / FLOPs(dense)            (counted)
    latency_ratio = time(compressed) / time(dense)              (measured)
    speedup       = 1 / latency_ratio,  flop_reduction = 1 / flop_ratio
    efficiency    = speedup / flop_reduction = flop_ratio / latency_ratio

so 1.0 means the model is exactly as much faster as its FLOPs promise, below 1 that it is
less (fixed per-layer costs, element-wise work FLOPs do not count, unaligned widths).

How it times (the rules of timm's ``benchmark.py`` and of ``torch.utils.benchmark``): a
family's models (the dense parent and its compressed children) are timed *interleaved*:
each round runs every model once, in an order rotated from round to round, after
``warmup`` untimed rounds, and the median over rounds is kept (with the interquartile
range), so machine load drifts hit all models alike.  On CUDA each timed call is bracketed
by ``torch.cuda.synchronize`` and CUDA events.  Inference runs in ``torch.inference_mode``
in eval mode; a training step is forward, cross-entropy, backward and an SGD (momentum) step
on a fixed random batch.  Variants: precision ``fp32`` or ``bf16`` (autocast), ``cl``
(channels_last for 4-d inputs), ``compile`` (``torch.compile``; compilation happens in the
warm-up and is not timed).  Threads: torch's default for the machine unless ``threads`` is
set; every record says how many it used.

Families (``BenchConfig.groups``):

* ``sidt``: Swin-T at 224 px, dense and pruned by SiDT (``sidt.prune``) at each ratio, with
  ``round_to`` 1 (the paper's rule) and 8 (hardware-aligned widths); scores are seeded
  random numbers, so the global ranking prunes about the ratio in every layer (a model's
  speed depends on its widths only);
* ``vtp``: the code book's CIFAR ViT (patch 4), pruned by VTP at ``vtp_rate`` and then every
  pruned linear layer factored by SVD / QR / LU at ``vtp_rank_ratio`` (layers where the
  factors would not reduce the multiply-adds stay dense and are listed);
* ``pe``: ViT-PE vs DeiT-S and ResNet50-PE (PE1, PE2) vs ResNet-50 at 224 px;
* ``metaformer``: MetaFormer-S12 with the searched token-mixer cells (from the
  ``metaformer_nas`` records at profile ``metaformer_cells``, else the paper's figure-5
  cell) vs pooling;
* ``templates``: each template CNN at width ``templates_width`` with the four filter
  redistributions vs its base distribution;
* ``fit``: :func:`loop_throughput`: ``fit`` against a bare minimal PyTorch loop and against a
  loop written as the code books write it (DataLoader with per-image transforms, per-step
  ``.item()``), on the same model, data and device.

Every family is one cached record, ``results/bench/<profile>/<family>-<variant>-<hash>.json``
(the engine of :mod:`reprolib.experiments.common`), holding the device, precision, batch
sizes, threads and torch / CUDA versions beside the numbers.  :func:`table` builds the
speedup-vs-FLOP table, :func:`write_outputs` writes it as a CSV named like timm's benchmark
files (device, precision, layout, torch version) and draws the figure "measured speedup vs
FLOP reduction".

    import reprolib
    from reprolib.tools import bench
    r = bench.speedup(reprolib.create_model("swin_t"), small, batch_size=64)
    r["flop_ratio"], r["latency_ratio"], r["efficiency"]
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import os
import platform
import re
import statistics
import time
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from reprolib.core.device import resolve_device
from reprolib.errors import ReprolibError, check_number, choose
from reprolib.core.measure import count_flops, count_params

PRECISIONS = ("fp32", "bf16")
GROUPS = ("sidt", "vtp", "fit", "pe", "metaformer", "templates")
#: Targets of issue 17: efficiency (measured speedup / FLOP reduction) at the large batch.
TARGET_EFFICIENCY = 0.8
TEMPLATES = ("base", "reverse", "uniform", "quadratic", "negative_quadratic")
TEMPLATE_MODELS = ("vgg19_cifar", "resnet50_cifar", "googlenet_cifar", "mobilenet_cifar")
PAPER = "bench"
FIG_DIR = "bench"


# --------------------------------------------------------------------------- config


@dataclass
class BenchConfig:
    """What ``reprolib bench`` measures, and how; profiles in :data:`PRESETS`."""

    profile: str = "smoke"            # the preset these values came from
    seed: int = 0                     # weights and scores of the benchmarked models
    device: str = "auto"              # "auto" (cuda when available), "cpu" or "cuda"
    variants: tuple = ("fp32",)       # each: precision [+cl] [+compile], e.g. "bf16+cl+compile"
    threads: int = 0                  # torch intra-op threads; 0 = torch's default (all cores)
    groups: tuple = GROUPS            # families to run (GROUPS)
    round_to: tuple = (1, 8)          # SiDT / VTP widths and decomposition ranks rounded to
    warmup: int = 2                   # untimed rounds before timing (compile happens here)
    repeats: int = 9                  # timed rounds at batch 1 (median kept)
    large_repeats: int = 3            # timed rounds at the large batch
    train_repeats: int = 3            # timed training steps per model
    sidt_model: str = "swin_t"        # SiDT's Swin (paper: Swin-T, 100 classes, 224 px)
    sidt_classes: int = 100
    sidt_size: int = 224
    sidt_ratios: tuple = (0.2, 0.4, 0.6, 0.8)  # pruning ratios (paper's Table I)
    sidt_scope: str = "global"        # SiDT ranking: "global" or "layer"
    sidt_batch: int = 64              # large inference batch
    sidt_train_batch: int = 8         # training-step batch
    vtp_model: str = "vit_cifar"      # the code book's ViT (paper size: dim 512, depth 6)
    vtp_patch: int = 4
    vtp_rate: float = 0.5             # VTP pruning rate (fraction of all scores)
    vtp_rank_ratio: float = 0.25      # decomposition rank / min(out, in)
    vtp_methods: tuple = ("svd", "qr", "lu")
    vtp_batch: int = 64
    vtp_train_batch: int = 32
    pe_pairs: tuple = (("vit_small", "vit_pe_small"), ("resnet50", "resnet50_pe"),
                       ("resnet50", "resnet50_pe:3,4"))  # (dense, PE); ":3,4" = pe_stages
    pe_classes: int = 1000
    pe_size: int = 224
    pe_batch: int = 16
    pe_train_batch: int = 4
    metaformer_model: str = "metaformer_s12"
    metaformer_classes: int = 100
    metaformer_size: int = 224
    metaformer_cells: str = "cpu"     # metaformer_nas profile whose searched cells are used
    metaformer_batch: int = 64
    metaformer_train_batch: int = 16
    templates_models: tuple = TEMPLATE_MODELS
    templates_width: float = 0.25     # width multiplier (paper: 1.0; CPU budget)
    templates_batch: int = 64
    templates_train_batch: int = 16
    fit_models: tuple = ("small_cnn",)  # models of the loop comparison
    fit_dataset: str = "cifar10_subset"
    fit_images: int = 1024            # training images per timed epoch
    fit_batch: int = 128
    fit_repeats: int = 3              # interleaved rounds of (fit, bare, code-book)
    fit_workers: int = 2              # DataLoader workers of the code-book loop

    def __post_init__(self):
        choose("device", str(self.device).split(":")[0], ("auto", "cpu", "cuda"))
        for v in self.variants:
            parse_variant(v)
        for g in self.groups:
            choose("benchmark group", g, GROUPS)
        for r in self.round_to:
            if isinstance(r, bool) or not isinstance(r, int) or r < 1:
                raise ReprolibError(f"round_to={self.round_to!r}: every entry must be an "
                                    "integer >= 1")
        for name in ("warmup", "threads"):
            check_number(name, getattr(self, name), 0, 1 << 16)
        for name in ("repeats", "large_repeats", "train_repeats", "fit_repeats", "fit_images",
                     "fit_batch"):
            check_number(name, getattr(self, name), 1, 1 << 30)
        for f in dataclasses.fields(self):
            if f.name.endswith("_batch"):
                check_number(f.name, getattr(self, f.name), 1, 1 << 16)
        for r in self.sidt_ratios:
            check_number("sidt_ratios", r, 0.0, 1.0, lo_open=True, hi_open=True)
        choose("SiDT scope", self.sidt_scope, ("global", "layer"))
        check_number("vtp_rate", self.vtp_rate, 0.0, 1.0, hi_open=True)
        check_number("vtp_rank_ratio", self.vtp_rank_ratio, 0.0, 1.0, lo_open=True)
        check_number("templates_width", self.templates_width, 0.0, 16.0, lo_open=True)


#: Profiles: ``smoke`` (tiny models, seconds: tests), ``cpu`` (the papers' sizes where a
#: 2-core CPU allows, ~30 min), ``gpu`` (paper sizes, batch 256, fp32 / bf16 / channels_last
#: / compile).
PRESETS: dict[str, dict] = {
    "smoke": dict(
        device="cpu", warmup=1, repeats=3, large_repeats=2, train_repeats=2,
        sidt_model="swin_tiny_test", sidt_classes=10, sidt_size=32, sidt_ratios=(0.4,),
        sidt_batch=8, sidt_train_batch=8,
        vtp_model="test_vit_cifar", vtp_batch=8, vtp_train_batch=8, vtp_methods=("svd",),
        pe_pairs=(("vit_test_unshared", "vit_pe_test"),
                  ("resnet_test_unshared", "resnet_pe_test")),
        pe_classes=10, pe_size=32, pe_batch=8, pe_train_batch=8,
        metaformer_model="test_metaformer", metaformer_classes=10, metaformer_size=16,
        metaformer_cells="", metaformer_batch=8, metaformer_train_batch=8,
        templates_models=("vgg19_cifar_tiny", "mobilenet_cifar_tiny"), templates_width=0.25,
        templates_batch=8, templates_train_batch=8,
        fit_models=("test_small_cnn",), fit_dataset="digits", fit_images=256, fit_batch=64,
        fit_repeats=2, fit_workers=0),
    # the defaults: ~20 min on 2 cores; the large inference batch is 64 where the targets
    # are stated (SiDT, VTP) and for the cheap families, 16 for the 4.1-4.6 GMAC PE models;
    # training steps at 4-32 images.
    "cpu": dict(device="cpu"),
    "gpu": dict(device="cuda", variants=("fp32", "bf16", "bf16+cl", "bf16+cl+compile"),
                warmup=5, repeats=30, large_repeats=20, train_repeats=20,
                sidt_batch=256, sidt_train_batch=128, vtp_batch=256, vtp_train_batch=256,
                pe_batch=256, pe_train_batch=128, metaformer_batch=256,
                metaformer_train_batch=128, templates_width=1.0, templates_batch=256,
                templates_train_batch=128, fit_dataset="cifar10_subset", fit_images=5085,
                fit_batch=256, fit_repeats=5, fit_workers=4),
}


def get_config(profile: str = "smoke", /, **overrides) -> BenchConfig:
    """The benchmark config at ``profile`` with single values overridden (command-line
    strings are converted to the field's type); an unknown profile or key is a
    ReprolibError naming the valid ones."""
    from reprolib.configs import build_config

    choose("benchmark profile", profile, PRESETS)
    names = [f.name for f in dataclasses.fields(BenchConfig) if f.name != "profile"]
    for k in overrides:
        if k not in names:
            raise ReprolibError(f"unknown benchmark key {k!r}; valid keys: {', '.join(names)}")
    values = {**PRESETS[profile], **{k: v for k, v in overrides.items() if v is not None}}
    return build_config(BenchConfig, values, profile=profile)


def parse_variant(variant: str) -> dict:
    """``"bf16+cl+compile"`` -> ``{"precision": "bf16", "channels_last": True,
    "compile": True}``; the precision comes first, then any of ``cl`` and ``compile``."""
    parts = str(variant).split("+")
    choose("precision", parts[0], PRECISIONS)
    for p in parts[1:]:
        choose("variant option", p, ("cl", "compile"))
    return {"precision": parts[0], "channels_last": "cl" in parts[1:],
            "compile": "compile" in parts[1:]}


# --------------------------------------------------------------------------- timing


def environment(device=None) -> dict:
    """Where a measurement ran: device name, threads, torch / CUDA versions, CPU model."""
    dev = resolve_device(device)
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")),
                       cpu)
    except OSError:
        pass
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"{cpu} x{os.cpu_count()}"
    return {"device_type": dev.type, "device_name": name, "threads": torch.get_num_threads(),
            "torch": torch.__version__, "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version() if dev.type == "cuda" else None}


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def time_call(fn: Callable[[], object], dev: torch.device) -> float:
    """Milliseconds of one ``fn()``: CUDA events after a synchronize on CUDA, else the wall
    clock (``time.perf_counter``)."""
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        return float(start.elapsed_time(end))
    t = time.perf_counter()
    fn()
    return (time.perf_counter() - t) * 1e3


def interleaved(fns: dict[str, Callable[[], object]], dev, warmup: int = 2,
                repeats: int = 9) -> dict[str, dict]:
    """Time several callables interleaved: ``warmup`` untimed rounds, then ``repeats``
    rounds that each call every function once, the order rotated by one each round.
    Returns per name ``{"ms": median, "iqr_ms", "times_ms"}``."""
    dev = resolve_device(dev)
    names = list(fns)
    for _ in range(warmup):
        for n in names:
            fns[n]()
    _sync(dev)
    times: dict[str, list[float]] = {n: [] for n in names}
    for i in range(repeats):
        k = i % len(names)
        for n in names[k:] + names[:k]:
            times[n].append(time_call(fns[n], dev))
    return {n: _stats(t) for n, t in times.items()}


def _stats(t: list[float]) -> dict:
    q = statistics.quantiles(t, n=4) if len(t) > 1 else [t[0]] * 3
    return {"ms": statistics.median(t), "iqr_ms": q[2] - q[0], "times_ms": [round(x, 4) for x in t]}


def _autocast(dev: torch.device, precision: str):
    if precision == "bf16":
        return torch.autocast(dev.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def prepare(model: nn.Module, dev, *, channels_last: bool = False, compile: bool = False,
            input_ndim: int = 4) -> nn.Module:
    """``model`` moved to ``dev`` (in place), channels_last when asked and the input is an
    image batch, compiled when asked (returns the compiled wrapper)."""
    model.to(dev)
    if channels_last and input_ndim == 4:
        model.to(memory_format=torch.channels_last)
    return torch.compile(model) if compile else model


def _input(input_size, batch: int, dev, channels_last: bool) -> torch.Tensor:
    x = torch.randn(batch, *input_size, device=dev)
    return x.contiguous(memory_format=torch.channels_last) if channels_last and x.ndim == 4 else x


def infer_fn(model: nn.Module, x: torch.Tensor, precision: str = "fp32") -> Callable[[], object]:
    """One timed inference call: eval mode, ``torch.inference_mode``, autocast for bf16."""
    model.eval()

    def run():
        with torch.inference_mode(), _autocast(x.device, precision):
            return model(x)

    return run


def train_fn(model: nn.Module, x: torch.Tensor, num_classes: int,
             precision: str = "fp32") -> Callable[[], object]:
    """One timed training step: forward (autocast for bf16), cross-entropy, backward, SGD
    (momentum 0.9) step; gradients are freed after the step."""
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=1e-6, momentum=0.9)
    y = torch.randint(0, num_classes, (x.shape[0],), device=x.device,
                      generator=torch.Generator(x.device).manual_seed(0))

    def run():
        with _autocast(x.device, precision):
            out = model(x)
        F.cross_entropy(out.float(), y).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return run


def _num_classes(model: nn.Module, input_size, dev) -> int:
    was = model.training
    model.eval()
    with torch.inference_mode():
        out = model(torch.zeros(1, *input_size, device=dev))
    model.train(was)
    return int(out.shape[-1])


def speedup(dense: nn.Module, compressed: nn.Module, input_size=(3, 224, 224),
            batch_size: int = 1, device="cpu", amp: bool = False, *, warmup: int = 3,
            repeats: int = 10, channels_last: bool = False, compile: bool = False,
            train: bool = False) -> dict:
    """Measured speedup of ``compressed`` over ``dense`` beside their FLOP reduction.

    Args:
        dense, compressed: the two models (moved to ``device`` in place).
        input_size: one input's shape, (C, H, W) for images (default (3, 224, 224)).
        batch_size: images per timed call (default 1).
        device: "cpu" (default), "cuda" or "auto".
        amp: bf16 autocast (default False = fp32).
        warmup, repeats: untimed and timed interleaved rounds (median kept; default 3, 10).
        channels_last, compile: memory format and ``torch.compile`` (default off).
        train: time a training step (forward + backward + SGD step) instead of inference.

    Returns:
        ``flop_ratio`` (compressed / dense FLOPs, counted), ``latency_ratio`` (compressed /
        dense median time, measured), ``efficiency`` (measured speedup / FLOP reduction =
        flop_ratio / latency_ratio; 1 = as fast as the FLOPs promise), ``speedup``,
        ``flop_reduction``, ``param_ratio``, ``dense_ms`` / ``compressed_ms`` (medians),
        their interquartile ranges, the FLOPs and parameters of both, ``batch_size``,
        ``precision``, ``mode`` and the :func:`environment` (device, threads, versions).
    """
    dev = resolve_device(device)
    check_number("batch_size", batch_size, 1, 1 << 20)
    precision = "bf16" if amp else "fp32"
    flops = [count_flops(m.cpu(), tuple(input_size)) for m in (dense, compressed)]
    params = [count_params(m) for m in (dense, compressed)]
    res = time_models({"dense": dense, "compressed": compressed}, input_size, batch_size, dev,
                      precision=precision, warmup=warmup, repeats=repeats,
                      channels_last=channels_last, compile=compile,
                      mode="train" if train else "infer")
    d, c = res["dense"]["ms"], res["compressed"]["ms"]
    fr, lr = flops[1] / flops[0], c / d
    return {"flop_ratio": fr, "latency_ratio": lr, "efficiency": fr / lr, "speedup": d / c,
            "flop_reduction": 1 / fr, "param_ratio": params[1] / params[0],
            "dense_ms": d, "compressed_ms": c, "dense_iqr_ms": res["dense"]["iqr_ms"],
            "compressed_iqr_ms": res["compressed"]["iqr_ms"], "dense_flops": flops[0],
            "compressed_flops": flops[1], "dense_params": params[0],
            "compressed_params": params[1], "batch_size": batch_size, "precision": precision,
            "channels_last": channels_last, "compile": compile,
            "mode": "train" if train else "infer", "repeats": repeats, **environment(dev)}


def time_models(models: dict[str, nn.Module], input_size, batch_size: int, device, *,
                precision: str = "fp32", warmup: int = 2, repeats: int = 9,
                channels_last: bool = False, compile: bool = False,
                mode: str = "infer") -> dict[str, dict]:
    """Interleaved timing (:func:`interleaved`) of ``models`` at one batch size: ``mode``
    "infer" (one forward) or "train" (one training step).  Returns per name ``{"ms",
    "iqr_ms", "times_ms"}`` and, for "train", ``images_per_s`` (batch / median time)."""
    choose("precision", precision, PRECISIONS)
    choose("timing mode", mode, ("infer", "train"))
    dev = resolve_device(device)
    x = _input(input_size, batch_size, dev, channels_last)
    fns = {}
    for name, m in models.items():
        net = prepare(m, dev, channels_last=channels_last, compile=compile, input_ndim=x.ndim)
        if mode == "infer":
            fns[name] = infer_fn(net, x, precision)
        else:
            fns[name] = train_fn(net, x, _num_classes(m, input_size, dev), precision)
    out = interleaved(fns, dev, warmup, repeats)
    if mode == "train":
        for r in out.values():
            r["images_per_s"] = batch_size / (r["ms"] / 1e3)
    for m in models.values():
        m.zero_grad(set_to_none=True)
    return out


# --------------------------------------------------------------------------- families


def families(cfg: BenchConfig) -> list[dict]:
    """The benchmarked families of ``cfg`` as data: ``{"name", "group", "input_size",
    "batch", "train_batch", "cases": [case, ...]}``; the first case is the dense parent.
    A case names its model and how it is compressed (nothing is built here)."""
    out = []
    rts = [int(r) for r in cfg.round_to]
    if "sidt" in cfg.groups:
        base = {"model": cfg.sidt_model, "kwargs": {"num_classes": cfg.sidt_classes,
                                                    "img_size": cfg.sidt_size}}
        cases = [{"label": "dense", "method": "dense", **base}]
        cases += [{"label": f"SiDT {round(100 * r)}% rt{rt}", "method": "SiDT", **base,
                   "ratio": float(r), "scope": cfg.sidt_scope, "round_to": rt}
                  for r in cfg.sidt_ratios for rt in rts]
        out.append(_family(f"sidt-{cfg.sidt_model}", "sidt", cfg.sidt_size, cfg.sidt_batch,
                           cfg.sidt_train_batch, cases))
    if "vtp" in cfg.groups:
        base = {"model": cfg.vtp_model, "kwargs": {"patch_size": cfg.vtp_patch}}
        cases = [{"label": "dense", "method": "dense", **base}]
        for rt in rts:
            cases.append({"label": f"VTP {round(100 * cfg.vtp_rate)}% rt{rt}", "method": "VTP",
                          **base, "rate": cfg.vtp_rate, "round_to": rt})
        for m in cfg.vtp_methods:
            for rt in rts:
                cases.append({"label": f"VTP+{m.upper()} rt{rt}", "method": f"VTP+{m.upper()}",
                              **base, "rate": cfg.vtp_rate, "round_to": rt,
                              "decompose": m, "rank_ratio": cfg.vtp_rank_ratio})
        out.append(_family(f"vtp-{cfg.vtp_model}-p{cfg.vtp_patch}", "vtp", 32, cfg.vtp_batch,
                           cfg.vtp_train_batch, cases))
    if "pe" in cfg.groups:
        by_dense: dict[str, list] = {}
        for dense, pe in cfg.pe_pairs:
            by_dense.setdefault(dense, []).append(pe)
        for dense, pes in by_dense.items():
            kw = {"num_classes": cfg.pe_classes}
            cases = [{"label": "dense", "method": "dense", "model": dense, "kwargs": kw}]
            for pe in pes:
                name, _, stages = pe.partition(":")
                k = dict(kw, **({"pe_stages": [int(s) for s in stages.split(",")]} if stages else {}))
                cases.append({"label": pe, "method": "PE", "model": name, "kwargs": k})
            out.append(_family(f"pe-{dense}", "pe", cfg.pe_size, cfg.pe_batch,
                               cfg.pe_train_batch, cases))
    if "metaformer" in cfg.groups:
        kw = {"num_classes": cfg.metaformer_classes, "image_size": cfg.metaformer_size}
        cases = [{"label": "pooling", "method": "dense", "model": cfg.metaformer_model,
                  "kwargs": dict(kw, mixer="pooling")}]
        for label, arch in searched_cells(cfg.metaformer_cells):
            cases.append({"label": label, "method": "MetaFormer-NAS",
                          "model": cfg.metaformer_model, "kwargs": dict(kw, mixer=arch)})
        out.append(_family(f"metaformer-{cfg.metaformer_model}", "metaformer",
                           cfg.metaformer_size, cfg.metaformer_batch,
                           cfg.metaformer_train_batch, cases))
    if "templates" in cfg.groups:
        for model in cfg.templates_models:
            cases = [{"label": t if t != "base" else "dense",
                      "method": "dense" if t == "base" else "templates", "model": model,
                      "kwargs": {"template": t, "width": float(cfg.templates_width)}}
                     for t in TEMPLATES]
            out.append(_family(f"templates-{model}", "templates", 32, cfg.templates_batch,
                               cfg.templates_train_batch, cases))
    return out


def _family(name, group, size, batch, train_batch, cases) -> dict:
    return {"name": name, "group": group, "input_size": [3, int(size), int(size)],
            "batch": int(batch), "train_batch": int(train_batch), "cases": cases}


def searched_cells(profile: str) -> list[tuple[str, dict]]:
    """The token-mixer cells the ``metaformer_nas`` search derived at ``profile`` (label,
    architecture), from its records; the paper's figure-5 cell when none is recorded (or
    ``profile`` is "")."""
    from reprolib.experiments.metaformer_nas import FIG5_ARCH

    cells = []
    if profile:
        from reprolib.configs import get_config as paper_config
        from reprolib.experiments import metaformer_nas

        mcfg = paper_config("metaformer_nas", profile)
        for st in metaformer_nas.stages(mcfg):
            if st.name.startswith("search-nas") and st.done:
                arch = st.metrics()["arch"]
                cells.append((f"searched {arch['n_nodes']}-node ({profile})", arch))
    return cells or [("figure-5 cell", {"n_nodes": len(FIG5_ARCH), "nodes": FIG5_ARCH})]


def build_case(case: dict, seed: int = 0) -> nn.Module:
    """The model of one case: created (seeded), then pruned / decomposed as it says."""
    from reprolib.methods import decompose, sidt, vtp
    from reprolib.core.registry import create_model

    torch.manual_seed(seed)
    model = create_model(case["model"], **case.get("kwargs", {}))
    g = torch.Generator().manual_seed(seed + 1)
    if case["method"] == "SiDT":
        sidt.attach_scores(model)
        with torch.no_grad():
            for a in sidt.scores(model).values():
                a.copy_(torch.rand(a.shape, generator=g))
        model = sidt.prune(model, case["ratio"], case["scope"], round_to=case["round_to"])
    elif case["method"].startswith("VTP"):
        vtp.attach_scores(model)
        with torch.no_grad():
            for a in vtp.score_parameters(model):
                a.copy_(torch.rand(a.shape, generator=g))
        model = vtp.prune(model, case["rate"], round_to=case["round_to"])
        if case.get("decompose"):
            import warnings

            with warnings.catch_warnings():          # kept-dense layers are recorded instead
                warnings.simplefilter("ignore", UserWarning)
                model = decompose.decompose_model(model, case["decompose"], case["rank_ratio"],
                                                  round_to=case["round_to"])
    return model.eval()


def _widths(model: nn.Module, case: dict) -> dict:
    """What a compressed model kept, for the table: head dims, hidden widths, ranks, layers
    left dense, and how many widths are not multiples of 8."""
    from reprolib.methods import decompose, sidt

    if case["method"] == "SiDT":
        a = sidt.arch(model)
        ws = [*a["attn_dims"].values(), *a["mlp_dims"].values()]
        return {"head_dims": sorted(set(a["attn_dims"].values())),
                "unaligned_widths": sum(v % 8 != 0 for v in ws), "widths": len(ws)}
    if case["method"].startswith("VTP"):
        dims = [[int(b.attn.head_dim), int(b.mlp.fc1.out_features)] for b in model.blocks]
        ws = [v for d in dims for v in d]
        out = {"block_dims": dims, "unaligned_widths": sum(v % 8 != 0 for v in ws),
               "widths": len(ws)}
        if case.get("decompose"):
            ranks = decompose.current_ranks(model)
            out.update(ranks=sorted(set(ranks.values())), factored_layers=len(ranks),
                       kept_dense=sorted(decompose.kept_dense(model)))
        return out
    return {}


def _family_stage(cfg: BenchConfig, fam: dict, variant: str):
    from reprolib.core.pipeline import Stage

    opts = parse_variant(variant)

    def fn(stage) -> dict:
        dev = _setup(cfg)
        load0 = _loadavg()
        rows = []
        models = {}
        for case in fam["cases"]:
            m = build_case(case, cfg.seed)
            rows.append({"label": case["label"], "method": case["method"],
                         "round_to": case.get("round_to"), "params": count_params(m),
                         "flops": count_flops(m, tuple(fam["input_size"])), **_widths(m, case)})
            models[case["label"]] = m
        size = fam["input_size"]
        common = dict(precision=opts["precision"], channels_last=opts["channels_last"],
                      compile=opts["compile"])
        timings = {
            "b1": time_models(models, size, 1, dev, warmup=cfg.warmup, repeats=cfg.repeats,
                              **common),
            "large": time_models(models, size, fam["batch"], dev, warmup=max(1, cfg.warmup - 1),
                                 repeats=cfg.large_repeats, **common),
            "train": time_models(models, size, fam["train_batch"], dev, mode="train",
                                 warmup=max(1, cfg.warmup - 1), repeats=cfg.train_repeats,
                                 **common),
        }
        for row in rows:
            for kind, res in timings.items():
                r = res[row["label"]]
                row[f"{kind}_ms"], row[f"{kind}_iqr_ms"] = r["ms"], r["iqr_ms"]
                row[f"{kind}_times_ms"] = r["times_ms"]
        return {"family": fam["name"], "group": fam["group"], "rows": rows,
                "input_size": size, "batch_small": 1, "batch_large": fam["batch"],
                "train_batch": fam["train_batch"], "variant": variant, **opts,
                "warmup": cfg.warmup, "repeats": cfg.repeats, "large_repeats": cfg.large_repeats,
                "train_repeats": cfg.train_repeats, "loadavg_start": load0,
                "loadavg_end": _loadavg(), **environment(dev)}

    key = {"family": fam, "variant": variant, "threads": cfg.threads, "device": cfg.device,
           "warmup": cfg.warmup, "repeats": cfg.repeats, "large_repeats": cfg.large_repeats,
           "train_repeats": cfg.train_repeats, "seed": cfg.seed}
    return Stage(cfg, f"{fam['name']}-{_slug(variant)}", key, fn, paper=PAPER)


def _setup(cfg: BenchConfig) -> torch.device:
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    dev = resolve_device(cfg.device)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
    return dev


def _loadavg() -> float | None:
    """The machine's 1-minute load average (None where the OS has none): recorded before and
    after each family, so a record says whether others were computing while it was timed."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def _slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "_", s).strip("_")


# --------------------------------------------------------------------------- fit vs loops


def loop_throughput(model: nn.Module, data, *, device="cpu", batch_size: int = 128,
                    images: int | None = None, repeats: int = 3, workers: int = 2,
                    precision: str = "fp32", channels_last: bool = False,
                    compile: bool = False, lr: float = 0.01) -> dict:
    """Training images/s of ``reprolib.train.fit`` beside two loops on the same model, data
    and device, timed in interleaved rounds (one epoch over ``images`` training images each,
    median over ``repeats`` rounds):

    * ``bare``: the minimal PyTorch loop over the same on-device batches (forward,
      cross-entropy, zero_grad, backward, SGD step; no metrics);
    * ``codebook``: as the code books write it (kuangliu/pytorch-cifar and the like): a
      ``DataLoader`` with ``workers`` processes applying torchvision transforms to each PIL
      image (random crop with 4 px padding, flip, ToTensor, Normalize), ``.to(device)`` per
      batch and ``loss.item()`` / ``correct.item()`` every step.

    All three use SGD (momentum 0.9, weight decay 5e-4, ``lr``) at ``batch_size`` on a copy of
    the same initial model.  ``data``: a :class:`reprolib.data.Data` whose ``train`` is a
    ``TensorLoader`` (its images and augmentation are reused).  Returns images/s of each,
    ``fit_vs_bare`` and ``fit_vs_codebook`` (ratios of images/s) and the settings.
    """
    from reprolib.configs import TrainConfig
    from reprolib.data import TensorLoader

    dev = resolve_device(device)
    src = data.train
    n = min(images or src.dataset_size, src.dataset_size)
    imgs, labels = src.images[:n].to(dev), src.labels[:n].to(dev)
    mean = src.mean.flatten().tolist()
    std = src.std.flatten().tolist()
    loader = TensorLoader(imgs, labels, batch_size, shuffle=True, augment=True,
                          image_size=src.image_size, mean=mean, std=std, flip=src.flip,
                          pad=src.pad, seed=0)
    fit_data = dataclasses.replace(data, train=loader, test=[], val=None)
    recipe = TrainConfig(epochs=1, batch_size=batch_size, optimizer="sgd", lr=lr,
                         momentum=0.9, weight_decay=5e-4, schedule="constant",
                         amp=precision == "bf16", channels_last=channels_last, compile=compile,
                         progress=False)
    nets = {k: copy.deepcopy(model).to(dev) for k in ("fit", "bare", "codebook")}
    cb_loader = _codebook_loader(imgs.cpu(), labels.cpu(), batch_size, workers, mean, std,
                                 src.pad, src.flip, src.image_size)
    bare_opt = torch.optim.SGD(nets["bare"].parameters(), lr=lr, momentum=0.9,
                               weight_decay=5e-4)
    cb_opt = torch.optim.SGD(nets["codebook"].parameters(), lr=lr, momentum=0.9,
                             weight_decay=5e-4)
    if channels_last:
        for k in ("bare", "codebook"):
            nets[k].to(memory_format=torch.channels_last)
    bare_net = torch.compile(nets["bare"]) if compile else nets["bare"]
    cb_net = torch.compile(nets["codebook"]) if compile else nets["codebook"]
    epoch = {"fit": 0}

    def run_fit():
        from reprolib.core.train import fit

        loader.set_epoch(epoch["fit"])
        epoch["fit"] += 1
        fit(nets["fit"], fit_data, recipe, device=dev)

    def run_bare():
        bare_net.train()
        for x, y in loader:
            if channels_last and x.ndim == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            with _autocast(dev, precision):
                out = bare_net(x)
            loss = F.cross_entropy(out.float(), y)
            bare_opt.zero_grad(set_to_none=True)
            loss.backward()
            bare_opt.step()
        _sync(dev)

    def run_codebook():
        cb_net.train()
        train_loss = correct = total = 0
        for x, y in cb_loader:
            x, y = x.to(dev), y.to(dev)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            cb_opt.zero_grad()
            with _autocast(dev, precision):
                out = cb_net(x)
            loss = F.cross_entropy(out.float(), y)
            loss.backward()
            cb_opt.step()
            train_loss += loss.item()
            _, predicted = out.max(1)
            total += y.size(0)
            correct += predicted.eq(y).sum().item()
        _sync(dev)

    res = interleaved({"fit": run_fit, "bare": run_bare, "codebook": run_codebook}, dev,
                      warmup=1, repeats=repeats)
    ips = {k: n / (r["ms"] / 1e3) for k, r in res.items()}
    return {"images": n, "batch_size": batch_size, "repeats": repeats, "workers": workers,
            "precision": precision, "channels_last": channels_last, "compile": compile,
            **{f"{k}_images_per_s": v for k, v in ips.items()},
            **{f"{k}_ms": r["ms"] for k, r in res.items()},
            **{f"{k}_iqr_ms": r["iqr_ms"] for k, r in res.items()},
            "fit_vs_bare": ips["fit"] / ips["bare"],
            "fit_vs_codebook": ips["fit"] / ips["codebook"], **environment(dev)}


class _PILDataset(torch.utils.data.Dataset):
    """uint8 NCHW images as PIL images through torchvision transforms (the code books' way)."""

    def __init__(self, images, labels, transform):
        self.images = images.permute(0, 2, 3, 1).contiguous().numpy()
        self.labels = labels.tolist()
        self.transform = transform

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        from PIL import Image

        return self.transform(Image.fromarray(self.images[i])), self.labels[i]


def _codebook_loader(images, labels, batch_size, workers, mean, std, pad, flip, size):
    from reprolib.core import _compat  # noqa: F401 - torchvision importable without its C ops
    import torchvision.transforms as T

    tf = [T.RandomCrop(images.shape[-1], padding=pad)] if pad else []
    tf += [T.RandomHorizontalFlip()] if flip else []
    if size != images.shape[-1]:
        tf.append(T.Resize(size))
    tf += [T.ToTensor(), T.Normalize(mean, std)]
    return torch.utils.data.DataLoader(_PILDataset(images, labels, T.Compose(tf)),
                                       batch_size=batch_size, shuffle=True,
                                       num_workers=workers)


def _fit_stage(cfg: BenchConfig, model_name: str, variant: str):
    from reprolib.core.pipeline import Stage

    opts = parse_variant(variant)

    def fn(stage) -> dict:
        from reprolib.data import get_data
        from reprolib.core.registry import create_model

        dev = _setup(cfg)
        load0 = _loadavg()
        data = get_data(cfg.fit_dataset, 32, cfg.fit_batch, device=dev, seed=cfg.seed)
        torch.manual_seed(cfg.seed)
        model = create_model(model_name, num_classes=data.num_classes)
        out = loop_throughput(model, data, device=dev, batch_size=cfg.fit_batch,
                              images=cfg.fit_images, repeats=cfg.fit_repeats,
                              workers=cfg.fit_workers, **opts)
        return {"model": model_name, "dataset": cfg.fit_dataset, "params": count_params(model),
                "flops": count_flops(model.cpu(), (3, 32, 32)), "variant": variant, **out,
                "loadavg_start": load0, "loadavg_end": _loadavg()}

    key = {"model": model_name, "dataset": cfg.fit_dataset, "images": cfg.fit_images,
           "batch": cfg.fit_batch, "repeats": cfg.fit_repeats, "workers": cfg.fit_workers,
           "variant": variant, "threads": cfg.threads, "device": cfg.device, "seed": cfg.seed}
    return Stage(cfg, f"fit-{model_name}-{_slug(variant)}", key, fn, paper=PAPER)


# --------------------------------------------------------------------------- pipeline


def stages(cfg: BenchConfig) -> list:
    """One cached stage per (family, variant) and per (fit model, variant), in the order of
    :data:`GROUPS`."""
    fams = families(cfg)
    out = []
    for v in cfg.variants:
        for g in GROUPS:
            if g == "fit" and g in cfg.groups:
                out += [_fit_stage(cfg, m, v) for m in cfg.fit_models]
            out += [_family_stage(cfg, f, v) for f in fams if f["group"] == g]
    return out


def run(cfg: BenchConfig, force: bool = False, log: Callable[[str], None] = print) -> dict:
    """Every stage (cached records); returns ``{stage name: record}``."""
    recs = {}
    for st in stages(cfg):
        t0 = time.perf_counter()
        cached = st.done and not force
        recs[st.name] = st.run(force)
        log(f"[bench] {st.name}: {'cached' if cached else f'{time.perf_counter() - t0:.0f} s'}")
    return recs


def _records(cfg: BenchConfig) -> list[dict]:
    return [st.record() for st in stages(cfg) if st.done]


def done(cfg: BenchConfig) -> bool:
    """Whether any benchmark record of ``cfg`` exists (the README shows it then)."""
    return any(st.done for st in stages(cfg))


# --------------------------------------------------------------------------- tables, figure


def _is_target(group: str, row: dict) -> bool:
    """The issue's targets: SiDT at 40 % and the VTP-pruned model (no decomposition)."""
    return (group == "sidt" and row["method"] == "SiDT" and "40%" in row["label"]) or \
        (group == "vtp" and row["method"] == "VTP")


def table(cfg: BenchConfig, variant: str | None = None):
    """The speedup-vs-FLOP table: one row per compressed model (every family of ``cfg`` that
    has a record, ``variant`` = the first of ``cfg.variants`` unless given), with its FLOP
    ratio and, at batch 1, at the large batch and for a training step, the dense and
    compressed times, the measured speedup and the efficiency (speedup / FLOP reduction);
    the layers decomposition left dense, the widths not a multiple of 8, and a note saying
    why a case stays below the target where the records show it."""
    import pandas as pd

    variant = variant or cfg.variants[0]
    rows = []
    for rec in _records(cfg):
        m = rec["metrics"]
        if "rows" not in m or m["variant"] != variant:
            continue
        dense = m["rows"][0]
        by_label = {r["label"]: r for r in m["rows"]}
        for r in m["rows"][1:]:
            fr = r["flops"] / dense["flops"]
            row = {"family": m["family"], "method": r["method"], "model": r["label"],
                   "round_to": r.get("round_to"), "params (M)": r["params"] / 1e6,
                   "FLOPs (G)": r["flops"] / 1e9, "FLOP ratio": fr}
            for kind, b in (("b1", 1), ("large", m["batch_large"]), ("train", m["train_batch"])):
                sp = dense[f"{kind}_ms"] / r[f"{kind}_ms"]
                tag = {"b1": "b1", "large": "large", "train": "train"}[kind]
                row[f"{tag} batch"] = b
                row[f"{tag} dense (ms)"] = dense[f"{kind}_ms"]
                row[f"{tag} (ms)"] = r[f"{kind}_ms"]
                row[f"{tag} speedup"] = sp
                row[f"{tag} efficiency"] = sp * fr
            row["unaligned widths"] = (f"{r['unaligned_widths']}/{r['widths']}"
                                       if "widths" in r else "")
            row["kept dense"] = ", ".join(r.get("kept_dense", [])) or ""
            row["target"] = ""
            if _is_target(m["group"], r):
                ok = row["large efficiency"] >= TARGET_EFFICIENCY
                row["target"] = (f">= {TARGET_EFFICIENCY} at batch {m['batch_large']}: "
                                 f"{'met' if ok else 'missed'}")
            row["note"] = _note(r, row, by_label, fr)
            rows.append(row)
    df = pd.DataFrame(rows)
    df.attrs["caption"] = _caption(cfg, variant)
    return df


def _note(r: dict, row: dict, by_label: dict, fr: float) -> str:
    """Why a case runs below its FLOP promise, from what the records show."""
    notes = []
    e1, eL = row["b1 efficiency"], row["large efficiency"]
    if 0.9 <= fr <= 1.1:
        notes.append("FLOPs within 10 % of the parent: the ratio measures overhead, "
                     "not compression")
    elif fr > 1.1:
        notes.append("more FLOPs than the parent (a redistribution, not a compression)")
    if min(e1, eL) >= TARGET_EFFICIENCY or fr > 1.1:
        return "; ".join(notes)
    if r.get("round_to") == 1:
        twin = by_label.get(r["label"].replace("rt1", "rt8"))
        if twin is not None and r.get("unaligned_widths"):
            notes.append(f"{r['unaligned_widths']} of {r['widths']} widths not a multiple of 8; "
                         "round_to=8 row beside it")
    if e1 < eL - 0.1:
        notes.append(f"batch 1 is bound by fixed per-layer costs (efficiency {e1:.2f} vs "
                     f"{eL:.2f} at batch {row['large batch']})")
    if "+" in r["method"] and r["method"].startswith("VTP"):
        notes.append("each factored layer is two thin matmuls (rank "
                     f"{'/'.join(map(str, r.get('ranks', [])))}): more, smaller kernels; "
                     "norms, softmax and attention are not reduced by the factorisation")
    elif r["method"] in ("SiDT", "VTP") and eL < TARGET_EFFICIENCY:
        notes.append("element-wise work (LayerNorm, GELU, softmax, reshapes) and the "
                     "unpruned patch embedding / head do not shrink with the pruned FLOPs")
    return "; ".join(notes)


def provenance(cfg: BenchConfig, variant: str) -> str:
    """One line naming what produced the records of ``variant``: profile, device, threads,
    precision and layout, torch (and CUDA) version."""
    recs = [r for r in _records(cfg) if r["metrics"].get("variant") == variant]
    if not recs:
        return f"profile={cfg.profile} · {variant} · no records"
    env = recs[0]["metrics"]
    cuda = f" · CUDA {env['cuda']}" if env.get("cuda") and env["device_type"] == "cuda" else ""
    return (f"profile={cfg.profile} · device={env['device_name']} · threads={env['threads']} · "
            f"{variant} · torch {env['torch']}{cuda}")


def _caption(cfg: BenchConfig, variant: str) -> str:
    return (f"Measured speedup vs FLOP reduction (`reprolib bench --profile {cfg.profile}`): "
            f"{provenance(cfg, variant)} · median of interleaved repeats ({cfg.repeats} at "
            f"batch 1, {cfg.large_repeats} at the large batch, {cfg.train_repeats} training "
            "steps). efficiency = measured speedup / FLOP reduction (1 = as fast as the FLOPs "
            "promise); FLOPs: one multiply-add = one FLOP.")


def fit_table(cfg: BenchConfig):
    """``fit`` images/s beside the bare loop's and the code-book loop's, per model and
    variant, with the two ratios."""
    import pandas as pd

    rows = []
    for rec in _records(cfg):
        m = rec["metrics"]
        if "fit_vs_bare" not in m:
            continue
        rows.append({"model": m["model"], "data": m["dataset"], "variant": m["variant"],
                     "images": m["images"], "batch": m["batch_size"],
                     "fit (img/s)": m["fit_images_per_s"], "bare (img/s)": m["bare_images_per_s"],
                     "code-book (img/s)": m["codebook_images_per_s"],
                     "fit / bare": m["fit_vs_bare"], "fit / code-book": m["fit_vs_codebook"],
                     "workers": m["workers"], "device": m["device_name"],
                     "threads": m["threads"]})
    df = pd.DataFrame(rows)
    df.attrs["caption"] = (
        f"`fit` vs a bare PyTorch loop vs a code-book loop (`reprolib bench --profile "
        f"{cfg.profile}`): training images/s, one epoch per round, median of "
        f"{cfg.fit_repeats} interleaved rounds; bare = the same on-device batches, no "
        "metrics; code-book = DataLoader with per-image torchvision transforms and "
        "per-step .item() (goal: fit / bare >= 0.95).")
    return df


_MARKERS = {"SiDT": "o", "VTP": "s", "VTP+SVD": "^", "VTP+QR": "v", "VTP+LU": "<",
            "VTP+QR_REDUCED": ">", "VTP+QR_PIVOTED": "P", "VTP+COD": "X", "PE": "D",
            "MetaFormer-NAS": "*", "templates": "h"}


def figures(cfg: BenchConfig, variant: str | None = None) -> dict:
    """``speedup_vs_flops``: measured speedup against FLOP reduction at batch 1, at the
    large batch and for a training step, the line y = x (as fast as the FLOPs promise), one
    marker shape per method, hollow for round_to 1, filled for round_to 8 (or none)."""
    import matplotlib.pyplot as plt

    df = table(cfg, variant)
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.4), sharey=True)
    if not len(df):
        return {"speedup_vs_flops": fig}
    x = 1 / df["FLOP ratio"]
    lo = min(x.min(), *(df[f"{k} speedup"].min() for k in ("b1", "large", "train"))) * 0.8
    hi = max(x.max(), *(df[f"{k} speedup"].max() for k in ("b1", "large", "train"))) * 1.25
    colors = dict(zip(_MARKERS, plt.rcParams["axes.prop_cycle"].by_key()["color"] * 2))
    for ax, kind, title in zip(axes, ("b1", "large", "train"),
                               ("inference, batch 1", "inference, large batch",
                                "training step")):
        ax.plot([lo, hi], [lo, hi], color="grey", lw=1, ls="--", label="y = x")
        for meth, g in df.groupby("method", sort=False):
            for rt, gg in g.groupby(g["round_to"].fillna(0), sort=True):
                filled = rt != 1
                c = colors.get(meth, "k")
                ax.scatter(1 / gg["FLOP ratio"], gg[f"{kind} speedup"],
                           marker=_MARKERS.get(meth, "o"), s=46, edgecolors=c,
                           facecolors=c if filled else "none",
                           label=f"{meth}" + (f" rt{int(rt)}" if rt else ""))
        batches = sorted(set(df[f"{kind} batch"]))
        ax.set_title(f"{title} (batch {'/'.join(map(str, batches))})", fontsize=9)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        ax.set_xlabel("FLOP reduction (dense / compressed FLOPs)")
        ax.grid(alpha=0.3, which="both")
    axes[0].set_ylabel("measured speedup (dense / compressed time)")
    h, lab = axes[0].get_legend_handles_labels()
    fig.legend(h, lab, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=7)
    fig.suptitle(f"Measured speedup vs FLOP reduction\n{provenance(cfg, variant or cfg.variants[0])}",
                 fontsize=9)
    fig.tight_layout()
    return {"speedup_vs_flops": fig}


def csv_name(cfg: BenchConfig, variant: str) -> str:
    """A CSV name that carries device, precision, layout and torch version, as timm's
    benchmark results do: ``benchmark-fp32-nchw-pt2130-cpu-amd_epyc_x2-cpu.csv``."""
    recs = [r for r in _records(cfg) if r["metrics"].get("variant") == variant]
    env = recs[0]["metrics"] if recs else environment(cfg.device)
    o = parse_variant(variant)
    pt = "pt" + re.sub(r"\D", "", env["torch"].split("+")[0])
    cu = f"cu{env['cuda'].replace('.', '')}" if env.get("cuda") and \
        env["device_type"] == "cuda" else "cpu"
    layout = "nhwc" if o["channels_last"] else "nchw"
    comp = "-compile" if o["compile"] else ""
    return (f"benchmark-{o['precision']}-{layout}{comp}-{pt}-{cu}-"
            f"{_slug(env['device_name']).lower()}-{cfg.profile}.csv")


def write_outputs(cfg: BenchConfig) -> list:
    """Write, from the records: per variant the speedup table as CSV (:func:`csv_name`) and
    Markdown (``figures/bench/speedup[-VARIANT]-PROFILE.md``), the fit-loops table and the
    figure ``figures/bench/speedup_vs_flops[-VARIANT]-PROFILE.png``; returns the paths."""
    import matplotlib.pyplot as plt

    from reprolib.core import io, report

    out = []
    for i, v in enumerate(cfg.variants):
        df = table(cfg, v)
        if not len(df):
            continue
        suffix = "" if i == 0 else f"-{_slug(v)}"
        d = report.figures_dir(FIG_DIR)
        out.append(io.write_text(df.to_csv(index=False), d / csv_name(cfg, v)))
        md = f"{df.attrs['caption']}\n\n{report.to_markdown(df, '.3g')}\n"
        out.append(io.write_text(md, d / f"speedup{suffix}-{cfg.profile}.md"))
        for name, fig in figures(cfg, v).items():
            out.append(report.save_figure(fig, FIG_DIR, f"{name}{suffix}", cfg.profile))
            plt.close(fig)
    ft = fit_table(cfg)
    if len(ft):
        out.append(report.save_table(ft, FIG_DIR, "fit_loops", cfg.profile,
                                     ft.attrs["caption"], floatfmt=".3g"))
    return out


# --------------------------------------------------------------------------- summary


def summary(cfg: BenchConfig) -> str:
    """Markdown sentences and a compact table about the benchmark records of ``cfg`` (every
    number read from them); "" when there are none."""
    import pandas as pd

    from reprolib.core.report import to_markdown

    v = cfg.variants[0]
    df = table(cfg, v)
    ft = fit_table(cfg)
    if not len(df) and not len(ft):
        return ""
    env = next(r["metrics"] for r in _records(cfg) if r["metrics"].get("variant") == v)
    dev = f"{env['device_name']}, {env['threads']} threads, torch {env['torch']}, {v}"
    parts = [f"`reprolib bench --profile {cfg.profile}` on {dev} (records in "
             f"`results/bench/{cfg.profile}/`, table `figures/bench/speedup-{cfg.profile}.md`, "
             f"CSV `figures/bench/{csv_name(cfg, v)}`). Efficiency = measured speedup / FLOP "
             "reduction: 1 means the compressed model is exactly as much faster as its FLOPs "
             "promise."]
    if len(df):
        tg = df[df["target"] != ""]
        if len(tg):
            items = [f"{r['model']} {r['large efficiency']:.2f} "
                     f"({'met' if r['large efficiency'] >= TARGET_EFFICIENCY else 'missed'})"
                     for _, r in tg.iterrows()]
            parts.append(f"Targets (efficiency >= {TARGET_EFFICIENCY} at batch "
                         f"{'/'.join(str(b) for b in sorted(set(tg['large batch'])))}): "
                         + "; ".join(items) + ".")
        g = df.assign(rt=df["round_to"].map(lambda x: "" if pd.isna(x) else f"{int(x)}"))
        agg = (g.groupby(["method", "rt"], sort=False)
               .agg(models=("model", "size"), flop=("FLOP ratio", "median"),
                    b1=("b1 efficiency", "median"), large=("large efficiency", "median"),
                    train=("train efficiency", "median")).reset_index())
        agg.columns = ["method", "round_to", "models", "FLOP ratio (median)",
                       "efficiency b1", "efficiency large batch", "efficiency training"]
        parts.append("Median per method:\n\n" + to_markdown(agg, ".2f"))
    if len(ft):
        for _, r in ft.iterrows():
            parts.append(f"`fit` trains `{r['model']}` on `{r['data']}` at "
                         f"{r['fit (img/s)']:.0f} images/s: {r['fit / bare']:.2f} x a bare "
                         f"PyTorch loop ({r['bare (img/s)']:.0f} images/s) and "
                         f"{r['fit / code-book']:.2f} x a code-book loop "
                         f"({r['code-book (img/s)']:.0f} images/s: DataLoader with "
                         f"{int(r['workers'])} workers, per-image transforms, per-step "
                         f".item()) (`figures/bench/fit_loops-{cfg.profile}.md`).")
    return "\n\n".join(parts)


def readme_section() -> str:
    """The README's "Performance" subsection: the figure and :func:`summary` of every
    profile with records (``cpu``, ``gpu``), and a line saying which have not run."""
    parts, missing = [], []
    for prof in ("cpu", "gpu"):
        cfg = get_config(prof)
        if done(cfg):
            fig = f"figures/bench/speedup_vs_flops-{prof}.png"
            parts.append(f"![bench {prof}]({fig})\n\n{summary(cfg)}")
        else:
            missing.append(prof)
    if not parts:
        return ""
    if "gpu" in missing:
        parts.append("GPU runs outstanding: no GPU was available to this project's sessions; "
                     "`reprolib bench --profile gpu` (fp32, bf16, channels_last, compile at "
                     "batch 256) and `pytest -m gpu` are written and wait for one.")
    return "### Performance: measured speedup vs FLOP reduction\n\n" + "\n\n".join(parts) + "\n"
