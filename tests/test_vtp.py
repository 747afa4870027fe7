"""Tests of the CIFAR ViT (vit_cifar) and VTP pruning (reprolib.methods.vtp)."""

import pytest
import torch

import reprolib
from reprolib.errors import ReprolibError
from reprolib.methods import decompose, vtp


def _nparams(m):
    return sum(p.numel() for p in m.parameters())


def _scored_tiny(seed=0, **kw):
    torch.manual_seed(seed)
    m = reprolib.create_model("test_vit_cifar", **kw).eval()
    vtp.attach_scores(m)
    with torch.no_grad():  # trained-looking scores: spread out, some negative
        for s in vtp.score_parameters(m):
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
    assert len(vtp.score_parameters(m)) == 4  # 2 blocks x (attn, mlp)
    assert all(torch.equal(s, torch.ones_like(s)) for s in vtp.score_parameters(m))
    torch.testing.assert_close(m(x), y0)


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
            loss = loss + vtp.l1_penalty(m, lam)
        loss.backward()
        if not use_loss:
            vtp.l1_grad_hook(lam)(m)
        return [p.grad.clone() for p in m.parameters()]

    for g1, g2 in zip(grads(True), grads(False)):
        torch.testing.assert_close(g1, g2, atol=1e-7, rtol=1e-6)


def test_save_and_reload_pruned_and_decomposed(tmp_path):
    m = _scored_tiny()
    x = torch.randn(2, 3, 32, 32)
    pruned = vtp.prune(m, 0.5)
    dec = decompose.decompose_model(pruned, "svd", rank_ratio=0.25)
    assert decompose.current_ranks(dec)
    for i, model in enumerate((pruned, dec)):
        f = tmp_path / f"m{i}.pt"
        vtp.save(model, f)
        back = vtp.load(f).eval()
        assert _nparams(back) == _nparams(model)
        assert torch.equal(back(x), model(x))


@pytest.mark.slow  # ~15 s alone, ~60 s on the shared 2-core machine
def test_pipeline_records_and_tables(tmp_path, monkeypatch):
    """Dense baseline, L1 phase and VTP records, one decomposition record on digits (1 epoch
    each), then Table 2; every phase is its own cached record."""
    from reprolib.configs import get_config
    monkeypatch.setenv("REPROLIB_RESULTS", str(tmp_path))
    monkeypatch.setenv("CI", "1")
    cfg = get_config("vtp_svd", "smoke", patch_sizes=(8,), pretrain_epochs=1, sparsity_epochs=1,
                     finetune_epochs=1, decompose_finetune_epochs=0, methods=("svd",))
    rec = vtp.vtp_record(cfg, 8)
    m = rec["metrics"]
    dense, sparse = vtp.dense_record(cfg, 8), vtp.sparse_record(cfg, 8)
    assert m["acc_dense"] == dense["metrics"]["acc"] and m["acc_sparse"] == sparse["metrics"]["acc"]
    assert set(m["history"]) == {"pretrain", "sparsity", "finetune"}
    assert m["params"] < m["params_dense"] == dense["metrics"]["params"] and 0 <= m["acc"] <= 100
    d = vtp.decomposed_record(cfg, 8, "svd", cfg.rank_ratio, 0)["metrics"]
    assert d["params"] < m["params"] and d["acc"] == d["acc_no_ft"]
    t = vtp.table2(cfg)
    assert list(t["model"]) == ["ViT (dense baseline)", "ViT (after L1, before pruning)", "VTP", "VTP+SVD"]
    assert list(t["epochs"]) == [1, 2, 3, 3] and list(t["phases"]) == ["1", "1+1", "1+1+1", "1+1+1+0"]
    assert t.loc[t["model"] == "VTP", "acc_paper"].item() == 30.0
    # a rerun reuses the records
    assert vtp.dense_record(cfg, 8)["run_id"] == dense["run_id"]
    assert vtp.vtp_record(cfg, 8)["run_id"] == rec["run_id"]


def test_patch_cfg_overrides():
    """Per-patch overrides change only that patch size's config (and its record keys)."""
    from reprolib.configs import get_config
    cfg = get_config("vtp_svd", "smoke", patch_overrides={2: {"model": "vit_cifar_small_d2",
                                                               "pretrain_epochs": 3}})
    assert vtp.patch_cfg(cfg, 4) is cfg
    c2 = vtp.patch_cfg(cfg, 2)
    assert (c2.model, c2.pretrain_epochs, c2.sparsity_epochs) == ("vit_cifar_small_d2", 3, cfg.sparsity_epochs)
    assert set(vtp._stage_keys(c2, vtp.DENSE_KEYS)) < set(vtp._stage_keys(c2, vtp.SPARSE_KEYS)) < set(vtp._stage_keys(c2))
    m = reprolib.create_model("vit_cifar_small_d2")
    assert (m.architecture()["patch_size"], len(m.architecture()["block_dims"])) == (2, 2)
