"""Vision Transformer Pruning (VTP) with learnable importance scores, physically.

Paper: Tianyi Sun, "Vision Transformer Pruning Via Matrix Decomposition"
(``../shared/papers/vtp_svd.md``), section 2.2, after Zhu, Tang and Han, "Vision Transformer
Pruning" (2021).  Importance scores a (init 1) multiply features, X* = X Diag(a); training
adds the L1 term lambda ||a||_1 (lambda = 1e-4, section 3.2.2); a single threshold tau over
*all* scores, set by the pruning rate, gives a* = 1 if |a| >= tau else 0; features with
a* = 0 are removed and the network is fine-tuned without the L1 term (3.2.3).

Where the scores sit (as in the code book Cydia2018/ViT-cifar10-pruning):

* attention: one vector of length ``heads * head_dim`` multiplying q, k and v alike;
* MLP: one vector of length ``mlp_hidden`` multiplying the hidden layer after fc1 + GELU.

Pruning is physical: q/k/v rows, output-projection columns, fc1 rows and fc2 columns are cut
and the surviving scores are folded into the weights (q, k, v rows times a; fc2 columns
times a), so the pruned model has no score vectors and computes exactly what the masked
model (scores of removed features set to 0) computes.  The attention scale is a constant of
the model and is not recomputed.

Attention heads keep equal widths and their boundaries: the global threshold fixes how many
attention dims survive in a layer, k; that count is rounded to ``heads * round(k / heads)``
(at least one per head), and each head keeps its own ``k / heads`` dims of largest |a|.
(The code book instead lowers the threshold until the count divides 3 * heads and then
re-splits the surviving channels evenly across heads, which moves head boundaries and
changes the function; that is not reproduced.)

The L1 term is offered both ways: ``l1_grad_hook`` adds lambda * sign(a) to the score
gradients after ``backward`` (the code book's ``sparse_selection``) and ``l1_penalty``
returns lambda * sum |a| as a loss term; the tests check that both give the same gradients.
The notebook uses the hook (``VtpSvdConfig.l1_mode = "grad"``).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn as nn

from reprolib.errors import ReprolibError, check_range
from reprolib.models.vit_cifar import Attention, FeedForward, Score, ViTCifar


def attach_scores(model: nn.Module) -> nn.Module:
    """Put an importance-score vector (all ones) on every attention and MLP of ``model``.

    ``model``: a ViT from ``create_model("vit_cifar" | "test_vit_cifar" | ...)``, changed in
    place and returned.  Layers that already carry scores keep them.  The output is unchanged
    (scores start at 1).
    """
    found = False
    for m in model.modules():
        if isinstance(m, Attention):
            n, found = m.heads * m.head_dim, True
        elif isinstance(m, FeedForward):
            n, found = m.fc1.out_features, True
        else:
            continue
        if m.score is None:
            w = next(m.parameters())
            m.score = Score(n).to(w.device, w.dtype)
    if not found:
        raise ReprolibError("attach_scores needs a ViT with Attention / FeedForward modules "
                            "(e.g. reprolib.create_model('vit_cifar'))")
    return model


def score_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(name, Attention | FeedForward)`` of every layer carrying scores, in module order."""
    return [(n, m) for n, m in model.named_modules()
            if isinstance(m, (Attention, FeedForward)) and m.score is not None]


