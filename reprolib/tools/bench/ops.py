"""Per-operator profile of a dense model beside its compressed models: which operators keep a
compressed model from being as much faster as its FLOPs promise (the bench's *efficiency*,
speedup / FLOP reduction, target :data:`~reprolib.tools.bench.report.TARGET_EFFICIENCY`).

The bench (:mod:`.graph`) says *that* a model falls short; this says *where*.  Each model
runs in eval mode under ``torch.inference_mode`` inside ``torch.profiler.profile`` (CPU
activity, and CUDA on a CUDA device), the models interleaved round by round in an order
rotated each round (as ``reprolib.measure.interleaved`` times them), so machine load drifts
hit all alike.  One profiler session holds every round; each forward runs inside a
``record_function`` mark of its own, so each op event is credited to the model and round it
ran in.  Per model and operator (the aten op name, as ``key_averages()`` groups them) it
keeps

    ms     = self time of the op summed over the timed rounds / rounds   (ms per forward;
             or its median over the rounds, robust to a round another job preempted)
    calls  = calls of the op per forward
    share  = ms / the model's total self time

("self" = excluding the ops it called: ``aten::linear`` is nearly free, its ``aten::addmm``
holds the matmul; a reshape's copy shows as ``aten::copy_ (in aten::clone)``, a bias
broadcast as ``aten::copy_ (in aten::addmm)``: :data:`BY_CALLER`), and the row
:data:`BETWEEN` holds the time outside every op (Python, module calls).  On CPU the time is the op's
self CPU time, on CUDA its self device (kernel) time.  For each compressed model beside the
first (dense) one, ``ratio`` = its op time / the dense op time.  An operator whose ratio is
above the model's FLOP ratio shrinks less than the FLOPs; ranked by its *excess*, ``ms -
flop_ratio * dense ms`` (the milliseconds it costs beyond the FLOP promise; the excesses of
all rows sum to the model's whole shortfall), it is what bounds the speedup
(:func:`bound_ops`).

The profiler adds a few microseconds to each op it records, so a model of many small ops
looks slower under it than it is: the profile says where time goes, the bench's timings
(no profiler) say how fast a model is.

    python -m reprolib.tools.bench.ops --profile cpu --group sidt \
        --labels "dense,SiDT 80% rt1" --batch 64 --out figures/bench/ops-sidt-cpu.md
"""

from __future__ import annotations

import argparse
import math
import shlex
import statistics
import sys
import time
from typing import TYPE_CHECKING

import torch
import torch.nn as nn

from reprolib.core.device import resolve_device
from reprolib.errors import ReprolibError, check_number, choose

if TYPE_CHECKING:
    import pandas as pd

#: The share of each model's self time the table keeps as separate operators (the largest
#: ops first); the rest is summed in the row :data:`OTHER`.
COVERAGE = 0.95
#: The row holding the operators below :data:`COVERAGE`.
OTHER = "other"
#: The row of the time a forward spends on its thread outside every aten op: Python, module
#: calls and hooks, the profiler's own bookkeeping (on CUDA: kernels no op launched).
BETWEEN = "(between ops)"
#: Ops whose row is split by the op that called them, ``aten::copy_ (in aten::addmm)``: a
#: copy is a reshape's (``clone``, ``contiguous``) or a matmul's bias broadcast (``addmm``),
#: a ``cat`` is a ``torch.roll``'s (Swin's shifted windows) or the model's own.
BY_CALLER = ("aten::copy_", "aten::cat")
#: How an op's per-round self times become its time per forward (:func:`op_profile`).
STATS = ("mean", "median")
__all__ = ["op_profile", "bound_ops", "family_profile", "to_markdown", "main", "COVERAGE",
           "OTHER", "BETWEEN", "BY_CALLER", "STATS"]


def _root(ev):
    while ev.cpu_parent is not None:
        ev = ev.cpu_parent
    return ev


def _self_times(prof, marks: dict[str, tuple[str, int]], repeats: int,
                cuda: bool) -> dict[str, dict[str, list]]:
    """``{label: {op: [[self µs per round], calls]}}`` of one profiler session whose forwards
    ran inside ``record_function(mark)`` (``marks``: mark -> (label, round)): each CPU-side op
    is credited to the forward it ran in (on CUDA the kernel rows repeat the time their
    launching op holds as self device time, so they are skipped); a mark's own self time is
    :data:`BETWEEN`; the ops of :data:`BY_CALLER` are keyed by their caller too."""
    out: dict[str, dict[str, list]] = {lab: {} for lab, _ in marks.values()}
    for ev in prof.events():
        if ev.device_type != torch.autograd.DeviceType.CPU:
            continue
        root = _root(ev)
        if root.name not in marks:
            continue
        lab, r = marks[root.name]
        op = BETWEEN if ev is root else ev.name
        if op in BY_CALLER and ev.cpu_parent is not root:
            op = f"{op} (in {ev.cpu_parent.name})"
        us = ev.self_device_time_total if cuda else ev.self_cpu_time_total
        a = out[lab].setdefault(op, [[0.0] * repeats, 0])
        a[0][r] += float(us)
        a[1] += 1
    return out


