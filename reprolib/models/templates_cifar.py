"""the width rules that give their per-layer filter counts (section 3).

The networks (section "Convolutional network models"): VGG-19, ResNet-50, Inception
(GoogLeNet) and MobileNet v1 in the common 32x32 CIFAR forms (the layouts of
kuangliu/pytorch-cifar; at 10 classes 20.04 M, 23.52 M, 6.17 M and 3.22 M parameters, the
paper's 20.0 / 23.5 / 6.2 / 3.2 M).  Every model is built from a list of per-layer counts
``filters`` (``f_1..f_D`` of section 3), so any distribution builds; the registered builders
take ``template=`` and ``width=`` and compute that list with :func:`distribution`.

What one "layer" ``f_l`` is in each network (the paper takes "blocks as single layers"):

* VGG-19 (D = 16): the output channels of each 3x3 convolution.
* ResNet-50 (D = 16 bottleneck blocks; the 3x3 stem convolution, 64 filters, is not
  redistributed): ``f_l`` is the block's bottleneck width ``w``; its convolutions are
  1x1 (in -> w), 3x3 (w -> w, the block's stride) and 1x1 (w -> 4w), i.e. the expansion 4 of
  the original block is kept.  A 1x1 projection shortcut is used wherever the stride is not
  1 or the input width differs from ``4w`` (as in the original, where only a stage's first
  block has one; a redistributed model may need more).  ``unit="stage"`` instead takes
  the four stages as the layers (D = 4, every block of a stage with the stage's width; the
  reading of the paper's Figure 1 caption, "filters per sets of residual blocks").
* Inception / GoogLeNet (D = 9 Inception modules; the 3x3 stem convolution, 192 filters, is
  not redistributed): ``f_l`` is the module's output channels ``n1x1 + n3x3 + n5x5 + pool``.
  A new count ``f'_l`` is split over the four branches in the original module's ratio
  (largest-remainder rounding, so the concatenation has exactly ``f'_l`` channels), and the
  two reduction convolutions (``n3x3red``, ``n5x5red``) are scaled by the same ``f'_l / f_l``.
* MobileNet v1 (D = 14): the 3x3 stem convolution and the pointwise (1x1) convolution of each
  of the 13 depthwise-separable blocks; a depthwise convolution has as many channels as its
  input.

The width multiplier scales every layer, including the stems that the templates leave
alone (ResNet-50's 64 and GoogLeNet's 192 filters become ``max(1, round(w * stem))``); an
explicit ``filters=`` list keeps the base stem.  Strides, pooling, kernel sizes and the
classifier stay as in the base model; only channel
counts change, so a redistributed or width-scaled model is a physically different network.

The registered builders (``create_model("vgg19_cifar", template=..., width=...)``) apply the
width rules of section 3 and live with them in ``reprolib.methods.templates``; this module
holds the networks, built from explicit per-layer counts (:func:`build`).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

import numpy as np

from reprolib.errors import ReprolibError, check_number, choose

# ---------------------------------------------------------------------------------------
# Base architectures as data
# ---------------------------------------------------------------------------------------

#: VGG-19: the 16 conv widths; a 2x2 max-pool follows the convs at these (0-based) indices.
VGG19_FILTERS = [64, 64, 128, 128, 256, 256, 256, 256, 512, 512, 512, 512, 512, 512, 512, 512]
VGG19_POOL_AFTER = (1, 3, 7, 11, 15)

#: ResNet-50: stem width, per-block bottleneck widths ([3, 4, 6, 3] blocks) and strides.
RESNET50_STEM = 64
RESNET50_FILTERS = [64] * 3 + [128] * 4 + [256] * 6 + [512] * 3
RESNET50_STRIDES = [1, 1, 1] + [2, 1, 1, 1] + [2, 1, 1, 1, 1, 1] + [2, 1, 1]
RESNET50_EXPANSION = 4
RESNET50_STAGE_BLOCKS = (3, 4, 6, 3)

#: GoogLeNet: stem width and the 9 Inception modules
#: (n1x1, n3x3red, n3x3, n5x5red, n5x5, pool_proj); a 3x3/2 max-pool precedes modules 2 and 7
#: (0-based), i.e. after b3 and after e4.
GOOGLENET_STEM = 192
GOOGLENET_MODULES = [
    (64, 96, 128, 16, 32, 32),      # a3 -> 256
    (128, 128, 192, 32, 96, 64),    # b3 -> 480
    (192, 96, 208, 16, 48, 64),     # a4 -> 512
    (160, 112, 224, 24, 64, 64),    # b4 -> 512
    (128, 128, 256, 24, 64, 64),    # c4 -> 512
    (112, 144, 288, 32, 64, 64),    # d4 -> 528
    (256, 160, 320, 32, 128, 128),  # e4 -> 832
    (256, 160, 320, 32, 128, 128),  # a5 -> 832
    (384, 192, 384, 48, 128, 128),  # b5 -> 1024
]
GOOGLENET_POOL_BEFORE = (2, 7)
GOOGLENET_FILTERS = [m[0] + m[2] + m[4] + m[5] for m in GOOGLENET_MODULES]

#: MobileNet v1: stem conv width then the 13 pointwise widths, with the depthwise strides.
MOBILENET_FILTERS = [32, 64, 128, 128, 256, 256, 512, 512, 512, 512, 512, 512, 1024, 1024]
MOBILENET_STRIDES = [1, 1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1]   # [0] is the stem's stride

#: Divisor of the base widths for the tiny test variants (same depth, same code paths).
TINY_DIVISOR = 8


# ---------------------------------------------------------------------------------------
# Modules
# ---------------------------------------------------------------------------------------

def round_preserving_sum(values: Sequence[float], total: int, minimum: int = 1) -> list[int]:
    """Round ``values`` to integers that sum to ``total`` (largest-remainder rule), each
    at least ``minimum``.

    Args:
        values: real-valued per-layer counts whose sum is ``total`` (up to float error).
        total: the integer sum to keep (the base model's F).
        minimum: the fewest filters a layer may have (default 1).
    """
    v = np.asarray(values, dtype=np.float64)
    out = np.floor(v + 1e-9).astype(np.int64)
    rest = int(total - out.sum())
    if rest > 0:
        frac = v - out
        # ties (equal fractional parts, e.g. the mirror layers of a parabola): larger layer
        # first, then earlier layer, so symmetric solutions stay symmetric where possible
        order = sorted(range(len(v)), key=lambda i: (-round(frac[i], 9), -out[i], i))
        for i in order[:rest]:
            out[i] += 1
    elif rest < 0:  # float error only: take the excess from the largest layers
        for i in sorted(range(len(v)), key=lambda i: (-out[i], i))[:-rest]:
            out[i] -= 1
    if total < minimum * len(out):
        raise ReprolibError(f"{total} filters cannot give {len(out)} layers {minimum} each")
    # Keep every layer at >= minimum filters, taking the deficit from the largest layers.
    low = out < minimum
    if low.any():
        need = int((minimum - out[low]).sum())
        out[low] = minimum
        out = _take_from_largest(out, need)
    return [int(x) for x in out]


def _take_from_largest(out: np.ndarray, need: int) -> np.ndarray:
    """``out`` after ``need`` times "one filter less in the largest layer (the earlier one on
    ties)", in O(D log need) instead of O(need D): every layer above a level T is cut to T,
    then the first remaining ones at T lose one more."""
    def removed(t):              # filters taken when every layer is cut to at most t
        return int(np.maximum(out - t, 0).sum())

    lo, hi = int(out.min()) - need, int(out.max())   # removed(lo) >= need >= removed(hi) = 0
    while lo < hi:                                   # smallest t with removed(t) <= need
        mid = (lo + hi) // 2
        if removed(mid) <= need:
            hi = mid
        else:
            lo = mid + 1
    new = np.minimum(out, lo)
    k = need - removed(lo)
    new[np.flatnonzero(new == lo)[:k]] -= 1
    return new


def scale_group(counts: Sequence[int], target: int) -> list[int]:
    """Map one block/module's new count onto its inner convolutions, keeping their ratios.

    The block's original inner widths ``counts`` (summing to ``S``) are scaled by
    ``target / S`` and rounded with the largest-remainder rule so they sum to ``target``
    exactly, each at least one filter.  Used for the four branches of an Inception module
    (and, with the same factor, its reduction convolutions).

    Args:
        counts: the block's original inner widths (e.g. Inception's n1x1, n3x3, n5x5, pool).
        target: the block's new total (>= len(counts)).
    """
    s = float(sum(counts))
    target = max(int(target), len(counts))
    return round_preserving_sum([c * target / s for c in counts], target)


def scale_one(count: int, ratio: float) -> int:
    """``max(1, round(count * ratio))``: an inner convolution scaled with its block."""
    return max(1, int(round(count * ratio)))


def _conv_bn_relu(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1,
                  bias: bool = False) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=bias),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class VGGCifar(nn.Module):
    """VGG with BN for 32x32 inputs: 3x3 conv (bias) + BN + ReLU layers, 2x2 max-pools, one
    Linear classifier on the 1x1 map."""

    def __init__(self, filters: Sequence[int], num_classes: int = 10,
                 pool_after: Sequence[int] = VGG19_POOL_AFTER):
        super().__init__()
        self.filters = [int(f) for f in filters]
        layers: list[nn.Module] = []
        cin = 3
        for i, f in enumerate(self.filters):
            layers.append(_conv_bn_relu(cin, f, 3, bias=True))
            if i in pool_after:
                layers.append(nn.MaxPool2d(2, 2))
            cin = f
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class Bottleneck(nn.Module):
    """ResNet bottleneck: 1x1 (cin -> w), 3x3 (w -> w, stride), 1x1 (w -> expansion*w), plus
    the identity or a 1x1 projection shortcut."""

    def __init__(self, cin: int, width: int, stride: int = 1, expansion: int = 4):
        super().__init__()
        cout = expansion * width
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                          nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + self.shortcut(x))


class ResNetCifar(nn.Module):
    """ResNet with a 3x3 stem for 32x32 inputs, one bottleneck per entry of ``filters``."""

    def __init__(self, filters: Sequence[int], num_classes: int = 10, stem: int = RESNET50_STEM,
                 strides: Sequence[int] = RESNET50_STRIDES, expansion: int = RESNET50_EXPANSION):
        super().__init__()
        if len(filters) != len(strides):
            raise ReprolibError(f"ResNet needs {len(strides)} block widths, got {len(filters)}")
        self.filters = [int(f) for f in filters]
        self.stem = _conv_bn_relu(3, stem, 3)
        blocks, cin = [], stem
        for w, s in zip(self.filters, strides):
            blocks.append(Bottleneck(cin, w, s, expansion))
            cin = expansion * w
        self.blocks = nn.Sequential(*blocks)
        self.classifier = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.stem(x))
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class Inception(nn.Module):
    """GoogLeNet Inception module (CIFAR form): 1x1 | 1x1-3x3 | 1x1-3x3-3x3 | pool-1x1,
    each conv followed by BN + ReLU (conv bias kept, as in the common CIFAR code)."""

    def __init__(self, cin: int, n1: int, n3red: int, n3: int, n5red: int, n5: int, pool: int):
        super().__init__()
        self.b1 = _conv_bn_relu(cin, n1, 1, bias=True)
        self.b2 = nn.Sequential(_conv_bn_relu(cin, n3red, 1, bias=True),
                                _conv_bn_relu(n3red, n3, 3, bias=True))
        self.b3 = nn.Sequential(_conv_bn_relu(cin, n5red, 1, bias=True),
                                _conv_bn_relu(n5red, n5, 3, bias=True),
                                _conv_bn_relu(n5, n5, 3, bias=True))
        self.b4 = nn.Sequential(nn.MaxPool2d(3, 1, 1), _conv_bn_relu(cin, pool, 1, bias=True))
        self.out_channels = n1 + n3 + n5 + pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b1(x), self.b2(x), self.b3(x), self.b4(x)], 1)


def inception_specs(filters: Sequence[int], base: Sequence[tuple] = GOOGLENET_MODULES
                    ) -> list[tuple[int, ...]]:
    """Map per-module output counts ``filters`` onto each module's six convolution widths.

    The branch outputs (n1x1, n3x3, n5x5, pool) keep the base module's ratio and sum to
    ``filters[l]`` exactly; the reductions (n3x3red, n5x5red) scale by ``filters[l] / f_l``.

    Args:
        filters: new output channels per module (``len(base)`` entries, each >= 4).
        base: the base modules' ``(n1x1, n3x3red, n3x3, n5x5red, n5x5, pool)`` widths.
    """
    if len(filters) != len(base):
        raise ReprolibError(f"GoogLeNet needs {len(base)} module widths, got {len(filters)}")
    specs = []
    for f, (n1, r3, n3, r5, n5, p) in zip(filters, base):
        f = max(int(f), 4)
        ratio = f / (n1 + n3 + n5 + p)
        b1, b3, b5, bp = scale_group([n1, n3, n5, p], f)
        specs.append((b1, scale_one(r3, ratio), b3, scale_one(r5, ratio), b5, bp))
    return specs


class GoogLeNetCifar(nn.Module):
    """GoogLeNet for 32x32 inputs: 3x3 stem, 9 Inception modules, two 3x3/2 max-pools,
    global average pooling and one Linear classifier."""

    def __init__(self, filters: Sequence[int], num_classes: int = 10, stem: int = GOOGLENET_STEM,
                 base_modules: Sequence[tuple] = GOOGLENET_MODULES,
                 pool_before: Sequence[int] = GOOGLENET_POOL_BEFORE):
        super().__init__()
        self.specs = inception_specs(filters, base_modules)
        self.filters = [s[0] + s[2] + s[4] + s[5] for s in self.specs]
        self.stem = _conv_bn_relu(3, stem, 3, bias=True)
        mods: list[nn.Module] = []
        cin = stem
        for i, spec in enumerate(self.specs):
            if i in pool_before:
                mods.append(nn.MaxPool2d(3, 2, 1))
            m = Inception(cin, *spec)
            mods.append(m)
            cin = m.out_channels
        self.modules_ = nn.Sequential(*mods)
        self.classifier = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.modules_(self.stem(x))
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class MobileNetCifar(nn.Module):
    """MobileNet v1 for 32x32 inputs: 3x3 stem conv, 13 depthwise-separable blocks
    (3x3 depthwise + BN + ReLU, 1x1 pointwise + BN + ReLU), global average pool, Linear."""

    def __init__(self, filters: Sequence[int], num_classes: int = 10,
                 strides: Sequence[int] = MOBILENET_STRIDES):
        super().__init__()
        if len(filters) != len(strides):
            raise ReprolibError(f"MobileNet needs {len(strides)} widths, got {len(filters)}")
        self.filters = [int(f) for f in filters]
        self.stem = _conv_bn_relu(3, self.filters[0], 3, strides[0])
        blocks, cin = [], self.filters[0]
        for f, s in zip(self.filters[1:], strides[1:]):
            blocks.append(nn.Sequential(_conv_bn_relu(cin, cin, 3, s, groups=cin),
                                        _conv_bn_relu(cin, f, 1)))
            cin = f
        self.blocks = nn.Sequential(*blocks)
        self.classifier = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.stem(x))
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


# ---------------------------------------------------------------------------------------
# Registry: name -> (class, base per-layer counts, fixed kwargs)
# ---------------------------------------------------------------------------------------

def _tiny(xs: Sequence[int]) -> list[int]:
    return [max(1, math.ceil(x / TINY_DIVISOR)) for x in xs]


def _tiny_modules(mods):
    return [tuple(max(1, math.ceil(x / TINY_DIVISOR)) for x in m) for m in mods]


_TINY_GOOGLENET = _tiny_modules(GOOGLENET_MODULES)

#: Every architecture of this paper: base per-layer counts and how to build it.
ARCHS: dict[str, dict] = {
    "vgg19_cifar": dict(cls=VGGCifar, filters=VGG19_FILTERS, kw={}),
    "resnet50_cifar": dict(cls=ResNetCifar, filters=RESNET50_FILTERS, kw={},
                           stem=RESNET50_STEM),
    "googlenet_cifar": dict(cls=GoogLeNetCifar, filters=GOOGLENET_FILTERS, kw={},
                            stem=GOOGLENET_STEM),
    "mobilenet_cifar": dict(cls=MobileNetCifar, filters=MOBILENET_FILTERS, kw={}),
    "vgg19_cifar_tiny": dict(cls=VGGCifar, filters=_tiny(VGG19_FILTERS), kw={}),
    "resnet50_cifar_tiny": dict(cls=ResNetCifar, filters=_tiny(RESNET50_FILTERS),
                                kw={}, stem=RESNET50_STEM // TINY_DIVISOR),
    "googlenet_cifar_tiny": dict(cls=GoogLeNetCifar,
                                 filters=[m[0] + m[2] + m[4] + m[5] for m in _TINY_GOOGLENET],
                                 kw=dict(base_modules=_TINY_GOOGLENET),
                                 stem=GOOGLENET_STEM // TINY_DIVISOR),
    "mobilenet_cifar_tiny": dict(cls=MobileNetCifar, filters=_tiny(MOBILENET_FILTERS), kw={}),
}

#: The paper's four models, in the order of its tables.
PAPER_MODELS = ("vgg19_cifar", "resnet50_cifar", "googlenet_cifar", "mobilenet_cifar")


def base_filters(name: str) -> list[int]:
    """The base model's per-layer counts ``f_1..f_D`` (see the module docstring)."""
    if name not in ARCHS:
        raise ReprolibError(f"unknown templates model {name!r}; valid: {', '.join(ARCHS)}")
    return list(ARCHS[name]["filters"])


def build(name: str, filters: Sequence[int], num_classes: int = 10,
          stem: int | None = None) -> nn.Module:
    """The network ``name`` (a key of ``ARCHS``) with explicit per-layer counts ``filters``
    (``f_1..f_D``) and, for ResNet-50 / GoogLeNet, a stem width (default: the base one)."""
    if name not in ARCHS:
        raise ReprolibError(f"unknown templates model {name!r}; valid: {', '.join(ARCHS)}")
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ReprolibError(f"num_classes={num_classes!r} must be a positive integer")
    spec = ARCHS[name]
    fs = [int(f) for f in filters]
    if len(fs) != len(spec["filters"]):
        raise ReprolibError(f"{name} has D={len(spec['filters'])} layers, got {len(fs)} counts")
    kw = dict(spec["kw"])
    if "stem" in spec:
        kw["stem"] = int(stem) if stem is not None else spec["stem"]
    return spec["cls"](fs, num_classes=num_classes, **kw)
