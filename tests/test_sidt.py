"""Unit tests of SiDT (reprolib.methods.sidt): scores, physical pruning, save/load, complexity."""

import pytest
import torch

import reprolib
from reprolib.errors import ReprolibError
from reprolib.methods import sidt

torch.set_num_threads(1)


def _model(seed=0, **kw):
    torch.manual_seed(seed)
    return reprolib.create_model("swin_tiny_test", **kw).eval()


def _randomise_scores(model, seed=1):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for a in sidt.scores(model).values():
            a.copy_(torch.rand(a.shape, generator=g) * 2 - 0.5)   # some negative, some near 0


def _x(b=4, size=32, seed=2):
    return torch.randn(b, 3, size, size, generator=torch.Generator().manual_seed(seed))


def test_registered_models():
    names = reprolib.list_models(paper="sidt")
    assert {"swin_t", "swin_cifar", "swin_tiny_test"} <= set(names)


def test_scores_at_one_are_identity_to_timm():
    m = _model()
    x = _x()
    with torch.no_grad():
        ref = m(x)
        sidt.attach_scores(m)
        out = m(x)
    s = sidt.scores(m)
    # one attention + one MLP score vector per block; attention vector = head_dim long
    assert len(s) == 2 * 8
    assert s["layers.0.blocks.0.attn"].shape == (16,)
    assert s["layers.0.blocks.0.mlp"].shape == (64,)
    assert all(bool((a == 1).all()) for a in s.values())
    assert (out - ref).abs().max().item() < 1e-5


def test_fused_and_manual_attention_agree():
    m = sidt.attach_scores(_model())
    _randomise_scores(m)
    x = _x()
    with torch.no_grad():
        a = m(x)
        for mod in m.modules():
            if isinstance(mod, sidt.SiDTWindowAttention):
                mod.fused_attn = not mod.fused_attn
        b = m(x)
    assert (a - b).abs().max().item() < 1e-5


def test_ratio_zero_is_exact_identity():
    m = sidt.attach_scores(_model())
    _randomise_scores(m)
    x = _x()
    p = sidt.prune(m, 0.0)
    with torch.no_grad():
        diff = (p(x) - m(x)).abs().max().item()
    assert diff < 1e-5
    assert not sidt.scores(p)                                   # an ordinary model
    assert sum(t.numel() for t in p.parameters()) == \
        sum(t.numel() for n, t in m.named_parameters() if not n.endswith("alpha"))


