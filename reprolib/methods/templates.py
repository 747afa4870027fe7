"""Filter redistribution templates (anonymous, "Filter redistribution templates for
iteration-less convolutional model reduction", ICLR 2020 submission; ``papers/templates.md``):
the width rules of section 3, and the registered builders that apply them to the four CIFAR
networks of ``reprolib.models.templates_cifar``.

    redistribute([64, 64, 128, 128], "uniform")      # -> [96, 96, 96, 96]
    distribution(filters, "quadratic", width=0.5)    # template, then width multiplier
    create_model("vgg19_cifar", template="uniform", width=0.5)

The width rules.  A base model has ``D`` convolutional layers (blocks and modules count as
one layer each, section 3: "taking blocks as single layers") with ``f_l`` filters, total
``F = sum f_l``.  A template redistributes ``F`` over the ``D`` layers; a *width multiplier*
then scales every layer.  The templates of section 3 (l = 1..D, f_min = min_l f_l):

* ``base``               f'_l = f_l                                  (the original model)
* ``reverse``            f'_l = f_{D-l+1}
* ``uniform``            f'_l = F / D
* ``quadratic``          f'_l = a l^2 + b l + c with
                           (i)   (D^3/3 + D^2/2 + D/6) a + (D^2/2 + D/2) b + D c = F
                           (ii)  f'_{D/2} = f_min      (the vertex value)
                           (iii) (D^2 - 1) a + (D - 1) b = 0   (f'_1 = f'_D)
* ``negative_quadratic`` f'_l = a l^2 + b l + c with (i) and
                           (ii)  a + b + c = f_min,   (iii) D^2 a + D b + c = f_min.

Equation (ii) of the quadratic template is printed as ``D^2/2 a + D/2 b + c = f_min``; the
value of ``a l^2 + b l + c`` at ``l = D/2`` is ``D^2/4 a + D/2 b + c``, so we solve with
``D^2/4`` (the printed coefficient contradicts the template's own definition and would not
put f_min at the middle layer).  With (iii) the parabola's axis is ``l = (D+1)/2``, so for even
``D`` both middle layers ``D/2`` and ``D/2 + 1`` hold exactly ``f_min``.

Rounding (not specified in the paper): the real-valued solution is rounded to integers by
the largest-remainder rule (floor every layer, then give one more filter to the layers with
the largest fractional parts; on ties the larger, then the earlier layer first), so the
integer counts sum to exactly ``F``; no layer goes below one filter (a deficit is taken
from the largest layers).

Width multiplier: ``f''_l = max(1, round(w * f'_l))`` for every layer (round half to even,
Python's ``round``); the classifier keeps its ``num_classes`` outputs.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch.nn as nn

from reprolib.errors import ReprolibError, check_number, choose
from reprolib.models import templates_cifar as networks
from reprolib.models.templates_cifar import (PAPER_MODELS, round_preserving_sum,  # noqa: F401
                                             scale_group, scale_one)
from reprolib.core.registry import register_model

# ---------------------------------------------------------------------------------------
# The width rules (section 3): templates, rounding, width multiplier
# ---------------------------------------------------------------------------------------

#: The five filter distributions of section 3 (``base`` is the unmodified model).
TEMPLATES: tuple[str, ...] = ("base", "reverse", "uniform", "quadratic", "negative_quadratic")

#: The width multipliers of section 4 ("Template effect with similar resources").
PAPER_WIDTHS: tuple[float, ...] = (1.6, 1.3, 1.0, 0.8, 0.5, 0.25, 0.1, 0.05)

#: Valid range of the width multiplier: (0, WIDTH_MAX].
WIDTH_MAX = 4.0


def check_template(template: str) -> str:
    """Raise ``ReprolibError`` naming the valid templates unless ``template`` is one."""
    choose("template", template, TEMPLATES)
    return template


def check_width(width: float) -> float:
    """Raise ``ReprolibError`` unless ``0 < width <= WIDTH_MAX`` (the paper uses 0.05..1.6)."""
    if isinstance(width, bool) or not isinstance(width, (int, float)):
        raise ReprolibError(f"width={width!r} must be a number in (0, {WIDTH_MAX}]; "
                            f"the paper's widths: {', '.join(map(str, PAPER_WIDTHS))}")
    check_number("width", float(width), 0.0, WIDTH_MAX, lo_open=True)
    return float(width)


def check_filters(filters) -> list[int]:
    """``filters`` as a list of ints: a non-empty sequence of positive whole counts (a
    fractional count such as 2.7, or a bool, is an error, not truncated)."""
    try:
        f = list(filters)
    except TypeError:
        raise ReprolibError(f"filters={filters!r} must be a list of per-layer counts") from None
    bad = [x for x in f if isinstance(x, bool) or not isinstance(x, (int, float, np.integer,
                                                                          np.floating))
           or not np.isfinite(x) or x != int(x) or x < 1]
    if not f or bad:
        raise ReprolibError(f"filters must be a non-empty list of positive whole counts, got "
                            f"{bad[0]!r} in {list(filters)[:8]!r}" if bad else
                            "filters must be a non-empty list of positive whole counts, got []")
    return [int(x) for x in f]


def quadratic_coefficients(filters: Sequence[int], template: str) -> tuple[float, float, float]:
    """Solve the paper's 3x3 linear system for ``(a, b, c)`` of ``f'_l = a l^2 + b l + c``.

    Args:
        filters: the base per-layer filter counts ``f_1..f_D`` (``D >= 3``).
        template: ``"quadratic"`` (vertex value f_min at l = D/2, equal ends) or
            ``"negative_quadratic"`` (both ends f_min).
    """
    D = len(filters)
    if D < 3:
        raise ReprolibError(f"the {template} template needs at least 3 layers, got D={D} "
                            "(its 3x3 system is singular for D < 3)")
    F, fmin = float(sum(filters)), float(min(filters))
    total = [D**3 / 3 + D**2 / 2 + D / 6, D**2 / 2 + D / 2, D]   # (i): sum_l f'_l = F
    if template == "quadratic":
        A = [total, [D**2 / 4, D / 2, 1.0], [D**2 - 1, D - 1, 0.0]]
        y = [F, fmin, 0.0]
    elif template == "negative_quadratic":
        A = [total, [1.0, 1.0, 1.0], [D**2, D, 1.0]]
        y = [F, fmin, fmin]
    else:
        raise ReprolibError(f"{template!r} is not a quadratic template; "
                            "valid: quadratic, negative_quadratic")
    a, b, c = np.linalg.solve(np.array(A, dtype=np.float64), np.array(y, dtype=np.float64))
    return float(a), float(b), float(c)


def real_distribution(filters: Sequence[int], template: str) -> list[float]:
    """The template's real-valued counts ``f'_l`` before rounding (see the module docstring).

    Args:
        filters: base per-layer filter counts (positive integers), ``D = len(filters)``.
        template: one of ``TEMPLATES``.
    """
    check_template(template)
    f = check_filters(filters)
    D = len(f)
    if template == "base":
        return [float(x) for x in f]
    if template == "reverse":
        return [float(x) for x in f[::-1]]
    if template == "uniform":
        return [sum(f) / D] * D
    if D < 3:  # the 3x3 systems are singular for D < 3
        raise ReprolibError(f"the {template} template needs at least 3 layers, got D={D}")
    a, b, c = quadratic_coefficients(f, template)
    return [a * l * l + b * l + c for l in range(1, D + 1)]


def redistribute(filters: list[int], template: str) -> list[int]:
    """Redistribute the per-layer filter counts ``filters`` with ``template`` (section 3).

    The total ``F = sum(filters)`` is kept exactly (largest-remainder rounding, every layer
    at least one filter).

    Args:
        filters: the base model's filters per layer ``f_1..f_D`` (a block or module counts
            as one layer); ``D = len(filters)``.  The classifier is not included.
        template: one of ``TEMPLATES``: ``"base"``, ``"reverse"``, ``"uniform"``,
            ``"quadratic"``, ``"negative_quadratic"``.

    Returns:
        The new per-layer counts ``f'_1..f'_D`` (a list of ints summing to ``F``).
    """
    check_template(template)
    f = check_filters(filters)
    if template == "base":
        return list(f)
    if template == "reverse":
        return f[::-1]
    return round_preserving_sum(real_distribution(f, template), sum(f))


def apply_width(filters: Sequence[int], width: float = 1.0) -> list[int]:
    """Scale every layer's count by the width multiplier: ``max(1, round(width * f_l))``.

    Args:
        filters: per-layer counts (after the template).
        width: the width multiplier, in (0, 4]; 1.0 leaves the counts unchanged.  The paper
            uses 1.6, 1.3, 1.0, 0.8, 0.5, 0.25, 0.1, 0.05.
    """
    w = check_width(width)
    return [max(1, int(round(w * x))) for x in check_filters(filters)]


def distribution(filters: Sequence[int], template: str = "base", width: float = 1.0) -> list[int]:
    """``apply_width(redistribute(filters, template), width)``: a model's per-layer counts.

    Args:
        filters: the base per-layer counts.
        template: one of ``TEMPLATES`` (default ``"base"``).
        width: width multiplier in (0, 4] (default 1.0).
    """
    check_width(width)
    return apply_width(redistribute(list(filters), template), width)


def template_table(filters: Sequence[int]) -> dict[str, list[int]]:
    """Every template's per-layer counts for ``filters`` (the data of the paper's Figure 2).

    Args:
        filters: the base per-layer counts ``f_1..f_D`` (e.g. VGG-19's 16 conv widths).

    Returns:
        ``{template: [f'_1, ..., f'_D]}`` for every name in ``TEMPLATES``, in that order.
    """
    return {t: redistribute(list(filters), t) for t in TEMPLATES}


# ---------------------------------------------------------------------------------------
# The registered builders: a network with a template and a width multiplier applied
# ---------------------------------------------------------------------------------------

base_filters = networks.base_filters


def model_filters(name: str, template: str = "base", width: float = 1.0) -> list[int]:
    """The per-layer counts of ``name`` after ``template`` and the width multiplier ``width``.

    Args:
        name: a key of ``ARCHS`` (e.g. ``"vgg19_cifar"``).
        template: one of ``TEMPLATES`` (default ``"base"``).
        width: width multiplier in (0, 4] applied after the template (default 1.0).
    """
    return distribution(networks.base_filters(name), template, width)


UNITS = ("block", "stage")


def stage_filters(name: str, template: str = "base", width: float = 1.0) -> list[int]:
    """ResNet-50 with ``unit="stage"``: redistribute the 4 stage widths (D = 4), then give
    every block of a stage its stage's width.  Returns the 16 per-block widths."""
    if not name.startswith("resnet50_cifar"):
        raise ReprolibError(f"unit='stage' exists only for resnet50_cifar*, not {name!r}")
    blocks = networks.base_filters(name)
    starts = [sum(networks.RESNET50_STAGE_BLOCKS[:i]) for i in range(len(networks.RESNET50_STAGE_BLOCKS))]
    per_stage = distribution([blocks[s] for s in starts], template, width)
    return [w for w, k in zip(per_stage, networks.RESNET50_STAGE_BLOCKS) for _ in range(k)]


def build(name: str, num_classes: int = 10, template: str = "base", width: float = 1.0,
          filters: Sequence[int] | None = None, unit: str = "block") -> nn.Module:
    """Build ``name`` with the given distribution; ``filters`` (if given) overrides
    ``template``/``width`` with explicit per-layer counts (an architecture as data);
    ``unit`` ("block" or, for ResNet-50 only, "stage") says what one layer ``f_l`` is."""
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ReprolibError(f"num_classes={num_classes!r} must be a positive integer")
    if unit not in UNITS:
        raise ReprolibError(f"unknown unit {unit!r}; valid units: {', '.join(UNITS)}")
    spec = networks.ARCHS[name]
    if filters is not None:
        fs = list(filters)
    elif unit == "stage":
        fs = stage_filters(name, template, width)
    else:
        fs = model_filters(name, template, width)
    if len(fs) != len(spec["filters"]):
        raise ReprolibError(f"{name} has D={len(spec['filters'])} layers, got {len(fs)} counts")
    stem = None
    if "stem" in spec and filters is None:
        # the width multiplier scales every layer (section 4), the fixed stem included
        stem = max(1, int(round(float(width) * spec["stem"])))
    model = networks.build(name, fs, num_classes, stem)
    model.arch = dict(name=name, template=template if filters is None else "custom",
                      width=float(width) if filters is None else None, filters=list(model.filters),
                      num_classes=num_classes, unit=unit)
    return model


def _check_args(name: str, unused: dict) -> None:
    if unused:
        raise ReprolibError(f"{name}: unknown arguments {sorted(unused)}; valid: "
                            "num_classes, template, width, filters, unit")


# Each builder: ``num_classes`` classifier outputs (10 for CIFAR-10, 100 for CIFAR-100);
# ``template`` one of ``TEMPLATES`` (default "base"); ``width`` a multiplier in (0, 4] applied
# after the template; ``filters`` explicit per-layer counts (override template and width);
# ``unit`` what one layer of the template is: "block" (default, see the module docstring) or,
# for ResNet-50 only, "stage" (D = 4).

@register_model(paper="templates")
def vgg19_cifar(num_classes: int = 10, template: str = "base", width: float = 1.0,
                filters: Sequence[int] | None = None, unit: str = "block", **_unused) -> nn.Module:
    """VGG-19 (BN, one Linear) for CIFAR: 20.04 M params at 10 classes."""
    _check_args("vgg19_cifar", _unused)
    return build("vgg19_cifar", num_classes, template, width, filters, unit)


@register_model(paper="templates")
def resnet50_cifar(num_classes: int = 10, template: str = "base", width: float = 1.0,
                   filters: Sequence[int] | None = None, unit: str = "block", **_unused) -> nn.Module:
    """ResNet-50 (3x3 stem, [3,4,6,3] bottlenecks) for CIFAR: 23.52 M params."""
    _check_args("resnet50_cifar", _unused)
    return build("resnet50_cifar", num_classes, template, width, filters, unit)


@register_model(paper="templates")
def googlenet_cifar(num_classes: int = 10, template: str = "base", width: float = 1.0,
                    filters: Sequence[int] | None = None, unit: str = "block", **_unused) -> nn.Module:
    """GoogLeNet / Inception (9 modules) for CIFAR: 6.17 M params."""
    _check_args("googlenet_cifar", _unused)
    return build("googlenet_cifar", num_classes, template, width, filters, unit)


@register_model(paper="templates")
def mobilenet_cifar(num_classes: int = 10, template: str = "base", width: float = 1.0,
                    filters: Sequence[int] | None = None, unit: str = "block", **_unused) -> nn.Module:
    """MobileNet v1 (13 depthwise-separable blocks) for CIFAR: 3.22 M params."""
    _check_args("mobilenet_cifar", _unused)
    return build("mobilenet_cifar", num_classes, template, width, filters, unit)


@register_model(paper="templates")
def vgg19_cifar_tiny(num_classes: int = 10, template: str = "base", width: float = 1.0,
                     filters: Sequence[int] | None = None, unit: str = "block", **_unused) -> nn.Module:
    """VGG-19 with base widths / 8 (tests, smoke)."""
    _check_args("vgg19_cifar_tiny", _unused)
    return build("vgg19_cifar_tiny", num_classes, template, width, filters, unit)


@register_model(paper="templates")
def resnet50_cifar_tiny(num_classes: int = 10, template: str = "base", width: float = 1.0,
                        filters: Sequence[int] | None = None, unit: str = "block",
                        **_unused) -> nn.Module:
    """ResNet-50 with base widths / 8 (tests, smoke)."""
    _check_args("resnet50_cifar_tiny", _unused)
    return build("resnet50_cifar_tiny", num_classes, template, width, filters, unit)


@register_model(paper="templates")
def googlenet_cifar_tiny(num_classes: int = 10, template: str = "base", width: float = 1.0,
                         filters: Sequence[int] | None = None, unit: str = "block",
                         **_unused) -> nn.Module:
    """GoogLeNet with base widths / 8 (tests, smoke)."""
    _check_args("googlenet_cifar_tiny", _unused)
    return build("googlenet_cifar_tiny", num_classes, template, width, filters, unit)


@register_model(paper="templates")
def mobilenet_cifar_tiny(num_classes: int = 10, template: str = "base", width: float = 1.0,
                         filters: Sequence[int] | None = None, unit: str = "block",
                         **_unused) -> nn.Module:
    """MobileNet v1 with base widths / 8 (tests, smoke)."""
    _check_args("mobilenet_cifar_tiny", _unused)
    return build("mobilenet_cifar_tiny", num_classes, template, width, filters, unit)
