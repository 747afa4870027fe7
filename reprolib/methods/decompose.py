"""Matrix decomposition of linear layers into two smaller linear layers (rank-r factors).

Paper: Tianyi Sun, "Vision Transformer Pruning Via Matrix Decomposition"
(``../shared/papers/vtp_svd.md``), section 2.3.  A pruned weight X* = W (out x in) is
factored and truncated to rank r, W ~ A B with A (out x r) and B (r x in), and the layer
``y = W x + b`` becomes ``y = A (B x) + b``: two ``nn.Linear`` layers with r (out + in)
weights instead of out * in, so it only pays when r < out * in / (out + in).

Methods (all factorizations come from ``torch.linalg`` / ``scipy.linalg``, in float64):

========== ======================================================= ===========================
method     factorization (section)                                 rank-r factors A, B
========== ======================================================= ===========================
svd        W = U Sigma V^T (2.3.2), truncated / condensed SVD      A = U_r Sigma_r, B = V_r^T
qr         full QR, W = Q [R_1; 0] (2.3.3)                         A = Q[:, :r], B = R[:r]
qr_reduced reduced (economic) QR, W = Q_1 R_1                      A = Q_1[:, :r], B = R_1[:r]
qr_pivoted rank-revealing QR with column pivoting, W Pi = Q R      A = Q[:, :r], B = R[:r] Pi^T
cod        complete orthogonal decomposition W = Q [L 0; 0 0] U^*  A = Q[:, :r] L, B = Z_r^T Pi^T
lu         LU with partial (row) pivoting, W = P L U (2.3.4)       A = P L[:, :r], B = U[:r]
========== ======================================================= ===========================

For ``cod`` the leading r rows [R_1 S] of the pivoted R are factored once more,
[R_1 S]^T = Z R_2 (reduced QR), so [R_1 S] = L Z^T with L = R_2^T lower triangular (the
construction of section 2.3.3).  Its rank-r product therefore equals ``qr_pivoted``'s; the
factors differ (B has orthonormal rows).  Likewise ``qr`` and ``qr_reduced`` give the same
product; the full Q is computed and then cut.  Only SVD truncation is optimal
(Eckart-Young: the spectral / Frobenius error is the tail of the singular values).

The rank is chosen per layer by ``rank_ratio`` (a fraction of the layer's full rank
``min(out, in)``) or by ``energy`` (the smallest r whose leading singular values hold that
fraction of sum sigma_i^2).

The two-factor layer itself (:class:`LowRankLinear`, :func:`apply_ranks`,
:func:`current_ranks`) lives in ``reprolib.models.layers.lowrank`` and is re-exported here.
Section 2.3's Table 1 (least squares by normal equations, QR, SVD) is measured by
:func:`lstsq_merits`; :func:`full_rank_identity` checks that full-rank factors reproduce the
layers.
"""

from __future__ import annotations

import copy
import fnmatch
import math
import time
import warnings
from typing import Callable, Iterable

import numpy as np
import scipy.linalg
import torch
import torch.nn as nn

from reprolib.core.compressed import add_arch
from reprolib.errors import ReprolibError, check_number, choose
from reprolib.methods import round_width
from reprolib.models.layers.lowrank import LowRankLinear, apply_ranks, current_ranks, set_module

__all__ = ["METHODS", "DEFAULT_LAYERS", "LowRankLinear", "apply_ranks", "current_ranks",
           "factorize", "decompose_linear", "choose_rank", "target_layers", "decompose_model",
           "truncation_error", "error_curve", "lstsq_merits", "LSTSQ_SOLVERS",
           "full_rank_identity", "kept_dense"]

METHODS = ("svd", "qr", "qr_reduced", "qr_pivoted", "cod", "lu")
# Linear layers of the ViT blocks that VTP prunes (q/k/v rows, out columns, fc1 rows, fc2 columns).
DEFAULT_LAYERS = ("blocks.*.attn.to_q", "blocks.*.attn.to_k", "blocks.*.attn.to_v",
                  "blocks.*.attn.to_out", "blocks.*.mlp.fc1", "blocks.*.mlp.fc2")


