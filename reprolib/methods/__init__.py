"""Compression methods: one module per paper (pruning, decomposition, NAS, templates)."""

from reprolib.errors import ReprolibError


def round_width(k: int, full: int, round_to: int = 1) -> int:
    """A kept width ``k`` (of ``full``) rounded to the nearest multiple of ``round_to``, at
    least ``round_to`` and at most ``full`` (``full`` itself is always allowed: it is the
    unpruned width).  ``round_to=1`` returns ``k`` unchanged (the papers' rules).

    Hardware-aligned widths: matrix kernels (CPU SIMD, GPU tensor cores) run fastest on
    dimensions that are multiples of 8 (16 bytes of bf16/fp16, 32 of fp32), so a pruned
    width of 8k runs at the speed its FLOPs promise, one of 8k + 1 often does not.
    """
    if isinstance(round_to, bool) or not isinstance(round_to, int) or round_to < 1:
        raise ReprolibError(f"round_to={round_to!r} must be an integer >= 1 (1 = no rounding; "
                            "8 = hardware-aligned widths)")
    if round_to == 1:
        return int(k)
    return int(min(full, max(round_to, round_to * int(k / round_to + 0.5))))


def bisect_ratio(count, target: int, *, hi: float = 0.999, steps: int = 30,
                 min_width: float = 0.0) -> tuple[float, int]:
    """The ratio in ``[0, hi]`` whose ``count(ratio)`` (a size that falls as the ratio grows:
    parameters, FLOPs) is closest to ``target``, by bisection: ``steps`` halvings, stopping
    early at an exact hit or once the bracket is narrower than ``min_width``.  Returns
    ``(ratio, count(ratio))`` of the closest trial (the first of equally close ones)."""
    lo, best = 0.0, None
    for _ in range(steps):
        mid = (lo + hi) / 2
        n = count(mid)
        if best is None or abs(n - target) < abs(best[1] - target):
            best = (mid, n)
        if n == target or hi - lo < min_width:
            break
        lo, hi = (mid, hi) if n > target else (lo, mid)
    return best
