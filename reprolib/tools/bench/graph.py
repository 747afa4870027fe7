"""The bench's graph: one cached stage per (family, variant) -- a family of a dense parent
and its compressed models from a paper's pipeline (``Pipeline.bench_families``) -- and per
(fit model, variant), the bench's own loop comparison; :class:`Bench` declares them.

A family is data (it enters its stage's key): ``{"name", "group", "input_size", "batch",
"train_batch", "cases": [case, ...]}``, the first case the dense parent, each case naming
its model (``model``, ``kwargs``), its ``label`` and ``method`` and how it is compressed;
beside the data a paper may give ``build(case, seed) -> model`` (default: the model created,
seeded) and ``describe(model, case) -> dict`` (what a compressed model kept: widths, ranks,
layers left dense), which are not part of the key.

The peer (``cfg.peer_scopes``, :mod:`.peer`): :func:`families` gives every family of
``cfg.peer_groups`` one more case per compressed case and scope, ``{"method": "Torch-Pruning",
"peer_of": <label>, "scope", "round_to"}``: the dense parent pruned by Torch-Pruning to that
case's counted FLOPs (within 2 %), built in the stage after the cases it matches.  A case with
``"peer": False`` gets none (VTP's QR / LU: the same shapes, so the same FLOPs, as its SVD).
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

    fams = [f for p in pipelines().values() for f in p.bench_families(cfg)
            if f["group"] in cfg.groups]
    for f in fams:
        if f["group"] in cfg.peer_groups and cfg.peer_scopes:
            f["cases"] = f["cases"] + peer_cases(f["cases"], cfg.peer_scopes)
    return fams


def peer_cases(cases: list[dict], scopes) -> list[dict]:
    """The Torch-Pruning cases of a family: for every compressed case (not ``dense``, not
    ``"peer": False``) and every scope, the dense parent (the first case) pruned to its FLOPs,
    channels rounded to the case's ``round_to`` (1: not rounded)."""
    dense = cases[0]
    out = []
    for c in cases[1:]:
        if c["method"] == "dense" or c.get("peer") is False:
            continue
        rt = int(c.get("round_to") or 1)
        for scope in scopes:
            out.append({"label": f"TP {scope} = {c['label']}", "method": "Torch-Pruning",
                        "model": dense["model"], "kwargs": dict(dense.get("kwargs", {})),
                        "peer_of": c["label"], "scope": scope, "round_to": rt})
    return out


#: Torch-Pruning's pruning ratio found per (parent, seed, size, target, scope, round_to) in this
#: process: a family timed under several variants searches each peer once.
_PEER_RATIOS: dict = {}


def build_peer(case: dict, parent, flops: int, input_size, seed: int):
    """The peer ``case`` (:func:`peer_cases`): ``parent`` pruned by Torch-Pruning to ``flops``;
    returns ``(model, facts)``, the facts (ratio found, FLOPs error, whether within 2 %) for
    the table."""
    from reprolib.methods import peer

    rt = int(case.get("round_to") or 1)
    glob = case["scope"] == "global"
    key = (case["model"], repr(sorted(case.get("kwargs", {}).items())), seed,
           tuple(input_size), int(flops), case["scope"], rt)
    if key in _PEER_RATIOS:
        ratio, rec = _PEER_RATIOS[key]
        model = peer.prune_once(parent, input_size, ratio, global_pruning=glob,
                                round_to=rt if rt > 1 else None)
    else:
        model, rec = peer.torch_pruning_to_flops(parent, input_size, int(flops),
                                                 global_pruning=glob,
                                                 round_to=rt if rt > 1 else None)
        _PEER_RATIOS[key] = (rec["pruning_ratio"], rec)
    return model.eval(), peer.facts(rec, digits=5)


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


def build_models(fam: dict, seed: int = 0, labels=None) -> tuple[dict, list[dict]]:
    """The models of a family's cases (``labels``: those only, default all; a peer needs the
    dense parent and the case it matches, built too but returned only when asked), and one
    row per returned case: label, method, round_to, params, FLOPs and what the case kept
    (``describe``) or, for a peer, its search facts (:func:`build_peer`)."""
    describe = fam.get("describe") or (lambda model, case: {})
    size = tuple(fam["input_size"])
    want = set(labels) if labels is not None else {c["label"] for c in fam["cases"]}
    need = set(want)
    for c in fam["cases"]:
        if c["label"] in want and "peer_of" in c:
            need |= {fam["cases"][0]["label"], c["peer_of"]}
    built, rows, flops = {}, [], {}
    for case in fam["cases"]:                       # peers after the cases they match
        if case["label"] not in need:
            continue
        if "peer_of" in case:
            m, facts = build_peer(case, built[fam["cases"][0]["label"]], flops[case["peer_of"]],
                                  size, seed)
            extra = {"peer_of": case["peer_of"], "scope": case["scope"], **facts}
        else:
            m = build_case(case, seed, fam)
            extra = describe(m, case)
        built[case["label"]] = m
        flops[case["label"]] = count_flops(m, size)
        if case["label"] in want:
            rows.append({"label": case["label"], "method": case["method"],
                         "round_to": case.get("round_to"), "params": count_params(m),
                         "flops": flops[case["label"]], **extra})
    return {r["label"]: built[r["label"]] for r in rows}, rows


