"""The templates stages: the training grid's cells (``cell``) and the Table 2 measurements
(``measure``), and the measurement both use.

* :func:`measure_stage` -- ``measure-<model>-<template>``: the model at width 1.0 for 10
  classes, measured (params, FLOPs, peak training memory, CPU latency); nothing trained.
* :func:`cell_stage` -- ``<model>-<template>-w<width>-<data>[-s<seed>]``: the model built
  from scratch, trained with the ``train`` recipe, measured and saved.

:func:`grid` lists the cells ``(dataset, model, template, width)`` a config trains; the
pipeline (``reprolib.experiments.templates``) adds one stage per cell (and seed).
"""

from __future__ import annotations

from reprolib.core.measure import measure_model, peak_memory
from reprolib.core.pipeline import (ModelSpec, Stage, key_of, load_data, resources,
                                    train_and_measure, training)
from reprolib.core.registry import create_model
from reprolib.data.catalog import num_classes
from reprolib.methods.templates import check_template, check_width

# --------------------------------------------------------------------------- the grid


def datasets(cfg) -> list[str]:
    """``cfg.dataset`` followed by ``cfg.extra_datasets``."""
    return [cfg.dataset, *cfg.extra_datasets]


def run_name(model: str, template: str, width: float, dataset: str) -> str:
    """Stage name of one grid cell, e.g. ``vgg19_cifar-uniform-w0.25-cifar10``.

    An ``npz:`` data set is named ``npz`` (its path is in the stage's key)."""
    return f"{model}-{template}-w{width:g}-{'npz' if dataset.startswith('npz:') else dataset}"


def model_widths(cfg, model: str) -> tuple:
    """The widths trained for ``model``: its entry of ``cfg.model_widths`` if any, else
    ``cfg.widths``."""
    per = {m: tuple(ws) for m, ws in (cfg.model_widths or ())}
    ws = per.get(model, tuple(cfg.widths))
    for w in ws:
        check_width(w)
    return ws


def grid(cfg) -> list[tuple[str, str, str, float]]:
    """The cells ``(dataset, model, template, width)`` of ``cfg``'s training grid (one seed;
    the pipeline adds one stage per cell and seed)."""
    for t in cfg.templates:
        check_template(t)
    for w in cfg.widths:
        check_width(w)
    return [(d, m, t, float(w)) for d in datasets(cfg) for m in cfg.models
            for t in cfg.templates for w in model_widths(cfg, m)]


# --------------------------------------------------------------------------- measurement


def _memory_skip(model, cfg, size, limit_gb: float) -> str:
    """The paper-specific memory guard: with ``limit_gb > 0`` (and no probe batches), a
    batch-1/2 probe predicts the peak at ``memory_batch``; returns why the cell is skipped
    ("" = measure it)."""
    if not (cfg.measure_memory and limit_gb > 0 and not cfg.memory_probe):
        return ""
    m1 = peak_memory(model, size, 1, "cpu")
    m2 = peak_memory(model, size, 2, "cpu")
    pred = m1 + (m2 - m1) * (cfg.memory_batch - 1)
    if pred <= limit_gb * 1e9:
        return ""
    return (f"skipped: batch-1/2 probe predicts {pred / 1e9:.1f} GB at batch "
            f"{cfg.memory_batch} > memory_limit_gb={limit_gb:g}")


def measure(model, cfg, memory_limit_gb: float = 0.0) -> dict:
    """``reprolib.measure.measure_model`` on the CPU (params, FLOPs for one image, latency
    when ``cfg.measure_latency``) plus the paper's memory footprint when
    ``cfg.measure_memory``: the peak of one SGD training step at ``cfg.memory_batch``,
    measured directly; or, with ``cfg.memory_probe = (b1, b2)``, measured at b1 and b2 and
    extrapolated linearly to ``memory_batch`` (weights, gradients and optimizer state are
    fixed, activations grow linearly with the batch); or, with ``memory_limit_gb > 0``, not
    run (NaN) when a batch-1/2 probe predicts more than the limit.  ``memory_method`` says
    which.  Also records the model's per-layer ``filters``.
    """
    size = (3, cfg.image_size, cfg.image_size)
    model = model.cpu()
    skip = _memory_skip(model, cfg, size, float(memory_limit_gb or 0.0))
    direct = cfg.measure_memory and not skip and not cfg.memory_probe
    out = measure_model(model, size, latency_batch=cfg.latency_batch,
                        latency_repeats=cfg.latency_repeats if cfg.measure_latency else 0,
                        memory_batch=cfg.memory_batch if direct else None)
    out["filters"] = list(getattr(model, "filters", []))
    if not cfg.measure_memory:
        return out
    if skip:
        out.update(peak_memory_bytes=float("nan"), memory_batch=cfg.memory_batch,
                   memory_method=skip)
    elif cfg.memory_probe:
        b1, b2 = cfg.memory_probe
        m1, m2 = peak_memory(model, size, b1, "cpu"), peak_memory(model, size, b2, "cpu")
        out.update(peak_memory_bytes=int(m1 + (m2 - m1) * (cfg.memory_batch - b1) / (b2 - b1)),
                   memory_batch=cfg.memory_batch,
                   memory_method=f"cpu, extrapolated from batches {b1},{b2}")
    else:
        out["memory_method"] = f"cpu, measured at batch {cfg.memory_batch}"
    model.train()
    return out


