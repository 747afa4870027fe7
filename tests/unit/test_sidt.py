"""Unit tests of SiDT (reprolib.methods.sidt): scores, physical pruning, the compressed-model
round trip, closed-form counts and complexity."""

import json

import pytest
import torch

import reprolib
from reprolib.core.compressed import build
from reprolib.errors import ReprolibError
from reprolib.core.measure import count_flops, count_params
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
    assert {"swin_t", "swin_cifar", "swin_tiny_test", "swin_transformer"} <= set(names)


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


@pytest.mark.parametrize("scope", ["global", "layer"])
def test_pruned_equals_masked(scope):
    """The physically smaller model computes what the scored model computes with the removed
    dimensions' scores set to 0 (a mask): pruning removes only dead dimensions."""
    import copy

    m = sidt.attach_scores(_model())
    _randomise_scores(m)
    keep = sidt.keep_indices(m, 0.4, scope)
    masked = copy.deepcopy(m)
    with torch.no_grad():
        for n, a in sidt.scores(masked).items():
            mask = torch.zeros_like(a, dtype=torch.bool)
            mask[keep[n]] = True
            a[~mask] = 0.0
    p = sidt.prune(m, 0.4, scope)
    assert count_params(p) < count_params(m) - sum(a.numel() for a in sidt.scores(m).values())
    x = _x()
    with torch.no_grad():
        assert (p(x) - masked(x)).abs().max().item() < 1e-5


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
    assert sidt.l1_penalty(m, strength=3e-4).item() == pytest.approx(3e-4 * total)
    sidt.l1_penalty(m).backward()
    assert all(a.grad is not None and torch.allclose(a.grad, torch.full_like(a, 1e-4))
               for a in sidt.scores(m).values())


def _same(a, b, x=None):
    x = _x() if x is None else x
    with torch.no_grad():
        return torch.equal(a.eval()(x), b.eval()(x))


def test_save_load_compressed_round_trip_of_pruned_swin(tmp_path):
    m = sidt.attach_scores(_model())
    _randomise_scores(m)
    p = sidt.prune(m, 0.4)
    js = reprolib.save_compressed(p, tmp_path / "p40")
    assert js.exists() and (tmp_path / "p40.safetensors").exists()
    spec = json.loads(js.read_text())
    assert spec["builder"] == "swin_transformer" and [s["kind"] for s in spec["arch"]] == ["sidt"]
    step = spec["arch"][0]
    assert step["ratio"] == 0.4 and step["scope"] == "global"
    assert {n: len(i) for n, i in step["kept"].items() if n.endswith(".attn")} == step["attn_dims"]
    q = reprolib.load_compressed(tmp_path / "p40")
    assert _same(p, q)
    assert count_params(q) == count_params(p) == spec["params"]
    assert not sidt.scores(q)
    assert sidt.arch(q)["attn_dims"] == sidt.arch(p)["attn_dims"]
    assert sidt.arch(q)["mlp_dims"] == sidt.arch(p)["mlp_dims"]


def test_save_load_compressed_round_trip_of_scored_swin(tmp_path):
    """The search stage saves its scored model: builder + a "sidt_scores" step."""
    m = sidt.attach_scores(_model())
    _randomise_scores(m)
    reprolib.save_compressed(m, tmp_path / "searched")
    spec = json.loads((tmp_path / "searched.json").read_text())
    assert spec["builder"] == "swin_tiny_test" and spec["arch"] == [{"kind": "sidt_scores"}]
    q = reprolib.load_compressed(tmp_path / "searched")
    assert _same(m, q)
    assert all(torch.equal(a, b) for a, b in zip(sidt.scores(m).values(), sidt.scores(q).values()))
    # the loaded model prunes to the same model as the original
    assert _same(sidt.prune(m, 0.6), sidt.prune(q, 0.6))


def test_round_trip_of_swin_built_directly_with_timm(tmp_path):
    """A SwinTransformer not made by create_model is described by swin_spec."""
    from timm.models.swin_transformer import SwinTransformer   # after reprolib (_compat)

    torch.manual_seed(3)
    m = SwinTransformer(img_size=(32, 32), patch_size=2, window_size=((4, 4), (4, 2)), embed_dim=12,
                        depths=(2, 1), num_heads=(2, 4), head_dim=5, mlp_ratio=2.0,
                        num_classes=7, drop_path_rate=0.05).eval()
    assert getattr(m, "reprolib_spec", None) is None
    sidt.attach_scores(m)
    _randomise_scores(m)
    assert m.reprolib_spec["builder"] == "swin_transformer"
    p = sidt.prune(m, 0.5)
    for name, model in (("scored", m), ("pruned", p)):
        reprolib.save_compressed(model, tmp_path / name)
        q = reprolib.load_compressed(tmp_path / name)
        assert _same(model, q), name
        assert count_params(q) == count_params(model)
    rebuilt = reprolib.create_model("swin_transformer", **sidt.swin_spec(m))
    assert rebuilt.layers[0].blocks[0].attn.qkv.out_features == 3 * 2 * 5
    assert rebuilt.layers[1].blocks[0].window_size == (4, 2)


