"""The stages of the SiDT graph (``reprolib.experiments.sidt``): one builder per role, each
returning a :class:`Stage` that declares every stage it reads (``after``), the model it builds,
what it trains and what it needs.  ``SiDT.declare`` adds them to the graph by role and tags."""

from __future__ import annotations

import copy

import torch

from reprolib.configs.sidt import CONTROLS
from reprolib.core.compressed import build
from reprolib.core.device import on_meta, resolve_device
from reprolib.core.measure import count_flops, count_params
from reprolib.core.pipeline import (ModelSpec, Stage, key_of, load_data, resources,
                                    train_and_measure, training)
from reprolib.core.registry import create_model
from reprolib.core.train import evaluate
from reprolib.data.catalog import num_classes
from reprolib.errors import ReprolibError
from reprolib.methods import bisect_ratio, sidt

#: What ``plan`` says of a pruned model's size.
PRUNED_NOTE = "counted unpruned: an upper bound"


def ratios(cfg) -> list[float]:
    """0 (the searched model without its scores) and every ratio of ``cfg``, in order."""
    return [0.0, *(float(r) for r in cfg.ratios if float(r) != 0.0)]


def tune_name(ratio: float) -> str:
    return f"finetune-p{round(100 * ratio):02d}"


def _counts(model, size: int) -> dict:
    """Parameters, backbone parameters (classifier head excluded) and FLOPs at ``size`` px."""
    n = count_params(model)
    return {"params": n, "backbone_params": n - count_params(model.head),
            "flops": count_flops(model, (3, size, size))}


def _new_model(cfg, num_classes: int):
    """``cfg.model`` (with ``cfg.model_kwargs``) for ``num_classes`` at ``cfg.image_size``."""
    return create_model(cfg.model, num_classes=num_classes, img_size=cfg.image_size,
                        **cfg.model_kwargs)


def model_spec(cfg, note: str = "") -> ModelSpec:
    """The model the trained stages build: ``cfg.model`` as :func:`_new_model` builds it."""
    kw = {"num_classes": num_classes(cfg.dataset), "img_size": cfg.image_size,
          **cfg.model_kwargs}
    return ModelSpec(cfg.model, kw, (3, cfg.image_size, cfg.image_size), note=note)


def baseline_stage(cfg, suffix: str = "") -> Stage | None:
    """The dense model trained with the ``baseline`` recipe (no scores, no L1); None when
    ``baseline.epochs`` is 0 (the search then starts from scratch)."""
    if cfg.baseline.epochs == 0:
        return None

    def fn(stage: Stage) -> dict:
        data = load_data(cfg, cfg.baseline)
        model = _new_model(cfg, data.num_classes)
        m = train_and_measure(model, data, cfg.baseline, stage.ckpt_dir, device=cfg.device,
                              desc="SiDT dense baseline", latency_repeats=0)
        stage.save_model(model)
        return {**m, "backbone_params": m["params"] - count_params(model.head)}

    key = key_of(cfg, "dataset", "image_size", "model", "baseline",
                 model_kwargs=dict(cfg.model_kwargs))
    return Stage(cfg, f"baseline{suffix}", key, fn, model=model_spec(cfg),
                 train=training(cfg, "baseline"), resources=resources(cfg), group="baseline",
                 note="the dense model, Table I's 0 % row; the search starts from it")


def search_stage(cfg, baseline: Stage | None = None, suffix: str = "") -> Stage:
    """Scores attached to ``cfg.model`` (the baseline's, else a fresh one), weights and scores
    trained with the ``search`` recipe plus ``l1_strength * sum |alpha|``; the scored model is
    saved."""
    def fn(stage: Stage) -> dict:
        data = load_data(cfg, cfg.search)
        model = sidt.attach_scores(baseline.model() if baseline is not None
                                   else _new_model(cfg, data.num_classes))
        m = train_and_measure(model, data, cfg.search, stage.ckpt_dir, device=cfg.device,
                              desc="SiDT search", latency_repeats=0,
                              extra_loss=lambda mod: sidt.l1_penalty(mod, cfg.l1_strength))
        stage.save_model(model)
        sc = sidt.scores(model)
        s = torch.cat([a.detach().abs().flatten().cpu() for a in sc.values()])
        q = torch.quantile(s, torch.tensor([0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0]))
        return {**m, "backbone_params": m["params"] - count_params(model.head),
                "n_scores": int(s.numel()), "score_quantiles": [float(v) for v in q],
                "scores": {n: [round(float(v), 5) for v in a.detach()] for n, a in sc.items()}}

    key = key_of(cfg, "dataset", "image_size", "model", "l1_strength", "search",
                 model_kwargs=dict(cfg.model_kwargs))
    return Stage(cfg, f"search{suffix}", key, fn, after=[baseline] if baseline else [],
                 model=model_spec(cfg, note="counted without its scores (one per dimension)"),
                 train=training(cfg, "search", l1=cfg.l1_strength), resources=resources(cfg),
                 group="search", note="scores attached to every dimension; L1 on the scores")


