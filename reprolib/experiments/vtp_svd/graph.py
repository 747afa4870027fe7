"""The stage builders of the VTP + decomposition pipeline (one cached record each; the graph
they make is :meth:`reprolib.experiments.vtp_svd.VtpSvd.declare`'s): the dense baseline, the
L1 sparsity training, pruning + fine-tune, every decomposition (and the evidence control),
the analysis of the pruned layers and the full-rank identity.  ``pc`` is the config of one
patch size (:func:`patch_cfg`)."""

from __future__ import annotations

from pathlib import Path

import torch

from reprolib.configs import TrainConfig, recipe_dict, with_overrides
from reprolib.core.device import resolve_device
from reprolib.core.io import pack_bits
from reprolib.core.measure import measure_model
from reprolib.core.pipeline import (ModelSpec, Stage, key_of, load_data, resources,
                                    seed_everything, training)
from reprolib.core.registry import create_model
from reprolib.core.train import evaluate, fit
from reprolib.data.catalog import num_classes
from reprolib.methods import bisect_ratio, decompose, vtp


def patch_cfg(cfg, patch: int):
    """``cfg`` with ``cfg.patch_overrides[patch]`` applied (dotted keys, as in presets:
    ``{"model": "vit_cifar_small_d2", "pretrain.epochs": 6}``) through the one override path
    (:func:`reprolib.configs.with_overrides`; the config's ``check`` refuses the keys of
    ``configs.vtp_svd.NOT_PER_PATCH``); the same ``cfg`` when the patch size has none."""
    over = dict((cfg.patch_overrides or {}).get(patch, {}))
    if not over:
        return cfg
    return with_overrides(cfg, over, f"patch_overrides[{patch}]")


def model_spec(pc, patch: int, note: str = "") -> ModelSpec:
    """The ViT the stages of ``patch`` build (:func:`scored_model`'s arguments), for counting
    on the meta device."""
    return ModelSpec(pc.model, {"image_size": pc.image_size, "patch_size": patch,
                                "num_classes": num_classes(pc.dataset), "dropout": pc.dropout,
                                "emb_dropout": pc.dropout, "attn_scale": pc.attn_scale},
                     (3, pc.image_size, pc.image_size), note=note)


def scored_model(pc, patch: int, n_classes: int):
    """``pc.model`` at ``patch`` with VTP's importance scores (all 1) attached."""
    model = create_model(pc.model, image_size=pc.image_size, patch_size=patch,
                         num_classes=n_classes, dropout=pc.dropout, emb_dropout=pc.dropout,
                         attn_scale=pc.attn_scale)
    return vtp.attach_scores(model)


def _train(model, pc, recipe: TrainConfig, ckpt_dir: Path, desc: str, l1: bool = False):
    """``fit`` one phase (with the L1 term on the scores when ``l1``); the FitResult."""
    kw = {}
    if l1 and pc.l1_mode == "grad":
        kw["grad_hook"] = vtp.l1_grad_hook(pc.l1_strength)
    elif l1:
        kw["extra_loss"] = lambda m: vtp.l1_penalty(m, pc.l1_strength)
    return fit(model, load_data(pc, recipe.batch_size), recipe, ckpt_dir=ckpt_dir,
               device=pc.device, desc=desc, **kw)


def _measure(model, pc) -> dict:
    """params, FLOPs (one image) and CPU latency (batch 1) of ``model`` (moved to the CPU)."""
    return measure_model(model.cpu(), (3, pc.image_size, pc.image_size))


def _training(pc, recipe_name: str, **kw):
    """The stage's :class:`~reprolib.core.stage.Training` for ``plan``; None when the recipe
    trains no epoch (the stage then only evaluates)."""
    return training(pc, recipe_name, **kw) if getattr(pc, recipe_name).epochs > 0 else None