def test_compressed_file_with_wrong_widths_is_a_clear_error(tmp_path):
    p = sidt.prune(sidt.attach_scores(_model()), 0.5)
    js = reprolib.save_compressed(p, tmp_path / "p50")
    spec = json.loads(js.read_text())
    spec["arch"][0]["attn_dims"]["layers.1.blocks.0.attn"] += 1
    js.write_text(json.dumps(spec))
    with pytest.raises(ReprolibError, match=r"do not fit the architecture of .*p50\.json"):
        reprolib.load_compressed(tmp_path / "p50")
    spec["arch"][0]["attn_dims"]["layers.1.blocks.0.attn"] = 0
    js.write_text(json.dumps(spec))
    with pytest.raises(ReprolibError, match="must be an integer >= 1"):
        reprolib.load_compressed(tmp_path / "p50")
    del spec["arch"][0]["mlp_dims"]["layers.0.blocks.0.mlp"]
    js.write_text(json.dumps(spec))
    with pytest.raises(ReprolibError, match="widths missing"):
        reprolib.load_compressed(tmp_path / "p50")


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
    """Swin-T with 100 classes at 224 px: SiDT Table I baseline 27.60 M params, 4.49 G FLOPs
    (one multiply-add = one FLOP)."""
    m = reprolib.create_model("swin_t", num_classes=100)
    assert round(count_params(m) / 1e6, 2) == 27.60
    assert round(count_flops(m, (3, 224, 224)) / 1e9, 2) == 4.49
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
    m = build(sidt.compressed_spec(a))
    assert sum(t.numel() for t in m.parameters()) == sidt.param_count_closed_form(full, a)


def test_corrupt_pruned_model_files_are_clear_errors(tmp_path):
    small = sidt.prune(sidt.attach_scores(reprolib.create_model("swin_tiny_test")), 0.5)
    reprolib.save_compressed(small, tmp_path / "p50")
    (tmp_path / "p50.safetensors").write_bytes(b"not a checkpoint")
    with pytest.raises(ReprolibError, match=r"p50\.safetensors do not fit .*p50\.json"):
        reprolib.load_compressed(tmp_path / "p50")
    (tmp_path / "p50.json").write_text("{")
    with pytest.raises(ReprolibError, match=r"compressed-model file .*p50\.json is corrupt"):
        reprolib.load_compressed(tmp_path / "p50")


def test_prune_by_another_ranking_keeps_what_it_ranks_first():
    m = sidt.attach_scores(_model())
    _randomise_scores(m)
    g = torch.Generator().manual_seed(5)
    rank = {n: torch.rand(a.numel(), generator=g) for n, a in sidt.scores(m).items()}
    keep = sidt.keep_indices(m, 0.5, "layer", ranking=rank)
    for n, idx in keep.items():
        top = torch.sort(rank[n], descending=True, stable=True).indices[:len(idx)]
        assert idx.tolist() == sorted(top.tolist())
    # ratio 0 under any ranking is still the scored model's function (scores folded in)
    x = _x()
    with torch.no_grad():
        assert (sidt.prune(m, 0.0, "global", ranking=rank)(x) - m(x)).abs().max() < 1e-4
    bad = dict(rank)
    bad.pop(next(iter(bad)))
    with pytest.raises(ReprolibError, match="ranking"):
        sidt.keep_indices(m, 0.5, ranking=bad)
    with pytest.raises(ReprolibError, match="ranking"):
        sidt.prune(m, 0.5, ranking={n: torch.rand(3) for n in rank})


@pytest.mark.parametrize("control", ["uniform", "random"])
def test_controls_are_pruned_to_the_learned_parameter_count(control):
    from reprolib.experiments.sidt import matched_prune

    m = sidt.attach_scores(_model())
    _randomise_scores(m)
    target = count_params(sidt.prune(m, 0.4, "global"))
    small, ratio = matched_prune(m, target, control, seed=3)
    assert 0 < ratio < 1
    assert abs(count_params(small) - target) / target < 0.02
    assert not sidt.scores(small)
    widths = sidt.arch(small)["mlp_dims"]
    if control == "uniform":        # every MLP of a stage keeps the same width
        assert widths["layers.0.blocks.0.mlp"] == widths["layers.0.blocks.1.mlp"]
    with pytest.raises(ReprolibError, match="control"):
        matched_prune(m, target, "magnitude")