def score_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The score vectors of ``model`` (for the L1 term and for plots)."""
    return [m.score.weight for _, m in score_modules(model)]


def l1_penalty(model: nn.Module, sparsity: float = 1e-4) -> torch.Tensor:
    """lambda * sum |a| over all score vectors: the L1 term as a loss (``sparsity`` = lambda,
    default 1e-4 as in section 3.2.2).  Use as ``fit(..., extra_loss=...)``."""
    ps = score_parameters(model)
    if not ps:
        return torch.zeros(())
    return sparsity * sum(p.abs().sum() for p in ps)


def l1_grad_hook(sparsity: float = 1e-4) -> Callable[[nn.Module], None]:
    """The code book's way: after ``backward``, add lambda * sign(a) to each score gradient
    (``sparsity`` = lambda, default 1e-4).  Use as ``fit(..., grad_hook=l1_grad_hook(1e-4))``."""

    def hook(model: nn.Module) -> None:
        for p in score_parameters(model):
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            p.grad.add_(sparsity * torch.sign(p.detach()))

    return hook


@dataclass
class PrunePlan:
    """What survives a pruning rate: sorted kept indices per scored layer."""

    rate: float                                   # requested fraction of all scores removed
    threshold: float                              # |a| of the smallest globally kept score
    keep: dict[str, torch.Tensor] = field(default_factory=dict)  # layer name -> kept indices
    kept_fraction: float = 1.0                    # kept scores / all scores after head rounding


def plan(model: nn.Module, rate: float) -> PrunePlan:
    """Choose the kept features for pruning ``rate`` of all scores (global threshold).

    ``rate``: fraction of all score entries (attention and MLP together) to remove, in
    [0, 1).  The ``round(rate * total)`` scores of smallest |a| are removed (ties broken by
    position); attention layers are then rounded to equal per-head widths (module docstring).
    """
    check_range("rate", rate, 0.0, 1.0, hi_open=True)
    mods = score_modules(model)
    if not mods:
        model = attach_scores(copy.deepcopy(model))  # no scores yet: all ones
        mods = score_modules(model)
    vals = [m.score.weight.detach().abs().float().cpu() for _, m in mods]
    allv = torch.cat(vals)
    n_prune = int(round(rate * allv.numel()))
    order = torch.argsort(allv, stable=True)
    removed = torch.zeros(allv.numel(), dtype=torch.bool)
    removed[order[:n_prune]] = True
    threshold = float(allv[order[n_prune]]) if n_prune < allv.numel() else float("inf")
    out = PrunePlan(rate=rate, threshold=threshold)
    start, kept_total = 0, 0
    for (name, m), v in zip(mods, vals):
        rem = removed[start:start + v.numel()]
        start += v.numel()
        k = int((~rem).sum())
        if isinstance(m, Attention):
            per_head = min(m.head_dim, max(1, int(round(k / m.heads))))
            heads = v.reshape(m.heads, m.head_dim)
            idx = [h * m.head_dim + torch.sort(torch.argsort(heads[h], descending=True, stable=True)[:per_head]).values
                   for h in range(m.heads)]
            keep = torch.cat(idx)
        else:
            keep = torch.nonzero(~rem).flatten()
            if keep.numel() == 0:
                keep = torch.argmax(v).reshape(1)
        out.keep[name] = keep
        kept_total += keep.numel()
    out.kept_fraction = kept_total / allv.numel()
    return out


def mask(model: nn.Module, rate: float) -> nn.Module:
    """A copy of ``model`` with the scores of the features ``plan(model, rate)`` removes set
    to 0 (the masked model of section 2.2: same size, same tensors)."""
    p = plan(model, rate)
    new = copy.deepcopy(model)
    if not score_modules(new):
        attach_scores(new)
    for name, m in score_modules(new):
        keep = torch.zeros_like(m.score.weight, dtype=torch.bool)
        keep[p.keep[name].to(keep.device)] = True
        with torch.no_grad():
            m.score.weight.mul_(keep.to(m.score.weight.dtype))
    return new


def prune(model: nn.Module, rate: float) -> ViTCifar:
    """Physically prune ``model`` at ``rate``; returns a new, smaller ViT (input untouched).

    ``model``: a ``ViTCifar`` with scores (``attach_scores``, then sparsity training); a
    model without scores is treated as having all scores 1.
    ``rate``: fraction of all importance scores (attention + MLP, one global threshold) to
    remove, in [0, 1).  Surviving scores are folded into the weights, so the result has no
    score vectors and equals ``mask(model, rate)`` up to float rounding.
    """
    if not isinstance(model, ViTCifar):
        raise ReprolibError(f"prune needs a ViTCifar from create_model('vit_cifar'), got {type(model).__name__}")
    p = plan(model, rate)
    blocks = model.blocks
    new_dims = []
    for i, blk in enumerate(blocks):
        ka, km = p.keep.get(f"blocks.{i}.attn"), p.keep.get(f"blocks.{i}.mlp")
        hd = blk.attn.head_dim if ka is None else ka.numel() // blk.attn.heads
        hid = blk.mlp.fc1.out_features if km is None else km.numel()
        new_dims.append((hd, hid))
    arch = dict(model.arch)
    new = type(model)(**arch, block_dims=new_dims).to(next(model.parameters()).device,
                                                      next(model.parameters()).dtype)
    # Everything outside the blocks' pruned linears is copied as is.
    sd_old = model.state_dict()
    sd_new = new.state_dict()
    for k in sd_new:
        if sd_new[k].shape == sd_old[k].shape:
            sd_new[k] = sd_old[k].clone()
    new.load_state_dict(sd_new)
    with torch.no_grad():
        for i, (ob, nb) in enumerate(zip(blocks, new.blocks)):
            a = ob.attn
            idx = p.keep.get(f"blocks.{i}.attn", torch.arange(a.heads * a.head_dim)).to(a.to_q.weight.device)
            s = a.score.weight[idx] if a.score is not None else torch.ones(idx.numel(), device=idx.device)
            for lin in ("to_q", "to_k", "to_v"):
                getattr(nb.attn, lin).weight.copy_(getattr(a, lin).weight[idx] * s[:, None])
            nb.attn.to_out.weight.copy_(a.to_out.weight[:, idx])
            nb.attn.to_out.bias.copy_(a.to_out.bias)
            f = ob.mlp
            idx = p.keep.get(f"blocks.{i}.mlp", torch.arange(f.fc1.out_features)).to(f.fc1.weight.device)
            s = f.score.weight[idx] if f.score is not None else torch.ones(idx.numel(), device=idx.device)
            nb.mlp.fc1.weight.copy_(f.fc1.weight[idx])
            nb.mlp.fc1.bias.copy_(f.fc1.bias[idx])
            nb.mlp.fc2.weight.copy_(f.fc2.weight[:, idx] * s[None, :])
            nb.mlp.fc2.bias.copy_(f.fc2.bias)
    new.train(model.training)
    return new


def save(model: ViTCifar, path) -> None:
    """Save a (pruned / decomposed) ViT as ``{"arch": ..., "state_dict": ...}``; rebuild it
    with :func:`load` (no code book classes, no pickled modules)."""
    torch.save({"arch": model.architecture(), "state_dict": model.state_dict()}, path)


def load(path, map_location="cpu") -> ViTCifar:
    """Rebuild a model written by :func:`save` (architecture from its widths and ranks)."""
    from reprolib.registry import create_model
    ck = torch.load(path, map_location=map_location, weights_only=True)
    arch = dict(ck["arch"])
    model = create_model("vit_cifar", **arch)
    model.load_state_dict(ck["state_dict"])
    return model


# ----------------------------------------------------------------------------------------
# The notebook's experiment pipeline (records through reprolib.results.run_cached).

PAPER = "vtp_svd"


def _train_cfg(cfg, epochs: int, lr: float):
    from reprolib.train import TrainConfig
    return TrainConfig(epochs=epochs, batch_size=cfg.batch_size, optimizer=cfg.optimizer, lr=lr,
                       weight_decay=cfg.weight_decay, schedule="cosine", seed=cfg.seed,
                       progress=False)  # per-epoch numbers go to the records instead


DENSE_KEYS = ("dataset", "image_size", "seed", "model", "attn_scale", "dropout", "batch_size",
              "optimizer", "weight_decay", "pretrain_epochs", "pretrain_lr", "baseline_epochs",
              "baseline_lr")
SPARSE_KEYS = DENSE_KEYS + ("sparsity_epochs", "sparsity_lr", "sparsity", "l1_mode")
STAGE_KEYS = SPARSE_KEYS + ("prune_rate", "finetune_epochs", "finetune_lr")


def patch_cfg(cfg, patch: int):
    """``cfg`` with ``cfg.patch_overrides[patch]`` applied (per-patch model / epochs; the
    same ``cfg`` when the patch size has no overrides)."""
    import dataclasses
    over = dict((getattr(cfg, "patch_overrides", None) or {}).get(patch, {}))
    return dataclasses.replace(cfg, **over) if over else cfg


def _stage_keys(cfg, keys=STAGE_KEYS) -> dict:
    """The config fields a record depends on (``keys``: DENSE_KEYS for the dense baseline,
    SPARSE_KEYS for the L1 phase, STAGE_KEYS for prune + fine-tune)."""
    return {k: getattr(cfg, k) for k in keys}


def _data(cfg):
    from reprolib.data import get_data
    from reprolib.train import resolve_device
    dev = resolve_device(cfg.device)
    return get_data(cfg.dataset, cfg.image_size, cfg.batch_size, device=dev, seed=cfg.seed,
                    root=cfg.data_root)


def _profile(model, cfg) -> dict:
    from reprolib.measure import count_flops, count_params
    return {"params": count_params(model),
            "flops": count_flops(model, (3, cfg.image_size, cfg.image_size))}


def _scored_model(cfg, patch: int, num_classes: int) -> ViTCifar:
    from reprolib.registry import create_model
    model = create_model(cfg.model, patch_size=patch, num_classes=num_classes,
                         dropout=cfg.dropout, emb_dropout=cfg.dropout, attn_scale=cfg.attn_scale)
    return attach_scores(model)


def _stage_file(cfg, patch: int, name: str, keys, fname: str):
    from reprolib.results import record_path
    path = record_path(PAPER, cfg.profile, f"{name}-p{patch}", {**_stage_keys(cfg, keys), "patch_size": patch})
    return path.parent / "ckpt" / path.stem / fname


def _fit_stage(model, d, cfg, patch, ckpt, stage, epochs, lr, l1):
    from reprolib.train import fit
    kw = {}
    if l1 and cfg.l1_mode == "grad":
        kw["grad_hook"] = l1_grad_hook(cfg.sparsity)
    elif l1:
        kw["extra_loss"] = lambda m: l1_penalty(m, cfg.sparsity)
    return fit(model, d, _train_cfg(cfg, epochs, lr), ckpt_dir=ckpt / stage, device=cfg.device,
               desc=f"p{patch} {stage}", **kw)


def dense_record(cfg, patch: int, data=None, force: bool = False) -> dict:
    """Run (or reuse) the dense baseline phase for one patch size (paper section 3.2.1):
    ``cfg.pretrain_epochs`` from scratch at ``cfg.pretrain_lr`` then ``cfg.baseline_epochs``
    at ``cfg.baseline_lr``, no L1, scores attached (all 1 at the start).  Metrics: accuracy
    (%), params, FLOPs, per-stage history; the model is saved as ``dense.pt`` (state dict of
    the scored model) in the record's checkpoint folder."""
    from reprolib.results import run_cached
    from reprolib.train import evaluate
    cfg = patch_cfg(cfg, patch)
    config = {**_stage_keys(cfg, DENSE_KEYS), "patch_size": patch}

    def fn(ckpt):
        d = data or _data(cfg)
        torch.manual_seed(cfg.seed)
        model = _scored_model(cfg, patch, d.num_classes)
        hist, wall = {}, {}
        for stage, ep, lr in (("pretrain", cfg.pretrain_epochs, cfg.pretrain_lr),
                              ("baseline", cfg.baseline_epochs, cfg.baseline_lr)):
            if ep > 0:
                r = _fit_stage(model, d, cfg, patch, ckpt, stage, ep, lr, False)
                hist[stage], wall[stage] = r.history, r.wall_time_s
        ckpt.mkdir(parents=True, exist_ok=True)
        torch.save(model.state_dict(), ckpt / "dense.pt")
        return {"patch_size": patch, "acc": evaluate(model, d.test)["acc"], **_profile(model, cfg),
                "history": hist, "train_wall_s": wall, "train_size": d.train_size}

    return run_cached(PAPER, cfg.profile, f"dense-p{patch}", config, fn, force=force)


