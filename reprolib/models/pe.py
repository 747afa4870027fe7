"""PE: parameter-efficient ViT and ResNet-50 through the row and column spaces of one matrix.

Koyun & Töreyin, "Do deep neural networks utilize the weight space efficiently?" (2024),
section 3 (``../shared/papers/pe.md``).  A matrix ``W`` (m x n) maps R^n -> R^m (image = its
column space) and ``W^T`` maps R^m -> R^n (image = its row space); with a nonlinearity in
between, ``W^T F(W x)`` is a full two-layer map that stores one matrix instead of two.

Shapes below are per token (ViT, ``d`` = embed dim, ``h`` heads, ``d_h = d / h``) or per
pixel (ResNet).  In PyTorch ``F.linear(x, A, b) = x A^T + b`` is the column-vector ``A x + b``.

ViT-PE encoder layer (:class:`PEAttention`, :class:`PEMlp`)
-----------------------------------------------------------
Eq. (1)  ``Q = W_q x + b_q``,  ``K = W_kv x + b_k``,  ``V = W_kv^T x + b_v``
         with ``W_q``, ``W_kv`` both ``d x d``: ``F.linear(x, W_q)``, ``F.linear(x, W_kv)``,
         ``F.linear(x, W_kv.T)``.  Q, K and V are (B, N, d), split into ``h`` heads of
         ``d_h``; ``x_hat = softmax(Q K^T / sqrt(d_h)) V`` per head, heads concatenated.
Eq. (2)  ``Proj(x_hat) = W_q^T x_hat + b_o``: ``F.linear(x_hat, W_q.T)``.
         Reading of the terse value path: the key matrix's *row* space makes the values and
         the query matrix's row space makes the output projection, so attention stores
         ``2 d^2`` weights instead of ``4 d^2`` (qkv ``3 d^2`` + proj ``d^2``): exactly half, as
         the paper states.  (Reading ``W_kv`` as one ``2d x d`` key/value matrix would not
         halve anything.)  The four bias vectors (``4 d``) are kept, as in DeiT.
Eq. (4)  ``FFN(x) = W^T F(W x + b_1) + b_2`` with one ``W`` of shape ``(r d) x d`` (``r`` = MLP
         ratio, 4): ``F.linear(gelu(F.linear(x, W, b_1)), W.T, b_2)``; ``r d^2`` weights instead
         of ``2 r d^2``.
Everything else (patch embedding, class token, position embedding, LayerNorms, residuals,
stochastic depth, head) is timm's ``VisionTransformer``; only ``blk.attn`` and ``blk.mlp`` are
swapped.  DeiT-S geometry (patch 16, d 384, depth 12, 6 heads, MLP 1536, 224 px): 11,433,832
parameters with a 1000-class head (11,087,332 with a 100-class head, the paper's printed
11.1 M), and the same FLOPs as DeiT-S (4.6 G, 1 multiply-add = 1 FLOP): tying saves weights,
not arithmetic.

ResNet50-PE bottleneck (:class:`PEBottleneck`, :func:`apply_pe`)
----------------------------------------------------------------
Eq. (6)  ``Bottleneck(x) = W^T G(W x)``: ``W`` is the first 1x1 convolution's weight
         (``width x C``, stored as ``(width, C, 1, 1)``) and the last 1x1 convolution is
         ``conv2d(., W.transpose(0, 1))`` (``C x width``).  ``G`` = BN, ReLU, 3x3 conv, BN,
         ReLU; the block output is ``ReLU(BN_3(W^T G(W x)) + x)`` as in torchvision.  The tie
         needs ``C`` (block input width) = ``4 width`` (block output width), so it applies to
         every block of a stage except the first, whose projection shortcut changes the width;
         first blocks stay torchvision Bottlenecks.
Eq. (7-9) weight sharing inside a stage: the tied blocks of a stage use one ``W``
         (``share_1x1``) and, which the printed counts require (see
         ``reprolib.methods.pe.sharing_verdict``), one 3x3 kernel (``share_3x3``).  The
         ``G_i`` of the paper differ only through their own BatchNorms, which every block keeps.
``pe_stages`` picks the stages (1-4) that get eq. (6-9): (1, 2, 3, 4) = PE^1, (3, 4) = PE^2.
Shared tensors are one ``nn.Parameter`` reached from several modules, so ``parameters()``
yields it once and autograd sums the gradients of all its uses.  ``reprolib.save_compressed``
stores a shared tensor once; ``reprolib.load_compressed`` rebuilds the (tied) skeleton from
the builder's name and arguments and loads into it, so the ties survive a round trip.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import trunc_normal_
from timm.models.vision_transformer import VisionTransformer
from torchvision.models.resnet import Bottleneck, ResNet

from reprolib.errors import ReprolibError, check_number
from reprolib.core.registry import register_model

__all__ = ["PEAttention", "PEMlp", "PEBottleneck", "apply_pe", "vit_pe", "resnet_bottleneck",
           "RESNET50_LAYERS"]

RESNET50_LAYERS = (3, 4, 6, 3)  # bottleneck blocks per stage of ResNet-50


# --------------------------------------------------------------------------------------- ViT
class PEAttention(nn.Module):
    """Multi-head self-attention of eq. (1)-(2): two ``d x d`` matrices used four times.

    dim: token width ``d``.  num_heads: heads ``h`` (``d % h == 0``).  bias: keep the
    q/k/v/output bias vectors (default True, as DeiT).  attn_drop / proj_drop: dropout rates
    on the attention map / the output (default 0).
    """

    def __init__(self, dim: int, num_heads: int = 8, bias: bool = True, attn_drop: float = 0.0,
                 proj_drop: float = 0.0):
        super().__init__()
        if dim % num_heads:
            raise ReprolibError(f"dim={dim} is not divisible by num_heads={num_heads}")
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.w_q = nn.Parameter(torch.empty(dim, dim))   # W_q: Q = W_q x; output = W_q^T x_hat
        self.w_kv = nn.Parameter(torch.empty(dim, dim))  # W_kv: K = W_kv x; V = W_kv^T x
        self.b_q, self.b_k, self.b_v, self.b_o = (
            nn.Parameter(torch.zeros(dim)) if bias else None for _ in range(4))
        self.attn_drop, self.proj_drop = attn_drop, nn.Dropout(proj_drop)
        self.init_weights()

    def init_weights(self) -> None:
        """timm's ViT init (truncated normal, std 0.02; zero biases); timm calls this hook."""
        for w in (self.w_q, self.w_kv):
            trunc_normal_(w, std=0.02)
        for b in (self.b_q, self.b_k, self.b_v, self.b_o):
            if b is not None:
                nn.init.zeros_(b)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, **_) -> torch.Tensor:
        B, N, d = x.shape
        heads = lambda t: t.view(B, N, self.num_heads, self.head_dim).transpose(1, 2)
        q = heads(F.linear(x, self.w_q, self.b_q))        # eq. (1): W_q x (column space of W_q)
        k = heads(F.linear(x, self.w_kv, self.b_k))       # eq. (1): W_kv x
        v = heads(F.linear(x, self.w_kv.t(), self.b_v))   # eq. (1): W_kv^T x (row space of W_kv)
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask,
                                           dropout_p=self.attn_drop if self.training else 0.0)
        o = o.transpose(1, 2).reshape(B, N, d)
        return self.proj_drop(F.linear(o, self.w_q.t(), self.b_o))  # eq. (2): W_q^T x_hat