def finetune_stage(cfg, ratio: float, search: Stage, suffix: str = "") -> Stage:
    """The searched model pruned at ``ratio`` (``cfg.scope`` ranking), evaluated, fine-tuned
    with the ``finetune`` recipe (warm start, no L1) and measured."""
    def fn(stage: Stage) -> dict:
        data = load_data(cfg, cfg.finetune)
        dev = resolve_device(cfg.device)
        model = sidt.prune(search.model(), ratio, cfg.scope)
        acc0 = evaluate(model.to(dev), data.test, dev)["acc"]
        m = train_and_measure(model, data, cfg.finetune, stage.ckpt_dir, device=cfg.device,
                              desc=f"SiDT fine-tune PR={ratio:g}",
                              latency_batch=cfg.latency_batch,
                              latency_repeats=cfg.latency_repeats)
        stage.save_model(model)
        a = sidt.arch(model)
        return {**m, "acc_pruned_no_ft": acc0, "ratio": ratio, "scope": cfg.scope,
                "search_epochs": search.metrics()["epochs"], "test_images": data.test_size,
                "backbone_params": m["params"] - count_params(model.head),
                "attn_dims": a["attn_dims"], "mlp_dims": a["mlp_dims"], "swin": a["swin"]}

    key = key_of(cfg, "dataset", "image_size", "scope", "finetune", "latency_batch",
                 "latency_repeats", ratio=ratio)
    return Stage(cfg, f"{tune_name(ratio)}{suffix}", key, fn, after=[search],
                 model=model_spec(cfg, note=PRUNED_NOTE), train=training(cfg, "finetune"),
                 resources=resources(cfg), group="finetune",
                 note=f"the searched model pruned at each ratio ({cfg.scope} ranking), "
                      "fine-tuned from the searched weights, no L1")


def _ranking(model, control: str, seed: int):
    """(scope, ranking) of a control: "uniform" ranks the learned scores within each layer;
    "random" ranks random values (from ``seed``) over all layers."""
    if control == "uniform":
        return "layer", None
    if control == "random":
        g = torch.Generator().manual_seed(int(seed))
        return "global", {n: torch.rand(a.numel(), generator=g)
                          for n, a in sidt.scores(model).items()}
    raise ReprolibError(f"unknown SiDT control {control!r}; valid: {', '.join(CONTROLS)}")


def matched_prune(model, target_params: int, control: str, seed: int = 0, steps: int = 30):
    """``model`` (scored) pruned by ``control`` at the ratio whose parameter count is closest
    to ``target_params`` (bisection on the ratio; the count falls as the ratio grows).
    Returns ``(pruned model, ratio)``."""
    scope, ranking = _ranking(model, control, seed)
    ratio, _ = bisect_ratio(lambda r: _count_pruned(model, r, scope, ranking), target_params,
                            hi=0.999, steps=steps)
    return sidt.prune(model, ratio, scope, ranking=ranking), ratio


def _count_pruned(model, ratio: float, scope: str, ranking) -> int:
    """Parameters of ``sidt.prune(model, ratio, scope, ranking)`` by the closed form (no
    model is built)."""
    keep = sidt.keep_indices(model, ratio, scope, ranking=ranking)
    dims = {"attn_dims": {n: len(i) for n, i in keep.items() if n.endswith(".attn")},
            "mlp_dims": {n: len(i) for n, i in keep.items() if n.endswith(".mlp")}}
    return sidt.param_count_closed_form(model, dims)


def tp_prune(model, target_flops: int, control: str, size: int, plain):
    """``model`` (scored) with its scores folded in (``sidt.prune`` at 0), loaded into
    ``plain`` (a fresh model of the same architecture, e.g. timm's own Swin: the same
    function with timm's attention modules, which Torch-Pruning's graph tracing knows) and
    pruned by Torch-Pruning (``reprolib.methods.peer``: magnitude importance, uniform for
    ``"tp_uniform"``, global for ``"tp_global"``) to ``target_flops`` at ``size`` px.  Returns
    ``(pruned model, facts)``: the ratio Torch-Pruning needed, the FLOP error, its version.
    The pruned model has no reprolib spec (Torch-Pruning's shapes are not one of our
    architectures), so it is not saved as a compressed model."""
    from reprolib.methods import peer

    if control not in TP_CONTROLS:
        raise ReprolibError(f"unknown Torch-Pruning control {control!r}; valid: "
                            f"{', '.join(TP_CONTROLS)}")
    plain.load_state_dict(sidt.prune(model, 0.0, "global").state_dict())
    pruned, rec = peer.torch_pruning_to_flops(plain.eval(), (3, size, size), int(target_flops),
                                              global_pruning=TP_CONTROLS[control])
    return pruned, peer.facts(rec)


#: Torch-Pruning controls (``cfg.controls``) -> global ranking.
TP_CONTROLS = {"tp_uniform": False, "tp_global": True}