def _load_stage(cfg, patch, name, keys, fname, record_fn, data):
    f = _stage_file(cfg, patch, name, keys, fname)
    if not f.exists():
        record_fn(cfg, patch, data, force=True)
    model = _scored_model(cfg, patch, data.num_classes)
    model.load_state_dict(torch.load(f, map_location="cpu", weights_only=True))
    return model


def sparse_record(cfg, patch: int, data=None, force: bool = False) -> dict:
    """Run (or reuse) the sparsity phase (section 3.2.2): the dense baseline of
    :func:`dense_record` trained ``cfg.sparsity_epochs`` at ``cfg.sparsity_lr`` with the L1
    term ``cfg.sparsity`` on the scores.  Metrics: accuracy (%), the scores, history; the
    model is saved as ``sparse.pt``."""
    from reprolib.results import run_cached
    from reprolib.train import evaluate
    cfg = patch_cfg(cfg, patch)
    config = {**_stage_keys(cfg, SPARSE_KEYS), "patch_size": patch}

    def fn(ckpt):
        d = data or _data(cfg)
        dense_record(cfg, patch, d)
        model = _load_stage(cfg, patch, "dense", DENSE_KEYS, "dense.pt", dense_record, d)
        torch.manual_seed(cfg.seed)
        hist, wall = {}, {}
        if cfg.sparsity_epochs > 0:
            r = _fit_stage(model, d, cfg, patch, ckpt, "sparsity", cfg.sparsity_epochs, cfg.sparsity_lr, True)
            hist["sparsity"], wall["sparsity"] = r.history, r.wall_time_s
        ckpt.mkdir(parents=True, exist_ok=True)
        torch.save(model.state_dict(), ckpt / "sparse.pt")
        return {"patch_size": patch, "acc": evaluate(model, d.test)["acc"], **_profile(model, cfg),
                "scores": [s.detach().cpu().tolist() for s in score_parameters(model)],
                "history": hist, "train_wall_s": wall}

    return run_cached(PAPER, cfg.profile, f"sparse-p{patch}", config, fn, force=force)