def dense_stage(pc, patch: int, suffix: str = "") -> Stage:
    """``dense-p{patch}{suffix}``: the scored ViT trained from scratch (``pretrain``), then
    fine-tuned (``baseline``), no L1 (section 3.2.1)."""
    def fn(stage: Stage) -> dict:
        data = load_data(pc, pc.pretrain.batch_size)
        seed_everything(pc.seed)
        model = scored_model(pc, patch, data.num_classes).to(resolve_device(pc.device))
        hist, wall = {}, {}
        for phase in ("pretrain", "baseline"):
            rec = getattr(pc, phase)
            if rec.epochs > 0:
                r = _train(model, pc, rec, stage.ckpt_dir / phase, f"p{patch} {phase}")
                hist[phase], wall[phase] = r.history, r.wall_time_s
        acc = evaluate(model, data.test)["acc"]
        metrics = {"patch_size": patch, "acc": acc, **_measure(model, pc), "history": hist,
                   "train_wall_s": wall, "train_size": data.train_size}
        stage.save_model(model)
        return metrics

    key = key_of(pc, "dataset", "image_size", "model", "attn_scale", "dropout", "pretrain",
                 "baseline", patch_size=patch)
    # one stage, two recipes in sequence (those with epochs)
    trains = tuple(training(pc, r) for r in ("pretrain", "baseline") if getattr(pc, r).epochs > 0)
    return Stage(pc, f"dense-p{patch}{suffix}", key, fn, group=f"dense-p{patch}",
                 model=model_spec(pc, patch, "counted without the importance scores"),
                 train=trains or None, resources=resources(pc, trains=bool(trains)),
                 note=f"patch {patch}: dense baseline with scores, no L1 (3.2.1)")


def sparse_stage(pc, patch: int, dense: Stage, suffix: str = "") -> Stage:
    """``sparse-p{patch}{suffix}``: the dense model trained with the L1 term of weight
    ``l1_strength`` on the scores (``sparsity``, section 3.2.2)."""
    def fn(stage: Stage) -> dict:
        data = load_data(pc, pc.sparsity.batch_size)
        model = dense.model().to(resolve_device(pc.device))
        hist, wall = {}, {}
        if pc.sparsity.epochs > 0:
            r = _train(model, pc, pc.sparsity, stage.ckpt_dir / "sparsity", f"p{patch} sparsity",
                       l1=True)
            hist["sparsity"], wall["sparsity"] = r.history, r.wall_time_s
        acc = evaluate(model, data.test)["acc"]
        metrics = {"patch_size": patch, "acc": acc, **_measure(model, pc),
                   "scores": [s.detach().cpu().tolist() for s in vtp.scores(model).values()],
                   "history": hist, "train_wall_s": wall}
        stage.save_model(model)
        return metrics

    key = key_of(pc, "sparsity", "l1_strength", "l1_mode")
    train = _training(pc, "sparsity", l1=pc.l1_strength)
    return Stage(pc, f"sparse-p{patch}{suffix}", key, fn, after=[dense],
                 group=f"sparse-p{patch}",
                 model=model_spec(pc, patch, "the dense model; counted without the scores"),
                 train=train, resources=resources(pc, trains=train is not None),
                 note=f"patch {patch}: L1 of weight {pc.l1_strength:g} on the scores (3.2.2)")


