"""The Torch-Pruning peer of the bench (reprolib.methods.peer) reaches a FLOP target within
2 % on tiny models, uniform and global, and keeps the classifier whole.  Skipped without the
optional ``bench`` extra."""

import pytest
import torch
import torch.nn as nn

from reprolib.core.measure import count_flops

tp = pytest.importorskip("torch_pruning")
from reprolib.methods import peer  # noqa: E402


def _cnn(c=96):
    """Wide enough (96 / 192 channels) that one channel moves the FLOPs by about 1 %: a 2 %
    target is reachable by uniform pruning too (at 32 channels a step is about 3 %)."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU(),
                         nn.Conv2d(c, 2 * c, 3, padding=1), nn.BatchNorm2d(2 * c), nn.ReLU(),
                         nn.Conv2d(2 * c, 2 * c, 3, padding=1), nn.BatchNorm2d(2 * c), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * c, 10))


@pytest.mark.parametrize("global_pruning", [False, True])
@pytest.mark.parametrize("fraction", [0.6, 0.3])
def test_pruned_to_the_target_flops_within_2_percent(global_pruning, fraction):
    model = _cnn()
    size = (3, 8, 8)
    dense = count_flops(model, size)
    pruned, rec = peer.torch_pruning_to_flops(model, size, int(fraction * dense),
                                              global_pruning=global_pruning)
    assert rec["within_tol"] and rec["flop_error"] <= 0.02, rec
    assert abs(count_flops(pruned, size) / (fraction * dense) - 1) <= 0.02
    assert rec["scope"] == ("global" if global_pruning else "uniform")
    assert pruned[-1].out_features == 10                     # the classifier is kept whole
    assert count_flops(model, size) == dense                 # the parent is not touched
    assert pruned(torch.randn(2, *size)).shape == (2, 10)
    # physically smaller, not masked
    assert sum(p.numel() for p in pruned.parameters()) < sum(p.numel() for p in model.parameters())


def test_target_above_the_dense_flops_is_an_error():
    model = _cnn()
    with pytest.raises(ValueError, match="dense FLOPs"):
        peer.torch_pruning_to_flops(model, (3, 8, 8), 10 * count_flops(model, (3, 8, 8)))


def test_vit_heads_kept_and_head_dims_pruned():
    """reprolib's CIFAR ViT (separate q / k / v): heads declared as Torch-Pruning's timm
    examples do, head dims pruned, ``head_dim`` updated, the model still runs."""
    from reprolib.core.registry import create_model

    torch.manual_seed(0)
    model = create_model("test_vit_cifar").eval()
    size = (3, 32, 32)
    dense = count_flops(model, size)
    pruned, rec = peer.torch_pruning_to_flops(model, size, int(0.6 * dense), global_pruning=True)
    assert rec["within_tol"], rec
    a = next(m for m in pruned.modules() if hasattr(m, "to_q"))
    b = next(m for m in model.modules() if hasattr(m, "to_q"))
    assert a.heads == b.heads and a.head_dim < b.head_dim
    assert a.to_q.out_features == a.heads * a.head_dim
    assert pruned(torch.randn(2, *size)).shape[0] == 2


# --------------------------------------------------------------------------- in the bench


def _peer_cfg(**kw):
    from reprolib.tools import bench

    return bench.get_config("smoke", groups=("vtp",), vtp_methods=("svd", "qr"), threads=1,
                            repeats=2, large_repeats=1, train_repeats=1, warmup=1,
                            vtp_batch=4, vtp_train_batch=4, peer_scopes=("global",), **kw)


def test_every_compressed_case_gets_a_peer_at_its_flops():
    """A peer per compressed case and scope (QR has SVD's shapes: none), built after the case
    it matches, pruned to that case's counted FLOPs."""
    from reprolib.tools.bench import graph

    cfg = _peer_cfg()
    (fam,) = graph.families(cfg)
    peers = [c for c in fam["cases"] if c["method"] == "Torch-Pruning"]
    assert [c["peer_of"] for c in peers] == ["VTP 50% rt1", "VTP 50% rt8", "VTP+SVD rt1",
                                             "VTP+SVD rt8"]
    want = ["TP global = VTP+SVD rt1", "TP global = VTP 50% rt1"]
    models, rows = graph.build_models(fam, cfg.seed, want)
    assert [r["label"] for r in rows] == ["TP global = VTP 50% rt1", "TP global = VTP+SVD rt1"]
    _, mine = graph.build_models(fam, cfg.seed, ["VTP 50% rt1", "VTP+SVD rt1"])
    for peer_row, ours in zip(rows, mine):
        assert peer_row["peer_of"] == ours["label"] and peer_row["scope"] == "global"
        assert abs(peer_row["flops"] / ours["flops"] - 1) == pytest.approx(
            peer_row["flop_error"], abs=1e-4)
        assert peer_row["params"] < rows[0]["params"] * 2      # physically pruned, not masked
    assert set(models) == set(want)


def test_the_bench_table_puts_the_peer_beside_ours_in_each_runtime(tmp_path, monkeypatch):
    """Eager and ONNX Runtime, timed interleaved; the table has the peers' rows, ours say how
    they compare with the fastest peer at their FLOPs; the runtimes table names the best."""
    from reprolib.tools import bench

    monkeypatch.setenv("REPROLIB_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("REPROLIB_FIGURES", str(tmp_path / "figures"))
    cfg = _peer_cfg(variants=("fp32", "fp32+ort"), round_to=(1,))
    recs = bench.run(cfg, log=lambda s: None)
    assert set(recs) == {"vtp-test_vit_cifar-p4-fp32", "vtp-test_vit_cifar-p4-fp32_ort"}
    ort = recs["vtp-test_vit_cifar-p4-fp32_ort"]["metrics"]
    assert ort["runtime"] == "ort" and ort["onnxruntime"]
    assert all("train_ms" not in r for r in ort["rows"])    # ONNX Runtime: inference only
    for v in cfg.variants:
        df = bench.table(cfg, v)
        tp = df[df["method"] == "Torch-Pruning"]
        ours = df[df["method"] != "Torch-Pruning"]
        assert len(tp) == 2 and set(tp["peer of"]) == {"VTP 50% rt1", "VTP+SVD rt1"}
        have = ours[ours["model"].isin(tp["peer of"])]
        assert have["vs best TP (large)"].notna().all() and (have["vs best TP (large)"] > 0).all()
        assert ours[ours["model"].str.startswith("VTP+QR")]["vs best TP (large)"].isna().all()
    rt = bench.runtime_table(cfg)
    assert {"fp32 speedup", "fp32+ort speedup", "fastest (ms)", "best efficiency"} <= set(rt)
    assert set(rt["fastest (ms)"]) <= {"fp32", "fp32+ort"}
    names = {p.name for p in bench.write_outputs(cfg)}
    assert {"runtimes-smoke.md", "speedup-fp32_ort-smoke.md"} <= names


def test_swin_patch_merging_is_pruned_as_one_unit():
    """timm's Swin: the 4C of a patch merge are four copies of the C before it, pruned
    together (Torch-Pruning alone breaks the LayerNorm); ratio 0 is the same function."""
    from reprolib.core.registry import create_model

    torch.manual_seed(0)
    model = create_model("swin_tiny_test", num_classes=10, img_size=32).eval()
    size = (3, 32, 32)
    dense = count_flops(model, size)
    pruned, rec = peer.torch_pruning_to_flops(model, size, int(0.5 * dense))   # uniform
    assert rec["within_tol"], rec
    merges = [m for m in pruned.modules() if peer._is_merging(m)]
    assert merges and all(m.norm.normalized_shape[0] == 4 * m.dim == m.reduction.in_features
                          for m in merges)
    before = [m.dim for m in model.modules() if peer._is_merging(m)]
    assert [m.dim for m in merges] < before and all(                       # really pruned
        a <= b for a, b in zip([m.dim for m in merges], before))
    x = torch.randn(2, *size)
    same = peer.prune_once(model, size, 0.0)
    with torch.no_grad():
        assert pruned(x).shape == (2, 10)
        assert torch.allclose(same(x), model(x), atol=1e-5)
