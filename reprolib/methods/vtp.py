"""Vision Transformer Pruning (VTP) with learnable importance scores, physically.

Paper: Tianyi Sun, "Vision Transformer Pruning Via Matrix Decomposition"
(``../shared/papers/vtp_svd.md``), section 2.2, after Zhu, Tang and Han, "Vision Transformer
Pruning" (2021).  Importance scores a (init 1) multiply features, X* = X Diag(a); training
adds the L1 term lambda ||a||_1 (lambda = 1e-4, section 3.2.2; ``strength`` here); a single
threshold tau over *all* scores, set by the pruning rate, gives a* = 1 if |a| >= tau else 0;
features with a* = 0 are removed and the network is fine-tuned without the L1 term (3.2.3).

    model = attach_scores(create_model("vit_cifar", patch_size=4))   # scores all 1
    fit(model, data, recipe, grad_hook=l1_grad_hook(1e-4))           # L1 sparsity phase
    small = prune(model, 0.3)                                        # a smaller ViT
    reprolib.save_compressed(small, "vtp_p4")                        # widths as data

Where the scores sit (as in the code book Cydia2018/ViT-cifar10-pruning, ``models/vit.py``):

* attention: one vector of length ``heads * head_dim`` multiplying q, k and v alike;
* MLP: one vector of length ``mlp_hidden`` multiplying the hidden layer after fc1 + GELU.

Pruning is physical: q/k/v rows, output-projection columns, fc1 rows and fc2 columns are cut
and the surviving scores are folded into the weights (q, k, v rows times a; fc2 columns
times a), so the pruned model has no score vectors and computes exactly what the masked
model (scores of removed features set to 0) computes.  The attention scale is a constant of
the model and is not recomputed.  The pruned model's spec is builder ``"vit_cifar"`` with
its full architecture (``block_dims`` = kept (head_dim, mlp_hidden) per block), so
``reprolib.save_compressed`` / ``load_compressed`` rebuild it; a scored model records the
arch step ``"vtp_scores"`` so it round-trips too.

Attention heads keep equal widths and their boundaries: the global threshold fixes how many
attention dims survive in a layer, k; that count is rounded to ``heads * round(k / heads)``
(at least one per head), and each head keeps its own ``k / heads`` dims of largest |a|.
The code book (``vitprune.py``) instead lowers the threshold of each attention layer in
steps of 1e-4 until the kept count is a multiple of the head count (8; an earlier version
with a fused qkv projection used 3 * heads = 24), keeps the dims with |a| > threshold
wherever they are, and builds the slim model with those channels split evenly over the 8
heads, which moves head boundaries, with the logit scale recomputed from the kept width
and the kept scores dropped rather than folded in; so its pruned model does not compute
what its masked model computes.  That is not reproduced.

The L1 term is offered both ways: ``l1_grad_hook`` adds lambda * sign(a) to the score
gradients after ``backward`` (the code book's ``sparse_selection``) and ``l1_penalty``
returns lambda * sum |a| as a loss term; the tests check that both give the same gradients.
The pipeline uses the hook (``VtpSvdConfig.l1_mode = "grad"``).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn as nn

from reprolib.core.compressed import add_arch, register_arch
from reprolib.errors import ReprolibError, check_number
from reprolib.methods import round_width
from reprolib.models.layers.lowrank import current_ranks
from reprolib.models.vit_cifar import Attention, FeedForward, Score, ViTCifar
from reprolib.core.registry import set_spec


def attach_scores(model: nn.Module) -> nn.Module:
    """Put an importance-score vector (all ones) on every attention and MLP of ``model``.

    ``model``: a ViT from ``create_model("vit_cifar" | "test_vit_cifar" | ...)``, changed in
    place and returned.  Layers that already carry scores keep them.  The output is unchanged
    (scores start at 1).  A model built by ``create_model`` records the arch step
    ``"vtp_scores"``, so ``reprolib.save_compressed`` / ``load_compressed`` keep its scores.
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
    if getattr(model, "reprolib_spec", None) is not None:  # save_compressed rebuilds the scores
        add_arch(model, "vtp_scores", replace=True)
    return model


@register_arch("vtp_scores")
def _redo_scores(model: nn.Module, step: dict) -> nn.Module:
    """Arch step ``{"kind": "vtp_scores"}``: score vectors on every attention and MLP."""
    return attach_scores(model)


def score_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(name, Attention | FeedForward)`` of every layer carrying scores, in module order."""
    return [(n, m) for n, m in model.named_modules()
            if isinstance(m, (Attention, FeedForward)) and m.score is not None]


def scores(model: nn.Module) -> dict[str, nn.Parameter]:
    """The score vectors of a scored model, by layer name (``"blocks.0.attn"``,
    ``"blocks.0.mlp"``, ...), in model order.  Empty for an unscored model."""
    return {n: m.score.weight for n, m in score_modules(model)}


def score_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The score vectors of ``model`` as a list (``list(scores(model).values())``)."""
    return list(scores(model).values())


def l1_penalty(model: nn.Module, strength: float = 1e-4) -> torch.Tensor:
    """``strength * sum |a|`` over all score vectors: the L1 term as a loss.

    ``strength``: the L1 weight lambda (default 1e-4, section 3.2.2).  Use as
    ``fit(..., extra_loss=lambda m: l1_penalty(m, 1e-4))``.
    """
    ps = score_parameters(model)
    if not ps:
        return torch.zeros(())
    return strength * sum(p.abs().sum() for p in ps)