def factorize(w: np.ndarray, method: str, rank: int) -> tuple[np.ndarray, np.ndarray]:
    """Rank-``rank`` factors ``(A, B)`` of the matrix ``w`` (out x in) with ``method``.

    ``method``: one of :data:`METHODS`; ``rank``: 1 .. min(out, in).  Returns float64
    arrays A (out x rank) and B (rank x in) with A @ B the method's rank-r approximation.
    """
    choose("decomposition method", method, METHODS)
    w = np.asarray(w, dtype=np.float64)
    m, n = w.shape
    r = _whole_rank(rank, min(m, n))
    if method == "svd":
        u, s, vh = torch.linalg.svd(torch.from_numpy(w), full_matrices=False)
        return (u[:, :r] * s[:r]).numpy(), vh[:r].numpy()
    if method in ("qr", "qr_reduced"):
        q, rr = scipy.linalg.qr(w, mode="full" if method == "qr" else "economic")
        return q[:, :r], rr[:r]
    if method in ("qr_pivoted", "cod"):
        q, rr, piv = scipy.linalg.qr(w, mode="economic", pivoting=True)  # w[:, piv] = q @ rr
        top = rr[:r]                                                        # [R_1 S], r x n
        if method == "qr_pivoted":
            a, b_perm = q[:, :r], top
        else:
            z, r2 = scipy.linalg.qr(top.T, mode="economic")                 # top^T = Z R_2
            a, b_perm = q[:, :r] @ r2.T, z.T                                 # L = R_2^T
        b = np.empty_like(b_perm)
        b[:, piv] = b_perm                                                  # undo Pi: B Pi^T
        return a, b
    pl, u = scipy.linalg.lu(w, permute_l=True)                              # w = (P L) U
    return pl[:, :r], u[:r]


def _whole_rank(rank, full: int) -> int:
    """``rank`` as an int in 1 .. ``full``; a fraction (2.5) or a bool is an error, not
    truncated."""
    if isinstance(rank, bool) or not isinstance(rank, (int, float, np.integer, np.floating)) \
            or rank != int(rank):
        raise ReprolibError(f"rank={rank!r} must be a whole number of factors, 1 .. {full} "
                            "(for a fraction of the full rank use rank_ratio)")
    check_number("rank", int(rank), 1, full)
    return int(rank)


def decompose_linear(layer: nn.Linear, method: str = "svd", rank: int | None = None) -> LowRankLinear:
    """Replace-ready two-factor module computing the rank-``rank`` approximation of ``layer``.

    ``layer``: the ``nn.Linear`` to factor (weight out x in, optional bias);
    ``method``: "svd" (default), "qr", "qr_reduced", "qr_pivoted", "cod" or "lu";
    ``rank``: number of kept factors, 1 .. min(out, in) (default: full rank min(out, in),
    which reproduces the layer up to rounding).  The bias is carried over unchanged.
    """
    if not isinstance(layer, nn.Linear):
        raise ReprolibError(f"decompose_linear needs an nn.Linear, got {type(layer).__name__}")
    out_f, in_f = layer.weight.shape
    rank = min(out_f, in_f) if rank is None else _whole_rank(rank, min(out_f, in_f))
    a, b = factorize(layer.weight.detach().cpu().double().numpy(), method, rank)
    new = LowRankLinear(in_f, out_f, rank, layer.bias is not None, method)
    dt, dev = layer.weight.dtype, layer.weight.device
    with torch.no_grad():
        new.first.weight.copy_(torch.from_numpy(b).to(dev, dt))
        new.second.weight.copy_(torch.from_numpy(a).to(dev, dt))
        if layer.bias is not None:
            new.second.bias.copy_(layer.bias.detach())
    return new.to(dev)


def choose_rank(weight: torch.Tensor, rank_ratio: float | None = None,
                energy: float | None = None) -> int:
    """Rank for one weight matrix (out x in), full rank k = min(out, in).

    ``rank_ratio``: fraction of k, r = max(1, round(rank_ratio * k)), in (0, 1];
    ``energy``: smallest r with sum_{i<=r} sigma_i^2 >= energy * sum_i sigma_i^2, in (0, 1].
    Exactly one of the two must be given.
    """
    if (rank_ratio is None) == (energy is None):
        raise ReprolibError("give exactly one of rank_ratio (fraction of min(out, in)) or energy")
    k = min(weight.shape)
    if rank_ratio is not None:
        check_number("rank_ratio", rank_ratio, 0.0, 1.0, lo_open=True)
        return max(1, min(k, int(round(rank_ratio * k))))
    check_number("energy", energy, 0.0, 1.0, lo_open=True)
    s2 = torch.linalg.svdvals(weight.detach().double().cpu()) ** 2
    frac = torch.cumsum(s2, 0) / s2.sum()
    return int(min(k, int(torch.searchsorted(frac, torch.tensor(energy, dtype=frac.dtype) - 1e-12)) + 1))


