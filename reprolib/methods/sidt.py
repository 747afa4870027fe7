"""SiDT: dimension search and physical pruning of Swin Transformers.

Xue, Yang, Qi, Xin, "Searching Intrinsic Dimensions of Vision Transformers"
(../shared/papers/sidt.md), section 3.

Architecture parameters (section 3, "Architecture parameters"):

* W-MSA: one diagonal scoring matrix ``A = diag(alpha)``, ``alpha`` of length ``d/h`` (the
  head dimension), per attention layer, uniform over query, key, value, over all heads and
  all windows:  ``Q~_{k,l} = Q_{k,l} A,  K~_{k,l} = K_{k,l} A,  V~_{k,l} = V_{k,l} A``;
  the attention keeps the softmax scale ``1/sqrt(d/h)`` of the unpruned head dimension.
* MLP: one score vector over the ``d_m`` hidden units, applied right after ``W_1``:
  ``MLP(X) = g(X W_1 A) W_2``.

Search (the loss ``L = l(X, T; W) + gamma * l1(A)``): :func:`l1_penalty` is added to the task
loss and the scores are trained with the weights.  Pruning: rank ``|alpha|`` (over all layers,
``scope="global"``, or within each layer, ``scope="layer"``), remove the fraction ``ratio`` of
the dimensions with the lowest scores (the paper's remaining ratio is ``rho = 1 - ratio``) and
physically rebuild every layer: ``qkv`` loses the same head-dimension indices in every head of
Q, K and V, ``proj`` loses the matching input columns, ``fc1`` rows / ``fc2`` columns go with
the MLP scores.  The kept scores are folded into the weights, so the pruned model computes
exactly what the scored model computed on the kept dimensions.

Complexity (section 3), in multiply-adds, for ``n`` tokens of dimension ``d``, window ``M x M``
and MLP width ``d_m``:  W-MSA ``4 n d d_a + 2 n M^2 d_a`` with ``d_a = rho d`` kept attention
channels (``rho = 1``: ``4 n d^2 + 2 n M^2 d``);  MLP ``2 n d d_m'`` with ``d_m' = rho d_m``.
:func:`layer_complexity` measures these per layer and prints them beside the closed forms.

    model = reprolib.create_model("swin_tiny_test")
    attach_scores(model)                        # alpha = 1: model computes what it did before
    fit(model, data, cfg, extra_loss=lambda m: l1_penalty(m, 1e-4))
    small = prune(model, 0.4)                   # 40 % of the dimensions removed
    save(small, "runs/sidt/p40")                # p40.json (kept dims) + p40.pt (state_dict)
    small = load("runs/sidt/p40")
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import Mlp
from timm.models.swin_transformer import SwinTransformer, SwinTransformerBlock, WindowAttention

from reprolib.errors import ReprolibError, check_range, choose
from reprolib.io import load_json, load_torch

SCOPES = ("global", "layer")


# --------------------------------------------------------------------------- modules


class SiDTWindowAttention(WindowAttention):
    """timm's ``WindowAttention`` with (a) an optional score vector ``alpha`` over the head
    dimension that multiplies Q, K and V of every head and window, and (b) an explicit softmax
    ``scale`` (the unpruned ``head_dim ** -0.5``) kept when the head dimension shrinks.

    The relative position bias table (one entry per head) is unchanged by pruning.
    """

    def __init__(self, dim: int, num_heads: int, head_dim: int, window_size, *,
                 scale: float, qkv_bias: bool = True, attn_drop: float = 0.0,
                 proj_drop: float = 0.0, scored: bool = False, orig_head_dim: int | None = None):
        super().__init__(dim, num_heads=num_heads, head_dim=head_dim, window_size=window_size,
                         qkv_bias=qkv_bias, attn_drop=attn_drop, proj_drop=proj_drop)
        self.head_dim = head_dim                          # kept dimensions per head
        self.orig_head_dim = orig_head_dim or head_dim    # head dimension before pruning
        self.scale = scale                                # softmax scale of the unpruned model
        self.alpha = nn.Parameter(torch.ones(head_dim)) if scored else None

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        B_, N, _ = x.shape
        qkv = self.qkv(x).reshape(B_, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        if self.alpha is not None:
            qkv = qkv * self.alpha            # Q A, K A, V A for every head and window
        q, k, v = qkv.unbind(0)
        bias = self._get_rel_pos_bias()
        if mask is not None:
            nw = mask.shape[0]
            bias = (bias.unsqueeze(1) + mask.unsqueeze(1).unsqueeze(0))  # 1, nW, nH, N, N
            bias = bias.expand(B_ // nw, -1, -1, -1, -1).reshape(-1, self.num_heads, N, N)
        if self.fused_attn:
            x = F.scaled_dot_product_attention(
                q, k, v, attn_mask=bias, dropout_p=self.attn_drop.p if self.training else 0.0,
                scale=self.scale)
        else:
            attn = (q * self.scale) @ k.transpose(-2, -1) + bias
            attn = self.attn_drop(attn.softmax(dim=-1))
            x = attn @ v
        x = x.transpose(1, 2).reshape(B_, N, -1)
        return self.proj_drop(self.proj(x))

    def extra_repr(self) -> str:
        return (f"heads={self.num_heads}, head_dim={self.head_dim}/{self.orig_head_dim}, "
                f"scale={self.scale:.4g}, scored={self.alpha is not None}")


class SiDTMlp(Mlp):
    """timm's ``Mlp`` with an optional score vector over the hidden units, applied right after
    ``fc1`` (``g(X W_1 A) W_2``, SiDT section 3)."""

    def __init__(self, in_features: int, hidden_features: int, out_features: int, *,
                 act_layer=nn.GELU, drop: float = 0.0, bias: bool = True, scored: bool = False):
        super().__init__(in_features, hidden_features, out_features, act_layer=act_layer,
                         drop=drop, bias=bias)
        self.alpha = nn.Parameter(torch.ones(hidden_features)) if scored else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.fc1(x)
        if self.alpha is not None:
            x = x * self.alpha
        x = self.drop1(self.act(x))
        return self.drop2(self.fc2(self.norm(x)))


def _blocks(model: nn.Module):
    return [(n, m) for n, m in model.named_modules() if isinstance(m, SwinTransformerBlock)]


def _check_swin(model: nn.Module) -> None:
    if not _blocks(model):
        raise ReprolibError(f"SiDT needs a timm SwinTransformer (or a module holding "
                            f"SwinTransformerBlocks); got {type(model).__name__}")


def _new_attn(a: WindowAttention, head_dim: int, scored: bool) -> SiDTWindowAttention:
    return SiDTWindowAttention(
        a.qkv.in_features, a.num_heads, head_dim, a.window_size,
        scale=float(a.scale), qkv_bias=a.qkv.bias is not None, attn_drop=a.attn_drop.p,
        proj_drop=a.proj_drop.p, scored=scored,
        orig_head_dim=getattr(a, "orig_head_dim", a.qkv.out_features // (3 * a.num_heads)),
    ).to(a.qkv.weight.device, a.qkv.weight.dtype)


def _new_mlp(m: Mlp, hidden: int, scored: bool) -> SiDTMlp:
    if not isinstance(m.norm, nn.Identity) or not isinstance(m.fc1, nn.Linear):
        raise ReprolibError("SiDT prunes Mlp blocks with Linear layers and no hidden norm")
    return SiDTMlp(m.fc1.in_features, hidden, m.fc2.out_features, act_layer=type(m.act),
                   drop=m.drop1.p, bias=m.fc1.bias is not None,
                   scored=scored).to(m.fc1.weight.device, m.fc1.weight.dtype)


# --------------------------------------------------------------------------- public API


def attach_scores(model: nn.Module) -> nn.Module:
    """Give every window attention and MLP of a timm Swin a score vector, initialised to 1.

    Args:
        model: a timm ``SwinTransformer`` of any size (or a pruned SiDT model).  It is changed
            in place: each ``blocks[i].attn`` becomes a :class:`SiDTWindowAttention` with
            ``alpha`` of length head_dim, each ``blocks[i].mlp`` a :class:`SiDTMlp` with
            ``alpha`` of length hidden width.  Weights are kept, so with all scores 1 the model
            computes exactly what it computed before.

    Returns:
        ``model`` itself.
    """
    _check_swin(model)
    for _, blk in _blocks(model):
        a = blk.attn
        if getattr(a, "alpha", None) is None:
            hd = a.qkv.out_features // (3 * a.num_heads)
            new = _new_attn(a, hd, scored=True)
            new.load_state_dict(a.state_dict(), strict=False)
            new.alpha.data.fill_(1.0)
            new.train(a.training)
            blk.attn = new
        m = blk.mlp
        if getattr(m, "alpha", None) is None:
            new = _new_mlp(m, m.fc1.out_features, scored=True)
            new.load_state_dict(m.state_dict(), strict=False)
            new.alpha.data.fill_(1.0)
            new.train(m.training)
            blk.mlp = new
    return model


def scores(model: nn.Module) -> dict[str, nn.Parameter]:
    """The score vectors of a scored model, by layer name (``"layers.0.blocks.1.attn"``,
    ``"layers.0.blocks.1.mlp"``, ...), in model order.  Empty for an unscored model."""
    return {n: m.alpha for n, m in model.named_modules()
            if isinstance(m, (SiDTWindowAttention, SiDTMlp)) and m.alpha is not None}


def l1_penalty(model: nn.Module, gamma: float = 1e-4) -> torch.Tensor:
    """``gamma * sum |alpha|`` over all score vectors (SiDT's ``gamma l1(A)``).

    Args:
        model: a scored model (:func:`attach_scores`).
        gamma: the sparsity scale (default 1e-4, section 4).
    """
    s = list(scores(model).values())
    if not s:
        raise ReprolibError("the model has no SiDT scores: call attach_scores(model) first")
    return gamma * sum(a.abs().sum() for a in s)


def keep_indices(model: nn.Module, ratio: float, scope: str = "global") -> dict[str, torch.Tensor]:
    """Which dimensions survive pruning, per scored layer (sorted index tensors).

    Args:
        model: a scored model.
        ratio: fraction of the score dimensions removed, in [0, 1) (default none; the paper's
            remaining ratio is ``rho = 1 - ratio``).  With ``scope="global"``
            ``round(ratio * total)`` dimensions with the smallest ``|alpha|`` over all layers
            are removed; with ``scope="layer"`` each layer of ``n`` dimensions keeps
            ``n - round(ratio * n)``.  Every layer keeps at least one dimension; ties are
            broken by position (earlier dimensions rank lower), so equal scores prune
            deterministically.
        scope: ``"global"`` (default; one ranking over all layers, attention and MLP scores
            together) or ``"layer"`` (one ranking per layer).
    """
    check_range("ratio", ratio, 0.0, 1.0, hi_open=True)
    choose("pruning scope", scope, SCOPES)
    s = {n: a.detach().abs().float().cpu() for n, a in scores(model).items()}
    if not s:
        raise ReprolibError("the model has no SiDT scores: call attach_scores(model) first")
    keep: dict[str, torch.Tensor] = {}
    if scope == "layer":
        for n, a in s.items():
            k = max(1, a.numel() - round(ratio * a.numel()))
            order = torch.sort(a, descending=True, stable=True).indices
            keep[n] = order[:k].sort().values
        return keep
    names = list(s)
    flat = torch.cat([s[n] for n in names])
    owner = torch.cat([torch.full((s[n].numel(),), i) for i, n in enumerate(names)])
    pos = torch.cat([torch.arange(s[n].numel()) for n in names])
    order = torch.sort(flat, stable=True).indices      # ascending |alpha|: removed first
    removed = torch.zeros(flat.numel(), dtype=torch.bool)
    removed[order[:round(ratio * flat.numel())]] = True
    for i, n in enumerate(names):
        sel = owner == i
        kept = pos[sel & ~removed]
        if kept.numel() == 0:                     # keep the best dimension of an emptied layer
            kept = torch.argmax(s[n]).reshape(1)
        keep[n] = kept.sort().values
    return keep


@torch.no_grad()
def prune(model: nn.Module, ratio: float, scope: str = "global") -> nn.Module:
    """Physically prune a scored Swin: a new, smaller model (the input is left untouched).

    Args:
        model: a model after :func:`attach_scores` (and search).
        ratio: fraction of the score dimensions removed, in [0, 1) (the paper's pruning ratio
            PR; it keeps ``rho = 1 - ratio``).  0 keeps everything: the result computes exactly
            what ``model`` computes.
        scope: ``"global"`` (default, one ranking of ``|alpha|`` over all layers) or
            ``"layer"`` (each layer loses the same fraction); see :func:`keep_indices`.

    Returns:
        An ordinary ``nn.Module`` (the same timm ``SwinTransformer`` class) without scores:
        ``qkv`` has ``3 * heads * kept`` outputs (the same head-dimension indices removed in
        every head), ``proj`` the matching inputs, ``fc1`` / ``fc2`` the kept hidden units;
        the kept scores are folded into these weights, the softmax scale and relative
        position bias are those of the unpruned model.  ``model.sidt_arch`` records the
        architecture (see :func:`arch`).
    """
    keep = keep_indices(model, ratio, scope)
    spec = swin_spec(model)
    new = copy.deepcopy(model)
    for name, blk in _blocks(new):
        a, m = blk.attn, blk.mlp
        ia, im = keep[f"{name}.attn"].to(a.qkv.weight.device), keep[f"{name}.mlp"].to(m.fc1.weight.device)
        blk.attn = _prune_attn(a, ia)
        blk.mlp = _prune_mlp(m, im)
    new.sidt_arch = {"swin": spec, **_dims(new),
                     "kept": {n: i.tolist() for n, i in keep.items()},
                     "ratio": ratio, "scope": scope}
    return new


def _prune_attn(a: SiDTWindowAttention, idx: torch.Tensor) -> SiDTWindowAttention:
    h, hd = a.num_heads, a.head_dim
    new = _new_attn(a, len(idx), scored=False)
    alpha = a.alpha if a.alpha is not None else torch.ones(hd, device=idx.device)
    # qkv output o = (j * h + head) * hd + i for j in {q, k, v}
    rows = (torch.arange(3 * h, device=idx.device)[:, None] * hd + idx[None, :]).reshape(-1)
    fold = alpha[idx].repeat(3 * h)
    new.qkv.weight.copy_(a.qkv.weight[rows] * fold[:, None])
    if a.qkv.bias is not None:
        new.qkv.bias.copy_(a.qkv.bias[rows] * fold)
    cols = (torch.arange(h, device=idx.device)[:, None] * hd + idx[None, :]).reshape(-1)
    new.proj.weight.copy_(a.proj.weight[:, cols])
    new.proj.bias.copy_(a.proj.bias)
    new.relative_position_bias_table.copy_(a.relative_position_bias_table)
    new.fused_attn = a.fused_attn
    new.train(a.training)
    return new


def _prune_mlp(m: SiDTMlp, idx: torch.Tensor) -> SiDTMlp:
    new = _new_mlp(m, len(idx), scored=False)
    fold = m.alpha[idx] if m.alpha is not None else 1.0
    w = m.fc1.weight[idx]
    new.fc1.weight.copy_(w * (fold[:, None] if m.alpha is not None else 1.0))
    if m.fc1.bias is not None:
        new.fc1.bias.copy_(m.fc1.bias[idx] * fold)
    new.fc2.weight.copy_(m.fc2.weight[:, idx])
    if m.fc2.bias is not None:
        new.fc2.bias.copy_(m.fc2.bias)
    new.train(m.training)
    return new


# --------------------------------------------------------------------------- save / load


def swin_spec(model: nn.Module) -> dict:
    """The ``timm SwinTransformer`` constructor arguments of ``model`` (read from its modules;
    drop rates from the last block), enough to rebuild its unpruned skeleton."""
    _check_swin(model)
    if not isinstance(model, SwinTransformer):
        raise ReprolibError("save/load need a timm SwinTransformer at the top level")
    pe = model.patch_embed
    stages = list(model.layers)
    first = [s.blocks[0] for s in stages]
    last = stages[-1].blocks[-1]
    dp = last.drop_path1
    return {
        "img_size": list(pe.img_size), "patch_size": int(pe.patch_size[0]),
        "in_chans": int(pe.proj.in_channels), "num_classes": int(model.num_classes),
        "global_pool": model.global_pool, "embed_dim": int(model.embed_dim),
        "depths": [len(s.blocks) for s in stages],
        "num_heads": [int(b.attn.num_heads) for b in first],
        "head_dim": [int(getattr(b.attn, "orig_head_dim",
                                 b.attn.qkv.out_features // (3 * b.attn.num_heads))) for b in first],
        "window_size": [list(w) for w in model._ref_window_sizes],
        "mlp_ratio": [float(b.mlp_ratio) for b in first],
        "qkv_bias": first[0].attn.qkv.bias is not None,
        "strict_img_size": not model.dynamic_img_size,
        "drop_rate": float(model.head.drop.p),
        "proj_drop_rate": float(last.attn.proj_drop.p),
        "attn_drop_rate": float(last.attn.attn_drop.p),
        "drop_path_rate": float(getattr(dp, "drop_prob", 0.0)),
    }


def _dims(model: nn.Module) -> dict:
    return {"attn_dims": {f"{n}.attn": int(b.attn.qkv.out_features // (3 * b.attn.num_heads))
                          for n, b in _blocks(model)},
            "mlp_dims": {f"{n}.mlp": int(b.mlp.fc1.out_features) for n, b in _blocks(model)}}


def arch(model: nn.Module) -> dict:
    """The architecture of a (pruned) Swin as JSON-ready data: ``swin`` (constructor
    arguments of the unpruned skeleton), ``attn_dims`` (kept head dimension per attention
    layer), ``mlp_dims`` (kept hidden width per MLP) and, for a model made by :func:`prune`,
    the kept indices, ratio and scope."""
    out = dict(getattr(model, "sidt_arch", {}))
    out.update({"swin": swin_spec(model), **_dims(model)})
    return out


def build(arch_: dict) -> nn.Module:
    """An (untrained) Swin with the per-layer dimensions of ``arch_`` (from :func:`arch`)."""
    spec = dict(arch_["swin"])
    spec["img_size"] = tuple(spec["img_size"])
    spec["window_size"] = [tuple(w) for w in spec["window_size"]]
    model = SwinTransformer(**spec)
    for name, blk in _blocks(model):
        blk.attn = _new_attn(blk.attn, int(arch_["attn_dims"][f"{name}.attn"]), scored=False)
        blk.mlp = _new_mlp(blk.mlp, int(arch_["mlp_dims"][f"{name}.mlp"]), scored=False)
    model.sidt_arch = dict(arch_)
    return model


def save(model: nn.Module, path: str | Path) -> tuple[Path, Path]:
    """Write ``<path>.json`` (:func:`arch`: per-layer kept dims) and ``<path>.pt`` (state_dict).

    Args:
        model: a pruned (or unpruned, unscored) SiDT Swin.
        path: file stem; parent folders are created.
    """
    if scores(model):
        raise ReprolibError("save a pruned model (prune(model, ratio)); this one still has scores")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    js, pt = path.with_suffix(".json"), path.with_suffix(".pt")
    js.write_text(json.dumps(arch(model), indent=1))
    torch.save(model.state_dict(), pt)
    return js, pt


def load(path: str | Path, map_location: str = "cpu") -> nn.Module:
    """Rebuild a model written by :func:`save` from ``<path>.json`` and ``<path>.pt``."""
    path = Path(path)
    model = build(load_json(path.with_suffix(".json"), "pruned-architecture file"))
    model.load_state_dict(load_torch(path.with_suffix(".pt"), "pruned-model weights",
                                     map_location=map_location))
    return model


# --------------------------------------------------------------------------- complexity


def param_count_closed_form(model: nn.Module, arch_: dict) -> int:
    """Parameters of ``model`` (unpruned, scores excluded) pruned to ``arch_``'s dims, by formula:
    each removed head dimension of an attention layer with ``h`` heads on ``d`` channels takes
    ``h (3d + 3 + d)`` parameters (qkv rows + biases, proj columns); each removed hidden unit
    of an MLP on ``d`` channels takes ``2d + 1`` (fc1 row + bias, fc2 column)."""
    total = sum(p.numel() for n, p in model.named_parameters() if not n.endswith("alpha"))
    for name, blk in _blocks(model):
        a, m = blk.attn, blk.mlp
        d, h = a.qkv.in_features, a.num_heads
        hd = a.qkv.out_features // (3 * h)
        total -= (hd - arch_["attn_dims"][f"{name}.attn"]) * h * (4 * d + 3)
        total -= (m.fc1.out_features - arch_["mlp_dims"][f"{name}.mlp"]) * (2 * d + 1)
    return total


@torch.no_grad()
def layer_complexity(model: nn.Module, input_size=(3, 224, 224)) -> list[dict]:
    """Measured multiply-adds of every W-MSA and MLP layer at batch 1 beside SiDT's closed forms.

    Measurement: ``torch.utils.flop_counter.FlopCounterMode`` per module (matmuls and linear
    layers; 2 FLOPs = 1 multiply-add, biases, softmax and the position bias not counted).
    Closed forms (section 3): W-MSA ``4 n d d_a + 2 n M^2 d_a`` with ``d_a = h * head_dim``
    kept channels (unpruned ``d_a = d``), MLP ``2 n d d_m``; ``rho`` = kept / unpruned.

    Returns one dict per layer: layer, kind ("W-MSA"/"MLP"), stage, n, d, M, kept, full, rho,
    measured_macs, formula_macs.
    """
    from torch.utils.flop_counter import FlopCounterMode

    model = model.eval()
    dev = next(model.parameters()).device
    with FlopCounterMode(display=False) as fc:
        model(torch.zeros(1, *input_size, device=dev))
    counts = {k.split(".", 1)[1] if "." in k else "": sum(v.values())
              for k, v in fc.get_flop_counts().items()}
    rows = []
    for name, blk in _blocks(model):
        a, m = blk.attn, blk.mlp
        H, W = blk.input_resolution
        M2 = blk.window_area
        n = (math.ceil(H / blk.window_size[0]) * blk.window_size[0]
             * math.ceil(W / blk.window_size[1]) * blk.window_size[1])
        d, h = a.qkv.in_features, a.num_heads
        hd = a.qkv.out_features // (3 * h)
        full_hd = getattr(a, "orig_head_dim", hd)
        da = h * hd
        stage = int(name.split(".")[1]) if name.startswith("layers.") else 0
        rows.append(dict(layer=f"{name}.attn", kind="W-MSA", stage=stage, n=n, d=d,
                         M=blk.window_size[0], kept=hd, full=full_hd, rho=hd / full_hd,
                         measured_macs=counts.get(f"{name}.attn", 0) // 2,
                         formula_macs=4 * n * d * da + 2 * n * M2 * da))
        dm = m.fc1.out_features
        full_dm = int(d * blk.mlp_ratio)
        rows.append(dict(layer=f"{name}.mlp", kind="MLP", stage=stage, n=H * W, d=d,
                         M=blk.window_size[0], kept=dm, full=full_dm, rho=dm / full_dm,
                         measured_macs=counts.get(f"{name}.mlp", 0) // 2,
                         formula_macs=2 * H * W * d * dm))
    return rows


# --------------------------------------------------------------------------- pipeline
# search -> prune at each ratio -> fine-tune, every step a cached results record.

FT_ONLY = ("ratios", "scope", "finetune_epochs", "reference_model", "reference_classes",
           "reference_size", "latency_batch", "latency_repeats")


def transfer_dims(small: dict, full_model: nn.Module) -> dict:
    """Per-layer kept dimensions of a pruned ``small`` arch (:func:`arch`) carried over to the
    unpruned ``full_model`` as kept fractions: layer by layer when the two have the same block
    names (e.g. ``swin_cifar`` and ``swin_t``), else one fraction per stage and kind.
    Returns an arch dict for :func:`build` (``full_model``'s spec, the new dims)."""
    sspec = small["swin"]
    full = {"attn": {}, "mlp": {}}
    for name, blk in _blocks(full_model):
        a = blk.attn
        full["attn"][f"{name}.attn"] = getattr(a, "orig_head_dim", a.qkv.out_features // (3 * a.num_heads))
        full["mlp"][f"{name}.mlp"] = int(a.qkv.in_features * blk.mlp_ratio)
    small_full = {"attn": {}, "mlp": {}}
    for n in small["attn_dims"]:
        s = int(n.split(".")[1])
        small_full["attn"][n] = sspec["head_dim"][s] if sspec["head_dim"][s] else \
            (sspec["embed_dim"] * 2 ** s) // sspec["num_heads"][s]
    for n in small["mlp_dims"]:
        s = int(n.split(".")[1])
        small_full["mlp"][n] = int(sspec["embed_dim"] * 2 ** s * sspec["mlp_ratio"][s])
    out = {"swin": swin_spec(full_model), "attn_dims": {}, "mlp_dims": {}}
    for kind in ("attn", "mlp"):
        kept = small[f"{kind}_dims"]
        same = set(kept) == set(full[kind])
        for n, f in full[kind].items():
            if same:
                rho = kept[n] / small_full[kind][n]
            else:
                st = n.split(".")[1]
                ks = [k for k in kept if k.split(".")[1] == st]
                rho = sum(kept[k] for k in ks) / sum(small_full[kind][k] for k in ks)
            out[f"{kind}_dims"][n] = max(1, round(rho * f))
    return out


def _train_cfg(cfg, epochs: int):
    from reprolib.train import TrainConfig

    return TrainConfig(epochs=epochs, batch_size=cfg.batch_size, optimizer=cfg.optimizer,
                       lr=cfg.lr, weight_decay=cfg.weight_decay, no_decay_norm_bias=True,
                       schedule="cosine", warmup_epochs=cfg.warmup_epochs,
                       label_smoothing=cfg.label_smoothing, mixup=cfg.mixup, cutmix=cfg.cutmix,
                       clip_grad=cfg.clip_grad, seed=cfg.seed)


def _sizes(model: nn.Module, size: int, flops=True) -> dict:
    from reprolib import measure

    n = sum(p.numel() for p in model.parameters())
    head = sum(p.numel() for p in model.head.parameters()) if hasattr(model, "head") else 0
    out = {"params": n, "backbone_params": n - head}
    if flops:
        out["flops"] = measure.count_flops(model, (3, size, size))
    return out


def _search_config(cfg) -> dict:
    from reprolib.configs import config_dict

    return {k: v for k, v in config_dict(cfg).items() if k not in FT_ONLY and k != "profile"}


def search(cfg, data, *, force: bool = False) -> tuple[dict, Path]:
    """Search stage as a cached record: build ``cfg.model``, :func:`attach_scores`, train
    weights and scores with ``cfg.gamma`` L1 for ``cfg.search_epochs``.  The searched (scored)
    model is kept at ``<ckpt>/searched.pt``.  Returns (record, path of searched.pt)."""
    from reprolib import results
    from reprolib.registry import create_model
    from reprolib.train import fit

    conf = _search_config(cfg)

    def fn(ckpt: Path) -> dict:
        torch.manual_seed(cfg.seed)
        model = attach_scores(create_model(cfg.model, num_classes=data.num_classes,
                                           img_size=cfg.image_size))
        res = fit(model, data, _train_cfg(cfg, cfg.search_epochs), ckpt_dir=ckpt,
                  extra_loss=lambda m: l1_penalty(m, cfg.gamma), device=cfg.device,
                  desc="SiDT search")
        model.cpu()
        torch.save({"arch": arch(model), "state": model.state_dict()}, ckpt / "searched.pt")
        s = torch.cat([a.detach().abs().flatten() for a in scores(model).values()])
        return {"acc": res.acc, "epochs": cfg.search_epochs, "train_time_s": res.wall_time_s,
                "history": res.history, "n_scores": int(s.numel()),
                "score_quantiles": [float(q) for q in torch.quantile(
                    s, torch.tensor([0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0]))],
                "scores": {n: [round(float(v), 5) for v in a.detach()]
                           for n, a in scores(model).items()},
                **_sizes(model, cfg.image_size)}

    rec = results.run_cached("sidt", cfg.profile, "search", conf, fn, force=force)
    pt = results.record_path("sidt", cfg.profile, "search", conf).parent / "ckpt" / rec["run_id"] / "searched.pt"
    if not pt.exists():   # the record was kept but its checkpoint is gone: search again
        rec = results.run_cached("sidt", cfg.profile, "search", conf, fn, force=True)
    return rec, pt


def _load_searched(pt: Path) -> nn.Module:
    blob = torch.load(pt, map_location="cpu")
    model = attach_scores(build(blob["arch"]))
    model.load_state_dict(blob["state"])
    return model


def finetune(cfg, data, ratio: float, search_rec: dict, searched_pt: Path, *,
             force: bool = False) -> dict:
    """Prune the searched model at ``ratio`` (fraction of dimensions removed, ``cfg.scope``)
    and fine-tune it (warm start, no L1) for ``cfg.finetune_epochs``, as a cached record with
    accuracy before / after fine-tuning, params, FLOPs, CPU latency and the kept dims."""
    from reprolib import measure, results
    from reprolib.configs import config_dict
    from reprolib.train import evaluate, fit, resolve_device

    conf = {**config_dict(cfg), "ratio": ratio, "search_run": search_rec["run_id"]}
    conf.pop("profile")
    conf.pop("ratios")

    def fn(ckpt: Path) -> dict:
        dev = resolve_device(cfg.device)
        model = prune(_load_searched(searched_pt), ratio, cfg.scope)
        acc0 = evaluate(model.to(dev), data.test, dev)["acc"]
        sizes = _sizes(model, cfg.image_size)
        lat = measure.latency(model, (3, cfg.image_size, cfg.image_size), cfg.latency_batch,
                              device="cpu", repeats=cfg.latency_repeats)
        res = fit(model, data, _train_cfg(cfg, cfg.finetune_epochs), ckpt_dir=ckpt,
                  device=cfg.device, desc=f"SiDT fine-tune PR={ratio:g}")
        save(model.cpu(), ckpt / "pruned")
        a = arch(model)
        return {"acc": res.acc, "acc_pruned_no_ft": acc0, "ratio": ratio, "scope": cfg.scope,
                "epochs": cfg.finetune_epochs, "search_epochs": cfg.search_epochs,
                "train_time_s": res.wall_time_s, "history": res.history,
                "latency_ms": lat["ms"], "latency_threads": lat["threads"],
                "attn_dims": a["attn_dims"], "mlp_dims": a["mlp_dims"], "swin": a["swin"],
                **sizes}

    return results.run_cached("sidt", cfg.profile, f"finetune-p{round(100 * ratio):02d}", conf,
                              fn, force=force)


def reference(cfg, ft_records: list[dict], *, force: bool = False) -> dict:
    """Sizes of the full Swin-T (``cfg.reference_model`` at ``cfg.reference_size`` px,
    ``cfg.reference_classes`` classes) pruned at each ratio two ways: ``uniform`` (every layer
    loses the fraction, score-independent) and ``learned`` (the per-layer kept fractions the
    search of ``ft_records`` produced, carried over by :func:`transfer_dims`); plus the
    per-layer complexity of section 3 (:func:`layer_complexity`) for the uniform models."""
    from reprolib import results
    from reprolib.registry import create_model

    conf = {"reference_model": cfg.reference_model, "classes": cfg.reference_classes,
            "size": cfg.reference_size, "ratios": [0.0, *cfg.ratios],
            "learned_from": sorted(r["run_id"] for r in ft_records)}
    size = cfg.reference_size

    def fn(_ckpt: Path) -> dict:
        base = create_model(cfg.reference_model, num_classes=cfg.reference_classes,
                            img_size=size).eval()
        scored = attach_scores(copy.deepcopy(base))
        rows, layers = [], []
        for r in conf["ratios"]:
            m = prune(scored, r, "layer")
            rows.append({"kind": "uniform", "ratio": r, **_sizes(m, size)})
            for row in layer_complexity(m, (3, size, size)):
                layers.append({"ratio": r, **row})
        for rec in ft_records:
            mt = rec["metrics"]
            m = build(transfer_dims(mt, base))
            rows.append({"kind": "learned", "ratio": mt["ratio"], **_sizes(m, size)})
        return {"rows": rows, "layers": layers}

    return results.run_cached("sidt", cfg.profile, "reference", conf, fn, force=force)


def run(cfg, *, force: bool = False) -> dict:
    """The whole SiDT pipeline at ``cfg``: search, prune + fine-tune at 0 and every ratio,
    Swin-T reference sizes.  Returns {"search": record, "finetune": [records], "reference":
    record}; every step is cached in ``results/sidt/<profile>/``."""
    from reprolib.data import get_data
    from reprolib.train import resolve_device

    dev = resolve_device(cfg.device)
    data = get_data(cfg.dataset, cfg.image_size, cfg.batch_size, root=cfg.data_root,
                    device=str(dev), seed=cfg.seed)
    srec, pt = search(cfg, data, force=force)
    fts = [finetune(cfg, data, r, srec, pt, force=force) for r in (0.0, *cfg.ratios)]
    ref = reference(cfg, fts, force=force)
    return {"search": srec, "finetune": fts, "reference": ref}


# --------------------------------------------------------------------------- tables, plots
# Built from the records that :func:`run` returns (the JSON files in results/sidt/<profile>/).


def tables(out: dict) -> dict:
    """Table I, the section-3 complexity table and Table II's backbone columns from the
    records of :func:`run`, with the paper's printed numbers in their own columns.

    Returns {"table1": ours (cfg.model) + Swin-T sizes + paper, "swin_t": Swin-T sizes,
    "complexity": per-layer MACs, "table2": backbone params}, all pandas DataFrames.
    """
    import pandas as pd

    from reprolib.configs.sidt import PAPER_TABLE1, PAPER_TABLE2

    ft = sorted((r["metrics"] for r in out["finetune"]), key=lambda m: m["ratio"])
    ref = out["reference"]["metrics"]
    rows = {(r["kind"], r["ratio"]): r for r in ref["rows"]}
    base = ft[0]
    t1 = []
    for m in ft:
        p = PAPER_TABLE1.get(round(m["ratio"], 2), (float("nan"),) * 3)
        u, lr = rows[("uniform", m["ratio"])], rows.get(("learned", m["ratio"]), {})
        t1.append({
            "PR": f"{m['ratio']:.0%}",
            "acc no FT (%)": round(m["acc_pruned_no_ft"], 2),
            "acc (%)": round(m["acc"], 2),
            "params (M)": round(m["params"] / 1e6, 3),
            "FLOPs (M)": round(m["flops"] / 1e6, 2),
            "params rel.": round(m["params"] / base["params"], 3),
            "FLOPs rel.": round(m["flops"] / base["flops"], 3),
            "latency (ms)": round(m["latency_ms"], 2),
            "Swin-T learned params (M)": round(lr.get("params", float("nan")) / 1e6, 2),
            "Swin-T learned FLOPs (G)": round(lr.get("flops", float("nan")) / 1e9, 2),
            "Swin-T uniform params (M)": round(u["params"] / 1e6, 2),
            "Swin-T uniform FLOPs (G)": round(u["flops"] / 1e9, 2),
            "paper acc (%)": p[0], "paper params (M)": p[1], "paper FLOPs (G)": p[2],
        })
    t2 = []
    for r, p in PAPER_TABLE2.items():
        u, lr = rows.get(("uniform", r)), rows.get(("learned", r))
        t2.append({"PR": f"{r:.0%}",
                   "backbone params uniform (M)": round(u["backbone_params"] / 1e6, 2) if u else None,
                   "backbone params learned (M)": round(lr["backbone_params"] / 1e6, 2) if lr else None,
                   "paper backbone (M)": p[3], "paper total (M)": p[2],
                   "paper box mAP": p[0], "paper mask mAP": p[1]})
    cx = pd.DataFrame(ref["layers"])
    cx = cx[cx["layer"].str.contains(r"blocks\.0\.")].copy()     # first block of each stage
    cx["measured (MMAC)"] = (cx["measured_macs"] / 1e6).round(3)
    cx["formula (MMAC)"] = (cx["formula_macs"] / 1e6).round(3)
    cx["formula"] = cx["kind"].map({"W-MSA": "4nd(rho d) + 2nM^2(rho d)", "MLP": "2nd(rho d_m)"})
    cx = cx[["ratio", "stage", "kind", "n", "d", "M", "kept", "full", "rho", "measured (MMAC)",
             "formula (MMAC)", "formula"]].sort_values(["ratio", "stage", "kind"])
    return {"table1": pd.DataFrame(t1),
            "swin_t": pd.DataFrame(ref["rows"]).assign(
                params_M=lambda d: (d["params"] / 1e6).round(2),
                flops_G=lambda d: (d["flops"] / 1e9).round(3)),
            "complexity": cx.reset_index(drop=True), "table2": pd.DataFrame(t2)}


def plot_results(out: dict, title: str = ""):
    """Three panels: accuracy change vs relative params and vs relative FLOPs (ours and the
    paper's Table I, each relative to its own unpruned model), and Swin-T params at each PR
    (uniform, learned, paper).  Returns the figure."""
    import matplotlib.pyplot as plt
    import pandas as pd

    from reprolib.configs.sidt import PAPER_TABLE1
    from reprolib.report import plot_tradeoff

    t = tables(out)["table1"]
    a0 = t["acc (%)"].iloc[0]
    ours = pd.DataFrame({"params rel.": t["params rel."], "FLOPs rel.": t["FLOPs rel."],
                         "acc change (pp)": t["acc (%)"] - a0, "series": "ours (fine-tuned)"})
    p0 = PAPER_TABLE1[0.0]
    paper = pd.DataFrame([{"params rel.": v[1] / p0[1], "FLOPs rel.": v[2] / p0[2],
                           "acc change (pp)": v[0] - p0[0]} for v in PAPER_TABLE1.values()])
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for ax, x in zip(axes[:2], ("params rel.", "FLOPs rel.")):
        plot_tradeoff(ours, x, "acc change (pp)", hue="series", style="series",
                      paper_df=paper, ax=ax,
                      xlabel=f"{x.split()[0]} / unpruned", ylabel="accuracy - unpruned (pp)")
    sw = tables(out)["swin_t"]
    for kind, g in sw.groupby("kind"):
        axes[2].plot(g["ratio"], g["params_M"], marker="o", label=f"ours, {kind}")
    axes[2].scatter(list(PAPER_TABLE1), [v[1] for v in PAPER_TABLE1.values()], marker="x",
                    color="black", zorder=5, label="paper")
    axes[2].set_xlabel("pruning ratio (fraction of dimensions removed)")
    axes[2].set_ylabel("Swin-T params (M), 100 classes")
    axes[2].legend(fontsize=7)
    axes[2].grid(alpha=0.3)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def plot_complexity(out: dict, title: str = ""):
    """Measured MACs of each stage's first W-MSA and MLP layer of Swin-T vs rho (kept
    fraction), the closed forms of section 3 as lines; and measured CPU latency of our pruned
    models vs their FLOPs ratio.  Returns the figure."""
    import matplotlib.pyplot as plt

    tb = tables(out)
    cx = tb["complexity"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for (kind, st), g in cx.groupby(["kind", "stage"]):
        g = g.sort_values("rho")
        line, = axes[0].plot(g["rho"], g["formula (MMAC)"], ls="-", lw=1,
                             label=f"{kind} stage {st + 1}")
        axes[0].scatter(g["rho"], g["measured (MMAC)"], color=line.get_color(), s=18)
    axes[0].set_xlabel("rho (kept fraction of the layer)")
    axes[0].set_ylabel("MMAC (lines: section 3 formula; dots: measured)")
    axes[0].set_title("Swin-T 224 px, uniform pruning", fontsize=9)
    axes[0].legend(fontsize=6, ncol=2)
    axes[0].grid(alpha=0.3)
    t1 = tb["table1"]
    lat0 = t1["latency (ms)"].iloc[0]
    axes[1].plot(t1["FLOPs rel."], t1["latency (ms)"] / lat0, marker="o", label="ours, measured")
    axes[1].plot([0, 1], [0, 1], ls="--", color="grey", lw=0.8, label="latency ∝ FLOPs")
    for _, r in t1.iterrows():
        axes[1].annotate(r["PR"], (r["FLOPs rel."], r["latency (ms)"] / lat0), fontsize=7)
    axes[1].set_xlabel("FLOPs / unpruned")
    axes[1].set_ylabel("CPU latency / unpruned (batch 1, 1 thread)")
    axes[1].legend(fontsize=7)
    axes[1].grid(alpha=0.3)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig
