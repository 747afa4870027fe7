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

Search (the loss ``L = l(X, T; W) + gamma * l1(A)``): :func:`l1_penalty` (``strength`` is the
paper's ``gamma``) is added to the task loss and the scores are trained with the weights.
Pruning: rank ``|alpha|`` (over all layers, ``scope="global"``, or within each layer,
``scope="layer"``), remove the fraction ``ratio`` of the dimensions with the lowest scores
(the paper's remaining ratio is ``rho = 1 - ratio``) and physically rebuild every layer:
``qkv`` loses the same head-dimension indices in every head of Q, K and V, ``proj`` loses the
matching input columns, ``fc1`` rows / ``fc2`` columns go with the MLP scores.  The kept
scores are folded into the weights, so the pruned model computes exactly what the scored
model computed on the kept dimensions.

Complexity (section 3), in multiply-adds, for ``n`` tokens of dimension ``d``, window ``M x M``
and MLP width ``d_m``:  W-MSA ``4 n d d_a + 2 n M^2 d_a`` with ``d_a = rho d`` kept attention
channels (``rho = 1``: ``4 n d^2 + 2 n M^2 d``);  MLP ``2 n d d_m'`` with ``d_m' = rho d_m``.
:func:`layer_complexity` measures these per layer and puts them beside the closed forms.

Saving: a scored or pruned model is an ordinary compressed model (``reprolib.compressed``).
Its spec is the registered builder ``swin_transformer`` with the timm constructor arguments
(:func:`swin_spec`), then the arch steps ``"sidt"`` (per-layer kept dimensions, written by
:func:`prune`) and ``"sidt_scores"`` (score vectors attached, written by
:func:`attach_scores`); both are registered here, so ``reprolib.load_compressed`` rebuilds
any of these models.

    model = reprolib.create_model("swin_tiny_test")
    attach_scores(model)                        # alpha = 1: model computes what it did before
    fit(model, data, recipe, extra_loss=lambda m: l1_penalty(m, 1e-4))
    small = prune(model, 0.4)                   # 40 % of the dimensions removed
    reprolib.save_compressed(small, "runs/sidt/p40")   # p40.json (widths) + p40.safetensors
    small = reprolib.load_compressed("runs/sidt/p40")
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import Mlp
from timm.models.swin_transformer import SwinTransformer, SwinTransformerBlock, WindowAttention

from reprolib.core.compressed import add_arch, register_arch
from reprolib.errors import ReprolibError, check_number, choose
from reprolib.core.io import to_strict_json
from reprolib.core.measure import count_flops_by_module
from reprolib.methods import round_width
from reprolib.core.registry import set_spec

SCOPES = ("global", "layer")
#: The registered builder of every model SiDT describes as data (``reprolib.models.swin``).
SWIN_BUILDER = "swin_transformer"


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


def _swin_of(model: nn.Module) -> SwinTransformer:
    """``model`` itself when it is a timm Swin, else the one Swin it holds (a detector's
    backbone, ``reprolib.models.detection``)."""
    if isinstance(model, SwinTransformer):
        return model
    found = [m for m in model.modules() if isinstance(m, SwinTransformer)]
    if len(found) != 1:
        raise ReprolibError(f"SiDT needs a timm SwinTransformer or a model holding exactly one; "
                            f"{type(model).__name__} holds {len(found)}")
    return found[0]


def _full_head_dim(a: WindowAttention) -> int:
    return int(getattr(a, "orig_head_dim", a.qkv.out_features // (3 * a.num_heads)))


def _new_attn(a: WindowAttention, head_dim: int, scored: bool) -> SiDTWindowAttention:
    return SiDTWindowAttention(
        a.qkv.in_features, a.num_heads, head_dim, a.window_size,
        scale=float(a.scale), qkv_bias=a.qkv.bias is not None, attn_drop=a.attn_drop.p,
        proj_drop=a.proj_drop.p, scored=scored, orig_head_dim=_full_head_dim(a),
    ).to(a.qkv.weight.device, a.qkv.weight.dtype)


def _new_mlp(m: Mlp, hidden: int, scored: bool) -> SiDTMlp:
    if not isinstance(m.norm, nn.Identity) or not isinstance(m.fc1, nn.Linear):
        raise ReprolibError("SiDT prunes Mlp blocks with Linear layers and no hidden norm")
    return SiDTMlp(m.fc1.in_features, hidden, m.fc2.out_features, act_layer=type(m.act),
                   drop=m.drop1.p, bias=m.fc1.bias is not None,
                   scored=scored).to(m.fc1.weight.device, m.fc1.weight.dtype)


def _attach(model: nn.Module) -> nn.Module:
    """Score vectors (all 1) on every attention and MLP that has none; weights kept."""
    _check_swin(model)
    for _, blk in _blocks(model):
        a = blk.attn
        if getattr(a, "alpha", None) is None:
            new = _new_attn(a, a.qkv.out_features // (3 * a.num_heads), scored=True)
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


def _steps(model: nn.Module) -> list[dict]:
    return list((getattr(model, "reprolib_spec", None) or {}).get("arch", []))


# --------------------------------------------------------------------------- public API


def attach_scores(model: nn.Module) -> nn.Module:
    """Give every window attention and MLP of a timm Swin a score vector, initialised to 1.

    Args:
        model: a timm ``SwinTransformer`` of any size (made by ``reprolib.create_model`` or
            directly with timm), a pruned SiDT model, or a model holding a Swin (a detector
            of ``reprolib.models.detection``: its backbone's blocks are scored, nothing
            else changes).  It is changed in place: each
            ``blocks[i].attn`` becomes a :class:`SiDTWindowAttention` with ``alpha`` of length
            head_dim, each ``blocks[i].mlp`` a :class:`SiDTMlp` with ``alpha`` of length hidden
            width.  Weights are kept, so with all scores 1 the model computes exactly what it
            computed before.

    Returns:
        ``model`` itself, its spec extended by the arch step ``{"kind": "sidt_scores"}`` (a
        timm Swin without a spec gets the ``swin_transformer`` builder and :func:`swin_spec`
        first), so ``reprolib.save_compressed`` / ``load_compressed`` round-trip it.
    """
    _attach(model)
    if getattr(model, "reprolib_spec", None) is None and isinstance(model, SwinTransformer):
        set_spec(model, SWIN_BUILDER, swin_spec(model))
    if getattr(model, "reprolib_spec", None) is not None and \
            not any(s.get("kind") == "sidt_scores" for s in _steps(model)):
        add_arch(model, "sidt_scores")
    return model


def scores(model: nn.Module) -> dict[str, nn.Parameter]:
    """The score vectors of a scored model, by layer name (``"layers.0.blocks.1.attn"``,
    ``"layers.0.blocks.1.mlp"``, ...), in model order.  Empty for an unscored model."""
    return {n: m.alpha for n, m in model.named_modules()
            if isinstance(m, (SiDTWindowAttention, SiDTMlp)) and m.alpha is not None}


def equal_ranking(model: nn.Module) -> dict[str, torch.Tensor]:
    """All-equal ranking values, one per score of every scored layer, on the CPU: what fresh
    scores (all 1) rank as, for :func:`prune` / :func:`keep_indices` ``ranking=`` on a model
    whose scores hold no values (built on the meta device, to be counted)."""
    return {n: torch.ones(a.shape) for n, a in scores(model).items()}


def l1_penalty(model: nn.Module, strength: float = 1e-4) -> torch.Tensor:
    """``strength * sum |alpha|`` over all score vectors (SiDT's ``gamma l1(A)``).

    Args:
        model: a scored model (:func:`attach_scores`).
        strength: the L1 weight, the paper's ``gamma`` (default 1e-4, section 4).
    """
    s = list(scores(model).values())
    if not s:
        raise ReprolibError("the model has no SiDT scores: call attach_scores(model) first")
    return strength * sum(a.abs().sum() for a in s)


def keep_indices(model: nn.Module, ratio: float, scope: str = "global",
                 round_to: int = 1, *, ranking: dict[str, torch.Tensor] | None = None
                 ) -> dict[str, torch.Tensor]:
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
        round_to: each layer's kept count (head dimensions, MLP units) is then rounded to
            the nearest multiple of ``round_to`` (``reprolib.methods.round_width``) and that
            many dimensions of largest ``|alpha|`` are kept; 1 (default) = the paper's rule,
            8 = hardware-aligned widths.
        ranking: values ranked instead of ``|alpha|``, one tensor per scored layer with the
            shape of its scores (default None: the learned scores), e.g. random values for
            a random-pruning control; the kept scores are still folded in by :func:`prune`.
    """
    check_number("ratio", ratio, 0.0, 1.0, hi_open=True)
    choose("pruning scope", scope, SCOPES)
    round_width(1, 1, round_to)               # validates round_to before any work
    s = scores(model)
    if not s:
        raise ReprolibError("the model has no SiDT scores: call attach_scores(model) first")
    if ranking is not None:               # the scores' shapes only (they may be on meta)
        bad = [n for n in s if n not in ranking or tuple(ranking[n].shape) != tuple(s[n].shape)]
        if bad or set(ranking) - set(s):
            raise ReprolibError(f"ranking must give one value per score of every scored layer "
                                f"(layers {', '.join(list(s)[:3])}, ...); mismatched: "
                                f"{(bad or sorted(set(ranking) - set(s)))[:3]}")
        s = {n: ranking[n].detach().abs().float().cpu() for n in s}
    else:
        s = {n: a.detach().abs().float().cpu() for n, a in s.items()}
    keep: dict[str, torch.Tensor] = {}
    if scope == "layer":
        for n, a in s.items():
            keep[n] = _top(a, max(1, a.numel() - round(ratio * a.numel())))
        return _aligned(keep, s, round_to)
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
    return _aligned(keep, s, round_to)


def _top(a: torch.Tensor, k: int) -> torch.Tensor:
    """Sorted indices of the ``k`` largest entries of ``a`` (ties: earlier first)."""
    return torch.sort(a, descending=True, stable=True).indices[:k].sort().values


def _aligned(keep: dict, s: dict, round_to: int) -> dict:
    """Each layer's kept count rounded to a multiple of ``round_to``: its top-|alpha| set."""
    if round_to == 1:
        return keep
    out = {}
    for n, idx in keep.items():
        k = round_width(idx.numel(), s[n].numel(), round_to)
        out[n] = idx if k == idx.numel() else _top(s[n], k)
    return out


@torch.no_grad()
def prune(model: nn.Module, ratio: float, scope: str = "global", round_to: int = 1, *,
          ranking: dict[str, torch.Tensor] | None = None) -> nn.Module:
    """Physically prune a scored Swin: a new, smaller model (the input is left untouched).

    Args:
        model: a timm ``SwinTransformer`` after :func:`attach_scores` (and search), or a model
            holding one (a detector of ``reprolib.models.detection``: its backbone is pruned,
            everything else is copied).
        ratio: fraction of the score dimensions removed, in [0, 1) (the paper's pruning ratio
            PR; it keeps ``rho = 1 - ratio``).  0 keeps everything: the result computes exactly
            what ``model`` computes.
        scope: ``"global"`` (default, one ranking of ``|alpha|`` over all layers) or
            ``"layer"`` (each layer loses the same fraction); see :func:`keep_indices`.
        round_to: kept head dimensions and MLP units per layer rounded to a multiple of
            this (default 1 = the paper's rule; 8 = widths the matrix kernels run at full
            speed, so the measured speedup follows the FLOP reduction); see
            :func:`keep_indices`.
        ranking: rank these values instead of ``|alpha|`` (:func:`keep_indices`; a control).

    Returns:
        An ordinary ``nn.Module`` (the same timm ``SwinTransformer`` class) without scores:
        ``qkv`` has ``3 * heads * kept`` outputs (the same head-dimension indices removed in
        every head), ``proj`` the matching inputs, ``fc1`` / ``fc2`` the kept hidden units;
        the kept scores are folded into these weights, the softmax scale and relative
        position bias are those of the unpruned model.  Its ``reprolib_spec`` is the
        ``swin_transformer`` builder with :func:`swin_spec` and one arch step
        ``{"kind": "sidt", "attn_dims", "mlp_dims", "kept", "ratio", "scope"}``, so
        ``reprolib.save_compressed`` writes it and ``load_compressed`` rebuilds it.  For a
        model holding a Swin the result is the same kind of model with the pruned Swin, its
        spec the model's own builder and arguments with that one ``"sidt"`` step (layer
        names prefixed by the Swin's place, e.g. ``backbone.body.layers.0...``).
    """
    keep = keep_indices(model, ratio, scope, round_to, ranking=ranking)
    if isinstance(model, SwinTransformer):
        builder, kwargs = SWIN_BUILDER, swin_spec(model)
    else:                       # a model holding a Swin (a detector): rebuilt by its builder
        _swin_of(model)
        spec = getattr(model, "reprolib_spec", None)
        if spec is None:
            raise ReprolibError(f"this {type(model).__name__} holds a Swin but was not built by "
                                "reprolib.create_model, so its pruned architecture cannot be "
                                "saved as data; build it with create_model(name, ...)")
        builder, kwargs = spec["builder"], spec["kwargs"]
    new = copy.deepcopy(model)
    for name, blk in _blocks(new):
        a, m = blk.attn, blk.mlp
        ia = keep[f"{name}.attn"].to(a.qkv.weight.device)
        im = keep[f"{name}.mlp"].to(m.fc1.weight.device)
        blk.attn = _prune_attn(a, ia)
        blk.mlp = _prune_mlp(m, im)
    step = {"kind": "sidt", **_dims(new), "kept": {n: i.tolist() for n, i in keep.items()},
            "ratio": float(ratio), "scope": scope}
    if round_to != 1:
        step["round_to"] = int(round_to)
    return set_spec(new, builder, kwargs, [to_strict_json(step)])


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



# --------------------------------------------------------------------------- architecture as data


def swin_spec(model: nn.Module) -> dict:
    """The ``timm SwinTransformer`` constructor arguments of ``model`` as JSON data (read from
    its modules; drop rates from the last block), enough to rebuild its unpruned skeleton with
    the registered builder ``swin_transformer`` (``reprolib.create_model("swin_transformer",
    **swin_spec(model))``).  Works for any timm Swin with timm's default LayerNorm and GELU,
    whether or not ``reprolib.create_model`` made it, scored or pruned; for a model holding
    one Swin (a detector), that Swin's arguments."""
    _check_swin(model)
    model = _swin_of(model)
    pe = model.patch_embed
    stages = list(model.layers)
    first = [s.blocks[0] for s in stages]
    last = stages[-1].blocks[-1]
    odd = [type(m).__name__ for m in (model.norm, first[0].norm1)
           if type(m) is not nn.LayerNorm] + \
          [type(b.mlp.act).__name__ for b in first if type(b.mlp.act) is not nn.GELU]
    if odd:
        raise ReprolibError(f"this Swin uses {', '.join(sorted(set(odd)))}; SiDT's saved "
                            "architecture describes timm's defaults (LayerNorm, GELU) only")
    dp = last.drop_path1
    return {
        "img_size": list(pe.img_size), "patch_size": int(pe.patch_size[0]),
        "in_chans": int(pe.proj.in_channels), "num_classes": int(model.num_classes),
        "global_pool": model.global_pool,
        "embed_dim": int(model.embed_dim),
        "depths": [len(s.blocks) for s in stages],
        "num_heads": [int(b.attn.num_heads) for b in first],
        "head_dim": [_full_head_dim(b.attn) for b in first],
        "window_size": [list(w) for w in model._ref_window_sizes],
        "always_partition": bool(first[0].always_partition),
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


def widths(model: nn.Module) -> dict:
    """The widths of any Swin's blocks (SiDT-pruned, or narrowed by another tool): ``attn_dims``
    (head dimension per attention layer), ``mlp_dims`` (hidden width per MLP), both keyed by
    the layer's name, and ``residual_dims`` (the residual width of each block, in order)."""
    return {**_dims(model),
            "residual_dims": [int(b.norm1.normalized_shape[0]) for _, b in _blocks(model)]}


def arch(model: nn.Module) -> dict:
    """The architecture of a (pruned) Swin as JSON-ready data: ``swin`` (constructor
    arguments of the unpruned skeleton, :func:`swin_spec`), ``attn_dims`` (kept head dimension
    per attention layer), ``mlp_dims`` (kept hidden width per MLP) and, for a model made by
    :func:`prune`, the kept indices, ratio and scope of its ``"sidt"`` step."""
    out = {}
    pruned = [s for s in _steps(model) if s.get("kind") == "sidt"]
    if pruned:
        out.update({k: pruned[-1][k] for k in ("kept", "ratio", "scope") if k in pruned[-1]})
    out.update({"swin": swin_spec(model), **_dims(model)})
    return out


def compressed_spec(arch_: dict) -> dict:
    """The compressed-model spec (``reprolib.compressed.build(spec)``) of an :func:`arch`
    dict: builder ``swin_transformer`` with ``arch_["swin"]``, then one ``"sidt"`` step with
    its per-layer dims.  E.g. a Swin-T with widths from :func:`transfer_dims`."""
    step = {"kind": "sidt", "attn_dims": dict(arch_["attn_dims"]),
            "mlp_dims": dict(arch_["mlp_dims"])}
    return to_strict_json({"builder": SWIN_BUILDER, "kwargs": dict(arch_["swin"]),
                           "arch": [step]})


@register_arch("sidt")
def _apply_pruned(model: nn.Module, step: dict) -> nn.Module:
    """Redo a :func:`prune` step on a fresh skeleton: every attention gets ``attn_dims`` kept
    head dimensions, every MLP ``mlp_dims`` hidden units (shapes only, no scores)."""
    _check_swin(model)
    ad, md = step.get("attn_dims"), step.get("mlp_dims")
    if not isinstance(ad, dict) or not isinstance(md, dict):
        raise ReprolibError("architecture step 'sidt' needs 'attn_dims' and 'mlp_dims' objects")
    blocks = _blocks(model)
    want = {f"{n}.attn" for n, _ in blocks} | {f"{n}.mlp" for n, _ in blocks}
    have = set(ad) | set(md)
    if want != have:
        raise ReprolibError(f"architecture step 'sidt' does not fit this Swin: widths "
                            f"missing for {sorted(want - have)[:3]}, unknown layers "
                            f"{sorted(have - want)[:3]}")
    for name, blk in blocks:
        a, m = ad[f"{name}.attn"], md[f"{name}.mlp"]
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in (a, m)):
            raise ReprolibError(f"architecture step 'sidt': {name} has widths attn={a!r}, "
                                f"mlp={m!r}; each must be an integer >= 1")
        blk.attn = _new_attn(blk.attn, a, scored=False)
        blk.mlp = _new_mlp(blk.mlp, m, scored=False)
    return model


@register_arch("sidt_scores")
def _apply_scores(model: nn.Module, step: dict) -> nn.Module:
    """Redo :func:`attach_scores` on a fresh skeleton (the scores' values are weights)."""
    return _attach(model)


def transfer_dims(small: dict, full_model: nn.Module) -> dict:
    """Per-layer kept dimensions of a pruned ``small`` arch (:func:`arch`) carried over to the
    unpruned ``full_model`` as kept fractions: layer by layer when the two have the same block
    names (e.g. ``swin_cifar`` and ``swin_t``), else one fraction per stage and kind.
    Returns an :func:`arch` dict (``full_model``'s :func:`swin_spec`, the new dims); build the
    model with ``reprolib.compressed.build(compressed_spec(...))``."""
    sspec = small["swin"]
    full = {"attn": {}, "mlp": {}}
    for name, blk in _blocks(full_model):
        full["attn"][f"{name}.attn"] = _full_head_dim(blk.attn)
        full["mlp"][f"{name}.mlp"] = int(blk.attn.qkv.in_features * blk.mlp_ratio)
    small_full = {"attn": {}, "mlp": {}}
    for n in small["attn_dims"]:
        s = int(n.split(".")[1])
        small_full["attn"][n] = sspec["head_dim"][s] or \
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

    Measurement: ``reprolib.measure.count_flops_by_module`` (``FlopCounterMode`` per module:
    matmuls, linear layers and fused attention; 1 multiply-add = 1 FLOP; biases, softmax and
    the position bias not counted).
    Closed forms (section 3): W-MSA ``4 n d d_a + 2 n M^2 d_a`` with ``d_a = h * head_dim``
    kept channels (unpruned ``d_a = d``), MLP ``2 n d d_m``; ``rho`` = kept / unpruned.

    Returns one dict per layer: layer, kind ("W-MSA"/"MLP"), stage, n, d, M, kept, full, rho,
    measured_macs, formula_macs.
    """
    counts = count_flops_by_module(model, input_size)
    rows = []
    for name, blk in _blocks(model):
        a, m = blk.attn, blk.mlp
        H, W = blk.input_resolution
        M2 = blk.window_area
        n = (math.ceil(H / blk.window_size[0]) * blk.window_size[0]
             * math.ceil(W / blk.window_size[1]) * blk.window_size[1])
        d, h = a.qkv.in_features, a.num_heads
        hd = a.qkv.out_features // (3 * h)
        full_hd = _full_head_dim(a)
        da = h * hd
        stage = int(name.split(".")[1]) if name.startswith("layers.") else 0
        rows.append(dict(layer=f"{name}.attn", kind="W-MSA", stage=stage, n=n, d=d,
                         M=blk.window_size[0], kept=hd, full=full_hd, rho=hd / full_hd,
                         measured_macs=counts.get(f"{name}.attn", 0),
                         formula_macs=4 * n * d * da + 2 * n * M2 * da))
        dm = m.fc1.out_features
        full_dm = int(d * blk.mlp_ratio)
        rows.append(dict(layer=f"{name}.mlp", kind="MLP", stage=stage, n=H * W, d=d,
                         M=blk.window_size[0], kept=dm, full=full_dm, rho=dm / full_dm,
                         measured_macs=counts.get(f"{name}.mlp", 0),
                         formula_macs=2 * H * W * d * dm))
    return rows
