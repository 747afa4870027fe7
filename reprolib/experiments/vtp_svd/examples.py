"""VTP's compressed-model examples, built without training: the code book's ViT with seeded
random importance scores, pruned by :func:`reprolib.methods.vtp.prune`, and that pruned ViT
with every pruned linear layer factored by SVD / QR / LU
(:func:`reprolib.methods.decompose.decompose_model`).  The overview exports one of each per
scale (:func:`export_cases`); ``reprolib bench`` times a family of them beside the dense ViT
(:func:`bench_families`)."""

from __future__ import annotations

import warnings

import torch

from reprolib.core.registry import create_model
from reprolib.methods import decompose, vtp

#: The ViT each export scale builds: (builder, kwargs, input side) -- the test variant, the
#: small CIFAR ViT, the code book's ViT (dim 512, depth 6, 32 px).
SCALES = {"tiny": ("test_vit_cifar", {"num_classes": 10}, 32),
          "cifar": ("vit_cifar_small", {"num_classes": 10}, 32),
          "paper": ("vit_cifar", {"num_classes": 10}, 32)}
#: The export cases: the VTP-pruned ViT and each decomposition of it.
EXPORT_METHODS = {"vtp": None, "vtp_svd": "svd", "vtp_qr": "qr", "vtp_lu": "lu"}


def random_scores(model, seed: int, floor: float = 0.0):
    """``model`` (a ViT) with importance scores attached (:func:`reprolib.methods.vtp.
    attach_scores`) holding seeded uniform random numbers plus ``floor``; returns it."""
    vtp.attach_scores(model)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for a in vtp.score_parameters(model):
            a.copy_(torch.rand(a.shape, generator=g) + floor)
    return model


def export_model(scale: str = "tiny", seed: int = 0, vtp_rate: float = 0.3,
                 method: str | None = None, rank_ratio: float = 0.25):
    """The ViT of ``scale`` (:data:`SCALES`, weights seeded by ``seed``) pruned at
    ``vtp_rate`` and, with ``method``, decomposed at ``rank_ratio``; ``(model, input_size)``."""
    b, kw, side = SCALES[scale]
    torch.manual_seed(seed)
    model = vtp.prune(random_scores(create_model(b, **kw), seed, floor=0.05), vtp_rate)
    if method:
        model = decompose.decompose_model(model, method, rank_ratio)
    return model, (3, side, side)


def _case(name: str, method: str | None) -> dict:
    def settings(cfg) -> dict:
        return {"vtp_rate": cfg.vtp_rate, **({"rank_ratio": cfg.rank_ratio} if method else {})}

    def build(scale: str = "tiny", seed: int = 0, vtp_rate: float = 0.3,
              rank_ratio: float = 0.25):
        return export_model(scale, seed, vtp_rate, method, rank_ratio)

    return {"label": "VTP pruned ViT" if method is None else f"VTP + {method.upper()}",
            "settings": settings, "build": build}


def export_cases() -> dict:
    """The overview's export cases ``vtp`` (pruned at ``cfg.vtp_rate``) and ``vtp_svd`` /
    ``vtp_qr`` / ``vtp_lu`` (then decomposed at ``cfg.rank_ratio``)."""
    return {name: _case(name, m) for name, m in EXPORT_METHODS.items()}


# --------------------------------------------------------------------------- the bench


def bench_model(case: dict, seed: int = 0):
    """The model of one bench case: ``case["model"]`` created (seeded); a VTP case pruned at
    ``rate`` (scores from ``seed + 1``) and, with ``decompose``, factored at ``rank_ratio``,
    widths and ranks rounded to ``round_to`` (layers decomposition leaves dense are listed
    by :func:`describe`, not warned about)."""
    torch.manual_seed(seed)
    model = create_model(case["model"], **case.get("kwargs", {}))
    if case["method"].startswith("VTP"):
        model = vtp.prune(random_scores(model, seed + 1), case["rate"], round_to=case["round_to"])
        if case.get("decompose"):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                model = decompose.decompose_model(model, case["decompose"], case["rank_ratio"],
                                                  round_to=case["round_to"],
                                                  timed_tokens=case.get("timed_tokens", 0))
    return model.eval()


def describe(model, case: dict) -> dict:
    """What a pruned (and decomposed) ViT kept, for the bench table: per block the head dim
    and MLP width, how many are not multiples of 8, the ranks and the layers left dense."""
    if not case["method"].startswith("VTP"):
        return {}
    dims = [[int(b.attn.head_dim), int(b.mlp.fc1.out_features)] for b in model.blocks]
    ws = [v for d in dims for v in d]
    out = {"block_dims": dims, "unaligned_widths": sum(v % 8 != 0 for v in ws),
           "widths": len(ws)}
    if case.get("decompose"):
        ranks = decompose.current_ranks(model)
        out.update(ranks=sorted(set(ranks.values())), factored_layers=len(ranks),
                   kept_dense=sorted(decompose.kept_dense(model)))
    return out


def bench_families(bc) -> list[dict]:
    """The ``vtp`` family of the bench config ``bc``: the dense ViT (``vtp_model``, patch
    ``vtp_patch``), the model pruned at ``vtp_rate`` for each ``round_to``, and each of
    ``vtp_methods`` applied to it at ``vtp_rank_ratio``."""
    if "vtp" not in bc.groups:
        return []
    rts = [int(r) for r in bc.round_to]
    base = {"model": bc.vtp_model, "kwargs": {"patch_size": bc.vtp_patch}}
    cases = [{"label": "dense", "method": "dense", **base}]
    for rt in rts:
        cases.append({"label": f"VTP {round(100 * bc.vtp_rate)}% rt{rt}", "method": "VTP",
                      **base, "rate": bc.vtp_rate, "round_to": rt})
    for i, m in enumerate(bc.vtp_methods):
        for rt in rts:
            # the methods factor at the same ranks: the same shapes and FLOPs, so a bench peer
            # at the first method's FLOPs stands for all ("peer": False on the others)
            cases.append({"label": f"VTP+{m.upper()} rt{rt}", "method": f"VTP+{m.upper()}",
                          **base, "rate": bc.vtp_rate, "round_to": rt,
                          "decompose": m, "rank_ratio": bc.vtp_rank_ratio,
                          **({"peer": False} if i else {})})
    # the first method once more with the layers kept dense whose factors were not faster
    # when timed at the large batch's tokens (decompose_model(timed_tokens=...)): FLOPs rise,
    # time falls where two thin matmuls cost more than one
    tokens = int(bc.vtp_batch) * ((32 // int(bc.vtp_patch)) ** 2 + 1)
    for rt in rts if bc.vtp_timed and bc.vtp_methods else ():
        m = bc.vtp_methods[0]
        cases.append({"label": f"VTP+{m.upper()} timed rt{rt}", "method": f"VTP+{m.upper()}",
                      **base, "rate": bc.vtp_rate, "round_to": rt, "decompose": m,
                      "rank_ratio": bc.vtp_rank_ratio, "timed_tokens": tokens, "peer": False})
    return [{"name": f"vtp-{bc.vtp_model}-p{bc.vtp_patch}", "group": "vtp",
             "input_size": [3, 32, 32], "batch": int(bc.vtp_batch),
             "train_batch": int(bc.vtp_train_batch), "cases": cases, "build": bench_model,
             "describe": describe}]
