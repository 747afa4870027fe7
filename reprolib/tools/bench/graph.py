"""The bench's graph: one cached stage per (family, variant) -- a family of a dense parent
and its compressed models from a paper's pipeline (``Pipeline.bench_families``) -- and per
(fit model, variant), the bench's own loop comparison; :class:`Bench` declares them.

A family is data (it enters its stage's key): ``{"name", "group", "input_size", "batch",
"train_batch", "cases": [case, ...]}``, the first case the dense parent, each case naming
its model (``model``, ``kwargs``), its ``label`` and ``method`` and how it is compressed;
beside the data a paper may give ``build(case, seed) -> model`` (default: the model created,
seeded) and ``describe(model, case) -> dict`` (what a compressed model kept: widths, ranks,
layers left dense), which are not part of the key.
"""

from __future__ import annotations

import os
import re

import torch

from reprolib.configs.bench import GROUPS, parse_variant
from reprolib.core.device import resolve_device
from reprolib.core.measure import count_flops, count_params
from reprolib.core.pipeline import Pipeline, Stage
from reprolib.tools.bench.loops import loop_throughput
from reprolib.tools.bench.timing import environment, time_models

PAPER = "bench"
#: The entries of a family that are its data (its stage's key); the rest are its builders.
FAMILY_KEYS = ("name", "group", "input_size", "batch", "train_batch", "cases")


def families(cfg) -> list[dict]:
    """The benchmarked families of ``cfg`` (the groups in ``cfg.groups``): every paper's
    ``bench_families(cfg)``, in notebook order (:mod:`reprolib.experiments`).  Nothing is
    built here."""
    from reprolib.experiments import pipelines

    return [f for p in pipelines().values() for f in p.bench_families(cfg)
            if f["group"] in cfg.groups]


def build_case(case: dict, seed: int = 0, family: dict | None = None):
    """The model of one case: the family's ``build`` when it has one, else
    ``case["model"]`` created (seeded) with ``case["kwargs"]``, in eval mode."""
    if family is not None and family.get("build"):
        return family["build"](case, seed)
    from reprolib.core.registry import create_model

    torch.manual_seed(seed)
    return create_model(case["model"], **case.get("kwargs", {})).eval()


def setup(cfg) -> torch.device:
    """The device of ``cfg``, with ``cfg.threads`` torch threads when set (the only place
    the package sets a thread count) and cuDNN's autotuner on CUDA."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    dev = resolve_device(cfg.device)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
    return dev


def loadavg() -> float | None:
    """The machine's 1-minute load average (None where the OS has none): recorded before and
    after each family, so a record says whether others were computing while it was timed."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "_", s).strip("_")


def family_stage(cfg, fam: dict, variant: str) -> Stage:
    """``<family>-<variant>``: every model of ``fam`` built and counted, then timed
    interleaved at batch 1, at the family's large batch and for a training step."""
    opts = parse_variant(variant)
    data = {k: fam[k] for k in FAMILY_KEYS}
    describe = fam.get("describe") or (lambda model, case: {})

    def fn(stage) -> dict:
        dev = setup(cfg)
        load0 = loadavg()
        rows = []
        models = {}
        for case in data["cases"]:
            m = build_case(case, cfg.seed, fam)
            rows.append({"label": case["label"], "method": case["method"],
                         "round_to": case.get("round_to"), "params": count_params(m),
                         "flops": count_flops(m, tuple(data["input_size"])),
                         **describe(m, case)})
            models[case["label"]] = m
        size = data["input_size"]
        common = dict(precision=opts["precision"], channels_last=opts["channels_last"],
                      compile=opts["compile"])
        timings = {
            "b1": time_models(models, size, 1, dev, warmup=cfg.warmup, repeats=cfg.repeats,
                              **common),
            "large": time_models(models, size, data["batch"], dev,
                                 warmup=max(1, cfg.warmup - 1), repeats=cfg.large_repeats,
                                 **common),
            "train": time_models(models, size, data["train_batch"], dev, mode="train",
                                 warmup=max(1, cfg.warmup - 1), repeats=cfg.train_repeats,
                                 **common),
        }
        for row in rows:
            for kind, res in timings.items():
                r = res[row["label"]]
                row[f"{kind}_ms"], row[f"{kind}_iqr_ms"] = r["ms"], r["ms_iqr"]
                row[f"{kind}_times_ms"] = r["times_ms"]
        return {"family": data["name"], "group": data["group"], "rows": rows,
                "input_size": size, "batch_small": 1, "batch_large": data["batch"],
                "train_batch": data["train_batch"], "variant": variant, **opts,
                "warmup": cfg.warmup, "repeats": cfg.repeats, "large_repeats": cfg.large_repeats,
                "train_repeats": cfg.train_repeats, "loadavg_start": load0,
                "loadavg_end": loadavg(), **environment(dev)}

    key = {"family": data, "variant": variant, "threads": cfg.threads, "device": cfg.device,
           "warmup": cfg.warmup, "repeats": cfg.repeats, "large_repeats": cfg.large_repeats,
           "train_repeats": cfg.train_repeats, "seed": cfg.seed}
    return Stage(cfg, f"{data['name']}-{slug(variant)}", key, fn, paper=PAPER,
                 group=f"{data['group']}-{slug(variant)}",
                 note=f"{len(data['cases'])} models timed interleaved: batch 1, batch "
                      f"{data['batch']}, a training step at {data['train_batch']}")