@pytest.mark.parametrize("control", ["tp_uniform", "tp_global"])
def test_torch_pruning_controls_are_pruned_to_the_learned_flops(control):
    """The Torch-Pruning controls: the searched model's function (scores folded in) in timm's
    own Swin, pruned by Torch-Pruning to the learned model's FLOPs; the global one also
    narrows the residual width, the uniform one keeps equal MLP widths in a stage."""
    pytest.importorskip("torch_pruning")
    from reprolib.core.measure import count_flops
    from reprolib.experiments.sidt import tp_prune

    m = sidt.attach_scores(_model())
    _randomise_scores(m)
    size = m.patch_embed.img_size[0]
    target = count_flops(sidt.prune(m, 0.4, "global"), (3, size, size))
    small, facts = tp_prune(m, target, control, size, _model())
    assert 0 < facts["pruning_ratio"] < 1 and facts["flop_error"] < 0.05
    assert abs(count_flops(small, (3, size, size)) / target - 1) == pytest.approx(
        facts["flop_error"], abs=1e-9)
    assert getattr(small, "reprolib_spec", None) is None      # not one of our architectures
    x = _x()
    with torch.no_grad():
        assert small(x).shape == m(x).shape
    mlp = [b.mlp.fc1.out_features for b in small.layers[0].blocks]
    if control == "tp_uniform":
        assert len(set(mlp)) == 1
    with pytest.raises(ReprolibError, match="valid: tp_uniform, tp_global"):
        tp_prune(m, target, "tp_magnitude", size, _model())


# --------------------------------------------------------------------------- the pipeline's graph


@pytest.mark.parametrize("profile", ["smoke", "cpu", "evidence", "gpu", "paper"])
def test_graph_declares_what_each_stage_reads(profile):
    """Every stage of every profile declares the stages it reads (a static check of its
    function), every training stage its recipe and model; the roles and tags the tables and
    claims read: baseline / search per seed, fine-tunes per seed and ratio, the reference of
    ``cfg.seed``, controls per seed, ratio and control."""
    from reprolib.configs import get_config, profiles
    from reprolib.core.stage import declared_reads
    from reprolib.experiments.sidt import PIPELINE

    assert profile in profiles("sidt")
    cfg = get_config("sidt", profile)
    g = PIPELINE.graph(cfg)
    for s in g:
        assert declared_reads(s) == [], (s.name, declared_reads(s))
        assert (s.train is not None) == (s.role != "reference"), s.name
        if s.train is not None:
            assert s.model_spec is not None and s.model_spec.builder == cfg.model
            assert dict(cfg.model_kwargs).items() <= dict(s.model_spec.kwargs).items()
    seeds = PIPELINE.seeds(cfg)
    assert seeds == [cfg.seed, *(x for x in cfg.seeds if x != cfg.seed)]
    ratios = [0.0, *cfg.ratios]
    for seed in seeds:
        base = g.find("baseline", seed=seed)
        assert (base is None) == (cfg.baseline.epochs == 0)
        search = g.get("search", seed=seed)
        assert search.after == ([base] if base else []) and search.train.l1 == cfg.l1_strength
        tunes = g.select("finetune", seed=seed)
        assert [t.tags["ratio"] for t in tunes] == ratios
        assert all(t.after == [search] and t.train.l1 == 0 for t in tunes)
        ctl = g.select("control", seed=seed)
        assert [(c.tags["control"], c.tags["ratio"]) for c in ctl] == \
            ([(k, r) for k in cfg.controls for r in ratios if r > 0] if cfg.seeds else [])
        assert all(c.after == [search] and c.train.recipe_name == "finetune" for c in ctl)
    assert g.get("reference").after == g.select("finetune", seed=cfg.seed)
    assert len(g) == len(seeds) * (1 + len(ratios) + (cfg.baseline.epochs > 0)
                                   + (len(cfg.controls) * len(cfg.ratios) if cfg.seeds else 0)) + 1


def test_config_rules_name_the_key():
    from reprolib.configs import get_config

    with pytest.raises(ReprolibError, match=r"controls\[0\]='magnitude' is not one of: uniform, random, tp_uniform, tp_global"):
        get_config("sidt", "smoke", controls=("magnitude",))
    with pytest.raises(ReprolibError, match="two ratios round to the same percent"):
        get_config("sidt", "smoke", ratios=(0.2, 0.201))
    with pytest.raises(ReprolibError, match="model='nope' is not a registered model"):
        get_config("sidt", "smoke", model="nope")
    with pytest.raises(ReprolibError, match="reference_size=0 must be >= 1"):
        get_config("sidt", "smoke", reference_size=0)
    assert get_config("sidt", "smoke", controls=()).controls == ()


def test_test_set_size_from_records_or_inferred_from_accuracies():
    """The summary's test-set size: what the fine-tunes record, else (records made before
    they did) the smallest n that makes every recorded accuracy a whole count out of n."""
    from reprolib.experiments.sidt.report import test_set_size

    assert test_set_size([{"metrics": {"test_images": 360, "acc_pruned_no_ft": 50.0}}]) == 360
    accs = [100 * k / 1017 for k in (350, 362, 377, 391, 402)]
    tunes = [{"metrics": {"acc_pruned_no_ft": a, "history": [{"test_acc": b}]}}
             for a, b in zip(accs, reversed(accs))]
    assert test_set_size(tunes) == 1017
    assert test_set_size(tunes[:1]) is None           # too few accuracies to tell
