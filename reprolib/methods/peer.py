"""The peer a user would pick instead of our methods (issue 26): Torch-Pruning (VainF/Torch-Pruning,
``pip install reprolib[bench]``, pinned 1.6.1) pruning the same dense parent to the same FLOPs.

``torch_pruning_to_flops(model, input_size, target_flops)`` searches Torch-Pruning's one knob,
``pruning_ratio`` (the fraction of channels / dims removed in every prunable group; with
``global_pruning`` the fraction of all groups' channels, ranked together), by bisection until the
pruned model's FLOPs (``reprolib.measure.count_flops``: 1 multiply-add = 1 FLOP) are within ``tol``
of the target.  Importance: magnitude (L2 of each channel's weights, Torch-Pruning's
``MagnitudeImportance(p=2)``).  The classifier stays whole (its outputs are the classes).
Attention: as Torch-Pruning's timm examples do, every module with a ``qkv`` linear and a
``num_heads`` has its heads declared (``num_heads={qkv: heads}``), head dims are pruned and the
head count kept, and ``head_dim`` is set from the pruned ``qkv`` afterwards; a forward that
reshapes to the input width (timm's ``Attention`` does) must allow inner width != input width.

Swin (timm's ``PatchMerging``): the merge concatenates the four 2x2 neighbours' C channels into
4C before its LayerNorm and the reduction; Torch-Pruning's graph cannot see that the 4C are four
copies of the same C (left to itself it prunes the 4C LayerNorm independently and the model
breaks), so a merging layer is handed to Torch-Pruning as one unit (``customized_pruners``,
:func:`_merging_pruner`): pruning its input channel c removes c, C + c, 2C + c and 3C + c of the
LayerNorm and the reduction's input, pruning its output prunes the reduction's output.

Torch-Pruning is imported here only, inside the functions, so reprolib runs without it.
"""

from __future__ import annotations

import copy
import math
import warnings

import torch
import torch.nn as nn

from reprolib.core.measure import count_flops

TORCH_PRUNING_PIN = "torch-pruning==1.6.1"


def _tp():
    try:
        import torch_pruning as tp
    except ImportError as e:                              # the optional extra
        raise ImportError("the Torch-Pruning peer needs the bench extra: pip install "
                          f"'{TORCH_PRUNING_PIN}' (or pip install -e '.[bench]')") from e
    return tp


def classifier(model: nn.Module) -> nn.Module | None:
    """The output layer kept whole: timm's ``get_classifier()`` or else the last ``nn.Linear``."""
    get = getattr(model, "get_classifier", None)
    if callable(get):
        head = get()
        if isinstance(head, nn.Module) and any(True for _ in head.parameters()):
            return head
    last = None
    for m in model.modules():
        if isinstance(m, nn.Linear):
            last = m
    return last


_PROJ = ("qkv", "to_q", "to_k", "to_v")      # timm's fused qkv; reprolib's ViT's q / k / v


def _attention(model: nn.Module):
    """(module, heads attribute, [projections]) of every multi-head attention in ``model``."""
    for m in model.modules():
        attr = "num_heads" if hasattr(m, "num_heads") else "heads" if hasattr(m, "heads") \
            else None
        proj = [getattr(m, p) for p in _PROJ if isinstance(getattr(m, p, None), nn.Linear)]
        if attr and proj and isinstance(getattr(m, attr), int):
            yield m, attr, proj


def _heads(model: nn.Module) -> dict:
    return {p: getattr(m, attr) for m, attr, proj in _attention(model) for p in proj}


def _fix_head_dims(model: nn.Module) -> None:
    """``head_dim`` from the pruned projections (heads are kept, head dims pruned)."""
    for m, attr, proj in _attention(model):
        if hasattr(m, "head_dim"):
            per = 3 if hasattr(m, "qkv") else 1
            m.head_dim = proj[0].out_features // (per * getattr(m, attr))


def _is_merging(m: nn.Module) -> bool:
    """A Swin patch merge: a 4C LayerNorm ``norm`` before a 4C -> C' linear ``reduction``."""
    red, norm = getattr(m, "reduction", None), getattr(m, "norm", None)
    return (isinstance(red, nn.Linear) and isinstance(norm, nn.LayerNorm)
            and isinstance(getattr(m, "dim", None), int) and red.in_features == 4 * m.dim)


def _merging_pruner(tp):
    """Torch-Pruning's pruning function for a patch merge (see the module docstring)."""

    class MergingPruner(tp.pruner.function.BasePruningFunc):
        TARGET_MODULES = None

        def prune_out_channels(self, layer, idxs):
            tp.prune_linear_out_channels(layer.reduction, idxs)
            layer.out_dim = layer.reduction.out_features
            return layer

        def prune_in_channels(self, layer, idxs):
            c = layer.dim
            four = [k * c + int(i) for k in range(4) for i in idxs]
            tp.prune_layernorm_out_channels(layer.norm, four)
            tp.prune_linear_in_channels(layer.reduction, four)
            layer.dim = c - len(idxs)
            return layer

        def get_out_channels(self, layer):
            return layer.reduction.out_features

        def get_in_channels(self, layer):
            return layer.dim

    return MergingPruner()


def _unspecced(model: nn.Module) -> nn.Module:
    """``model`` without the ``reprolib_spec`` it was built with (see :func:`prune_once`)."""
    model.__dict__.pop("reprolib_spec", None)
    return model