def target_layers(model: nn.Module, layers: Iterable[str] = DEFAULT_LAYERS) -> list[tuple[str, nn.Linear]]:
    """The ``nn.Linear`` modules of ``model`` whose qualified names match a glob in ``layers``;
    none matching is a ``ReprolibError`` naming the model's linear layers (a wrong glob would
    otherwise decompose nothing, silently)."""
    pats = list(layers)
    found = [(n, m) for n, m in model.named_modules()
             if isinstance(m, nn.Linear) and any(fnmatch.fnmatchcase(n, p) for p in pats)]
    if not found:
        linear = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
        raise ReprolibError(f"no nn.Linear layer of this {type(model).__name__} matches "
                            f"layers={pats}; its linear layers: {', '.join(linear[:8]) or 'none'}"
                            f"{' ...' if len(linear) > 8 else ''}")
    return found


def decompose_model(model: nn.Module, method: str = "svd", rank_ratio: float | None = 0.25, *,
                    energy: float | None = None, layers: Iterable[str] = DEFAULT_LAYERS,
                    only_if_smaller: bool = True, round_to: int = 1,
                    timed_tokens: int = 0, timed_repeats: int = 15) -> nn.Module:
    """A copy of ``model`` whose linear layers are replaced by rank-r two-factor layers.

    ``method``: see :data:`METHODS` (default "svd");
    ``rank_ratio``: per layer, the kept rank as a fraction of its full rank min(out, in)
    (default 0.25); pass ``rank_ratio=None, energy=e`` to pick the rank holding a fraction
    ``e`` of the squared singular values instead;
    ``layers``: globs of module names to factor (default: q, k, v, out, fc1, fc2 of every
    ViT block -- the layers VTP pruned);
    ``only_if_smaller``: keep a layer dense when r (out + in) >= out * in, i.e. when the
    rank-r factors would not have fewer weights nor fewer multiply-adds per token (the
    break-even rank; default True).  Such layers are listed by :func:`kept_dense` (also in
    the spec's ``"lowrank"`` step as ``"kept_dense"``) and named in one ``UserWarning``;
    ``round_to``: each chosen rank is rounded to the nearest multiple of ``round_to``
    (``reprolib.methods.round_width``; default 1 = the rank ratio's rule, 8 =
    hardware-aligned factor widths), before the break-even test;
    ``timed_tokens``: > 0 decides by measured time too: a layer that passes the break-even
    test is still kept dense when, timed on this machine at ``timed_tokens`` tokens (inference,
    interleaved, median of ``timed_repeats``; ``reprolib.measure.interleaved``), its two thin
    matmuls are not faster than the one dense matmul (listed by :func:`kept_dense` with
    ``"timed_ms"``).  The result then depends on the machine; 0 (default) = FLOPs only.
    The input model is left untouched; ``current_ranks(new)`` lists the factored layers.
    A model built by ``reprolib.create_model`` gets the step ``{"kind": "lowrank", "ranks":
    ...}`` in its spec, so ``reprolib.save_compressed`` / ``load_compressed`` rebuild it.
    """
    choose("decomposition method", method, METHODS)
    round_width(1, 1, round_to)               # validates round_to before any work
    if energy is not None:  # an energy threshold overrides the default rank_ratio
        rank_ratio = None
    new = copy.deepcopy(model)
    dense = {}
    for name, layer in target_layers(new, layers):
        out_f, in_f = layer.weight.shape
        r = round_width(choose_rank(layer.weight, rank_ratio, energy), min(out_f, in_f), round_to)
        if only_if_smaller and r * (out_f + in_f) >= out_f * in_f:
            dense[name] = {"rank": r, "shape": [out_f, in_f], "dense_macs": out_f * in_f,
                           "factored_macs": r * (out_f + in_f)}
            continue
        factored = decompose_linear(layer, method, r)
        if timed_tokens:
            ms = _timed(layer, factored, timed_tokens, timed_repeats)
            if ms["factored"] >= ms["dense"]:
                dense[name] = {"rank": r, "shape": [out_f, in_f], "dense_macs": out_f * in_f,
                               "factored_macs": r * (out_f + in_f), "timed_ms": ms,
                               "timed_tokens": int(timed_tokens)}
                continue
        set_module(new, name, factored)
    new.kept_dense = dense
    if dense:
        names = list(dense)
        warnings.warn(f"decompose_model left {len(names)} layer(s) dense, where rank-r factors "
                      f"would not reduce the multiply-adds (r (out + in) >= out * in)"
                      f"{' or were not faster when timed' if timed_tokens else ''}: "
                      f"{', '.join(names[:4])}{', ...' if len(names) > 4 else ''}; "
                      "kept_dense(model) lists them", stacklevel=2)
    if getattr(new, "reprolib_spec", None) is not None:  # built by create_model: save as data
        extra = {"kept_dense": sorted(dense)} if dense else {}
        add_arch(new, "lowrank", replace=True, ranks=current_ranks(new), **extra)
    return new


