"""Filter redistribution templates (anonymous, "Filter redistribution templates for
iteration-less convolutional model reduction", ICLR 2020 submission; ``papers/templates.md``).

A base model has ``D`` convolutional layers (blocks and modules count as one layer each,
section 3: "taking blocks as single layers") with ``f_l`` filters, total ``F = sum f_l``.
A template redistributes ``F`` over the ``D`` layers; a *width multiplier* then scales every
layer.  The templates of section 3 (l = 1..D, f_min = min_l f_l):

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

from reprolib.errors import ReprolibError, check_range, choose

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
    check_range("width", float(width), 0.0, WIDTH_MAX, lo_open=True)
    return float(width)


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
    f = [int(x) for x in filters]
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
    # Keep every layer at >= minimum filters, taking the deficit from the largest layers.
    while (out < minimum).any():
        i = int(np.argmin(out))
        need = minimum - int(out[i])
        out[i] = minimum
        for _ in range(need):
            j = int(np.argmax(out))
            out[j] -= 1
    return [int(x) for x in out]


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
    f = [int(x) for x in filters]
    if not f or min(f) < 1:
        raise ReprolibError(f"filters must be a non-empty list of positive counts, got {filters!r}")
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
    return [max(1, int(round(w * int(x)))) for x in filters]


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
    """Every template's per-layer counts for ``filters`` (the data of the paper's Figure 2)."""
    return {t: redistribute(list(filters), t) for t in TEMPLATES}


__all__ = ["TEMPLATES", "PAPER_WIDTHS", "WIDTH_MAX", "redistribute", "apply_width",
           "distribution", "real_distribution", "quadratic_coefficients",
           "round_preserving_sum", "scale_group", "scale_one", "template_table",
           "check_template", "check_width"]