class PEMlp(nn.Module):
    """Feed-forward network of eq. (4): ``W^T F(W x + b1) + b2`` with one ``hidden x dim`` W.

    dim: token width.  hidden: hidden width (DeiT: 4 dim).  act_layer: ``F`` (default GELU).
    drop: dropout after the activation and after the output (default 0).
    """

    def __init__(self, dim: int, hidden: int, act_layer=nn.GELU, drop: float = 0.0):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(hidden, dim))  # W: fc1 = W, fc2 = W^T
        self.b1 = nn.Parameter(torch.zeros(hidden))
        self.b2 = nn.Parameter(torch.zeros(dim))
        self.act, self.drop = act_layer(), nn.Dropout(drop)
        self.init_weights()

    def init_weights(self) -> None:
        trunc_normal_(self.weight, std=0.02)
        nn.init.zeros_(self.b1)
        nn.init.zeros_(self.b2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.drop(self.act(F.linear(x, self.weight, self.b1)))   # F(W x + b1)
        return self.drop(F.linear(h, self.weight.t(), self.b2))      # W^T (.) + b2


def vit_pe(num_classes: int = 1000, img_size: int = 224, patch_size: int = 16,
           embed_dim: int = 384, depth: int = 12, num_heads: int = 6, mlp_ratio: float = 4.0,
           drop_path_rate: float = 0.0, drop_rate: float = 0.0, pe: bool = True,
           **kw) -> VisionTransformer:
    """A timm ``VisionTransformer`` whose blocks use eq. (1), (2) and (4) when ``pe``.

    num_classes: classifier outputs (default 1000).  img_size / patch_size: input and patch
    side in pixels (224 / 16).  embed_dim / depth / num_heads: token width, blocks, heads
    (384 / 12 / 6 = DeiT-S).  mlp_ratio: FFN hidden width over embed_dim (4).
    drop_path_rate: stochastic depth rate of the last block, linear in depth (0; DeiT: 0.1).
    drop_rate: dropout before the head (0).  pe: False builds the unshared twin (a plain
    timm ViT of the same geometry).  Other keywords go to ``VisionTransformer``.
    """
    check_number("drop_path_rate", drop_path_rate, 0.0, 1.0, hi_open=True)
    model = VisionTransformer(img_size=img_size, patch_size=patch_size, num_classes=num_classes,
                              embed_dim=embed_dim, depth=depth, num_heads=num_heads,
                              mlp_ratio=mlp_ratio, qkv_bias=True, drop_rate=drop_rate,
                              drop_path_rate=drop_path_rate, **kw)
    if pe:
        hidden = int(embed_dim * mlp_ratio)
        for blk in model.blocks:
            blk.attn = PEAttention(embed_dim, num_heads, bias=True)
            blk.mlp = PEMlp(embed_dim, hidden, act_layer=nn.GELU)
    return model


@register_model(paper="pe")
def vit_pe_small(num_classes: int = 1000, **kw) -> VisionTransformer:
    """ViT-PE with DeiT-S geometry (patch 16, dim 384, depth 12, 6 heads, MLP 1536, 224 px)."""
    return vit_pe(num_classes=num_classes, **kw)


@register_model(paper="pe")
def vit_small(num_classes: int = 1000, **kw) -> VisionTransformer:
    """The unshared twin of ``vit_pe_small``: DeiT-S (timm ``VisionTransformer``), no weights."""
    return vit_pe(num_classes=num_classes, pe=False, **kw)


_VIT_CIFAR = dict(img_size=32, patch_size=4, embed_dim=96, depth=6, num_heads=3)
_VIT_TEST = dict(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2)


@register_model(paper="pe")
def vit_pe_cifar(num_classes: int = 10, **kw) -> VisionTransformer:
    """Small ViT-PE for 32 px images (patch 4, dim 96, depth 6, 3 heads, MLP 384): CPU profile."""
    return vit_pe(num_classes=num_classes, **{**_VIT_CIFAR, **kw})


@register_model(paper="pe")
def vit_cifar_unshared(num_classes: int = 10, **kw) -> VisionTransformer:
    """Unshared twin of ``vit_pe_cifar``."""
    return vit_pe(num_classes=num_classes, pe=False, **{**_VIT_CIFAR, **kw})


@register_model(paper="pe")
def vit_pe_test(num_classes: int = 10, **kw) -> VisionTransformer:
    """Tiny ViT-PE for tests and smoke (32 px, patch 8, dim 32, depth 2, 2 heads)."""
    return vit_pe(num_classes=num_classes, **{**_VIT_TEST, **kw})


@register_model(paper="pe")
def vit_test_unshared(num_classes: int = 10, **kw) -> VisionTransformer:
    """Unshared twin of ``vit_pe_test``."""
    return vit_pe(num_classes=num_classes, pe=False, **{**_VIT_TEST, **kw})


# ------------------------------------------------------------------------------------ ResNet
class PEBottleneck(nn.Module):
    """Bottleneck of eq. (6): ``ReLU(BN3(W^T G(W x)) + x)``, ``G`` = BN1, ReLU, conv 3x3, BN2, ReLU.

    conv1: the 1x1 convolution holding ``W`` (``width x C``); its weight may be one shared
    Parameter.  conv2: the 3x3 convolution (possibly sharing its weight).  The block owns its
    three BatchNorms.  Only for ``C == 4 width``, stride 1, identity shortcut.
    """

    expansion = 4

    def __init__(self, conv1: nn.Conv2d, conv2: nn.Conv2d, bn1: nn.Module, bn2: nn.Module,
                 bn3: nn.Module):
        super().__init__()
        self.conv1, self.bn1, self.conv2, self.bn2, self.bn3 = conv1, bn1, conv2, bn2, bn3
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.conv1.weight                                   # (width, C, 1, 1)
        out = self.relu(self.bn1(self.conv1(x)))                # W x
        out = self.relu(self.bn2(self.conv2(out)))              # G(.)
        out = self.bn3(F.conv2d(out, w.transpose(0, 1)))        # W^T (.)  (C, width, 1, 1)
        return self.relu(out + x)


def apply_pe(model: nn.Module, pe_stages: Sequence[int] = (1, 2, 3, 4), share_1x1: bool = True,
             share_3x3: bool = True) -> nn.Module:
    """Turn the bottleneck stages ``model.layer1..layer4`` of a torchvision-style ResNet into PE.

    pe_stages: stages (1-based) that get eq. (6)-(9); (1, 2, 3, 4) = PE^1, (3, 4) = PE^2,
    () = unchanged.  share_1x1: the tied blocks of a stage (all but the first) use one ``W``
    (eq. 7-9; default True); False ties W / W^T inside each block only (eq. 6).
    share_3x3: those blocks also use one 3x3 kernel (default True; the paper's parameter
    counts need it).  The first block of each stage (projection shortcut, width change) is
    kept as it is.  Works in place and returns ``model``.
    """
    stages = sorted(set(pe_stages))
    for s in stages:
        if s not in (1, 2, 3, 4):
            raise ReprolibError(f"pe_stages={tuple(pe_stages)}: stages are 1, 2, 3, 4")
    for s in stages:
        layer: nn.Sequential = getattr(model, f"layer{s}")
        w1 = w3 = None
        for i in range(1, len(layer)):
            b = layer[i]
            if not isinstance(b, Bottleneck) or b.downsample is not None or \
                    b.conv1.in_channels != b.conv3.out_channels or b.conv2.groups != 1:
                raise ReprolibError(f"layer{s}[{i}] is not an identity bottleneck; eq. (6) needs "
                                    "input width == output width")
            if share_1x1:
                if w1 is None:
                    w1 = b.conv1.weight
                b.conv1.weight = w1                     # one Parameter for the whole stage
            if share_3x3:
                if w3 is None:
                    w3 = b.conv2.weight
                b.conv2.weight = w3
            layer[i] = PEBottleneck(b.conv1, b.conv2, b.bn1, b.bn2, b.bn3)  # conv3 dropped
    return model


class _SmallResNet(ResNet):
    """torchvision's ResNet with a configurable base width (``base`` instead of 64) and an
    optional 3x3 stem without max-pool for 32 px images (tiny test / CPU variants)."""

    def __init__(self, layers: Sequence[int], base: int, num_classes: int, small_stem: bool):
        nn.Module.__init__(self)
        self._norm_layer, self.dilation, self.groups, self.base_width = nn.BatchNorm2d, 1, 1, 64
        self.inplanes = base
        self.conv1 = (nn.Conv2d(3, base, 3, 1, 1, bias=False) if small_stem
                      else nn.Conv2d(3, base, 7, 2, 3, bias=False))
        self.bn1, self.relu = nn.BatchNorm2d(base), nn.ReLU(inplace=True)
        self.maxpool = nn.Identity() if small_stem else nn.MaxPool2d(3, 2, 1)
        for i, n in enumerate(layers):
            setattr(self, f"layer{i + 1}",
                    self._make_layer(Bottleneck, base * 2 ** i, n, stride=1 if i == 0 else 2))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(base * 2 ** (len(layers) - 1) * 4, num_classes)
        for m in self.modules():  # torchvision's init
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)


