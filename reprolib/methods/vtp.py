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