def vtp_record(cfg, patch: int, data=None, force: bool = False) -> dict:
    """Run (or reuse) VTP's prune + fine-tune for one patch size, on the model of
    :func:`sparse_record` (which runs / reuses :func:`dense_record`): prune at
    ``cfg.prune_rate`` (fraction of all scores), fine-tune ``cfg.finetune_epochs`` at
    ``cfg.finetune_lr`` without L1.

    ``cfg``: a ``VtpSvdConfig``; ``patch``: ViT patch size; ``data``: loaders (built from
    ``cfg`` when None).  Metrics: accuracies (%) of the dense baseline, of the model after
    the L1 phase (``acc_sparse``), the pruned model before and after fine-tuning, params and
    FLOPs (1 MAC = 1 FLOP, batch 1) of the dense and pruned models, the kept widths, the
    per-phase histories (dense and sparsity ones copied from their records).  The pruned
    model is saved as ``vtp_pruned.pt`` for the decomposition runs.
    """
    from reprolib.results import run_cached
    from reprolib.train import evaluate, fit
    cfg = patch_cfg(cfg, patch)
    config = {**_stage_keys(cfg), "patch_size": patch}

    def fn(ckpt: "Path") -> dict:
        d = data or _data(cfg)
        dr = dense_record(cfg, patch, d)["metrics"]
        sr = sparse_record(cfg, patch, d)["metrics"]
        model = _load_stage(cfg, patch, "sparse", SPARSE_KEYS, "sparse.pt", sparse_record, d)
        hist = {**dr["history"], **sr["history"]}
        wall = {**dr["train_wall_s"], **sr["train_wall_s"]}
        p = plan(model, cfg.prune_rate)
        pruned = prune(model, cfg.prune_rate)
        acc0 = evaluate(pruned, d.test)["acc"]
        torch.manual_seed(cfg.seed)
        r = fit(pruned, d, _train_cfg(cfg, cfg.finetune_epochs, cfg.finetune_lr),
                ckpt_dir=ckpt / "finetune", device=cfg.device, desc=f"p{patch} finetune")
        hist["finetune"], wall["finetune"] = r.history, r.wall_time_s
        ckpt.mkdir(parents=True, exist_ok=True)
        save(pruned, ckpt / "vtp_pruned.pt")
        return {"patch_size": patch, "acc_dense": dr["acc"], "acc_sparse": sr["acc"],
                "params_dense": dr["params"], "flops_dense": dr["flops"], "acc_pruned_no_ft": acc0,
                "acc": evaluate(pruned, d.test)["acc"], **_profile(pruned, cfg),
                "block_dims": pruned.architecture()["block_dims"], "threshold": p.threshold,
                "kept_fraction": p.kept_fraction, "scores": sr["scores"], "history": hist,
                "train_wall_s": wall, "train_size": d.train_size, "test_size": d.test_size}

    return run_cached(PAPER, cfg.profile, f"vtp-p{patch}", config, fn, force=force)