def control_stage(cfg, control: str, ratio: float, search: Stage, suffix: str = "") -> Stage:
    """The searched model pruned by ``control`` to the size of the learned pruning at
    ``ratio`` (its parameter count for ``uniform`` / ``random``, its FLOPs for Torch-Pruning's
    ``tp_uniform`` / ``tp_global``), then fine-tuned exactly as the learned one."""
    tp = control in TP_CONTROLS

    def fn(stage: Stage) -> dict:
        data = load_data(cfg, cfg.finetune)
        dev = resolve_device(cfg.device)
        scored = search.model()
        learned = sidt.prune(scored, ratio, cfg.scope)
        size = (3, cfg.image_size, cfg.image_size)
        facts: dict = {}
        if tp:
            target = count_flops(learned, size)
            model, facts = tp_prune(scored, target, control, cfg.image_size,
                                    _new_model(cfg, data.num_classes))
            used = facts["pruning_ratio"]
        else:
            target = count_params(learned)
            model, used = matched_prune(scored, target, control, seed=stage.seed)
        acc0 = evaluate(model.to(dev), data.test, dev)["acc"]
        m = train_and_measure(model, data, cfg.finetune, stage.ckpt_dir, device=cfg.device,
                              desc=f"SiDT {control} PR={ratio:g}",
                              latency_batch=cfg.latency_batch,
                              latency_repeats=cfg.latency_repeats)
        if not tp:
            stage.save_model(model)
        # Torch-Pruning's global ranking also narrows the residual width of each block
        a = sidt.arch(model) if not tp else sidt.widths(model)
        return {**m, "acc_pruned_no_ft": acc0, "ratio": ratio, "control": control,
                "control_ratio": used, ("target_flops" if tp else "target_params"): target,
                "matched_on": "flops" if tp else "params", **facts,
                "test_images": data.test_size,
                "backbone_params": m["params"] - count_params(model.head),
                **{k: a[k] for k in ("attn_dims", "mlp_dims", "residual_dims") if k in a}}

    key = key_of(cfg, "dataset", "image_size", "scope", "finetune", "latency_batch",
                 "latency_repeats", ratio=ratio, control=control)
    name = f"{control}-p{round(100 * ratio):02d}{suffix}"
    ours = [k for k in cfg.controls if k not in TP_CONTROLS]
    peers = [k for k in cfg.controls if k in TP_CONTROLS]
    note = "controls of the searched model, fine-tuned alike: " + "; ".join(
        x for x in ((f"{' / '.join(ours)} pruning at the learned model's parameter count"
                     if ours else ""),
                    (f"Torch-Pruning {' / '.join(k[3:] for k in peers)} at its FLOPs"
                     if peers else "")) if x) + ", per ratio"
    return Stage(cfg, name, key, fn, after=[search], model=model_spec(cfg, note=PRUNED_NOTE),
                 train=training(cfg, "finetune"), resources=resources(cfg), group="control",
                 note=note)


def reference_stage(cfg, tunes: list[Stage]) -> Stage:
    """The full Swin-T (``cfg.reference_model`` at ``cfg.reference_size`` px,
    ``cfg.reference_classes`` classes) pruned at every ratio uniformly and with the per-layer
    kept fractions each fine-tune's search learned, counted; plus the section 3 per-layer
    complexity.  Reads every fine-tune's metrics (their widths)."""
    rs = ratios(cfg)

    def fn(stage: Stage) -> dict:
        size = cfg.reference_size
        # counted on the meta device (shapes only: nothing allocated or initialised, the
        # counts are those of the real model); uniform pruning ranks all-equal values, as
        # the fresh scores are
        with on_meta():
            base = create_model(cfg.reference_model, num_classes=cfg.reference_classes,
                                img_size=size).eval()
            scored = sidt.attach_scores(copy.deepcopy(base))
        equal = sidt.equal_ranking(scored)
        rows, layers = [], []
        for r in rs:                          # uniform: every layer loses the fraction r
            m = sidt.prune(scored, r, "layer", ranking=equal)
            rows.append({"kind": "uniform", "ratio": r, **_counts(m, size)})
            layers += [{"ratio": r, **row} for row in sidt.layer_complexity(m, (3, size, size))]
        for t in tunes:                       # learned: the searched per-layer kept fractions
            mt = t.metrics()
            with on_meta():
                m = build(sidt.compressed_spec(sidt.transfer_dims(mt, base)))
            rows.append({"kind": "learned", "ratio": mt["ratio"], **_counts(m, size)})
        return {"rows": rows, "layers": layers}

    size = cfg.reference_size
    key = key_of(cfg, "reference_model", "reference_classes", "reference_size", ratios=rs)
    return Stage(cfg, "reference", key, fn, after=tunes,
                 model=ModelSpec(cfg.reference_model,
                                 {"num_classes": cfg.reference_classes, "img_size": size},
                                 (3, size, size), note="counted unpruned and pruned, not trained"),
                 resources=resources(cfg, trains=False), group="reference",
                 note="the reference Swin-T pruned uniformly and with the learned widths, "
                      "counted; section 3 per-layer complexity")
