"""The torchvision compat shim: acts only when torchvision's compiled ops cannot load."""

import subprocess
import sys
import textwrap

import torch

import reprolib  # noqa: F401
from reprolib.core import _compat


def _brute_nms(boxes, scores, thr):
    order = sorted(range(len(scores)), key=lambda i: -float(scores[i]))
    keep = []
    for i in order:
        ok = True
        for j in keep:
            a, b = boxes[i], boxes[j]
            iw = max(0.0, float(min(a[2], b[2]) - max(a[0], b[0])))
            ih = max(0.0, float(min(a[3], b[3]) - max(a[1], b[1])))
            inter = iw * ih
            union = float((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1])) - inter
            if inter / union > thr:
                ok = False
                break
        if ok:
            keep.append(i)
    return keep


def test_reference_nms_matches_brute_force():
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(60, 2, generator=g) * 50
    boxes = torch.cat([xy, xy + 5 + torch.rand(60, 2, generator=g) * 20], 1)
    scores = torch.rand(60, generator=g)
    for thr in (0.1, 0.3, 0.5, 0.7):
        assert _compat.nms_reference(boxes, scores, thr).tolist() == _brute_nms(boxes, scores, thr)


def test_torchvision_and_timm_import_and_run():
    import timm
    import torchvision

    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30.0]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    assert torchvision.ops.nms(boxes, scores, 0.5).tolist() == [0, 2]
    assert torchvision.ops.batched_nms(boxes, scores, torch.tensor([0, 1, 0]), 0.5).tolist() == [0, 1, 2]
    m = timm.create_model("resnet18", num_classes=3).eval()
    assert m(torch.randn(1, 3, 32, 32)).shape == (1, 3)


def _run(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip()


def test_fallback_branch_matches_this_machine():
    """In a fresh interpreter the shim is active exactly when torchvision's _C does not load."""
    loads = _run("""
        import torch, glob, os, importlib.util
        d = os.path.dirname(importlib.util.find_spec('torchvision').origin)
        try:
            torch.ops.load_library(glob.glob(os.path.join(d, '_C*.so'))[0]); print('loads')
        except (OSError, RuntimeError, IndexError):
            print('fails')
    """)
    active = _run("import reprolib, torchvision; from reprolib.core import _compat; print(_compat.ACTIVE)")
    assert active == ("False" if loads == "loads" else "True")


def test_does_nothing_when_compiled_ops_load():
    """Simulate a machine where torchvision's library loads: no schema is defined."""
    out = _run("""
        import torch
        torch.ops.load_library = lambda path: None       # the compiled ops 'load'
        from reprolib.core import _compat
        print(_compat.ACTIVE, _compat._LIB is None, hasattr(torch.ops.torchvision, 'nms'))
    """)
    assert out == "False True False"
