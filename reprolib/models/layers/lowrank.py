"""A linear layer stored as two low-rank factors: ``y = A (B x) + b``.

``reprolib.methods.decompose`` fills it from a factorization of a dense ``nn.Linear``
(SVD, QR, LU, ...); any model can hold it.  With weight ``W ~ A B``, ``A`` (out x r) and ``B``
(r x in), it stores ``r (out + in)`` weights instead of ``out * in``.  :func:`apply_ranks` turns
named ``nn.Linear`` layers of a model into empty shells of given ranks, so a decomposed
model is rebuilt from its ranks (architecture as data) before its weights are loaded.
"""

from __future__ import annotations

import numbers

import torch
import torch.nn as nn

from reprolib.errors import ReprolibError


class LowRankLinear(nn.Module):
    """``y = second(first(x))``: ``first`` = Linear(in, rank, no bias) holds B, ``second`` =
    Linear(rank, out, bias) holds A and the original bias."""

    def __init__(self, in_features: int, out_features: int, rank: int, bias: bool = True,
                 method: str = ""):
        super().__init__()
        self.in_features, self.out_features, self.rank, self.method = in_features, out_features, rank, method
        self.first = nn.Linear(in_features, rank, bias=False)
        self.second = nn.Linear(rank, out_features, bias=bias)

    @property
    def weight(self) -> torch.Tensor:
        """The dense product A B (out x in), for inspection."""
        return self.second.weight @ self.first.weight

    @property
    def bias(self):
        return self.second.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.second(self.first(x))

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, rank={self.rank}, method={self.method!r}"


def set_module(model: nn.Module, name: str, new: nn.Module) -> None:
    """Replace the submodule at dotted ``name`` of ``model`` with ``new``."""
    parent, _, leaf = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, leaf, new)


def current_ranks(model: nn.Module) -> dict[str, int]:
    """``{module name: rank}`` of every :class:`LowRankLinear` in ``model``."""
    return {n: m.rank for n, m in model.named_modules() if isinstance(m, LowRankLinear)}


def apply_ranks(model: nn.Module, ranks: dict[str, int]) -> nn.Module:
    """Turn the named ``nn.Linear`` layers into (untrained) :class:`LowRankLinear` shells of
    the given ranks, in place, so a decomposed model's weights can be loaded.

    Each rank is a whole number in ``1 .. min(out, in)`` of its layer (a ReprolibError
    naming the layer and that range otherwise: a rank of 0 or above the full rank is no
    factorization, and a negative or huge one would fail or allocate in ``nn.Linear``)."""
    if not isinstance(ranks, dict):
        raise ReprolibError(f'"ranks" must be an object {{layer name: rank}}, got '
                            f"{type(ranks).__name__} {ranks!r:.60}")
    for name, r in ranks.items():
        try:
            layer = model.get_submodule(name)
        except AttributeError:
            raise ReprolibError(f"the model has no layer {name!r} to give rank {r!r}") from None
        if isinstance(layer, LowRankLinear):
            out_f, in_f = layer.out_features, layer.in_features
        elif isinstance(layer, nn.Linear):
            out_f, in_f = layer.weight.shape
        else:
            raise ReprolibError(f"{name} is not an nn.Linear; cannot give it rank {r!r}")
        full = min(out_f, in_f)
        if isinstance(r, bool) or not isinstance(r, numbers.Integral) or not 1 <= r <= full:
            raise ReprolibError(f"layer {name} ({out_f} x {in_f}): rank {r!r} must be a whole "
                                f"number in 1..{full} (min(out, in))")
        if isinstance(layer, LowRankLinear) and layer.rank == int(r):
            continue
        if not isinstance(layer, nn.Linear):
            raise ReprolibError(f"{name} is not an nn.Linear; cannot give it rank {r!r}")
        shell = LowRankLinear(in_f, out_f, int(r), layer.bias is not None)
        set_module(model, name, shell.to(layer.weight.device, layer.weight.dtype))
    return model