def _check_labels(df, labels) -> None:
    have = list(df.attrs.get("models", []))
    for lab in labels:
        if lab not in have:
            raise ReprolibError(f"unknown model {lab!r} in the profile; valid models: "
                                f"{', '.join(have)}")


def op_profile(models: dict[str, nn.Module], input_size, batch_size: int, *, device="cpu",
               warmup: int = 2, repeats: int = 5, coverage: float = COVERAGE,
               stat: str = "mean", seed: int = 0) -> pd.DataFrame:
    """Self time per operator of each of ``models`` on one random batch.

    Args:
        models: ``{label: model}``, the first the dense reference (moved to ``device`` in
            place and put in eval mode).
        input_size: one input's shape, (C, H, W) for images.
        batch_size: inputs per forward.
        device: "cpu" (default), "cuda" or "auto".
        warmup: untimed rounds before profiling (default 2); a round runs every model once.
        repeats: profiled rounds (default 5); times are per forward.
        coverage: per model, the largest ops covering this share of its self time get a row
            each (the union over models, default :data:`COVERAGE`); the rest is :data:`OTHER`.
        stat: "mean" (default: an op's self time summed over the rounds / ``repeats``) or
            "median" (its median over the rounds, per op: on a shared machine one preempted
            round then moves no op; a model's total is then the sum of its ops' medians).
        seed: seeds the random input.

    Returns:
        A DataFrame, one row per operator (column ``op``, sorted by the dense model's time;
        last the row :data:`OTHER`) with per model ``<label> ms``, ``<label> calls`` and
        ``<label> share``, and per compressed model ``<label> ratio`` (its ms / the dense
        ms; inf for an op the dense model does not run).  ``attrs`` hold ``models`` (the
        labels in order), ``total_ms`` (each model's self time per forward), ``wall_ms``
        (its wall time per forward under the profiler, ``stat`` over the rounds), ``stat``,
        ``time_kind`` ("self CPU" or "self CUDA"), ``device``, ``batch``, ``input_size``,
        ``warmup`` and ``repeats``.
    """
    import pandas as pd
    from torch.profiler import ProfilerActivity, profile, record_function

    if not models:
        raise ReprolibError("op_profile: models is empty; give {label: model}, the dense "
                            "model first")
    check_number("batch_size", batch_size, 1, 1 << 20, integer=True)
    check_number("warmup", warmup, 0, 1 << 16, integer=True)
    check_number("repeats", repeats, 1, 1 << 16, integer=True)
    check_number("coverage", coverage, 0, 1, lo_open=True)
    choose("statistic", stat, STATS)
    dev = resolve_device(device)
    cuda = dev.type == "cuda"
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    names = list(models)
    nets = {n: m.to(dev).eval() for n, m in models.items()}
    x = torch.randn(batch_size, *input_size, generator=torch.Generator().manual_seed(seed)).to(dev)

    def sync():
        if cuda:
            torch.cuda.synchronize(dev)

    # one mark per (model, round): a forward's ops are told apart by the mark above them
    marks = {f"reprolib.ops/{i}/{r}": (n, r) for i, n in enumerate(names)
             for r in range(repeats)}
    mark_of = {v: m for m, v in marks.items()}
    wall = {n: [0.0] * repeats for n in names}
    with torch.inference_mode():
        for _ in range(warmup):
            for n in names:
                nets[n](x)
        sync()
        with profile(activities=acts) as prof:
            for r in range(repeats):
                k = r % len(names)
                for n in names[k:] + names[:k]:
                    t0 = time.perf_counter()
                    with record_function(mark_of[(n, r)]):
                        nets[n](x)
                        sync()
                    wall[n][r] = 1e3 * (time.perf_counter() - t0)
    acc = _self_times(prof, marks, repeats, cuda)
    agg = (lambda v: sum(v) / len(v)) if stat == "mean" else statistics.median
    ms = {n: {op: agg(us) / 1e3 for op, (us, _) in acc[n].items()} for n in names}
    calls = {n: {op: c / repeats for op, (_, c) in acc[n].items()} for n in names}
    total = {n: sum(ms[n].values()) for n in names}
    keep = set()
    for n in names:
        run = 0.0
        for op, t in sorted(ms[n].items(), key=lambda kv: -kv[1]):
            if total[n] > 0 and run >= coverage * total[n]:
                break
            keep.add(op)
            run += t
    dense = names[0]
    order = sorted(keep, key=lambda op: (-ms[dense].get(op, 0.0),
                                         -max(ms[n].get(op, 0.0) for n in names), op))
    rows = []
    for op in order + [OTHER]:
        row = {"op": op}
        for n in names:
            if op == OTHER:
                t = sum(v for o, v in ms[n].items() if o not in keep)
                c = sum(v for o, v in calls[n].items() if o not in keep)
            else:
                t, c = ms[n].get(op, 0.0), calls[n].get(op, 0.0)
            row[f"{n} ms"], row[f"{n} calls"] = t, c
            row[f"{n} share"] = t / total[n] if total[n] > 0 else math.nan
        for n in names[1:]:
            d = row[f"{dense} ms"]
            row[f"{n} ratio"] = (row[f"{n} ms"] / d if d > 0
                                 else math.inf if row[f"{n} ms"] > 0 else math.nan)
        rows.append(row)
    df = pd.DataFrame(rows)
    df.attrs.update(models=names, total_ms=total,
                    wall_ms={n: agg(w) for n, w in wall.items()}, stat=stat,
                    time_kind="self CUDA" if cuda else "self CPU", device=str(dev),
                    batch=batch_size, input_size=list(input_size), warmup=warmup,
                    repeats=repeats)
    return df


