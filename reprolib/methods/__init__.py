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