def vtp_stage(pc, patch: int, dense: Stage, sparse: Stage, suffix: str = "") -> Stage:
    """``vtp-p{patch}{suffix}``: ``vtp.prune`` of the sparse model at ``prune_rate`` (a
    physically smaller ViT), then ``finetune`` without L1 (section 3.2.3); its record carries
    the dense and sparse stages' accuracies and histories."""
    def fn(stage: Stage) -> dict:
        dm, sm = dense.metrics(), sparse.metrics()
        data = load_data(pc, pc.finetune.batch_size)
        model = sparse.model().to(resolve_device(pc.device))
        plan = vtp.plan(model, pc.prune_rate)
        pruned = vtp.prune(model, pc.prune_rate)
        acc0 = evaluate(pruned, data.test)["acc"]
        r = _train(pruned, pc, pc.finetune, stage.ckpt_dir / "finetune", f"p{patch} finetune")
        hist = {**dm["history"], **sm["history"], "finetune": r.history}
        wall = {**dm["train_wall_s"], **sm["train_wall_s"], "finetune": r.wall_time_s}
        acc = evaluate(pruned, data.test)["acc"]
        metrics = {"patch_size": patch, "acc_dense": dm["acc"], "acc_sparse": sm["acc"],
                   "params_dense": dm["params"], "flops_dense": dm["flops"],
                   "acc_pruned_no_ft": acc0, "acc": acc, **_measure(pruned, pc),
                   "block_dims": pruned.architecture()["block_dims"],
                   "threshold": plan.threshold, "kept_fraction": plan.kept_fraction,
                   "scores": sm["scores"], "history": hist, "train_wall_s": wall,
                   "train_size": data.train_size, "test_size": data.test_size}
        stage.save_model(pruned)
        return metrics

    key = key_of(pc, "prune_rate", "finetune")
    train = _training(pc, "finetune")
    return Stage(pc, f"vtp-p{patch}{suffix}", key, fn, after=[dense, sparse],
                 group=f"vtp-p{patch}",
                 model=model_spec(pc, patch, "pruned at rate "
                                  f"{pc.prune_rate:g}; counted unpruned: an upper bound"),
                 train=train, resources=resources(pc, trains=train is not None),
                 note=f"patch {patch}: prune {pc.prune_rate:g} of the scores, fine-tune without "
                      "L1 (3.2.3)")


def decomp_stage(pc, patch: int, vtp_st: Stage, method: str, ratio: float,
                 recipe_name: str, suffix: str = "") -> Stage:
    """``decomp-p{patch}-{method}-r{ratio}-ft{epochs}{suffix}``: every pruned linear layer of
    the VTP model factored by ``method`` at ``ratio`` (``decompose.decompose_model``), then
    fine-tuned with the recipe ``recipe_name`` (``decompose_finetune`` for Table 2,
    ``sweep_finetune`` for the rank sweep); ``method="none"``: the VTP model fine-tuned alike,
    not decomposed (the evidence control, ``vtpft-p{patch}-ft{epochs}{suffix}``)."""
    ratio = float(ratio)
    recipe = getattr(pc, recipe_name)

    def fn(stage: Stage) -> dict:
        data = load_data(pc, recipe.batch_size)
        base = vtp_st.model().to(resolve_device(pc.device))
        model = (base if method == "none" else decompose.decompose_model(base, method, ratio))
        acc0 = evaluate(model, data.test)["acc"]
        wall, hist = 0.0, []
        if recipe.epochs > 0:
            r = _train(model, pc, recipe, stage.ckpt_dir / "finetune", f"p{patch} {method}")
            wall, hist = r.wall_time_s, r.history
        final = evaluate(model, data.test, per_image=True)     # which images: paired tests
        acc = final["acc"]
        seen = ({"test_correct": pack_bits(final["correct"]), "test_images": data.test_size}
                if final.get("correct") is not None else {})
        metrics = {"patch_size": patch, "method": method, "rank_ratio": ratio,
                   "finetune_epochs": recipe.epochs, "acc_no_ft": acc0, "acc": acc, **seen,
                   **_measure(model, pc), "ranks": decompose.current_ranks(model),
                   "train_wall_s": wall, "history": hist}
        stage.save_model(model)
        return metrics

    key = {"method": method, "rank_ratio": ratio, "finetune": recipe_dict(recipe)}
    control = method == "none"
    name = (f"vtpft-p{patch}-ft{recipe.epochs}{suffix}" if control else
            f"decomp-p{patch}-{method}-r{ratio:g}-ft{recipe.epochs}{suffix}")
    train = _training(pc, recipe_name)
    use = "table2" if recipe_name == "decompose_finetune" else "sweep"
    return Stage(pc, name, key, fn, after=[vtp_st],
                 group=f"vtpft-p{patch}" if control else f"{use}-p{patch}",
                 model=model_spec(pc, patch, "the VTP model" + ("" if control else
                                  f" factored by {method} at rank {ratio:g}") + "; counted "
                                  "unpruned" + ("" if control else " and undecomposed")
                                  + ": an upper bound"),
                 train=train, resources=resources(pc, trains=train is not None),
                 note=(f"patch {patch}: the VTP model fine-tuned like the decomposed ones, not "
                       "decomposed (evidence control)" if control else
                       f"patch {patch}: every pruned linear layer by {method} at rank "
                       f"{ratio:g}·min(out, in), then {recipe_name}"))