def bound_ops(df: pd.DataFrame, dense: str, compressed: str, flop_ratio: float) -> list[dict]:
    """The operators of ``df`` (an :func:`op_profile`) that bound ``compressed``'s speedup
    over ``dense``: those whose time shrinks less than the FLOPs (``ms / dense ms`` above
    ``flop_ratio`` = FLOPs(compressed) / FLOPs(dense)), ranked by their excess, ``ms -
    flop_ratio * dense ms``, largest first.

    Returns one dict per such op: ``op``, ``dense_ms``, ``ms``, ``ratio`` and ``excess_ms``
    (the row :data:`OTHER` included when it qualifies: a large one says the coverage was too
    low to name the op)."""
    _check_labels(df, (dense, compressed))
    check_number("flop_ratio", flop_ratio, 0, lo_open=True)
    out = []
    for row in df.to_dict("records"):
        d, c = float(row[f"{dense} ms"]), float(row[f"{compressed} ms"])
        ratio = c / d if d > 0 else (math.inf if c > 0 else math.nan)
        if ratio > flop_ratio:
            out.append({"op": row["op"], "dense_ms": d, "ms": c, "ratio": ratio,
                        "excess_ms": c - flop_ratio * d})
    return sorted(out, key=lambda r: -r["excess_ms"])


# --------------------------------------------------------------------------- bench families


def _family(cfg, family_group: str) -> dict:
    """The family of ``cfg`` named by ``family_group``: a group with one family (``sidt``,
    ``vtp``), or a family's own name (``pe-resnet50``) where a group has several."""
    from reprolib.tools.bench.graph import families

    fams = families(cfg)
    if not fams:
        raise ReprolibError(f"benchmark profile {cfg.profile!r} has no families")
    by_name = {f["name"]: f for f in fams}
    if family_group in by_name:
        return by_name[family_group]
    groups = list(dict.fromkeys(f["group"] for f in fams))
    if family_group not in groups:
        raise ReprolibError(f"unknown benchmark family group {family_group!r}; valid groups: "
                            f"{', '.join(groups)} (or a family: {', '.join(by_name)})")
    match = [f for f in fams if f["group"] == family_group]
    if len(match) > 1:
        raise ReprolibError(f"benchmark group {family_group!r} has {len(match)} families; "
                            f"name one: {', '.join(f['name'] for f in match)}")
    return match[0]


def _cases(fam: dict, labels) -> list[dict]:
    """The cases of ``fam`` named by ``labels`` (None: every case), in the family's order,
    the dense parent (its first case) always first: it is the reference of every ratio."""
    cases = fam["cases"]
    valid = [c["label"] for c in cases]
    if labels is None:
        return list(cases)
    if isinstance(labels, str):
        labels = [lab.strip() for lab in labels.split(",") if lab.strip()]
    for lab in labels:
        if lab not in valid:
            raise ReprolibError(f"unknown case {lab!r} of family {fam['name']!r}; valid "
                                f"labels: {', '.join(valid)}")
    want = set(labels) | {valid[0]}
    return [c for c in cases if c["label"] in want]


