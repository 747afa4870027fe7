"""Layers shared by several models (and by the compression methods that produce them)."""

from reprolib.models.layers.lowrank import LowRankLinear, apply_ranks, current_ranks

__all__ = ["LowRankLinear", "apply_ranks", "current_ranks"]
