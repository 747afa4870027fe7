"""What the overview shows of VTP + decomposition (``reprolib.experiments.overview``): the
conformance rows (the baseline ViT section 3.2.1 describes against the code book's), the
chart's points (the pruned ViT and each decomposition of it against the dense ViT of the same
patch size); the paper prints no sizes, so it has no reported points."""

from __future__ import annotations

from reprolib.configs import get_config
from reprolib.experiments.evidence import split_seed
from reprolib.experiments.overview.rows import meta_model, pair, row
from reprolib.experiments.vtp_svd.report import codebook_params

#: How the overview presents VTP + decomposition.
OVERVIEW = {"label": "VTP + decomposition", "color": "tab:orange", "short": "VTP",
            "reported": "", "mismatch_reasons": ()}


def conformance_rows() -> list[dict]:
    """Section 3.2.1's baseline ViT (depth, heads, dimension) against the code book's, and
    the code book ViT's parameter count (printed nowhere)."""
    m = meta_model("vit_cifar", patch_size=4, num_classes=10)
    a = m.arch
    book = (f"the code book (github.com/Cydia2018/ViT-cifar10-pruning, vitprune.py) builds "
            f"depth {a['depth']}, {a['heads']} heads, dim {a['dim']} at 32 px, and the paper says "
            f"it leaves the code book's components unmodified")
    nondiv = 768 % 10 != 0
    extra = (f"; 768 dimensions do not split into 10 equal heads ({768 / 10:g} each), so the "
             f"printed triple is not one ViT" if nondiv else "")
    how = "create_model('vit_cifar'): the code book's ViT"
    return [
        row("VTP+SVD", "section 3.2.1", "baseline ViT depth (layers)", "", 12, None, a["depth"],
            how, f"the text describes a 12-layer, 10-head, 768-dim ViT (VTP's DeiT-B-like "
                 f"ImageNet model); {book}{extra}", True),
        row("VTP+SVD", "section 3.2.1", "baseline ViT heads", "", 10, None, a["heads"], how,
            f"as the depth: {book}", True),
        row("VTP+SVD", "section 3.2.1", "baseline ViT embedding dimension", "", 768, None,
            a["dim"], how, f"as the depth: {book}", True),
        row("VTP+SVD", "code book", "code book ViT params (patch 4, 10 classes)", "",
            None, None, codebook_params(4), how,
            "neither the paper nor the code book prints a parameter count"),
    ]


def points(pipe, recs: dict, profile: str) -> list[dict]:
    """The chart's points at ``profile``, per patch size in name order: the VTP-pruned ViT
    (role ``vtp``) and each of its decompositions that was fine-tuned (role ``decompose``,
    with a training) against the dense ViT of that patch size (role ``dense``); ``recs``
    holds each condition once, its seeds averaged."""
    g = pipe.graph(get_config(pipe.name, profile))

    def conditions(role: str, **tags) -> dict:
        out = {}
        for s in g.select(role, **tags):
            out.setdefault(split_seed(s.name)[0], s)
        return dict(sorted(out.items()))

    out = []
    for n, v in conditions("vtp").items():
        p = v.tags["patch"]
        dense = [d for d in conditions("dense", patch=p) if d in recs]
        if n not in recs or not dense:
            continue
        parent = {**recs[dense[0]], "label": f"dense ViT patch {p}"}
        out.append(pair(pipe.name, profile, f"VTP p{p}", n, recs[n], parent))
        for dn, d in conditions("decompose", patch=p).items():
            if d.train is not None and dn in recs:
                out.append(pair(pipe.name, profile, f"+{d.tags['method'].upper()} p{p}",
                                dn, recs[dn], parent))
    return out