def fit_stage(cfg, model_name: str, variant: str) -> Stage:
    """``fit-<model>-<variant>``: :func:`.loops.loop_throughput` of ``model_name`` on
    ``cfg.fit_dataset``."""
    opts = parse_variant(variant)

    def fn(stage) -> dict:
        from reprolib.core.registry import create_model
        from reprolib.data import get_data

        dev = setup(cfg)
        load0 = loadavg()
        data = get_data(cfg.fit_dataset, 32, cfg.fit_batch, root=cfg.data_root, device=dev,
                        seed=cfg.seed)
        torch.manual_seed(cfg.seed)
        model = create_model(model_name, num_classes=data.num_classes)
        out = loop_throughput(model, data, device=dev, batch_size=cfg.fit_batch,
                              images=cfg.fit_images, repeats=cfg.fit_repeats,
                              workers=cfg.fit_workers, **opts)
        return {"model": model_name, "dataset": cfg.fit_dataset, "params": count_params(model),
                "flops": count_flops(model.cpu(), (3, 32, 32)), "variant": variant, **out,
                "loadavg_start": load0, "loadavg_end": loadavg()}

    key = {"model": model_name, "dataset": cfg.fit_dataset, "images": cfg.fit_images,
           "batch": cfg.fit_batch, "repeats": cfg.fit_repeats, "workers": cfg.fit_workers,
           "variant": variant, "threads": cfg.threads, "device": cfg.device, "seed": cfg.seed}
    return Stage(cfg, f"fit-{model_name}-{slug(variant)}", key, fn, paper=PAPER,
                 group=f"fit-{slug(variant)}",
                 note="fit vs a bare PyTorch loop vs a code-book loop, images/s")


class Bench(Pipeline):
    """``reprolib bench`` as a graph: roles ``family`` (tags ``group``, ``family``,
    ``variant``) and ``fit`` (tags ``model``, ``variant``); no stage reads another."""

    name = PAPER

    def declare(self, cfg, g) -> None:
        """Per variant, in the order of :data:`GROUPS`: the fit stages (one per
        ``cfg.fit_models``) and every family of that group."""
        fams = families(cfg)
        for v in cfg.variants:
            for grp in GROUPS:
                if grp == "fit" and grp in cfg.groups:
                    for m in cfg.fit_models:
                        g.add(fit_stage(cfg, m, v), role="fit", model=m, variant=v)
                for f in fams:
                    if f["group"] == grp:
                        g.add(family_stage(cfg, f, v), role="family", group=grp,
                              family=f["name"], variant=v)

    def tables(self, cfg) -> dict:
        """``speedup`` (every variant's first: :func:`.report.table`) and ``fit_loops``."""
        from reprolib.tools.bench import report

        return {"speedup": report.table(cfg), "fit_loops": report.fit_table(cfg)}

    def figures(self, cfg) -> dict:
        """``speedup_vs_flops`` (:func:`.report.figures`)."""
        from reprolib.tools.bench import report

        return report.figures(cfg)

    def summary(self, cfg) -> str:
        """:func:`.report.summary`."""
        from reprolib.tools.bench import report

        return report.summary(cfg)
