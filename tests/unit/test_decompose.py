"""Tests of the matrix decompositions (reprolib.methods.decompose): full rank reproduces the
layer, the factors have their documented structure, SVD is the optimal truncation."""

import numpy as np
import pytest
import scipy.linalg
import torch

import reprolib
from reprolib.errors import ReprolibError
from reprolib.methods import decompose, vtp
from reprolib.methods.decompose import METHODS


def _layer(out_f, in_f, seed=0):
    torch.manual_seed(seed)
    return torch.nn.Linear(in_f, out_f)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("shape", [(24, 40), (40, 24), (32, 32)])
def test_full_rank_reproduces_layer(method, shape):
    layer = _layer(*shape)
    full = decompose.decompose_linear(layer, method, min(shape))
    x = torch.randn(16, shape[1])
    assert (full(x) - layer(x)).abs().max().item() < 1e-4
    assert full.first.weight.shape == (min(shape), shape[1])
    assert full.second.weight.shape == (shape[0], min(shape))


@pytest.mark.parametrize("method", METHODS)
def test_factors_have_the_documented_structure(method):
    w = np.random.default_rng(0).standard_normal((30, 20))
    r = 8
    a, b = decompose.factorize(w, method, r)
    assert a.shape == (30, r) and b.shape == (r, 20)
    if method in ("svd", "qr", "qr_reduced", "qr_pivoted"):  # A (or U) has orthogonal columns
        g = a.T @ a
        np.testing.assert_allclose(g - np.diag(np.diag(g)), 0, atol=1e-10)
    if method in ("qr", "qr_reduced"):
        np.testing.assert_allclose(np.tril(b, -1), 0, atol=1e-12)  # leading rows of R
    if method == "cod":  # B = Z^T Pi^T has orthonormal rows; same product as pivoted QR
        np.testing.assert_allclose(b @ b.T, np.eye(r), atol=1e-10)
        a2, b2 = decompose.factorize(w, "qr_pivoted", r)
        np.testing.assert_allclose(a @ b, a2 @ b2, atol=1e-10)
    if method == "lu":
        pl, u = scipy.linalg.lu(w, permute_l=True)
        np.testing.assert_allclose(a, pl[:, :r])
        np.testing.assert_allclose(b, u[:r])


def test_svd_truncation_error_is_eckart_young():
    layer = _layer(48, 64)
    w = layer.weight.detach().double()
    s = torch.linalg.svdvals(w)
    for r in (1, 5, 20, 47):
        e = decompose.truncation_error(layer.weight, "svd", r)
        assert e["rel_fro"] == pytest.approx(float(s[r:].norm() / s.norm()), rel=1e-9)
        assert e["rel_spec"] == pytest.approx(float(s[r] / s[0]), rel=1e-9)
        # SVD is optimal: no other method's rank-r product is closer in Frobenius norm
        for m in METHODS:
            assert decompose.truncation_error(layer.weight, m, r)["rel_fro"] >= e["rel_fro"] - 1e-12


def test_rank_by_ratio_and_energy():
    w = torch.diag(torch.tensor([4.0, 2.0, 1.0, 1.0]))  # sigma^2 = 16, 4, 1, 1 (sum 22)
    assert decompose.choose_rank(w, rank_ratio=0.5) == 2
    assert decompose.choose_rank(w, rank_ratio=0.01) == 1
    assert decompose.choose_rank(w, energy=16 / 22) == 1
    assert decompose.choose_rank(w, energy=0.8) == 2
    assert decompose.choose_rank(w, energy=1.0) == 4
    with pytest.raises(ReprolibError):
        decompose.choose_rank(w, rank_ratio=1.5)


def test_bad_method_and_rank_name_the_choices():
    layer = _layer(8, 6)
    with pytest.raises(ReprolibError, match="svd, qr, qr_reduced, qr_pivoted, cod, lu"):
        decompose.decompose_linear(layer, "eig", 2)
    with pytest.raises(ReprolibError, match="rank"):
        decompose.decompose_linear(layer, "svd", 7)
    with pytest.raises(ReprolibError, match="svd, qr"):
        decompose.decompose_model(torch.nn.Sequential(layer), "cholesky", 0.5)