def _timed(dense: nn.Module, factored: nn.Module, tokens: int, repeats: int) -> dict:
    """Median ms of one inference of each layer on ``tokens`` tokens, interleaved."""
    from reprolib.core.measure import interleaved

    check_number("timed_tokens", tokens, 1, 1 << 24, integer=True)
    x = torch.randn(int(tokens), dense.in_features)

    def call(m):
        def run():
            with torch.inference_mode():
                return m(x)
        return run

    res = interleaved({"dense": call(dense), "factored": call(factored)}, "cpu", warmup=3,
                      repeats=int(repeats))
    return {k: round(v["ms"], 4) for k, v in res.items()}


def kept_dense(model: nn.Module) -> dict[str, dict]:
    """The layers :func:`decompose_model` left dense because rank-r factors would not reduce
    their multiply-adds: ``{name: {"rank", "shape", "dense_macs", "factored_macs"}}`` (MACs
    per token); empty for a model it did not make or where every target layer was factored."""
    return dict(getattr(model, "kept_dense", {}) or {})


def truncation_error(weight: torch.Tensor, method: str, rank: int) -> dict[str, float]:
    """Relative Frobenius and spectral errors ||W - A B|| / ||W|| of a rank-``rank`` factorization."""
    w = weight.detach().double().cpu().numpy()
    a, b = factorize(w, method, rank)
    d = w - a @ b
    return {"rel_fro": float(np.linalg.norm(d) / np.linalg.norm(w)),
            "rel_spec": float(np.linalg.norm(d, 2) / np.linalg.norm(w, 2))}


def error_curve(model: nn.Module, ratios: Iterable[float], methods: Iterable[str] = METHODS,
                layers: Iterable[str] = DEFAULT_LAYERS) -> list[dict]:
    """Reconstruction error vs rank: one row per (layer, method, rank_ratio) with the
    relative Frobenius error of the rank-r factorization of that layer's weight."""
    rows = []
    for name, layer in target_layers(model, layers):
        for ratio in ratios:
            r = choose_rank(layer.weight, rank_ratio=ratio)
            for meth in methods:
                e = truncation_error(layer.weight, meth, r)
                rows.append({"layer": name, "method": meth, "rank_ratio": float(ratio), "rank": r,
                             "shape": list(layer.weight.shape), **e})
    return rows


# ----------------------------------------------------------------------------------------
# Section 2.3 / Table 1: least squares through normal equations, QR and SVD, measured.

def _solve_normal(a, b):
    """Normal equations A^T A x = A^T b, solved by Cholesky (section 2.3.5)."""
    g = a.T @ a
    try:
        return scipy.linalg.cho_solve(scipy.linalg.cho_factor(g, check_finite=False), a.T @ b,
                                      check_finite=False)
    except np.linalg.LinAlgError:  # A^T A not numerically positive definite
        return scipy.linalg.solve(g, a.T @ b, assume_a="sym", check_finite=False)