def _pruned_model(cfg, patch: int, data=None) -> ViTCifar:
    """The fine-tuned pruned model of ``vtp_record`` (recomputed when its file is gone)."""
    from reprolib.results import record_path
    cfg = patch_cfg(cfg, patch)
    config = {**_stage_keys(cfg), "patch_size": patch}
    path = record_path(PAPER, cfg.profile, f"vtp-p{patch}", config)
    f = path.parent / "ckpt" / path.stem / "vtp_pruned.pt"
    if not f.exists():
        vtp_record(cfg, patch, data, force=True)
    return load(f, map_location="cpu")


def decomposed_record(cfg, patch: int, method: str, rank_ratio: float, finetune_epochs: int,
                      data=None, force: bool = False) -> dict:
    """Run (or reuse) VTP + decomposition: factor every pruned linear layer of the VTP model
    with ``method`` at ``rank_ratio`` (fraction of min(out, in)), fine-tune
    ``finetune_epochs`` epochs; metrics: accuracy before / after, params, FLOPs, ranks."""
    from reprolib.methods.decompose import current_ranks, decompose_model
    from reprolib.results import run_cached
    from reprolib.train import evaluate, fit

    cfg = patch_cfg(cfg, patch)
    config = {**_stage_keys(cfg), "patch_size": patch, "method": method,
              "rank_ratio": float(rank_ratio), "decompose_finetune_epochs": finetune_epochs,
              "decompose_lr": cfg.decompose_lr}

    def fn(ckpt):
        d = data or _data(cfg)
        base = _pruned_model(cfg, patch, d)
        model = decompose_model(base, method, rank_ratio)
        acc0 = evaluate(model, d.test)["acc"]
        wall, hist = 0.0, []
        if finetune_epochs > 0:
            torch.manual_seed(cfg.seed)
            r = fit(model, d, _train_cfg(cfg, finetune_epochs, cfg.decompose_lr),
                    ckpt_dir=ckpt / "finetune", device=cfg.device, desc=f"p{patch} {method}")
            wall, hist = r.wall_time_s, r.history
        return {"patch_size": patch, "method": method, "rank_ratio": float(rank_ratio),
                "finetune_epochs": finetune_epochs, "acc_no_ft": acc0,
                "acc": evaluate(model, d.test)["acc"], **_profile(model, cfg),
                "ranks": current_ranks(model), "train_wall_s": wall, "history": hist}

    name = f"decomp-p{patch}-{method}-r{rank_ratio:g}-ft{finetune_epochs}"
    return run_cached(PAPER, cfg.profile, name, config, fn, force=force)