def resnet_bottleneck(num_classes: int = 1000, layers: Sequence[int] = RESNET50_LAYERS,
                      base: int = 64, small_stem: bool = False,
                      pe_stages: Sequence[int] = (), share_1x1: bool = True,
                      share_3x3: bool = True) -> ResNet:
    """A bottleneck ResNet (torchvision) with eq. (6)-(9) applied to ``pe_stages``.

    num_classes: classifier outputs (1000).  layers: blocks per stage (ResNet-50: 3, 4, 6, 3).
    base: channels of the stem and of stage 1's bottleneck (64 = torchvision; stage k has
    base 2^(k-1) bottleneck channels and 4x that output).  small_stem: 3x3 stride-1 stem, no
    max-pool, for 32 px inputs (False).  pe_stages / share_1x1 / share_3x3: see ``apply_pe``.
    """
    if len(layers) != 4:
        raise ReprolibError(f"layers={tuple(layers)}: a ResNet here has 4 stages")
    if tuple(layers) == RESNET50_LAYERS and base == 64 and not small_stem:
        from torchvision.models import resnet50 as tv_resnet50
        model = tv_resnet50(weights=None, num_classes=num_classes)
    else:
        model = _SmallResNet(layers, base, num_classes, small_stem)
    return apply_pe(model, pe_stages, share_1x1, share_3x3)