@pytest.mark.parametrize("method", METHODS)
def test_decompose_model_shrinks_pruned_vit(method):
    torch.manual_seed(0)
    m = vtp.attach_scores(reprolib.create_model("test_vit_cifar").eval())
    pruned = vtp.prune(m, 0.3)
    dec = decompose.decompose_model(pruned, method, rank_ratio=0.25)
    ranks = decompose.current_ranks(dec)
    assert len(ranks) == 12  # 6 linears x 2 blocks
    n = lambda mm: sum(p.numel() for p in mm.parameters())
    assert n(dec) < n(pruned) < n(m)
    assert dec(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    # the input model is untouched; a layer that would not shrink stays dense
    assert not decompose.current_ranks(pruned)
    assert not decompose.current_ranks(decompose.decompose_model(pruned, method, rank_ratio=1.0))


def test_lstsq_merits_orders_accuracy():
    rng = np.random.default_rng(0)
    u, _ = np.linalg.qr(rng.standard_normal((80, 30)))
    v, _ = np.linalg.qr(rng.standard_normal((30, 30)))
    a = (u * np.logspace(0, -3, 30)) @ v.T  # cond 1e3: normal equations square it
    rows = decompose.lstsq_merits({"A": a}, dtype="float32", repeats=2)
    err = {r["solver"]: r["rel_error"] for r in rows}
    assert rows[0]["cond"] == pytest.approx(1e3, rel=1e-6)
    assert err["normal_equations"] > 10 * err["qr"]
    assert err["normal_equations"] > 10 * err["svd"]
    rows64 = decompose.lstsq_merits({"A": a}, dtype="float64", repeats=1)
    assert max(r["rel_error"] for r in rows64 if r["solver"] != "normal_equations") < 1e-10


def test_full_rank_identity_on_pruned_vit():
    torch.manual_seed(0)
    m = vtp.prune(vtp.attach_scores(reprolib.create_model("test_vit_cifar").eval()), 0.3)
    rows = decompose.full_rank_identity(m, n_inputs=8)
    assert len(rows) == 12 * len(METHODS)
    assert max(r["max_abs_diff"] for r in rows) < 1e-4


def test_lowrank_layer_lives_in_models_and_is_reexported():
    from reprolib.models.layers import lowrank
    assert decompose.LowRankLinear is lowrank.LowRankLinear
    assert decompose.apply_ranks is lowrank.apply_ranks
    assert decompose.current_ranks is lowrank.current_ranks


def test_decompose_model_of_a_plain_module_records_no_spec():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(32, 48), torch.nn.ReLU(), torch.nn.Linear(48, 8))
    dec = decompose.decompose_model(net, "svd", rank_ratio=0.25, layers=("0", "2"))
    assert decompose.current_ranks(dec) == {"0": 8, "2": 2}   # 0.25 x min(out, in)
    assert getattr(dec, "reprolib_spec", None) is None
    x = torch.randn(4, 32)
    full = decompose.decompose_model(net, "qr", rank_ratio=1.0, layers=("0",),
                                     only_if_smaller=False)
    assert (full(x) - net(x)).abs().max() < 1e-5


def test_timed_tokens_keeps_a_layer_dense_where_its_factors_are_not_faster(monkeypatch):
    """decompose_model(timed_tokens=...): the break-even test by FLOPs first, then by measured
    time; a layer whose two factors time no faster than the dense matmul stays dense and is
    listed with the times; the others are factored as without timing."""
    import torch.nn as nn

    from reprolib.methods import decompose as D

    torch.manual_seed(0)
    net = nn.Sequential()
    net.add_module("fc1", nn.Linear(64, 64))
    net.add_module("fc2", nn.Linear(64, 64))
    # a stand-in clock: fc1's factors "slower", fc2's faster (real timing is machine-bound)
    calls = iter([{"dense": 1.0, "factored": 1.2}, {"dense": 1.0, "factored": 0.4}])
    monkeypatch.setattr(D, "_timed", lambda dense, fac, tokens, repeats: next(calls))
    with pytest.warns(UserWarning, match="not faster when timed"):
        new = D.decompose_model(net, "svd", 0.25, layers=("fc*",), timed_tokens=128)
    kept = D.kept_dense(new)
    assert list(kept) == ["fc1"] and kept["fc1"]["timed_ms"] == {"dense": 1.0, "factored": 1.2}
    assert isinstance(new.fc1, nn.Linear) and not isinstance(new.fc2, nn.Linear)


def test_the_layer_clock_times_both_forms():
    import torch.nn as nn

    from reprolib.methods import decompose as D

    lin = nn.Linear(32, 32)
    ms = D._timed(lin, D.decompose_linear(lin, "svd", 8), 64, 3)
    assert set(ms) == {"dense", "factored"} and all(v > 0 for v in ms.values())