def analysis_record(cfg, patch: int, data=None, force: bool = False) -> dict:
    """Matrix-level measurements on the pruned layers of the VTP model (patch ``patch``):
    reconstruction error vs rank for every method (``decompose.error_curve`` over
    ``cfg.sweep_ratios`` plus full rank) and Table 1's least-squares merits
    (``decompose.lstsq_merits`` in float32 and float64, ``cfg.merits_repeats`` timed repeats)."""
    from reprolib.methods.decompose import error_curve, lstsq_merits, target_layers
    from reprolib.results import run_cached

    cfg = patch_cfg(cfg, patch)
    config = {**_stage_keys(cfg), "patch_size": patch, "sweep_ratios": list(cfg.sweep_ratios),
              "merits_repeats": cfg.merits_repeats, "kind": "analysis"}

    def fn(ckpt):
        model = _pruned_model(cfg, patch, data)
        ratios = sorted({*map(float, cfg.sweep_ratios), 1.0})
        mats = {n: l.weight for n, l in target_layers(model)}
        merits = []
        for dt in ("float32", "float64"):
            merits += lstsq_merits(mats, dtype=dt, repeats=cfg.merits_repeats, seed=cfg.seed)
        return {"patch_size": patch, "errors": error_curve(model, ratios), "merits": merits,
                "blas_threads": torch.get_num_threads()}

    return run_cached(PAPER, cfg.profile, f"analysis-p{patch}", config, fn, force=force)


def run_all(cfg, force: bool = False) -> None:
    """Every record the notebook reads: VTP per patch size, Table 2's decompositions, the
    rank sweep and the matrix analysis at ``cfg.sweep_patch``."""
    data = None
    for patch in cfg.patch_sizes:
        data = data or _data(cfg)
        dense_record(cfg, patch, data, force)
        sparse_record(cfg, patch, data, force)
        vtp_record(cfg, patch, data, force)
        for m in cfg.methods:
            decomposed_record(cfg, patch, m, cfg.rank_ratio, cfg.decompose_finetune_epochs, data, force)
    if cfg.sweep_patch in cfg.patch_sizes:
        for m in cfg.sweep_methods:
            for r in cfg.sweep_ratios:
                decomposed_record(cfg, cfg.sweep_patch, m, r, cfg.sweep_finetune_epochs, data, force)
        analysis_record(cfg, cfg.sweep_patch, data, force)


# ----------------------------------------------------------------------------------------
# Tables of the notebook, built from the results records (never typed by hand).

def _records(cfg):
    from reprolib.results import load_records
    out = []
    for r in load_records(PAPER, cfg.profile):
        c = r["config"]
        keys = _stage_keys(patch_cfg(cfg, c.get("patch_size")))
        if all(c[k] == v for k, v in keys.items() if k in c and not isinstance(v, tuple)):
            out.append(r)
    return out


def _epoch_seconds(history: list[dict]) -> float:
    """Training wall time of a stage: the sum of its epochs' ``time_s`` (kept across resumes)."""
    return float(sum(h.get("time_s", 0.0) for h in history))


def table2(cfg):
    """Table 2 in long form: one row per (patch, model) with our accuracy (%), the paper's,
    params, FLOPs (1 MAC = 1 FLOP, one 32x32 image), the cumulative training epochs behind
    the model and their wall time (s, training epochs incl. their test evaluation)."""
    import pandas as pd

    from reprolib.configs.vtp_svd import PAPER_TABLE2, TABLE2_METHODS
    recs = _records(cfg)
    rows = []
    for patch in cfg.patch_sizes:
        v = [r for r in recs if r["name"] == f"vtp-p{patch}"]
        if not v:
            continue
        m = v[0]["metrics"]
        paper = PAPER_TABLE2.get(patch, {})
        pc = patch_cfg(cfg, patch)
        train_ep = pc.pretrain_epochs + pc.baseline_epochs + pc.sparsity_epochs
        phases = f"{pc.pretrain_epochs + pc.baseline_epochs}+{pc.sparsity_epochs}"
        wall_dense = sum(_epoch_seconds(m["history"].get(k, [])) for k in ("pretrain", "baseline", "sparsity"))
        wall_vtp = wall_dense + _epoch_seconds(m["history"].get("finetune", []))
        arch = pc.model
        if "acc_sparse" in m:
            rows.append({"patch": patch, "model": "ViT (dense baseline)", "acc": m["acc_dense"],
                         "acc_paper": float("nan"), "params": m["params_dense"], "flops": m["flops_dense"],
                         "epochs": pc.pretrain_epochs + pc.baseline_epochs,
                         "phases": f"{pc.pretrain_epochs + pc.baseline_epochs}", "arch": arch,
                         "wall_s": sum(_epoch_seconds(m["history"].get(k, [])) for k in ("pretrain", "baseline"))})
        rows.append({"patch": patch, "model": "ViT (after L1, before pruning)",
                     "acc": m.get("acc_sparse", m["acc_dense"]),
                     "acc_paper": float("nan"), "params": m["params_dense"], "flops": m["flops_dense"],
                     "epochs": train_ep, "phases": phases, "arch": arch, "wall_s": wall_dense})
        rows.append({"patch": patch, "model": "VTP", "acc": m["acc"], "acc_paper": paper.get("VTP", float("nan")),
                     "params": m["params"], "flops": m["flops"],
                     "epochs": train_ep + pc.finetune_epochs, "phases": f"{phases}+{pc.finetune_epochs}",
                     "arch": arch, "wall_s": wall_vtp})
        for col, meth in TABLE2_METHODS.items():
            if meth not in cfg.methods:
                continue
            d = [r for r in recs if r["config"].get("patch_size") == patch
                 and r["config"].get("method") == meth
                 and r["config"].get("rank_ratio") == cfg.rank_ratio
                 and r["config"].get("decompose_finetune_epochs") == cfg.decompose_finetune_epochs]
            if not d:
                continue
            dm = d[0]["metrics"]
            rows.append({"patch": patch, "model": col, "acc": dm["acc"],
                         "acc_paper": paper.get(col, float("nan")), "params": dm["params"],
                         "flops": dm["flops"],
                         "epochs": train_ep + pc.finetune_epochs + pc.decompose_finetune_epochs,
                         "phases": f"{phases}+{pc.finetune_epochs}+{pc.decompose_finetune_epochs}",
                         "arch": arch, "wall_s": wall_vtp + _epoch_seconds(dm["history"])})
    return pd.DataFrame(rows)