def facts(rec: dict, digits: int | None = None) -> dict:
    """The facts of a :func:`torch_pruning_to_flops` record that a results row keeps: the
    ratio Torch-Pruning needed, the FLOPs' relative error (both rounded to ``digits``
    decimals when given), whether within the tolerance, and Torch-Pruning's version."""
    def rnd(x):
        return x if digits is None else round(x, digits)

    return {"pruning_ratio": rnd(rec["pruning_ratio"]), "flop_error": rnd(rec["flop_error"]),
            "within_tol": bool(rec["within_tol"]), "peer_version": rec["version"]}


def prune_once(model: nn.Module, input_size, ratio: float, *, global_pruning: bool = False,
               round_to: int | None = None, ignored_layers=None) -> nn.Module:
    """A pruned deep copy of ``model``: Torch-Pruning's ``MetaPruner``, magnitude importance,
    ``pruning_ratio=ratio`` (fraction of channels removed), uniform or global ranking.  The
    copy drops the parent's ``reprolib_spec``: Torch-Pruning's shapes are none of our
    architectures, so the pruned model is not saved or rebuilt as one."""
    tp = _tp()
    m = _unspecced(copy.deepcopy(model).cpu().eval())
    example = torch.randn(1, *input_size)
    ignored = list(ignored_layers) if ignored_layers is not None else \
        [x for x in (classifier(m),) if x is not None]
    # Swin's relative-position bias tables ((2W-1)^2 x heads) are indexed by position and head;
    # heads are kept, so they stay whole (left alone, Torch-Pruning would cut their last dim)
    ignored += [p for n, p in m.named_parameters() if n.endswith("relative_position_bias_table")]
    heads = _heads(m)
    merges = {type(x) for x in m.modules() if _is_merging(x)}
    custom = {t: _merging_pruner(tp) for t in merges}
    with warnings.catch_warnings():      # the bias tables, left whole on purpose (above)
        warnings.filterwarnings("ignore", message="Unwrapped parameters detected")
        pruner = tp.pruner.MetaPruner(
            m, example, importance=tp.importance.MagnitudeImportance(p=2),
            pruning_ratio=ratio, global_pruning=global_pruning, round_to=round_to,
            ignored_layers=ignored, num_heads=heads, prune_head_dims=True,
            prune_num_heads=False, customized_pruners=custom or None)
    pruner.step()
    _fix_head_dims(m)
    return m


def torch_pruning_to_flops(model: nn.Module, input_size, target_flops: int, *,
                           global_pruning: bool = False, round_to: int | None = None,
                           tol: float = 0.02, steps: int = 14, max_ratio: float = 0.95,
                           ignored_layers=None) -> tuple[nn.Module, dict]:
    """``model`` pruned by Torch-Pruning to ``target_flops`` (within ``tol``, a fraction: 0.02 =
    2 %), and a record: the ratio found, the FLOPs reached, their relative error, the trials.

    input_size: (C, H, W) of one image.  global_pruning: False = every group loses the same
    fraction ("uniform"), True = one ranking over all groups.  round_to: channels rounded to a
    multiple (None = not rounded; rounding can make the target unreachable within ``tol``,
    then the closest trial is returned and ``within_tol`` is False)."""
    dense = count_flops(model, tuple(input_size))
    if not 0 < target_flops <= dense:
        raise ValueError(f"target_flops={target_flops} must be in (0, {dense}] (the dense FLOPs)")
    # FLOPs fall about as (1 - ratio)^2 (both sides of most matmuls shrink), so sqrt(FLOPs) is
    # about linear in the ratio: each trial interpolates sqrt(FLOPs) between the bracket's ends
    # (regula falsi), falling back to the bracket's middle when that lands at an end
    goal = math.sqrt(target_flops)
    lo, f_lo = 0.0, math.sqrt(dense)
    hi, f_hi = max_ratio, math.sqrt(dense) * (1 - max_ratio)      # a guess until tried
    best = (abs(dense / target_flops - 1), 0.0, dense, _unspecced(copy.deepcopy(model)))
    trials = []
    for _ in range(steps):
        if best[0] <= tol or hi - lo < 1e-4:
            break
        mid = lo + (f_lo - goal) * (hi - lo) / max(f_lo - f_hi, 1e-12)
        if not lo + 0.02 * (hi - lo) < mid < hi - 0.02 * (hi - lo):
            mid = (lo + hi) / 2
        pruned = prune_once(model, input_size, mid, global_pruning=global_pruning,
                            round_to=round_to, ignored_layers=ignored_layers)
        f = count_flops(pruned, tuple(input_size))
        err = abs(f / target_flops - 1)
        trials.append({"ratio": round(mid, 5), "flops": f})
        if err < best[0]:
            best = (err, mid, f, pruned)
        if f > target_flops:
            lo, f_lo = mid, math.sqrt(f)                   # not pruned enough
        else:
            hi, f_hi = mid, math.sqrt(f)
    err, ratio, flops, pruned = best
    return pruned, {"method": "torch_pruning", "importance": "magnitude (L2)",
                    "scope": "global" if global_pruning else "uniform", "pruning_ratio": ratio,
                    "round_to": round_to, "dense_flops": dense, "target_flops": int(target_flops),
                    "flops": flops, "flop_error": err, "within_tol": err <= tol,
                    "trials": trials, "version": getattr(_tp(), "__version__", None)}