def _table2_limit(cfg) -> float:
    """The memory limit (GB) of the Table 2 cells: ``table2_memory_limit_gb``, else
    ``memory_limit_gb``."""
    return float(cfg.table2_memory_limit_gb or 0.0) or float(cfg.memory_limit_gb)


# --------------------------------------------------------------------------- stages


def measure_stage(cfg, model: str, template: str) -> Stage:
    """``measure-<model>-<template>``: ``model`` under ``template`` at width 1.0 for 10
    classes, measured (:func:`measure`, memory limit :func:`_table2_limit`); nothing is
    trained (Table 2)."""
    limit = _table2_limit(cfg)

    def fn(stage: Stage) -> dict:
        return measure(create_model(model, num_classes=10, template=template), cfg, limit)

    key = dict(model=model, template=template, width=1.0, num_classes=10,
               image_size=cfg.image_size, measure_memory=cfg.measure_memory,
               measure_latency=cfg.measure_latency, memory_batch=cfg.memory_batch,
               memory_probe=list(cfg.memory_probe), latency_batch=cfg.latency_batch,
               memory_limit_gb=limit, latency_repeats=cfg.latency_repeats, kind="measure")
    return Stage(cfg, f"measure-{model}-{template}", key, fn, group="measure",
                 model=ModelSpec(model, {"num_classes": 10, "template": template},
                                 (3, cfg.image_size, cfg.image_size)),
                 resources=resources(cfg, trains=False),
                 note="Table 2: built at width 1.0 for 10 classes and measured, not trained")


def cell_stage(cfg, dataset: str, model: str, template: str, width: float,
               suffix: str = "") -> Stage:
    """One grid cell: ``model`` under ``template`` at ``width`` on ``dataset``, built from
    scratch (seeded from ``cfg.seed``), trained with ``cfg.train``, measured
    (:func:`measure`, limit ``memory_limit_gb``) and saved (``stage.model()`` loads it);
    ``suffix`` ends the name (``-s<seed>`` for an evidence replicate)."""
    name = run_name(model, template, width, dataset) + suffix

    def fn(stage: Stage) -> dict:
        data = load_data(cfg, cfg.train.batch_size, dataset=dataset, augment=cfg.augment)
        net = create_model(model, num_classes=data.num_classes, template=template, width=width)
        # train + params/FLOPs; latency and the guarded memory footprint come from measure()
        metrics = train_and_measure(net, data, cfg.train, stage.ckpt_dir, device=cfg.device,
                                    desc=name, latency_repeats=0)
        metrics.update(measure(net, cfg, cfg.memory_limit_gb), num_classes=data.num_classes)
        stage.save_model(net)
        return metrics

    key = key_of(cfg, "image_size", "augment", "train", "measure_memory", "measure_latency",
                 "memory_batch", "memory_probe", "memory_limit_gb", "latency_batch",
                 "latency_repeats", dataset=dataset, model=model, template=template, width=width)
    ws = ", ".join(f"{w:g}" for w in model_widths(cfg, model))
    return Stage(cfg, name, key, fn, group=f"{dataset} {model}",
                 model=ModelSpec(model, {"num_classes": num_classes(dataset),
                                         "template": template, "width": width},
                                 (3, cfg.image_size, cfg.image_size)),
                 train=training(cfg, "train", dataset=dataset), resources=resources(cfg),
                 note=f"templates {', '.join(cfg.templates)} x widths {ws}: each trained "
                      "from scratch, measured and saved")