def table2_wide(long):
    """Table 2's own layout: rows = patch sizes, columns = VTP / VTP+SVD / VTP+QR / VTP+LU,
    cells "ours (paper)" accuracy in %."""
    import pandas as pd
    cols = ["VTP", "VTP+SVD", "VTP+QR", "VTP+LU"]
    out = []
    for patch, g in long.groupby("patch", sort=True):
        row = {"patch": f"ViT patch={patch}"}
        if "arch" in g:
            dec = g[g["model"].isin(cols[1:])]
            row["model"] = g["arch"].iloc[0]
            row["epochs (dense+L1+ft+dec-ft)"] = dec["phases"].iloc[0] if len(dec) else g["phases"].iloc[-1]
        for c in cols:
            hit = g[g["model"] == c]
            if len(hit):
                a, p = hit["acc"].iloc[0], hit["acc_paper"].iloc[0]
                row[c] = f"{a:.1f} ({p:.1f})"
        out.append(row)
    extra = [c for c in ("model", "epochs (dense+L1+ft+dec-ft)") if any(c in r for r in out)]
    return pd.DataFrame(out, columns=["patch", *extra, *cols])


def phase_note(cfg) -> str:
    """One line for captions: the epochs of each phase (dense baseline, L1, fine-tune after
    pruning, fine-tune after decomposition) and the model, per patch size where
    ``cfg.patch_overrides`` makes them differ."""
    def one(c):
        return (f"{c.model}: dense baseline {c.pretrain_epochs + c.baseline_epochs} ep, L1 "
                f"{c.sparsity_epochs} ep, fine-tune {c.finetune_epochs} ep, decomposition "
                f"fine-tune {c.decompose_finetune_epochs} ep")
    base = [p for p in cfg.patch_sizes if p not in (cfg.patch_overrides or {})]
    parts = [f"patch {', '.join(map(str, base))}: {one(cfg)}"] if base else []
    parts += [f"patch {p}: {one(patch_cfg(cfg, p))}" for p in cfg.patch_sizes if p in (cfg.patch_overrides or {})]
    return "; ".join(parts)


def sweep_table(cfg):
    """Accuracy vs params over ranks (patch ``cfg.sweep_patch``): one row per (method,
    rank_ratio) from the sweep records, plus the VTP model itself (rank_ratio 1, method "VTP")."""
    import pandas as pd
    recs = _records(cfg)
    rows = []
    for r in recs:
        c = r["config"]
        if (c.get("patch_size") == cfg.sweep_patch and "method" in c
                and c.get("decompose_finetune_epochs") == cfg.sweep_finetune_epochs
                and c.get("rank_ratio") in [float(x) for x in cfg.sweep_ratios]):
            m = r["metrics"]
            rows.append({"method": m["method"], "rank_ratio": m["rank_ratio"], "acc": m["acc"],
                         "params": m["params"], "flops": m["flops"]})
    return pd.DataFrame(rows).sort_values(["method", "rank_ratio"]).reset_index(drop=True) if rows else pd.DataFrame(rows)


def _analysis(cfg):
    recs = [r for r in _records(cfg) if r["name"] == f"analysis-p{cfg.sweep_patch}"]
    return recs[0]["metrics"] if recs else None


