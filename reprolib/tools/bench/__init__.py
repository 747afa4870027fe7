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

How it times (the rules of timm's ``benchmark.py`` and of ``torch.utils.benchmark``; the
timing is ``reprolib.measure.interleaved``, the package's one): a family's models (the dense
parent and its compressed children) are timed *interleaved*: each round runs every model
once, in an order rotated from round to round, after
``warmup`` untimed rounds, and the median over rounds is kept (with the interquartile
range), so machine load drifts hit all models alike.  On CUDA each timed call is bracketed
by ``torch.cuda.synchronize`` and CUDA events.  Inference runs in ``torch.inference_mode``
in eval mode; a training step is forward, cross-entropy, backward and an SGD (momentum) step
on a fixed random batch.  Variants: precision ``fp32`` or ``bf16`` (autocast), ``cl``
(channels_last for 4-d inputs), ``compile`` (``torch.compile``; compilation happens in the
warm-up and is not timed).  Threads: torch's default for the machine unless ``threads`` is
set; every record says how many it used.

Families (``BenchConfig.groups``), each from its paper's pipeline (``Pipeline.bench_families``,
built with the paper's ``examples`` module: the same builders the overview exports):

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
* ``fit``: :func:`loop_throughput` (the bench's own): ``fit`` against a bare minimal PyTorch
  loop and against a loop written as the code books write it (DataLoader with per-image
  transforms, per-step ``.item()``), on the same model, data and device.

Every family is one cached record, ``results/bench/<profile>/<family>-<variant>-<hash>.json``,
a stage of the pipeline :class:`Bench` (``reprolib graph bench --profile cpu``), holding the
device, precision, batch sizes, threads and torch / CUDA versions beside the numbers.  The
config is registered like a paper's (``reprolib.configs.bench``; :func:`get_config`).
:func:`table` builds the speedup-vs-FLOP table, :func:`write_outputs` writes it as a CSV
named like timm's benchmark files (device, precision, layout, torch version) and draws the
figure "measured speedup vs FLOP reduction".

    import reprolib
    from reprolib.tools import bench
    r = bench.speedup(reprolib.create_model("swin_t"), small, batch_size=64)
    r["flop_ratio"], r["latency_ratio"], r["efficiency"]

The package: :mod:`.timing` (prepared calls, :func:`speedup`, :func:`environment`),
:mod:`.loops` (fit vs bare vs code-book loop), :mod:`.graph` (families, stages, :class:`Bench`),
:mod:`.report` (tables, figure, CSV, summary).
"""

from __future__ import annotations

import time
from typing import Callable

from reprolib.configs.bench import (GROUPS, PRECISIONS, PRESETS, TEMPLATE_MODELS,  # noqa: F401
                                    TEMPLATES, BenchConfig, parse_variant)
from reprolib.core.measure import interleaved, time_call  # noqa: F401
from reprolib.core.pipeline import register_pipeline
from reprolib.errors import ReprolibError, choose
from reprolib.tools.bench.graph import (FAMILY_KEYS, PAPER, Bench, build_case, build_models,
                                        families, family_stage, fit_stage, peer_cases)
from reprolib.tools.bench.loops import loop_throughput  # noqa: F401
from reprolib.tools.bench.report import (FIG_DIR, TARGET_EFFICIENCY, csv_name,  # noqa: F401
                                         done, figures, fit_table, provenance, readme_section,
                                         runtime_table, summary, table, write_outputs)
from reprolib.tools.bench.timing import (environment, infer_fn, prepare, speedup,  # noqa: F401
                                         time_models, train_fn)

PIPELINE = register_pipeline(Bench())


def get_config(profile: str = "smoke", /, **overrides) -> BenchConfig:
    """The benchmark config at ``profile`` with single values overridden (command-line
    strings are converted to the field's type): ``reprolib.configs.get_config("bench", ...)``;
    an unknown profile or key is a ReprolibError naming the valid ones."""
    from reprolib import configs

    choose("benchmark profile", profile, configs.profiles(PAPER))
    names = [f for f in configs.field_names(BenchConfig) if f != "profile"]
    for k in overrides:
        if k not in names:
            raise ReprolibError(f"unknown benchmark key {k!r}; valid keys: {', '.join(names)}")
    return configs.get_config(PAPER, profile, **overrides)


def stages(cfg) -> list:
    """One cached stage per (family, variant) and per (fit model, variant), in the order of
    :data:`GROUPS` (:meth:`Bench.declare`)."""
    return PIPELINE.stages(cfg)


def run(cfg, force: bool = False, log: Callable[[str], None] = print) -> dict:
    """Every stage (cached records); returns ``{stage name: record}``; ``log`` gets one line
    per stage ("cached", or the seconds it took)."""
    recs = {}
    for st in stages(cfg):
        t0 = time.perf_counter()
        cached = st.done and not force
        recs[st.name] = st.run(force)
        log(f"[bench] {st.name}: {'cached' if cached else f'{time.perf_counter() - t0:.0f} s'}")
    return recs


__all__ = ["speedup", "get_config", "run", "stages", "write_outputs", "summary", "table",
           "runtime_table",
           "figures", "fit_table", "families", "readme_section", "done", "csv_name",
           "provenance", "interleaved", "time_call", "time_models", "prepare", "infer_fn",
           "train_fn", "parse_variant", "loop_throughput", "environment", "build_case",
           "family_stage", "fit_stage", "build_models", "peer_cases", "Bench", "PIPELINE",
           "PAPER", "BenchConfig", "PRESETS",
           "GROUPS", "PRECISIONS", "TEMPLATES", "TEMPLATE_MODELS", "FAMILY_KEYS", "FIG_DIR",
           "TARGET_EFFICIENCY"]