def l1_grad_hook(strength: float = 1e-4) -> Callable[[nn.Module], None]:
    """The code book's way (``sparse_selection`` in its ``train_cifar10.py``): after
    ``backward``, add ``strength * sign(a)`` to each score gradient.

    ``strength``: the L1 weight lambda (default 1e-4).  Use as
    ``fit(..., grad_hook=l1_grad_hook(1e-4))``; same gradients as :func:`l1_penalty`.
    """

    def hook(model: nn.Module) -> None:
        for p in score_parameters(model):
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            p.grad.add_(strength * torch.sign(p.detach()))

    return hook


@dataclass
class PrunePlan:
    """What survives a pruning rate: sorted kept indices per scored layer."""

    rate: float                                   # requested fraction of all scores removed
    threshold: float                              # |a| of the smallest globally kept score
    keep: dict[str, torch.Tensor] = field(default_factory=dict)  # layer name -> kept indices
    kept_fraction: float = 1.0                    # kept scores / all scores after head rounding
    round_to: int = 1                             # kept widths rounded to multiples of this


def plan(model: nn.Module, rate: float, round_to: int = 1) -> PrunePlan:
    """Choose the kept features for pruning ``rate`` of all scores (global threshold).

    ``rate``: fraction of all score entries (attention and MLP together) to remove, in
    [0, 1).  The ``round(rate * total)`` scores of smallest |a| are removed (ties broken by
    position); attention layers are then rounded to equal per-head widths (module docstring).
    ``round_to``: the kept width per head and of every MLP is then rounded to the nearest
    multiple of ``round_to`` (``reprolib.methods.round_width``), keeping the entries of
    largest |a|; 1 (default) = the paper's rule, 8 = hardware-aligned widths.
    """
    check_number("rate", rate, 0.0, 1.0, hi_open=True)
    round_width(1, 1, round_to)               # validates round_to before any work
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
    out = PrunePlan(rate=rate, threshold=threshold, round_to=round_to)
    start, kept_total = 0, 0
    for (name, m), v in zip(mods, vals):
        rem = removed[start:start + v.numel()]
        start += v.numel()
        k = int((~rem).sum())
        if isinstance(m, Attention):
            per_head = min(m.head_dim, max(1, int(round(k / m.heads))))
            per_head = round_width(per_head, m.head_dim, round_to)
            heads = v.reshape(m.heads, m.head_dim)
            idx = [h * m.head_dim + torch.sort(torch.argsort(heads[h], descending=True, stable=True)[:per_head]).values
                   for h in range(m.heads)]
            keep = torch.cat(idx)
        else:
            keep = torch.nonzero(~rem).flatten()
            if keep.numel() == 0:
                keep = torch.argmax(v).reshape(1)
            k = round_width(keep.numel(), v.numel(), round_to)
            if k != keep.numel():
                keep = torch.sort(torch.argsort(v, descending=True, stable=True)[:k]).values
        out.keep[name] = keep
        kept_total += keep.numel()
    out.kept_fraction = kept_total / allv.numel()
    return out


def mask(model: nn.Module, rate: float, round_to: int = 1) -> nn.Module:
    """A copy of ``model`` with the scores of the features ``plan(model, rate, round_to)``
    removes set to 0 (the masked model of section 2.2: same size, same tensors)."""
    p = plan(model, rate, round_to)
    new = copy.deepcopy(model)
    if not score_modules(new):
        attach_scores(new)
    for name, m in score_modules(new):
        keep = torch.zeros_like(m.score.weight, dtype=torch.bool)
        keep[p.keep[name].to(keep.device)] = True
        with torch.no_grad():
            m.score.weight.mul_(keep.to(m.score.weight.dtype))
    return new


def prune(model: nn.Module, rate: float, round_to: int = 1) -> ViTCifar:
    """Physically prune ``model`` at ``rate``; returns a new, smaller ViT (input untouched).

    ``model``: a ``ViTCifar`` with scores (``attach_scores``, then sparsity training); a
    model without scores is treated as having all scores 1.
    ``rate``: fraction of all importance scores (attention + MLP, one global threshold) to
    remove, in [0, 1).  ``round_to``: kept dims per head and MLP widths rounded to a
    multiple of this (default 1 = the paper's rule; 8 = hardware-aligned widths, see
    :func:`plan`).  Surviving scores are folded into the weights, so the result has no
    score vectors and equals ``mask(model, rate)`` up to float rounding.  Its
    ``reprolib_spec`` is builder ``"vit_cifar"`` with the full architecture (``block_dims``:
    kept ``(head_dim, mlp_hidden)`` per block), for ``reprolib.save_compressed``.
    """
    if not isinstance(model, ViTCifar):
        raise ReprolibError(f"prune needs a ViTCifar from create_model('vit_cifar'), got {type(model).__name__}")
    if current_ranks(model):
        raise ReprolibError("prune a ViT before decomposing it: this one has low-rank layers "
                            f"({', '.join(list(current_ranks(model))[:3])}, ...)")
    p = plan(model, rate, round_to)
    blocks = model.blocks
    new_dims = []
    for i, blk in enumerate(blocks):
        ka, km = p.keep.get(f"blocks.{i}.attn"), p.keep.get(f"blocks.{i}.mlp")
        hd = blk.attn.head_dim if ka is None else ka.numel() // blk.attn.heads
        hid = blk.mlp.fc1.out_features if km is None else km.numel()
        new_dims.append((hd, hid))
    kwargs = {**model.arch, "block_dims": [list(d) for d in new_dims]}
    new = type(model)(**kwargs).to(next(model.parameters()).device, next(model.parameters()).dtype)
    set_spec(new, "vit_cifar", kwargs)  # create_model("vit_cifar", **kwargs) rebuilds it
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