def family_stage(cfg, fam: dict, variant: str) -> Stage:
    """``<family>-<variant>``: every model of ``fam`` built and counted, then timed
    interleaved at batch 1, at the family's large batch and for a training step."""
    opts = parse_variant(variant)
    data = {k: fam[k] for k in FAMILY_KEYS}

    def fn(stage) -> dict:
        dev = setup(cfg)
        load0 = loadavg()
        models, rows = build_models(fam, cfg.seed)
        size = data["input_size"]
        common = dict(precision=opts["precision"], channels_last=opts["channels_last"],
                      compile=opts["compile"], runtime=opts["runtime"])
        timings = {
            "b1": time_models(models, size, 1, dev, warmup=cfg.warmup, repeats=cfg.repeats,
                              **common),
            "large": time_models(models, size, data["batch"], dev,
                                 warmup=max(1, cfg.warmup - 1), repeats=cfg.large_repeats,
                                 **common),
        }
        if opts["runtime"] != "ort":             # ONNX Runtime runs inference only
            timings["train"] = time_models(models, size, data["train_batch"], dev,
                                           mode="train", warmup=max(1, cfg.warmup - 1),
                                           repeats=cfg.train_repeats, **common)
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
                "loadavg_end": loadavg(), **environment(dev, runtime=opts["runtime"])}

    key = {"family": data, "variant": variant, "threads": cfg.threads, "device": cfg.device,
           "warmup": cfg.warmup, "repeats": cfg.repeats, "large_repeats": cfg.large_repeats,
           "train_repeats": cfg.train_repeats, "seed": cfg.seed}
    return Stage(cfg, f"{data['name']}-{slug(variant)}", key, fn, paper=PAPER,
                 group=f"{data['group']}-{slug(variant)}",
                 note=f"{len(data['cases'])} models timed interleaved: batch 1, batch "
                      f"{data['batch']}, a training step at {data['train_batch']}")


def ops_stage(cfg, fam: dict, labels) -> Stage:
    """``ops-<family>``: the per-operator profile (:func:`.ops.op_profile`) of the family's
    cases ``labels`` (the dense parent first) at its large batch, as a record; the bench writes
    it as ``figures/bench/ops-<group>-<profile>.md``."""
    data = {k: fam[k] for k in FAMILY_KEYS}
    labels = [str(x) for x in labels]

    def fn(stage) -> dict:
        from reprolib.tools.bench import ops

        setup(cfg)
        df = ops.profile_family(cfg, fam, labels)
        return {"family": data["name"], "group": data["group"], "labels": labels,
                "columns": list(df.columns), "rows": df.to_dict("records"),
                "attrs": dict(df.attrs)}      # made strict JSON by the record writer

    key = {"ops": data, "labels": labels, "threads": cfg.threads, "device": cfg.device,
           "warmup": cfg.warmup, "repeats": cfg.large_repeats, "seed": cfg.seed}
    return Stage(cfg, f"ops-{data['name']}", key, fn, paper=PAPER, group=f"ops-{data['group']}",
                 note=f"per-operator profile of {', '.join(labels)} at batch {data['batch']}")


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
                              workers=cfg.fit_workers, precision=opts["precision"],
                              channels_last=opts["channels_last"], compile=opts["compile"])
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
    ``variant``), ``fit`` (tags ``model``, ``variant``) and ``ops`` (tags ``group``,
    ``family``: :func:`ops_stage`); no stage reads another."""

    name = PAPER

    def declare(self, cfg, g) -> None:
        """Per variant, in the order of :data:`GROUPS`: the fit stages (one per
        ``cfg.fit_models``) and every family of that group (after the first variant only the
        groups of ``cfg.variant_groups``, when it names any)."""
        fams = families(cfg)
        for i, v in enumerate(cfg.variants):
            for grp in GROUPS:
                if i and cfg.variant_groups and grp not in cfg.variant_groups:
                    continue
                if parse_variant(v)["compile"] and cfg.compile_groups and \
                        grp not in cfg.compile_groups:
                    continue
                if grp == "fit" and grp in cfg.groups and parse_variant(v)["runtime"] != "ort":
                    for m in cfg.fit_models:
                        g.add(fit_stage(cfg, m, v), role="fit", model=m, variant=v)
                for f in fams:
                    if f["group"] == grp:
                        g.add(family_stage(cfg, f, v), role="family", group=grp,
                              family=f["name"], variant=v)

        for group, labels in cfg.op_profiles:            # after the timings, once
            for f in fams:
                if f["group"] == group:
                    g.add(ops_stage(cfg, f, labels), role="ops", group=group, family=f["name"])

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