def vtp_to_flops(sparse_model, target_flops: int, input_size, steps: int = 30):
    """``vtp.prune`` of ``sparse_model`` (scored) at the prune rate whose pruned model's FLOPs
    are closest to ``target_flops`` (bisection on the rate: FLOPs fall as it grows).  Returns
    ``(pruned model, rate)``."""
    from reprolib.core.measure import count_flops

    rate, _ = bisect_ratio(lambda r: count_flops(vtp.prune(sparse_model, r), tuple(input_size)),
                           target_flops, hi=0.99, steps=steps, min_width=1e-4)
    return vtp.prune(sparse_model, rate), rate


def flops_control_stage(pc, patch: int, sparse: Stage, vtp_st: Stage, decomp: Stage,
                        control: str, suffix: str = "") -> Stage:
    """``{control}-p{patch}-r{ratio}-ft{epochs}{suffix}``: the ViT pruned further to the FLOPs
    of ``decomp`` (a decomposed model of the rank sweep), the control the decomposition claim
    needs (does factoring keep more accuracy than pruning more?).  ``"vtp_more"``: the L1-trained
    model pruned by VTP at the rate that reaches those FLOPs, fine-tuned with ``finetune``
    then ``sweep_finetune`` (the epochs the decomposed model had after the L1 phase);
    ``"tp_uniform"`` / ``"tp_global"``: the VTP model pruned by Torch-Pruning (magnitude
    importance; ``reprolib.methods.peer``) to those FLOPs, fine-tuned with
    ``sweep_finetune`` like the decomposed one (same parent, same recipe).  Where the
    decomposed model is not smaller than the VTP model, Torch-Pruning's control is the VTP
    model itself (ratio 0)."""
    recipe = pc.sweep_finetune
    size = (3, pc.image_size, pc.image_size)
    source = sparse if control == "vtp_more" else vtp_st      # the one parent model it reads

    def fn(stage: Stage) -> dict:
        from reprolib.core.measure import count_flops

        target = int(decomp.metrics()["flops"])
        data = load_data(pc, recipe.batch_size)
        dev = resolve_device(pc.device)
        facts: dict = {}
        wall, hist = {}, {}
        if control == "vtp_more":
            model, rate = vtp_to_flops(source.model(), target, size)
            facts = {"prune_rate": rate}
            phases = (("finetune", pc.finetune), ("sweep_finetune", recipe))
        else:
            from reprolib.methods import peer

            parent = source.model().cpu().eval()
            if count_flops(parent, size) <= target:
                model, facts = parent, {"pruning_ratio": 0.0, "flop_error": 0.0}
                # saved as Torch-Pruning's models are (peer.prune_once drops the spec)
                model.__dict__.pop("reprolib_spec", None)
            else:
                model, rec = peer.torch_pruning_to_flops(
                    parent, size, target, global_pruning=control == "tp_global")
                facts = peer.facts(rec)
            phases = (("sweep_finetune", recipe),)
        model = model.to(dev)
        acc0 = evaluate(model, data.test)["acc"]
        for name, rec_ in phases:
            if rec_.epochs > 0:
                r = _train(model, pc, rec_, stage.ckpt_dir / name, f"p{patch} {control}")
                wall[name], hist[name] = r.wall_time_s, r.history
        final = evaluate(model, data.test, per_image=True)
        seen = ({"test_correct": pack_bits(final["correct"]), "test_images": data.test_size}
                if final.get("correct") is not None else {})
        metrics = {"patch_size": patch, "control": control, "target_flops": target,
                   "acc_no_ft": acc0, "acc": final["acc"], **seen, **facts,
                   **_measure(model, pc), "train_wall_s": sum(wall.values()),
                   "phase_wall_s": wall, "history": hist,
                   "finetune_epochs": sum(x.epochs for _, x in phases)}
        if control == "vtp_more":
            metrics["block_dims"] = model.architecture()["block_dims"]
            stage.save_model(model)
        return metrics

    key = {"control": control,
           "finetune": recipe_dict(pc.finetune) if control == "vtp_more" else None,
           "sweep_finetune": recipe_dict(recipe)}
    what = ("VTP at a higher prune rate (from the L1 model)" if control == "vtp_more" else
            f"Torch-Pruning {control[3:]} (from the VTP model)")
    rr = decomp.name.split("-r")[1].split("-ft")[0]
    name = f"{control}-p{patch}-r{rr}-ft{recipe.epochs}{suffix}"
    after = [source, decomp]
    trains = tuple(training(pc, r) for r in (("finetune", "sweep_finetune") if control == "vtp_more"
                                               else ("sweep_finetune",))
                   if getattr(pc, r).epochs > 0)
    return Stage(pc, name, key, fn, after=after, group=f"flops-control-p{patch}",
                 model=model_spec(pc, patch, "pruned to a decomposed model's FLOPs; counted "
                                  "unpruned: an upper bound"),
                 train=trains or None, resources=resources(pc, trains=bool(trains)),
                 note=f"patch {patch}: the ViT pruned further to each decomposed model's FLOPs "
                      f"by {what}, fine-tuned alike (evidence control)")