def test_zero_scores_pruned_away_is_exact():
    """Dimensions whose score is exactly 0 contribute nothing: pruning them is exact."""
    m = sidt.attach_scores(_model())
    _randomise_scores(m)
    with torch.no_grad():
        for a in sidt.scores(m).values():
            a[: a.numel() // 2] = 0.0
    p = sidt.prune(m, 0.5, scope="layer")
    x = _x()
    with torch.no_grad():
        assert (p(x) - m(x)).abs().max().item() < 1e-5
    blk = p.layers[1].blocks[0]
    assert blk.attn.qkv.weight.shape == (3 * 2 * 8, 32)          # 2 heads x 8 of 16 dims
    assert blk.attn.proj.weight.shape == (32, 16)
    assert blk.mlp.fc1.weight.shape == (64, 32) and blk.mlp.fc2.weight.shape == (32, 64)


def test_pruned_attention_keeps_scale_and_bias():
    m = sidt.attach_scores(_model())
    _randomise_scores(m)
    p = sidt.prune(m, 0.6, scope="layer")
    for (n, a), (_, b) in zip(m.named_modules(), p.named_modules()):
        if isinstance(a, sidt.SiDTWindowAttention):
            assert b.scale == pytest.approx(16 ** -0.5)
            assert b.head_dim < 16 and b.orig_head_dim == 16
            assert torch.equal(a.relative_position_bias_table, b.relative_position_bias_table)


@pytest.mark.parametrize("scope", ["global", "layer"])
@pytest.mark.parametrize("ratio", [0.2, 0.4, 0.6, 0.8])
def test_param_count_matches_closed_form(ratio, scope):
    m = sidt.attach_scores(_model())
    _randomise_scores(m)
    p = sidt.prune(m, ratio, scope=scope)
    a = sidt.arch(p)
    assert sum(t.numel() for t in p.parameters()) == sidt.param_count_closed_form(m, a)
    kept = sum(a["attn_dims"].values()) + sum(a["mlp_dims"].values())
    total = sum(s.numel() for s in sidt.scores(m).values())
    assert all(v >= 1 for v in a["attn_dims"].values()) and all(v >= 1 for v in a["mlp_dims"].values())
    if scope == "global":
        # exactly round(ratio * total) removed, except a layer emptied keeps its best dimension
        n_one = sum(v == 1 for v in list(a["attn_dims"].values()) + list(a["mlp_dims"].values()))
        assert total - round(ratio * total) <= kept <= total - round(ratio * total) + n_one
    else:
        assert a["attn_dims"]["layers.0.blocks.0.attn"] == 16 - round(ratio * 16)
    with torch.no_grad():
        assert p(_x(2)).shape == (2, 10)


def test_global_ranking_removes_smallest_scores():
    m = sidt.attach_scores(_model())
    _randomise_scores(m)
    keep = sidt.keep_indices(m, 0.4)
    s = sidt.scores(m)
    kept_min = min(s[n].detach().abs()[i].min().item() for n, i in keep.items())
    removed_max = max((s[n].detach().abs()[[j for j in range(s[n].numel()) if j not in set(i.tolist())]]
                       .max().item() for n, i in keep.items() if len(i) < s[n].numel()))
    assert removed_max <= kept_min


def test_every_layer_keeps_one_dimension():
    m = sidt.attach_scores(_model())
    with torch.no_grad():
        for n, a in sidt.scores(m).items():
            a.fill_(1e-6 if n.endswith("layers.3.blocks.1.attn") else 1.0)
    keep = sidt.keep_indices(m, 0.1)
    assert len(keep["layers.3.blocks.1.attn"]) == 1


def test_bad_arguments_raise():
    m = sidt.attach_scores(_model())
    for r in (-0.1, 1.0, 1.5):
        with pytest.raises(ReprolibError):
            sidt.prune(m, r)
    with pytest.raises(ReprolibError):
        sidt.prune(m, 0.2, scope="channel")
    with pytest.raises(ReprolibError):
        sidt.prune(_model(), 0.2)                                 # no scores attached
    with pytest.raises(ReprolibError):
        sidt.attach_scores(torch.nn.Linear(3, 3))


def test_l1_penalty():
    m = sidt.attach_scores(_model())
    total = sum(a.numel() for a in sidt.scores(m).values())
    assert sidt.l1_penalty(m, 1e-4).item() == pytest.approx(1e-4 * total)
    sidt.l1_penalty(m).backward()
    assert all(a.grad is not None and torch.allclose(a.grad, torch.full_like(a, 1e-4))
               for a in sidt.scores(m).values())


def test_save_load_round_trip(tmp_path):
    m = sidt.attach_scores(_model())
    _randomise_scores(m)
    p = sidt.prune(m, 0.4)
    js, pt = sidt.save(p, tmp_path / "p40")
    assert js.exists() and pt.exists()
    q = sidt.load(tmp_path / "p40").eval()
    x = _x()
    with torch.no_grad():
        assert torch.equal(p(x), q(x))
    assert sidt.arch(q)["attn_dims"] == sidt.arch(p)["attn_dims"]
    assert sidt.arch(q)["mlp_dims"] == sidt.arch(p)["mlp_dims"]


def test_pruned_model_can_be_rescored_and_trained():
    m = sidt.attach_scores(_model())
    _randomise_scores(m)
    p = sidt.prune(m, 0.5).train()
    loss = p(_x(2)).sum()
    loss.backward()
    assert all(t.grad is not None for t in p.parameters() if t.requires_grad)
    sidt.attach_scores(p)
    assert sidt.scores(p)["layers.0.blocks.0.attn"].numel() == p.layers[0].blocks[0].attn.head_dim


def test_layer_complexity_matches_closed_forms():
    m = sidt.attach_scores(_model())
    _randomise_scores(m)
    for model in (m, sidt.prune(m, 0.4)):
        rows = sidt.layer_complexity(model, (3, 32, 32))
        assert len(rows) == 16
        for r in rows:
            assert r["measured_macs"] == r["formula_macs"], r


def test_swin_t_size():
    """Swin-T with 100 classes at 224 px: SiDT Table I baseline 27.60 M params (paper convention)."""
    m = reprolib.create_model("swin_t", num_classes=100)
    assert round(sum(t.numel() for t in m.parameters()) / 1e6, 2) == 27.60
    sidt.attach_scores(m)
    assert len(sidt.scores(m)) == 24
    assert sidt.scores(m)["layers.2.blocks.0.attn"].numel() == 32


def test_transfer_dims_to_swin_t_keeps_fractions():
    torch.manual_seed(0)
    small = sidt.attach_scores(reprolib.create_model("swin_cifar"))     # Swin-T layout, 32 px
    p = sidt.prune(small, 0.5, scope="layer")
    full = reprolib.create_model("swin_t", num_classes=100)
    a = sidt.transfer_dims(sidt.arch(p), full)
    assert set(a["attn_dims"]) == set(sidt.arch(p)["attn_dims"])
    assert all(v == 16 for v in a["attn_dims"].values())                # 32 -> 16 per head
    assert a["mlp_dims"]["layers.2.blocks.5.mlp"] == 768                 # 1536 -> 768
    m = sidt.build(a)
    assert sum(t.numel() for t in m.parameters()) == sidt.param_count_closed_form(full, a)


def test_corrupt_pruned_model_files_are_clear_errors(tmp_path):
    import reprolib
    from reprolib.errors import ReprolibError
    from reprolib.methods import sidt

    small = sidt.prune(sidt.attach_scores(reprolib.create_model("swin_tiny_test")), 0.5)
    sidt.save(small, tmp_path / "p50")
    (tmp_path / "p50.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ReprolibError, match="pruned-model weights .*p50.pt is corrupt"):
        sidt.load(tmp_path / "p50")
    (tmp_path / "p50.json").write_text("{")
    with pytest.raises(ReprolibError, match="pruned-architecture file .*p50.json is corrupt"):
        sidt.load(tmp_path / "p50")