def _solve_qr(a, b):
    """Reduced QR: A = Q R, x = R^{-1} Q^T b."""
    q, r = scipy.linalg.qr(a, mode="economic", check_finite=False)
    return scipy.linalg.solve_triangular(r, q.T @ b, check_finite=False)


def _solve_svd(a, b):
    """Thin SVD: A = U S V^T, x = V S^{-1} U^T b (pseudo-inverse)."""
    u, s, vh = scipy.linalg.svd(a, full_matrices=False, check_finite=False)
    return vh.T @ ((u.T @ b) / s)


LSTSQ_SOLVERS: dict[str, Callable] = {"normal_equations": _solve_normal, "qr": _solve_qr,
                                      "svd": _solve_svd}


def lstsq_merits(matrices: dict[str, np.ndarray | torch.Tensor], dtype: str = "float32",
                 repeats: int = 5, seed: int = 0, blas_threads: int = 1) -> list[dict]:
    """Measure Table 1's merits on real matrices: accuracy and speed of least squares.

    For each matrix (oriented tall, m >= n) a solution x_true ~ N(0, I) is drawn (``seed``),
    b = A x_true is formed in float64 and both are cast to ``dtype`` ("float32" or
    "float64"); each solver of :data:`LSTSQ_SOLVERS` computes x.  Reported per (matrix,
    solver): ``rel_error`` = ||x - x_true|| / ||x_true|| (forward error), ``rel_residual`` =
    ||A x - b|| / ||b||, ``time_ms`` = median wall time of ``repeats`` solves
    (time.perf_counter, BLAS limited to ``blas_threads`` threads with threadpoolctl, default
    1), and the matrix's 2-norm condition number ``cond`` (float64).
    """
    choose("dtype", dtype, ("float32", "float64"))
    from threadpoolctl import threadpool_limits
    with threadpool_limits(limits=blas_threads):
        return _lstsq_merits(matrices, dtype, repeats, seed, blas_threads)


def _lstsq_merits(matrices, dtype, repeats, seed, blas_threads):
    rng = np.random.default_rng(seed)
    rows = []
    for name, mat in matrices.items():
        a64 = (mat.detach().cpu().double().numpy() if isinstance(mat, torch.Tensor)
               else np.asarray(mat, dtype=np.float64))
        if a64.shape[0] < a64.shape[1]:
            a64 = a64.T
        x_true = rng.standard_normal(a64.shape[1])
        b64 = a64 @ x_true
        a, b = a64.astype(dtype), b64.astype(dtype)
        s = np.linalg.svd(a64, compute_uv=False)
        cond = float(s[0] / s[-1]) if s[-1] > 0 else math.inf
        for solver, fn in LSTSQ_SOLVERS.items():
            times = []
            for _ in range(max(1, repeats)):
                t0 = time.perf_counter()
                x = fn(a, b)
                times.append(time.perf_counter() - t0)
            x = x.astype(np.float64)
            rows.append({"matrix": name, "shape": list(a64.shape), "solver": solver, "dtype": dtype,
                         "cond": cond,
                         "rel_error": float(np.linalg.norm(x - x_true) / np.linalg.norm(x_true)),
                         "rel_residual": float(np.linalg.norm(a64 @ x - b64) / np.linalg.norm(b64)),
                         "time_ms": float(np.median(times) * 1e3), "blas_threads": blas_threads})
    return rows


def full_rank_identity(model: nn.Module, methods: Iterable[str] = METHODS,
                       layers: Iterable[str] = DEFAULT_LAYERS, n_inputs: int = 64,
                       seed: int = 0) -> list[dict]:
    """At full rank every decomposition must reproduce its layer: for each target layer and
    method, the max |decomposed(x) - layer(x)| over ``n_inputs`` random N(0, I) inputs
    (float32, the model's dtype), with the layer's shape."""
    g = torch.Generator().manual_seed(seed)
    rows = []
    for name, layer in target_layers(model, layers):
        x = torch.randn(n_inputs, layer.in_features, generator=g).to(layer.weight)
        with torch.no_grad():
            ref = layer(x)
            for meth in methods:
                full = decompose_linear(layer, meth)
                rows.append({"layer": name, "shape": list(layer.weight.shape), "method": meth,
                             "max_abs_diff": float((full(x) - ref).abs().max())})
    return rows