def analysis_stage(pc, patch: int, vtp_st: Stage) -> Stage:
    """``analysis-p{patch}``: reconstruction error vs rank of the VTP model's pruned layers
    and section 2.3's least-squares merits (normal equations / QR / SVD, float32 and
    float64) on their matrices."""
    def fn(stage: Stage) -> dict:
        model = vtp_st.model()
        ratios = sorted({*map(float, pc.sweep_ratios), 1.0})
        mats = {n: lin.weight for n, lin in decompose.target_layers(model)}
        merits = []
        for dt in ("float32", "float64"):
            merits += decompose.lstsq_merits(mats, dtype=dt, repeats=pc.merits_repeats,
                                             seed=pc.seed)
        return {"patch_size": patch, "errors": decompose.error_curve(model, ratios),
                "merits": merits, "blas_threads": torch.get_num_threads()}

    key = key_of(pc, "sweep_ratios", "merits_repeats")
    return Stage(pc, f"analysis-p{patch}", key, fn, after=[vtp_st],
                 resources=resources(pc, trains=False),
                 note=f"patch {patch}: reconstruction error vs rank and Table 1 measured on "
                      "the pruned layers (CPU)")


def identity_stage(pc, patch: int, vtp_st: Stage) -> Stage:
    """``identity-p{patch}``: every method's full-rank factors reproduce every pruned layer
    of the VTP model (largest output difference)."""
    def fn(stage: Stage) -> dict:
        return {"patch_size": patch,
                "identity": decompose.full_rank_identity(vtp_st.model())}

    return Stage(pc, f"identity-p{patch}", {}, fn, after=[vtp_st],
                 resources=resources(pc, trains=False),
                 note=f"patch {patch}: full-rank factors reproduce every pruned layer")