def family_profile(profile: str, family_group: str, labels: list[str] | None = None,
                   batch: int | None = None, *, warmup: int | None = None,
                   repeats: int | None = None, device: str | None = None,
                   threads: int | None = None, coverage: float = COVERAGE,
                   stat: str = "mean") -> pd.DataFrame:
    """:func:`op_profile` of one family of the bench config at ``profile``
    (``reprolib.tools.bench.get_config``), its models built by the bench's own builders
    (:func:`.graph.build_models`, seeded by the config's ``seed``; a Torch-Pruning peer with the
    case it matches).

    Args:
        profile: bench profile ("smoke", "cpu", "gpu").
        family_group: the family's group ("sidt", "vtp", ...) or, for a group of several
            families (``pe``, ``templates``), a family's name.
        labels: the cases to profile (a list, or one comma-separated string); the dense
            parent is always added first.  None (default): every case of the family.
        batch: inputs per forward (default: the family's large batch).
        warmup, repeats: untimed and profiled rounds (default: the bench's at its large
            batch, ``max(1, cfg.warmup - 1)`` and ``cfg.large_repeats``).
        device, threads: override the config's device and torch thread count (0 = torch's
            default; on a machine shared with other jobs, 1 thread keeps a thread pool from
            waiting on a core another job holds, which hurts many small ops the most).
        coverage, stat: see :func:`op_profile`.

    Returns:
        The :func:`op_profile` frame; ``attrs`` add ``family``, ``group``, ``profile``,
        ``flops`` (per label, one input: ``reprolib.measure.count_flops``), ``flop_ratio``
        (per compressed label), the ``environment`` (device name, threads, torch version)
        and ``loadavg_start`` / ``loadavg_end`` (the 1-minute load average).
    """
    from reprolib.tools.bench import get_config

    over = {k: v for k, v in (("device", device), ("threads", threads)) if v is not None}
    cfg = get_config(profile, **over)
    return profile_family(cfg, _family(cfg, family_group), labels, batch, warmup=warmup,
                          repeats=repeats, coverage=coverage, stat=stat)


def profile_family(cfg, fam: dict, labels=None, batch: int | None = None, *,
                   warmup: int | None = None, repeats: int | None = None,
                   coverage: float = COVERAGE, stat: str = "mean") -> pd.DataFrame:
    """:func:`family_profile` for a bench config ``cfg`` and one of its families ``fam``
    (what the bench's ``ops`` stage calls)."""
    from reprolib.tools.bench.graph import build_models, loadavg, setup
    from reprolib.tools.bench.timing import environment

    profile = cfg.profile
    cases = _cases(fam, labels)
    size = tuple(fam["input_size"])
    dev = setup(cfg)
    load0 = loadavg()
    models, rows = build_models(fam, cfg.seed, [c["label"] for c in cases])
    flops = {r["label"]: r["flops"] for r in rows}
    df = op_profile(models, size, batch or int(fam["batch"]), device=dev,
                    warmup=max(1, cfg.warmup - 1) if warmup is None else warmup,
                    repeats=cfg.large_repeats if repeats is None else repeats,
                    coverage=coverage, stat=stat, seed=cfg.seed)
    dense = cases[0]["label"]
    df.attrs.update(family=fam["name"], group=fam["group"], profile=profile, flops=flops,
                    flop_ratio={n: flops[n] / flops[dense] for n in list(flops)[1:]},
                    environment=environment(dev), loadavg_start=load0, loadavg_end=loadavg())
    return df


# --------------------------------------------------------------------------- report


