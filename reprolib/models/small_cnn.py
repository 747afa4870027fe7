"""A small VGG-style CNN with a width multiplier, for the quickstart notebook and tests.

Three stages of two 3x3 conv + BN + ReLU layers (widths 32, 64, 128 times ``width``), 2x2 max
pooling after each stage, global average pooling and a linear classifier.  Its parameter count
has a closed form (``small_cnn_params``), which the tests check against ``count_params``.
"""

from __future__ import annotations

import torch.nn as nn

from reprolib.errors import check_number
from reprolib.core.registry import register_model

BASE_WIDTHS = (32, 64, 128)  # filters per stage at width 1.0


def stage_widths(width: float) -> list[int]:
    return [max(1, round(w * width)) for w in BASE_WIDTHS]


class SmallCNN(nn.Module):
    def __init__(self, num_classes: int = 10, width: float = 1.0, in_chans: int = 3):
        super().__init__()
        check_number("width", width, 0, 16, lo_open=True)
        layers, c = [], in_chans
        for w in stage_widths(width):
            for _ in range(2):
                layers += [nn.Conv2d(c, w, 3, padding=1, bias=False), nn.BatchNorm2d(w),
                           nn.ReLU(inplace=True)]
                c = w
            layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(c, num_classes)

    def forward(self, x):
        return self.head(self.pool(self.features(x)).flatten(1))


def small_cnn_params(num_classes: int = 10, width: float = 1.0, in_chans: int = 3) -> int:
    """Closed-form parameter count of :class:`SmallCNN`."""
    total, c = 0, in_chans
    for w in stage_widths(width):
        for _ in range(2):
            total += 9 * c * w + 2 * w  # conv (no bias) + BN weight and bias
            c = w
    return total + c * num_classes + num_classes


@register_model
def small_cnn(num_classes: int = 10, width: float = 1.0, **kw) -> nn.Module:
    """Quickstart CNN; ``width`` multiplies every layer's filter count (0 < width <= 16)."""
    return SmallCNN(num_classes, width, **kw)


@register_model
def test_small_cnn(num_classes: int = 10, **kw) -> nn.Module:
    """A quarter-width SmallCNN for tests."""
    return SmallCNN(num_classes, 0.25, **kw)