@register_model(paper="pe")
def resnet50_pe(num_classes: int = 1000, pe_stages: Sequence[int] = (1, 2, 3, 4),
                share_1x1: bool = True, share_3x3: bool = True, **kw) -> ResNet:
    """ResNet50-PE: torchvision ResNet-50 with eq. (6)-(9) in ``pe_stages`` ((3, 4) = PE^2)."""
    return resnet_bottleneck(num_classes, pe_stages=pe_stages, share_1x1=share_1x1,
                             share_3x3=share_3x3, **kw)


@register_model(paper="pe")
def resnet50(num_classes: int = 1000, **kw) -> ResNet:
    """The unshared twin: torchvision's ResNet-50, no weights."""
    return resnet_bottleneck(num_classes, **kw)


_RES_TEST = dict(layers=(2, 3, 3, 2), base=8, small_stem=True)
_RES_CIFAR = dict(layers=RESNET50_LAYERS, base=16, small_stem=True)


@register_model(paper="pe")
def resnet50_pe_cifar(num_classes: int = 10, pe_stages: Sequence[int] = (1, 2, 3, 4),
                      **kw) -> ResNet:
    """ResNet-50 depth (3, 4, 6, 3) at a quarter width (base 16), 32 px stem, with PE."""
    return resnet_bottleneck(num_classes, pe_stages=pe_stages, **{**_RES_CIFAR, **kw})


@register_model(paper="pe")
def resnet50_cifar_unshared(num_classes: int = 10, **kw) -> ResNet:
    """Unshared twin of ``resnet50_pe_cifar``."""
    return resnet_bottleneck(num_classes, **{**_RES_CIFAR, **kw})


@register_model(paper="pe")
def resnet_pe_test(num_classes: int = 10, pe_stages: Sequence[int] = (1, 2, 3, 4),
                   **kw) -> ResNet:
    """Tiny bottleneck ResNet with PE for tests (stages 2, 3, 3, 2; base 8; 32 px)."""
    return resnet_bottleneck(num_classes, pe_stages=pe_stages, **{**_RES_TEST, **kw})


@register_model(paper="pe")
def resnet_test_unshared(num_classes: int = 10, **kw) -> ResNet:
    """Unshared twin of ``resnet_pe_test``."""
    return resnet_bottleneck(num_classes, **{**_RES_TEST, **kw})
