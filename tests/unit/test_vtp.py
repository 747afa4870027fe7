"""Tests of the CIFAR ViT (vit_cifar) and VTP pruning (reprolib.methods.vtp): closed-form
parameter counts, rate 0 = same function, pruned == masked, the L1 term both ways, and
save_compressed / load_compressed round trips of scored, pruned and decomposed ViTs."""

import pytest
import torch

import reprolib
from reprolib.errors import ReprolibError
from reprolib.methods import decompose, vtp
from reprolib.models.vit_cifar import ViTCifar


def _nparams(m):
    return sum(p.numel() for p in m.parameters())


def _scored_tiny(seed=0, **kw):
    torch.manual_seed(seed)
    m = reprolib.create_model("test_vit_cifar", **kw).eval()
    vtp.attach_scores(m)
    with torch.no_grad():  # trained-looking scores: spread out, some negative
        for s in vtp.scores(m).values():
            s.copy_(torch.randn_like(s))
    return m


@pytest.mark.parametrize("patch,expected", [(2, 9_866_250), (4, 9_786_378), (8, 9_835_530)])
def test_vit_cifar_param_counts(patch, expected):
    # Closed form: pos (n+1)d + patch embed (3p^2 d + d) + cls d
    #  + depth * (2 LN 4d + q,k,v 3d^2 + out d^2+d + fc1 d*mlp+mlp + fc2 mlp*d+d)
    #  + head LN 2d + d*mlp+mlp + mlp*10+10, with d = mlp = 512, depth 6.
    d, mlp, depth, n = 512, 512, 6, (32 // patch) ** 2
    closed = ((n + 1) * d + 3 * patch * patch * d + d + d
              + depth * (4 * d + 3 * d * d + d * d + d + d * mlp + mlp + mlp * d + d)
              + 2 * d + d * mlp + mlp + mlp * 10 + 10)
    m = reprolib.create_model("vit_cifar", patch_size=patch, num_classes=10)
    assert _nparams(m) == closed == expected
    assert m(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_attn_scale_option():
    m = reprolib.create_model("test_vit_cifar")
    assert m.blocks[0].attn.scale == pytest.approx(64 ** -0.5)  # faithful: full dim
    m = reprolib.create_model("test_vit_cifar", attn_scale="head")
    assert m.blocks[0].attn.scale == pytest.approx(16 ** -0.5)
    with pytest.raises(ReprolibError, match="dim, head"):
        reprolib.create_model("test_vit_cifar", attn_scale="sqrt")


def test_attention_matches_einsum_reference():
    torch.manual_seed(0)
    m = reprolib.create_model("test_vit_cifar").eval()
    a = m.blocks[0].attn
    x = torch.randn(2, 17, 64)
    q, k, v = (t.reshape(2, 17, 4, 16).transpose(1, 2) for t in (a.to_q(x), a.to_k(x), a.to_v(x)))
    att = (torch.einsum("bhid,bhjd->bhij", q, k) * 64 ** -0.5).softmax(-1)
    ref = a.to_out(torch.einsum("bhij,bhjd->bhid", att, v).transpose(1, 2).reshape(2, 17, 64))
    torch.testing.assert_close(a(x), ref, atol=1e-5, rtol=1e-5)


def test_scores_start_neutral():
    torch.manual_seed(0)
    m = reprolib.create_model("test_vit_cifar").eval()
    x = torch.randn(2, 3, 32, 32)
    y0 = m(x)
    vtp.attach_scores(m)
    sc = vtp.scores(m)
    assert list(sc) == ["blocks.0.attn", "blocks.0.mlp", "blocks.1.attn", "blocks.1.mlp"]
    assert [s.numel() for s in sc.values()] == [64, 64, 64, 64]
    assert all(torch.equal(s, torch.ones_like(s)) for s in sc.values())
    assert vtp.score_parameters(m) == list(sc.values())
    torch.testing.assert_close(m(x), y0)


@pytest.mark.parametrize("patch", [4, 8])
def test_rate_zero_is_the_same_function(patch):
    m = _scored_tiny(patch_size=patch)
    x = torch.randn(3, 3, 32, 32)
    pruned = vtp.prune(m, 0.0)
    assert _nparams(pruned) == _nparams(m) - sum(s.numel() for s in vtp.scores(m).values())
    torch.testing.assert_close(pruned(x), m(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("patch", [2, 4, 8])
@pytest.mark.parametrize("rate", [0.0, 0.3, 0.6, 0.9])
def test_pruned_equals_masked(patch, rate):
    m = _scored_tiny(patch_size=patch)
    x = torch.randn(3, 3, 32, 32)
    pruned, masked = vtp.prune(m, rate), vtp.mask(m, rate)
    assert not vtp.score_modules(pruned)          # scores folded into the weights
    assert (pruned(x) - masked(x)).abs().max() < 1e-5
    if rate > 0:
        assert _nparams(pruned) < _nparams(m)


def test_prune_keeps_heads_equal_and_in_place():
    m = _scored_tiny()
    p = vtp.plan(m, 0.5)
    pruned = vtp.prune(m, 0.5)
    for i, blk in enumerate(pruned.blocks):
        keep = p.keep[f"blocks.{i}.attn"]
        hd = blk.attn.head_dim
        assert keep.numel() == 4 * hd and blk.attn.to_q.out_features == 4 * hd
        # each head keeps hd of its own 16 dims, in order
        for h in range(4):
            own = keep[h * hd:(h + 1) * hd]
            assert torch.all((own >= h * 16) & (own < (h + 1) * 16)) and torch.all(own.diff() > 0)
        assert blk.mlp.fc1.out_features == blk.mlp.fc2.in_features == p.keep[f"blocks.{i}.mlp"].numel()
        assert blk.attn.scale == pytest.approx(64 ** -0.5)  # not recomputed


def test_global_threshold_counts():
    m = _scored_tiny()
    allv = torch.cat([s.detach().abs() for s in vtp.score_parameters(m)])
    p = vtp.plan(m, 0.5)
    n_prune = round(0.5 * allv.numel())
    tau = torch.sort(allv).values[n_prune]
    assert p.threshold == pytest.approx(float(tau))
    # MLP layers keep exactly the scores with |a| >= tau (no ties with random scores)
    for name, m_ in vtp.score_modules(m):
        if name.endswith("mlp"):
            expect = torch.nonzero(m_.score.weight.detach().abs() >= tau).flatten()
            assert torch.equal(p.keep[name], expect)


def test_prune_rejects_bad_rate():
    m = _scored_tiny()
    for bad in (-0.1, 1.0, 1.5):
        with pytest.raises(ReprolibError, match=r"rate=.*\[0\.0, 1\.0\)"):
            vtp.prune(m, bad)


def test_l1_hook_equals_l1_loss_gradient():
    m = _scored_tiny()
    m.blocks[0].mlp.score.weight.data[:3] = 0.0  # sign(0) = 0 = d|a|/da at 0 in both
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))
    lam = 1e-2

    def grads(use_loss):
        m.zero_grad()
        loss = torch.nn.functional.cross_entropy(m(x), y)
        if use_loss:
            loss = loss + vtp.l1_penalty(m, strength=lam)
        loss.backward()
        if not use_loss:
            vtp.l1_grad_hook(strength=lam)(m)
        return [p.grad.clone() for p in m.parameters()]

    g_loss, g_hook = grads(True), grads(False)
    for g1, g2 in zip(g_loss, g_hook):
        torch.testing.assert_close(g1, g2, atol=1e-7, rtol=1e-6)
    # the L1 term really is in there: without it the score gradients differ by lam * sign(a)
    m.zero_grad()
    torch.nn.functional.cross_entropy(m(x), y).backward()
    a = m.blocks[1].attn.score.weight
    torch.testing.assert_close(g_hook[[p is a for p in m.parameters()].index(True)] - a.grad,
                               lam * torch.sign(a.detach()))


def test_l1_penalty_value():
    m = _scored_tiny()
    total = sum(s.detach().abs().sum() for s in vtp.scores(m).values())
    assert float(vtp.l1_penalty(m, strength=1e-3).detach()) == pytest.approx(1e-3 * float(total), rel=1e-6)
    assert float(vtp.l1_penalty(reprolib.create_model("test_vit_cifar"))) == 0.0


def _same_outputs(model, path):
    x = torch.randn(2, 3, 32, 32)
    reprolib.save_compressed(model.eval(), path)
    back = reprolib.load_compressed(path).eval()
    assert _nparams(back) == _nparams(model)
    assert torch.equal(back(x), model(x))
    return back


def test_save_compressed_round_trip_of_scored_pruned_and_decomposed(tmp_path):
    m = _scored_tiny()
    back = _same_outputs(m, tmp_path / "scored")           # the scores come back too
    assert torch.equal(vtp.scores(back)["blocks.1.mlp"], vtp.scores(m)["blocks.1.mlp"])
    pruned = vtp.prune(m, 0.5)
    assert pruned.reprolib_spec["builder"] == "vit_cifar"
    assert pruned.reprolib_spec["kwargs"]["block_dims"] == pruned.architecture()["block_dims"]
    back = _same_outputs(pruned, tmp_path / "pruned")
    assert isinstance(back, ViTCifar) and back.architecture() == pruned.architecture()
    for method in ("svd", "lu"):
        dec = decompose.decompose_model(pruned, method, rank_ratio=0.25)
        assert decompose.current_ranks(dec)
        assert dec.reprolib_spec["arch"] == [{"kind": "lowrank",
                                              "ranks": decompose.current_ranks(dec)}]
        back = _same_outputs(dec, tmp_path / f"dec_{method}")
        assert decompose.current_ranks(back) == decompose.current_ranks(dec)


def test_load_compressed_rejects_mismatched_and_corrupt_files(tmp_path):
    pruned = vtp.prune(_scored_tiny(), 0.5)
    js = reprolib.save_compressed(pruned, tmp_path / "pruned")
    other = reprolib.save_compressed(vtp.prune(_scored_tiny(seed=1), 0.2), tmp_path / "other")
    # weights of another pruned width under this architecture
    (tmp_path / "pruned.safetensors").write_bytes((tmp_path / "other.safetensors").read_bytes())
    with pytest.raises(ReprolibError, match="do not fit"):
        reprolib.load_compressed(js)
    (tmp_path / "pruned.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ReprolibError):
        reprolib.load_compressed(js)
    other.write_text("{ truncated")
    with pytest.raises(ReprolibError):
        reprolib.load_compressed(other)


def test_prune_refuses_a_decomposed_model():
    dec = decompose.decompose_model(vtp.prune(_scored_tiny(), 0.3), "svd", 0.25)
    with pytest.raises(ReprolibError, match="before decomposing"):
        vtp.prune(dec, 0.3)


def test_vit_cifar_builders_and_ranks_kwarg():
    m = reprolib.create_model("vit_cifar_small_d2")
    assert (m.architecture()["patch_size"], len(m.architecture()["block_dims"])) == (2, 2)
    small = reprolib.create_model("vit_cifar_small")
    assert (small.arch["dim"], small.arch["depth"], small.arch["heads"]) == (96, 4, 4)
    # architecture() rebuilds a decomposed model through create_model("vit_cifar", ...)
    dec = decompose.decompose_model(vtp.prune(_scored_tiny(), 0.3), "qr", 0.25)
    again = reprolib.create_model("vit_cifar", **dec.architecture())
    assert decompose.current_ranks(again) == decompose.current_ranks(dec)
    assert _nparams(again) == _nparams(dec)