def error_table(cfg):
    """Relative Frobenius reconstruction error ||W - A B||_F / ||W||_F per (method,
    rank_ratio): mean and max over the pruned layers of the VTP model."""
    import pandas as pd
    a = _analysis(cfg)
    if a is None:
        return pd.DataFrame()
    df = pd.DataFrame(a["errors"])
    return (df.groupby(["method", "rank_ratio"])["rel_fro"].agg(["mean", "max"])
            .rename(columns={"mean": "rel_fro_mean", "max": "rel_fro_max"}).reset_index())


def merits_table(cfg):
    """Table 1 measured: least squares via normal equations / QR / SVD on the pruned layer
    matrices.  Per (dtype, solver): median and max forward error ||x - x*|| / ||x*||, median
    relative residual, total median wall time (ms) over the layers, and the median and max
    2-norm condition number of the matrices."""
    import pandas as pd
    a = _analysis(cfg)
    if a is None:
        return pd.DataFrame()
    df = pd.DataFrame(a["merits"])
    order = {"normal_equations": 0, "qr": 1, "svd": 2}
    g = df.groupby(["dtype", "solver"]).agg(
        layers=("matrix", "count"), rel_error_median=("rel_error", "median"),
        rel_error_max=("rel_error", "max"), rel_residual_median=("rel_residual", "median"),
        time_ms_total=("time_ms", "sum"), cond_median=("cond", "median"),
        cond_max=("cond", "max")).reset_index()
    g["_o"] = g["solver"].map(order)
    return g.sort_values(["dtype", "_o"]).drop(columns="_o").reset_index(drop=True)


def identity_record(cfg, patch: int, data=None, force: bool = False) -> dict:
    """Full-rank identity of every decomposition on the real pruned layers of the VTP model
    (``decompose.full_rank_identity``): max abs output difference per (layer, method)."""
    from reprolib.methods.decompose import full_rank_identity
    from reprolib.results import run_cached
    cfg = patch_cfg(cfg, patch)
    config = {**_stage_keys(cfg), "patch_size": patch, "kind": "identity"}

    def fn(ckpt):
        rows = full_rank_identity(_pruned_model(cfg, patch, data))
        return {"patch_size": patch, "identity": rows}

    return run_cached(PAPER, cfg.profile, f"identity-p{patch}", config, fn, force=force)


def identity_table(cfg):
    """Per method: layers checked and the largest max-abs output difference at full rank."""
    import pandas as pd
    recs = [r for r in _records(cfg) if r["name"] == f"identity-p{cfg.sweep_patch}"]
    if not recs:
        return pd.DataFrame()
    df = pd.DataFrame(recs[0]["metrics"]["identity"])
    return df.groupby("method", sort=False).agg(layers=("layer", "count"),
                                                max_abs_diff=("max_abs_diff", "max")).reset_index()


def run_notebook_records(cfg, force: bool = False) -> None:
    """``run_all`` plus the full-rank identity record (everything the notebook reads)."""
    run_all(cfg, force)
    if cfg.sweep_patch in cfg.patch_sizes:
        identity_record(cfg, cfg.sweep_patch, None, force)


# ----------------------------------------------------------------------------------------
# Plots (titles carry the provenance line passed in).

def plot_sweep(sweep, vtp_point=None, title: str = ""):
    """Accuracy vs params over ranks, one curve per decomposition (marker + dash style per
    method, so coinciding curves stay visible); ``vtp_point`` = (params, acc) of the pruned
    model before decomposition, drawn as a black star with dashed reference lines."""
    import matplotlib.pyplot as plt
    import seaborn as sns
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    df = sweep.assign(params_k=sweep["params"] / 1e3).sort_values(["method", "params_k"])
    if len(df):
        sns.lineplot(data=df, x="params_k", y="acc", hue="method", style="method", markers=True,
                     dashes=True, ax=ax, sort=False, errorbar=None, markersize=7)
    if vtp_point is not None:
        ax.scatter([vtp_point[0] / 1e3], [vtp_point[1]], marker="*", s=120, color="black",
                   zorder=5, label="VTP (not decomposed)")
        ax.axvline(vtp_point[0] / 1e3, ls="--", lw=0.8, color="grey")
        ax.axhline(vtp_point[1], ls="--", lw=0.8, color="grey")
    ax.set_xlabel("parameters (thousands)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return fig


def plot_errors(errors, title: str = ""):
    """Mean relative Frobenius reconstruction error of the pruned layers vs rank ratio."""
    import matplotlib.pyplot as plt
    import seaborn as sns
    fig, ax = plt.subplots(figsize=(6, 4.2))
    df = errors[errors["rank_ratio"] < 1.0]
    sns.lineplot(data=df, x="rank_ratio", y="rel_fro_mean", hue="method", style="method",
                 markers=True, dashes=True, ax=ax, markersize=7)
    ax.set_xlabel("rank / min(out, in)")
    ax.set_ylabel("mean ||W - AB||_F / ||W||_F over pruned layers")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    return fig