def to_markdown(df: pd.DataFrame, title: str, provenance: str, floatfmt: str = ".4g",
                top: int = 5) -> str:
    """``df`` (an :func:`op_profile`) as Markdown: ``title`` as a heading, ``provenance``
    below it, the table with a ``total`` row, then, where ``df.attrs`` has the FLOP ratios
    (:func:`family_profile`), per compressed model its FLOP ratio, profiled time ratio and
    efficiency, and its ``top`` :func:`bound_ops`."""
    import pandas as pd

    from reprolib.core.report import to_markdown as md_table

    names = list(df.attrs.get("models", []))
    total = {"op": "total"}
    for c in df.columns[1:]:
        if c.endswith((" ms", " calls", " share")):
            total[c] = float(df[c].sum())
    for n in names[1:]:
        d = total.get(f"{names[0]} ms", 0.0)
        total[f"{n} ratio"] = total[f"{n} ms"] / d if d > 0 else math.nan
    table = pd.concat([df, pd.DataFrame([total])], ignore_index=True)
    kind = df.attrs.get("time_kind", "self")
    stat = df.attrs.get("stat", "mean")
    parts = [f"# {title}", "", provenance, "",
             f"ms: {kind} time per forward ({stat} over the rounds); calls: per forward; "
             f"share: of the model's total; ratio: the model's op time / the dense op time "
             f"({names[0] if names else ''}).  Times are taken under the profiler (a few µs "
             f"added per op): they say where time goes; the bench's records say how fast.",
             "", md_table(table, floatfmt)]
    wall = df.attrs.get("wall_ms", {})
    if wall:
        parts += ["", "Wall time per forward under the profiler (ms): "
                  + ", ".join(f"{n} {wall[n]:.3g}" for n in names)]
    fr = df.attrs.get("flop_ratio", {})
    if fr and names:
        parts += ["", "## Which operators bound the speedup", "",
                  "Excess = op ms - FLOP ratio x dense op ms: the time an op costs beyond "
                  "what the FLOPs promise; the excesses sum to the model's shortfall.", ""]
        for n in names[1:]:
            tr = total[f"{n} ratio"]
            parts.append(f"* **{n}**: FLOP ratio {fr[n]:.3f}, profiled time ratio {tr:.3f}, "
                         f"profiled efficiency {fr[n] / tr:.2f}; bound by: "
                         + (", ".join(f"{b['op']} (+{b['excess_ms']:.3g} ms, ratio "
                                      f"{b['ratio']:.2f})"
                                      for b in bound_ops(df, names[0], n, fr[n])[:top])
                            or "nothing"))
    return "\n".join(parts) + "\n"


def _provenance(df: pd.DataFrame, argv: list[str]) -> str:
    env = df.attrs.get("environment", {})
    return " · ".join([
        f"profile={df.attrs.get('profile')}", f"family={df.attrs.get('family')}",
        f"device={env.get('device_name', df.attrs.get('device'))}",
        f"threads={env.get('threads')}", f"torch {env.get('torch', torch.__version__)}",
        f"batch={df.attrs.get('batch')}", f"input={df.attrs.get('input_size')}",
        f"warmup={df.attrs.get('warmup')}", f"repeats={df.attrs.get('repeats')}",
        f"stat={df.attrs.get('stat')}",
        f"loadavg at start {df.attrs.get('loadavg_start')}, at end "
        f"{df.attrs.get('loadavg_end')}",
        "command: python -m reprolib.tools.bench.ops " + shlex.join(argv)])


def main(argv: list[str] | None = None) -> int:
    """Profile one bench family and write the Markdown table (:func:`to_markdown`)
    atomically to ``--out``; prints the path.  A ReprolibError is one line on stderr and
    exit code 2."""
    from reprolib.core import io

    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(prog="python -m reprolib.tools.bench.ops",
                                description="Per-operator profile of a bench family: dense "
                                            "vs compressed, which ops bound the speedup.")
    p.add_argument("--profile", default="cpu", help="bench profile (default cpu)")
    p.add_argument("--group", required=True, help="family group (sidt, vtp, ...) or a "
                                                  "family's name")
    p.add_argument("--labels", default=None, help="comma-separated case labels (default: "
                                                  "all; the dense parent is always added)")
    p.add_argument("--batch", type=int, default=None, help="batch (default: the family's)")
    p.add_argument("--warmup", type=int, default=None, help="untimed rounds")
    p.add_argument("--repeats", type=int, default=None, help="profiled rounds")
    p.add_argument("--device", default=None, help="override the profile's device")
    p.add_argument("--threads", type=int, default=None, help="override the profile's torch "
                                                             "threads (0 = torch's default)")
    p.add_argument("--coverage", type=float, default=COVERAGE,
                   help=f"share of each model's time kept as named ops (default {COVERAGE})")
    p.add_argument("--stat", default="mean", help=f"per-op time over the rounds: "
                                                  f"{' or '.join(STATS)} (default mean)")
    p.add_argument("--out", default=None, help="the Markdown file (default "
                                               "figures/bench/ops-<group>-<profile>.md)")
    args = p.parse_args(argv)
    try:
        df = family_profile(args.profile, args.group, args.labels, args.batch,
                            warmup=args.warmup, repeats=args.repeats, device=args.device,
                            threads=args.threads, coverage=args.coverage, stat=args.stat)
        if args.out:
            out = args.out
        else:
            from reprolib.core.report import figures_dir
            from reprolib.tools.bench.graph import slug

            out = figures_dir("bench") / f"ops-{slug(args.group)}-{args.profile}.md"
        text = to_markdown(df, f"Per-operator profile: {df.attrs['family']}",
                           _provenance(df, argv))
        print(io.write_text(text, out))
    except ReprolibError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
