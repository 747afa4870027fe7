"""The Torch-Pruning peer of the bench (reprolib.tools.bench.peer) reaches a FLOP target within
2 % on tiny models, uniform and global, and keeps the classifier whole.  Skipped without the
optional ``bench`` extra."""

import pytest
import torch
import torch.nn as nn

from reprolib.core.measure import count_flops

tp = pytest.importorskip("torch_pruning")
from reprolib.tools.bench import peer  # noqa: E402


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
